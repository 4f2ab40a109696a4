//! The two Docker engines, `cd` (this host's, over its socket) and `prod`
//! (a remote host, only through its TLS-protected API), and the one way to
//! call them: [`Engine::call`], bounded by [`API_TIMEOUT`], with an error
//! naming the engine and what was asked. Pulls, pushes and builds stream
//! progress and are bounded by their own deadlines.

use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bollard::{Docker, API_DEFAULT_VERSION};

use crate::config::Config;

/// How long one Docker API call may take before it counts as a hang.
/// Pulls, pushes and builds stream progress and are bounded separately.
pub const API_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a connection to a remote engine stays open unused.
const POOL_IDLE: Duration = Duration::from_secs(10);

/// A connected engine and its name for messages ("the cd engine",
/// "prod (tcp://HOST:PORT)").
#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
    pub name: String,
}

/// One engine call that failed or hung.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("asking {engine} {what}: {source}")]
    Api { engine: String, what: String, source: bollard::errors::Error },
    #[error("{engine} did not answer {what} within {} s", API_TIMEOUT.as_secs())]
    Timeout { engine: String, what: String },
}

impl EngineError {
    /// The HTTP status the engine answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            EngineError::Api {
                source: bollard::errors::Error::DockerResponseServerError { status_code, .. }, ..
            } => Some(*status_code),
            _ => None,
        }
    }
}

