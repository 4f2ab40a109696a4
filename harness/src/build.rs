//! `harness build` (step "build"): the service's images, built by the cd
//! engine through its API with the repo root as context (src/context.rs):
//!
//! - the service image from `build.dockerfile`, tagged
//!   `REGISTRY/NAME:VERSION` and `:latest`. Its build args VERSION,
//!   REVISION, CREATED and SOURCE (when the workspace's Cargo.toml names
//!   one) may fill the Dockerfile's labels. The image must carry
//!   `org.opencontainers.image.revision` (the deploy's revision gate reads
//!   it): the harness sets it itself, unless the Dockerfile names that
//!   label (books-ms's does, from `REVISION`: its image stays the same as
//!   before, without an extra `LABEL` step), and checks it either way. CREATED is the commit's time, not the build's, so
//!   that an unchanged tree hits the build cache at every step and gives
//!   the very same image. What the image ships (a binary the package step
//!   made) is the Dockerfile's business: a missing file fails its `COPY`,
//!   named;
//! - the tests image from `build.tests_dockerfile`, when set, tagged
//!   `REGISTRY/NAME-tests:VERSION` and `:latest`, given `RUST_IMAGE`
//!   (`images.rust`). The previous `:latest` is pulled from the registry
//!   first and offered as a cache source, as the original CD script did, so
//!   a fresh cd host reuses its layers.
//!
//! Progress is a spinner naming the Dockerfile step; a failure names the
//! image, the Dockerfile and the step, with the last lines of output.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;
use serde::Serialize;

use crate::config::Config;
use crate::context::{self, ContextError};
use crate::engine::{Engine, EngineError};
use crate::progress::Reporter;
use crate::version::Version;

/// The label the harness sets on the service image: the revision a
/// deploy's revision gate expects the release to report.
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
/// One image build. A Dockerfile that only copies files builds in seconds;
/// this only turns a hung engine (or a build that never ends) into an
/// error.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
/// The pull of the previous tests image (books-ms's is about 1 GB, from
/// the local registry).
const CACHE_PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// Lines of build output shown with a failure.
const TAIL_LINES: usize = 12;

/// One built image.
#[derive(Debug, Clone, Serialize)]
pub struct Built {
    /// `REPOSITORY:VERSION`.
    pub image: String,
    /// `REPOSITORY:latest`, the same image.
    pub latest: String,
    /// The engine's image id, `sha256:...`.
    pub id: String,
    pub dockerfile: String,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "{setting} `{dockerfile}`: no such file in {}; set [build] {key} in harness.toml to the Dockerfile's path \
         (relative to the repository's root, the build context)",
        .repo.display(), key = .setting.trim_start_matches("build.")
    )]
    NoDockerfile { setting: &'static str, dockerfile: String, repo: std::path::PathBuf },
    #[error(
        "{setting} `{dockerfile}` is not inside the repository: the build context is the repository's root; give \
         a relative path without `..`"
    )]
    OutsideContext { setting: &'static str, dockerfile: String },
    #[error("the build context of {image} ({dockerfile}): {source}")]
    Context { image: String, dockerfile: String, source: ContextError },
    #[error("building {image} from {dockerfile} failed{}: {message}{}", at_step(.step), last_lines(.tail))]
    Failed { image: String, dockerfile: String, step: Option<String>, message: String, tail: Vec<String> },
    #[error("building {image} from {dockerfile} took longer than {} s{}", BUILD_TIMEOUT.as_secs(), at_step(.step))]
    Timeout { image: String, dockerfile: String, step: Option<String> },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "{image} carries {REVISION_LABEL} `{found}`, not the revision {revision} it was built from: its Dockerfile \
         ({dockerfile}) sets that label; set it from the build arg (ARG REVISION, LABEL \
         {REVISION_LABEL}=\"${{REVISION}}\") or remove it (the harness then sets it)"
    )]
    WrongRevision { image: String, dockerfile: String, found: String, revision: String },
    #[error("{0}")]
    Repo(String),
}

fn at_step(step: &Option<String>) -> String {
    step.as_ref().map(|s| format!(" at `{s}`")).unwrap_or_default()
}

fn last_lines(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    format!("; its last output:\n    {}", lines.join("\n    "))
}

