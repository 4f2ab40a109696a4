//! `harness prune` on the lab's single host: with releases A and B deployed
//! (A what B replaced) and five more pushed beside them, two older and
//! three newer than both, `prune --keep 2` leaves exactly the two newest,
//! A and B (what a rollback can go back to) and their tests images in the
//! registry, and on prod removes the images of the releases it dropped and
//! keeps the others'; the registry's garbage collection ran (read-only
//! window included) and it answers again; a rollback to A still works.
//! On the swarm, the workers' images go too: each through a job on that
//! worker, read back from the workers' own engines.
//! The test's releases live in repositories of its own, emptied at its
//! start and end. Needs the lab up and root; never skips.

mod common;

use std::collections::BTreeSet;

use common::engines::pull;
use common::prod::assert_no_lock;
use common::release::docker;
use common::target::{revision, Target};
use common::{prod_lock, Lab};

/// A tiny image with a created label, built on the cd engine and pushed as
/// `repository:tag`; its digest there.
fn push_tiny(repository: &str, tag: &str, created: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("release"), format!("{repository}:{tag}\n")).unwrap();
    let dockerfile = format!("FROM scratch\nCOPY release /release\nLABEL org.opencontainers.image.created={created}\n");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let image = format!("{repository}:{tag}");
    docker(&["build", "-q", "-t", &image]).arg(&dir.path().to_string_lossy()).succeeds().unwrap();
    push(&image)
}

/// Pushes `image` (`REPOSITORY:TAG`, on the cd engine); its digest.
fn push(image: &str) -> String {
    docker(&["push", image]).succeeds().unwrap();
    let repository = image.rsplit_once(':').unwrap().0;
    let digests = docker(&["inspect", "-f", "{{json .RepoDigests}}", image]).succeeds().unwrap();
    let digests: Vec<String> = serde_json::from_str(digests.stdout.trim()).unwrap();
    let digest = digests.iter().find_map(|d| d.strip_prefix(&format!("{repository}@"))).expect("a digest");
    digest.to_owned()
}

