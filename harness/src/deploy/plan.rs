//! A deploy as data, the same for every target: the [`Plan`] a dry run
//! prints is the list of operations a deploy runs, in order: the prelude
//! (pull the release, take the lock), the steps planned from what was
//! observed (each with what undoes it), the tidying once it succeeded, and
//! what runs whatever happened (record how it ended, release the lock).
//!
//! An [`Op`] is either one of the operations every target shares
//! ([`Core`]: the lock, the history, hooks, the revision check, the
//! post-deploy checks) or one of the target's own actions (`A`).

use std::fmt;

use bollard::models::ContainerCreateBody;
use serde::Serialize;

use super::names::Colour;
use crate::release::Release;

/// One operation of a deploy: shared by every target, or the target's own.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Op<A> {
    Core(Core),
    Target(A),
}

impl<A: fmt::Display> fmt::Display for Op<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Core(core) => core.fmt(f),
            Op::Target(action) => action.fmt(f),
        }
    }
}

impl<A> From<Core> for Op<A> {
    fn from(core: Core) -> Self {
        Op::Core(core)
    }
}

/// Which of the user's hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    PreDeploy,
    PostDeploy,
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookKind::PreDeploy => "pre-deploy",
            HookKind::PostDeploy => "post-deploy",
        })
    }
}

/// The operations every target shares, run against the engine the deploy
/// talks to (prod's, or the swarm manager's) or on this machine.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Core {
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
    /// Creates the history's container (never started) and its volume.
    CreateHistory {
        name: String,
        image: String,
        #[serde(skip)]
        body: Box<ContainerCreateBody>,
    },
    /// Records in the history that this deploy runs, with its plan: one
    /// killed outright leaves that.
    RecordStart {
        history: String,
    },
    /// Records how this deploy ended and every operation it ran.
    RecordEnd {
        history: String,
    },
    /// A user's hook (`hooks.pre_deploy`, `hooks.post_deploy`), run on this
    /// machine with the release in its environment.
    Hook {
        name: HookKind,
        command: String,
        timeout_secs: u64,
        #[serde(skip)]
        env: Vec<(String, String)>,
    },
    /// `GET url` must report this revision (at the JSON pointer `field`)
    /// within a few seconds (a proxy resolves a colour it was just told of
    /// within a second).
    CheckVersion {
        url: String,
        field: String,
        /// None in a dry run before prod has the image.
        revision: Option<String>,
        #[serde(skip)]
        preview: Option<String>,
    },
    /// The post-deploy checks (`[[checks]]`), in order.
    Checks {
        url: String,
        /// Their names.
        names: Vec<String>,
        #[serde(skip)]
        checks: Vec<crate::config::Check>,
        /// The revision the release carries (a command check's
        /// `HARNESS_REVISION`).
        #[serde(skip)]
        revision: Option<String>,
        #[serde(skip)]
        preview: Option<String>,
        /// The app's secrets, which a command check gets.
        #[serde(skip)]
        secrets: Vec<(String, secrecy::SecretString)>,
        /// A command check's folder.
        #[serde(skip)]
        repo: std::path::PathBuf,
    },
}

impl fmt::Display for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let through = |preview: &Option<String>| if preview.is_some() { " with the preview header" } else { "" };
        match self {
            Core::Pull { image } => write!(f, "pull {image}"),
            // Not the holder: it names this process and the time, which a
            // dry run cannot know.
            Core::TakeLock { name, .. } => write!(f, "take the deploy lock {name}"),
            Core::ReleaseLock { name } => write!(f, "release the deploy lock {name}"),
            Core::CreateHistory { name, image, .. } => write!(f, "create {name} from {image}"),
            Core::RecordStart { history } => write!(f, "record in {history} that this deploy runs"),
            Core::RecordEnd { history } => write!(f, "record in {history} how this deploy ended"),
            // Not its command: this text is kept in prod's history, and a
            // command may carry what its author would not have stored.
            Core::Hook { name, .. } => write!(f, "run the {name} hook"),
            Core::CheckVersion { url, revision, preview, .. } => match revision {
                Some(revision) => write!(f, "check that {url}{} reports revision {revision}", through(preview)),
                None => write!(f, "check that {url}{} reports the revision its image carries", through(preview)),
            },
            Core::Checks { url, preview, .. } => write!(f, "run the post-deploy checks on {url}{}", through(preview)),
        }
    }
}

