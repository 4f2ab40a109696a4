//! The one place a deploy changes prod: runs a [`Plan`]'s operations in
//! order, the shared ones ([`Core`]) here and the target's through
//! [`Target::act`], records each, and when a step fails (or Ctrl-C or
//! SIGTERM arrives) runs the undo of that step and of every earlier one,
//! latest first, so that a failed deploy leaves prod serving what it
//! served before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use super::history::{self, Entry, Kind, Outcome as HistoryOutcome};
use super::plan::{Core, LockHeld, Op, Plan};
use super::target::{On, Target};
use super::{hooks, lock};
use crate::engine::Engine;
use crate::progress::Reporter;
use crate::release::Release;
use crate::runner::{millis, Outcome, StepRecord};

/// One pull on prod: the image comes from the lab's registry, on the same
/// host's network.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// `GET /version` on prod.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a change of routing may take to show (a proxy resolves a
/// colour it has just been told of within a second).
const ROUTE_SETTLE: Duration = Duration::from_secs(10);

pub struct Executor<'a, T: Target> {
    target: &'a T,
    engine: &'a Engine,
    credentials: Option<DockerCredentials>,
    reporter: &'a Reporter,
    /// Every operation run so far, undo included, in order.
    records: Mutex<Vec<StepRecord>>,
    /// What this run records in the history.
    journal: Mutex<Option<Journal>>,
    /// Ctrl-C and SIGTERM, so that an interrupted deploy is undone.
    signals: Option<tokio::sync::Mutex<Signals>>,
}

struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

/// The history entry of this run: what it plans, then how it ended.
pub struct Journal {
    entry: Entry,
    planned: Vec<StepRecord>,
}

impl Journal {
    /// A deploy or rollback of `plan`, started at `started` (RFC 3339),
    /// replacing `before`.
    pub fn new<A: std::fmt::Display>(kind: Kind, started: String, plan: &Plan<A>, before: Option<Release>) -> Self {
        let planned = plan.operations().into_iter().map(|name| StepRecord {
            name,
            outcome: Outcome::Skipped,
            duration_ms: 0,
            detail: "planned".to_owned(),
        });
        let entry = Entry {
            kind,
            by: lock::who(),
            started,
            duration_ms: 0,
            release: plan.release.clone(),
            colour: plan.colour,
            previous: before,
            outcome: HistoryOutcome::Running,
            error: None,
            steps: Vec::new(),
        };
        Journal { entry, planned: planned.collect() }
    }

    /// `harness lock release --force` of a lock taken to deploy `image`.
    pub fn lock_release(image: String, error: String) -> Self {
        let entry = Entry {
            kind: Kind::LockRelease,
            by: lock::who(),
            started: history::now(),
            duration_ms: 0,
            release: Release::given(image, String::new(), None),
            colour: None,
            previous: None,
            outcome: HistoryOutcome::Running,
            error: Some(error),
            steps: Vec::new(),
        };
        Journal { entry, planned: Vec::new() }
    }
}