/// The digests prod holds images of in `repository` (`REGISTRY/NAME`).
async fn on_prod(prod: &bollard::Docker, repository: &str) -> BTreeSet<String> {
    let images = common::bounded(
        "listing prod's images",
        prod.list_images(None::<bollard::query_parameters::ListImagesOptions>),
    )
    .await
    .unwrap();
    let prefix = format!("{repository}@");
    images.iter().flat_map(|i| &i.repo_digests).filter_map(|d| d.strip_prefix(&prefix)).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_the_last_releases_and_what_history_can_roll_back_to_and_a_rollback_still_works() {
    let _lock = prod_lock().await;
    let lab = Lab::load();
    let target = Target::Prod;
    // Repositories of this test alone (it holds the lab): emptied first of
    // what a failed run left, and at the end.
    let (service_name, tests_name) = ("books-lab-tests/prune".to_owned(), "books-lab-tests/prune-tests".to_owned());
    empty(&lab, &[&service_name, &tests_name]).await;
    let service = format!("{}/{service_name}", lab.registry);
    let tests = format!("{}/{tests_name}", lab.registry);
    let env = [("HARNESS_IMAGES__SERVICE", service_name.as_str()), ("HARNESS_IMAGES__TESTS", tests_name.as_str())];

    // A and B of this run, copied into the test's repository by tag (the
    // same manifests, so the same digests).
    let (a, b) = target.releases().await;
    let mut release_digest = Vec::new();
    for (release, tag) in [(&a, "a"), (&b, "b")] {
        docker(&["pull", &release.image]).succeeds().unwrap();
        let image = format!("{service}:{tag}");
        docker(&["tag", &release.image, &image]).succeeds().unwrap();
        release_digest.push(push(&image));
        push_tiny(&tests, tag, "2026-01-01T00:00:00Z");
    }
    // Two releases older than A and B, three newer.
    let fakes = [
        ("old1", "2001-01-01T00:00:00Z"),
        ("old2", "2001-01-02T00:00:00Z"),
        ("new1", "2100-01-01T00:00:00Z"),
        ("new2", "2100-01-02T00:00:00Z"),
        ("new3", "2100-01-03T00:00:00Z"),
    ];
    let mut fake_digest = std::collections::BTreeMap::new();
    for (tag, created) in fakes {
        fake_digest.insert(tag, push_tiny(&service, tag, created));
        push_tiny(&tests, tag, created);
    }
    let prod = target.docker().await;
    for tag in ["old1", "new1", "new3"] {
        pull(&prod, &service, tag, Some(lab.docker_credentials()))
            .await
            .unwrap_or_else(|e| panic!("pulling {tag} on prod: {e}"));
    }
    let by_digest = |digest: &str| format!("{service}@{digest}");
    for digest in &release_digest {
        let run = target.deploy(&by_digest(digest), &env).await;
        assert!(run.success(), "deploying {digest} failed:\n{}", run.stderr);
    }
    assert_eq!(revision(&target.url()).await, b.revision);

    let dry = target.harness(&["--dry-run", "--json", "prune", "--keep", "2"], &env).await;
    let tags_before = lab.tags(&service_name).await;
    let run = target.harness(&["--json", "prune", "--keep", "2"], &env).await;

    assert!(dry.success(), "prune --dry-run:\n{}", dry.stderr);
    assert_eq!(tags_before.len(), 7, "the dry run removed nothing: {tags_before:?}");
    assert!(run.success(), "prune --keep 2:\n{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("a JSON report");
    let dry: serde_json::Value = serde_json::from_str(&dry.stdout).expect("a JSON dry run");
    assert_eq!(dry["registry"], report["registry"], "the dry run lists what the run removed");
    let expected: BTreeSet<String> = ["a", "b", "new2", "new3"].iter().map(|t| t.to_string()).collect();
    assert_eq!(lab.tags(&service_name).await, expected, "the service's tags after the prune");
    assert_eq!(lab.tags(&tests_name).await, expected, "the tests image's tags after the prune");
    let held = on_prod(&prod, &service).await;
    assert!(
        !held.contains(&fake_digest["old1"]) && !held.contains(&fake_digest["new1"]),
        "dropped releases' images stay on prod: {held:?}"
    );
    assert!(held.contains(&fake_digest["new3"]), "a kept release's image was removed from prod: {held:?}");
    assert!(release_digest.iter().all(|d| held.contains(d)), "A's or B's image was removed from prod: {held:?}");
    let (before, after) = (report["registry_bytes"][0].as_i64(), report["registry_bytes"][1].as_i64());
    assert!(matches!((before, after), (Some(b), Some(a)) if a <= b), "the registry's collection ran: {report}");
    assert_no_lock(&prod).await;

    // The registry is read-write again, and a rollback to A still works.
    let rolled = target.harness(&["rollback"], &env).await;
    assert!(rolled.success(), "rollback after the prune:\n{}", rolled.stderr);
    assert_eq!(revision(&target.url()).await, a.revision, "A serves after the rollback");

    // What this run pushed goes.
    empty(&lab, &[&service_name, &tests_name]).await;
}

/// Removes every manifest of these repositories from the registry, and
/// their images from the cd engine (where this test built them).
async fn empty(lab: &Lab, names: &[&str]) {
    let cd = common::negotiate(bollard::Docker::connect_with_local_defaults().unwrap(), "the cd engine").await;
    for name in names {
        lab.empty_repository(name).await;
        let repository = format!("{}/{name}", lab.registry);
        for id in images_of(&cd, &repository).await {
            let options = bollard::query_parameters::RemoveImageOptionsBuilder::default().force(true).build();
            let _ = common::bounded("removing an image", cd.remove_image(&id, Some(options), None)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_other_target_unreachable_prune_removes_nothing_and_says_how_to_prune_this_target_alone() {
    let _lock = prod_lock().await;
    // A swarm that does not answer: nothing listens on the discard port.
    let away = [("HARNESS_SWARM__DOCKER_HOST", "tcp://127.0.0.1:9")];

    let refused = Target::Prod.harness(&["prune"], &away).await;
    let alone = Target::Prod.harness(&["--dry-run", "--json", "prune", "--this-target-only"], &away).await;

    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    for needle in ["nothing was removed", "the swarm (swarm.docker_host) does not answer", "--this-target-only"] {
        assert!(refused.stderr.contains(needle), "`{needle}` not in: {}", refused.stderr);
    }
    assert!(alone.success(), "{}", alone.stderr);
    let report: serde_json::Value = serde_json::from_str(&alone.stdout).expect("the dry run's report as JSON");
    assert!(report.is_object(), "{report}");
    assert_no_lock(&Target::Prod.docker().await).await;
}

/// The ids of `docker`'s images known by a name of `repository` (by
/// digest or tag).
async fn images_of(docker: &bollard::Docker, repository: &str) -> BTreeSet<String> {
    let images = common::bounded(
        "listing a node's images",
        docker.list_images(None::<bollard::query_parameters::ListImagesOptions>),
    )
    .await
    .unwrap();
    images
        .into_iter()
        .filter(|i| {
            i.repo_digests
                .iter()
                .chain(&i.repo_tags)
                .any(|r| r.strip_prefix(repository).is_some_and(|rest| rest.starts_with(['@', ':'])))
        })
        .map(|i| i.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_swarm_prune_removes_dropped_releases_images_from_every_worker_and_keeps_the_kept_ones() {
    let _lock = prod_lock().await;
    let lab = Lab::load();
    let target = Target::Swarm;
    let (service_name, tests_name) =
        ("books-lab-tests/prune-swarm".to_owned(), "books-lab-tests/prune-swarm-tests".to_owned());
    empty(&lab, &[&service_name, &tests_name]).await;
    let service = format!("{}/{service_name}", lab.registry);
    let env = [("HARNESS_IMAGES__SERVICE", service_name.as_str()), ("HARNESS_IMAGES__TESTS", tests_name.as_str())];
    // An old release and a new one, each pulled (by digest, as the swarm
    // pulls) onto every worker.
    let old = push_tiny(&service, "old", "2001-01-01T00:00:00Z");
    let new = push_tiny(&service, "new", "2100-01-01T00:00:00Z");
    let workers: Vec<usize> = (2..=lab.swarm_nodes).collect();
    assert!(!workers.is_empty(), "the lab's swarm has no worker (BOOKS_LAB_SWARM_NODES={})", lab.swarm_nodes);
    let mut engines = Vec::new();
    for &i in &workers {
        let docker = common::swarm::node_docker(&lab, i).await;
        // What an earlier run that failed left on the node goes first.
        for image in images_of(&docker, &service).await {
            let options = bollard::query_parameters::RemoveImageOptionsBuilder::default().force(true).build();
            let removed =
                common::bounded("removing a leftover image", docker.remove_image(&image, Some(options), None));
            removed.await.unwrap_or_else(|e| panic!("swarm-{i}: removing the leftover {image}: {e}"));
        }
        for digest in [&old, &new] {
            pull(&docker, &service, digest, Some(lab.docker_credentials()))
                .await
                .unwrap_or_else(|e| panic!("pulling {digest} on swarm-{i}: {e}"));
        }
        assert_eq!(images_of(&docker, &service).await.len(), 2, "swarm-{i} holds both releases");
        engines.push((i, docker));
    }

    let dry = target.harness(&["--json", "--dry-run", "prune", "--keep", "1", "--this-target-only"], &env).await;
    let held_after_dry: Vec<usize> = {
        let mut held = Vec::new();
        for (_, docker) in &engines {
            held.push(images_of(docker, &service).await.len());
        }
        held
    };
    let run = target.harness(&["--json", "prune", "--keep", "1", "--this-target-only"], &env).await;

    assert!(dry.success(), "prune --dry-run on the swarm:\n{}", dry.stderr);
    assert!(held_after_dry.iter().all(|n| *n == 2), "the dry run removed images: {held_after_dry:?}");
    assert!(run.success(), "prune on the swarm:\n{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("a JSON report");
    let dry: serde_json::Value = serde_json::from_str(&dry.stdout).expect("a JSON dry run");
    let nodes = report["nodes"].as_array().expect("the nodes' part");
    assert_eq!(nodes.len(), workers.len(), "one job per worker: {report}");
    assert_eq!(dry["nodes"], report["nodes"], "the dry run lists what the run removed");
    for (i, docker) in &engines {
        let left = images_of(docker, &service).await;
        let node = nodes.iter().find(|n| n["node"] == format!("swarm-{i}")).unwrap_or_else(|| panic!("{report}"));
        assert_eq!(node["images"].as_array().map(Vec::len), Some(1), "swarm-{i}: {node}");
        assert_eq!(node["kept"], 1, "swarm-{i}: {node}");
        assert_eq!(left.len(), 1, "swarm-{i} holds only the kept release: {left:?}");
        let kept = &left.iter().next().unwrap();
        assert!(!node["images"].as_array().unwrap().iter().any(|id| id == *kept), "swarm-{i} removed the kept one");
    }
    assert_eq!(lab.tags(&service_name).await, BTreeSet::from(["new".to_owned()]), "the registry keeps the new one");
    let manager = target.docker().await;
    let jobs = common::bounded(
        "listing the swarm's services",
        manager.list_services(None::<bollard::query_parameters::ListServicesOptions>),
    )
    .await
    .unwrap();
    let left: Vec<_> =
        jobs.iter().filter_map(|s| s.spec.as_ref()?.name.clone()).filter(|n| n.contains("-prune-")).collect();
    assert!(left.is_empty(), "prune jobs left on the swarm: {left:?}");

    // What this run pulled and pushed goes.
    for (_, docker) in &engines {
        for id in images_of(docker, &service).await {
            let _ = docker.remove_image(&id, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
        }
    }
    empty(&lab, &[&service_name, &tests_name]).await;
}
