//! The swarm's services and the proxy's config object, as the engine's
//! specs: pure data, built from the configuration and the release.

use std::collections::HashMap;

use bollard::models::{
    ConfigSpec, EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec,
    EndpointSpecModeEnum, Limit, Mount, MountTypeEnum, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile1, TaskSpecLogDriver, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

use super::haproxy;
use crate::config::{AccessoryConfig, Config};
use crate::deploy::haproxy::APP_PORT;
use crate::deploy::names::*;
use crate::release::Release;

/// Names of everything of project `P` on the swarm: the overlay network
/// `P`, the services `P-app` and `P-proxy`, each accessory `A` as the
/// service `P-A` (its volume `P-A`, on its pinned node; books-ms's
/// database: `P-db`), the proxy's configs `P-proxy-HASH`; on the manager's
/// engine, the deploy lock `P-deploy-lock` and the history `P-history`
/// (containers, as on a single host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmNames {
    pub project: String,
    pub network: String,
    pub app: String,
    /// The release a deploy brings, beside the app's tasks while they roll
    /// over (see [`next`]).
    pub next: String,
    /// The release a deploy brings, proven ready before any user can reach
    /// it (see [`canary`]).
    pub canary: String,
    pub proxy: String,
}

impl SwarmNames {
    pub fn new(project: &str) -> Self {
        SwarmNames {
            project: project.to_owned(),
            network: project.to_owned(),
            app: format!("{project}-app"),
            next: format!("{project}-app-next"),
            canary: format!("{project}-app-canary"),
            proxy: format!("{project}-proxy"),
        }
    }

    /// The service of the accessory `name`, and its volume.
    pub fn accessory(&self, name: &str) -> String {
        format!("{}-{name}", self.project)
    }

    /// The proxy's config object for `text`: configs are immutable, so a
    /// new text is a new name.
    pub fn proxy_config(&self, text: &str) -> String {
        format!("{}-{}", self.proxy, &fingerprint(&serde_json::Value::String(text.to_owned()))[..12])
    }
}

/// Where the proxy's configuration is mounted in its tasks.
pub const PROXY_CONFIG_FILE: &str = "/etc/haproxy/haproxy.cfg";
/// How long a stopped task gets to finish its requests in flight (the
/// service takes up to 10 s on SIGTERM).
const STOP_GRACE_NANOS: i64 = 15_000_000_000;
const SECOND_NANOS: i64 = 1_000_000_000;

/// The app: `swarm.replicas` tasks on the overlay network, never
/// published, found by the proxy through the swarm's DNS (`dnsrr`: this
/// kernel has no IPVS for virtual IPs); updated one task at a time, the new
/// one started (and healthy, by the image's healthcheck) before the old
/// one stops, rolled back by Swarm when a new task fails within the
/// monitor period.
pub fn app(config: &Config, release: &Release, names: &SwarmNames) -> ServiceSpec {
    let labels = release_labels(config, release, "app");
    let swarm = &config.swarm;
    let mut spec = ServiceSpec {
        name: Some(names.app.clone()),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(release.image.clone()),
                labels: Some(labels),
                env: Some(config.app_env()),
                stop_grace_period: Some(STOP_GRACE_NANOS),
                ..Default::default()
            }),
            resources: limits(config),
            restart_policy: Some(restart_any()),
            log_driver: Some(log_driver(config)),
            networks: Some(vec![on_network(&names.network, &names.app)]),
            ..Default::default()
        }),
        mode: Some(replicated(i64::from(swarm.replicas))),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(i64::from(swarm.update_parallelism)),
            delay: Some(seconds(swarm.update_delay_secs)),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(seconds(swarm.update_monitor_secs)),
            max_failure_ratio: Some(0.0),
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
        }),
        rollback_config: Some(ServiceSpecRollbackConfig {
            parallelism: Some(i64::from(swarm.update_parallelism)),
            delay: Some(seconds(swarm.update_delay_secs)),
            failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            monitor: Some(seconds(swarm.update_monitor_secs)),
            max_failure_ratio: Some(0.0),
            order: Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST),
        }),
        endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ports: None }),
        ..Default::default()
    };
    with_spec_label(&mut spec);
    spec
}

