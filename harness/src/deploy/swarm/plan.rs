//! A swarm deploy as data: what the swarm holds of the project
//! ([`SwarmObserved`]) and the release go in, the [`Step`]s come out, each
//! with its undo; pure, so each case is a unit test and `--dry-run` prints
//! the list a deploy runs. The same executor as on a single host runs it.
//!
//! A rolling update gated by health: the app's service is updated (Swarm
//! starts a new task, waits for the image's healthcheck, stops an old one,
//! and so on, rolling back by itself when a new task fails), the deploy
//! waits for it to converge, then runs the post-deploy checks through the
//! manager's proxy; a failed check rolls the service back (Docker's
//! service rollback).

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::services::{self, SwarmNames};
use crate::config::Config;
use crate::deploy::actions::{self, Action, LockHeld, Step};
use crate::deploy::containers;
use crate::deploy::names::Names;
use crate::release::Release;

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
    pub db: Option<ObservedService>,
    pub app: Option<ObservedService>,
    pub proxy: Option<ObservedService>,
    /// The history's container on the manager's engine is there.
    pub history: bool,
    /// Who holds the deploy lock, when another deploy holds it.
    pub lock_holder: Option<String>,
    /// How the history's last entry for each release's image ended
    /// (`succeeded`, `unchanged`, `failed`, `interrupted`, `running`).
    pub last_outcomes: HashMap<String, String>,
}

/// What a swarm deploy will do, in order.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmPlan {
    pub release: Release,
    /// False when the swarm already runs this release with this
    /// configuration, converged: no service is changed.
    pub replaces: bool,
    pub prelude: Vec<Action>,
    pub steps: Vec<Step>,
    pub finally: Vec<Action>,
    /// Once the deploy succeeded, best-effort (a failure is a warning,
    /// never an undo): the proxy's configs of before.
    pub cleanup: Vec<Action>,
    pub summary: String,
    /// What the deploy leaves alone but a person should know.
    pub warnings: Vec<String>,
}

impl fmt::Display for SwarmPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "deploy {} (revision {}) to the swarm: {}",
            self.release.image, self.release.revision, self.summary
        )?;
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        actions::write_steps(f, &self.prelude, &self.steps, &self.finally)?;
        for action in &self.cleanup {
            writeln!(f, "once it succeeded, best-effort: {action}")?;
        }
        Ok(())
    }
}

