//! The containers a deploy creates, as the engine's create bodies: pure
//! data, built from the configuration and the release.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};

use super::names::*;
use crate::config::Config;
use crate::release::Release;

/// The app container as a deploy creates it, its spec label included.
pub fn app(config: &Config, release: &Release, names: &Names) -> ContainerCreateBody {
    let port = config.prod.app_port.to_string();
    let mut body = ContainerCreateBody {
        image: Some(release.image.clone()),
        env: Some(vec!["DB_HOST=db".to_owned()]),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_owned(), config.prod.project.clone()),
            (ROLE_LABEL.to_owned(), "app".to_owned()),
            (VERSION_LABEL.to_owned(), release.version.clone()),
            (REVISION_LABEL.to_owned(), release.revision.clone()),
            (IMAGE_LABEL.to_owned(), release.image.clone()),
        ])),
        exposed_ports: Some(vec!["8080/tcp".to_owned()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "8080/tcp".to_owned(),
                Some(vec![PortBinding { host_ip: None, host_port: Some(port) }]),
            )])),
            restart_policy: Some(unless_stopped()),
            ..Default::default()
        }),
        networking_config: Some(on_network(&names.network, "app")),
        ..Default::default()
    };
    let spec = spec(&body);
    body.labels.get_or_insert_with(HashMap::new).insert(SPEC_LABEL.to_owned(), spec);
    body
}

/// The database container, its data in the named volume.
pub fn database(config: &Config, names: &Names) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(config.prod.database_image.clone()),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_owned(), config.prod.project.clone()),
            (ROLE_LABEL.to_owned(), "db".to_owned()),
        ])),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/data/db", names.volume)]),
            restart_policy: Some(unless_stopped()),
            ..Default::default()
        }),
        networking_config: Some(on_network(&names.network, "db")),
        ..Default::default()
    }
}

/// The deploy lock: a container created (never started) under a fixed
/// name; creating it is atomic on the engine. It needs an image prod has:
/// the release's, pulled just before.
pub fn lock(names: &Names, image: &str, holder: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_owned()),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_owned(), names.project.clone()),
            (ROLE_LABEL.to_owned(), "deploy-lock".to_owned()),
            (LOCK_HOLDER_LABEL.to_owned(), holder.to_owned()),
        ])),
        ..Default::default()
    }
}

/// The spec label of a body (see SPEC_LABEL).
pub fn spec_of(body: &ContainerCreateBody) -> Option<&str> {
    body.labels.as_ref()?.get(SPEC_LABEL).map(String::as_str)
}

/// A fingerprint of everything a deploy sets on a container, its spec
/// label aside. (A different harness may compute another for the same
/// container: the cost is one needless replacement.)
fn spec(body: &ContainerCreateBody) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    // serde_json writes a HashMap's keys in no fixed order: go through a
    // Value, whose maps are sorted.
    let value = serde_json::to_value(body).map(|v| v.to_string()).unwrap_or_default();
    value.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn unless_stopped() -> RestartPolicy {
    RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }
}

fn on_network(network: &str, alias: &str) -> NetworkingConfig {
    NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.to_owned(),
            EndpointSettings { aliases: Some(vec![alias.to_owned()]), ..Default::default() },
        )])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(image: &str) -> Release {
        Release { image: image.into(), version: "v1".into(), revision: "r1".into() }
    }

    #[test]
    fn the_spec_changes_with_the_release_and_the_configuration_only() {
        let config = Config::default();
        let names = Names::new("books-ms");
        let a = app(&config, &release("r/a@sha256:1"), &names);
        let again = app(&config, &release("r/a@sha256:1"), &names);
        let other = app(&config, &release("r/a@sha256:2"), &names);
        assert_eq!(spec_of(&a), spec_of(&again));
        assert_ne!(spec_of(&a), spec_of(&other));
        let mut moved = config.clone();
        moved.prod.app_port += 1;
        assert_ne!(spec_of(&a), spec_of(&app(&moved, &release("r/a@sha256:1"), &names)));
    }
}
