//! `harness init`: a starting `harness.toml` for a repository that has a
//! Dockerfile: the service's name from the folder's, the app's port from
//! the Dockerfile's first `EXPOSE` (else the default), and every other key
//! of a service's file commented, with its default (docs/config.md).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::config::SERVICE_FILE;

/// What `harness init` wrote.
#[derive(Debug, Serialize)]
pub struct Written {
    pub path: PathBuf,
    pub name: String,
    pub port: u16,
}

/// Writes `DIR/harness.toml` from `DIR/Dockerfile`; refuses to replace one.
pub fn init(dir: &Path) -> anyhow::Result<Written> {
    let path = dir.join(SERVICE_FILE);
    if path.exists() {
        anyhow::bail!("{} exists already: harness init writes a new one only (edit it instead)", path.display());
    }
    let dockerfile = dir.join("Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).with_context(|| {
        format!("cannot read {}: a service is a repository with a Dockerfile and a harness.toml", dockerfile.display())
    })?;
    let folder = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let name = service_name(folder.file_name().map(|n| n.to_string_lossy()).as_deref().unwrap_or_default());
    let port = exposed_port(&text).unwrap_or(crate::config::AppConfig::default().port);
    std::fs::write(&path, starting_config(&name, port)).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Written { path, name, port })
}

/// A folder's name as a service's: lowercase letters, digits and `-`
/// (anything else a `-`), at most 63, `service` when nothing is left.
pub fn service_name(folder: &str) -> String {
    let mapped: String = folder
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .collect();
    let trimmed: String = mapped.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-');
    if trimmed.is_empty() {
        "service".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The first port of the Dockerfile's first `EXPOSE` (`EXPOSE 5000/tcp`).
pub fn exposed_port(dockerfile: &str) -> Option<u16> {
    dockerfile.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        words.next().filter(|w| w.eq_ignore_ascii_case("EXPOSE"))?;
        words.next()?.split('/').next()?.parse().ok()
    })
}

/// The file: the name and the port set, every other key commented.
pub fn starting_config(name: &str, port: u16) -> String {
    format!(
        r#"# {name}, as the harness ships it: every key, with its default, is in the
# harness's docs/config.md. Commit this file; never a secret in it (give
# secrets through the environment, or harness.local.toml, not committed).

[service]
# Names the containers, network, volumes and image repository.
name = "{name}"

[build]
# dockerfile = "Dockerfile"   # the context is the repository's root
# package = ""                # a command run before the build; empty: none
# tests_dockerfile = ""       # a tests image, pushed last; empty: none

[test]
# command = ""                # the pre-deploy tests; empty: none
# prepare = ""                # run first (compiling them); empty: none
# containers_label = ""       # the label (pid) of containers the tests start

[app]
# The port the app listens on inside its container (from the Dockerfile's
# EXPOSE, when it has one).
port = {port}
# env = {{ GREETING = "hi" }} # plain settings
# secrets = []                # names of variables taken from the harness's environment

[prod]
# app_port = 8080             # the port users reach on prod
# preview_header = "X-Harness-Preview"  # reaches a release before users do

[healthcheck]
# path = "/"                  # polled through the proxy before users are switched; 2xx: ready

# [version]                   # the revision gate (optional)
# path = "/version"
# field = "/revision"         # a JSON pointer to the revision in its answer

# [accessories.db]            # a container the app needs, kept across deploys
# image = "registry:5000/db:1"  # reached by the app as `db`
# volume = "/data"
# env = {{}}

# [[checks]]                  # post-deploy checks, before and after the switch
# name = "home"
# method = "GET"
# path = "/"
# status = 200
# body_contains = ""

# [[checks]]                  # or a command, given HARNESS_URL, HARNESS_REVISION
# name = "smoke"              # and HARNESS_PREVIEW_HEADER
# command = "./smoke.sh"

# [hooks]
# pre_deploy = ""
# post_deploy = ""
"#
    )
}

#[cfg(test)]
// figment::Jail's closures return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn the_name_comes_from_the_folder_and_the_port_from_expose() {
        assert_eq!(service_name("My_Service.v2"), "my-service-v2");
        assert_eq!(service_name("--"), "service");
        assert_eq!(exposed_port("FROM x\nexpose 5000/tcp 6000\nEXPOSE 7000\n"), Some(5000));
        assert_eq!(exposed_port("FROM x\n# EXPOSE 1\n"), None);
    }

    #[test]
    fn init_writes_a_configuration_that_loads_and_refuses_to_replace_one() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("Hello_App");
        std::fs::create_dir(&repo).unwrap();
        let err = init(&repo).unwrap_err().to_string();
        assert!(err.contains("Dockerfile"), "{err}");
        std::fs::write(repo.join("Dockerfile"), "FROM scratch\nEXPOSE 5000\n").unwrap();
        let written = init(&repo).unwrap();
        assert_eq!((written.name.as_str(), written.port), ("hello-app", 5000));
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let config = crate::config::Config::load(&repo).unwrap();
            assert_eq!((config.service.name.as_str(), config.app.port), ("hello-app", 5000));
            assert!(config.checks.is_empty() && config.version.is_none(), "the rest is commented");
            Ok(())
        });
        let text = std::fs::read_to_string(&written.path).unwrap();
        for section in ["[build]", "[test]", "[healthcheck]", "[version]", "[accessories.db]", "[[checks]]", "[hooks]"]
        {
            assert!(text.contains(section), "{section} in:\n{text}");
        }
        assert!(init(&repo).unwrap_err().to_string().contains("exists already"));
    }
}
