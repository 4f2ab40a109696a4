//! The runtime image from `Dockerfile`: built, run beside a database, healthy,
//! answering the API.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::{BuildImageOptionsBuilder, RemoveImageOptionsBuilder};
use futures_util::StreamExt;
use serde_json::Value;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

use crate::helpers::{book, db_image, repo_root};

/// The static release binary, built by the project's own script (the one the
/// README and the harness use), so this test checks what ships.
fn build_static_binary(root: &Path) -> std::path::PathBuf {
    let mut command = std::process::Command::new("bash");
    // The variables cargo sets for this test would make the nested cargo's
    // build scripts (ring's among them) think their inputs changed and
    // rebuild: hand it the environment a developer's shell would have.
    // OUT_DIR (ring's build script watches it) is cargo's too.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let from_cargo = key.starts_with("CARGO_") && !matches!(key.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR");
        if from_cargo || key == "OUT_DIR" {
            command.env_remove(&key);
        }
    }
    // The revision as the harness's package step passes it (the tree's, not
    // the one build.rs handed this test when it was compiled): the same
    // value, so the two builds share one cache instead of rebuilding.
    let status = command
        .env("BOOKS_MS_REVISION", tree_revision(root))
        .arg(root.join("scripts/dist.sh"))
        .current_dir(root)
        .status()
        .expect("run scripts/dist.sh");
    assert!(status.success(), "scripts/dist.sh failed");
    root.join("dist/books-ms")
}

/// The working tree's short commit, `-dirty` when tracked files changed;
/// `unknown` outside a git checkout (the tests image has no `.git`).
fn tree_revision(root: &Path) -> String {
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let Some(short) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".to_owned();
    };
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{short}-dirty")
    } else {
        short
    }
}

/// The build context: what `Dockerfile` copies, less what `.dockerignore`
/// leaves out of it (the browser tests under `client/tests`).
fn context_tar(root: &Path, binary: &Path) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    // The classic builder cannot read GNU sparse entries.
    tar.sparse(false);
    tar.append_path_with_name(root.join("Dockerfile"), "Dockerfile").unwrap();
    tar.append_path_with_name(binary, "dist/books-ms").unwrap();
    for entry in std::fs::read_dir(root.join("client")).unwrap() {
        let entry = entry.unwrap();
        let name = Path::new("client").join(entry.file_name());
        if entry.file_name() == "tests" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            tar.append_dir_all(&name, entry.path()).unwrap();
        } else {
            tar.append_path_with_name(entry.path(), &name).unwrap();
        }
    }
    tar.into_inner().unwrap()
}

#[tokio::test]
async fn the_runtime_image_turns_healthy_beside_a_database_and_answers_the_api() {
    // Arrange: build the image.
    let root = repo_root();
    let binary = build_static_binary(&root);
    let docker = bollard::Docker::connect_with_local_defaults().expect("the Docker engine");
    let tag = format!("test-{}", uuid::Uuid::new_v4().simple());
    let image = format!("books-ms-image-test:{tag}");
    let args = HashMap::from([("VERSION", "0.0.0-test"), ("REVISION", "image-test")]);
    let options = BuildImageOptionsBuilder::default().t(&image).rm(true).forcerm(true).buildargs(&args).build();
    let mut build = docker.build_image(options, None, Some(bollard::body_full(context_tar(&root, &binary).into())));
    while let Some(step) = build.next().await {
        let step = step.unwrap_or_else(|e| panic!("building {image}: {e}"));
        assert!(step.error_detail.is_none(), "building {image}: {:?}", step.error_detail);
    }

    // The image is what the Dockerfile promises.
    let inspect = docker.inspect_image(&image).await.unwrap();
    let config = inspect.config.unwrap();
    let user = config.user.unwrap_or_default();
    assert!(!user.is_empty() && !user.starts_with("0") && user != "root", "runs as {user:?}");
    assert!(config.exposed_ports.unwrap().iter().any(|p| p == "8080/tcp"));
    assert!(config.healthcheck.and_then(|h| h.test).is_some_and(|t| t.join(" ").contains("healthcheck")));
    let labels = config.labels.unwrap();
    assert_eq!(labels["org.opencontainers.image.revision"], "image-test");
    assert_eq!(labels["org.opencontainers.image.version"], "0.0.0-test");

    // Act: run it beside a database on a network of its own.
    let network = format!("books-ms-image-test-{tag}");
    let db_name = format!("db-{tag}");
    let db = db_image().with_network(&network).with_container_name(&db_name).start().await.expect("start the database");
    let app = GenericImage::new("books-ms-image-test", &tag)
        .with_exposed_port(8080.tcp())
        .with_wait_for(WaitFor::healthcheck())
        .with_network(&network)
        .with_env_var("DB_HOST", &db_name)
        .with_startup_timeout(Duration::from_secs(90))
        .start()
        .await
        .expect("the app container turns healthy");
    let port = app.get_host_port_ipv4(8080.tcp()).await.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    // Assert: ready, the API round-trips, the version and components are there.
    let mut ready = http.get(format!("{base}/ready")).send().await.unwrap().status();
    for _ in 0..50 {
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        ready = http.get(format!("{base}/ready")).send().await.unwrap().status();
    }
    assert_eq!(ready, 200);
    let sent = book(1, "Packaged", "Docker", "From the image");
    assert_eq!(http.put(format!("{base}/api/v1/books")).json(&sent).send().await.unwrap().status(), 200);
    let got: Value = http.get(format!("{base}/api/v1/books/_id/1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, sent);
    let version: Value = http.get(format!("{base}/version")).send().await.unwrap().json().await.unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(http.get(format!("{base}/")).send().await.unwrap().status(), 200);

    // Clean up what this test made.
    app.rm().await.unwrap();
    db.rm().await.unwrap();
    let _ = docker.remove_network(&network).await;
    let _ = docker.remove_image(&image, Some(RemoveImageOptionsBuilder::default().force(true).build()), None).await;
}