impl<'a, T: Target> Executor<'a, T> {
    pub fn new(
        target: &'a T,
        engine: &'a Engine,
        credentials: Option<DockerCredentials>,
        reporter: &'a Reporter,
    ) -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let signals = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(interrupt), Ok(terminate)) => Some(tokio::sync::Mutex::new(Signals { interrupt, terminate })),
            _ => None,
        };
        Executor {
            target,
            engine,
            credentials,
            reporter,
            records: Mutex::default(),
            journal: Mutex::default(),
            signals,
        }
    }

    /// What the target's actions are carried out with.
    fn on(&self) -> On<'_> {
        On { engine: self.engine, reporter: self.reporter, credentials: self.credentials.clone() }
    }

    /// What this run will record in the history.
    pub fn begin(&self, journal: Journal) {
        *self.journal.lock().unwrap_or_else(|p| p.into_inner()) = Some(journal);
    }

    /// How this run ended, for [`Core::RecordEnd`].
    pub fn conclude(&self, outcome: HistoryOutcome, error: Option<String>, took: Duration) {
        if let Some(journal) = self.journal.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            journal.entry.outcome = outcome;
            journal.entry.error = error.or(journal.entry.error.take());
            journal.entry.duration_ms = millis(took);
        }
    }

    /// Resolves when Ctrl-C or SIGTERM arrives (never when they cannot be
    /// caught), naming it.
    async fn interrupted(&self) -> &'static str {
        let Some(signals) = &self.signals else { return std::future::pending().await };
        let mut signals = signals.lock().await;
        let Signals { interrupt, terminate } = &mut *signals;
        tokio::select! {
            _ = interrupt.recv() => "Ctrl-C (SIGINT)",
            _ = terminate.recv() => "SIGTERM",
        }
    }

    /// Runs `ops` in order, stopping at the first failure, which names
    /// the engine and the operation.
    pub async fn run_all(&self, ops: &[Op<T::Action>]) -> anyhow::Result<()> {
        for op in ops {
            self.run(op).await.map_err(|e| match e.downcast::<LockHeld>() {
                Ok(held) => anyhow::Error::new(held),
                Err(e) => e.context(format!("{}: {op}", self.engine.name)),
            })?;
        }
        Ok(())
    }

    /// Runs the plan's steps; when one fails or the run is interrupted,
    /// runs the undo of that step and of every earlier one, latest first,
    /// and says how it went.
    pub async fn apply(&self, plan: &Plan<T::Action>) -> anyhow::Result<()> {
        for (i, step) in plan.steps.iter().enumerate() {
            let failure = tokio::select! {
                result = self.run(&step.action) => match result {
                    Ok(()) => continue,
                    Err(failure) => failure,
                },
                signal = self.interrupted() => anyhow!("interrupted by {signal}"),
            };
            let quoted = self.target.explain(&self.on(), plan, i).await;
            let recovery = self.undo(&plan.steps[..=i]).await;
            bail!(
                "{}: deploying {} failed at `{}`: {failure:#}{recovery}{quoted}",
                self.engine.name,
                plan.release.image,
                step.action
            );
        }
        Ok(())
    }

    /// The undo of `done`, latest first; how it went, as the end of the
    /// failure's message.
    async fn undo(&self, done: &[super::plan::Step<T::Action>]) -> String {
        let mut failures = Vec::new();
        for op in done.iter().rev().flat_map(|s| &s.undo) {
            if let Err(e) = self.run(op).await {
                failures.push(format!("`{op}`: {e:#}"));
            }
        }
        let undos = || done.iter().flat_map(|s| &s.undo);
        let rolled_back: Vec<&str> = undos()
            .filter_map(|op| match op {
                Op::Target(action) => T::rolls_back(action),
                Op::Core(_) => None,
            })
            .collect();
        match (failures.is_empty(), undos().next().is_some()) {
            (true, true) if !rolled_back.is_empty() => {
                format!("; rolled back ({}): prod serves what it served before", rolled_back.join(", "))
            }
            (true, true) => "; undone: prod serves what it served before".to_owned(),
            (true, false) => "; nothing needed undoing: prod serves what it served before".to_owned(),
            (false, _) => {
                format!("; undoing it failed too ({}): check prod with `harness status`", failures.join("; "))
            }
        }
    }

    /// Once the deploy succeeded: each of `ops`, a failure only a warning.
    pub async fn tidy(&self, ops: &[Op<T::Action>]) {
        for op in ops {
            if let Err(e) = self.run(op).await {
                self.reporter.warn(format!("{op} failed (the deploy stands; remove it by hand): {e:#}"));
            }
        }
    }

    /// One operation, recorded.
    async fn run(&self, op: &Op<T::Action>) -> anyhow::Result<()> {
        let started = Instant::now();
        self.reporter.line(format!("prod: {op}"));
        let result = match op {
            Op::Core(core) => self.core(core).await,
            Op::Target(action) => self.target.act(&self.on(), action).await,
        };
        let (outcome, detail) = match &result {
            Ok(()) => (Outcome::Passed, String::new()),
            Err(e) => (Outcome::Failed, crate::runner::first_line(&format!("{e:#}"))),
        };
        let record = StepRecord { name: op.to_string(), outcome, duration_ms: millis(started.elapsed()), detail };
        self.records.lock().unwrap_or_else(|p| p.into_inner()).push(record);
        result
    }

    /// What ran so far, in order (undo included).
    pub fn records(&self) -> Vec<StepRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The header that reaches the preview (`prod.preview_header`).
    fn preview_header(&self) -> &str {
        &self.target.config().prod.preview_header
    }

    async fn core(&self, core: &Core) -> anyhow::Result<()> {
        match core {
            Core::Pull { image } => self.pull(image).await,
            Core::TakeLock { name, body, .. } => match self.on().create_container(name, body).await {
                Err(e) if e.downcast_ref::<crate::engine::EngineError>().and_then(|e| e.status()) == Some(409) => {
                    let holder = self.engine.inspect_container(name).await.ok().flatten();
                    let holder = holder.map_or_else(|| "unknown".to_owned(), super::names::lock_holder);
                    Err(LockHeld { lock: name.clone(), holder }.into())
                }
                other => other,
            },
            Core::ReleaseLock { name } => self.on().remove_container(name).await,
            Core::CreateHistory { name, body, .. } => self.on().create_container(name, body).await,
            Core::RecordStart { history } => self.record(history, false).await,
            Core::RecordEnd { history } => self.record(history, true).await,
            Core::Hook { name, command, timeout_secs, env } => {
                let Some(failed) = hooks::run(*name, command, *timeout_secs, env).await? else { return Ok(()) };
                if !failed.output.is_empty() {
                    let secrets: Vec<&str> = self.credentials.iter().filter_map(|c| c.password.as_deref()).collect();
                    let output = hooks::redact(&crate::runner::cut(&failed.output, hooks::OUTPUT_CHARS), &secrets);
                    self.reporter.warn(format!("the {name} hook's output (not kept in the history):\n{output}"));
                }
                bail!("the {name} hook failed ({}); its output, if any, is above", failed.status)
            }
            Core::CheckVersion { url, field, revision, preview } => {
                let revision = revision.as_deref().context("the revision to check is not known")?;
                let preview = preview.as_deref().map(|token| (self.preview_header(), token));
                check_version(url, field, revision, preview).await
            }
            Core::Checks { url, checks, revision, preview, secrets, repo, .. } => {
                let on = super::checks::Run {
                    url,
                    revision: revision.as_deref(),
                    preview: preview.as_deref(),
                    preview_header: self.preview_header(),
                    secrets,
                    repo,
                    verify_ids: &self.target.config().verify.ids,
                    // The executor answers a signal itself (it drops the
                    // step and undoes).
                    interrupt_after: None,
                };
                for check in checks {
                    let _spinner = crate::progress::Spinner(self.reporter.spinner(format!("check {}", check.name())));
                    super::checks::run(check, &on).await?;
                }
                self.reporter.line(format!("prod: {} checks passed", checks.len()));
                Ok(())
            }
        }
    }

    /// Writes this run's entry: as planned and running (`end` false), or
    /// as it ended with every operation run so far. Nothing without a
    /// journal.
    async fn record(&self, history: &str, end: bool) -> anyhow::Result<()> {
        let entry = {
            let journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
            let Some(journal) = journal.as_ref() else { return Ok(()) };
            let mut entry = journal.entry.clone();
            if end {
                entry.steps = self.records();
            } else {
                entry.outcome = HistoryOutcome::Running;
                entry.steps = journal.planned.clone();
            }
            entry
        };
        Ok(history::record(self.engine, history, entry).await?)
    }

    /// Pulls an image on the engine, bounded in time, with a bar per layer
    /// being downloaded (on a terminal).
    async fn pull(&self, image: &str) -> anyhow::Result<()> {
        let options = CreateImageOptionsBuilder::default().from_image(image).build();
        let mut stream = self.engine.docker.create_image(Some(options), None, self.credentials.clone());
        let mut layers: HashMap<String, indicatif::ProgressBar> = HashMap::new();
        let pulled = async {
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| anyhow!("{e}"))?;
                let (Some(id), Some(status)) = (info.id, info.status) else {
                    continue;
                };
                let detail = info.progress_detail.unwrap_or_default();
                match (status.as_str(), detail.current, detail.total) {
                    ("Downloading", Some(current), Some(total)) if total > 0 => {
                        let bar = layers
                            .entry(id.clone())
                            .or_insert_with(|| self.reporter.bytes(format!("layer {id}"), total as u64));
                        bar.set_position(current as u64);
                    }
                    ("Download complete" | "Pull complete" | "Already exists", _, _) => {
                        if let Some(bar) = layers.remove(&id) {
                            bar.finish_and_clear();
                        }
                    }
                    _ => {}
                }
            }
            anyhow::Ok(())
        };
        let result = tokio::time::timeout(PULL_TIMEOUT, pulled)
            .await
            .map_err(|_| anyhow!("no end to the pull within {} s", PULL_TIMEOUT.as_secs()));
        for bar in layers.into_values() {
            bar.finish_and_clear();
        }
        result?.with_context(|| format!("pulling {image}"))
    }
}

