//! A single host's deploy as data: what prod looks like ([`Observed`]) and
//! the release go in, the [`Step`]s that take prod there come out, each
//! with the actions that undo it. Pure: no I/O, so every case is a unit
//! test; the core (`deploy::core`) adds the lock and the history around
//! them, and `--dry-run` prints the very list a deploy runs.
//!
//! Blue-green: the release starts as the idle colour, is checked through
//! the proxy with a preview header, then the proxy switches to it, the
//! checks run again as users reach it, and the old colour drains and stops
//! (kept for a rollback). Until the switch, users are served by the old
//! colour; after it, by the new one; an undone switch puts them back.

use std::fmt;

use bollard::models::ContainerCreateBody;
use serde::Serialize;

use super::proxy::{Preview, Routing};
use super::{containers, HostNames};
use crate::config::Config;
use crate::deploy::names::Colour;
use crate::deploy::plan::{Core, HookKind, Op, Planned};
use crate::deploy::target::Context;

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

/// An accessory on prod: its volume, its container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessoryState {
    pub volume: bool,
    pub container: Option<Container>,
}

/// What prod holds of the project before a deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub network: bool,
    /// The configured accessories, by name.
    pub accessories: std::collections::BTreeMap<String, AccessoryState>,
    pub proxy: Option<ProxyState>,
    pub blue: Option<Container>,
    pub green: Option<Container>,
    /// The containers of deploys before blue-green (`P-app`,
    /// `P-app-previous`), by name.
    pub legacy: Vec<String>,
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

