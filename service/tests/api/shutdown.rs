//! Graceful shutdown, and the binary's own behaviour (signals, bad config).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{free_port, spawn_app, wait_listening};

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_refuses_new_ones() {
    // Arrange: a PUT whose body is only half sent, so it is in flight.
    let mut app = spawn_app().await;
    let body = r#"{"_id": 1, "title": "In flight", "author": "Someone"}"#;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "PUT /api/v1/books HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Act: stop, then finish sending.
    app.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await;
    stream.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.unwrap().unwrap();

    // Assert: the in-flight request completed and was stored; no new connection was taken.
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(refused.is_err(), "a new connection was accepted during shutdown");
    assert!(app.stop().await.is_ok());
    assert_eq!(app.stored(1).await.unwrap()["title"], "In flight");
}

/// Starts the real binary with `env` and waits until `/health` answers.
fn start_binary(port: u16, env: &[(&str, &str)]) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_books-ms"));
    command
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("MONGODB_URI", format!("mongodb://127.0.0.1:{}", free_port()))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("start books-ms");
    wait_listening(&mut child, port);
    child
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("books-ms did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_binary_exits_0_on_sigterm_and_on_sigint() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let port = free_port();
        let mut child = start_binary(port, &[]);
        // SAFETY: sending a signal to our own child process by its pid.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let status = wait_exit(&mut child, Duration::from_secs(15));
        assert_eq!(status.code(), Some(0), "signal {signal}");
    }
}

#[test]
fn the_healthcheck_subcommand_probes_a_running_instance() {
    let port = free_port();
    let mut child = start_binary(port, &[]);
    let probe = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_books-ms"))
            .arg("healthcheck")
            .env_clear()
            .env("LISTEN_ADDR", format!("0.0.0.0:{port}"))
            .output()
            .unwrap()
    };
    assert!(probe(port).status.success());
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    wait_exit(&mut child, Duration::from_secs(15));
    let failed = probe(port);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("cannot connect"));
}

#[test]
fn invalid_configuration_is_one_line_naming_the_variable_and_a_non_zero_exit() {
    for (variable, value) in [("DB_PORT", "abc"), ("LISTEN_ADDR", "everywhere"), ("DB_DBNAME", "a.b")] {
        let output = Command::new(env!("CARGO_BIN_EXE_books-ms")).env_clear().env(variable, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(variable) && stderr.contains(value), "{stderr}");
    }
}

#[test]
fn a_port_already_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = Command::new(env!("CARGO_BIN_EXE_books-ms"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LISTEN_ADDR") && stderr.contains(&port.to_string()), "{stderr}");
}
