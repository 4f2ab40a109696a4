//! A deploy as data: what prod looks like ([`Observed`]) and the release
//! go in, the list of [`Action`]s that takes prod there comes out. Pure: no
//! I/O, so every case is a unit test, and `harness deploy --dry-run` prints
//! the very list a deploy would run. The executor (`executor.rs`) runs it.

use std::fmt;

use bollard::models::ContainerCreateBody;
use serde::Serialize;

use super::containers;
use super::names::Names;
use crate::config::Config;
use crate::release::Release;

/// The least time a container put back by a rollback gets to turn healthy.
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

/// What prod holds of the project before a deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub network: bool,
    pub volume: bool,
    pub db: Option<Container>,
    pub app: Option<Container>,
    /// What an earlier deploy kept for its rollback.
    pub previous: Option<Container>,
    /// Who holds the deploy lock, when another deploy holds it.
    pub lock_holder: Option<String>,
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
    Rename {
        from: String,
        to: String,
    },
    /// Until Docker's healthcheck says healthy (or, when
    /// `no_healthcheck_ok`, the container runs and its image has none).
    WaitHealthy {
        name: String,
        timeout_secs: u64,
        setting: String,
        no_healthcheck_ok: bool,
    },
    /// `GET url` must report this revision.
    CheckVersion {
        url: String,
        revision: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
            Action::Rename { from, to } => write!(f, "rename {from} to {to}"),
            Action::WaitHealthy { name, timeout_secs, .. } => {
                write!(f, "wait until {name} is healthy (at most {timeout_secs} s)")
            }
            Action::CheckVersion { url, revision } => write!(f, "check that {url} reports revision {revision}"),
        }
    }
}

/// What a deploy will do, in order.
#[derive(Debug, Clone, Serialize)]
pub struct DeployPlan {
    pub release: Release,
    /// Before anything is observed: pull the release, take the lock.
    pub prelude: Vec<Action>,
    /// Under the lock, from what was observed.
    pub actions: Vec<Action>,
    /// When `actions[i]` fails for `i >= recover_from`, these put prod back
    /// as it was (the new container's logs are read first).
    pub recovery: Vec<Action>,
    pub recover_from: usize,
    /// Always, once the lock was taken.
    pub finally: Vec<Action>,
    /// Why the actions are what they are, in a sentence.
    pub summary: String,
}

impl DeployPlan {
    /// Nothing to replace: prod already runs this release, healthy.
    pub fn is_noop(&self) -> bool {
        self.new_container().is_none()
    }

    /// The container the recovery removes (the new app), if any.
    pub fn new_container(&self) -> Option<&str> {
        self.actions.iter().find_map(|a| match a {
            Action::Create { name, .. }
                if self.recovery.iter().any(|r| matches!(r, Action::Remove { name: n } if n == name)) =>
            {
                Some(name.as_str())
            }
            _ => None,
        })
    }
}

/// `--dry-run`'s text: every action, numbered, and the recovery.
impl fmt::Display for DeployPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "deploy {} (revision {}): {}", self.release.image, self.release.revision, self.summary)?;
        let mut n = 0;
        for action in self.prelude.iter().chain(&self.actions).chain(&self.finally) {
            n += 1;
            writeln!(f, "{n:>3}. {action}")?;
        }
        if !self.recovery.is_empty() {
            let first = self.prelude.len() + self.recover_from + 1;
            writeln!(f, "if a step from {first} on fails, put prod back:")?;
            for action in &self.recovery {
                writeln!(f, "     - {action}")?;
            }
        }
        Ok(())
    }
}

/// Another deploy holds the lock: nothing is done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "another deploy holds the lock on prod (container {lock}, held by {holder}); wait for it, or if it died, \
     remove the lock: docker rm {lock}"
)]
pub struct LockHeld {
    pub lock: String,
    pub holder: String,
}