/// What a deploy does on a single host, besides what every target does
/// ([`Core`]).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    CreateNetwork {
        name: String,
    },
    CreateVolume {
        name: String,
    },
    /// Removes the network (`harness remove`).
    RemoveNetwork {
        name: String,
    },
    /// Removes a volume and its data (`harness remove --volumes`).
    RemoveVolume {
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
    /// Until `url` answers 2xx through the proxy's preview (the colour
    /// `name` alone), polled, at most `timeout_secs`.
    WaitReady {
        name: String,
        url: String,
        #[serde(skip)]
        token: String,
        timeout_secs: u64,
        setting: String,
    },
    /// Writes the proxy's configuration for `routing`; `apply`: gives the
    /// running proxy that state too (its runtime API: no reload).
    Route {
        proxy: String,
        routing: Routing,
        apply: bool,
    },
    /// Lets the old colour finish what it holds: until the proxy has no
    /// request on it, at most `secs`.
    Drain {
        secs: u64,
        proxy: String,
        colour: Colour,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateNetwork { name } => write!(f, "create the network {name}"),
            Action::CreateVolume { name } => write!(f, "create the volume {name}"),
            Action::RemoveNetwork { name } => write!(f, "remove the network {name}"),
            Action::RemoveVolume { name } => write!(f, "remove the volume {name} and its data"),
            Action::Create { name, image, .. } => write!(f, "create {name} from {image}"),
            Action::Start { name } => write!(f, "start {name}"),
            Action::Stop { name } => write!(f, "stop {name}"),
            Action::Remove { name } => write!(f, "remove {name}"),
            Action::WaitHealthy { name, timeout_secs, .. } => {
                write!(f, "wait until {name} is healthy (at most {timeout_secs} s)")
            }
            Action::WaitReady { name, url, timeout_secs, .. } => {
                write!(f, "wait until {url} answers 2xx from {name} with the preview header (at most {timeout_secs} s)")
            }
            Action::Route { proxy, routing, apply } => {
                let how = if *apply { ", applied" } else { "" };
                write!(f, "route {proxy}: {routing}{how}")
            }
            Action::Drain { secs, colour, .. } => {
                write!(f, "drain {colour} until the proxy has no request on it (at most {secs} s)")
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

/// The steps that take prod from `observed` to serving the release through
/// the proxy, blue-green.
pub fn plan(observed: &Observed, context: &Context) -> Planned<Action> {
    let config = context.config;
    let names = HostNames::new(config.project());
    let mut steps: Vec<Step> = infrastructure(observed, context, &names);
    if let Some(unchanged) = unchanged(observed, context, &names, &mut steps) {
        return unchanged;
    }
    let live = observed.live();
    let target = live.map_or(Colour::Blue, Colour::other);
    let new = names.colour(target);
    steps.extend(context.hook(HookKind::PreDeploy, Some(target)));
    steps.extend(start_colour(observed, context, &names, target));
    // Docker's healthcheck first probes one interval after the start (2 s
    // for books-ms; Docker 20.10 has no start interval): that wait runs
    // beside the preview route, the ready poll and the checks, and the
    // switch still needs it passed. Not where the containers of before
    // blue-green stop for the proxy: that gap ends sooner when the new
    // colour is healthy before it opens.
    let healthy = wait_healthy(context, &new);
    let (healthy_first, healthy_last) =
        if observed.legacy.is_empty() { (None, Some(healthy)) } else { (Some(healthy), None) };
    steps.extend(healthy_first);
    let (proxy_steps, proxy_fits) = preview_route(observed, config, &names, live, target, context.token);
    steps.extend(proxy_steps);
    steps.push(Step::new(Action::WaitReady {
        name: new.clone(),
        url: format!("{}{}", context.url, config.healthcheck.path),
        token: context.token.to_owned(),
        timeout_secs: config.prod.health_timeout_secs,
        setting: "prod.health_timeout_secs".to_owned(),
    }));
    steps.extend(context.checks(Some(context.token)));
    steps.extend(healthy_last);
    steps.extend(switch(&names, live, target));
    steps.extend(context.checks(None));
    steps.extend(context.hook(HookKind::PostDeploy, Some(target)));
    steps.extend(retire(observed, config, &names, live));

    let old = live.map(|colour| names.colour(colour));
    let legacy = !observed.legacy.is_empty();
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
    Planned { steps, cleanup: Vec::new(), replaces: true, colour: Some(target), summary, warnings: Vec::new() }
}

/// Already live, healthy, with this very configuration, behind a proxy
/// that routes only to it: nothing to replace (a colour a killed deploy
/// left running stops). None when there is something to replace.
fn unchanged(
    observed: &Observed,
    context: &Context,
    names: &HostNames,
    steps: &mut Vec<Step>,
) -> Option<Planned<Action>> {
    let config = context.config;
    let live = observed.live()?;
    let spec = containers::spec_of(&containers::app(config, context.release, names, live)).map(str::to_owned);
    let container = observed.colour(live)?;
    let proxy = observed.proxy.as_ref()?;
    let proxy_spec = containers::spec_of(&containers::proxy(config, names)).map(str::to_owned);
    let same = container.running
        && container.healthy
        && container.spec == spec
        && proxy.container.running
        && proxy.container.spec == proxy_spec
        && proxy.routing.as_ref().is_some_and(|r| r.preview.is_none());
    if !same {
        return None;
    }
    let mut summary = format!("{} is live with this release, healthy: nothing to replace", names.colour(live));
    // A deploy killed between its switch and its end left the old colour
    // running: it stops now (users do not reach it).
    if observed.colour(live.other()).is_some_and(|c| c.running) {
        let other = names.colour(live.other());
        steps.push(Step::new(Action::Stop { name: other.clone() }));
        summary.push_str(&format!("; stop {other}, left running by a deploy that did not finish"));
    }
    let steps = std::mem::take(steps);
    Some(Planned { steps, cleanup: Vec::new(), replaces: false, colour: None, summary, warnings: Vec::new() })
}

/// The idle colour: whatever is there (the release before the live one,
/// kept for a rollback, or what a killed deploy left) makes way; the
/// release starts as that colour.
fn start_colour(observed: &Observed, context: &Context, names: &HostNames, target: Colour) -> Vec<Step> {
    let new = names.colour(target);
    let mut steps = Vec::new();
    if observed.colour(target).is_some() {
        steps.push(Step::new(Action::Remove { name: new.clone() }));
    }
    let body = containers::app(context.config, context.release, names, target);
    let image = context.release.image.clone();
    steps.push(Step::undone_by(
        Action::Create { name: new.clone(), image, body: Box::new(body) },
        vec![Action::Remove { name: new.clone() }.into()],
    ));
    steps.push(Step::new(Action::Start { name: new }));
    steps
}

/// The image's own healthcheck passed, when it has one (readiness is the
/// healthcheck path's, through the proxy).
fn wait_healthy(context: &Context, name: &str) -> Step {
    Step::new(Action::WaitHealthy {
        name: name.to_owned(),
        timeout_secs: context.config.prod.health_timeout_secs,
        setting: "prod.health_timeout_secs".to_owned(),
        no_healthcheck_ok: true,
    })
}

/// The proxy routes the preview to the new colour: the running proxy told
/// so, or a new one (made for this configuration) started so. Where the
/// containers of the deploys before blue-green hold the port, they stop
/// first: the one gap of this migration, undone by starting them again.
/// Also whether the running proxy fits this configuration.
fn preview_route(
    observed: &Observed,
    config: &Config,
    names: &HostNames,
    live: Option<Colour>,
    target: Colour,
    token: &str,
) -> (Vec<Step>, bool) {
    let preview = Routing { live, preview: Some(Preview { colour: target, token: token.to_owned() }) };
    let back = || Action::Route { proxy: names.proxy.clone(), routing: Routing { live, preview: None }, apply: true };
    let proxy_spec = containers::spec_of(&containers::proxy(config, names)).map(str::to_owned);
    let fits = observed.proxy.as_ref().is_some_and(|p| p.container.spec == proxy_spec);
    let mut steps = Vec::new();
    if fits && observed.proxy.as_ref().is_some_and(|p| p.container.running) {
        let route = Action::Route { proxy: names.proxy.clone(), routing: preview, apply: true };
        steps.push(Step::undone_by(route, vec![back().into()]));
        return (steps, fits);
    }
    if observed.proxy.is_some() {
        steps.push(Step::new(Action::Remove { name: names.proxy.clone() }));
    }
    steps.push(Step::new(Core::Pull { image: config.prod.proxy_image.clone() }));
    for name in &observed.legacy {
        steps.push(Step::undone_by(
            Action::Stop { name: name.clone() },
            vec![Action::Start { name: name.clone() }.into()],
        ));
    }
    let body = Box::new(containers::proxy(config, names));
    let image = config.prod.proxy_image.clone();
    let undo =
        if observed.legacy.is_empty() { Vec::new() } else { vec![Action::Remove { name: names.proxy.clone() }.into()] };
    steps.push(Step::undone_by(Action::Create { name: names.proxy.clone(), image, body }, undo));
    let route = Action::Route { proxy: names.proxy.clone(), routing: preview, apply: false };
    steps.push(Step::undone_by(route, vec![back().into()]));
    steps.push(Step::new(Action::Start { name: names.proxy.clone() }));
    (steps, fits)
}

/// The switch: users reach the new colour; undone by routing them back
/// (the old colour started again first, should it have stopped).
fn switch(names: &HostNames, live: Option<Colour>, target: Colour) -> Vec<Step> {
    let mut undo: Vec<Op<Action>> = Vec::new();
    if let Some(old) = live {
        undo.push(Action::Start { name: names.colour(old) }.into());
    }
    let back = Routing { live, preview: None };
    undo.push(Action::Route { proxy: names.proxy.clone(), routing: back, apply: true }.into());
    let routing = Routing { live: Some(target), preview: None };
    vec![Step::undone_by(Action::Route { proxy: names.proxy.clone(), routing, apply: true }, undo)]
}

/// The old colour finishes what it holds, then stops, kept for a
/// rollback; the containers of before blue-green go.
fn retire(observed: &Observed, config: &Config, names: &HostNames, live: Option<Colour>) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(old_colour) = live {
        let old = names.colour(old_colour);
        let proxy = names.proxy.clone();
        steps.push(Step::new(Action::Drain { secs: config.prod.drain_secs, proxy, colour: old_colour }));
        let restore = Action::WaitHealthy {
            name: old.clone(),
            timeout_secs: config.prod.health_timeout_secs.max(RESTORE_TIMEOUT_SECS),
            setting: format!("the larger of prod.health_timeout_secs and {RESTORE_TIMEOUT_SECS}"),
            no_healthcheck_ok: true,
        };
        let undo = vec![Action::Start { name: old.clone() }.into(), restore.into()];
        steps.push(Step::undone_by(Action::Stop { name: old }, undo));
    }
    for name in &observed.legacy {
        steps.push(Step::new(Action::Remove { name: name.clone() }));
    }
    steps
}

/// `harness remove`: the colours first (users get the proxy's 503, then
/// nothing), the proxy, the accessories, the containers of before
/// blue-green, the network; with `volumes`, the accessories' volumes.
/// Nothing undoes it. None of it is there: no steps.
pub fn removal(observed: &Observed, config: &Config, volumes: bool) -> Planned<Action> {
    let names = HostNames::new(config.project());
    let mut steps: Vec<Step> = Vec::new();
    for colour in Colour::BOTH {
        if observed.colour(colour).is_some() {
            steps.push(Step::new(Action::Remove { name: names.colour(colour) }));
        }
    }
    if observed.proxy.is_some() {
        steps.push(Step::new(Action::Remove { name: names.proxy.clone() }));
    }
    let mut kept = Vec::new();
    for (accessory, seen) in &observed.accessories {
        let name = names.accessory(accessory);
        if seen.container.is_some() {
            steps.push(Step::new(Action::Remove { name: name.clone() }));
        }
        match (seen.volume, volumes) {
            (true, true) => steps.push(Step::new(Action::RemoveVolume { name })),
            (true, false) => kept.push(name),
            (false, _) => {}
        }
    }
    steps.extend(observed.legacy.iter().map(|name| Step::new(Action::Remove { name: name.clone() })));
    if observed.network {
        steps.push(Step::new(Action::RemoveNetwork { name: names.network.clone() }));
    }
    let mut summary = if steps.is_empty() {
        format!("nothing of {} runs on prod", names.project)
    } else {
        format!("take {} off prod (the lock and the history stay)", names.project)
    };
    if !kept.is_empty() {
        summary.push_str(&format!("; the volumes {} are kept (--volumes removes them)", kept.join(", ")));
    }
    Planned { steps, cleanup: Vec::new(), replaces: false, colour: None, summary, warnings: Vec::new() }
}

/// The network and each accessory (its volume, its container): created
/// when missing, started when stopped, never recreated (its data lives in
/// its named volume).
fn infrastructure(observed: &Observed, context: &Context, names: &HostNames) -> Vec<Step> {
    let config = context.config;
    let mut steps = Vec::new();
    if !observed.network {
        steps.push(Step::new(Action::CreateNetwork { name: names.network.clone() }));
    }
    for (accessory, spec) in &config.accessories {
        let name = names.accessory(accessory);
        let seen = observed.accessories.get(accessory).cloned().unwrap_or_default();
        if spec.volume.is_some() && !seen.volume {
            steps.push(Step::new(Action::CreateVolume { name: name.clone() }));
        }
        match &seen.container {
            Some(container) if container.running => {}
            Some(_) => steps.push(Step::new(Action::Start { name })),
            None => {
                let image = spec.image.clone();
                if !context.pulled.contains(&image) {
                    steps.push(Step::new(Core::Pull { image: image.clone() }));
                }
                let body = Box::new(containers::accessory(config, names, accessory, spec));
                steps.push(Step::new(Action::Create { name: name.clone(), image, body }));
                steps.push(Step::new(Action::Start { name }));
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::core::testing::{self, TOKEN};
    use crate::deploy::host::Host;
    use crate::deploy::plan::Plan;
    use crate::release::Release;

    type Names = HostNames;

    /// The start of the readiness wait's line, for books-ms.
    const READY: &str = "wait until http://10.200.0.2:8080/ready answers 2xx from";

    fn release() -> Release {
        Release::given("10.200.0.1:5000/books-ms@sha256:abc".into(), "v2".into(), Some("r2".into()))
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
        containers::spec_of(&containers::proxy(config, &Names::new(config.project()))).map(str::to_owned)
    }

    fn app_spec(config: &Config, colour: Colour) -> Option<String> {
        let body = containers::app(config, &release(), &Names::new(config.project()), colour);
        containers::spec_of(&body).map(str::to_owned)
    }

    /// The accessory `db` with its volume, its container `container`.
    fn db(container: Container) -> std::collections::BTreeMap<String, AccessoryState> {
        [("db".to_owned(), AccessoryState { volume: true, container: Some(container) })].into()
    }

    /// prod with the network, the volume, a running database and a proxy
    /// routing users to `live`.
    fn prod(config: &Config, live: Option<Colour>) -> Observed {
        Observed {
            network: true,
            accessories: db(running(None)),
            proxy: Some(ProxyState {
                container: running(proxy_spec(config)),
                routing: Some(Routing { live, preview: None }),
            }),
            ..Default::default()
        }
    }

    fn plan_for(observed: &Observed, config: &Config) -> Planned<Action> {
        testing::planned(&Host::new(config), observed, &testing::shared(), &release())
    }

    fn whole_plan(observed: &Observed, config: &Config) -> Plan<Action> {
        testing::plan(&Host::new(config), observed, &testing::shared(), &release()).unwrap()
    }

    fn position(plan: &Planned<Action>, line: &str) -> usize {
        let lines = lines(&plan.steps);
        lines.iter().position(|l| l == line).unwrap_or_else(|| panic!("no `{line}` in:\n{lines:#?}"))
    }

    #[test]
    fn a_first_deploy_creates_everything_checks_through_the_preview_then_switches() {
        let config = crate::config::books_ms();
        let plan = plan_for(&Observed::default(), &config);
        let db = &config.accessories["db"].image;
        let proxy = &config.prod.proxy_image;
        let health = config.prod.health_timeout_secs;
        assert_eq!(plan.colour, Some(Colour::Blue));
        assert_eq!(
            lines(&plan.steps),
            [
                "create the network books-ms".to_owned(),
                "create the volume books-ms-db".into(),
                format!("pull {db}"),
                format!("create books-ms-db from {db}"),
                "start books-ms-db".into(),
                "create books-ms-blue from 10.200.0.1:5000/books-ms@sha256:abc".into(),
                "start books-ms-blue".into(),
                format!("pull {proxy}"),
                format!("create books-ms-proxy from {proxy}"),
                "route books-ms-proxy: live: none, preview: blue".into(),
                "start books-ms-proxy".into(),
                format!("{READY} books-ms-blue with the preview header (at most {health} s)"),
                "check that http://10.200.0.2:8080/version with the preview header reports revision r2".into(),
                "run the post-deploy checks on http://10.200.0.2:8080 with the preview header".into(),
                format!("wait until books-ms-blue is healthy (at most {health} s)"),
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
        let config = crate::config::books_ms();
        let observed = Observed { blue: Some(running(Some("older".into()))), ..prod(&config, Some(Colour::Blue)) };
        let plan = plan_for(&observed, &config);
        assert_eq!(plan.colour, Some(Colour::Green));
        let health = config.prod.health_timeout_secs;
        assert_eq!(
            lines(&plan.steps),
            [
                "create books-ms-green from 10.200.0.1:5000/books-ms@sha256:abc".to_owned(),
                "start books-ms-green".into(),
                "route books-ms-proxy: live: blue, preview: green, applied".into(),
                format!("{READY} books-ms-green with the preview header (at most {health} s)"),
                "check that http://10.200.0.2:8080/version with the preview header reports revision r2".into(),
                "run the post-deploy checks on http://10.200.0.2:8080 with the preview header".into(),
                format!("wait until books-ms-green is healthy (at most {health} s)"),
                "route books-ms-proxy: live: green, applied".into(),
                "check that http://10.200.0.2:8080/version reports revision r2".into(),
                "run the post-deploy checks on http://10.200.0.2:8080".into(),
                format!("drain blue until the proxy has no request on it (at most {} s)", config.prod.drain_secs),
                "stop books-ms-blue".into(),
            ]
        );
        let preview = &plan.steps[2];
        assert_eq!(undo_lines(preview), ["route books-ms-proxy: live: blue, applied"]);
        let switch = &plan.steps[7];
        assert_eq!(undo_lines(switch), ["start books-ms-blue", "route books-ms-proxy: live: blue, applied"]);
        let stop = plan.steps.last().unwrap();
        assert_eq!(undo_lines(stop)[0], "start books-ms-blue");
        assert!(plan.summary.contains("kept for a rollback"), "{}", plan.summary);
    }

    #[test]
    fn a_failure_after_the_switch_undoes_back_to_the_old_colour_latest_first() {
        // What the executor runs when the post-switch checks fail: the undo
        // of every step up to the failed one, latest first.
        let config = crate::config::books_ms();
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
    fn a_failed_health_check_takes_the_preview_back_and_never_switches() {
        let config = crate::config::books_ms();
        let observed = Observed { green: Some(running(None)), ..prod(&config, Some(Colour::Green)) };
        let plan = plan_for(&observed, &config);
        let failed = position(
            &plan,
            &format!("wait until books-ms-blue is healthy (at most {} s)", config.prod.health_timeout_secs),
        );
        assert!(failed < position(&plan, "route books-ms-proxy: live: blue, applied"), "{:#?}", lines(&plan.steps));
        let undo: Vec<String> = plan.steps[..=failed].iter().rev().flat_map(undo_lines).collect();
        assert_eq!(undo, ["route books-ms-proxy: live: green, applied", "remove books-ms-blue"]);
    }

    #[test]
    fn the_same_release_live_and_healthy_is_left_alone() {
        let config = crate::config::books_ms();
        let observed =
            Observed { green: Some(running(app_spec(&config, Colour::Green))), ..prod(&config, Some(Colour::Green)) };
        let plan = plan_for(&observed, &config);
        assert!(!plan.replaces, "{}", plan.summary);
        assert!(plan.steps.is_empty(), "{:?}", lines(&plan.steps));
        assert!(plan.summary.contains("nothing to replace"), "{}", plan.summary);
    }

    #[test]
    fn the_old_colour_a_killed_deploy_left_running_is_stopped() {
        let config = crate::config::books_ms();
        let observed = Observed {
            green: Some(running(app_spec(&config, Colour::Green))),
            blue: Some(running(None)),
            ..prod(&config, Some(Colour::Green))
        };
        let plan = plan_for(&observed, &config);
        assert!(!plan.replaces, "{}", plan.summary);
        assert_eq!(lines(&plan.steps), ["stop books-ms-blue"]);
        assert!(plan.summary.contains("did not finish"), "{}", plan.summary);
    }

    #[test]
    fn the_same_release_unhealthy_or_with_a_preview_left_is_deployed_again() {
        let config = crate::config::books_ms();
        let unhealthy = Container { running: true, healthy: false, spec: app_spec(&config, Colour::Blue) };
        let observed = Observed { blue: Some(unhealthy), ..prod(&config, Some(Colour::Blue)) };
        assert_eq!(plan_for(&observed, &config).colour, Some(Colour::Green));
        let mut observed =
            Observed { blue: Some(running(app_spec(&config, Colour::Blue))), ..prod(&config, Some(Colour::Blue)) };
        observed.proxy.as_mut().unwrap().routing.as_mut().unwrap().preview =
            Some(Preview { colour: Colour::Green, token: "old".into() });
        assert!(plan_for(&observed, &config).replaces);
    }

    #[test]
    fn what_a_killed_deploy_left_on_the_idle_colour_is_removed_first() {
        let config = crate::config::books_ms();
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
        let config = crate::config::books_ms();
        let observed = prod(&config, Some(Colour::Green));
        assert_eq!(observed.live(), None);
        assert_eq!(plan_for(&observed, &config).colour, Some(Colour::Blue));
    }

    #[test]
    fn the_deploys_before_blue_green_stop_just_before_the_proxy_starts_and_go_at_the_end() {
        let config = crate::config::books_ms();
        let observed = Observed {
            network: true,
            accessories: db(running(None)),
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
        assert!(healthy < stop && stop < create_proxy, "{:#?}", lines(&plan.steps));
        assert_eq!(undo_lines(&plan.steps[stop]), ["start books-ms-app"]);
        assert_eq!(undo_lines(&plan.steps[create_proxy]), ["remove books-ms-proxy"]);
        let tail = lines(&plan.steps[plan.steps.len() - 2..]);
        assert_eq!(tail, ["remove books-ms-app", "remove books-ms-app-previous"]);
        assert!(plan.summary.contains("a short gap"), "{}", plan.summary);
    }

    #[test]
    fn a_stopped_proxy_or_one_of_another_configuration_is_made_again() {
        let mut config = crate::config::books_ms();
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
        let mut config = crate::config::books_ms();
        config.hooks.pre_deploy = Some("./announce".into());
        config.hooks.post_deploy = Some("./smoke".into());
        let observed = Observed { blue: Some(running(None)), ..prod(&config, Some(Colour::Blue)) };
        let plan = plan_for(&observed, &config);
        let pre = position(&plan, "run the pre-deploy hook");
        let post = position(&plan, "run the post-deploy hook");
        assert!(pre < position(&plan, "create books-ms-green from 10.200.0.1:5000/books-ms@sha256:abc"));
        let switch = position(&plan, "route books-ms-proxy: live: green, applied");
        assert!(switch < post && post < position(&plan, "stop books-ms-blue"));
        // A failing post-deploy hook switches users back.
        let undo: Vec<String> = plan.steps[..=post].iter().rev().flat_map(undo_lines).collect();
        assert_eq!(undo[..2], ["start books-ms-blue", "route books-ms-proxy: live: blue, applied"]);
        match &plan.steps[post].action {
            Op::Core(Core::Hook { env, timeout_secs: 60, .. }) => {
                for (key, value) in [("REVISION", "r2"), ("COLOUR", "green")] {
                    assert!(env.contains(&(format!("HARNESS_{key}"), value.into())), "{env:?}");
                    assert!(env.contains(&(format!("BOOKS_MS_{key}"), value.into())), "kept for older hooks: {env:?}");
                }
                assert!(env.contains(&("HARNESS_SERVICE".into(), "books-ms".into())), "{env:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lock_held_by_another_deploy_refuses_naming_the_holder_and_the_way_out() {
        let config = crate::config::books_ms();
        let shared =
            crate::deploy::core::Shared { lock_holder: Some("harness pid 42 on cd".into()), ..testing::shared() };
        let error = testing::plan(&Host::new(&config), &prod(&config, None), &shared, &release()).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("harness pid 42 on cd") && text.contains("harness lock release"), "{text}");
    }

    #[test]
    fn a_stopped_database_is_started_and_a_missing_network_created_never_the_volume_recreated() {
        let config = crate::config::books_ms();
        let mut observed =
            Observed { green: Some(running(app_spec(&config, Colour::Green))), ..prod(&config, Some(Colour::Green)) };
        observed.network = false;
        observed.accessories = db(Container::default());
        let plan = plan_for(&observed, &config);
        assert_eq!(lines(&plan.steps), ["create the network books-ms", "start books-ms-db"]);
        assert!(!plan.replaces);
    }

    #[test]
    fn the_dry_run_text_numbers_every_action_with_its_undo() {
        let config = crate::config::books_ms();
        let observed = Observed { blue: Some(running(None)), ..prod(&config, Some(Colour::Blue)) };
        let text = whole_plan(&observed, &config).to_string();
        assert!(
            text.starts_with("deploy 10.200.0.1:5000/books-ms@sha256:abc (revision r2): start books-ms-green"),
            "{text}"
        );
        assert!(text.contains("  1. pull 10.200.0.1:5000/books-ms@sha256:abc\n"), "{text}");
        assert!(text.contains("  2. take the deploy lock books-ms-deploy-lock\n"), "{text}");
        assert!(text.contains("  3. record in books-ms-history that this deploy runs\n"), "{text}");
        assert!(text.contains("  4. create books-ms-green from 10.200.0.1:5000/books-ms@sha256:abc\n       undo: remove books-ms-green\n"), "{text}");
        assert!(text.contains(" 16. record in books-ms-history how this deploy ended (whatever happened)\n"), "{text}");
        assert!(text.contains(" 17. release the deploy lock books-ms-deploy-lock (whatever happened)\n"), "{text}");
        assert!(!text.contains("harness pid"), "the holder names the running process, not a dry run's: {text}");
        assert!(!text.contains(TOKEN), "the preview token is not printed: {text}");
    }

    #[test]
    fn a_release_that_never_answers_its_healthcheck_is_undone_before_any_user_reaches_it() {
        let config = crate::config::books_ms();
        let observed = Observed { blue: Some(running(None)), ..prod(&config, Some(Colour::Blue)) };
        let plan = plan_for(&observed, &config);
        let health = config.prod.health_timeout_secs;
        let ready = position(&plan, &format!("{READY} books-ms-green with the preview header (at most {health} s)"));
        assert!(ready < position(&plan, "route books-ms-proxy: live: green, applied"));
        assert!(position(&plan, "route books-ms-proxy: live: blue, preview: green, applied") < ready);
        let undo: Vec<String> = plan.steps[..=ready].iter().rev().flat_map(undo_lines).collect();
        assert_eq!(undo, ["route books-ms-proxy: live: blue, applied", "remove books-ms-green"]);
    }

    /// A service that is not books-ms: its own name, app port, accessory,
    /// healthcheck, data checks and no revision gate.
    fn hello() -> Config {
        let mut config = Config::default();
        config.service.name = "hello".into();
        config.app.port = 5000;
        config.prod.app_port = 8091;
        config.healthcheck.path = "/ready".into();
        config.accessories.insert(
            "cache".into(),
            crate::config::AccessoryConfig {
                image: "reg/cache:1".into(),
                volume: Some("/data".into()),
                env: Default::default(),
            },
        );
        config.checks.push(crate::config::CheckConfig {
            name: "hello".into(),
            command: None,
            method: None,
            path: Some("/hello".into()),
            status: None,
            body_contains: Some("hi".into()),
        });
        config
    }

    #[test]
    fn another_service_is_named_by_its_configuration_and_checked_as_it_says() {
        let config = hello();
        let release = Release::given("10.200.0.1:5000/hello@sha256:abc".into(), "v1".into(), Some("r1".into()));
        let plan = testing::planned(&Host::new(&config), &Observed::default(), &testing::shared(), &release);
        let health = config.prod.health_timeout_secs;
        let proxy = &config.prod.proxy_image;
        assert_eq!(
            lines(&plan.steps),
            [
                "create the network hello".to_owned(),
                "create the volume hello-cache".into(),
                "pull reg/cache:1".into(),
                "create hello-cache from reg/cache:1".into(),
                "start hello-cache".into(),
                "create hello-blue from 10.200.0.1:5000/hello@sha256:abc".into(),
                "start hello-blue".into(),
                format!("pull {proxy}"),
                format!("create hello-proxy from {proxy}"),
                "route hello-proxy: live: none, preview: blue".into(),
                "start hello-proxy".into(),
                format!("wait until http://10.200.0.2:8091/ready answers 2xx from hello-blue with the preview header (at most {health} s)"),
                "run the post-deploy checks on http://10.200.0.2:8091 with the preview header".into(),
                format!("wait until hello-blue is healthy (at most {health} s)"),
                "route hello-proxy: live: blue, applied".into(),
                "run the post-deploy checks on http://10.200.0.2:8091".into(),
            ]
        );
        let Op::Target(Action::Create { body, .. }) = &plan.steps[3].action else { panic!("{:?}", plan.steps[3]) };
        let aliases = &body.networking_config.as_ref().unwrap().endpoints_config.as_ref().unwrap()["hello"];
        assert_eq!(aliases.aliases.as_deref(), Some(&["cache".to_owned()][..]), "the app reaches it by its name");
        assert_eq!(body.host_config.as_ref().unwrap().binds.as_deref(), Some(&["hello-cache:/data".to_owned()][..]));
        let checks = plan.steps.iter().find_map(|s| match &s.action {
            Op::Core(Core::Checks { checks, .. }) => Some(checks.clone()),
            _ => None,
        });
        assert_eq!(checks.unwrap()[0].name(), "hello");
    }

    #[test]
    fn an_accessory_that_runs_is_left_alone_and_a_stopped_one_started() {
        let config = hello();
        let mut observed = Observed { network: true, ..Default::default() };
        observed.accessories.insert(
            "cache".into(),
            AccessoryState { volume: true, container: Some(Container { running: false, healthy: false, spec: None }) },
        );
        let release = Release::given("10.200.0.1:5000/hello@sha256:abc".into(), "v1".into(), Some("r1".into()));
        let plan = testing::planned(&Host::new(&config), &observed, &testing::shared(), &release);
        assert_eq!(lines(&plan.steps)[0], "start hello-cache");
        observed.accessories.get_mut("cache").unwrap().container.as_mut().unwrap().running = true;
        let plan = testing::planned(&Host::new(&config), &observed, &testing::shared(), &release);
        assert_eq!(lines(&plan.steps)[0], "create hello-blue from 10.200.0.1:5000/hello@sha256:abc");
    }

    #[test]
    fn removal_takes_the_containers_and_network_and_the_volumes_only_when_asked() {
        let config = crate::config::books_ms();
        let observed =
            Observed { blue: Some(running(None)), green: Some(running(None)), ..prod(&config, Some(Colour::Blue)) };
        let plan = removal(&observed, &config, false);
        assert_eq!(
            lines(&plan.steps),
            [
                "remove books-ms-blue",
                "remove books-ms-green",
                "remove books-ms-proxy",
                "remove books-ms-db",
                "remove the network books-ms"
            ]
        );
        assert!(plan.summary.contains("books-ms-db are kept"), "{}", plan.summary);
        assert!(plan.steps.iter().all(|s| s.undo.is_empty()));
        let plan = removal(&observed, &config, true);
        assert_eq!(lines(&plan.steps)[4], "remove the volume books-ms-db and its data");
        let nothing = removal(&Observed::default(), &config, true);
        assert!(nothing.steps.is_empty() && nothing.summary.starts_with("nothing of books-ms"), "{}", nothing.summary);
    }
}
