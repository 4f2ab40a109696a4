//! A deploy as data: what prod looks like ([`Observed`]) and the release
//! go in, the list of [`Step`]s that takes prod there comes out, each with
//! the actions that undo it. Pure: no I/O, so every case is a unit test, and
//! `harness deploy --dry-run` prints the very list a deploy would run. The
//! executor (`executor.rs`) runs it; when a step fails, it runs the undo of
//! that step and of every earlier one, latest first.
//!
//! Blue-green: the release starts as the idle colour, is checked through
//! the proxy with a preview header, then the proxy switches to it, the
//! checks run again as users reach it, and the old colour drains and stops
//! (kept for a rollback). Until the switch, users are served by the old
//! colour; after it, by the new one; an undone switch puts them back.

use std::fmt;

use bollard::models::{ConfigSpec, ContainerCreateBody, ServiceSpec};
use serde::Serialize;

use super::containers;
use super::names::Names;
use super::proxy::{Colour, Preview, Routing};
use crate::config::Config;
use crate::release::Release;

/// The least time a container put back by an undo gets to turn healthy.
pub const RESTORE_TIMEOUT_SECS: u64 = 60;

/// A container of the project on prod, as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    pub running: bool,
    /// Docker's healthcheck says healthy.
    pub healthy: bool,
    /// Its spec label (see `names::SPEC_LABEL`).
    pub spec: Option<String>,
}

/// The proxy container, and what its configuration routes where (None: a
/// configuration the harness did not write, or none yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyState {
    pub container: Container,
    pub routing: Option<Routing>,
}

/// What prod holds of the project before a deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub network: bool,
    pub volume: bool,
    pub db: Option<Container>,
    pub proxy: Option<ProxyState>,
    pub blue: Option<Container>,
    pub green: Option<Container>,
    /// The containers of deploys before blue-green (`P-app`,
    /// `P-app-previous`), by name.
    pub legacy: Vec<String>,
    /// Who holds the deploy lock, when another deploy holds it.
    pub lock_holder: Option<String>,
    /// The history's container is there.
    pub history: bool,
}

impl Observed {
    pub fn colour(&self, colour: Colour) -> Option<&Container> {
        match colour {
            Colour::Blue => self.blue.as_ref(),
            Colour::Green => self.green.as_ref(),
        }
    }

    /// The colour users reach: the proxy's, when that colour's container
    /// is there.
    pub fn live(&self) -> Option<Colour> {
        let live = self.proxy.as_ref()?.routing.as_ref()?.live?;
        self.colour(live).is_some().then_some(live)
    }
}

