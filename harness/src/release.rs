//! What was pushed, and so what can be deployed: the record of the last push
//! of each image (`.harness/last-push.json`, written whole or not at all),
//! and the [`Release`] a deploy takes, from that record or given by digest.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Where the last push is recorded, relative to the repo root.
pub const LAST_PUSH: &str = ".harness/last-push.json";

/// One pushed image, as the deploy step needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// `REGISTRY/NAME`.
    pub image: String,
    /// The version tag pushed (`latest` was pushed beside it).
    pub tag: String,
    /// `sha256:...`, as the registry serves it.
    pub digest: String,
    pub version: String,
    pub revision: String,
    /// RFC 3339, UTC.
    pub pushed_at: String,
}

impl PushRecord {
    /// `REGISTRY/NAME@sha256:...`: what to pull.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.image, self.digest)
    }
}

/// The file: the service image (what deploys read) and the tests image.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LastPush {
    pub service: Option<PushRecord>,
    pub tests: Option<PushRecord>,
}

/// The service image pushed last from `repo`.
pub fn load_last(repo: &Path) -> anyhow::Result<PushRecord> {
    let path = repo.join(LAST_PUSH);
    read_record(&path)?
        .service
        .with_context(|| format!("{} records no push of the service image: run `harness push` first", path.display()))
}

fn read_record(path: &Path) -> anyhow::Result<LastPush> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("no push recorded yet ({} is missing): run `harness push` first", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not a push record", path.display()))
}

/// Writes the file whole or not at all (a reader never sees half of it).
pub fn write_record(repo: &Path, update: impl FnOnce(&mut LastPush)) -> anyhow::Result<()> {
    let path = repo.join(LAST_PUSH);
    let mut record = read_record(&path).unwrap_or_default();
    update(&mut record);
    let dir = path.parent().expect("LAST_PUSH has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temporary = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&temporary, serde_json::to_string_pretty(&record)? + "\n")
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// What to deploy: an image by digest, and what its `/version` must say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// `REGISTRY/NAME@sha256:...`
    pub image: String,
    pub version: String,
    /// None: not known yet (the revision the image carries, read on prod).
    /// Written as `""`, as older releases of the harness wrote and read it.
    #[serde(default, with = "unknown_as_empty")]
    pub revision: Option<String>,
}

impl Release {
    /// `image` (by digest), whose `/version` must report `revision`.
    pub fn given(image: String, version: String, revision: Option<String>) -> Release {
        Release { image, version, revision: revision.filter(|r| !r.is_empty()) }
    }

    /// The service image `harness push` recorded last in `repo`.
    pub fn last_pushed(repo: &Path) -> anyhow::Result<Release> {
        let record = load_last(repo)?;
        Ok(Release::given(record.reference(), record.version, Some(record.revision)))
    }

    /// Whether `name` (a version, revision or image) names this release.
    pub fn is_named(&self, name: &str) -> bool {
        self.version == name || self.revision.as_deref() == Some(name) || self.image == name
    }
}

/// An unknown revision as the empty string, and back (`null` read too).
mod unknown_as_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(revision: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(revision.as_deref().unwrap_or_default())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?.filter(|r| !r.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = "10.200.0.1:5000";

    #[test]
    fn the_record_round_trips_and_the_service_is_what_load_last_returns() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_last(dir.path()).unwrap_err().to_string().contains("harness push"));
        let record = PushRecord {
            image: format!("{REGISTRY}/books-ms"),
            tag: "abc".into(),
            digest: "sha256:00".into(),
            version: "abc".into(),
            revision: "abc".into(),
            pushed_at: "2026-01-01T00:00:00Z".into(),
        };
        write_record(dir.path(), |last| last.service = Some(record.clone())).unwrap();
        let tests = PushRecord { image: format!("{REGISTRY}/books-ms-tests"), ..record.clone() };
        write_record(dir.path(), |last| last.tests = Some(tests)).unwrap();
        assert_eq!(load_last(dir.path()).unwrap(), record);
        assert_eq!(record.reference(), format!("{REGISTRY}/books-ms@sha256:00"));
    }

    #[test]
    fn an_unknown_revision_reads_and_writes_as_older_releases_did() {
        let old = r#"{"image":"r/a@sha256:1","version":"v1","revision":""}"#;
        let release: Release = serde_json::from_str(old).unwrap();
        assert_eq!(release.revision, None);
        assert_eq!(serde_json::to_string(&release).unwrap(), old);
        let known: Release = serde_json::from_str(&old.replace(r#""revision":"""#, r#""revision":"r1""#)).unwrap();
        assert_eq!(known.revision.as_deref(), Some("r1"));
        assert!(known.is_named("r1") && known.is_named("v1") && !known.is_named(""));
    }
}
