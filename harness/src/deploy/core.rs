//! The one deploy, whatever the target: what a target supplies
//! ([`Target`]: how it observes prod, which actions it plans, how it
//! carries them out) and everything else, written once: the lock, the
//! revision the image carries, the history, hooks and checks in the plan,
//! running the plan with its undo, the outcome, rollback's choice of a
//! release, and `harness lock release`.
//!
//! A run: the prelude (pull the release, take the lock) → the shared
//! observation (the lock, the history) and the target's → the plan → its
//! steps, undone on a failure or an interrupt → the tidying → whatever
//! happened, the end recorded and the lock released. `--dry-run` prints
//! the same plan from the same functions, so it is exactly what runs.

use anyhow::Context as _;
use bollard::auth::DockerCredentials;

use super::executor::{Executor, Journal};
use super::history::{self, Entry, Kind, Outcome};
use super::lock;
use super::names::{Names, IMAGE_REVISION_LABEL, IMAGE_VERSION_LABEL};
#[cfg(test)]
use super::plan::Planned;
use super::plan::{Core, LockHeld, Op, Plan, Step};
pub use super::target::{Context, Deployed, Shared, Target};
use crate::engine::Engine;
use crate::progress::Reporter;
use crate::release::Release;

/// What a deploy of `release` would do now (`--dry-run`): reads prod,
/// changes nothing.
pub async fn preview<T: Target>(target: &T, engine: &Engine, release: &Release) -> anyhow::Result<Plan<T::Action>> {
    let names = Names::new(target.config().project());
    // The revision the image carries: prod's copy, else the registry's
    // (a deploy reads it once it pulled the image).
    let release = match expected_revision(engine, release).await {
        Ok(release) => release,
        Err(_) => carried_by_registry(target.config(), release).await.unwrap_or_else(|| release.clone()),
    };
    let shared = observe_shared(engine, &names).await?;
    let observed = target.observe(engine, &shared, Some(&release)).await?;
    Ok(assemble(target, &observed, &shared, &release, &lock::holder(&release), "dry-run")?)
}

/// A deploy of `release`, recorded in the history as `kind`.
pub async fn run<T: Target>(
    target: &T,
    engine: &Engine,
    release: &Release,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
    kind: Kind,
) -> anyhow::Result<Deployed> {
    let names = Names::new(target.config().project());
    let holder = lock::holder(release);
    let executor = Executor::new(target, engine, credentials, reporter);
    let started = std::time::Instant::now();
    let started_at = history::now();
    let prelude = prelude::<T::Action>(&names, release, &holder);
    let (pull, take_lock) = prelude.split_at(1);
    // Interrupted during the pull, the run just ends: nothing is taken yet.
    // From the lock on, the executor answers an interrupt (undo, record,
    // release), never the run-wide handler.
    executor.run_all(pull).await?;
    let _shield = crate::interrupt::shield();
    executor.run_all(take_lock).await?;
    let mut finally = vec![Op::Core(Core::ReleaseLock { name: names.lock.clone() })];
    let result = async {
        let release = expected_revision(engine, release).await?;
        let mut shared = observe_shared(engine, &names).await?;
        shared.lock_holder = None; // ours
        let observed = target.observe(engine, &shared, Some(&release)).await?;
        let before = target.live(engine, &observed).await?;
        let plan = assemble(target, &observed, &shared, &release, &holder, &token()?)?;
        finally = plan.finally.clone();
        executor.begin(Journal::new(kind, started_at, &plan, before.clone()));
        for warning in &plan.warnings {
            reporter.warn(warning.clone());
        }
        executor.apply(&plan).await?;
        executor.tidy(&plan.cleanup).await;
        Ok(target.deployed(&plan, &observed, before))
    }
    .await;
    let outcome = match &result {
        Err(_) => Outcome::Failed,
        Ok(deployed) if deployed.replaced => Outcome::Succeeded,
        Ok(_) => Outcome::Unchanged,
    };
    executor.conclude(outcome, result.as_ref().err().map(|e| format!("{e:#}")), started.elapsed());
    // Whatever happened: each on its own, so that a failed record never
    // keeps the lock.
    for op in &finally {
        if let Err(e) = executor.run_all(std::slice::from_ref(op)).await {
            reporter.warn(format!("{op} failed: {e:#}"));
        }
    }
    result
}

