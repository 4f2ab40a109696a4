//! Names and labels of everything a deploy owns on prod, and the colours.

/// Every container, network and volume of the project carries it.
pub const PROJECT_LABEL: &str = "org.books-ms.project";
/// `app`, `db`, `proxy`, `history` or `deploy-lock`.
pub const ROLE_LABEL: &str = "org.books-ms.role";
pub const VERSION_LABEL: &str = "org.books-ms.version";
pub const REVISION_LABEL: &str = "org.books-ms.revision";
pub const IMAGE_LABEL: &str = "org.books-ms.image";
/// Everything a deploy decides about the app container, in one label: a
/// deploy whose spec equals the running container's has nothing to do.
pub const SPEC_LABEL: &str = "org.books-ms.spec";
/// Who holds the deploy lock, and since when.
pub const LOCK_HOLDER_LABEL: &str = "org.books-ms.lock.holder";
/// The colour an app container runs as: `blue` or `green`.
pub const COLOUR_LABEL: &str = "org.books-ms.colour";
/// The revision an image carries (its OCI label, set by the Dockerfile).
pub const IMAGE_REVISION_LABEL: &str = "org.opencontainers.image.revision";
pub const IMAGE_VERSION_LABEL: &str = "org.opencontainers.image.version";

use std::fmt;

use bollard::models::ContainerInspectResponse;
use serde::{Deserialize, Serialize};

/// Who holds the deploy lock, from its container's label.
pub(crate) fn lock_holder(lock: ContainerInspectResponse) -> String {
    lock.config.and_then(|c| c.labels?.get(LOCK_HOLDER_LABEL).cloned()).unwrap_or_else(|| "unknown".to_owned())
}

/// What every target keeps on the engine a deploy talks to (prod's, or the
/// swarm manager's), for project `P`: the deploy lock `P-deploy-lock` (a
/// container created, never started) and the history `P-history` (a
/// container never started, and its volume). Each target names the rest
/// (`host::HostNames`, `swarm::services::SwarmNames`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub project: String,
    pub lock: String,
    /// The history's container (never started) and its volume.
    pub history: String,
}

impl Names {
    pub fn new(project: &str) -> Self {
        Names {
            project: project.to_owned(),
            lock: format!("{project}-deploy-lock"),
            history: format!("{project}-history"),
        }
    }
}

/// One of the two colours of a blue-green deploy on a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    pub const BOTH: [Colour; 2] = [Colour::Blue, Colour::Green];

    pub fn other(self) -> Colour {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Green => "green",
        }
    }
}

impl fmt::Display for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}
