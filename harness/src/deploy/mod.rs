//! `harness deploy` and `harness status`: the service on prod, through
//! prod's Docker API only.
//!
//! A deploy is data run by one executor, as Kamal splits the commands it
//! builds from the code that runs them:
//!
//! 1. the prelude: pull the release by digest, take the deploy lock;
//! 2. [`observe`]: what prod holds of the project (network, volume, the
//!    database, the app, the container an earlier deploy kept);
//! 3. [`actions::plan`], a pure function: the observed state and the
//!    release in, the [`Action`]s out, with the recovery to run when one
//!    fails (put the previous app container back);
//! 4. [`executor::Executor`] runs them, then releases the lock.
//!
//! On prod, for project `P` (default `books-ms`): see [`names::Names`]. A
//! failed deploy leaves prod serving what it served before.

pub mod actions;
mod containers;
pub mod executor;
pub mod names;
pub mod observe;

use bollard::auth::DockerCredentials;
use serde::Serialize;

pub use self::actions::{Action, DeployPlan, LockHeld, Observed};
use self::executor::Executor;
use self::names::Names;
pub use self::observe::{status, ContainerStatus};
use crate::config::Config;
use crate::engine::Engine;
use crate::progress::Reporter;
use crate::release::Release;

/// What a deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    pub container: String,
    pub image: String,
    pub url: String,
    pub previous: Option<String>,
    /// False when prod already ran this release, healthy, with this
    /// configuration: nothing was stopped or started.
    pub replaced: bool,
}

/// What a deploy of `release` would do on prod now (`--dry-run`). Reads
/// prod, changes nothing.
pub async fn preview(prod: &Engine, config: &Config, release: &Release) -> anyhow::Result<DeployPlan> {
    let names = Names::new(&config.prod.project);
    let observed = observe::observe(prod, &names).await?;
    Ok(actions::plan(&observed, release, config, &holder())?)
}

pub async fn deploy(
    prod: &Engine,
    config: &Config,
    release: &Release,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    let names = Names::new(&config.prod.project);
    let holder = holder();
    let executor = Executor::new(prod, credentials, reporter);
    // Kamal's habit: one deploy at a time, and what is observed is observed
    // under the lock.
    executor.run_all(&actions::prelude(&names, release, &holder)).await?;
    let result = async {
        let mut observed = observe::observe(prod, &names).await?;
        observed.lock_holder = None; // ours
        let plan = actions::plan(&observed, release, config, &holder)?;
        executor.apply(&plan).await?;
        let replaced = !plan.is_noop();
        Ok(Deployed {
            container: names.app.clone(),
            image: release.image.clone(),
            url: config.prod_url()?,
            previous: (replaced && observed.app.is_some()).then(|| names.previous.clone()),
            replaced,
        })
    }
    .await;
    if let Err(e) = executor.run_all(&actions::finally(&names)).await {
        reporter.warn(format!("could not release the deploy lock: {e:#}"));
    }
    result
}

/// Who takes the lock: this process, on this machine, since now.
fn holder() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let on = if host.is_empty() { String::new() } else { format!(" on {host}") };
    format!("harness pid {}{on} since unix time {secs}", std::process::id())
}