/// One thing a deploy does on prod.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Pulls an image by reference, with the registry's credentials.
    Pull {
        image: String,
    },
    /// Creates the lock container; refused when another deploy holds it.
    TakeLock {
        name: String,
        holder: String,
        #[serde(skip)]
        body: Box<ContainerCreateBody>,
    },
    ReleaseLock {
        name: String,
    },
    CreateNetwork {
        name: String,
    },
    CreateVolume {
        name: String,
    },
    Create {
        name: String,
        image: String,
        #[serde(skip)]
        body: Box<ContainerCreateBody>,
    },
    Start {
        name: String,
    },
    /// Stops a container, giving it time to finish requests in flight.
    Stop {
        name: String,
    },
    /// Removes a container, whatever its state; nothing when there is none.
    Remove {
        name: String,
    },
    /// Until Docker's healthcheck says healthy (or, when
    /// `no_healthcheck_ok`, the container runs and its image has none).
    WaitHealthy {
        name: String,
        timeout_secs: u64,
        setting: String,
        no_healthcheck_ok: bool,
    },
    /// Writes the proxy's configuration for `routing`; `apply`: gives the
    /// running proxy that state too (its runtime API: no reload).
    Route {
        proxy: String,
        routing: Routing,
        apply: bool,
    },
    /// `GET url` must report this revision within a few seconds (the proxy
    /// resolves a colour it was just told of within a second).
    CheckVersion {
        url: String,
        revision: String,
        #[serde(skip)]
        preview: Option<String>,
    },
    /// The post-deploy checks (`harness verify`) on the reserved ids.
    Verify {
        url: String,
        ids: Vec<i32>,
        #[serde(skip)]
        preview: Option<String>,
    },
    /// Lets the old colour finish what it holds: until the proxy has no
    /// request on it, at most `secs`.
    Drain {
        secs: u64,
        proxy: String,
        colour: Colour,
    },
    /// A user's hook (`hooks.pre_deploy`, `hooks.post_deploy`), run on this
    /// machine with the release in its environment.
    Hook {
        name: String,
        command: String,
        timeout_secs: u64,
        #[serde(skip)]
        env: Vec<(String, String)>,
    },
    /// The swarm: an attachable overlay network.
    CreateOverlay {
        name: String,
    },
    /// The swarm: a config object (immutable; named by its content).
    CreateConfig {
        name: String,
        #[serde(skip)]
        spec: Box<ConfigSpec>,
    },
    /// The swarm: a service created with the registry's credentials, so
    /// that every node can pull its image.
    CreateService {
        name: String,
        image: String,
        #[serde(skip)]
        spec: Box<ServiceSpec>,
    },
    /// The swarm: a service's spec replaced (Swarm rolls its tasks over by
    /// its `update_config`), with the registry's credentials.
    UpdateService {
        name: String,
        image: String,
        #[serde(skip)]
        spec: Box<ServiceSpec>,
    },
    /// The swarm: until the service's spec is the one labelled `spec`, its
    /// update completed and every task runs it (healthy, by the image's
    /// healthcheck), within `timeout_secs`; an update Swarm rolled back
    /// fails (the previous spec serves).
    AwaitService {
        name: String,
        image: String,
        spec: String,
        timeout_secs: u64,
    },
    /// The swarm: Docker's service rollback (to the spec before the last
    /// update) when the service's spec is still the one labelled
    /// `from_spec`, then until it converged; nothing when it has another
    /// already (Swarm rolled it back itself).
    RollbackService {
        name: String,
        from_image: String,
        from_spec: String,
        timeout_secs: u64,
    },
    /// The swarm: a service removed; nothing when there is none.
    RemoveService {
        name: String,
    },
    /// The swarm: a config object no service uses any more removed;
    /// nothing when it is gone or still in use.
    RemoveConfig {
        name: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let through = |preview: &Option<String>| if preview.is_some() { " with the preview header" } else { "" };
        match self {
            Action::Pull { image } => write!(f, "pull {image}"),
            Action::TakeLock { name, holder, .. } => write!(f, "take the deploy lock {name} ({holder})"),
            Action::ReleaseLock { name } => write!(f, "release the deploy lock {name}"),
            Action::CreateNetwork { name } => write!(f, "create the network {name}"),
            Action::CreateVolume { name } => write!(f, "create the volume {name}"),
            Action::Create { name, image, .. } => write!(f, "create {name} from {image}"),
            Action::Start { name } => write!(f, "start {name}"),
            Action::Stop { name } => write!(f, "stop {name}"),
            Action::Remove { name } => write!(f, "remove {name}"),
            Action::WaitHealthy { name, timeout_secs, .. } => {
                write!(f, "wait until {name} is healthy (at most {timeout_secs} s)")
            }
            Action::Route { proxy, routing, apply } => {
                let how = if *apply { ", applied" } else { "" };
                write!(f, "route {proxy}: {routing}{how}")
            }
            Action::CheckVersion { url, revision, preview } => {
                write!(f, "check that {url}{} reports revision {revision}", through(preview))
            }
            Action::Verify { url, preview, .. } => write!(f, "run the post-deploy checks on {url}{}", through(preview)),
            Action::Drain { secs, colour, .. } => {
                write!(f, "drain {colour} until the proxy has no request on it (at most {secs} s)")
            }
            // Not its command: this text is kept in prod's history, and a
            // command may carry what its author would not have stored.
            Action::Hook { name, .. } => write!(f, "run the {name} hook"),
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
            Action::RemoveService { name } => write!(f, "remove the service {name}"),
            Action::RemoveConfig { name } => write!(f, "remove the config {name}, unless in use"),
        }
    }
}

/// One action and what undoes it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub action: Action,
    pub undo: Vec<Action>,
}

impl Step {
    pub(crate) fn new(action: Action) -> Step {
        Step { action, undo: Vec::new() }
    }

    pub(crate) fn undone_by(action: Action, undo: Vec<Action>) -> Step {
        Step { action, undo }
    }
}

/// What a deploy will do, in order.
#[derive(Debug, Clone, Serialize)]
pub struct DeployPlan {
    pub release: Release,
    /// The colour the release starts as; None when it is live already.
    pub target: Option<Colour>,
    /// Before anything is observed: pull the release, take the lock.
    pub prelude: Vec<Action>,
    /// Under the lock, from what was observed.
    pub steps: Vec<Step>,
    /// Always, once the lock was taken.
    pub finally: Vec<Action>,
    /// Why the steps are what they are, in a sentence.
    pub summary: String,
}