/// `harness rollback`: back to the release before the live one, or to
/// `to` (a version, revision or image of the history's served releases),
/// as a deploy, with the same checks and undo.
pub async fn rollback<T: Target>(
    target: &T,
    engine: &Engine,
    to: Option<&str>,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    let names = Names::new(target.config().project());
    let entries = history::read(engine, &names.history).await?;
    let release = match to {
        Some(to) => entries
            .iter()
            .rev()
            .filter(|e| e.outcome.served())
            .map(|e| &e.release)
            .find(|r| r.is_named(to))
            .cloned()
            .with_context(|| {
                format!("no release {to} in {}'s history of succeeded deploys: `harness history` lists them", T::PLACE)
            })?,
        None => before_live(target, engine, &entries).await?,
    };
    run(target, engine, &release, credentials, reporter, Kind::Rollback).await
}

/// The release that was live before the live one: what the history's
/// last served deploy of the live release replaced, whatever was attempted
/// since (a refused deploy may have taken the stopped colour: its digest is
/// deployed again); else what the target kept (a history that does not
/// say).
async fn before_live<T: Target>(target: &T, engine: &Engine, entries: &[Entry]) -> anyhow::Result<Release> {
    let observed = target.observe(engine, &Shared::default(), None).await?;
    let Some(live) = target.live(engine, &observed).await? else {
        anyhow::bail!("nothing is live on {}, so there is nothing to roll back from: deploy a release first", T::PLACE);
    };
    let replaced = entries
        .iter()
        .rev()
        .filter(|e| e.outcome.served() && e.release.image == live.image)
        .find_map(|e| e.previous.clone().filter(|p| p.image != live.image));
    match replaced {
        Some(release) => Ok(release),
        None => target.kept_before(engine, &observed, &live).await,
    }
}