/// `GET url` (the service's `[version]` path) reports `revision` at the
/// JSON pointer `field`, within [`ROUTE_SETTLE`]: a colour the proxy was
/// just told of answers once its name resolves there.
async fn check_version(url: &str, field: &str, revision: &str, preview: Option<(&str, &str)>) -> anyhow::Result<()> {
    let mut request = crate::http::builder(HTTP_TIMEOUT, HTTP_TIMEOUT);
    if let Some((header, token)) = preview {
        let mut headers = reqwest::header::HeaderMap::new();
        let header = reqwest::header::HeaderName::from_bytes(header.as_bytes())
            .with_context(|| format!("prod.preview_header `{header}` is not a header name"))?;
        headers.insert(header, reqwest::header::HeaderValue::from_str(token)?);
        request = request.default_headers(headers);
    }
    let http = request.build()?;
    let deadline = Instant::now() + ROUTE_SETTLE;
    loop {
        let answer = async {
            let response = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
            let status = response.status();
            let body = response.text().await.with_context(|| format!("GET {url}: reading the body"))?;
            if !status.is_success() {
                bail!("GET {url} answered {status}: {}", crate::runner::cut(body.trim(), 200));
            }
            let version: serde_json::Value = serde_json::from_str(&body)
                .with_context(|| format!("GET {url}: not JSON: {}", crate::runner::cut(body.trim(), 200)))?;
            match version.pointer(field).and_then(serde_json::Value::as_str) {
                Some(reported) if reported == revision => Ok(()),
                Some(other) => bail!("{url} reports revision {other}, expected {revision}"),
                None => bail!(
                    "GET {url}: no text at {field} (version.field) in its answer: {}",
                    crate::runner::cut(body.trim(), 200)
                ),
            }
        };
        match answer.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