/// The next release beside the app, for an image that has no Docker
/// healthcheck (Swarm would stop an old task as soon as a new one runs,
/// ready or not): the app's spec as its own service `P-app-next`, on the
/// network under the app's alias, so the proxy's `tasks.P-app` names its
/// tasks too. It serves beside the old tasks until the app's own tasks run
/// the release and are ready, then goes. The release was proven ready
/// first ([`canary`]): HAProxy 2.6 takes a server the DNS gives it as up
/// until its first checks fail, so a request may reach a task of it
/// before it is ready, and is then retried on an old task.
pub fn next(config: &Config, release: &Release, names: &SwarmNames) -> ServiceSpec {
    beside(config, release, names, &names.next, &names.app, "next")
}

/// The release as a service of its own, `P-app-canary`, on the network
/// under its own name only: no proxy finds it, so no user reaches it
/// while the harness waits for every task of it to answer
/// `healthcheck.path`. A release that never gets ready is refused there.
pub fn canary(config: &Config, release: &Release, names: &SwarmNames) -> ServiceSpec {
    beside(config, release, names, &names.canary, &names.canary, "canary")
}

/// The app's spec as the service `name`, found as `alias`, of role `role`.
fn beside(config: &Config, release: &Release, names: &SwarmNames, name: &str, alias: &str, role: &str) -> ServiceSpec {
    let mut spec = app(config, release, names);
    spec.name = Some(name.to_owned());
    spec.update_config = None;
    spec.rollback_config = None;
    if let Some(labels) = spec.labels.as_mut() {
        labels.remove(SPEC_LABEL);
        labels.insert(ROLE_LABEL.to_owned(), role.to_owned());
    }
    if let Some(task) = spec.task_template.as_mut() {
        task.networks = Some(vec![on_network(&names.network, alias)]);
    }
    with_spec_label(&mut spec);
    spec
}

/// The placement constraint that pins a service to the node of id `node`.
pub fn pinned_to(node: &str) -> String {
    format!("node.id == {node}")
}

/// The accessory `name` (its role label is its name): one task, held to
/// one node by `constraint` (see [`pinned_to`]: its named volume is local
/// to the node it runs on; pinned by role, a lost manager would see it
/// start again, empty, on another), reached as `name` on the overlay
/// network, with its settings.
pub fn accessory(
    config: &Config,
    names: &SwarmNames,
    name: &str,
    spec: &AccessoryConfig,
    constraint: &str,
) -> ServiceSpec {
    let labels = role_labels(config, name);
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mounts = spec.volume.as_ref().map(|path| {
        vec![Mount {
            target: Some(path.clone()),
            source: Some(names.accessory(name)),
            typ: Some(MountTypeEnum::VOLUME),
            ..Default::default()
        }]
    });
    let mut spec = ServiceSpec {
        name: Some(names.accessory(name)),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(spec.image.clone()),
                labels: Some(labels),
                env: (!env.is_empty()).then_some(env),
                mounts,
                stop_grace_period: Some(STOP_GRACE_NANOS),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement { constraints: Some(vec![constraint.to_owned()]), ..Default::default() }),
            restart_policy: Some(restart_any()),
            log_driver: Some(log_driver(config)),
            networks: Some(vec![on_network(&names.network, name)]),
            ..Default::default()
        }),
        mode: Some(replicated(1)),
        endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ports: None }),
        ..Default::default()
    };
    with_spec_label(&mut spec);
    spec
}

/// The proxy's configuration as a swarm config object named `name`.
pub fn proxy_config(config: &Config, name: &str, text: &str) -> ConfigSpec {
    use base64::Engine as _;
    ConfigSpec {
        name: Some(name.to_owned()),
        labels: Some(role_labels(config, "proxy")),
        data: Some(base64::engine::general_purpose::STANDARD.encode(text)),
        ..Default::default()
    }
}

