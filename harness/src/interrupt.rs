//! Ctrl-C and SIGTERM for a whole run. [`until_interrupted`] runs a
//! command and, when one of them arrives, drops it: every program a step
//! started goes with it (`child::run` kills their process groups on drop),
//! and the caller says so. Where dropping would leave prod half-changed (a
//! deploy from the moment it takes the lock until it released it), the
//! deploy holds a [`Shield`]: the run-wide handler then leaves the signal
//! to the deploy's executor, which undoes what it did, records it and
//! releases the lock, and the run ends with that error. Other shielded
//! work (the checks, which remove what they wrote; the pipeline after the
//! switch, which rolls back) learns of the signal from [`requested`] and
//! ends itself; [`pending`] then tells the caller the run was interrupted.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many shields are up.
static SHIELDS: AtomicUsize = AtomicUsize::new(0);

/// While one lives, an interrupt is the deploy's to answer.
#[must_use = "the shield is down as soon as it is dropped"]
pub struct Shield(());

impl Drop for Shield {
    fn drop(&mut self) {
        SHIELDS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Raises a shield until the returned value is dropped.
pub fn shield() -> Shield {
    SHIELDS.fetch_add(1, Ordering::SeqCst);
    Shield(())
}

fn shielded() -> bool {
    SHIELDS.load(Ordering::SeqCst) > 0
}

/// The signals the run received, for shielded and blocking work to see.
struct Requests {
    /// The first one.
    first: std::sync::OnceLock<&'static str>,
    /// How many.
    count: AtomicUsize,
    /// Wakes [`Requests::requested_after`]'s waiters on each.
    woken: tokio::sync::Notify,
}

impl Requests {
    const fn new() -> Requests {
        Requests {
            first: std::sync::OnceLock::new(),
            count: AtomicUsize::new(0),
            woken: tokio::sync::Notify::const_new(),
        }
    }

    fn request(&self, name: &'static str) {
        let _ = self.first.set(name);
        self.count.fetch_add(1, Ordering::SeqCst);
        self.woken.notify_waiters();
    }

    fn pending(&self) -> Option<Interrupted> {
        self.first.get().map(|name| Interrupted(name))
    }

    fn received(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    async fn requested_after(&self, seen: usize) -> Interrupted {
        loop {
            let mut woken = std::pin::pin!(self.woken.notified());
            woken.as_mut().enable();
            if self.received() > seen {
                return self.pending().unwrap_or(Interrupted("a signal"));
            }
            woken.await;
        }
    }
}

/// This process's.
static REQUESTS: Requests = Requests::new();

/// The first signal the run received, if one came: shielded work ended
/// early because of it, and blocking work (a git fetch on a thread of its
/// own) checks it to end its program.
pub fn pending() -> Option<Interrupted> {
    REQUESTS.pending()
}

/// How many signals the run received so far: what shielded work that
/// starts notes, to answer only those that come after (a rollback's checks
/// run after the signal that caused the rollback).
pub fn received() -> usize {
    REQUESTS.received()
}

/// Resolves once the run has received more than `seen` signals (see
/// [`received`]). Shielded work that can end early races its work
/// against it.
pub async fn requested_after(seen: usize) -> Interrupted {
    REQUESTS.requested_after(seen).await
}

/// The run was interrupted: by which signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub &'static str);

/// Runs `work` to its end, or until Ctrl-C or SIGTERM arrives while no
/// shield is up: then `work` is dropped. A signal that arrives under a
/// shield is left to the shielded code (its own handler sees it too).
pub async fn until_interrupted<T>(work: impl Future<Output = T>) -> Result<T, Interrupted> {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        // No handler could be installed: the default one (the process
        // ends) stays.
        return Ok(work.await);
    };
    let mut work = std::pin::pin!(work);
    loop {
        let name = tokio::select! {
            done = &mut work => return Ok(done),
            _ = interrupt.recv() => "Ctrl-C (SIGINT)",
            _ = terminate.recv() => "SIGTERM",
        };
        REQUESTS.request(name);
        if !shielded() {
            return Err(Interrupted(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shield_is_up_while_it_lives() {
        // The only test of this module touching the count: tests run in
        // threads of one process.
        let before = shielded();
        let shield = shield();
        assert!(shielded());
        drop(shield);
        assert_eq!(shielded(), before);
    }

    #[tokio::test]
    async fn a_request_wakes_the_waiters_and_stays_pending() {
        // Its own: the process's would interrupt the other tests' checks.
        static REQUESTS: Requests = Requests::new();
        let seen = REQUESTS.received();
        let waiter = tokio::spawn(REQUESTS.requested_after(seen));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!(REQUESTS.pending(), None);
        REQUESTS.request("Ctrl-C (SIGINT)");
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert_eq!(woken.expect("woken").unwrap(), Interrupted("Ctrl-C (SIGINT)"));
        assert_eq!(REQUESTS.pending(), Some(Interrupted("Ctrl-C (SIGINT)")));

        // Work that starts after it (a rollback's checks) waits for the next.
        let seen = REQUESTS.received();
        let later = tokio::spawn(REQUESTS.requested_after(seen));
        tokio::task::yield_now().await;
        assert!(!later.is_finished(), "woken by the signal before it started");
        REQUESTS.request("SIGTERM");
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), later).await;
        assert!(woken.is_ok(), "the second signal wakes it");
        assert_eq!(REQUESTS.pending(), Some(Interrupted("Ctrl-C (SIGINT)")), "the first one");
    }
}