/// The steps that take the swarm from `observed` to serving `release`
/// through every node's proxy.
pub fn plan(observed: &SwarmObserved, release: &Release, config: &Config, holder: &str) -> Result<SwarmPlan, LockHeld> {
    let names = Names::new(&config.prod.project);
    let swarm = SwarmNames::new(&config.prod.project);
    if let Some(holder) = &observed.lock_holder {
        return Err(LockHeld { lock: names.lock.clone(), holder: holder.clone() });
    }
    let prelude = actions::prelude(&names, release, holder);
    let finally = actions::finally(&names);
    let url = config.swarm_url().unwrap_or_default();
    let timeout_secs = config.swarm.converge_timeout_secs;
    let mut steps = Vec::new();

    // What lasts: the network, the history, the database (never made again:
    // its data lives in its volume on its pinned node).
    if !observed.network {
        steps.push(Step::new(Action::CreateOverlay { name: swarm.network.clone() }));
    }
    if !observed.history {
        let image = config.prod.database_image.clone();
        steps.push(Step::new(Action::Pull { image: image.clone() }));
        let body = Box::new(containers::history(config, &names));
        steps.push(Step::new(Action::Create { name: names.history.clone(), image, body }));
    }
    let mut warnings = Vec::new();
    if let Some(db) = &observed.db {
        warnings.extend(database_warnings(config, &swarm, db));
    } else {
        // Pinned by id to one node, where its volume will be: the one set,
        // else the manager.
        let node = config.swarm.database_node.as_deref().or(observed.manager_node.as_deref()).unwrap_or_default();
        let spec = services::database(config, &swarm, &services::pinned_to(node));
        steps.push(Step::new(Action::CreateService {
            name: swarm.db.clone(),
            image: config.prod.database_image.clone(),
            spec: Box::new(spec),
        }));
    }
    let proxy_text = services::proxy_text(&swarm);
    let proxy_config = swarm.proxy_config(&proxy_text);
    if !observed.configs.contains(&proxy_config) {
        let spec = services::proxy_config(config, &proxy_config, &proxy_text);
        steps.push(Step::new(Action::CreateConfig { name: proxy_config.clone(), spec: Box::new(spec) }));
    }

    let app = services::app(config, release, &swarm);
    let app_spec = services::spec_of(&app).unwrap_or_default().to_owned();
    let proxy = services::proxy(config, &swarm, &proxy_config);
    let proxy_spec = services::spec_of(&proxy).unwrap_or_default().to_owned();
    let unchanged = |service: &Option<ObservedService>, spec: &str| {
        service.as_ref().is_some_and(|s| s.converged && s.spec.as_deref() == Some(spec))
    };
    // The app's spec counts as done only when the last deploy of this
    // release said so: one killed (or failed) after it updated the service
    // never ran its checks.
    let trusted =
        matches!(observed.last_outcomes.get(&release.image).map(String::as_str), Some("succeeded" | "unchanged"));
    let app_unchanged = trusted && unchanged(&observed.app, &app_spec);
    let proxy_unchanged = unchanged(&observed.proxy, &proxy_spec);
    if app_unchanged && proxy_unchanged {
        let summary = format!("{} runs this release on every task, converged: nothing to replace", swarm.app);
        let cleanup = Vec::new();
        return Ok(SwarmPlan {
            release: release.clone(),
            replaces: false,
            prelude,
            steps,
            finally,
            cleanup,
            summary,
            warnings,
        });
    }

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
            ],
        })
    };
    if let Some(pre) = hook("pre-deploy", &config.hooks.pre_deploy) {
        steps.push(Step::new(pre));
    }

    // The app first (a first deploy's proxy then finds tasks at once), then
    // the proxy; each waited for, each undone by going back.
    let mut summary = Vec::new();
    for (name, image, spec, body, observed, changed) in [
        (&swarm.app, &release.image, &app_spec, app, &observed.app, !app_unchanged),
        (&swarm.proxy, &config.prod.proxy_image, &proxy_spec, proxy, &observed.proxy, !proxy_unchanged),
    ] {
        if !changed {
            continue;
        }
        let wait = Action::AwaitService { name: name.clone(), image: image.clone(), spec: spec.clone(), timeout_secs };
        match observed {
            // Its spec already, not converged or not checked (a deploy
            // killed while it waited, a node lost): Swarm converges by
            // itself; wait for it, then check; a failure rolls it back
            // (the rollback's spec guard leaves any other spec alone).
            Some(service) if service.spec.as_deref() == Some(spec.as_str()) => {
                summary.push(format!("wait for {name} to converge"));
                steps.push(Step::undone_by(
                    wait,
                    vec![Action::RollbackService {
                        name: name.clone(),
                        from_image: image.clone(),
                        from_spec: spec.clone(),
                        timeout_secs,
                    }],
                ));
            }
            None => {
                summary.push(format!("create {name}"));
                steps.push(Step::undone_by(
                    Action::CreateService { name: name.clone(), image: image.clone(), spec: Box::new(body) },
                    vec![Action::RemoveService { name: name.clone() }],
                ));
                steps.push(Step::new(wait));
            }
            Some(_) => {
                summary.push(format!("roll {name} over to it"));
                steps.push(Step::undone_by(
                    Action::UpdateService { name: name.clone(), image: image.clone(), spec: Box::new(body) },
                    vec![Action::RollbackService {
                        name: name.clone(),
                        from_image: image.clone(),
                        from_spec: spec.clone(),
                        timeout_secs,
                    }],
                ));
                steps.push(Step::new(wait));
            }
        }
    }

    steps.push(Step::new(Action::CheckVersion {
        url: format!("{url}/version"),
        revision: release.revision.clone(),
        preview: None,
    }));
    steps.push(Step::new(Action::Verify { url: url.clone(), ids: config.checks.ids.clone(), preview: None }));
    if let Some(post) = hook("post-deploy", &config.hooks.post_deploy) {
        steps.push(Step::new(post));
    }
    // The proxy's configs of before, once the deploy succeeded: a rollback
    // before then may still need them, and failing to remove one must not
    // undo a verified deploy.
    let mut cleanup = Vec::new();
    if !proxy_unchanged {
        for old in observed.configs.iter().filter(|c| **c != proxy_config) {
            cleanup.push(Action::RemoveConfig { name: old.clone() });
        }
    }
    let mut summary = format!("{}, then check through {url}; a failure rolls back", summary.join(", "));
    if !proxy_unchanged && observed.proxy.is_some() {
        // mode host: the old task must free the node's port first.
        summary.push_str(&format!(
            "; replacing {} closes each node's port {} in turn, for a few seconds",
            swarm.proxy, config.swarm.app_port
        ));
    }
    Ok(SwarmPlan { release: release.clone(), replaces: true, prelude, steps, finally, cleanup, summary, warnings })
}