/// `harness remove [--volumes]`: the target's removal of the service
/// (`Target::removal`), planned from what prod holds, then, unless
/// `dry_run`, run under the lock and recorded in the history (kind
/// `remove`). Nothing undoes it. The plan it ran (or would run).
pub async fn remove<T: Target>(
    target: &T,
    engine: &Engine,
    volumes: bool,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
    dry_run: bool,
) -> anyhow::Result<Plan<T::Action>> {
    let config = target.config();
    let names = Names::new(config.project());
    let removal = |shared: &Shared, observed: &T::Observed, release: &Release, holder: &str| {
        let planned = target.removal(observed, volumes);
        if let Some(holder) = &shared.lock_holder {
            return Err(LockHeld { lock: names.lock.clone(), holder: holder.clone() }.into());
        }
        let mut steps = Vec::new();
        if !shared.history {
            let image = super::containers::kept_image(config).to_owned();
            steps.push(Step::new(Core::Pull { image: image.clone() }));
            let body = Box::new(super::containers::history(config, &names));
            steps.push(Step::new(Core::CreateHistory { name: names.history.clone(), image, body }));
        }
        steps.push(Step::new(Core::RecordStart { history: names.history.clone() }));
        let empty = planned.steps.is_empty();
        steps.extend(planned.steps);
        let plan = Plan {
            place: T::PLACE,
            release: release.clone(),
            replaces: false,
            colour: None,
            prelude: prelude(&names, release, holder),
            steps,
            cleanup: Vec::new(),
            finally: vec![
                Op::Core(Core::RecordEnd { history: names.history.clone() }),
                Op::Core(Core::ReleaseLock { name: names.lock.clone() }),
            ],
            summary: planned.summary,
            warnings: planned.warnings,
        };
        anyhow::Ok((plan, empty))
    };
    // What is removed is named by the release users reach, if any (the
    // lock's container needs an image prod has: the prelude pulls it).
    let shared = observe_shared(engine, &names).await?;
    let observed = target.observe(engine, &shared, None).await?;
    let release = match target.live(engine, &observed).await? {
        Some(live) => live,
        None => Release::given(super::containers::kept_image(config).to_owned(), String::new(), None),
    };
    let holder = lock::holder(&release);
    let (plan, empty) = removal(&shared, &observed, &release, &holder)?;
    if dry_run || empty {
        for warning in &plan.warnings {
            reporter.warn(warning.clone());
        }
        return Ok(plan);
    }
    let executor = Executor::new(target, engine, credentials, reporter);
    let started = std::time::Instant::now();
    let (pull, take_lock) = plan.prelude.split_at(1);
    executor.run_all(pull).await?;
    let _shield = crate::interrupt::shield();
    executor.run_all(take_lock).await?;
    let result = async {
        // Under the lock, from what prod holds now.
        let mut shared = observe_shared(engine, &names).await?;
        shared.lock_holder = None; // ours
        let observed = target.observe(engine, &shared, None).await?;
        let (plan, _) = removal(&shared, &observed, &release, &holder)?;
        executor.begin(Journal::new(Kind::Remove, history::now(), &plan, Some(release.clone())));
        executor.apply(&plan).await?;
        // What it could not do (a volume out of reach), once it did the rest.
        for warning in &plan.warnings {
            reporter.warn(warning.clone());
        }
        anyhow::Ok(plan)
    }
    .await;
    let outcome = if result.is_ok() { Outcome::Succeeded } else { Outcome::Failed };
    executor.conclude(outcome, result.as_ref().err().map(|e| format!("{e:#}")), started.elapsed());
    for op in &plan.finally {
        if let Err(e) = executor.run_all(std::slice::from_ref(op)).await {
            reporter.warn(format!("{op} failed: {e:#}"));
        }
    }
    result
}

/// `harness lock release [--force]`: removes the deploy lock; who held it,
/// if any. A lock that another user or machine took is refused unless
/// `force`; forced, the release is recorded in the history, naming whom it
/// overrode.
pub async fn release_lock<T: Target>(target: &T, engine: &Engine, force: bool) -> anyhow::Result<Option<String>> {
    let names = Names::new(target.config().project());
    let Some(holder) = observe_shared(engine, &names).await?.lock_holder else { return Ok(None) };
    let ours = lock::taken_here(&holder);
    if !ours && !force {
        anyhow::bail!(lock::refusal(&names.lock, &holder));
    }
    let reporter = Reporter::hidden();
    let executor = Executor::new(target, engine, None, &reporter);
    let _shield = crate::interrupt::shield();
    let started = std::time::Instant::now();
    let release = Op::<T::Action>::Core(Core::ReleaseLock { name: names.lock.clone() });
    executor.run_all(std::slice::from_ref(&release)).await?;
    if !ours {
        let image = lock::image_of(&holder);
        let error = format!("--force released the deploy lock held by {holder}");
        executor.begin(Journal::lock_release(image, error));
        executor.conclude(Outcome::Forced, None, started.elapsed());
        let record = Op::<T::Action>::Core(Core::RecordEnd { history: names.history.clone() });
        executor.run_all(std::slice::from_ref(&record)).await.with_context(|| {
            format!("the lock held by {holder} is released, but recording that in the history failed")
        })?;
    }
    Ok(Some(holder))
}

