//! Ctrl-C and SIGTERM for a whole run. [`until_interrupted`] runs a
//! command and, when one of them arrives, drops it: every program a step
//! started goes with it (`child::run` kills their process groups on drop),
//! and the caller says so. Where dropping would leave prod half-changed (a
//! deploy from the moment it takes the lock until it released it), the
//! deploy holds a [`Shield`]: the run-wide handler then leaves the signal
//! to the deploy's executor, which undoes what it did, records it and
//! releases the lock, and the run ends with that error.

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
}
