//! A swarm deploy as data: what the swarm holds of the project
//! ([`SwarmObserved`]) and the release go in, the [`Step`]s come out, each
//! with its undo; pure, so each case is a unit test. The core
//! (`deploy::core`) adds the lock and the history around them, and
//! `--dry-run` prints the list a deploy runs.
//!
//! A rolling update gated by health: the app's service is updated (Swarm
//! starts a new task, waits for the image's healthcheck, stops an old one,
//! and so on, rolling back by itself when a new task fails), the deploy
//! waits for it to converge, then runs the post-deploy checks through the
//! manager's proxy; a failed check rolls the service back (Docker's
//! service rollback).

use std::fmt;

use bollard::models::{ConfigSpec, ServiceSpec};
use serde::Serialize;

use super::services::{self, SwarmNames};
use crate::config::Config;
use crate::deploy::history::Outcome;
use crate::deploy::plan::{HookKind, Op, Planned};
use crate::deploy::target::Context;

/// A service of the project, as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedService {
    /// Its spec label (see `names::SPEC_LABEL`).
    pub spec: Option<String>,
    /// The image its spec runs.
    pub image: String,
    /// Its placement constraints.
    pub constraints: Vec<String>,
    /// Its update completed and every task runs its spec.
    pub converged: bool,
}

/// What the swarm holds of the project before a deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwarmObserved {
    pub network: bool,
    /// The swarm node id of the manager the harness talks to.
    pub manager_node: Option<String>,
    /// The project's config objects, by name.
    pub configs: Vec<String>,
    /// The configured accessories' services that are there, by accessory
    /// name.
    pub accessories: std::collections::BTreeMap<String, ObservedService>,
    pub app: Option<ObservedService>,
    pub proxy: Option<ObservedService>,
    /// The release's image has a Docker healthcheck of its own: Swarm
    /// starts no request to a new task before it passes (its DNS names the
    /// task only then), and stops an old task only once a new one passed.
    pub release_checks_itself: bool,
    /// The app's next release beside it (`P-app-next`), left by a deploy
    /// that was killed.
    pub next: Option<ObservedService>,
    /// The release proven ready (`P-app-canary`), left by a deploy that was
    /// killed.
    pub canary: Option<ObservedService>,
}

/// What a deploy does on a swarm, besides what every target does.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// An attachable overlay network.
    CreateOverlay { name: String },
    /// A config object (immutable; named by its content).
    CreateConfig {
        name: String,
        #[serde(skip)]
        spec: Box<ConfigSpec>,
    },
    /// A service created with the registry's credentials, so that every
    /// node can pull its image.
    CreateService {
        name: String,
        image: String,
        #[serde(skip)]
        spec: Box<ServiceSpec>,
    },
    /// A service's spec replaced (Swarm rolls its tasks over by its
    /// `update_config`), with the registry's credentials.
    UpdateService {
        name: String,
        image: String,
        #[serde(skip)]
        spec: Box<ServiceSpec>,
    },
    /// Until the service's spec is the one labelled `spec`, its update
    /// completed and every task runs it (healthy, by the image's
    /// healthcheck), within `timeout_secs`; an update Swarm rolled back
    /// fails (the previous spec serves).
    AwaitService { name: String, image: String, spec: String, timeout_secs: u64 },
    /// Docker's service rollback (to the spec before the last update) when
    /// the service's spec is still the one labelled `from_spec`, then until
    /// it converged; nothing when it has another already (Swarm rolled it
    /// back itself).
    RollbackService { name: String, from_image: String, from_spec: String, timeout_secs: u64 },
    /// Until every task of the service `name` (`tasks` of them; those of
    /// `besides` left out: they answer to its name too) answers `path` on
    /// `port` with 2xx, probed from the proxy's task on the manager (on the
    /// overlay, where the proxy checks them), within `timeout_secs`.
    AwaitReady {
        name: String,
        besides: Option<String>,
        tasks: u32,
        path: String,
        port: u16,
        timeout_secs: u64,
        setting: String,
        proxy: String,
    },
    /// A service removed; nothing when there is none.
    RemoveService { name: String },
    /// A config object no service uses any more removed; nothing when it
    /// is gone or still in use.
    RemoveConfig { name: String },
    /// The overlay network removed once the removed services' tasks left
    /// it (bounded); nothing when it is gone (`harness remove`).
    RemoveNetwork { name: String },
    /// A volume on the manager's node removed, with its data, once no
    /// container holds it (bounded); nothing when it is gone (`harness
    /// remove --volumes`).
    RemoveVolume { name: String },
    /// The same on another node (by id), through a one-off job on that
    /// node (`act.rs` runs it).
    RemoveVolumeOn { name: String, node: String },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateOverlay { name } => write!(f, "create the overlay network {name}"),
            Action::CreateConfig { name, .. } => write!(f, "create the config {name}"),
            Action::CreateService { name, image, .. } => write!(f, "create the service {name} from {image}"),
            Action::UpdateService { name, image, .. } => write!(f, "update the service {name} to {image}"),
            Action::AwaitService { name, image, timeout_secs, .. } => {
                write!(f, "wait until every task of {name} runs {image}, healthy (at most {timeout_secs} s)")
            }
            Action::RollbackService { name, from_image, .. } => {
                write!(f, "roll the service {name} back from {from_image}")
            }
            Action::AwaitReady { name, path, tasks, timeout_secs, .. } => write!(
                f,
                "wait until the {tasks} tasks of {name} answer {path} with 2xx, probed from the manager's proxy (at \
                 most {timeout_secs} s)"
            ),
            Action::RemoveService { name } => write!(f, "remove the service {name}"),
            Action::RemoveConfig { name } => write!(f, "remove the config {name}, unless in use"),
            Action::RemoveNetwork { name } => write!(f, "remove the overlay network {name}"),
            Action::RemoveVolume { name } => write!(f, "remove the volume {name} and its data on the manager's node"),
            Action::RemoveVolumeOn { name, node } => {
                write!(f, "remove the volume {name} and its data on the node {node} (through a job there)")
            }
        }
    }
}