impl DeployPlan {
    /// Nothing to replace: prod already serves this release, healthy.
    pub fn is_noop(&self) -> bool {
        self.target.is_none()
    }
}

/// `--dry-run`'s text: every action, numbered, with its undo.
impl fmt::Display for DeployPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let revision = match self.release.revision.as_str() {
            "" => "the revision its image carries",
            revision => revision,
        };
        writeln!(f, "deploy {} (revision {revision}): {}", self.release.image, self.summary)?;
        write_steps(f, &self.prelude, &self.steps, &self.finally)
    }
}

/// Every action of a plan, numbered, with its undo.
pub(crate) fn write_steps(
    f: &mut fmt::Formatter<'_>,
    prelude: &[Action],
    steps: &[Step],
    finally: &[Action],
) -> fmt::Result {
    let steps = prelude.iter().map(|a| (a, &[][..])).chain(steps.iter().map(|s| (&s.action, &s.undo[..])));
    let mut n = 0;
    for (action, undo) in steps.chain(finally.iter().map(|a| (a, &[][..]))) {
        n += 1;
        writeln!(f, "{n:>3}. {action}")?;
        for action in undo {
            writeln!(f, "       undo: {action}")?;
        }
    }
    writeln!(f, "on a failure, the undo of the failed step and of every earlier one runs, latest first")
}

/// Another deploy holds the lock: nothing is done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "another deploy holds the lock on prod (container {lock}, held by {holder}); wait for it to end, or, if it \
     died, release the lock with `harness lock release`"
)]
pub struct LockHeld {
    pub lock: String,
    pub holder: String,
}

/// Before prod is observed: the release pulled, the lock taken (a lock
/// container needs an image prod has).
pub fn prelude(names: &Names, release: &Release, holder: &str) -> Vec<Action> {
    vec![
        Action::Pull { image: release.image.clone() },
        Action::TakeLock {
            name: names.lock.clone(),
            holder: holder.to_owned(),
            body: Box::new(containers::lock(names, &release.image, holder)),
        },
    ]
}

/// Once the lock was taken, whatever happened.
pub fn finally(names: &Names) -> Vec<Action> {
    vec![Action::ReleaseLock { name: names.lock.clone() }]
}