/// `dockerfile` (the setting `setting`) as the engine takes it: a path
/// relative to the context `repo`, with `/`, of a file that is there.
fn dockerfile_in(repo: &Path, dockerfile: &Path, setting: &'static str) -> Result<String, BuildError> {
    use std::path::Component;
    let shown = dockerfile.display().to_string();
    let relative = dockerfile.strip_prefix(repo).unwrap_or(dockerfile);
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return Err(BuildError::OutsideContext { setting, dockerfile: shown }),
        }
    }
    if parts.is_empty() || !repo.join(relative).is_file() {
        return Err(BuildError::NoDockerfile { setting, dockerfile: shown, repo: repo.to_owned() });
    }
    Ok(parts.join("/"))
}

/// The service image from `build.dockerfile`, labelled with its revision.
pub async fn service_image(
    cd: &Engine,
    repo: &Path,
    config: &Config,
    version: &Version,
    reporter: &Reporter,
) -> Result<Built, BuildError> {
    let dockerfile = dockerfile_in(repo, &config.build.dockerfile, "build.dockerfile")?;
    let mut args = HashMap::from([
        ("VERSION".to_owned(), version.version.clone()),
        ("REVISION".to_owned(), version.revision.clone()),
        ("CREATED".to_owned(), commit_time(repo)?),
    ]);
    // Else the Dockerfile's default stands.
    if let Some(source) = source_url(repo) {
        args.insert("SOURCE".to_owned(), source);
    }
    // A label given with the build is one more step (and image) than the
    // Dockerfile's own: only when the Dockerfile does not set it.
    let text = std::fs::read_to_string(repo.join(&dockerfile))
        .map_err(|e| BuildError::Repo(format!("cannot read {}: {e}", repo.join(&dockerfile).display())))?;
    let labels = if text.contains(REVISION_LABEL) {
        HashMap::new()
    } else {
        HashMap::from([(REVISION_LABEL.to_owned(), version.revision.clone())])
    };
    let target = Target { repository: config.service_repository(), tag: version.version.clone(), dockerfile, labels };
    let built = build(cd, repo, &target, args, None, reporter).await?;
    let inspect = cd.call(format!("for the image {}", built.image), cd.docker.inspect_image(&built.image)).await?;
    let found = inspect.config.and_then(|c| c.labels).and_then(|mut l| l.remove(REVISION_LABEL)).unwrap_or_default();
    if found != version.revision {
        return Err(BuildError::WrongRevision {
            image: built.image,
            dockerfile: built.dockerfile,
            found,
            revision: version.revision.clone(),
        });
    }
    Ok(built)
}

/// The tests image from `build.tests_dockerfile`, with the previous one's
/// layers as cache when the registry has it; None when the service has no
/// tests image.
pub async fn tests_image(
    cd: &Engine,
    repo: &Path,
    config: &Config,
    version: &Version,
    reporter: &Reporter,
) -> Result<Option<Built>, BuildError> {
    let Some(dockerfile) = config.build.tests_dockerfile() else { return Ok(None) };
    let dockerfile = dockerfile_in(repo, dockerfile, "build.tests_dockerfile")?;
    let repository = config.tests_repository();
    let cache = pull_previous(cd, config, &repository, reporter).await.then(|| format!("{repository}:latest"));
    let args = HashMap::from([("RUST_IMAGE".to_owned(), config.images.rust.clone())]);
    let target = Target { repository, tag: version.version.clone(), dockerfile, labels: HashMap::new() };
    build(cd, repo, &target, args, cache, reporter).await.map(Some)
}

struct Target {
    repository: String,
    tag: String,
    /// Relative to the context, `/`-separated.
    dockerfile: String,
    /// Set on the image by the engine, over the Dockerfile's.
    labels: HashMap<String, String>,
}

