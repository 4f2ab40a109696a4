//! The deploy lock: one deploy at a time on a target, as Kamal's. A
//! container created (never started) under a fixed name on the engine a
//! deploy talks to; creating it is atomic there. Its label names the
//! holder: this process, machine and user, since when, for which release.

use std::collections::HashMap;

use bollard::models::ContainerCreateBody;

use super::history;
use super::names::{Names, LOCK_HOLDER_LABEL, PROJECT_LABEL, ROLE_LABEL};
use crate::release::Release;

/// Who takes the lock: this process, on this machine, as this user, since
/// now, for which release.
pub(crate) fn holder(release: &Release) -> String {
    format!("{} since {}, deploying {}", who(), history::now(), release.image)
}

/// This process, on this machine, as this user: who deploys, in the
/// history.
pub(crate) fn who() -> String {
    let (host, user) = (host(), user());
    let mut who = format!("harness pid {}", std::process::id());
    if !user.is_empty() {
        who.push_str(&format!(" as {user}"));
    }
    if !host.is_empty() {
        who.push_str(&format!(" on {host}"));
    }
    who
}

/// The lock's container. It needs an image the engine has: the release's,
/// pulled just before.
pub fn body(names: &Names, image: &str, holder: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_owned()),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_owned(), names.project.clone()),
            (ROLE_LABEL.to_owned(), "deploy-lock".to_owned()),
            (LOCK_HOLDER_LABEL.to_owned(), holder.to_owned()),
        ])),
        ..Default::default()
    }
}

/// Whether the lock's `holder` (as [`holder`] wrote it) names this user on
/// this machine; never when either is unknown.
pub(crate) fn taken_here(holder: &str) -> bool {
    held_by(holder, &user(), &host())
}

fn held_by(holder: &str, user: &str, host: &str) -> bool {
    !user.is_empty()
        && !host.is_empty()
        && holder.starts_with("harness pid ")
        && holder.contains(&format!(" as {user} on {host} since "))
}

/// Why a lock that is not this user's on this machine is not released.
pub(crate) fn refusal(lock: &str, holder: &str) -> String {
    let or_unknown = |text: String| if text.is_empty() { "(unknown)".to_owned() } else { text };
    format!(
        "the deploy lock {lock} is held by {holder}: not by {} on {}; if that deploy is dead, `harness lock release \
         --force` removes it, naming its holder in prod's history",
        or_unknown(user()),
        or_unknown(host())
    )
}

/// The image a lock's holder names (`..., deploying IMAGE`).
pub(crate) fn image_of(holder: &str) -> String {
    holder.rsplit_once(", deploying ").map(|(_, image)| image.to_owned()).unwrap_or_default()
}

/// The user: `USER` or `LOGNAME`, else the real uid (`uid 0`), so that a
/// lock's holder names one also where neither is set.
fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|user| !user.is_empty())
        .or_else(|| {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.to_owned();
            Some(format!("uid {uid}"))
        })
        .unwrap_or_default()
}

fn host() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_ours_only_when_its_holder_names_this_user_on_this_host() {
        let holder = "harness pid 7 as ana on cd1 since 2026-12-06T20:00:00Z, deploying reg/books-ms@sha256:1";
        assert!(held_by(holder, "ana", "cd1"));
        assert!(!held_by(holder, "bob", "cd1"), "another user");
        assert!(!held_by(holder, "ana", "cd2"), "another machine");
        assert!(!held_by(holder, "an", "cd1"), "a prefix of the user is not the user");
        assert!(!held_by(holder, "", ""), "unknown is never ours");
        assert!(!held_by("unknown", "ana", "cd1"), "a lock without a holder label");
        assert!(!user().is_empty(), "some user is always named");
        assert_eq!(image_of(holder), "reg/books-ms@sha256:1");
    }
}