/// The steps that take prod from `observed` to serving `release` through
/// the proxy; `token` is this deploy's preview token.
pub fn plan(
    observed: &Observed,
    release: &Release,
    config: &Config,
    holder: &str,
    token: &str,
) -> Result<DeployPlan, LockHeld> {
    let names = Names::new(&config.prod.project);
    if let Some(holder) = &observed.lock_holder {
        return Err(LockHeld { lock: names.lock.clone(), holder: holder.clone() });
    }
    let prelude = prelude(&names, release, holder);
    let finally = finally(&names);
    let url = config.prod_url().unwrap_or_default();
    let mut steps: Vec<Step> = infrastructure(observed, config, &names).into_iter().map(Step::new).collect();
    let live = observed.live();

    // Already live, healthy, with this very configuration, behind a proxy
    // that routes only to it: nothing to replace.
    if let Some(live) = live {
        let body = containers::app(config, release, &names, live);
        let spec = containers::spec_of(&body).map(str::to_owned);
        let container = observed.colour(live).expect("live() only names a colour that is there");
        let proxy = observed.proxy.as_ref().expect("live() only with a proxy");
        let proxy_spec = containers::spec_of(&containers::proxy(config, &names)).map(str::to_owned);
        if container.running
            && container.healthy
            && container.spec == spec
            && proxy.container.running
            && proxy.container.spec == proxy_spec
            && proxy.routing.as_ref().is_some_and(|r| r.preview.is_none())
        {
            let mut summary = format!("{} is live with this release, healthy: nothing to replace", names.colour(live));
            // A deploy killed between its switch and its end left the old
            // colour running: it stops now (users do not reach it).
            if observed.colour(live.other()).is_some_and(|c| c.running) {
                let other = names.colour(live.other());
                steps.push(Step::new(Action::Stop { name: other.clone() }));
                summary.push_str(&format!("; stop {other}, left running by a deploy that did not finish"));
            }
            return Ok(DeployPlan { release: release.clone(), target: None, prelude, steps, finally, summary });
        }
    }

    let target = live.map_or(Colour::Blue, Colour::other);
    let new = names.colour(target);
    let preview = Routing { live, preview: Some(Preview { colour: target, token: token.to_owned() }) };
    let back = Routing { live, preview: None };

    let hook = |name: &str, command: &Option<String>| {
        command.as_ref().map(|command| Action::Hook {
            name: name.to_owned(),
            command: command.clone(),
            timeout_secs: config.hooks.timeout_secs.unwrap_or(60),
            env: vec![
                ("BOOKS_MS_IMAGE".to_owned(), release.image.clone()),
                ("BOOKS_MS_VERSION".to_owned(), release.version.clone()),
                ("BOOKS_MS_REVISION".to_owned(), release.revision.clone()),
                ("BOOKS_MS_URL".to_owned(), url.clone()),
                ("BOOKS_MS_COLOUR".to_owned(), target.name().to_owned()),
            ],
        })
    };
    if let Some(pre) = hook("pre-deploy", &config.hooks.pre_deploy) {
        steps.push(Step::new(pre));
    }

    // The idle colour: whatever is there (the release before the live one,
    // kept for a rollback, or what a killed deploy left) makes way.
    if observed.colour(target).is_some() {
        steps.push(Step::new(Action::Remove { name: new.clone() }));
    }
    let body = containers::app(config, release, &names, target);
    steps.push(Step::undone_by(
        Action::Create { name: new.clone(), image: release.image.clone(), body: Box::new(body) },
        vec![Action::Remove { name: new.clone() }],
    ));
    steps.push(Step::new(Action::Start { name: new.clone() }));
    steps.push(Step::new(Action::WaitHealthy {
        name: new.clone(),
        timeout_secs: config.prod.health_timeout_secs,
        setting: "prod.health_timeout_secs".to_owned(),
        no_healthcheck_ok: false,
    }));

    // The proxy routes the preview to the new colour.
    let proxy_spec = containers::spec_of(&containers::proxy(config, &names)).map(str::to_owned);
    let proxy_fits = observed.proxy.as_ref().is_some_and(|p| p.container.spec == proxy_spec);
    let legacy = !observed.legacy.is_empty();
    match &observed.proxy {
        Some(proxy) if proxy_fits && proxy.container.running => steps.push(Step::undone_by(
            Action::Route { proxy: names.proxy.clone(), routing: preview, apply: true },
            vec![Action::Route { proxy: names.proxy.clone(), routing: back.clone(), apply: true }],
        )),
        _ => {
            // A new proxy (or one made for another configuration). Where the
            // containers of the deploys before blue-green hold the port,
            // they stop first: the one gap of this migration, undone by
            // starting them again.
            if observed.proxy.is_some() {
                steps.push(Step::new(Action::Remove { name: names.proxy.clone() }));
            }
            steps.push(Step::new(Action::Pull { image: config.prod.proxy_image.clone() }));
            for name in &observed.legacy {
                steps.push(Step::undone_by(
                    Action::Stop { name: name.clone() },
                    vec![Action::Start { name: name.clone() }],
                ));
            }
            let body = containers::proxy(config, &names);
            let image = config.prod.proxy_image.clone();
            let undo = if legacy { vec![Action::Remove { name: names.proxy.clone() }] } else { Vec::new() };
            steps
                .push(Step::undone_by(Action::Create { name: names.proxy.clone(), image, body: Box::new(body) }, undo));
            steps.push(Step::undone_by(
                Action::Route { proxy: names.proxy.clone(), routing: preview, apply: false },
                vec![Action::Route { proxy: names.proxy.clone(), routing: back.clone(), apply: true }],
            ));
            steps.push(Step::new(Action::Start { name: names.proxy.clone() }));
        }
    }
    let token = Some(token.to_owned());
    steps.push(Step::new(Action::CheckVersion {
        url: format!("{url}/version"),
        revision: release.revision.clone(),
        preview: token.clone(),
    }));
    steps.push(Step::new(Action::Verify { url: url.clone(), ids: config.checks.ids.clone(), preview: token }));

    // The switch, and the checks as users reach the release.
    let old = live.map(|colour| names.colour(colour));
    let mut undo_switch = Vec::new();
    if let Some(old) = &old {
        undo_switch.push(Action::Start { name: old.clone() });
    }
    undo_switch.push(Action::Route { proxy: names.proxy.clone(), routing: back, apply: true });
    steps.push(Step::undone_by(
        Action::Route {
            proxy: names.proxy.clone(),
            routing: Routing { live: Some(target), preview: None },
            apply: true,
        },
        undo_switch,
    ));
    steps.push(Step::new(Action::CheckVersion {
        url: format!("{url}/version"),
        revision: release.revision.clone(),
        preview: None,
    }));
    steps.push(Step::new(Action::Verify { url: url.clone(), ids: config.checks.ids.clone(), preview: None }));
    if let Some(post) = hook("post-deploy", &config.hooks.post_deploy) {
        steps.push(Step::new(post));
    }

    // The old colour finishes what it holds, then stops, kept for a
    // rollback; the containers of before blue-green go.
    if let (Some(old), Some(old_colour)) = (&old, live) {
        steps.push(Step::new(Action::Drain {
            secs: config.prod.drain_secs,
            proxy: names.proxy.clone(),
            colour: old_colour,
        }));
        steps.push(Step::undone_by(
            Action::Stop { name: old.clone() },
            vec![
                Action::Start { name: old.clone() },
                Action::WaitHealthy {
                    name: old.clone(),
                    timeout_secs: config.prod.health_timeout_secs.max(RESTORE_TIMEOUT_SECS),
                    setting: format!("the larger of prod.health_timeout_secs and {RESTORE_TIMEOUT_SECS}"),
                    no_healthcheck_ok: true,
                },
            ],
        ));
    }
    for name in &observed.legacy {
        steps.push(Step::new(Action::Remove { name: name.clone() }));
    }

    let recreated = if observed.proxy.is_some() && !proxy_fits {
        "; the proxy is made again for its new configuration (a short gap)"
    } else {
        ""
    };
    let summary = match (&old, legacy) {
        (Some(old), _) => {
            format!("start {new}, check it, switch the proxy from {old} to it, stop {old} (kept for a rollback)")
        }
        (None, true) => format!(
            "move to blue-green: start {new}, stop {} (a short gap), start the proxy, check, switch",
            observed.legacy.join(" and ")
        ),
        (None, false) => format!("first deploy: start {new}, check it through the proxy, switch to it"),
    } + recreated;
    Ok(DeployPlan { release: release.clone(), target: Some(target), prelude, steps, finally, summary })
}

