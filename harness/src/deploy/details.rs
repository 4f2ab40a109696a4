//! `harness details`: what runs on prod, in full, the same shape for both
//! targets (each target's `details` module fills it in, reading only):
//! every container or task of the app, the proxy and which colour it
//! serves, the accessory, the deploy lock and the last deploys. `harness
//! status` stays the short answer. Rendered as a table here ([`Details`]
//! is `Display`); `main.rs` prints it, or the JSON.

use std::fmt::{self, Write as _};

use serde::Serialize;

use super::history::Entry;
use super::names::Colour;
use crate::config::TargetKind;
use crate::release::Release;

/// What `harness details` shows.
#[derive(Debug, Serialize)]
pub struct Details {
    pub target: TargetKind,
    /// The engine's address: prod's, or the swarm manager's.
    pub engine: String,
    /// Where users reach the service.
    pub url: String,
    /// The release users reach, if any, and (single host) its colour.
    pub live: Option<Live>,
    /// The app's containers (both colours) or tasks.
    pub app: Vec<Unit>,
    pub proxy: Proxy,
    /// The database's container or task.
    pub accessories: Vec<Unit>,
    /// Who holds the deploy lock.
    pub lock: Option<String>,
    /// The last deploys and rollbacks, oldest first.
    pub history: Vec<Entry>,
    /// The live release's request and error rates, from its `/metrics`
    /// (filled in by `deploy::details`, for both targets).
    pub traffic: Option<Traffic>,
}

/// The live release's rates, or why they could not be read.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Traffic {
    Measured(crate::traffic::Traffic),
    Unknown { unknown: String },
}

/// The live release.
#[derive(Debug, Serialize)]
pub struct Live {
    pub colour: Option<Colour>,
    #[serde(flatten)]
    pub release: Release,
}

/// One container, or one task of a service.
#[derive(Debug, Default, Serialize)]
pub struct Unit {
    /// The container's name, or the task's (`SERVICE.SLOT` or
    /// `SERVICE.NODE` for a global service).
    pub name: String,
    pub role: String,
    /// The image reference it was created from.
    pub image: String,
    /// The image's digest (`sha256:...`), when known.
    pub digest: Option<String>,
    pub version: Option<String>,
    /// The revision label (the release's, or the image's own).
    pub revision: Option<String>,
    pub colour: Option<Colour>,
    /// The swarm node it runs on.
    pub node: Option<String>,
    /// `running`, `exited`, ... (a container's) or the task's state.
    pub state: String,
    /// A container's healthcheck status. For a task with a healthcheck:
    /// `healthy` once it runs (Swarm reports a task running only after its
    /// container's healthcheck passed), `starting` before.
    pub health: Option<String>,
    /// When it started (RFC 3339).
    pub started: Option<String>,
    /// A container's restart count; for a task, how many tasks of its
    /// slot (or node, for a global service) failed and were replaced.
    pub restarts: Option<i64>,
}

/// The proxy users reach.
#[derive(Debug, Default, Serialize)]
pub struct Proxy {
    /// Its container (single host) or its task on each node (swarm).
    pub units: Vec<Unit>,
    /// The colour users' requests go to (single host).
    pub serves: Option<Colour>,
    /// A colour reachable with the preview header (a deploy runs, or died).
    pub preview: Option<Colour>,
    /// Each server of its users' backend, as HAProxy's runtime API says
    /// (single host).
    pub servers: Vec<Server>,
}

/// One server of the proxy's users' backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub name: String,
    /// HAProxy's status: `UP`, `DOWN`, `MAINT`, `DRAIN`, `no check`, ...
    pub status: String,
    /// Requests it holds now.
    pub sessions: Option<u64>,
    /// Requests it served since the proxy started.
    pub total: Option<u64>,
}

/// A digest in an image reference (`NAME@sha256:...`).
pub fn digest_in(reference: &str) -> Option<String> {
    reference.split_once('@').map(|(_, digest)| digest.to_owned())
}

impl fmt::Display for Details {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.target {
            TargetKind::Engine => "prod",
            TargetKind::Swarm => "swarm",
        };
        match &self.live {
            Some(live) => {
                let colour = live.colour.map(|c| format!("{c} ")).unwrap_or_default();
                let revision = live.release.revision.as_deref().unwrap_or("-");
                writeln!(f, "{place} {}: {colour}live at {}", self.engine, self.url)?;
                writeln!(
                    f,
                    "  release {} (revision {revision})\n  image {}",
                    live.release.version, live.release.image
                )?;
            }
            None => writeln!(f, "{place} {}: no release is live", self.engine)?,
        }
        f.write_str(&section("app", &self.app))?;
        let serves = match (self.proxy.serves, self.proxy.preview) {
            (Some(live), Some(preview)) => format!(" (serves {live}; {preview} in preview)"),
            (Some(live), None) => format!(" (serves {live})"),
            (None, Some(preview)) => format!(" (serves nothing; {preview} in preview)"),
            (None, None) => String::new(),
        };
        f.write_str(&section(&format!("proxy{serves}"), &self.proxy.units))?;
        let width = self.proxy.servers.iter().map(|s| s.status.len()).max().unwrap_or(0);
        for s in &self.proxy.servers {
            let count = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
            let (now, total) = (count(s.sessions), count(s.total));
            writeln!(f, "  server {:<6} {:<width$}  now {now:<4} served {total}", s.name, s.status)?;
        }
        match &self.traffic {
            Some(Traffic::Measured(t)) => writeln!(
                f,
                "traffic: {:.1} requests/s, {:.1} errors/s (5xx), over {:.1} s, {} instance{}",
                t.requests_per_sec,
                t.errors_per_sec,
                t.window_secs,
                t.instances,
                if t.instances == 1 { "" } else { "s" }
            )?,
            Some(Traffic::Unknown { unknown }) => writeln!(f, "traffic: unknown: {unknown}")?,
            None => {}
        }
        f.write_str(&section("accessories", &self.accessories))?;
        match &self.lock {
            Some(holder) => writeln!(f, "deploy lock: held by {holder}")?,
            None => writeln!(f, "deploy lock: free")?,
        }
        if !self.history.is_empty() {
            writeln!(f, "last deploys:")?;
        }
        for e in &self.history {
            let colour = e.colour.map_or("-", |c| c.name());
            writeln!(
                f,
                "  {}  {:<8} {:<9} {:<20} {colour:<5} {}",
                e.started, e.kind, e.outcome, e.release.version, e.by
            )?;
        }
        Ok(())
    }
}

