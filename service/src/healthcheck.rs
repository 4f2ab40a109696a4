//! `books-ms healthcheck`: asks the running service's `/health`, for the
//! image's `HEALTHCHECK` (the image has no shell and no curl).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::configuration::{Settings, DEFAULT_LISTEN_ADDR};

/// Exit status 0 when `/health` answers 200 within two seconds.
pub fn run() -> std::process::ExitCode {
    match check() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("books-ms healthcheck: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn check() -> Result<(), String> {
    let listen: SocketAddr = Settings::from_env()
        .map(|s| s.listen_addr)
        .unwrap_or_else(|_| DEFAULT_LISTEN_ADDR.parse().expect("the default address parses"));
    // A wildcard listen address is reached on loopback.
    let ip = match listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, listen.port());
    let timeout = Duration::from_secs(2);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| format!("no answer from {addr}: {e}"))?;
    match &head[9..12] {
        b"200" => Ok(()),
        status => Err(format!("{addr}/health answered {}", String::from_utf8_lossy(status))),
    }
}