impl From<Action> for Op<Action> {
    fn from(action: Action) -> Self {
        Op::Target(action)
    }
}

pub type Step = crate::deploy::plan::Step<Action>;

/// The steps that take the swarm from `observed` to serving the release
/// through every node's proxy.
pub fn plan(observed: &SwarmObserved, context: &Context) -> Planned<Action> {
    let config = context.config;
    let release = context.release;
    let swarm = SwarmNames::new(config.project());
    let mut steps = infrastructure(observed, config, &swarm);
    let warnings = accessory_warnings(observed, config, &swarm);
    let proxy_text = services::proxy_text(config, &swarm);
    let proxy_config = swarm.proxy_config(&proxy_text);
    if !observed.configs.contains(&proxy_config) {
        let spec = services::proxy_config(config, &proxy_config, &proxy_text);
        steps.push(Step::new(Action::CreateConfig { name: proxy_config.clone(), spec: Box::new(spec) }));
    }
    let app = services::app(config, release, &swarm);
    let proxy = services::proxy(config, &swarm, &proxy_config);
    let unchanged = |service: &Option<ObservedService>, spec: &ServiceSpec| {
        let spec = services::spec_of(spec);
        service.as_ref().is_some_and(|s| s.converged && s.spec.as_deref() == spec)
    };
    // The app's spec counts as done only when the last deploy of this
    // release said so: one killed (or failed) after it updated the service
    // never ran its checks.
    let trusted = context.shared.last_outcome(&release.image).is_some_and(Outcome::served);
    let app_unchanged = trusted && unchanged(&observed.app, &app);
    let proxy_unchanged = unchanged(&observed.proxy, &proxy);
    if app_unchanged && proxy_unchanged {
        let summary = format!("{} runs this release on every task, converged: nothing to replace", swarm.app);
        // What a killed deploy left beside: the app serves without it.
        let cleanup =
            leftovers(observed, &swarm).into_iter().map(|name| Action::RemoveService { name }.into()).collect();
        return Planned { steps, cleanup, replaces: false, colour: None, summary, warnings };
    }

    steps.extend(context.hook(HookKind::PreDeploy, None));
    // The app first (a first deploy's proxy then finds tasks at once), then
    // the proxy; each waited for, each undone by going back.
    let mut summary = Vec::new();
    let timeout_secs = config.swarm.converge_timeout_secs;
    let ready = |name: &str, besides: Option<&str>| Action::AwaitReady {
        name: name.to_owned(),
        besides: besides.map(str::to_owned),
        tasks: config.swarm.replicas,
        path: config.healthcheck.path.clone(),
        port: config.app.port,
        timeout_secs: config.prod.health_timeout_secs,
        setting: "prod.health_timeout_secs".to_owned(),
        proxy: swarm.proxy.clone(),
    };
    // An image without a healthcheck of its own: Swarm would stop each old
    // task as soon as a new one runs, ready or not. The release is first
    // proven ready where no user reaches it (the canary), then runs beside
    // the old tasks (the next service), so that some ready task serves
    // throughout the roll; a release that never gets ready goes, and users
    // never left the old tasks.
    let beside =
        !app_unchanged && !observed.release_checks_itself && observed.app.is_some() && observed.proxy.is_some();
    let mut app_undo: Vec<Op<Action>> = Vec::new();
    if beside {
        for name in leftovers(observed, &swarm) {
            steps.push(Step::new(Action::RemoveService { name }));
        }
        for (name, spec) in [
            (&swarm.canary, services::canary(config, release, &swarm)),
            (&swarm.next, services::next(config, release, &swarm)),
        ] {
            let label = services::spec_of(&spec).unwrap_or_default().to_owned();
            let (name, image) = (name.clone(), release.image.clone());
            let create = Action::CreateService { name: name.clone(), image: image.clone(), spec: Box::new(spec) };
            steps.push(Step::undone_by(create, vec![Action::RemoveService { name: name.clone() }.into()]));
            steps.push(Step::new(Action::AwaitService { name: name.clone(), image, spec: label, timeout_secs }));
            steps.push(Step::new(ready(&name, None)));
        }
        summary.push(format!(
            "prove the release ready as {}, run it beside {} as {} (its image has no healthcheck)",
            swarm.canary, swarm.app, swarm.next
        ));
        // Back to the old tasks, ready, before the next service goes.
        app_undo.push(ready(&swarm.app, Some(&swarm.next)).into());
    }
    if !app_unchanged {
        let wanted = Wanted { name: &swarm.app, image: &release.image, spec: app, timeout_secs };
        summary.push(roll(&mut steps, &observed.app, wanted, app_undo));
    }
    if !proxy_unchanged {
        let wanted = Wanted { name: &swarm.proxy, image: &config.prod.proxy_image, spec: proxy, timeout_secs };
        summary.push(roll(&mut steps, &observed.proxy, wanted, Vec::new()));
    }
    // Readiness by healthcheck.path, with the proxy there to probe from.
    if !app_unchanged {
        let besides = (beside || observed.next.is_some()).then_some(swarm.next.as_str());
        steps.push(Step::new(ready(&swarm.app, besides)));
    }
    steps.extend(context.checks(None));
    steps.extend(context.hook(HookKind::PostDeploy, None));
    // The proxy's configs of before, once the deploy succeeded: a rollback
    // before then may still need them, and failing to remove one must not
    // undo a verified deploy. So does the next service, once the app's own
    // tasks serve the release, ready.
    let mut cleanup = Vec::new();
    if beside {
        for name in [&swarm.canary, &swarm.next] {
            cleanup.push(Action::RemoveService { name: name.clone() }.into());
        }
    } else {
        cleanup.extend(leftovers(observed, &swarm).into_iter().map(|name| Action::RemoveService { name }.into()));
    }
    if !proxy_unchanged {
        for old in observed.configs.iter().filter(|c| **c != proxy_config) {
            cleanup.push(Action::RemoveConfig { name: old.clone() }.into());
        }
    }
    let url = &context.url;
    let mut summary = format!("{}, then check through {url}; a failure rolls back", summary.join(", "));
    if !proxy_unchanged && observed.proxy.is_some() {
        // mode host: the old task must free the node's port first.
        summary.push_str(&format!(
            "; replacing {} closes each node's port {} in turn, for a few seconds",
            swarm.proxy, config.swarm.app_port
        ));
    }
    Planned { steps, cleanup, replaces: true, colour: None, summary, warnings }
}