/// The actions that take prod from `observed` to running `release`.
pub fn plan(observed: &Observed, release: &Release, config: &Config, holder: &str) -> Result<DeployPlan, LockHeld> {
    let names = Names::new(&config.prod.project);
    if let Some(holder) = &observed.lock_holder {
        return Err(LockHeld { lock: names.lock.clone(), holder: holder.clone() });
    }
    let prelude = prelude(&names, release, holder);
    let finally = finally(&names);
    let mut actions = infrastructure(observed, config, &names);

    let body = containers::app(config, release, &names);
    let spec = containers::spec_of(&body).map(str::to_owned);
    let serving = observed.app.as_ref().filter(|app| app.running && app.healthy && app.spec == spec);
    if serving.is_some() {
        let summary = format!("{} already runs this release, healthy: nothing to replace", names.app);
        return Ok(DeployPlan {
            release: release.clone(),
            prelude,
            actions,
            recovery: Vec::new(),
            recover_from: 0,
            finally,
            summary,
        });
    }

    // Keep what serves now, stopped, for a rollback.
    let replacing = observed.app.is_some();
    if replacing {
        if observed.previous.is_some() {
            actions.push(Action::Remove { name: names.previous.clone() });
        }
        actions.push(Action::Rename { from: names.app.clone(), to: names.previous.clone() });
    }
    let recover_from = actions.len();
    if replacing {
        actions.push(Action::Stop { name: names.previous.clone() });
    }
    actions.push(Action::Create { name: names.app.clone(), image: release.image.clone(), body: Box::new(body) });
    actions.push(Action::Start { name: names.app.clone() });
    actions.push(Action::WaitHealthy {
        name: names.app.clone(),
        timeout_secs: config.prod.health_timeout_secs,
        setting: "prod.health_timeout_secs".to_owned(),
        no_healthcheck_ok: false,
    });
    let url = config.prod_url().map(|url| format!("{url}/version")).unwrap_or_default();
    actions.push(Action::CheckVersion { url, revision: release.revision.clone() });

    let mut recovery = vec![Action::Remove { name: names.app.clone() }];
    if replacing {
        // It was healthy before: give it at least RESTORE_TIMEOUT_SECS,
        // however short the timeout that failed the new container.
        recovery.push(Action::Rename { from: names.previous.clone(), to: names.app.clone() });
        recovery.push(Action::Start { name: names.app.clone() });
        recovery.push(Action::WaitHealthy {
            name: names.app.clone(),
            timeout_secs: config.prod.health_timeout_secs.max(RESTORE_TIMEOUT_SECS),
            setting: format!("the larger of prod.health_timeout_secs and {RESTORE_TIMEOUT_SECS}"),
            no_healthcheck_ok: true,
        });
    }
    let summary = if replacing {
        format!("replace {} (kept stopped as {} until the new one is healthy)", names.app, names.previous)
    } else {
        format!("first deploy of {}", names.app)
    };
    Ok(DeployPlan { release: release.clone(), prelude, actions, recovery, recover_from, finally, summary })
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

/// The network, the database's volume and the database: created when
/// missing, started when stopped, never recreated (the data lives in the
/// named volume).
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
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLDER: &str = "harness pid 1 on cd since 2026-01-01T00:00:00Z";

    fn release() -> Release {
        Release { image: "10.200.0.1:5000/books-ms@sha256:abc".into(), version: "v2".into(), revision: "r2".into() }
    }

    fn lines(actions: &[Action]) -> Vec<String> {
        actions.iter().map(ToString::to_string).collect()
    }

    fn running(spec: Option<String>) -> Container {
        Container { running: true, healthy: true, spec }
    }

    /// prod with the network, the volume and a running database.
    fn ready_prod() -> Observed {
        Observed { network: true, volume: true, db: Some(running(None)), ..Default::default() }
    }

    fn spec_of_release(config: &Config) -> Option<String> {
        let body = containers::app(config, &release(), &Names::new(&config.prod.project));
        containers::spec_of(&body).map(str::to_owned)
    }

    #[test]
    fn a_first_deploy_creates_everything_and_its_recovery_only_removes_the_new_container() {
        let config = Config::default();
        let plan = plan(&Observed::default(), &release(), &config, HOLDER).unwrap();
        assert_eq!(
            lines(&plan.prelude),
            [
                "pull 10.200.0.1:5000/books-ms@sha256:abc",
                &format!("take the deploy lock books-ms-deploy-lock ({HOLDER})")
            ]
        );
        assert_eq!(
            lines(&plan.actions),
            [
                "create the network books-ms",
                "create the volume books-ms-db",
                &format!("pull {}", config.prod.database_image),
                &format!("create books-ms-db from {}", config.prod.database_image),
                "start books-ms-db",
                "create books-ms-app from 10.200.0.1:5000/books-ms@sha256:abc",
                "start books-ms-app",
                &format!("wait until books-ms-app is healthy (at most {} s)", config.prod.health_timeout_secs),
                "check that http://10.200.0.2:8080/version reports revision r2",
            ]
        );
        assert_eq!(lines(&plan.recovery), ["remove books-ms-app"]);
        assert_eq!(plan.recover_from, 5, "recovery starts with the app's creation");
        assert_eq!(lines(&plan.finally), ["release the deploy lock books-ms-deploy-lock"]);
        assert_eq!(plan.new_container(), Some("books-ms-app"));
    }

    #[test]
    fn the_same_release_running_healthy_is_left_alone() {
        let config = Config::default();
        let observed = Observed { app: Some(running(spec_of_release(&config))), ..ready_prod() };
        let plan = plan(&observed, &release(), &config, HOLDER).unwrap();
        assert!(plan.is_noop(), "{plan}");
        assert!(plan.recovery.is_empty());
        assert!(plan.summary.contains("already runs this release"), "{}", plan.summary);
    }

    #[test]
    fn the_same_release_unhealthy_or_stopped_is_replaced() {
        let config = Config::default();
        for app in [
            Container { running: true, healthy: false, spec: spec_of_release(&config) },
            Container { running: false, healthy: false, spec: spec_of_release(&config) },
        ] {
            let observed = Observed { app: Some(app), ..ready_prod() };
            assert!(!plan(&observed, &release(), &config, HOLDER).unwrap().is_noop());
        }
    }

    #[test]
    fn a_replace_keeps_the_old_container_stopped_and_its_recovery_puts_it_back() {
        let config = Config::default();
        let observed = Observed { app: Some(running(Some("older".into()))), ..ready_prod() };
        let plan = plan(&observed, &release(), &config, HOLDER).unwrap();
        assert_eq!(
            lines(&plan.actions),
            [
                "rename books-ms-app to books-ms-app-previous",
                "stop books-ms-app-previous",
                "create books-ms-app from 10.200.0.1:5000/books-ms@sha256:abc",
                "start books-ms-app",
                &format!("wait until books-ms-app is healthy (at most {} s)", config.prod.health_timeout_secs),
                "check that http://10.200.0.2:8080/version reports revision r2",
            ]
        );
        assert_eq!(plan.recover_from, 1, "a failed rename leaves the old container in place: nothing to undo");
        assert_eq!(
            lines(&plan.recovery),
            [
                "remove books-ms-app",
                "rename books-ms-app-previous to books-ms-app",
                "start books-ms-app",
                &format!("wait until books-ms-app is healthy (at most {RESTORE_TIMEOUT_SECS} s)"),
            ]
        );
    }

    #[test]
    fn a_failed_health_check_recovers_with_a_longer_wait_that_accepts_no_healthcheck() {
        let mut config = Config::default();
        config.prod.health_timeout_secs = 5;
        let observed = Observed { app: Some(running(None)), ..ready_prod() };
        let plan = plan(&observed, &release(), &config, HOLDER).unwrap();
        let failing = plan.actions.iter().position(|a| matches!(a, Action::WaitHealthy { .. })).unwrap();
        assert!(failing >= plan.recover_from, "a failed health check is recovered");
        match plan.recovery.last() {
            Some(Action::WaitHealthy { timeout_secs, no_healthcheck_ok, setting, .. }) => {
                assert_eq!(*timeout_secs, RESTORE_TIMEOUT_SECS);
                assert!(*no_healthcheck_ok);
                assert!(setting.contains("prod.health_timeout_secs"), "{setting}");
            }
            other => panic!("the recovery ends waiting for the restored container: {other:?}"),
        }
        match &plan.actions[failing] {
            Action::WaitHealthy { timeout_secs: 5, setting, no_healthcheck_ok: false, .. } => {
                assert_eq!(setting, "prod.health_timeout_secs");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_leftover_previous_container_is_removed_before_the_rename() {
        let config = Config::default();
        let observed = Observed {
            app: Some(running(None)),
            previous: Some(Container { running: false, healthy: false, spec: None }),
            ..ready_prod()
        };
        let plan = plan(&observed, &release(), &config, HOLDER).unwrap();
        assert_eq!(
            lines(&plan.actions[..2]),
            ["remove books-ms-app-previous", "rename books-ms-app to books-ms-app-previous"]
        );
        assert_eq!(plan.recover_from, 2);
    }

    #[test]
    fn a_leftover_previous_without_an_app_is_left_for_the_operator() {
        // The app is gone (removed by hand, or a deploy died between its
        // rename and its create): the previous one is what a person may
        // want back, so the plan does not touch it.
        let config = Config::default();
        let observed = Observed { previous: Some(Container::default()), ..ready_prod() };
        let plan = plan(&observed, &release(), &config, HOLDER).unwrap();
        assert!(!lines(&plan.actions).iter().any(|l| l.contains("previous")), "{plan}");
    }

    #[test]
    fn a_lock_held_by_another_deploy_refuses_naming_the_holder_and_the_way_out() {
        let config = Config::default();
        let observed = Observed { lock_holder: Some("pid 42 since unix time 1".into()), ..ready_prod() };
        let error = plan(&observed, &release(), &config, HOLDER).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("pid 42 since unix time 1") && text.contains("docker rm books-ms-deploy-lock"), "{text}");
    }

    #[test]
    fn a_stopped_database_is_started_and_a_missing_network_created_never_the_volume_recreated() {
        let config = Config::default();
        let observed = Observed {
            network: false,
            volume: true,
            db: Some(Container::default()),
            app: Some(running(spec_of_release(&config))),
            ..Default::default()
        };
        let plan = plan(&observed, &release(), &config, HOLDER).unwrap();
        assert_eq!(lines(&plan.actions), ["create the network books-ms", "start books-ms-db"]);
        assert!(plan.recovery.is_empty());
    }

    #[test]
    fn the_dry_run_text_numbers_every_action_and_names_the_recovery() {
        let config = Config::default();
        let observed = Observed { app: Some(running(None)), ..ready_prod() };
        let text = plan(&observed, &release(), &config, HOLDER).unwrap().to_string();
        assert!(text.starts_with("deploy 10.200.0.1:5000/books-ms@sha256:abc (revision r2): replace"), "{text}");
        assert!(text.contains("  1. pull 10.200.0.1:5000/books-ms@sha256:abc\n"), "{text}");
        assert!(text.contains("  3. rename books-ms-app to books-ms-app-previous\n"), "{text}");
        assert!(text.contains("  9. release the deploy lock books-ms-deploy-lock\n"), "{text}");
        assert!(text.contains("if a step from 4 on fails, put prod back:\n     - remove books-ms-app\n"), "{text}");
    }
}