async fn build(
    cd: &Engine,
    repo: &Path,
    target: &Target,
    args: HashMap<String, String>,
    cache_from: Option<String>,
    reporter: &Reporter,
) -> Result<Built, BuildError> {
    let start = Instant::now();
    let image = format!("{}:{}", target.repository, target.tag);
    let dockerfile = target.dockerfile.as_str();
    let spinner = reporter.spinner(format!("build {image}: sending the context"));

    let root = repo.to_owned();
    let kept = dockerfile.to_owned();
    let context = tokio::task::spawn_blocking(move || context::tar(&root, &kept))
        .await
        .expect("making the build context does not panic")
        .map_err(|source| BuildError::Context { image: image.clone(), dockerfile: dockerfile.to_owned(), source })?;

    let mut options =
        BuildImageOptionsBuilder::new().dockerfile(dockerfile).t(&image).rm(true).forcerm(true).buildargs(&args);
    if !target.labels.is_empty() {
        options = options.labels(&target.labels);
    }
    if let Some(cache) = &cache_from {
        options = options.cachefrom(&vec![cache.clone()]);
    }
    let mut stream = cd.docker.build_image(options.build(), None, Some(bollard::body_full(context.into())));

    let mut step: Option<String> = None;
    let mut output: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let outcome = tokio::time::timeout(BUILD_TIMEOUT, async {
        while let Some(message) = stream.next().await {
            let info = message.map_err(|e| match e {
                bollard::errors::Error::DockerStreamError { error } => error,
                bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                other => other.to_string(),
            })?;
            for line in info.stream.iter().flat_map(|s| s.lines()).map(str::trim_end).filter(|l| !l.trim().is_empty()) {
                if line.starts_with("Step ") {
                    step = Some(line.to_owned());
                    spinner.set_message(format!("build {image}: {}", shorten(line, 60)));
                }
                if output.len() == TAIL_LINES {
                    output.pop_front();
                }
                output.push_back(line.to_owned());
            }
        }
        Ok::<(), String>(())
    })
    .await;
    spinner.finish_and_clear();
    match outcome {
        Err(_) => return Err(BuildError::Timeout { image, dockerfile: dockerfile.to_owned(), step }),
        Ok(Err(message)) => {
            return Err(BuildError::Failed {
                image,
                dockerfile: dockerfile.to_owned(),
                step,
                message,
                tail: output.into_iter().collect(),
            })
        }
        Ok(Ok(())) => {}
    }

    let latest = format!("{}:latest", target.repository);
    let options = TagImageOptionsBuilder::new().repo(&target.repository).tag("latest").build();
    cd.call(format!("to tag {image} as {latest}"), cd.docker.tag_image(&image, Some(options))).await?;
    let inspect = cd.call(format!("for the image {image}"), cd.docker.inspect_image(&image)).await?;
    let built = Built {
        id: inspect.id.unwrap_or_default(),
        image,
        latest,
        dockerfile: dockerfile.to_owned(),
        seconds: start.elapsed().as_secs_f64(),
    };
    reporter.line(format!("built {} ({}) in {:.1} s", built.image, short_id(&built.id), built.seconds));
    Ok(built)
}