/// One operation and what undoes it.
#[derive(Debug, Clone, Serialize)]
pub struct Step<A> {
    pub action: Op<A>,
    pub undo: Vec<Op<A>>,
}

impl<A> Step<A> {
    pub(crate) fn new(action: impl Into<Op<A>>) -> Step<A> {
        Step { action: action.into(), undo: Vec::new() }
    }

    pub(crate) fn undone_by(action: impl Into<Op<A>>, undo: Vec<Op<A>>) -> Step<A> {
        Step { action: action.into(), undo }
    }
}

/// What a target plans from what it observed: the steps under the lock
/// and how they read.
#[derive(Debug, Clone)]
pub struct Planned<A> {
    pub steps: Vec<Step<A>>,
    /// Once the deploy succeeded, best-effort (a failure is a warning,
    /// never an undo).
    pub cleanup: Vec<Op<A>>,
    /// False when the target already serves this release as planned.
    pub replaces: bool,
    /// The colour the release runs as (a single host); none when nothing
    /// is replaced.
    pub colour: Option<Colour>,
    /// Why the steps are what they are, in a sentence.
    pub summary: String,
    /// What the deploy leaves alone but a person should know.
    pub warnings: Vec<String>,
}

/// Everything a deploy runs, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Plan<A> {
    /// Where it deploys: `prod`, `the swarm`.
    pub place: &'static str,
    pub release: Release,
    pub replaces: bool,
    /// The colour the release starts as (a single host); none when it is
    /// live already, or on a swarm.
    #[serde(rename = "target")]
    pub colour: Option<Colour>,
    /// Before anything is observed: pull the release, take the lock.
    pub prelude: Vec<Op<A>>,
    /// Under the lock, from what was observed.
    pub steps: Vec<Step<A>>,
    /// Once the steps succeeded, best-effort.
    pub cleanup: Vec<Op<A>>,
    /// Always, once the lock was taken.
    pub finally: Vec<Op<A>>,
    pub summary: String,
    pub warnings: Vec<String>,
}

impl<A: fmt::Display> Plan<A> {
    /// Every operation the deploy runs when nothing fails, in order.
    pub fn operations(&self) -> Vec<String> {
        let steps = self.steps.iter().map(|s| &s.action);
        let all = self.prelude.iter().chain(steps).chain(&self.cleanup).chain(&self.finally);
        all.map(ToString::to_string).collect()
    }
}

/// `--dry-run`'s text: every operation, numbered, with its undo.
impl<A: fmt::Display> fmt::Display for Plan<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let revision = match self.release.revision.as_deref() {
            None => "the revision its image carries",
            Some(revision) => revision,
        };
        let to = if self.place == "prod" { String::new() } else { format!(" to {}", self.place) };
        writeln!(f, "deploy {} (revision {revision}){to}: {}", self.release.image, self.summary)?;
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        let none: &[Op<A>] = &[];
        let prelude = self.prelude.iter().map(|a| (a, none, ""));
        let steps = self.steps.iter().map(|s| (&s.action, &s.undo[..], ""));
        let cleanup = self.cleanup.iter().map(|a| (a, none, " (once it succeeded, best-effort)"));
        let finally = self.finally.iter().map(|a| (a, none, " (whatever happened)"));
        for (n, (action, undo, when)) in prelude.chain(steps).chain(cleanup).chain(finally).enumerate() {
            writeln!(f, "{:>3}. {action}{when}", n + 1)?;
            for action in undo {
                writeln!(f, "       undo: {action}")?;
            }
        }
        writeln!(f, "on a failure, the undo of the failed step and of every earlier one runs, latest first")
    }
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