/// A titled table of units, its columns as wide as their widest value.
fn section(title: &str, units: &[Unit]) -> String {
    let mut out = format!("{title}:\n");
    if units.is_empty() {
        out.push_str("  none\n");
        return out;
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let short = |d: &Option<String>| d.as_deref().map_or("-".to_owned(), |d| d.chars().take(19).collect());
    let header = ["NAME", "COLOUR", "NODE", "STATE", "HEALTH", "STARTED", "RESTARTS", "VERSION", "REVISION", "DIGEST"];
    let rows: Vec<[String; 10]> = units
        .iter()
        .map(|u| {
            [
                u.name.clone(),
                u.colour.map_or("-".to_owned(), |c| c.to_string()),
                dash(&u.node),
                u.state.clone(),
                dash(&u.health),
                // To the second: the JSON has the engine's whole time.
                u.started.as_deref().map_or("-".to_owned(), |t| format!("{}Z", t.get(..19).unwrap_or(t))),
                u.restarts.map_or("-".to_owned(), |r| r.to_string()),
                dash(&u.version),
                dash(&u.revision),
                short(&u.digest),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let mut line = |cells: &[&str]| {
        let cells: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    };
    line(&header);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_read_from_a_reference_by_digest_only() {
        assert_eq!(digest_in("10.200.0.1:5000/books-ms@sha256:abc").as_deref(), Some("sha256:abc"));
        assert_eq!(digest_in("10.200.0.1:5000/books-ms:1.0"), None);
    }

    fn unit(name: &str, colour: Option<Colour>, node: Option<&str>) -> Unit {
        Unit {
            name: name.into(),
            role: "app".into(),
            image: "r/books-ms@sha256:0123456789abcdef0123".into(),
            digest: Some("sha256:0123456789abcdef0123".into()),
            version: Some("v1".into()),
            revision: Some("abc1234".into()),
            colour,
            node: node.map(str::to_owned),
            state: "running".into(),
            health: Some("healthy".into()),
            started: Some("2026-01-01T00:00:00Z".into()),
            restarts: Some(0),
        }
    }

    #[test]
    fn the_table_names_the_live_colour_each_container_and_the_proxys_servers() {
        let details = Details {
            target: TargetKind::Engine,
            engine: "tcp://10.200.0.2:2376".into(),
            url: "http://10.200.0.2:8080".into(),
            live: Some(Live {
                colour: Some(Colour::Blue),
                release: Release::given("r/books-ms@sha256:0123".into(), "v1".into(), Some("abc1234".into())),
            }),
            app: vec![
                unit("books-ms-blue", Some(Colour::Blue), None),
                unit("books-ms-green", Some(Colour::Green), None),
            ],
            proxy: Proxy {
                units: vec![unit("books-ms-proxy", None, None)],
                serves: Some(Colour::Blue),
                preview: None,
                servers: vec![Server { name: "blue".into(), status: "UP".into(), sessions: Some(2), total: None }],
            },
            accessories: vec![],
            lock: None,
            history: vec![],
            traffic: Some(Traffic::Measured(crate::traffic::Traffic {
                requests_per_sec: 12.25,
                errors_per_sec: 0.5,
                window_secs: 2.0,
                instances: 1,
            })),
        };
        let text = details.to_string();
        assert!(text.starts_with("prod tcp://10.200.0.2:2376: blue live at http://10.200.0.2:8080\n"), "{text}");
        assert!(text.contains("  release v1 (revision abc1234)\n"), "{text}");
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("  books-ms-")).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].starts_with("  books-ms-blue   blue    -     running  healthy"), "{text}");
        assert!(rows[0].ends_with("v1       abc1234   sha256:0123456789ab"), "{text}");
        assert!(text.contains("proxy (serves blue):\n  NAME "), "{text}");
        assert!(text.contains("  server blue   UP  now 2    served -\n"), "{text}");
        assert!(text.contains("traffic: 12.2 requests/s, 0.5 errors/s (5xx), over 2.0 s, 1 instance\n"), "{text}");
        assert!(text.contains("accessories:\n  none\n") && text.ends_with("deploy lock: free\n"), "{text}");
    }
}
