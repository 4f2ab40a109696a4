//! The books-ms binary: reads configuration, sets up logs, serves until
//! SIGTERM or SIGINT. `books-ms healthcheck` probes a running instance.

use std::process::ExitCode;

use books_ms::{healthcheck, telemetry, Application, Settings};

const USAGE: &str = "usage: books-ms [healthcheck | --version]\n\
    Serves the books API; configuration comes from the environment (see README.md).";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => serve(),
        Some("healthcheck") => healthcheck::run(),
        Some("--version" | "-V") => {
            println!("books-ms {} ({})", env!("CARGO_PKG_VERSION"), env!("BOOKS_MS_REVISION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("books-ms: unknown argument `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("books-ms: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("books-ms: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let app = Application::build(settings).await?;
        app.run_until_stopped(shutdown_signal()).await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "books-ms stopped on an error");
            eprintln!("books-ms: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the service");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
