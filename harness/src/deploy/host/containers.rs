//! The containers a deploy creates, as the engine's create bodies: pure
//! data, built from the configuration and the release.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use super::HostNames as Names;
use crate::config::{AccessoryConfig, Config};
use crate::deploy::containers::canonical;
use crate::deploy::haproxy::APP_PORT;
use crate::deploy::names::Colour;
use crate::deploy::names::*;
use crate::release::Release;

/// One colour of the app as a deploy creates it, its spec label included:
/// on the project's network under its own name, never published.
pub fn app(config: &Config, release: &Release, names: &Names, colour: Colour) -> ContainerCreateBody {
    let mut body = ContainerCreateBody {
        image: Some(release.image.clone()),
        env: Some(config.app_env()),
        // The image's probe at another interval, when one is set: Docker
        // takes every field not set here (the command, its timeout, the
        // retries) from the image.
        healthcheck: config
            .prod
            .health_interval_ms
            .map(|ms| HealthConfig { interval: Some((ms * 1_000_000) as i64), ..Default::default() }),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_owned(), config.project().to_owned()),
            (ROLE_LABEL.to_owned(), "app".to_owned()),
            (COLOUR_LABEL.to_owned(), colour.name().to_owned()),
            (VERSION_LABEL.to_owned(), release.version.clone()),
            (REVISION_LABEL.to_owned(), release.revision.clone().unwrap_or_default()),
            (IMAGE_LABEL.to_owned(), release.image.clone()),
        ])),
        host_config: Some(HostConfig {
            restart_policy: Some(unless_stopped()),
            log_config: Some(log_config(config)),
            memory: config.prod.memory_mb.map(|mb| (mb * 1024 * 1024) as i64),
            nano_cpus: config.prod.cpus.map(|cpus| (cpus * 1e9) as i64),
            ..Default::default()
        }),
        networking_config: Some(on_network(&names.network, &names.colour(colour))),
        ..Default::default()
    };
    let spec = spec(&body);
    body.labels.get_or_insert_with(HashMap::new).insert(SPEC_LABEL.to_owned(), spec);
    body
}

/// The proxy: the only container published, on the app's port.
pub fn proxy(config: &Config, names: &Names) -> ContainerCreateBody {
    let port = format!("{}/tcp", APP_PORT);
    let mut body = ContainerCreateBody {
        image: Some(config.prod.proxy_image.clone()),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_owned(), config.project().to_owned()),
            (ROLE_LABEL.to_owned(), "proxy".to_owned()),
        ])),
        exposed_ports: Some(vec![port.clone()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                port,
                Some(vec![PortBinding { host_ip: None, host_port: Some(config.prod.app_port.to_string()) }]),
            )])),
            restart_policy: Some(unless_stopped()),
            log_config: Some(log_config(config)),
            ..Default::default()
        }),
        networking_config: Some(on_network(&names.network, "proxy")),
        ..Default::default()
    };
    let spec = spec(&body);
    body.labels.get_or_insert_with(HashMap::new).insert(SPEC_LABEL.to_owned(), spec);
    body
}

/// The accessory `name` (its role label is its name), its data in its
/// named volume when it has one, reached by its name on the project's
/// network.
pub fn accessory(config: &Config, names: &Names, name: &str, spec: &AccessoryConfig) -> ContainerCreateBody {
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: (!env.is_empty()).then_some(env),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_owned(), config.project().to_owned()),
            (ROLE_LABEL.to_owned(), name.to_owned()),
        ])),
        host_config: Some(HostConfig {
            binds: spec.volume.as_ref().map(|path| vec![format!("{}:{path}", names.accessory(name))]),
            restart_policy: Some(unless_stopped()),
            log_config: Some(log_config(config)),
            ..Default::default()
        }),
        networking_config: Some(on_network(&names.network, name)),
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
    let value = serde_json::to_value(body).map(|v| canonical(&v)).unwrap_or_default();
    value.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Docker's json-file driver with rotation, so that logs cannot fill
/// prod's disk.
fn log_config(config: &Config) -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".to_owned()),
        config: Some(HashMap::from([
            ("max-size".to_owned(), config.prod.log_max_size.clone()),
            ("max-file".to_owned(), config.prod.log_max_files.to_string()),
        ])),
    }
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
        Release::given(image.into(), "v1".into(), Some("r1".into()))
    }

    #[test]
    fn the_spec_changes_with_the_release_and_the_configuration_only() {
        let config = crate::config::books_ms();
        let names = Names::new("books-ms");
        let a = app(&config, &release("r/a@sha256:1"), &names, Colour::Blue);
        let again = app(&config, &release("r/a@sha256:1"), &names, Colour::Blue);
        let other = app(&config, &release("r/a@sha256:2"), &names, Colour::Blue);
        assert_eq!(spec_of(&a), spec_of(&again));
        assert_ne!(spec_of(&a), spec_of(&other));
        let mut moved = config.clone();
        moved.prod.app_port += 1;
        moved.prod.memory_mb = Some(256);
        assert_ne!(spec_of(&a), spec_of(&app(&moved, &release("r/a@sha256:1"), &names, Colour::Blue)));
    }

    #[test]
    fn colours_are_never_published_the_proxy_is_and_everything_rotates_its_logs() {
        let mut config = crate::config::books_ms();
        config.prod.memory_mb = Some(512);
        config.prod.cpus = Some(1.5);
        let names = Names::new("books-ms");
        let green = app(&config, &release("r/a@sha256:1"), &names, Colour::Green);
        let host = green.host_config.as_ref().unwrap();
        assert!(host.port_bindings.is_none() && green.exposed_ports.is_none());
        assert_eq!(host.memory, Some(512 * 1024 * 1024));
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        let aliases = &green.networking_config.as_ref().unwrap().endpoints_config.as_ref().unwrap()["books-ms"];
        assert_eq!(aliases.aliases.as_deref(), Some(&["books-ms-green".to_owned()][..]));
        let proxy = proxy(&config, &names);
        let bindings = proxy.host_config.as_ref().unwrap().port_bindings.as_ref().unwrap();
        assert_eq!(bindings["8080/tcp"].as_ref().unwrap()[0].host_port.as_deref(), Some("8080"));
        let db = accessory(&config, &names, "db", &config.accessories["db"]);
        for body in [&green, &proxy, &db] {
            let log = body.host_config.as_ref().unwrap().log_config.as_ref().unwrap();
            assert_eq!(log.config.as_ref().unwrap()["max-size"], "10m");
        }
    }
}
