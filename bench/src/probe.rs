//! What the script cannot do well in shell: poll `/ready` every few
//! milliseconds (a curl per poll costs more than the interval), and find a
//! free port before the service starts, so start-to-ready is timed from exec.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Polls `GET http://addr{path}` every `interval` until it answers 200;
/// returns the time since this call started. Connection refused (not
/// listening yet) and 503 (database not reached yet) both mean "poll again".
pub fn wait_ready(addr: SocketAddr, path: &str, interval: Duration, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut last = String::from("no answer");
    // The poll count bounds the loop too, if the clock ever misbehaves.
    let max_polls = timeout.as_millis() / interval.as_millis().max(1) + 1;
    for _ in 0..max_polls {
        match status(addr, path) {
            Ok(200) => return Ok(start.elapsed()),
            Ok(code) => last = format!("HTTP {code}"),
            Err(e) => last = e.to_string(),
        }
        if start.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(interval);
    }
    anyhow::bail!("http://{addr}{path} did not answer 200 within {timeout:?} (last: {last})")
}

/// One HTTP/1.1 request on a fresh connection; the status code.
fn status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    // Loopback answers in microseconds; a second means something is wrong.
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    // "HTTP/1.1 200 OK": the status line's first 12 bytes hold the code.
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP/1.x status line"))
}

/// A port that the kernel considers free now (it may be taken again before
/// the caller binds it; on a lab machine that race does not happen in practice).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