/// The services a killed deploy left beside the app (the canary, the
/// next), by name.
fn leftovers(observed: &SwarmObserved, swarm: &SwarmNames) -> Vec<String> {
    let mut names = Vec::new();
    if observed.canary.is_some() {
        names.push(swarm.canary.clone());
    }
    if observed.next.is_some() {
        names.push(swarm.next.clone());
    }
    names
}

/// `harness remove`: the app's services first (users' connections are then
/// refused), the proxy and its configs, the accessories, the network; with
/// `volumes`, the accessories' volumes: on the manager's node through its
/// engine, on another node through a job there (the harness reaches the
/// manager's engine alone, and the workers have no API port); one whose
/// node is unknown is named in a warning, with how to remove it. Nothing
/// undoes it; none of it there: no steps.
pub fn removal(observed: &SwarmObserved, config: &Config, volumes: bool) -> Planned<Action> {
    let swarm = SwarmNames::new(config.project());
    let mut steps = Vec::new();
    let services = [
        (&observed.app, &swarm.app),
        (&observed.next, &swarm.next),
        (&observed.canary, &swarm.canary),
        (&observed.proxy, &swarm.proxy),
    ];
    for (seen, name) in services {
        if seen.is_some() {
            steps.push(Step::new(Action::RemoveService { name: name.clone() }));
        }
    }
    for name in observed.accessories.keys() {
        steps.push(Step::new(Action::RemoveService { name: swarm.accessory(name) }));
    }
    for name in &observed.configs {
        steps.push(Step::new(Action::RemoveConfig { name: name.clone() }));
    }
    if observed.network {
        steps.push(Step::new(Action::RemoveNetwork { name: swarm.network.clone() }));
    }
    let (mut kept, mut warnings) = (Vec::new(), Vec::new());
    for (name, accessory) in &config.accessories {
        if accessory.volume.is_none() {
            continue;
        }
        let volume = swarm.accessory(name);
        // Where its task ran: the node it is pinned to, else where a new
        // one would have been made.
        let pinned = observed.accessories.get(name).and_then(|seen| {
            seen.constraints.iter().find_map(|c| c.strip_prefix("node.id ==").map(|id| id.trim().to_owned()))
        });
        let node = pinned.or_else(|| config.swarm.database_node.clone()).or_else(|| observed.manager_node.clone());
        match (volumes, node == observed.manager_node && node.is_some()) {
            (false, _) => kept.push(volume),
            (true, true) => steps.push(Step::new(Action::RemoveVolume { name: volume })),
            (true, false) => match node {
                Some(node) => steps.push(Step::new(Action::RemoveVolumeOn { name: volume, node })),
                None => warnings.push(format!(
                    "the volume {volume}: the node it is on is unknown, so it is kept; remove it on that node with \
                     `docker volume rm {volume}`"
                )),
            },
        }
    }
    let mut summary = if steps.is_empty() {
        format!("nothing of {} runs on the swarm", swarm.project)
    } else {
        format!("take {} off the swarm (the lock and the history stay)", swarm.project)
    };
    if !kept.is_empty() {
        summary.push_str(&format!("; the volumes {} are kept (--volumes removes them)", kept.join(", ")));
    }
    Planned { steps, cleanup: Vec::new(), replaces: false, colour: None, summary, warnings }
}