/// Runs `work` under the deploy lock of the target (`harness prune`):
/// the lock taken as a deploy takes it (its container made of `image`,
/// pulled first), so no deploy or rollback runs meanwhile, and released
/// whatever `work` returned. Interrupted meanwhile, `work` is left to
/// finish its current call (the shield) and the lock is released.
pub async fn under_lock<T: Target, R>(
    target: &T,
    engine: &Engine,
    image: &str,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
    work: impl std::future::Future<Output = anyhow::Result<R>>,
) -> anyhow::Result<R> {
    let names = Names::new(target.config().project());
    let holder = format!("{} since {}, pruning", lock::who(), history::now());
    let executor = Executor::new(target, engine, credentials, reporter);
    let pull = Op::<T::Action>::Core(Core::Pull { image: image.to_owned() });
    executor.run_all(std::slice::from_ref(&pull)).await?;
    let _shield = crate::interrupt::shield();
    let body = Box::new(lock::body(&names, image, &holder));
    let take = Op::<T::Action>::Core(Core::TakeLock { name: names.lock.clone(), holder: holder.clone(), body });
    executor.run_all(std::slice::from_ref(&take)).await?;
    let result = work.await;
    let release = Op::<T::Action>::Core(Core::ReleaseLock { name: names.lock.clone() });
    if let Err(e) = executor.run_all(std::slice::from_ref(&release)).await {
        reporter.warn(format!("{release} failed: {e:#}; `harness lock release` removes it"));
    }
    result
}

/// The plan of a deploy of `release` from what was observed: the
/// prelude, the history's container when missing, the record of the
/// start, the target's steps, and what runs whatever happens.
fn assemble<T: Target>(
    target: &T,
    observed: &T::Observed,
    shared: &Shared,
    release: &Release,
    holder: &str,
    token: &str,
) -> Result<Plan<T::Action>, LockHeld> {
    let config = target.config();
    let names = Names::new(config.project());
    if let Some(holder) = &shared.lock_holder {
        return Err(LockHeld { lock: names.lock.clone(), holder: holder.clone() });
    }
    let mut steps = Vec::new();
    let mut pulled = Vec::new();
    if !shared.history {
        // Its image may not be on the engine yet (a first deploy).
        let image = super::containers::kept_image(config).to_owned();
        steps.push(Step::new(Core::Pull { image: image.clone() }));
        let body = Box::new(super::containers::history(config, &names));
        steps.push(Step::new(Core::CreateHistory { name: names.history.clone(), image: image.clone(), body }));
        pulled.push(image);
    }
    steps.push(Step::new(Core::RecordStart { history: names.history.clone() }));
    let url = target.url().unwrap_or_default();
    let context = Context { config, release, token, shared, url, pulled };
    let planned = target.plan(observed, &context);
    steps.extend(planned.steps);
    Ok(Plan {
        place: T::PLACE,
        release: release.clone(),
        replaces: planned.replaces,
        colour: planned.colour,
        prelude: prelude(&names, release, holder),
        steps,
        cleanup: planned.cleanup,
        finally: vec![
            Op::Core(Core::RecordEnd { history: names.history.clone() }),
            Op::Core(Core::ReleaseLock { name: names.lock.clone() }),
        ],
        summary: planned.summary,
        warnings: planned.warnings,
    })
}

/// Before prod is observed: the release pulled, the lock taken (a lock
/// container needs an image prod has).
fn prelude<A>(names: &Names, release: &Release, holder: &str) -> Vec<Op<A>> {
    vec![
        Op::Core(Core::Pull { image: release.image.clone() }),
        Op::Core(Core::TakeLock {
            name: names.lock.clone(),
            holder: holder.to_owned(),
            body: Box::new(lock::body(names, &release.image, holder)),
        }),
    ]
}

/// The lock and the history, on the engine a deploy talks to.
async fn observe_shared(engine: &Engine, names: &Names) -> anyhow::Result<Shared> {
    let lock = engine.inspect_container(&names.lock).await?;
    let history = engine.inspect_container(&names.history).await?.is_some();
    // An unreadable history trusts no release: the plan runs the checks.
    let entries = if history { history::read(engine, &names.history).await.unwrap_or_default() } else { Vec::new() };
    Ok(Shared { lock_holder: lock.map(super::names::lock_holder), history, entries })
}

