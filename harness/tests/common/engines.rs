//! The lab's Docker engines, reached as independent clients: over TLS with
//! the lab's client certificate (prod's, the swarm manager's), a raw TLS
//! client to their API, a pull with or without credentials, and what a
//! lab dockerd was started with.

use std::path::Path;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::StreamExt;

use super::{bounded, negotiate, DEADLINE};

/// bollard's and reqwest's TLS take rustls's process-wide provider, which
/// is ambiguous should another crate ever enable a second one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The engine at `address` (`HOST:PORT`) over TLS, with the client
/// certificate in `cert_dir` (`ca.pem`, `cert.pem`, `key.pem`), as the
/// harness reaches it; `which` names it in failures.
pub async fn tls_docker(address: &str, cert_dir: &Path, which: &str) -> Docker {
    install_crypto_provider();
    let docker = Docker::connect_with_ssl(
        address,
        &cert_dir.join("key.pem"),
        &cert_dir.join("cert.pem"),
        &cert_dir.join("ca.pem"),
        DEADLINE.as_secs(),
        API_DEFAULT_VERSION,
    )
    .unwrap_or_else(|e| panic!("a TLS client for {which}: {e}"));
    negotiate(docker, which).await
}

/// An HTTPS client that trusts the CA in `cert_dir` alone, with the client
/// certificate there or without one.
pub fn tls_client(cert_dir: &Path, with_client_certificate: bool) -> reqwest::Client {
    let read = |name: &str| {
        let path = cert_dir.join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    };
    install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(&read("ca.pem")).expect("the lab's CA");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca);
    if with_client_certificate {
        let mut pem = read("cert.pem");
        pem.extend(read("key.pem"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("the client certificate"));
    }
    builder.build().expect("a TLS client")
}

/// Pulls `repository:tag` on `docker`, returning the stream's first error.
pub async fn pull(
    docker: &Docker,
    repository: &str,
    tag: &str,
    credentials: Option<DockerCredentials>,
) -> Result<(), bollard::errors::Error> {
    let options = CreateImageOptionsBuilder::new().from_image(repository).tag(tag).build();
    first_error("a pull", docker.create_image(Some(options), None, credentials)).await
}

/// Drains an engine's progress stream, bounded in time; its first error.
pub async fn first_error<T>(
    what: &str,
    stream: impl futures_util::Stream<Item = Result<T, bollard::errors::Error>>,
) -> Result<(), bollard::errors::Error> {
    let results: Vec<_> = bounded(what, stream.collect()).await;
    results.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}

/// The pid in a lab dockerd's pid file.
pub fn pid_in(pid_file: &str) -> u32 {
    let text = std::fs::read_to_string(pid_file).unwrap_or_else(|e| panic!("{pid_file}: {e}; is the lab up?"));
    text.trim().parse().unwrap_or_else(|_| panic!("{pid_file} holds {text:?}"))
}

/// A lab dockerd that runs, as its pid file and `/proc` tell.
pub struct Dockerd {
    pub pid: u32,
    /// Its command line, argument by argument.
    pub args: Vec<String>,
    /// What it listens on: the values of its `-H`/`--host` options.
    pub hosts: Vec<String>,
}

impl Dockerd {
    /// The dockerd whose pid is in `pid_file` (the lab's scripts write one
    /// per engine).
    pub fn from_pid_file(pid_file: &str) -> Dockerd {
        let pid = pid_in(pid_file);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_else(|e| panic!("the dockerd of {pid_file} (pid {pid}) does not run: {e}"));
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let hosts = args.windows(2).filter(|w| w[0] == "-H" || w[0] == "--host").map(|w| w[1].clone()).collect();
        Dockerd { pid, args, hosts }
    }

    /// Started with `--tlsverify`: client certificates required.
    pub fn verifies_clients(&self) -> bool {
        self.args.iter().any(|a| a == "--tlsverify")
    }
}
