//! `spawn_app()`: the real app on port 0 against a real database container,
//! with a fresh, uniquely named database per test.
//!
//! One database container serves the whole test binary (started on first
//! use, then kept for the process's life: a container per test would cost a
//! second each). It is labelled with this process's id, and containers left
//! by earlier runs whose process is gone are removed on start; the test
//! command removes this run's container afterwards.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use books_ms::{Application, Settings};
use mongodb::bson::{doc, Document};
use serde_json::Value;
use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::{oneshot, OnceCell};

pub const DB_PORT: ContainerPort = ContainerPort::Tcp(27017);
const RUN_LABEL: &str = "books-ms.tests.pid";

/// The database image: `BOOKS_TEST_DB_IMAGE` (the lab sets the local
/// FerretDB image in `.cargo/config.toml`), else the public `mongo:7`.
pub fn db_image() -> GenericImage {
    let reference = std::env::var("BOOKS_TEST_DB_IMAGE").unwrap_or_else(|_| "mongo:7".to_owned());
    let (name, tag) = split_reference(&reference);
    GenericImage::new(name, tag).with_exposed_port(DB_PORT)
}

/// `host:5000/a/b:tag` → (`host:5000/a/b`, `tag`).
pub fn split_reference(reference: &str) -> (String, String) {
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (reference.to_owned(), "latest".to_owned()),
    }
}

/// A database container of the test's own (for tests that stop it), with
/// its port published on a fixed host port so that a restart keeps it.
pub async fn start_db_container(host_port: Option<u16>) -> ContainerAsync<GenericImage> {
    let mut request = db_image().with_label(RUN_LABEL, std::process::id().to_string());
    if let Some(port) = host_port {
        request = request.with_mapped_port(port, DB_PORT);
    }
    request.start().await.expect("start the database container (is the lab up? see README.md)")
}

pub async fn db_uri(container: &ContainerAsync<GenericImage>) -> String {
    let port = container.get_host_port_ipv4(DB_PORT).await.expect("the database port");
    format!("mongodb://127.0.0.1:{port}")
}

static SHARED_DB: OnceCell<String> = OnceCell::const_new();

/// The URI of the database container shared by this test binary.
pub async fn shared_db_uri() -> &'static str {
    SHARED_DB
        .get_or_init(|| async {
            reap_stale_containers().await;
            let container = start_db_container(None).await;
            let uri = db_uri(&container).await;
            wait_for_db(&uri).await;
            // Kept for the life of the process, see the module's doc.
            std::mem::forget(container);
            uri
        })
        .await
}

/// Waits until the database answers a ping (bounded: 30 s).
pub async fn wait_for_db(uri: &str) {
    let client = mongo_client(uri).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.database("admin").run_command(doc! { "ping": 1 }).await {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => panic!("the database at {uri} did not answer within 30 s: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn mongo_client(uri: &str) -> mongodb::Client {
    let mut options = mongodb::options::ClientOptions::parse(uri).await.expect("a valid URI");
    options.server_selection_timeout = Some(Duration::from_secs(2));
    mongodb::Client::with_options(options).expect("a client")
}

/// Removes database containers of earlier test runs whose process is gone.
async fn reap_stale_containers() {
    let Ok(docker) = bollard::Docker::connect_with_local_defaults() else {
        return;
    };
    let filters = HashMap::from([("label".to_owned(), vec![RUN_LABEL.to_owned()])]);
    let options =
        bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return;
    };
    for container in containers {
        let pid = container.labels.as_ref().and_then(|l| l.get(RUN_LABEL)).cloned().unwrap_or_default();
        if Path::new("/proc").join(&pid).exists() {
            continue;
        }
        if let Some(id) = container.id {
            let options =
                bollard::query_parameters::RemoveContainerOptionsBuilder::default().force(true).v(true).build();
            let _ = docker.remove_container(&id, Some(options)).await;
        }
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// A running books-ms, its own database, and ways to look inside both.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub http: reqwest::Client,
    pub collection: mongodb::Collection<Document>,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Settings a test may change before the app starts.
pub struct AppOptions {
    pub db_uri: Option<String>,
    pub static_dir: PathBuf,
    pub extra_env: Vec<(&'static str, String)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions { db_uri: None, static_dir: repo_root().join("client"), extra_env: Vec::new() }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let uri = match options.db_uri {
        Some(uri) => uri,
        None => shared_db_uri().await.to_owned(),
    };
    let db_name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut env: HashMap<&str, String> = HashMap::from([
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("MONGODB_URI", uri.clone()),
        ("DB_DBNAME", db_name.clone()),
        ("STATIC_DIR", options.static_dir.display().to_string()),
    ]);
    env.extend(options.extra_env);
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("valid test settings");
    let app = Application::build(settings).await.expect("the app builds");
    let port = app.port();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let collection = mongo_client(&uri).await.database(&db_name).collection("books");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap(),
        collection,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET sent")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http.delete(self.url(path)).send().await.expect("DELETE sent")
    }

    pub async fn put_json(&self, body: &Value) -> reqwest::Response {
        self.http.put(self.url("/api/v1/books")).json(body).send().await.expect("PUT sent")
    }

    pub async fn put_raw(&self, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> reqwest::Response {
        let mut request = self.http.put(self.url("/api/v1/books")).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request.send().await.expect("PUT sent")
    }

    /// Writes books straight into the database, as the original tests did.
    pub async fn insert_books(&self, books: &[Value]) {
        let docs: Vec<Document> = books.iter().map(|b| mongodb::bson::to_document(b).expect("a document")).collect();
        self.collection.insert_many(docs).await.expect("books inserted");
    }

    pub async fn stored(&self, id: i32) -> Option<Value> {
        let doc = self.collection.find_one(doc! { "_id": id }).await.expect("find_one")?;
        Some(serde_json::to_value(doc).expect("JSON"))
    }

    pub async fn count(&self) -> u64 {
        self.collection.count_documents(doc! {}).await.expect("count")
    }

    /// Asks the server to stop (as SIGTERM would), without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server gracefully and waits for it (bounded).
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.trigger_shutdown();
        let server = self.server.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), server).await.expect("stopped within 30 s").expect("no panic")
    }
}

pub fn book(id: i32, title: &str, author: &str, description: &str) -> Value {
    serde_json::json!({ "_id": id, "title": title, "author": author, "description": description })
}

pub fn summary(book: &Value) -> Value {
    serde_json::json!({ "_id": book["_id"], "title": book["title"], "author": book["author"] })
}

/// Sends `raw` as is over TCP (no URL normalisation, unlike an HTTP client)
/// and returns the status and body.
pub async fn raw_request(port: u16, raw: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream.write_all(raw.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("answer in 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status =
        text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

pub async fn raw_get(port: u16, path: &str) -> (u16, String) {
    raw_request(port, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")).await
}

/// A free local port, for a container that must keep its port across a restart.
/// Waits (bounded: 20 s) until the books-ms binary started as `child`
/// accepts connections on `port`; fails the test if it exits first.
pub fn wait_listening(child: &mut std::process::Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("books-ms exited early: {status}");
        }
        assert!(Instant::now() < deadline, "books-ms did not listen within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Asserts a JSON error response: its status, code and (maybe) field.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str, field: Option<&str>) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body["field"].as_str(), field, "{body}");
    body
}