/// The database service is never updated by a deploy (a new task could
/// start away from its data): say when it differs from what this
/// configuration would create, and when it is not pinned to one node.
fn database_warnings(config: &Config, swarm: &SwarmNames, db: &ObservedService) -> Vec<String> {
    let mut warnings = Vec::new();
    let constraint = db.constraints.first().cloned().unwrap_or_default();
    let wanted = services::database(config, swarm, &constraint);
    if db.spec.as_deref() != services::spec_of(&wanted) {
        warnings.push(format!(
            "{} runs {} with a spec other than this configuration's (prod.database_image, log settings, or a \
             harness of another version): deploys never update the database; update it by hand (`docker service \
             update`) or remove the service (its volume {} keeps the data) for the next deploy to create it",
            swarm.db, db.image, swarm.volume
        ));
    }
    if !(db.constraints.len() == 1 && constraint.starts_with("node.id ==")) {
        warnings.push(format!(
            "{} is not pinned to one node by id (constraints {:?}): Swarm may start it again on another node, \
             with an empty volume; pin it (`docker service update --constraint-rm ... --constraint-add \
             'node.id == ID'`, the node holding its volume)",
            swarm.db, db.constraints
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLDER: &str = "harness pid 1 on cd";

    fn release() -> Release {
        Release { image: "10.200.0.1:5000/books-ms@sha256:abc".into(), version: "v2".into(), revision: "r2".into() }
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
        swarm_names().proxy_config(&services::proxy_text(&swarm_names()))
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
            db: Some(service(&services::database(config, &names, &services::pinned_to("m4n4g3r")))),
            app: Some(service(&services::app(config, live, &names))),
            proxy: Some(service(&services::proxy(config, &names, &config_name))),
            history: true,
            lock_holder: None,
            last_outcomes: HashMap::from([(live.image.clone(), "succeeded".to_owned())]),
        }
    }

    fn older() -> Release {
        Release { image: "10.200.0.1:5000/books-ms@sha256:old".into(), version: "v1".into(), revision: "r1".into() }
    }

    #[test]
    fn a_first_deploy_creates_the_network_the_database_the_app_then_the_proxy_and_checks() {
        let config = Config::default();
        let plan = super::plan(&SwarmObserved::default(), &release(), &config, HOLDER).unwrap();
        let db = &config.prod.database_image;
        let proxy = &config.prod.proxy_image;
        let timeout = config.swarm.converge_timeout_secs;
        assert!(plan.replaces);
        assert_eq!(
            lines(&plan.steps),
            [
                "create the overlay network books-ms".to_owned(),
                format!("pull {db}"),
                format!("create books-ms-history from {db}"),
                format!("create the service books-ms-db from {db}"),
                format!("create the config {}", proxy_config()),
                "create the service books-ms-app from 10.200.0.1:5000/books-ms@sha256:abc".into(),
                format!(
                    "wait until every task of books-ms-app runs 10.200.0.1:5000/books-ms@sha256:abc, healthy (at most \
                     {timeout} s)"
                ),
                format!("create the service books-ms-proxy from {proxy}"),
                format!("wait until every task of books-ms-proxy runs {proxy}, healthy (at most {timeout} s)"),
                "check that http://10.210.0.11:8080/version reports revision r2".into(),
                "run the post-deploy checks on http://10.210.0.11:8080".into(),
            ]
        );
        assert_eq!(undo_lines(&plan.steps[5]), ["remove the service books-ms-app"]);
        assert_eq!(undo_lines(&plan.steps[7]), ["remove the service books-ms-proxy"]);
        let prelude: Vec<String> = plan.prelude.iter().map(ToString::to_string).collect();
        assert_eq!(prelude[0], "pull 10.200.0.1:5000/books-ms@sha256:abc", "the lock's image, on the manager");
        assert!(prelude[1].starts_with("take the deploy lock books-ms-deploy-lock"), "{prelude:?}");
    }

    #[test]
    fn the_database_is_created_pinned_to_the_managers_node_or_the_one_set() {
        let db_constraint = |plan: &SwarmPlan| {
            plan.steps.iter().find_map(|step| match &step.action {
                Action::CreateService { name, spec, .. } if name == "books-ms-db" => {
                    spec.task_template.as_ref()?.placement.as_ref()?.constraints.clone()
                }
                _ => None,
            })
        };
        let mut config = Config::default();
        let observed = SwarmObserved { manager_node: Some("m4n4g3r".into()), ..Default::default() };
        let plan = super::plan(&observed, &release(), &config, HOLDER).unwrap();
        assert_eq!(db_constraint(&plan), Some(vec!["node.id == m4n4g3r".to_owned()]));
        config.swarm.database_node = Some("w0rk3r".into());
        let plan = super::plan(&observed, &release(), &config, HOLDER).unwrap();
        assert_eq!(db_constraint(&plan), Some(vec!["node.id == w0rk3r".to_owned()]), "the setting first");
        let plan = super::plan(&running(&Config::default(), &older()), &release(), &config, HOLDER).unwrap();
        assert_eq!(db_constraint(&plan), None, "an existing database keeps its node");
    }

    #[test]
    fn a_new_release_rolls_the_app_over_and_a_failed_check_rolls_it_back() {
        let config = Config::default();
        let observed = running(&config, &older());
        let plan = super::plan(&observed, &release(), &config, HOLDER).unwrap();
        let timeout = config.swarm.converge_timeout_secs;
        assert_eq!(
            lines(&plan.steps),
            [
                "update the service books-ms-app to 10.200.0.1:5000/books-ms@sha256:abc".to_owned(),
                format!(
                    "wait until every task of books-ms-app runs 10.200.0.1:5000/books-ms@sha256:abc, healthy (at most \
                     {timeout} s)"
                ),
                "check that http://10.210.0.11:8080/version reports revision r2".into(),
                "run the post-deploy checks on http://10.210.0.11:8080".into(),
            ]
        );
        // The post-deploy checks fail: the undo of every step so far, latest first.
        let undo: Vec<String> = plan.steps.iter().rev().flat_map(undo_lines).collect();
        assert_eq!(undo, ["roll the service books-ms-app back from 10.200.0.1:5000/books-ms@sha256:abc"]);
        match &plan.steps[0].undo[0] {
            Action::RollbackService { from_spec, .. } => {
                let spec = services::app(&config, &release(), &swarm_names());
                assert_eq!(Some(from_spec.as_str()), services::spec_of(&spec), "only undoes its own update");
            }
            other => panic!("{other:?}"),
        }
        assert!(plan.summary.contains("roll books-ms-app over"), "{}", plan.summary);
    }

    #[test]
    fn the_same_release_converged_is_left_alone_and_an_unconverged_one_waited_for() {
        let config = Config::default();
        let observed = running(&config, &release());
        let plan = super::plan(&observed, &release(), &config, HOLDER).unwrap();
        assert!(!plan.replaces, "{plan}");
        assert!(plan.steps.is_empty(), "{plan}");
        let mut stuck = observed.clone();
        stuck.app.as_mut().unwrap().converged = false;
        let plan = super::plan(&stuck, &release(), &config, HOLDER).unwrap();
        assert!(plan.replaces);
        assert!(lines(&plan.steps)[0].starts_with("wait until every task of books-ms-app runs"), "{plan}");
        assert_eq!(
            undo_lines(&plan.steps[0]),
            ["roll the service books-ms-app back from 10.200.0.1:5000/books-ms@sha256:abc"],
            "a failed check undoes the update the killed deploy made: {plan}"
        );
        assert!(lines(&plan.steps)[1].starts_with("check that"), "{plan}");
    }

    #[test]
    fn the_same_release_converged_is_checked_unless_its_last_deploy_ended_well() {
        let config = Config::default();
        for outcome in [None, Some("interrupted"), Some("running"), Some("failed")] {
            let mut observed = running(&config, &release());
            observed.last_outcomes.clear();
            if let Some(outcome) = outcome {
                observed.last_outcomes.insert(release().image, outcome.to_owned());
            }
            let plan = super::plan(&observed, &release(), &config, HOLDER).unwrap();
            assert!(plan.replaces, "{outcome:?}: {plan}");
            let lines = lines(&plan.steps);
            assert!(lines[0].starts_with("wait until every task of books-ms-app runs"), "{outcome:?}: {plan}");
            assert_eq!(plan.steps[0].undo.len(), 1, "{outcome:?}: a failed check rolls it back: {plan}");
            assert!(lines[1].starts_with("check that") && lines[2].starts_with("run the post-deploy"), "{plan}");
        }
        let mut observed = running(&config, &release());
        observed.last_outcomes.insert(release().image, "unchanged".to_owned());
        assert!(!super::plan(&observed, &release(), &config, HOLDER).unwrap().replaces);
    }

    #[test]
    fn a_new_proxy_configuration_is_a_new_config_object_and_a_proxy_update() {
        let config = Config::default();
        let mut observed = running(&config, &release());
        // A proxy rendered by an older harness, from another text.
        observed.configs = vec!["books-ms-proxy-000000000000".into()];
        observed.proxy.as_mut().unwrap().spec = Some("older".into());
        let plan = super::plan(&observed, &release(), &config, HOLDER).unwrap();
        let lines = lines(&plan.steps);
        let new_config = proxy_config();
        assert_eq!(lines[0], format!("create the config {new_config}"));
        assert_eq!(lines[1], format!("update the service books-ms-proxy to {}", config.prod.proxy_image));
        let undo: Vec<String> = plan.steps.iter().rev().flat_map(undo_lines).collect();
        assert_eq!(undo.len(), 1, "{undo:?}");
        assert!(undo[0].starts_with("roll the service books-ms-proxy back"), "{undo:?}");
        assert!(plan.summary.contains("closes each node's port 8080 in turn"), "{}", plan.summary);
        assert!(lines.iter().all(|l| !l.starts_with("remove the config")), "never a step, so never undone: {plan}");
        let cleanup: Vec<String> = plan.cleanup.iter().map(ToString::to_string).collect();
        assert_eq!(cleanup, ["remove the config books-ms-proxy-000000000000, unless in use"]);
        assert!(
            plan.to_string().ends_with(
                "once it succeeded, best-effort: remove the config books-ms-proxy-000000000000, unless in use\n"
            ),
            "{plan}"
        );
    }

    #[test]
    fn more_replicas_update_the_app_alone_never_the_proxy() {
        let config = Config::default();
        let observed = running(&config, &release());
        let mut more = config.clone();
        more.swarm.replicas = 3;

        let plan = super::plan(&observed, &release(), &more, HOLDER).unwrap();
        let lines = lines(&plan.steps);
        assert_eq!(lines[0], "update the service books-ms-app to 10.200.0.1:5000/books-ms@sha256:abc");
        assert!(lines.iter().all(|l| !l.contains("books-ms-proxy")), "{plan}");
        assert!(!plan.summary.contains("port"), "{}", plan.summary);
    }

    #[test]
    fn the_database_is_never_made_again_a_missing_network_is() {
        let config = Config::default();
        let mut observed = running(&config, &release());
        observed.network = false;
        let db = observed.db.as_mut().unwrap();
        db.spec = Some("another".into());
        db.converged = false;
        let plan = super::plan(&observed, &release(), &config, HOLDER).unwrap();
        assert_eq!(lines(&plan.steps), ["create the overlay network books-ms"]);
        assert!(!plan.replaces);
    }

    #[test]
    fn a_database_unlike_this_configurations_or_pinned_by_role_is_warned_of_never_changed() {
        let config = Config::default();
        let observed = running(&config, &release());
        assert!(super::plan(&observed, &release(), &config, HOLDER).unwrap().warnings.is_empty());

        let mut other = config.clone();
        other.prod.database_image = "10.200.0.1:5000/mongo:8".into();
        let plan = super::plan(&observed, &release(), &other, HOLDER).unwrap();
        assert!(plan.steps.is_empty() && !plan.replaces, "never updated: {plan}");
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert!(plan.warnings[0].starts_with("books-ms-db runs") && plan.warnings[0].contains("by hand"));
        assert!(plan.to_string().contains("warning: books-ms-db runs"), "{plan}");

        let mut by_role = observed.clone();
        let spec = services::database(&config, &swarm_names(), "node.role == manager");
        by_role.db = Some(service(&spec));
        let warnings = super::plan(&by_role, &release(), &config, HOLDER).unwrap().warnings;
        assert_eq!(warnings.len(), 1, "same spec, but not pinned by id: {warnings:?}");
        assert!(warnings[0].contains("not pinned to one node by id"), "{warnings:?}");
    }

    #[test]
    fn hooks_run_before_the_update_and_after_the_checks() {
        let mut config = Config::default();
        config.hooks.pre_deploy = Some("./announce".into());
        config.hooks.post_deploy = Some("./smoke".into());
        let plan = super::plan(&running(&config, &older()), &release(), &config, HOLDER).unwrap();
        let lines = lines(&plan.steps);
        assert_eq!(lines.first().unwrap(), "run the pre-deploy hook");
        assert_eq!(lines.last().unwrap(), "run the post-deploy hook");
    }

    #[test]
    fn a_lock_held_by_another_deploy_refuses_naming_the_holder() {
        let config = Config::default();
        let observed = SwarmObserved { lock_holder: Some("harness pid 42 on cd".into()), ..Default::default() };
        let error = super::plan(&observed, &release(), &config, HOLDER).unwrap_err().to_string();
        assert!(error.contains("harness pid 42 on cd") && error.contains("harness lock release"), "{error}");
    }

    #[test]
    fn the_dry_run_text_names_the_swarm_and_numbers_every_action_with_its_undo() {
        let config = Config::default();
        let text = super::plan(&running(&config, &older()), &release(), &config, HOLDER).unwrap().to_string();
        assert!(text.starts_with("deploy 10.200.0.1:5000/books-ms@sha256:abc (revision r2) to the swarm"), "{text}");
        assert!(
            text.contains(
                "  3. update the service books-ms-app to 10.200.0.1:5000/books-ms@sha256:abc\n       undo: roll the \
                 service books-ms-app back"
            ),
            "{text}"
        );
    }
}