impl Engine {
    /// Runs one API call within [`API_TIMEOUT`]; `what` completes "asking
    /// ENGINE ...", e.g. "for the image X" or "to start C".
    pub async fn call<T>(
        &self,
        what: impl Display,
        call: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, EngineError> {
        match tokio::time::timeout(API_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(EngineError::Api { engine: self.name.clone(), what: what.to_string(), source }),
            Err(_) => Err(EngineError::Timeout { engine: self.name.clone(), what: what.to_string() }),
        }
    }
}

impl Engine {
    /// A container by name; None when there is none.
    pub async fn inspect_container(
        &self,
        name: &str,
    ) -> Result<Option<bollard::models::ContainerInspectResponse>, EngineError> {
        found(self.call(format!("for the container {name}"), self.docker.inspect_container(name, None)).await)
    }
}

/// A 404 is "there is none".
pub fn found<T>(result: Result<T, EngineError>) -> Result<Option<T>, EngineError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An answer that means "already so" (304: already started or stopped;
/// 404: already gone) is a success.
pub fn tolerate(result: Result<(), EngineError>, status: u16) -> Result<(), EngineError> {
    match result {
        Err(e) if e.status() == Some(status) => Ok(()),
        other => other,
    }
}

/// One command run in a container.
const EXEC_TIMEOUT: Duration = Duration::from_secs(15);

impl Engine {
    /// Runs `command` in a running container, bounded: its exit code and
    /// output; None when the container does not run.
    pub async fn exec(&self, container: &str, command: &[&str]) -> anyhow::Result<Option<(i64, String)>> {
        use futures_util::StreamExt;
        let options = bollard::exec::CreateExecOptions {
            cmd: Some(command.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let what = format!("to run `{}` in {container}", command.join(" "));
        let exec = match self.call(&what, self.docker.create_exec(container, options)).await {
            Ok(exec) => exec,
            Err(e) if e.status() == Some(409) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut output = String::new();
        if let bollard::exec::StartExecResults::Attached { output: mut stream, .. } =
            self.call(&what, self.docker.start_exec(&exec.id, None)).await?
        {
            let read = async {
                while let Some(Ok(chunk)) = stream.next().await {
                    output.push_str(&chunk.to_string());
                }
            };
            tokio::time::timeout(EXEC_TIMEOUT, read)
                .await
                .map_err(|_| anyhow::anyhow!("{what}: no end within {} s", EXEC_TIMEOUT.as_secs()))?;
        }
        let inspected = self.call(&what, self.docker.inspect_exec(&exec.id)).await?;
        Ok(Some((inspected.exit_code.unwrap_or(-1), output)))
    }
}

impl Engine {
    /// The text of the file `dir/name` in a container (running or not, its
    /// volumes included); None when there is no such file.
    pub async fn read_file(&self, container: &str, dir: &str, name: &str) -> anyhow::Result<Option<String>> {
        use futures_util::TryStreamExt;
        let path = format!("{dir}/{name}");
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default().path(&path).build();
        let download =
            self.docker.download_from_container(container, Some(options)).try_fold(Vec::new(), |mut all, c| {
                all.extend_from_slice(&c);
                async move { Ok(all) }
            });
        let archive = match self.call(format!("for {path} in {container}"), download).await {
            Ok(archive) => archive,
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut entries = tar::Archive::new(&archive[..]);
        for entry in entries.entries().with_context(|| format!("{path} in {container}: not a tar archive"))? {
            let mut entry = entry?;
            if entry.path()?.file_name().is_some_and(|n| n == name) {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).with_context(|| format!("reading {path}"))?;
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    /// Writes `files` (name, text) into `dir` of a container (running or
    /// not), each whole.
    pub async fn write_files(&self, container: &str, dir: &str, files: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            builder.append_data(&mut header, name, text.as_bytes())?;
        }
        let archive = builder.into_inner()?;
        let options = bollard::query_parameters::UploadToContainerOptionsBuilder::default().path(dir).build();
        let upload = self.docker.upload_to_container(container, Some(options), bollard::body_full(archive.into()));
        let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
        self.call(format!("to write {} in {dir} of {container}", names.join(" and ")), upload).await?;
        Ok(())
    }
}

/// The local engine, where images are built and pushed from.
pub async fn cd() -> anyhow::Result<Engine> {
    let docker =
        Docker::connect_with_local_defaults().context("cd engine: cannot make a client for the local Docker socket")?;
    let docker =
        negotiate(docker, "the cd engine (local socket)", "is dockerd running? `harness lab up` starts it").await?;
    Ok(Engine { docker, name: "the cd engine".to_owned() })
}

/// prod's engine, with the client certificate from `prod.cert_path`,
/// trusting only the CA there (`ca.pem`).
pub async fn prod(config: &Config) -> anyhow::Result<Engine> {
    remote(&config.prod.docker_host, &config.prod.cert_path, "prod", "prod.cert_path").await
}

/// The swarm's manager, as prod: its client certificate from
/// `swarm.cert_path`, trusting only the CA there.
pub async fn swarm_manager(config: &Config) -> anyhow::Result<Engine> {
    remote(&config.swarm.docker_host, &config.swarm.cert_path, "the swarm's manager", "swarm.cert_path").await
}

/// A remote engine at `host` (`tcp://HOST:PORT`) with the certificates in
/// `certs` (the setting `setting`), called `what (HOST)` in messages.
async fn remote(host: &str, certs: &Path, what: &str, setting: &str) -> anyhow::Result<Engine> {
    let address = host.strip_prefix("tcp://").unwrap_or(host);
    for file in ["ca.pem", "cert.pem", "key.pem"] {
        if !certs.join(file).is_file() {
            anyhow::bail!(
                "{what} ({host}): no {file} in {} ({setting}); `harness lab up` makes the lab's certificates",
                certs.display()
            );
        }
    }
    let name = format!("{what} ({host})");
    let tls =
        tls_config(certs).with_context(|| format!("{name}: cannot use the certificates in {}", certs.display()))?;
    let docker = connect_tls(address, tls)?;
    let docker = match tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version()).await {
        Ok(Ok(docker)) => docker,
        Ok(Err(e)) => match tls_refusal(&e) {
            Some(reason) => anyhow::bail!("{name}: TLS refused: {}", explain_refusal(&reason, certs)),
            None => anyhow::bail!("{name} does not answer: {e}; is prod up? `harness lab status` tells"),
        },
        Err(_) => anyhow::bail!("{name} did not answer within 10 s; is prod up? `harness lab status` tells"),
    };
    Ok(Engine { docker, name })
}

/// The client's TLS settings: the roots are the CA file alone. bollard's
/// own `connect_with_ssl` adds the system's roots beside it, so that any
/// public CA's certificate for prod's address would pass; prod is ours and
/// has only ever had certificates from our CA.
fn tls_config(certs: &Path) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca_file = certs.join("ca.pem");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&ca_file).with_context(|| format!("reading {}", ca_file.display()))? {
        let ca = ca.with_context(|| format!("{}: not a PEM certificate", ca_file.display()))?;
        roots.add(ca).with_context(|| format!("{}: not a usable CA certificate", ca_file.display()))?;
    }
    anyhow::ensure!(!roots.is_empty(), "{}: holds no certificate", ca_file.display());
    let cert_file = certs.join("cert.pem");
    let chain = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: not PEM certificates", cert_file.display()))?;
    let key_file = certs.join("key.pem");
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .with_context(|| format!("{}: not a PEM private key", key_file.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .with_context(|| format!("{} does not go with {}", key_file.display(), cert_file.display()))
}

/// A Docker client over HTTPS with `tls`, through bollard's custom
/// transport (the same hyper client bollard builds for itself).
fn connect_tls(address: &str, tls: rustls::ClientConfig) -> anyhow::Result<Docker> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    // Connections are kept for the next call (bollard's own clients keep
    // none): a TLS handshake per call made reading prod before a deploy
    // take 0.9 s, sixteen calls of about 50 ms each. An idle one is
    // dropped after POOL_IDLE, well before any server would close it;
    // one the engine closed meanwhile is noticed before it is used.
    let client = std::sync::Arc::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(https),
    );
    let transport = move |request: bollard::BollardRequest| {
        let client = client.clone();
        async move { client.request(request).await.map_err(bollard::errors::Error::from) }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some(format!("https://{address}")),
        API_TIMEOUT.as_secs(),
        API_DEFAULT_VERSION,
    )
    .map_err(|e| anyhow::anyhow!("prod (tcp://{address}): cannot make a TLS client: {e}"))
}

/// The TLS error somewhere in `error`'s causes, if the handshake failed.
fn tls_refusal(error: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        // An io::Error's source() skips the error it wraps (and hyper wraps
        // the TLS error in two): look inside instead.
        let wrapped = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        cause = match wrapped {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Why prod's certificate was refused, and what to do.
fn explain_refusal(reason: &rustls::Error, certs: &Path) -> String {
    use rustls::CertificateError as C;
    let ca = certs.join("ca.pem");
    let fix = "`harness lab up` (lab/up.sh) re-issues the lab's certificates";
    match reason {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
            "its certificate is not signed by the lab's CA ({}, unknown CA): either this is not prod, or prod's \
             certificates were made by another CA; {fix} and copies its CA there",
            ca.display()
        ),
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!("its certificate has expired; {fix}, and restarts prod's engine with the new one")
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "its certificate is not valid yet: is this machine's clock right?".to_owned()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!("its certificate does not name this address (prod.docker_host); {fix}")
        }
        other => format!("{other}; {fix}"),
    }
}

/// Docker 20.10 speaks API 1.41 and refuses newer clients: agree on one.
/// Bounded, so an unreachable host fails in seconds.
async fn negotiate(docker: Docker, which: &str, hint: &str) -> anyhow::Result<Docker> {
    match tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(e)) => Err(anyhow::anyhow!("{which} does not answer: {e}; {hint}")),
        Err(_) => Err(anyhow::anyhow!("{which} did not answer within 10 s; {hint}")),
    }
}