/// The proxy: one task on every node (global), published on each node's
/// own address (`mode: host`; the ingress mesh needs IPVS), its
/// configuration the config object `config_name` (its id is filled in by
/// the executor, which looks the name up). Its tasks are replaced one node
/// at a time, the old one first: two cannot hold the node's port.
pub fn proxy(config: &Config, names: &SwarmNames, config_name: &str) -> ServiceSpec {
    let labels = role_labels(config, "proxy");
    let mut spec = ServiceSpec {
        name: Some(names.proxy.clone()),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(config.prod.proxy_image.clone()),
                labels: Some(labels),
                configs: Some(vec![TaskSpecContainerSpecConfigs {
                    file: Some(TaskSpecContainerSpecFile1 {
                        name: Some(PROXY_CONFIG_FILE.to_owned()),
                        uid: Some("0".to_owned()),
                        gid: Some("0".to_owned()),
                        mode: Some(0o444),
                    }),
                    config_name: Some(config_name.to_owned()),
                    ..Default::default()
                }]),
                stop_grace_period: Some(STOP_GRACE_NANOS),
                ..Default::default()
            }),
            restart_policy: Some(restart_any()),
            log_driver: Some(log_driver(config)),
            networks: Some(vec![on_network(&names.network, &names.proxy)]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode { global: Some(HashMap::new()), ..Default::default() }),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            delay: Some(SECOND_NANOS),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(seconds(config.swarm.update_monitor_secs)),
            max_failure_ratio: Some(0.0),
            order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(vec![EndpointPortConfig {
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(i64::from(APP_PORT)),
                published_port: Some(i64::from(config.swarm.app_port)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    };
    with_spec_label(&mut spec);
    spec
}

/// The proxy's configuration text for this configuration: the app's
/// tasks on `app.port`, each checked on `swarm.check_path`.
pub fn proxy_text(config: &Config, names: &SwarmNames) -> String {
    haproxy::render(&names.app, config.app.port, config.swarm_check_path())
}

/// The spec label of a service spec.
pub fn spec_of(spec: &ServiceSpec) -> Option<&str> {
    spec.labels.as_ref()?.get(SPEC_LABEL).map(String::as_str)
}

/// The image a service spec runs.
pub fn image_of(spec: &ServiceSpec) -> Option<&str> {
    spec.task_template.as_ref()?.container_spec.as_ref()?.image.as_deref()
}

fn with_spec_label(spec: &mut ServiceSpec) {
    let value = serde_json::to_value(&*spec).unwrap_or_default();
    let fingerprint = fingerprint(&value);
    spec.labels.get_or_insert_with(HashMap::new).insert(SPEC_LABEL.to_owned(), fingerprint);
}

/// A fingerprint of a JSON value, its keys in order (see
/// `containers::canonical`): SHA-256, the same on every build of the
/// harness (a config's name and a spec label outlive the binary).
fn fingerprint(value: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(crate::deploy::containers::canonical(value).as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn role_labels(config: &Config, role: &str) -> HashMap<String, String> {
    HashMap::from([(PROJECT_LABEL.to_owned(), config.project().to_owned()), (ROLE_LABEL.to_owned(), role.to_owned())])
}

fn release_labels(config: &Config, release: &Release, role: &str) -> HashMap<String, String> {
    let mut labels = role_labels(config, role);
    labels.insert(VERSION_LABEL.to_owned(), release.version.clone());
    labels.insert(REVISION_LABEL.to_owned(), release.revision.clone().unwrap_or_default());
    labels.insert(IMAGE_LABEL.to_owned(), release.image.clone());
    labels
}

fn replicated(replicas: i64) -> ServiceSpecMode {
    ServiceSpecMode { replicated: Some(ServiceSpecModeReplicated { replicas: Some(replicas) }), ..Default::default() }
}

/// `prod.memory_mb` and `prod.cpus` as each app task's limits, as each
/// app container's on a single host.
fn limits(config: &Config) -> Option<TaskSpecResources> {
    let (memory, cpus) = (config.prod.memory_mb, config.prod.cpus);
    (memory.is_some() || cpus.is_some()).then(|| TaskSpecResources {
        limits: Some(Limit {
            memory_bytes: memory.map(|mb| i64::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX)),
            nano_cpus: cpus.map(|cpus| (cpus * 1e9) as i64),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn restart_any() -> TaskSpecRestartPolicy {
    TaskSpecRestartPolicy {
        condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
        delay: Some(SECOND_NANOS),
        ..Default::default()
    }
}

fn seconds(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / SECOND_NANOS).saturating_mul(SECOND_NANOS)
}

/// Docker's json-file driver with rotation, as on a single host.
fn log_driver(config: &Config) -> TaskSpecLogDriver {
    TaskSpecLogDriver {
        name: Some("json-file".to_owned()),
        options: Some(HashMap::from([
            ("max-size".to_owned(), config.prod.log_max_size.clone()),
            ("max-file".to_owned(), config.prod.log_max_files.to_string()),
        ])),
    }
}

fn on_network(network: &str, alias: &str) -> NetworkAttachmentConfig {
    NetworkAttachmentConfig {
        target: Some(network.to_owned()),
        aliases: Some(vec![alias.to_owned()]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(image: &str) -> Release {
        Release::given(image.into(), "v1".into(), Some("r1".into()))
    }

    #[test]
    fn the_app_is_replicated_never_published_and_updated_start_first_rolling_back_on_failure() {
        let config = crate::config::books_ms();
        let names = SwarmNames::new("books-ms");
        let app = app(&config, &release("r/a@sha256:1"), &names);
        assert_eq!(app.mode.as_ref().unwrap().replicated.as_ref().unwrap().replicas, Some(2));
        let endpoint = app.endpoint_spec.as_ref().unwrap();
        assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::DNSRR));
        assert!(endpoint.ports.is_none(), "never published");
        let update = app.update_config.as_ref().unwrap();
        assert_eq!(update.order, Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST));
        assert_eq!(update.failure_action, Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK));
        assert_eq!(update.parallelism, Some(1));
        assert_eq!(update.monitor, Some(5 * SECOND_NANOS));
        let rollback = app.rollback_config.as_ref().unwrap();
        assert_eq!(rollback.order, Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST));
        let container = app.task_template.as_ref().unwrap().container_spec.as_ref().unwrap();
        assert!(container.health_check.is_none(), "health is the image's own healthcheck");
        assert_eq!(container.labels.as_ref().unwrap()[VERSION_LABEL], "v1", "each task carries its version");
        assert_eq!(image_of(&app), Some("r/a@sha256:1"));
        assert!(app.task_template.as_ref().unwrap().resources.is_none(), "no limits unless set");
    }

    #[test]
    fn the_apps_tasks_take_prods_memory_and_cpu_limits() {
        let mut config = crate::config::books_ms();
        config.prod.memory_mb = Some(256);
        config.prod.cpus = Some(1.5);
        let app = app(&config, &release("r/a@sha256:1"), &SwarmNames::new("books-ms"));
        let limits = app.task_template.unwrap().resources.unwrap().limits.unwrap();
        assert_eq!((limits.memory_bytes, limits.nano_cpus), (Some(256 * 1024 * 1024), Some(1_500_000_000)));
    }

    #[test]
    fn the_spec_label_changes_with_the_release_and_the_configuration_only() {
        let mut config = crate::config::books_ms();
        let names = SwarmNames::new("books-ms");
        let a = app(&config, &release("r/a@sha256:1"), &names);
        assert_eq!(spec_of(&a), spec_of(&app(&config, &release("r/a@sha256:1"), &names)));
        assert_ne!(spec_of(&a), spec_of(&app(&config, &release("r/a@sha256:2"), &names)));
        config.swarm.replicas = 3;
        assert_ne!(spec_of(&a), spec_of(&app(&config, &release("r/a@sha256:1"), &names)));
    }

    #[test]
    fn an_accessory_is_one_task_pinned_to_its_node_with_its_volume_the_proxy_global_on_every_nodes_port() {
        let mut config = crate::config::books_ms();
        config.swarm.app_port = 9090;
        let names = SwarmNames::new("books-ms");
        let db = accessory(&config, &names, "db", &config.accessories["db"], &pinned_to("n0de1d"));
        assert_eq!(db.mode.as_ref().unwrap().replicated.as_ref().unwrap().replicas, Some(1));
        let task = db.task_template.as_ref().unwrap();
        assert_eq!(task.placement.as_ref().unwrap().constraints.as_deref(), Some(&["node.id == n0de1d".into()][..]));
        let mount = &task.container_spec.as_ref().unwrap().mounts.as_ref().unwrap()[0];
        assert_eq!((mount.source.as_deref(), mount.typ), (Some("books-ms-db"), Some(MountTypeEnum::VOLUME)));
        assert_eq!(task.networks.as_ref().unwrap()[0].aliases.as_deref(), Some(&["db".into()][..]));

        let proxy = proxy(&config, &names, "books-ms-proxy-0123456789ab");
        assert!(proxy.mode.as_ref().unwrap().global.is_some());
        let port = &proxy.endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(port.publish_mode, Some(EndpointPortConfigPublishModeEnum::HOST));
        assert_eq!((port.published_port, port.target_port), (Some(9090), Some(8080)));
        let file = &proxy.task_template.as_ref().unwrap().container_spec.as_ref().unwrap().configs.as_ref().unwrap()[0];
        assert_eq!(file.config_name.as_deref(), Some("books-ms-proxy-0123456789ab"));
        assert_eq!(file.file.as_ref().unwrap().name.as_deref(), Some(PROXY_CONFIG_FILE));
        let update = proxy.update_config.as_ref().unwrap();
        assert_eq!(update.order, Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST), "two tasks cannot hold a port");
    }

    #[test]
    fn a_proxy_config_is_named_by_its_content() {
        let names = SwarmNames::new("books-ms");
        let one = names.proxy_config("a");
        assert_eq!(one, names.proxy_config("a"));
        assert_ne!(one, names.proxy_config("b"));
        assert!(one.starts_with("books-ms-proxy-") && one.len() == "books-ms-proxy-".len() + 12, "{one}");
        // SHA-256 of the canonical JSON string "\"a\"": the same on every build.
        assert_eq!(one, "books-ms-proxy-ac8d8342bbb2");
        use base64::Engine as _;
        let spec = proxy_config(&crate::config::books_ms(), &one, "global\n");
        let data = base64::engine::general_purpose::STANDARD.decode(spec.data.unwrap()).unwrap();
        assert_eq!(data, b"global\n");
    }

    #[test]
    fn an_accessory_has_its_settings_its_volume_at_its_path_or_none() {
        let config = crate::config::books_ms();
        let names = SwarmNames::new("hello");
        let store = crate::config::AccessoryConfig {
            image: "r/store:1".into(),
            volume: None,
            env: [("MODE".to_owned(), "fast".to_owned())].into(),
        };
        let spec = accessory(&config, &names, "store", &store, &pinned_to("n"));
        assert_eq!(spec.name.as_deref(), Some("hello-store"));
        assert_eq!(spec.labels.as_ref().unwrap()[ROLE_LABEL], "store");
        let task = spec.task_template.as_ref().unwrap();
        let container = task.container_spec.as_ref().unwrap();
        assert_eq!(container.image.as_deref(), Some("r/store:1"));
        assert_eq!(container.env.as_deref(), Some(&["MODE=fast".to_owned()][..]));
        assert!(container.mounts.is_none(), "no volume unless one is set");
        assert_eq!(task.networks.as_ref().unwrap()[0].aliases.as_deref(), Some(&["store".into()][..]));
        let with_volume = crate::config::AccessoryConfig { volume: Some("/var/lib/store".into()), ..store };
        let spec = accessory(&config, &names, "store", &with_volume, &pinned_to("n"));
        let mount = &spec.task_template.unwrap().container_spec.unwrap().mounts.unwrap()[0];
        assert_eq!((mount.source.as_deref(), mount.target.as_deref()), (Some("hello-store"), Some("/var/lib/store")));
    }

    #[test]
    fn the_proxy_reaches_the_app_on_its_port_checked_on_the_check_path() {
        let mut config = crate::config::books_ms();
        config.app.port = 5000;
        config.healthcheck.path = "/ready".into();
        config.swarm.check_path = None;
        let text = proxy_text(&config, &SwarmNames::new("hello"));
        assert!(text.contains("tasks.hello-app:5000\n") && text.contains("uri /ready\n"), "{text}");
        config.swarm.check_path = Some("/live".into());
        assert!(proxy_text(&config, &SwarmNames::new("hello")).contains("uri /live\n"));
    }
}
