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
        // Handlers first: a signal that arrives while the app starts must
        // still stop it gracefully rather than kill it.
        let shutdown = shutdown_signal()?;
        let app = Application::build(settings).await?;
        app.run_until_stopped(shutdown).await?;
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

/// Registers the handlers now; the future completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    })
}