/// What lasts: the network, the accessories (never made again: their
/// data lives in their volumes on their pinned nodes).
fn infrastructure(observed: &SwarmObserved, config: &Config, swarm: &SwarmNames) -> Vec<Step> {
    let mut steps = Vec::new();
    if !observed.network {
        steps.push(Step::new(Action::CreateOverlay { name: swarm.network.clone() }));
    }
    // Pinned by id to one node, where its volume will be: the one set,
    // else the manager.
    let node = config.swarm.database_node.as_deref().or(observed.manager_node.as_deref()).unwrap_or_default();
    for (name, accessory) in &config.accessories {
        if observed.accessories.contains_key(name) {
            continue;
        }
        let spec = services::accessory(config, swarm, name, accessory, &services::pinned_to(node));
        let (service, image) = (swarm.accessory(name), accessory.image.clone());
        steps.push(Step::new(Action::CreateService { name: service, image, spec: Box::new(spec) }));
    }
    steps
}

/// A service a deploy wants running `spec`.
struct Wanted<'a> {
    name: &'a str,
    image: &'a str,
    spec: ServiceSpec,
    timeout_secs: u64,
}

/// The steps that bring one service to `wanted`, each undone by going
/// back; what they do, for the summary.
fn roll(
    steps: &mut Vec<Step>,
    observed: &Option<ObservedService>,
    wanted: Wanted,
    after_rollback: Vec<Op<Action>>,
) -> String {
    let (name, image) = (wanted.name.to_owned(), wanted.image.to_owned());
    let spec = services::spec_of(&wanted.spec).unwrap_or_default().to_owned();
    let timeout_secs = wanted.timeout_secs;
    let wait = Action::AwaitService { name: name.clone(), image: image.clone(), spec: spec.clone(), timeout_secs };
    let rollback = || {
        let (name, from_image, from_spec) = (name.clone(), image.clone(), spec.clone());
        let mut undo = vec![Action::RollbackService { name, from_image, from_spec, timeout_secs }.into()];
        undo.extend(after_rollback.iter().cloned());
        undo
    };
    match observed {
        // Its spec already, not converged or not checked (a deploy killed
        // while it waited, a node lost): Swarm converges by itself; wait
        // for it, then check; a failure rolls it back (the rollback's spec
        // guard leaves any other spec alone).
        Some(service) if service.spec.as_deref() == Some(spec.as_str()) => {
            steps.push(Step::undone_by(wait, rollback()));
            format!("wait for {name} to converge")
        }
        None => {
            let create =
                Action::CreateService { name: name.clone(), image: image.clone(), spec: Box::new(wanted.spec) };
            steps.push(Step::undone_by(create, vec![Action::RemoveService { name: name.clone() }.into()]));
            steps.push(Step::new(wait));
            format!("create {name}")
        }
        Some(_) => {
            let update =
                Action::UpdateService { name: name.clone(), image: image.clone(), spec: Box::new(wanted.spec) };
            steps.push(Step::undone_by(update, rollback()));
            steps.push(Step::new(wait));
            format!("roll {name} over to it")
        }
    }
}