/// The first `max` characters of a line, for one line of progress.
fn shorten(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Pulls `REPOSITORY:latest` for its layers; false when the registry has
/// none yet (the first build) or cannot give it, which only costs the cache.
async fn pull_previous(cd: &Engine, config: &Config, repository: &str, reporter: &Reporter) -> bool {
    let image = format!("{repository}:latest");
    let spinner = reporter.spinner(format!("pull {image} (layer cache)"));
    let credentials = match crate::registry::docker_credentials(config) {
        Ok(credentials) => credentials,
        Err(e) => {
            spinner.finish_and_clear();
            reporter.warn(format!("building {image} without the previous one as cache: {e:#}"));
            return false;
        }
    };
    let options = CreateImageOptionsBuilder::new().from_image(repository).tag("latest").build();
    let pulled = tokio::time::timeout(CACHE_PULL_TIMEOUT, async {
        let mut stream = cd.docker.create_image(Some(options), None, credentials);
        while let Some(message) = stream.next().await {
            message.map_err(|e| match e {
                bollard::errors::Error::DockerStreamError { error } => error,
                bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                other => other.to_string(),
            })?;
        }
        Ok::<(), String>(())
    })
    .await;
    spinner.finish_and_clear();
    match pulled {
        Ok(Ok(())) => {
            reporter.line(format!("pulled {image} for its layers"));
            true
        }
        Ok(Err(e)) if is_not_found(&e) => {
            reporter.line(format!("no {image} in the registry yet: building without a cache source"));
            false
        }
        Ok(Err(e)) => {
            reporter.warn(format!("building without the previous tests image as cache: pulling {image}: {e}"));
            false
        }
        Err(_) => {
            reporter.warn(format!(
                "building without the previous tests image as cache: pulling {image} took longer than {} s",
                CACHE_PULL_TIMEOUT.as_secs()
            ));
            false
        }
    }
}

/// What the engine says when the registry has no such image.
fn is_not_found(message: &str) -> bool {
    let message = message.to_lowercase();
    message.contains("not found") || message.contains("manifest unknown") || message.contains("does not exist")
}

/// The commit's time, RFC 3339 (git's strict ISO 8601).
fn commit_time(repo: &Path) -> Result<String, BuildError> {
    let time = crate::version::git(repo, &["show", "-s", "--format=%cI", "HEAD"])
        .map_err(|e| BuildError::Repo(format!("the commit time of HEAD in {}: {e:#}", repo.display())))?;
    if time.is_empty() {
        return Err(BuildError::Repo(format!("git show HEAD in {}: no commit time", repo.display())));
    }
    Ok(time)
}

/// The workspace's `repository` (Cargo.toml), the image's source label.
fn source_url(repo: &Path) -> Option<String> {
    use figment::providers::Format;
    figment::Figment::from(figment::providers::Toml::file(repo.join("Cargo.toml")))
        .extract_inner::<String>("workspace.package.repository")
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_image_the_dockerfile_and_the_step_with_the_last_lines() {
        let error = BuildError::Failed {
            image: "10.200.0.1:5000/books-ms:abc".into(),
            dockerfile: "Dockerfile".into(),
            step: Some("Step 7/9 : COPY dist/books-ms /app/books-ms".into()),
            message: "COPY failed: file not found".into(),
            tail: vec!["Step 7/9 : COPY dist/books-ms /app/books-ms".into()],
        };
        let text = error.to_string();
        assert!(
            text.starts_with("building 10.200.0.1:5000/books-ms:abc from Dockerfile failed at `Step 7/9"),
            "{text}"
        );
        assert!(text.contains("COPY failed") && text.contains("last output:\n    Step 7/9"), "{text}");
    }

    #[test]
    fn a_dockerfile_is_a_file_inside_the_context_or_an_error_naming_the_setting() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join("docker")).unwrap();
        std::fs::write(repo.path().join("docker/Dockerfile"), "FROM scratch\n").unwrap();
        let setting = "build.dockerfile";
        assert_eq!(dockerfile_in(repo.path(), Path::new("docker/Dockerfile"), setting).unwrap(), "docker/Dockerfile");
        assert_eq!(dockerfile_in(repo.path(), Path::new("./docker/Dockerfile"), setting).unwrap(), "docker/Dockerfile");
        let absolute = repo.path().join("docker/Dockerfile");
        assert_eq!(dockerfile_in(repo.path(), &absolute, setting).unwrap(), "docker/Dockerfile");
        let missing = dockerfile_in(repo.path(), Path::new("Dockerfile"), setting).unwrap_err().to_string();
        assert!(missing.starts_with("build.dockerfile `Dockerfile`: no such file in"), "{missing}");
        assert!(missing.contains("set [build] dockerfile in harness.toml"), "{missing}");
        let tests = dockerfile_in(repo.path(), Path::new("T"), "build.tests_dockerfile").unwrap_err().to_string();
        assert!(tests.contains("set [build] tests_dockerfile"), "{tests}");
        let outside = dockerfile_in(repo.path(), Path::new("../Dockerfile"), setting).unwrap_err().to_string();
        assert!(outside.contains("is not inside the repository"), "{outside}");
        let elsewhere = dockerfile_in(repo.path(), Path::new("/etc/hostname"), setting).unwrap_err().to_string();
        assert!(elsewhere.contains("is not inside the repository"), "{elsewhere}");
    }

    #[test]
    fn the_registry_saying_it_has_no_previous_image_is_not_found() {
        assert!(is_not_found("manifest for 10.200.0.1:5000/books-ms-tests:latest not found: manifest unknown"));
        assert!(!is_not_found("Get http://10.200.0.1:5000/v2/: dial tcp: connection refused"));
    }

    #[test]
    fn the_source_label_is_the_workspace_repository() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace.package]\nrepository = \"https://example.invalid/x\"\n",
        )
        .unwrap();
        assert_eq!(source_url(dir.path()).as_deref(), Some("https://example.invalid/x"));
        assert_eq!(source_url(&dir.path().join("nowhere")), None);
    }
}
