//! `harness push` (steps "push" and "push-tests"): an image's two tags,
//! `VERSION` and `latest`, pushed to the registry by the cd engine; then the
//! digest read back from the registry's own API and recorded in
//! `.harness/last-push.json`, where the deploy step finds what to pull
//! (`REGISTRY/NAME@DIGEST`, see [`crate::release`]). The registry's
//! credentials and API are in [`crate::registry`].

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;
use indicatif::{HumanBytes, ProgressBar};

use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::progress::Reporter;
use crate::registry::{credentials, Registry, RegistryError};
use crate::release::{write_record, LastPush, PushRecord};
use crate::version::Version;

/// One push of one tag. books-ms's tests image is about 1 GB (the Rust toolchain);
/// its first push to an empty registry takes under a minute here, so ten
/// leave room for a slow disk without letting a hung engine hang the run.
const PUSH_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no image {image} on the cd engine: run `harness build` first")]
    NoImage { image: String },
    #[error("pushing {image}: {detail}")]
    Push { image: String, detail: String },
    #[error("pushing {image} took longer than {} s", PUSH_TIMEOUT.as_secs())]
    Timeout { image: String },
    #[error("the registry {registry} has no manifest for {image} right after its push")]
    NotInRegistry { registry: String, image: String },
    #[error("the engine pushed {image} as {pushed}, but the registry serves {served}")]
    DigestMismatch { image: String, pushed: String, served: String },
}

/// Step "push": the service image, recorded as the one to deploy.
pub async fn push_service(
    repo: &Path,
    config: &Config,
    version: &Version,
    reporter: &Reporter,
) -> anyhow::Result<PushRecord> {
    let record = push(config, &config.service_repository(), version, reporter).await?;
    write_record(repo, |last| {
        *last = LastPush { service: Some(record.clone()), tests: None };
    })?;
    Ok(record)
}

/// Step "push-tests" (the pipeline's last): the tests image; None when the
/// service has none (`build.tests_dockerfile` unset).
pub async fn push_tests(
    repo: &Path,
    config: &Config,
    version: &Version,
    reporter: &Reporter,
) -> anyhow::Result<Option<PushRecord>> {
    if config.build.tests_dockerfile().is_none() {
        return Ok(None);
    }
    let record = push(config, &config.tests_repository(), version, reporter).await?;
    write_record(repo, |last| last.tests = Some(record.clone()))?;
    Ok(Some(record))
}

/// Pushes `repository:VERSION` and `repository:latest` (the same image),
/// and returns the digest the registry serves for it.
async fn push(config: &Config, repository: &str, version: &Version, reporter: &Reporter) -> anyhow::Result<PushRecord> {
    let cd = crate::engine::cd().await?;
    let credentials = credentials(config)?;
    let registry = Registry::open(&cd, config, credentials).await?;
    let tag = &version.version;
    let image = format!("{repository}:{tag}");

    // `latest` is made to be this very image: pushing it is then free.
    match cd.call(format!("for {image}"), cd.docker.inspect_image(&image)).await {
        Ok(_) => {}
        Err(e) if e.status() == Some(404) => return Err(PushError::NoImage { image }.into()),
        Err(e) => return Err(PushError::from(e).into()),
    }
    let latest = TagImageOptionsBuilder::new().repo(repository).tag("latest").build();
    cd.call(format!("to tag {image} as {repository}:latest"), cd.docker.tag_image(&image, Some(latest)))
        .await
        .map_err(PushError::from)?;

    let start = Instant::now();
    let pushed = push_tag(&cd, &registry, repository, tag, reporter).await?;
    push_tag(&cd, &registry, repository, "latest", reporter).await?;

    let name = repository.strip_prefix(&format!("{}/", registry.address)).unwrap_or(repository);
    let served = registry
        .digest(name, tag)
        .await?
        .ok_or_else(|| PushError::NotInRegistry { registry: registry.address.clone(), image: image.clone() })?;
    if let Some(pushed) = pushed.filter(|p| *p != served) {
        return Err(PushError::DigestMismatch { image, pushed, served }.into());
    }
    reporter.line(format!("pushed {image} and :latest as {served} in {:.1} s", start.elapsed().as_secs_f64()));
    let pushed_at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the time of the push")?;
    Ok(PushRecord {
        image: repository.to_owned(),
        tag: tag.clone(),
        digest: served,
        version: version.version.clone(),
        revision: version.revision.clone(),
        pushed_at,
    })
}

