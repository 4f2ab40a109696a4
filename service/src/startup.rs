//! Builds the application from settings: every route is registered here.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::{KeepAlive, Method};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tracing_actix_web::TracingLogger;

use crate::auth::WriteAccess;
use crate::configuration::Settings;
use crate::error::ApiError;
use crate::metrics::{self, Metrics};
use crate::middleware::common_headers;
use crate::repository::SharedRepository;
use crate::routes::{self, BodyTimeout, StaticRoot};

/// A bound, not yet running, books-ms.
pub struct Application {
    server: Server,
    port: u16,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and prepares the server.
    /// The database is not contacted: the service starts when it is down.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).min(512);
        let metrics = web::Data::new(Metrics::for_this_build());
        let shared = SharedRepository::new(&settings.database, workers, metrics.db()).await?;
        // Made here, on the calling runtime, so that options the driver
        // refuses stop the start; a worker uses it only if its own client
        // cannot be made (the same options, so not expected).
        let fallback = web::Data::new(shared.client()?);
        let listener = listen(settings.listen_addr, settings.http.backlog, settings.http.send_timeout)
            .with_context(|| format!("LISTEN_ADDR: cannot listen on {}", settings.listen_addr))?;
        let local = listener.local_addr()?;
        let static_root = web::Data::new(StaticRoot::new(&settings.static_dir));
        let http = settings.http.clone();
        let body_timeout = web::Data::new(BodyTimeout(http.body_timeout));
        let write_access = web::Data::new(WriteAccess::new(settings.access.write_token.as_ref()));
        let cors_origins = web::Data::new(settings.access.cors_origins.clone());
        tracing::info!(
            addr = %local,
            database = %settings.database.redacted_uri(),
            db = %settings.database.database_name,
            collection = %settings.database.collection,
            static_dir = %settings.static_dir.display(),
            writes = if settings.access.write_token.is_some() { "need the write token" } else { "open" },
            cors_origins = ?settings.access.cors_origins,
            "listening"
        );

        let server = HttpServer::new(move || {
            // Each worker's own client, on the worker's runtime (see `SharedRepository`).
            let repo = shared.client().map(web::Data::new).unwrap_or_else(|e| {
                tracing::error!(error = format!("{e:#}"), "a worker's database client; using the shared one");
                fallback.clone()
            });
            App::new()
                // Registered later, so outside: every response passes through these.
                .wrap(from_fn(common_headers))
                .wrap(TracingLogger::default())
                // Outermost: counts every answer, the middleware's own included.
                .wrap(from_fn(metrics::track))
                .app_data(repo)
                .app_data(metrics.clone())
                .app_data(static_root.clone())
                .app_data(body_timeout.clone())
                .app_data(write_access.clone())
                .app_data(cors_origins.clone())
                .app_data(web::QueryConfig::default().error_handler(routes::query_error))
                .service(resource("/health", "GET, OPTIONS").route(web::get().to(routes::health)))
                .service(resource("/ready", "GET, OPTIONS").route(web::get().to(routes::ready)))
                .service(resource("/version", "GET, OPTIONS").route(web::get().to(routes::version)))
                .service(resource("/metrics", "GET, OPTIONS").route(web::get().to(routes::metrics)))
                .service(resource("/api/v1/openapi.json", "GET, OPTIONS").route(web::get().to(routes::openapi_json)))
                .service(
                    resource("/api/v1/books", "GET, PUT, POST, OPTIONS")
                        .route(web::get().to(routes::list_books))
                        .route(web::put().to(routes::put_book))
                        .route(web::post().to(routes::put_book)),
                )
                .service(
                    resource("/api/v1/books/_id/{id}", "GET, DELETE, OPTIONS")
                        .route(web::get().to(routes::get_book))
                        .route(web::delete().to(routes::delete_book)),
                )
                .default_service(web::to(routes::static_file))
        })
        // Slow and hostile clients (README.md): headers must arrive within the
        // header deadline (the body has its own, in `read_body`); an idle
        // connection closes after the keep-alive; the connections held are
        // capped so that a flood cannot take every descriptor and megabyte.
        .client_request_timeout(http.header_timeout)
        .keep_alive(if http.keep_alive.is_zero() { KeepAlive::Disabled } else { KeepAlive::Timeout(http.keep_alive) })
        .max_connections(http.max_connections)
        // A list goes out as several writes. With Nagle's algorithm each
        // write after the first waited for the client's ACK of the previous
        // one, and clients delay ACKs by up to 40 ms: that was most of the
        // list's time at one connection (docs/benchmarks.md, issue 12).
        .tcp_nodelay(true)
        .workers(workers)
        .listen(listener)?
        // Signals are the binary's business: shutdown is passed in, so tests
        // stop the server deterministically.
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1))
        .run();
        Ok(Application { server, port: local.port() })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` completes, then stops accepting connections and
    /// lets in-flight requests finish (up to the shutdown timeout).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut running = tokio::spawn(self.server);
        tokio::select! {
            result = &mut running => return result.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            () = shutdown => {}
        }
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        let started = std::time::Instant::now();
        handle.stop(true).await;
        let result = running.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
        result
    }
}

/// A listener with our backlog: std's `TcpListener::bind` fixes it at 128, and
/// actix's `backlog` applies only to the addresses it binds itself. Its
/// connections have the send deadline (see [`set_send_timeout`]).
fn listen(addr: SocketAddr, backlog: u32, send_timeout: Duration) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As std does: a restarted service may bind while old connections linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    set_send_timeout(&socket, send_timeout)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// The deadline for a response the client takes nothing of
/// (`HTTP_SEND_TIMEOUT_MS`), as the kernel's `TCP_USER_TIMEOUT`: once data
/// sent waits that long unacknowledged, or the client's receive window stays
/// shut that long (it reads nothing), the kernel drops the connection, actix
/// sees the error on its next write and drops the response, and with it the
/// list's cursor. actix-web has no such deadline (its timers are the
/// request's head, keep-alive and the disconnect), and a wrapper around the
/// body stream cannot make one: actix stops polling the body while its write
/// buffer is full, which is exactly when the client stalls. Set on the
/// listener, it is inherited by every connection accepted from it.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_send_timeout(socket: &socket2::Socket, timeout: Duration) -> std::io::Result<()> {
    socket.set_tcp_user_timeout(Some(timeout))
}

/// Elsewhere the kernel offers no such deadline: the image runs on Linux.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_send_timeout(_: &socket2::Socket, timeout: Duration) -> std::io::Result<()> {
    tracing::warn!(?timeout, "HTTP_SEND_TIMEOUT_MS is not applied on this system (Linux only)");
    Ok(())
}

/// A resource that answers `OPTIONS` with its methods (204 and `Allow`) and
/// any method it does not take with 405 and `Allow` (RFC 9110). A CORS
/// preflight never gets here: `common_headers` answers it.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path)
        .route(web::route().method(Method::OPTIONS).to(move || options(allow)))
        .default_service(web::to(move || method_not_allowed(allow)))
}

async fn options(allow: &'static str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::NoContent().insert_header((actix_web::http::header::ALLOW, allow)).finish()
}

async fn method_not_allowed(allow: &'static str) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow })
}
