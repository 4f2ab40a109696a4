//! `harness prune`: what is kept and what goes, decided by pure functions
//! from what was read ([`choose_in_registry`], [`choose_on_engine`]), then
//! removed by [`act`]; `--dry-run` prints the same choice and removes
//! nothing.
//!
//! Kept: the last `--keep` releases of the service (by the time their
//! image was made: the `org.opencontainers.image.created` label), every
//! release a history can still roll back to (each served deploy's release
//! and the one it replaced, in the histories of both targets: they pull
//! from the same registry), whatever `latest` points to, and every image a
//! container uses. The tests image goes with its service image (same tag).
//! Removed: in the registry the other service and tests manifests (with
//! every tag pointing to them), then its garbage collection
//! (`registry.gc_command`) so that the space comes back; on the target's
//! engine, the project's stopped app containers of releases not kept, then
//! the service images and dangling images that no container uses.

use std::collections::{BTreeMap, BTreeSet};

use bollard::models::{ContainerSummary, ImageSummary};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use serde::Serialize;

use super::history::Entry;
use super::names::{PROJECT_LABEL, ROLE_LABEL};
use crate::engine::Engine;
use crate::registry::Registry;

/// What `harness prune` keeps by default.
pub const DEFAULT_KEEP: usize = 5;

/// One manifest of a repository in the registry, with its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// The repository's name in the registry (`books-ms`).
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// RFC 3339 (the image's created label), or "" when unknown.
    pub created: String,
}

/// A manifest kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    #[serde(flatten)]
    pub manifest: Manifest,
    /// `recent` (one of the last N), `history` (a rollback can go back to
    /// it), `latest` (the tag points to it), `in-use` (a container on the
    /// target runs it), `service` (a tests image whose service image is
    /// kept).
    pub why: Vec<&'static str>,
}

/// The registry's part of the choice.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct RegistryChoice {
    pub kept: Vec<Kept>,
    pub removed: Vec<Manifest>,
}

/// The digest of `image` when it is `REPOSITORY@sha256:...` of `repository`
/// (`REGISTRY/NAME`).
pub fn digest_in(image: &str, repository: &str) -> Option<String> {
    image.strip_prefix(repository)?.strip_prefix('@').map(str::to_owned)
}

/// Every release the histories could still roll back to: each served
/// deploy's release and the release it replaced, as images.
pub fn rollback_targets(histories: &[Vec<Entry>]) -> BTreeSet<String> {
    let mut images = BTreeSet::new();
    for entry in histories.iter().flatten().filter(|e| e.outcome.served()) {
        images.insert(entry.release.image.clone());
        if let Some(previous) = &entry.previous {
            images.insert(previous.image.clone());
        }
    }
    images
}

/// The choice in the registry: `service` and `tests` manifests (any
/// order), the service digests a history or a container needs
/// (`protected`, with why), and how many recent releases to keep.
pub fn choose_in_registry(
    service: &[Manifest],
    tests: &[Manifest],
    protected: &BTreeMap<String, &'static str>,
    keep: usize,
) -> RegistryChoice {
    let mut service = service.to_vec();
    // Newest first; a tie (one commit built twice) by tag, for a stable choice.
    service.sort_by(|a, b| (&b.created, &b.tags).cmp(&(&a.created, &a.tags)));
    let mut choice = RegistryChoice::default();
    let mut kept_tags = BTreeSet::new();
    for (i, manifest) in service.into_iter().enumerate() {
        let mut why = Vec::new();
        if i < keep {
            why.push("recent");
        }
        if let Some(reason) = protected.get(&manifest.digest) {
            why.push(*reason);
        }
        if manifest.tags.iter().any(|t| t == "latest") {
            why.push("latest");
        }
        if why.is_empty() {
            choice.removed.push(manifest);
        } else {
            kept_tags.extend(manifest.tags.iter().filter(|t| *t != "latest").cloned());
            choice.kept.push(Kept { manifest, why });
        }
    }
    let mut tests = tests.to_vec();
    tests.sort_by(|a, b| (&b.created, &b.tags).cmp(&(&a.created, &a.tags)));
    for manifest in tests {
        let mut why = Vec::new();
        if manifest.tags.iter().any(|t| kept_tags.contains(t)) {
            why.push("service");
        }
        if manifest.tags.iter().any(|t| t == "latest") {
            why.push("latest");
        }
        if why.is_empty() {
            choice.removed.push(manifest);
        } else {
            choice.kept.push(Kept { manifest, why });
        }
    }
    choice
}

