//! Connections to the two Docker engines: `cd` (this host's, over its
//! socket) and `prod` (a remote host, only through its TLS-protected API).

use std::time::Duration;

use anyhow::Context;
use bollard::{Docker, API_DEFAULT_VERSION};

use crate::config::Config;

/// How long one Docker API call may take before it counts as a hang.
/// Pulls, pushes and builds stream progress and are bounded separately.
pub const API_TIMEOUT: Duration = Duration::from_secs(120);

/// The local engine, where images are built and pushed from.
pub async fn cd() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_local_defaults()
        .context("cd engine: cannot make a client for the local Docker socket")?;
    negotiate(docker, "the cd engine (local socket)", "is dockerd running? `harness lab up` starts it").await
}

/// prod's engine, with the client certificate from `prod.cert_path`.
pub async fn prod(config: &Config) -> anyhow::Result<Docker> {
    let host = &config.prod.docker_host;
    let address = host.strip_prefix("tcp://").unwrap_or(host);
    let certs = &config.prod.cert_path;
    for file in ["ca.pem", "cert.pem", "key.pem"] {
        if !certs.join(file).is_file() {
            anyhow::bail!(
                "prod ({host}): no {file} in {} (prod.cert_path); `harness lab up` makes the lab's certificates",
                certs.display()
            );
        }
    }
    let docker = Docker::connect_with_ssl(
        address,
        &certs.join("key.pem"),
        &certs.join("cert.pem"),
        &certs.join("ca.pem"),
        API_TIMEOUT.as_secs(),
        API_DEFAULT_VERSION,
    )
    .with_context(|| format!("prod ({host}): cannot make a TLS client with the certificates in {}", certs.display()))?;
    negotiate(docker, &format!("prod ({host})"), "is prod up? `harness lab status` tells").await
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