/// One tag, with a bar per layer being uploaded (on a terminal). Returns
/// the digest the engine reports for it, if it reported one.
async fn push_tag(
    cd: &Engine,
    registry: &Registry,
    repository: &str,
    tag: &str,
    reporter: &Reporter,
) -> Result<Option<String>, PushError> {
    let image = format!("{repository}:{tag}");
    let spinner = reporter.spinner(format!("push {image}"));
    let mut layers = Layers::new(reporter);
    let options = PushImageOptionsBuilder::new().tag(tag).build();
    let credentials = registry.credentials.as_ref().map(|c| c.to_docker(&registry.address));
    let mut stream = cd.docker.push_image(repository, Some(options), credentials);
    let mut digest = None;
    let outcome = tokio::time::timeout(PUSH_TIMEOUT, async {
        while let Some(message) = stream.next().await {
            let message = message.map_err(|e| push_failure(registry, &image, &e.to_string()))?;
            let status = message.status.unwrap_or_default();
            if let Some(d) = digest_in(&status) {
                digest = Some(d);
            }
            layers.update(&status, message.progress_detail.as_ref());
        }
        Ok(())
    })
    .await;
    layers.finish();
    spinner.finish_and_clear();
    match outcome {
        Err(_) => Err(PushError::Timeout { image }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => {
            reporter.line(format!("  {image}: {}", layers.summary()));
            Ok(digest)
        }
    }
}

/// What a failed push means for the user: refused credentials and an
/// unreachable registry get their own errors.
fn push_failure(registry: &Registry, image: &str, detail: &str) -> PushError {
    let lower = detail.to_lowercase();
    if ["unauthorized", "authentication required", "no basic auth credentials"].iter().any(|s| lower.contains(s)) {
        return registry.refused(detail).into();
    }
    if ["connection refused", "no route to host", "i/o timeout", "no such host"].iter().any(|s| lower.contains(s)) {
        return RegistryError::Unreachable { registry: registry.address.clone(), detail: detail.to_owned() }.into();
    }
    PushError::Push { image: image.to_owned(), detail: detail.to_owned() }
}

/// `VERSION: digest: sha256:... size: 1234`, the engine's last message.
fn digest_in(status: &str) -> Option<String> {
    let rest = status.split_once("digest: ")?.1;
    let digest = rest.split_whitespace().next()?;
    digest.starts_with("sha256:").then(|| digest.to_owned())
}

/// The per-layer progress of one push.
///
/// bollard's `PushImageInfo` drops the layer id that the engine sends with
/// each message, so a layer is told apart by its size (`progressDetail.total`),
/// which differs between layers in practice; two of exactly the same size
/// would share a bar, which only blurs the display.
struct Layers<'a> {
    reporter: &'a Reporter,
    bars: HashMap<i64, ProgressBar>,
    uploaded: usize,
    existing: usize,
    mounted: usize,
}

impl<'a> Layers<'a> {
    fn new(reporter: &'a Reporter) -> Self {
        Layers { reporter, bars: HashMap::new(), uploaded: 0, existing: 0, mounted: 0 }
    }

    fn update(&mut self, status: &str, progress: Option<&bollard::models::ProgressDetail>) {
        match status {
            "Pushed" => self.uploaded += 1,
            "Layer already exists" => self.existing += 1,
            s if s.starts_with("Mounted from") => self.mounted += 1,
            "Pushing" => {
                let Some((Some(current), Some(total))) = progress.map(|p| (p.current, p.total)) else {
                    return;
                };
                if total <= 0 {
                    return;
                }
                let reporter = self.reporter;
                let bar = self
                    .bars
                    .entry(total)
                    .or_insert_with(|| reporter.bytes(format!("layer {}", HumanBytes(total as u64)), total as u64));
                bar.set_position(current.clamp(0, total) as u64);
            }
            _ => {}
        }
    }

    fn finish(&self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
    }

    fn summary(&self) -> String {
        let total = self.uploaded + self.existing + self.mounted;
        let mut parts = vec![format!("{} uploaded", self.uploaded)];
        if self.existing > 0 {
            parts.push(format!("{} already there", self.existing));
        }
        if self.mounted > 0 {
            parts.push(format!("{} mounted from another repository", self.mounted));
        }
        format!("{total} layer(s): {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_last_message_carries_the_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(digest_in(&format!("abc123: digest: {digest} size: 739")), Some(digest));
        assert_eq!(digest_in("Pushed"), None);
    }
}