/// The network, the database's volume and the database: created when
/// missing, started when stopped, never recreated (the data lives in the
/// named volume); the history's container, created when missing.
fn infrastructure(observed: &Observed, config: &Config, names: &Names) -> Vec<Action> {
    let mut actions = Vec::new();
    if !observed.network {
        actions.push(Action::CreateNetwork { name: names.network.clone() });
    }
    if !observed.volume {
        actions.push(Action::CreateVolume { name: names.volume.clone() });
    }
    match &observed.db {
        Some(db) if db.running => {}
        Some(_) => actions.push(Action::Start { name: names.db.clone() }),
        None => {
            let image = config.prod.database_image.clone();
            actions.push(Action::Pull { image: image.clone() });
            let body = Box::new(containers::database(config, names));
            actions.push(Action::Create { name: names.db.clone(), image, body });
            actions.push(Action::Start { name: names.db.clone() });
        }
    }
    if !observed.history {
        let body = Box::new(containers::history(config, names));
        actions.push(Action::Create { name: names.history.clone(), image: config.prod.database_image.clone(), body });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLDER: &str = "harness pid 1 on cd since unix time 1";
    const TOKEN: &str = "t0k3n";

    fn release() -> Release {
        Release { image: "10.200.0.1:5000/books-ms@sha256:abc".into(), version: "v2".into(), revision: "r2".into() }
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.action.to_string()).collect()
    }

    fn undo_lines(step: &Step) -> Vec<String> {
        step.undo.iter().map(ToString::to_string).collect()
    }

    fn running(spec: Option<String>) -> Container {
        Container { running: true, healthy: true, spec }
    }

    fn proxy_spec(config: &Config) -> Option<String> {
        containers::spec_of(&containers::proxy(config, &Names::new(&config.prod.project))).map(str::to_owned)
    }

    fn app_spec(config: &Config, colour: Colour) -> Option<String> {
        let body = containers::app(config, &release(), &Names::new(&config.prod.project), colour);
        containers::spec_of(&body).map(str::to_owned)
    }

    /// prod with the network, the volume, a running database and a proxy
    /// routing users to `live`.
    fn prod(config: &Config, live: Option<Colour>) -> Observed {
        Observed {
            network: true,
            volume: true,
            history: true,
            db: Some(running(None)),
            proxy: Some(ProxyState {
                container: running(proxy_spec(config)),
                routing: Some(Routing { live, preview: None }),
            }),
            ..Default::default()
        }
    }

    fn plan_for(observed: &Observed, config: &Config) -> DeployPlan {
        plan(observed, &release(), config, HOLDER, TOKEN).unwrap()
    }

    fn position(plan: &DeployPlan, line: &str) -> usize {
        lines(&plan.steps).iter().position(|l| l == line).unwrap_or_else(|| panic!("no `{line}` in:\n{plan}"))
    }

    #[test]
    fn a_first_deploy_creates_everything_checks_through_the_preview_then_switches() {
        let config = Config::default();
        let plan = plan_for(&Observed::default(), &config);
        let db = &config.prod.database_image;
        let proxy = &config.prod.proxy_image;
        let health = config.prod.health_timeout_secs;
        assert_eq!(plan.target, Some(Colour::Blue));
        assert_eq!(
            lines(&plan.steps),
            [
                "create the network books-ms".to_owned(),
                "create the volume books-ms-db".into(),
                format!("pull {db}"),
                format!("create books-ms-db from {db}"),
                "start books-ms-db".into(),
                format!("create books-ms-history from {db}"),
                "create books-ms-blue from 10.200.0.1:5000/books-ms@sha256:abc".into(),
                "start books-ms-blue".into(),
                format!("wait until books-ms-blue is healthy (at most {health} s)"),
                format!("pull {proxy}"),
                format!("create books-ms-proxy from {proxy}"),
                "route books-ms-proxy: live: none, preview: blue".into(),
                "start books-ms-proxy".into(),
                "check that http://10.200.0.2:8080/version with the preview header reports revision r2".into(),
                "run the post-deploy checks on http://10.200.0.2:8080 with the preview header".into(),
                "route books-ms-proxy: live: blue, applied".into(),
                "check that http://10.200.0.2:8080/version reports revision r2".into(),
                "run the post-deploy checks on http://10.200.0.2:8080".into(),
            ]
        );
        let create = &plan.steps[position(&plan, "create books-ms-blue from 10.200.0.1:5000/books-ms@sha256:abc")];
        assert_eq!(undo_lines(create), ["remove books-ms-blue"]);
        let switch = &plan.steps[position(&plan, "route books-ms-proxy: live: blue, applied")];
        assert_eq!(undo_lines(switch), ["route books-ms-proxy: live: none, applied"]);
    }

    #[test]
    fn a_deploy_onto_blue_starts_green_and_stops_blue_only_after_the_checks_through_the_switch() {
        let config = Config::default();
        let observed = Observed { blue: Some(running(Some("older".into()))), ..prod(&config, Some(Colour::Blue)) };
        let plan = plan_for(&observed, &config);
        assert_eq!(plan.target, Some(Colour::Green));
        let health = config.prod.health_timeout_secs;
        assert_eq!(
            lines(&plan.steps),
            [
                "create books-ms-green from 10.200.0.1:5000/books-ms@sha256:abc".to_owned(),
                "start books-ms-green".into(),
                format!("wait until books-ms-green is healthy (at most {health} s)"),
                "route books-ms-proxy: live: blue, preview: green, applied".into(),
                "check that http://10.200.0.2:8080/version with the preview header reports revision r2".into(),
                "run the post-deploy checks on http://10.200.0.2:8080 with the preview header".into(),
                "route books-ms-proxy: live: green, applied".into(),
                "check that http://10.200.0.2:8080/version reports revision r2".into(),
                "run the post-deploy checks on http://10.200.0.2:8080".into(),
                format!("drain blue until the proxy has no request on it (at most {} s)", config.prod.drain_secs),
                "stop books-ms-blue".into(),
            ]
        );
        let preview = &plan.steps[3];
        assert_eq!(undo_lines(preview), ["route books-ms-proxy: live: blue, applied"]);
        let switch = &plan.steps[6];
        assert_eq!(undo_lines(switch), ["start books-ms-blue", "route books-ms-proxy: live: blue, applied"]);
        let stop = plan.steps.last().unwrap();
        assert_eq!(undo_lines(stop)[0], "start books-ms-blue");
        assert!(plan.summary.contains("kept for a rollback"), "{}", plan.summary);
    }

    #[test]
    fn a_failure_after_the_switch_undoes_back_to_the_old_colour_latest_first() {
        // What the executor runs when the post-switch checks fail: the undo
        // of every step up to the failed one, latest first.
        let config = Config::default();
        let observed = Observed { blue: Some(running(None)), ..prod(&config, Some(Colour::Blue)) };
        let plan = plan_for(&observed, &config);
        let failed = position(&plan, "run the post-deploy checks on http://10.200.0.2:8080");
        let undo: Vec<String> = plan.steps[..=failed].iter().rev().flat_map(undo_lines).collect();
        assert_eq!(
            undo,
            [
                "start books-ms-blue",
                "route books-ms-proxy: live: blue, applied",
                "route books-ms-proxy: live: blue, applied",
                "remove books-ms-green",
            ]
        );
    }

    #[test]
    fn a_failed_health_check_never_touches_the_proxy() {
        let config = Config::default();
        let observed = Observed { green: Some(running(None)), ..prod(&config, Some(Colour::Green)) };
        let plan = plan_for(&observed, &config);
        let failed = position(
            &plan,
            &format!("wait until books-ms-blue is healthy (at most {} s)", config.prod.health_timeout_secs),
        );
        let undo: Vec<String> = plan.steps[..=failed].iter().rev().flat_map(undo_lines).collect();
        assert_eq!(undo, ["remove books-ms-blue"]);
    }

    #[test]
    fn the_same_release_live_and_healthy_is_left_alone() {
        let config = Config::default();
        let observed =
            Observed { green: Some(running(app_spec(&config, Colour::Green))), ..prod(&config, Some(Colour::Green)) };
        let plan = plan_for(&observed, &config);
        assert!(plan.is_noop(), "{plan}");
        assert!(plan.steps.is_empty(), "{plan}");
        assert!(plan.summary.contains("nothing to replace"), "{}", plan.summary);
    }

    #[test]
    fn the_old_colour_a_killed_deploy_left_running_is_stopped() {
        let config = Config::default();
        let observed = Observed {
            green: Some(running(app_spec(&config, Colour::Green))),
            blue: Some(running(None)),
            ..prod(&config, Some(Colour::Green))
        };
        let plan = plan_for(&observed, &config);
        assert!(plan.is_noop(), "{plan}");
        assert_eq!(lines(&plan.steps), ["stop books-ms-blue"]);
        assert!(plan.summary.contains("did not finish"), "{}", plan.summary);
    }

    #[test]
    fn the_same_release_unhealthy_or_with_a_preview_left_is_deployed_again() {
        let config = Config::default();
        let unhealthy = Container { running: true, healthy: false, spec: app_spec(&config, Colour::Blue) };
        let observed = Observed { blue: Some(unhealthy), ..prod(&config, Some(Colour::Blue)) };
        assert_eq!(plan_for(&observed, &config).target, Some(Colour::Green));
        let mut observed =
            Observed { blue: Some(running(app_spec(&config, Colour::Blue))), ..prod(&config, Some(Colour::Blue)) };
        observed.proxy.as_mut().unwrap().routing.as_mut().unwrap().preview =
            Some(Preview { colour: Colour::Green, token: "old".into() });
        assert!(!plan_for(&observed, &config).is_noop());
    }

    #[test]
    fn what_a_killed_deploy_left_on_the_idle_colour_is_removed_first() {
        let config = Config::default();
        let observed = Observed {
            blue: Some(running(None)),
            green: Some(Container { running: true, healthy: false, spec: None }),
            ..prod(&config, Some(Colour::Blue))
        };
        let plan = plan_for(&observed, &config);
        assert_eq!(
            lines(&plan.steps)[..2],
            ["remove books-ms-green", "create books-ms-green from 10.200.0.1:5000/books-ms@sha256:abc"]
        );
    }

    #[test]
    fn a_live_colour_whose_container_is_gone_is_not_live() {
        let config = Config::default();
        let observed = prod(&config, Some(Colour::Green));
        assert_eq!(observed.live(), None);
        assert_eq!(plan_for(&observed, &config).target, Some(Colour::Blue));
    }

    #[test]
    fn the_deploys_before_blue_green_stop_just_before_the_proxy_starts_and_go_at_the_end() {
        let config = Config::default();
        let observed = Observed {
            network: true,
            volume: true,
            history: true,
            db: Some(running(None)),
            legacy: vec!["books-ms-app".into(), "books-ms-app-previous".into()],
            ..Default::default()
        };
        let plan = plan_for(&observed, &config);
        let stop = position(&plan, "stop books-ms-app");
        let create_proxy = position(&plan, &format!("create books-ms-proxy from {}", config.prod.proxy_image));
        let healthy = position(
            &plan,
            &format!("wait until books-ms-blue is healthy (at most {} s)", config.prod.health_timeout_secs),
        );
        assert!(healthy < stop && stop < create_proxy, "{plan}");
        assert_eq!(undo_lines(&plan.steps[stop]), ["start books-ms-app"]);
        assert_eq!(undo_lines(&plan.steps[create_proxy]), ["remove books-ms-proxy"]);
        let tail = lines(&plan.steps[plan.steps.len() - 2..]);
        assert_eq!(tail, ["remove books-ms-app", "remove books-ms-app-previous"]);
        assert!(plan.summary.contains("a short gap"), "{}", plan.summary);
    }

    #[test]
    fn a_stopped_proxy_or_one_of_another_configuration_is_made_again() {
        let mut config = Config::default();
        let mut observed = Observed { blue: Some(running(None)), ..prod(&config, Some(Colour::Blue)) };
        config.prod.app_port = 9090;
        let plan = plan_for(&observed, &config);
        let remove = position(&plan, "remove books-ms-proxy");
        assert!(remove < position(&plan, "route books-ms-proxy: live: blue, preview: green"));
        config.prod.app_port = 8080;
        observed.proxy.as_mut().unwrap().container.running = false;
        assert!(lines(&plan_for(&observed, &config).steps).contains(&"start books-ms-proxy".to_owned()));
    }

    #[test]
    fn hooks_run_before_prod_changes_and_once_users_reach_the_release_with_the_release_in_their_environment() {
        let mut config = Config::default();
        config.hooks.pre_deploy = Some("./announce".into());
        config.hooks.post_deploy = Some("./smoke".into());
        let observed = Observed { blue: Some(running(None)), ..prod(&config, Some(Colour::Blue)) };
        let plan = plan_for(&observed, &config);
        let pre = position(&plan, "run the pre-deploy hook");
        let post = position(&plan, "run the post-deploy hook");
        assert!(pre < position(&plan, "create books-ms-green from 10.200.0.1:5000/books-ms@sha256:abc"), "{plan}");
        let switch = position(&plan, "route books-ms-proxy: live: green, applied");
        assert!(switch < post && post < position(&plan, "stop books-ms-blue"), "{plan}");
        // A failing post-deploy hook switches users back.
        let undo: Vec<String> = plan.steps[..=post].iter().rev().flat_map(undo_lines).collect();
        assert_eq!(undo[..2], ["start books-ms-blue", "route books-ms-proxy: live: blue, applied"]);
        match &plan.steps[post].action {
            Action::Hook { env, timeout_secs: 60, .. } => {
                assert!(env.contains(&("BOOKS_MS_REVISION".into(), "r2".into())), "{env:?}");
                assert!(env.contains(&("BOOKS_MS_COLOUR".into(), "green".into())), "{env:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lock_held_by_another_deploy_refuses_naming_the_holder_and_the_way_out() {
        let config = Config::default();
        let observed = Observed { lock_holder: Some("harness pid 42 on cd".into()), ..prod(&config, None) };
        let error = plan(&observed, &release(), &config, HOLDER, TOKEN).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("harness pid 42 on cd") && text.contains("harness lock release"), "{text}");
    }

    #[test]
    fn a_stopped_database_is_started_and_a_missing_network_created_never_the_volume_recreated() {
        let config = Config::default();
        let mut observed =
            Observed { green: Some(running(app_spec(&config, Colour::Green))), ..prod(&config, Some(Colour::Green)) };
        observed.network = false;
        observed.db = Some(Container::default());
        let plan = plan_for(&observed, &config);
        assert_eq!(lines(&plan.steps), ["create the network books-ms", "start books-ms-db"]);
        assert!(plan.is_noop());
    }

    #[test]
    fn the_dry_run_text_numbers_every_action_with_its_undo() {
        let config = Config::default();
        let observed = Observed { blue: Some(running(None)), ..prod(&config, Some(Colour::Blue)) };
        let text = plan_for(&observed, &config).to_string();
        assert!(
            text.starts_with("deploy 10.200.0.1:5000/books-ms@sha256:abc (revision r2): start books-ms-green"),
            "{text}"
        );
        assert!(text.contains("  1. pull 10.200.0.1:5000/books-ms@sha256:abc\n"), "{text}");
        assert!(text.contains("  3. create books-ms-green from 10.200.0.1:5000/books-ms@sha256:abc\n       undo: remove books-ms-green\n"), "{text}");
        assert!(text.contains(" 14. release the deploy lock books-ms-deploy-lock\n"), "{text}");
        assert!(!text.contains(TOKEN), "the preview token is not printed: {text}");
    }
}