/// An accessory's service is never updated by a deploy (a new task could
/// start away from its data): say when one differs from what this
/// configuration would create, and when it is not pinned to one node.
fn accessory_warnings(observed: &SwarmObserved, config: &Config, swarm: &SwarmNames) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, seen) in &observed.accessories {
        let Some(accessory) = config.accessories.get(name) else { continue };
        let service = swarm.accessory(name);
        let constraint = seen.constraints.first().cloned().unwrap_or_default();
        let wanted = services::accessory(config, swarm, name, accessory, &constraint);
        if seen.spec.as_deref() != services::spec_of(&wanted) {
            let volume = if accessory.volume.is_some() {
                format!(" (its volume {service} keeps the data)")
            } else {
                String::new()
            };
            warnings.push(format!(
                "{service} runs {} with a spec other than this configuration's (accessories.{name}, log settings, \
                 or a harness of another version): deploys never update an accessory; update it by hand (`docker \
                 service update`) or remove the service{volume} for the next deploy to create it",
                seen.image
            ));
        }
        if !(seen.constraints.len() == 1 && constraint.starts_with("node.id ==")) {
            warnings.push(format!(
                "{service} is not pinned to one node by id (constraints {:?}): Swarm may start it again on another \
                 node, with an empty volume; pin it (`docker service update --constraint-rm ... --constraint-add \
                 'node.id == ID'`, the node holding its volume)",
                seen.constraints
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::core::testing;
    use crate::deploy::plan::Plan;
    use crate::deploy::swarm::Swarm;
    use crate::deploy::target::Shared;
    use crate::release::Release;

    fn release() -> Release {
        Release::given("10.200.0.1:5000/books-ms@sha256:abc".into(), "v2".into(), Some("r2".into()))
    }

    /// The history of a swarm whose app's image was deployed and checked.
    fn shared_of(observed: &SwarmObserved) -> Shared {
        let mut shared = testing::shared();
        if let Some(app) = &observed.app {
            shared.entries.push(testing::entry(&app.image, Outcome::Succeeded));
        }
        shared
    }

    fn plan_with(observed: &SwarmObserved, shared: &Shared, config: &Config) -> Planned<Action> {
        testing::planned(&Swarm { config }, observed, shared, &release())
    }

    fn plan_for(observed: &SwarmObserved, config: &Config) -> Planned<Action> {
        plan_with(observed, &shared_of(observed), config)
    }

    fn whole_plan(observed: &SwarmObserved, config: &Config) -> Plan<Action> {
        testing::plan(&Swarm { config }, observed, &shared_of(observed), &release()).unwrap()
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.action.to_string()).collect()
    }

    fn undo_lines(step: &Step) -> Vec<String> {
        step.undo.iter().map(ToString::to_string).collect()
    }

    fn swarm_names() -> SwarmNames {
        SwarmNames::new("books-ms")
    }

    fn proxy_config() -> String {
        swarm_names().proxy_config(&services::proxy_text(&crate::config::books_ms(), &swarm_names()))
    }

    fn service(spec: &bollard::models::ServiceSpec) -> ObservedService {
        ObservedService {
            spec: services::spec_of(spec).map(str::to_owned),
            image: services::image_of(spec).unwrap_or_default().to_owned(),
            constraints: spec
                .task_template
                .as_ref()
                .and_then(|t| t.placement.as_ref()?.constraints.clone())
                .unwrap_or_default(),
            converged: true,
        }
    }

    /// A swarm running `live` (the app's image) behind this configuration's proxy.
    fn running(config: &Config, live: &Release) -> SwarmObserved {
        let names = swarm_names();
        let config_name = proxy_config();
        SwarmObserved {
            network: true,
            configs: vec![config_name.clone()],
            manager_node: Some("m4n4g3r".into()),
            accessories: [(
                "db".to_owned(),
                service(&services::accessory(
                    config,
                    &names,
                    "db",
                    &config.accessories["db"],
                    &services::pinned_to("m4n4g3r"),
                )),
            )]
            .into(),
            app: Some(service(&services::app(config, live, &names))),
            proxy: Some(service(&services::proxy(config, &names, &config_name))),
            // books-ms's image has a HEALTHCHECK.
            release_checks_itself: true,
            next: None,
            canary: None,
        }
    }

    fn older() -> Release {
        Release::given("10.200.0.1:5000/books-ms@sha256:old".into(), "v1".into(), Some("r1".into()))
    }

    #[test]
    fn a_first_deploy_creates_the_network_the_database_the_app_then_the_proxy_and_checks() {
        let config = crate::config::books_ms();
        let plan = plan_for(&SwarmObserved::default(), &config);
        let db = &config.accessories["db"].image;
        let proxy = &config.prod.proxy_image;
        let timeout = config.swarm.converge_timeout_secs;
        assert!(plan.replaces);
        assert_eq!(
            lines(&plan.steps),
            [
                "create the overlay network books-ms".to_owned(),
                format!("create the service books-ms-db from {db}"),
                format!("create the config {}", proxy_config()),
                "create the service books-ms-app from 10.200.0.1:5000/books-ms@sha256:abc".into(),
                format!(
                    "wait until every task of books-ms-app runs 10.200.0.1:5000/books-ms@sha256:abc, healthy (at most \
                     {timeout} s)"
                ),
                format!("create the service books-ms-proxy from {proxy}"),
                format!("wait until every task of books-ms-proxy runs {proxy}, healthy (at most {timeout} s)"),
                format!(
                    "wait until the 2 tasks of books-ms-app answer /ready with 2xx, probed from the manager's proxy \
                     (at most {} s)",
                    config.prod.health_timeout_secs
                ),
                "check that http://10.210.0.11:8080/version reports revision r2".into(),
                "run the post-deploy checks on http://10.210.0.11:8080".into(),
            ]
        );
        assert_eq!(undo_lines(&plan.steps[3]), ["remove the service books-ms-app"]);
        assert_eq!(undo_lines(&plan.steps[5]), ["remove the service books-ms-proxy"]);
        let whole =
            testing::plan(&Swarm { config: &config }, &SwarmObserved::default(), &Shared::default(), &release());
        let whole = whole.unwrap().operations();
        assert_eq!(whole[0], "pull 10.200.0.1:5000/books-ms@sha256:abc", "the lock's image, on the manager");
        assert_eq!(whole[1], "take the deploy lock books-ms-deploy-lock");
        assert_eq!(
            whole[2..5],
            [
                format!("pull {proxy}"),
                format!("create books-ms-history from {proxy}"),
                "record in books-ms-history that this deploy runs".to_owned()
            ],
            "the history on the manager's engine, first, of the proxy's image (a service may have no database)"
        );
    }

    #[test]
    fn the_database_is_created_pinned_to_the_managers_node_or_the_one_set() {
        let db_constraint = |plan: &Planned<Action>| {
            plan.steps.iter().find_map(|step| match &step.action {
                Op::Target(Action::CreateService { name, spec, .. }) if name == "books-ms-db" => {
                    spec.task_template.as_ref()?.placement.as_ref()?.constraints.clone()
                }
                _ => None,
            })
        };
        let mut config = crate::config::books_ms();
        let observed = SwarmObserved { manager_node: Some("m4n4g3r".into()), ..Default::default() };
        let plan = plan_for(&observed, &config);
        assert_eq!(db_constraint(&plan), Some(vec!["node.id == m4n4g3r".to_owned()]));
        config.swarm.database_node = Some("w0rk3r".into());
        let plan = plan_for(&observed, &config);
        assert_eq!(db_constraint(&plan), Some(vec!["node.id == w0rk3r".to_owned()]), "the setting first");
        let plan = plan_for(&running(&crate::config::books_ms(), &older()), &config);
        assert_eq!(db_constraint(&plan), None, "an existing database keeps its node");
    }

    #[test]
    fn a_new_release_rolls_the_app_over_and_a_failed_check_rolls_it_back() {
        let config = crate::config::books_ms();
        let observed = running(&config, &older());
        let plan = plan_for(&observed, &config);
        let timeout = config.swarm.converge_timeout_secs;
        assert_eq!(
            lines(&plan.steps),
            [
                "update the service books-ms-app to 10.200.0.1:5000/books-ms@sha256:abc".to_owned(),
                format!(
                    "wait until every task of books-ms-app runs 10.200.0.1:5000/books-ms@sha256:abc, healthy (at most \
                     {timeout} s)"
                ),
                format!(
                    "wait until the 2 tasks of books-ms-app answer /ready with 2xx, probed from the manager's proxy \
                     (at most {} s)",
                    config.prod.health_timeout_secs
                ),
                "check that http://10.210.0.11:8080/version reports revision r2".into(),
                "run the post-deploy checks on http://10.210.0.11:8080".into(),
            ]
        );
        // The post-deploy checks fail: the undo of every step so far, latest first.
        let undo: Vec<String> = plan.steps.iter().rev().flat_map(undo_lines).collect();
        assert_eq!(undo, ["roll the service books-ms-app back from 10.200.0.1:5000/books-ms@sha256:abc"]);
        match &plan.steps[0].undo[0] {
            Op::Target(Action::RollbackService { from_spec, .. }) => {
                let spec = services::app(&config, &release(), &swarm_names());
                assert_eq!(Some(from_spec.as_str()), services::spec_of(&spec), "only undoes its own update");
            }
            other => panic!("{other:?}"),
        }
        assert!(plan.summary.contains("roll books-ms-app over"), "{}", plan.summary);
    }

    #[test]
    fn the_same_release_converged_is_left_alone_and_an_unconverged_one_waited_for() {
        let config = crate::config::books_ms();
        let observed = running(&config, &release());
        let plan = plan_for(&observed, &config);
        assert!(!plan.replaces, "{:#?}", lines(&plan.steps));
        assert!(plan.steps.is_empty(), "{:#?}", lines(&plan.steps));
        let mut stuck = observed.clone();
        stuck.app.as_mut().unwrap().converged = false;
        let plan = plan_for(&stuck, &config);
        assert!(plan.replaces);
        assert!(
            lines(&plan.steps)[0].starts_with("wait until every task of books-ms-app runs"),
            "{:#?}",
            lines(&plan.steps)
        );
        assert_eq!(
            undo_lines(&plan.steps[0]),
            ["roll the service books-ms-app back from 10.200.0.1:5000/books-ms@sha256:abc"],
            "a failed check undoes the update the killed deploy made"
        );
        assert!(lines(&plan.steps)[1].starts_with("wait until the 2 tasks"), "{:#?}", lines(&plan.steps));
        assert!(lines(&plan.steps)[2].starts_with("check that"), "{:#?}", lines(&plan.steps));
    }

    #[test]
    fn the_same_release_converged_is_checked_unless_its_last_deploy_ended_well() {
        let config = crate::config::books_ms();
        let observed = running(&config, &release());
        for outcome in [None, Some(Outcome::Interrupted), Some(Outcome::Running), Some(Outcome::Failed)] {
            let mut shared = testing::shared();
            shared.entries.extend(outcome.map(|outcome| testing::entry(&release().image, outcome)));
            let plan = plan_with(&observed, &shared, &config);
            assert!(plan.replaces, "{outcome:?}: {}", plan.summary);
            let lines = lines(&plan.steps);
            assert!(lines[0].starts_with("wait until every task of books-ms-app runs"), "{outcome:?}: {lines:#?}");
            assert_eq!(plan.steps[0].undo.len(), 1, "{outcome:?}: a failed check rolls it back");
            assert!(lines[1].starts_with("wait until the 2 tasks of books-ms-app answer /ready"), "{lines:#?}");
            assert!(lines[2].starts_with("check that") && lines[3].starts_with("run the post-deploy"), "{lines:#?}");
        }
        let mut shared = testing::shared();
        shared.entries.push(testing::entry(&release().image, Outcome::Unchanged));
        assert!(!plan_with(&observed, &shared, &config).replaces);
    }

    #[test]
    fn a_new_proxy_configuration_is_a_new_config_object_and_a_proxy_update() {
        let config = crate::config::books_ms();
        let mut observed = running(&config, &release());
        // A proxy rendered by an older harness, from another text.
        observed.configs = vec!["books-ms-proxy-000000000000".into()];
        observed.proxy.as_mut().unwrap().spec = Some("older".into());
        let plan = plan_for(&observed, &config);
        let lines = lines(&plan.steps);
        let new_config = proxy_config();
        assert_eq!(lines[0], format!("create the config {new_config}"));
        assert_eq!(lines[1], format!("update the service books-ms-proxy to {}", config.prod.proxy_image));
        let undo: Vec<String> = plan.steps.iter().rev().flat_map(undo_lines).collect();
        assert_eq!(undo.len(), 1, "{undo:?}");
        assert!(undo[0].starts_with("roll the service books-ms-proxy back"), "{undo:?}");
        assert!(plan.summary.contains("closes each node's port 8080 in turn"), "{}", plan.summary);
        assert!(lines.iter().all(|l| !l.starts_with("remove the config")), "never a step, so never undone");
        let cleanup: Vec<String> = plan.cleanup.iter().map(ToString::to_string).collect();
        assert_eq!(cleanup, ["remove the config books-ms-proxy-000000000000, unless in use"]);
        let text = whole_plan(&observed, &config).to_string();
        assert!(
            text.contains(
                "remove the config books-ms-proxy-000000000000, unless in use (once it succeeded, best-effort)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn more_replicas_update_the_app_alone_never_the_proxy() {
        let config = crate::config::books_ms();
        let observed = running(&config, &release());
        let mut more = config.clone();
        more.swarm.replicas = 3;

        let plan = plan_for(&observed, &more);
        let lines = lines(&plan.steps);
        assert_eq!(lines[0], "update the service books-ms-app to 10.200.0.1:5000/books-ms@sha256:abc");
        assert!(lines.iter().all(|l| !l.contains("books-ms-proxy")), "{lines:#?}");
        assert!(!plan.summary.contains("port"), "{}", plan.summary);
    }

    #[test]
    fn the_database_is_never_made_again_a_missing_network_is() {
        let config = crate::config::books_ms();
        let mut observed = running(&config, &release());
        observed.network = false;
        let db = observed.accessories.get_mut("db").unwrap();
        db.spec = Some("another".into());
        db.converged = false;
        let plan = plan_for(&observed, &config);
        assert_eq!(lines(&plan.steps), ["create the overlay network books-ms"]);
        assert!(!plan.replaces);
    }

    #[test]
    fn a_database_unlike_this_configurations_or_pinned_by_role_is_warned_of_never_changed() {
        let config = crate::config::books_ms();
        let observed = running(&config, &release());
        assert!(plan_for(&observed, &config).warnings.is_empty());

        let mut other = config.clone();
        other.accessories.get_mut("db").unwrap().image = "10.200.0.1:5000/mongo:8".into();
        let plan = plan_for(&observed, &other);
        assert!(plan.steps.is_empty() && !plan.replaces, "never updated");
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert!(plan.warnings[0].starts_with("books-ms-db runs") && plan.warnings[0].contains("by hand"));
        let text =
            testing::plan(&Swarm { config: &other }, &observed, &shared_of(&observed), &release()).unwrap().to_string();
        assert!(text.contains("warning: books-ms-db runs"), "{text}");

        let mut by_role = observed.clone();
        let spec =
            services::accessory(&config, &swarm_names(), "db", &config.accessories["db"], "node.role == manager");
        by_role.accessories.insert("db".into(), service(&spec));
        let warnings = plan_for(&by_role, &config).warnings;
        assert_eq!(warnings.len(), 1, "same spec, but not pinned by id: {warnings:?}");
        assert!(warnings[0].contains("not pinned to one node by id"), "{warnings:?}");
    }

    #[test]
    fn a_release_without_a_healthcheck_is_proven_ready_unseen_then_runs_beside_the_old_tasks_while_the_app_rolls() {
        let config = crate::config::books_ms();
        let mut observed = running(&config, &older());
        observed.release_checks_itself = false;
        let plan = plan_for(&observed, &config);
        let (timeout, health) = (config.swarm.converge_timeout_secs, config.prod.health_timeout_secs);
        let image = "10.200.0.1:5000/books-ms@sha256:abc";
        let ready = |name: &str| {
            format!(
                "wait until the 2 tasks of {name} answer /ready with 2xx, probed from the manager's proxy (at most \
                 {health} s)"
            )
        };
        let wait = |name: &str| format!("wait until every task of {name} runs {image}, healthy (at most {timeout} s)");
        assert_eq!(
            lines(&plan.steps),
            [
                format!("create the service books-ms-app-canary from {image}"),
                wait("books-ms-app-canary"),
                ready("books-ms-app-canary"),
                format!("create the service books-ms-app-next from {image}"),
                wait("books-ms-app-next"),
                ready("books-ms-app-next"),
                format!("update the service books-ms-app to {image}"),
                wait("books-ms-app"),
                ready("books-ms-app"),
                "check that http://10.210.0.11:8080/version reports revision r2".into(),
                "run the post-deploy checks on http://10.210.0.11:8080".into(),
            ]
        );
        // Never ready: the canary goes; no user reached it, the app was never touched.
        assert_eq!(undo_lines(&plan.steps[0]), ["remove the service books-ms-app-canary"]);
        assert_eq!(undo_lines(&plan.steps[3]), ["remove the service books-ms-app-next"]);
        // A failure after the update: back to the old tasks, ready, before the next service goes.
        assert_eq!(
            undo_lines(&plan.steps[6]),
            [format!("roll the service books-ms-app back from {image}"), ready("books-ms-app")]
        );
        match &plan.steps[8].action {
            Op::Target(Action::AwaitReady { besides, port, .. }) => {
                assert_eq!((besides.as_deref(), *port), (Some("books-ms-app-next"), 8080), "its own tasks only");
            }
            other => panic!("{other:?}"),
        }
        let cleanup: Vec<String> = plan.cleanup.iter().map(ToString::to_string).collect();
        assert_eq!(
            cleanup,
            ["remove the service books-ms-app-canary", "remove the service books-ms-app-next"],
            "once the app's own tasks are ready"
        );
        let alias = |step: &Step| match &step.action {
            Op::Target(Action::CreateService { spec, .. }) => {
                assert!(spec.update_config.is_none());
                let network = &spec.task_template.as_ref().unwrap().networks.as_ref().unwrap()[0];
                network.aliases.clone().unwrap_or_default()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(alias(&plan.steps[0]), ["books-ms-app-canary"], "no proxy finds the canary");
        assert_eq!(alias(&plan.steps[3]), ["books-ms-app"], "the proxy's tasks.books-ms-app names the next's tasks");
    }

    #[test]
    fn a_next_service_a_killed_deploy_left_is_replaced_or_removed_once_the_app_is_ready() {
        let config = crate::config::books_ms();
        let mut observed = running(&config, &older());
        observed.release_checks_itself = false;
        observed.next = observed.app.clone();
        let plan = plan_for(&observed, &config);
        assert_eq!(lines(&plan.steps)[0], "remove the service books-ms-app-next");
        assert!(lines(&plan.steps)[1].starts_with("create the service books-ms-app-canary"));

        let mut same = running(&config, &release());
        same.next = same.app.clone();
        let plan = plan_for(&same, &config);
        assert!(plan.steps.is_empty() && !plan.replaces);
        let cleanup: Vec<String> = plan.cleanup.iter().map(ToString::to_string).collect();
        assert_eq!(cleanup, ["remove the service books-ms-app-next"]);
    }

    #[test]
    fn a_first_deploy_without_a_healthcheck_creates_the_app_and_waits_for_its_readiness_once_the_proxy_runs() {
        let config = crate::config::books_ms();
        let plan = plan_for(&SwarmObserved::default(), &config);
        let lines = lines(&plan.steps);
        let proxy = lines.iter().position(|l| l.starts_with("create the service books-ms-proxy")).unwrap();
        let ready = lines.iter().position(|l| l.starts_with("wait until the 2 tasks of books-ms-app answer")).unwrap();
        assert!(proxy < ready, "{lines:#?}");
        assert!(lines.iter().all(|l| !l.contains("books-ms-app-next")), "nothing to serve beside: {lines:#?}");
    }

    #[test]
    fn removal_takes_the_services_configs_and_network_and_with_volumes_those_on_the_manager() {
        let config = crate::config::books_ms();
        let mut observed = running(&config, &release());
        observed.next = observed.app.clone();
        let plan = removal(&observed, &config, false);
        assert_eq!(
            lines(&plan.steps),
            [
                "remove the service books-ms-app".to_owned(),
                "remove the service books-ms-app-next".into(),
                "remove the service books-ms-proxy".into(),
                "remove the service books-ms-db".into(),
                format!("remove the config {}, unless in use", proxy_config()),
                "remove the overlay network books-ms".into(),
            ]
        );
        assert!(plan.summary.contains("the volumes books-ms-db are kept"), "{}", plan.summary);
        assert!(plan.steps.iter().all(|s| s.undo.is_empty()), "nothing undoes a removal");

        let plan = removal(&observed, &config, true);
        assert_eq!(
            lines(&plan.steps).last().unwrap(),
            "remove the volume books-ms-db and its data on the manager's node"
        );
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);

        // Pinned to a worker: through a job there.
        let db = observed.accessories.get_mut("db").unwrap();
        db.constraints = vec![services::pinned_to("w0rk3r")];
        let plan = removal(&observed, &config, true);
        assert_eq!(
            lines(&plan.steps).last().unwrap(),
            "remove the volume books-ms-db and its data on the node w0rk3r (through a job there)"
        );
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);

        let nothing = removal(&SwarmObserved { manager_node: Some("m".into()), ..Default::default() }, &config, false);
        assert!(nothing.steps.is_empty() && nothing.summary.starts_with("nothing of books-ms"), "{}", nothing.summary);
    }

    #[test]
    fn hooks_run_before_the_update_and_after_the_checks() {
        let mut config = crate::config::books_ms();
        config.hooks.pre_deploy = Some("./announce".into());
        config.hooks.post_deploy = Some("./smoke".into());
        let plan = plan_for(&running(&config, &older()), &config);
        let lines = lines(&plan.steps);
        assert_eq!(lines.first().unwrap(), "run the pre-deploy hook");
        assert_eq!(lines.last().unwrap(), "run the post-deploy hook");
    }

    #[test]
    fn a_lock_held_by_another_deploy_refuses_naming_the_holder() {
        let config = crate::config::books_ms();
        let shared = Shared { lock_holder: Some("harness pid 42 on cd".into()), ..testing::shared() };
        let target = Swarm { config: &config };
        let error = testing::plan(&target, &SwarmObserved::default(), &shared, &release()).unwrap_err().to_string();
        assert!(error.contains("harness pid 42 on cd") && error.contains("harness lock release"), "{error}");
    }

    #[test]
    fn the_dry_run_text_names_the_swarm_and_numbers_every_action_with_its_undo() {
        let config = crate::config::books_ms();
        let text = whole_plan(&running(&config, &older()), &config).to_string();
        assert!(text.starts_with("deploy 10.200.0.1:5000/books-ms@sha256:abc (revision r2) to the swarm"), "{text}");
        assert!(
            text.contains(
                "  4. update the service books-ms-app to 10.200.0.1:5000/books-ms@sha256:abc\n       undo: roll the \
                 service books-ms-app back"
            ),
            "{text}"
        );
    }
}