/// A container on the target's engine, as the choice needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineContainer {
    pub name: String,
    pub state: String,
    /// The image's id (`sha256:...`).
    pub image_id: String,
    /// `org.books-ms.project` and `org.books-ms.role`, when set.
    pub project: Option<String>,
    pub role: Option<String>,
}

/// An image on the target's engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineImage {
    pub id: String,
    /// `REGISTRY/NAME@sha256:...` and `NAME:TAG` it is known by.
    pub references: Vec<String>,
    pub size: i64,
}

impl EngineImage {
    /// Pulled by digest from `repository`: the digests it is known by there.
    fn digests_in(&self, repository: &str) -> Vec<String> {
        self.references.iter().filter_map(|r| digest_in(r, repository)).collect()
    }

    /// Known by no name at all (a rebuild's leftover, Docker's "dangling").
    fn dangling(&self) -> bool {
        self.references.iter().all(|r| r.starts_with("<none>"))
    }

    /// Known only by names of `repository` (by digest or tag): removing it
    /// takes nothing of another repository's.
    fn only_in(&self, repository: &str) -> bool {
        let ours = |r: &String| {
            r.starts_with("<none>") || r.strip_prefix(repository).is_some_and(|rest| rest.starts_with(['@', ':']))
        };
        self.references.iter().all(ours)
    }
}

/// The engine's part of the choice.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct EngineChoice {
    pub containers: Vec<EngineContainer>,
    pub images: Vec<EngineImage>,
}

/// The choice on an engine: the `project`'s stopped app containers whose
/// image is none of the `kept` service digests (of `repository`); then the
/// images of `repository` that are not kept and the dangling ones, when no
/// container left uses them. Nothing else is touched: other projects'
/// containers, the database, the proxy, the lock and the history, and
/// every image a container uses.
pub fn choose_on_engine(
    containers: &[EngineContainer],
    images: &[EngineImage],
    project: &str,
    repository: &str,
    kept: &BTreeSet<String>,
) -> EngineChoice {
    let by_id: BTreeMap<&str, &EngineImage> = images.iter().map(|i| (i.id.as_str(), i)).collect();
    let is_kept =
        |image_id: &str| by_id.get(image_id).is_some_and(|i| i.digests_in(repository).iter().any(|d| kept.contains(d)));
    let stopped = |c: &EngineContainer| matches!(c.state.as_str(), "exited" | "dead" | "created");
    let (removed, staying): (Vec<&EngineContainer>, Vec<&EngineContainer>) = containers.iter().partition(|c| {
        c.project.as_deref() == Some(project) && c.role.as_deref() == Some("app") && stopped(c) && !is_kept(&c.image_id)
    });
    let used: BTreeSet<&str> = staying.iter().map(|c| c.image_id.as_str()).collect();
    let images = images
        .iter()
        .filter(|i| !used.contains(i.id.as_str()))
        .filter(|i| {
            let digests = i.digests_in(repository);
            i.dangling() || (!digests.is_empty() && i.only_in(repository) && !digests.iter().any(|d| kept.contains(d)))
        })
        .cloned()
        .collect();
    EngineChoice { containers: removed.into_iter().cloned().collect(), images }
}

// ------------------------------------------------------------------ reading

/// The manifests of repository `name` in the registry, each with its tags
/// and when its image was made.
pub async fn manifests(registry: &Registry, name: &str) -> anyhow::Result<Vec<Manifest>> {
    let mut by_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for tag in registry.tags(name).await? {
        // A tag listed and gone before its manifest was read: a push or a
        // delete beside this run; it is simply not counted.
        if let Some(digest) = registry.digest(name, &tag).await? {
            by_digest.entry(digest).or_default().push(tag);
        }
    }
    let mut manifests = Vec::new();
    for (digest, mut tags) in by_digest {
        tags.sort();
        let created = registry.created(name, &digest).await?;
        manifests.push(Manifest { repository: name.to_owned(), digest, tags, created });
    }
    Ok(manifests)
}

/// Every container on the engine, running or not.
pub async fn engine_containers(engine: &Engine) -> anyhow::Result<Vec<EngineContainer>> {
    let options = ListContainersOptionsBuilder::default().all(true).build();
    let containers: Vec<ContainerSummary> =
        engine.call("for its containers", engine.docker.list_containers(Some(options))).await?;
    Ok(containers
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            EngineContainer {
                name: super::containers::listed_name(c.names),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                project: labels.get(PROJECT_LABEL).cloned(),
                role: labels.get(ROLE_LABEL).cloned(),
            }
        })
        .collect())
}