/// The release with the revision its image carries (its OCI label): the
/// one a deploy given only `--image` expects, and one a given revision must
/// match, so that a container's labels tell the truth about what it runs.
pub(crate) async fn expected_revision(engine: &Engine, release: &Release) -> anyhow::Result<Release> {
    let what = format!("for the image {}", release.image);
    let image = engine.call(what, engine.docker.inspect_image(&release.image)).await?;
    let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
    let version = labels.get(IMAGE_VERSION_LABEL).cloned().unwrap_or_else(|| release.version.clone());
    let expected = release.revision.as_deref();
    match (labels.get(IMAGE_REVISION_LABEL).cloned(), expected) {
        (Some(carried), None) => Ok(Release::given(release.image.clone(), version, Some(carried))),
        (Some(carried), Some(expected)) if carried == expected => Ok(Release { version, ..release.clone() }),
        (Some(carried), Some(expected)) => anyhow::bail!(
            "{} carries revision {carried} ({IMAGE_REVISION_LABEL}), not the expected {expected}: is it the image you \
             meant? (`harness deploy --image` alone expects the revision the image carries)",
            release.image
        ),
        (None, Some(_)) => Ok(release.clone()),
        (None, None) => anyhow::bail!(
            "{} carries no {IMAGE_REVISION_LABEL} label: give the revision its /version reports with --revision",
            release.image
        ),
    }
}

/// `release` with the revision its image carries as the configured
/// registry serves it, when the image is the registry's and names a
/// revision; None otherwise (the dry run then says "the revision its image
/// carries").
async fn carried_by_registry(config: &crate::config::Config, release: &Release) -> Option<Release> {
    let rest = release.image.strip_prefix(&format!("{}/", config.registry.address))?;
    let (name, digest) = rest.split_once('@')?;
    let credentials = crate::registry::credentials(config).ok()?;
    let cd = crate::engine::cd().await.ok()?;
    let registry = crate::registry::Registry::open(&cd, config, credentials).await.ok()?;
    let labels = registry.labels(name, digest).await.ok()?;
    let carried = labels.get(IMAGE_REVISION_LABEL)?.clone();
    if release.revision.as_ref().is_some_and(|expected| *expected != carried) {
        return None; // the run refuses it: the dry run shows the expected one
    }
    let version = labels.get(IMAGE_VERSION_LABEL).cloned().unwrap_or_else(|| release.version.clone());
    Some(Release::given(release.image.clone(), version, Some(carried)))
}

/// A preview token nobody can guess: 128 bits from the kernel.
fn token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom for the preview token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the targets' tests plan with.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub const HOLDER: &str = "harness pid 1 on cd since unix time 1";
    pub const TOKEN: &str = "t0k3n";

    /// A target that had deployed before: its history is there.
    pub fn shared() -> Shared {
        Shared { history: true, ..Shared::default() }
    }

    /// An entry of the history: a deploy of `image` that ended `outcome`.
    pub fn entry(image: &str, outcome: Outcome) -> Entry {
        Entry {
            kind: Kind::Deploy,
            by: HOLDER.to_owned(),
            started: "2026-12-06T00:00:00Z".to_owned(),
            duration_ms: 1,
            release: Release::given(image.to_owned(), "v".to_owned(), None),
            colour: None,
            previous: None,
            outcome,
            error: None,
            steps: Vec::new(),
        }
    }

    /// The target's own steps for `observed`.
    pub fn planned<T: Target>(
        target: &T,
        observed: &T::Observed,
        shared: &Shared,
        release: &Release,
    ) -> Planned<T::Action> {
        let url = target.url().unwrap_or_default();
        let context = Context { config: target.config(), release, token: TOKEN, shared, url, pulled: Vec::new() };
        target.plan(observed, &context)
    }

    /// The whole plan, as a deploy runs it.
    pub fn plan<T: Target>(
        target: &T,
        observed: &T::Observed,
        shared: &Shared,
        release: &Release,
    ) -> Result<Plan<T::Action>, LockHeld> {
        assemble(target, observed, shared, release, HOLDER, TOKEN)
    }
}