/// Every image on the engine (intermediate ones aside).
pub async fn engine_images(engine: &Engine) -> anyhow::Result<Vec<EngineImage>> {
    let options = ListImagesOptionsBuilder::default().all(false).build();
    let images: Vec<ImageSummary> = engine.call("for its images", engine.docker.list_images(Some(options))).await?;
    Ok(images
        .into_iter()
        .map(|i| EngineImage {
            id: i.id,
            references: i.repo_digests.into_iter().chain(i.repo_tags).collect(),
            size: i.size,
        })
        .collect())
}

// ------------------------------------------------------------------ acting

/// What was removed from an engine, and what could not be.
#[derive(Debug, Default, Serialize)]
pub struct EngineRemoved {
    pub containers: Vec<String>,
    pub images: Vec<String>,
    /// The removed images' sizes added up: the most this freed (a layer
    /// that a kept image shares stays).
    pub freed_bytes_at_most: i64,
    pub skipped: Vec<String>,
}

/// Removes the chosen containers, then the chosen images. An image that
/// turned out to be in use (a deploy is not possible meanwhile: the lock is
/// held; a container of another project made since) is skipped and named.
pub async fn act(engine: &Engine, choice: &EngineChoice) -> anyhow::Result<EngineRemoved> {
    let mut removed = EngineRemoved::default();
    for container in &choice.containers {
        let options = RemoveContainerOptionsBuilder::default().v(false).build();
        let what = format!("to remove the stopped container {}", container.name);
        match engine.call(what, engine.docker.remove_container(&container.name, Some(options))).await {
            Ok(()) => removed.containers.push(container.name.clone()),
            Err(e) => removed.skipped.push(format!("container {}: {e:#}", container.name)),
        }
    }
    for image in &choice.images {
        let options = RemoveImageOptionsBuilder::default().force(false).build();
        let what = format!("to remove the image {}", image.id);
        match engine.call(what, engine.docker.remove_image(&image.id, Some(options), None)).await {
            Ok(_) => {
                removed.images.push(image.references.first().cloned().unwrap_or_else(|| image.id.clone()));
                removed.freed_bytes_at_most += image.size;
            }
            Err(e) => removed.skipped.push(format!("image {}: {e:#}", image.id)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::history::Outcome;

    const REPO: &str = "10.200.0.1:5000/books-ms";

    fn manifest(repository: &str, digest: &str, tags: &[&str], created: &str) -> Manifest {
        Manifest {
            repository: repository.to_owned(),
            digest: digest.to_owned(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            created: created.to_owned(),
        }
    }

    /// Releases v1..=v8, v8 newest (and `latest`); tests images for each.
    fn eight() -> (Vec<Manifest>, Vec<Manifest>) {
        let service = (1..=8)
            .map(|i| {
                let tags: Vec<String> =
                    if i == 8 { vec![format!("v{i}"), "latest".into()] } else { vec![format!("v{i}")] };
                let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                manifest("books-ms", &format!("sha256:s{i}"), &tags, &format!("2026-12-0{i}T00:00:00Z"))
            })
            .collect();
        let tests = (1..=8)
            .map(|i| manifest("books-ms-tests", &format!("sha256:t{i}"), &[&format!("v{i}")], "2026-12-01T00:00:00Z"))
            .collect();
        (service, tests)
    }

    fn digests(manifests: &[Manifest]) -> Vec<&str> {
        manifests.iter().map(|m| m.digest.as_str()).collect()
    }

    #[test]
    fn the_last_n_releases_and_what_a_history_can_roll_back_to_are_kept_with_their_tests_images() {
        let (service, tests) = eight();
        let protected = BTreeMap::from([("sha256:s2".to_owned(), "history")]);

        let choice = choose_in_registry(&service, &tests, &protected, 3);

        let kept: Vec<(&str, Vec<&str>)> =
            choice.kept.iter().map(|k| (k.manifest.digest.as_str(), k.why.clone())).collect();
        assert_eq!(
            kept,
            [
                ("sha256:s8", vec!["recent", "latest"]),
                ("sha256:s7", vec!["recent"]),
                ("sha256:s6", vec!["recent"]),
                ("sha256:s2", vec!["history"]),
                ("sha256:t8", vec!["service"]),
                ("sha256:t7", vec!["service"]),
                ("sha256:t6", vec!["service"]),
                ("sha256:t2", vec!["service"]),
            ]
        );
        let mut removed = digests(&choice.removed);
        removed.sort();
        assert_eq!(
            removed,
            ["sha256:s1", "sha256:s3", "sha256:s4", "sha256:s5", "sha256:t1", "sha256:t3", "sha256:t4", "sha256:t5"]
        );
    }

    #[test]
    fn keeping_more_than_there_are_removes_nothing_and_keep_zero_keeps_only_what_is_needed() {
        let (service, tests) = eight();
        let choice = choose_in_registry(&service, &tests, &BTreeMap::new(), 50);
        assert!(choice.removed.is_empty());
        let choice = choose_in_registry(&service, &tests, &BTreeMap::new(), 0);
        let kept: Vec<&str> = choice.kept.iter().map(|k| k.manifest.digest.as_str()).collect();
        assert_eq!(kept, ["sha256:s8", "sha256:t8"], "only what latest points to, and its tests image (tag v8)");
    }

    #[test]
    fn a_history_protects_each_served_release_and_the_one_it_replaced_never_a_failed_one() {
        let entry = |image: &str, previous: Option<&str>, outcome| {
            let mut e = crate::deploy::core::testing::entry(image, outcome);
            e.previous = previous.map(|p| crate::release::Release::given(p.to_owned(), "v".into(), None));
            e
        };
        let prod = vec![
            entry(&format!("{REPO}@sha256:a"), None, Outcome::Succeeded),
            entry(&format!("{REPO}@sha256:b"), Some(&format!("{REPO}@sha256:a")), Outcome::Succeeded),
            entry(&format!("{REPO}@sha256:c"), Some(&format!("{REPO}@sha256:b")), Outcome::Failed),
        ];
        let swarm = vec![entry(&format!("{REPO}@sha256:d"), None, Outcome::Unchanged)];
        let images = rollback_targets(&[prod, swarm]);
        let digests: Vec<String> = images.iter().filter_map(|i| digest_in(i, REPO)).collect();
        assert_eq!(digests, ["sha256:a", "sha256:b", "sha256:d"]);
        assert_eq!(digest_in(&format!("{REPO}-tests@sha256:a"), REPO), None, "another repository");
    }

    fn container(name: &str, state: &str, image: &str, project: &str, role: &str) -> EngineContainer {
        EngineContainer {
            name: name.into(),
            state: state.into(),
            image_id: image.into(),
            project: Some(project.into()),
            role: Some(role.into()),
        }
    }

    fn image(id: &str, references: &[String]) -> EngineImage {
        EngineImage { id: id.into(), references: references.to_vec(), size: 100 }
    }

    #[test]
    fn on_the_engine_only_stopped_app_containers_of_dropped_releases_and_unused_images_go() {
        let at = |d: &str| format!("{REPO}@sha256:{d}");
        let images = vec![
            image("id-live", &[at("live")]),
            image("id-kept", &[at("kept")]),
            image("id-old", &[at("old")]),
            image("id-old-stopped", &[at("older")]),
            image("id-other-project", &[at("other")]),
            image("id-db", &["10.200.0.1:5000/books-lab/ferretdb@sha256:x".to_owned()]),
            image("id-dangling", &["<none>@<none>".to_owned(), "<none>:<none>".to_owned()]),
            image("id-unused-db", &["10.200.0.1:5000/books-lab/ferretdb@sha256:y".to_owned()]),
            image("id-shared", &[at("shared"), "10.200.0.1:5000/books-ms-bench@sha256:shared".to_owned()]),
        ];
        let containers = vec![
            container("books-ms-blue", "running", "id-live", "books-ms", "app"),
            container("books-ms-green", "exited", "id-kept", "books-ms", "app"),
            container("books-ms-old", "exited", "id-old-stopped", "books-ms", "app"),
            container("books-ms-history", "created", "id-db", "books-ms", "history"),
            container("books-ms-lock", "created", "id-old", "books-ms", "deploy-lock"),
            container("elsewhere-green", "exited", "id-other-project", "elsewhere", "app"),
        ];
        let kept = BTreeSet::from(["sha256:live".to_owned(), "sha256:kept".to_owned()]);

        let choice = choose_on_engine(&containers, &images, "books-ms", REPO, &kept);

        let names: Vec<&str> = choice.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["books-ms-old"]);
        let ids: Vec<&str> = choice.images.iter().map(|i| i.id.as_str()).collect();
        // id-old is the lock's (in use); another project's container keeps
        // its image; an unused image of another repository stays, and so
        // does one that another repository's name shares.
        assert_eq!(ids, ["id-old-stopped", "id-dangling"]);
    }
}
