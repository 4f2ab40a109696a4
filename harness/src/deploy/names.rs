//! Names and labels of everything a deploy owns on prod.

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

use super::proxy::Colour;

/// Names of everything on prod, from the project `P`: a network `P`, a
/// database container `P-db` with its named volume `P-db`, the two colours
/// of the app `P-blue` and `P-green`, the proxy `P-proxy` (the only thing
/// published), the deploy lock `P-deploy-lock`, and the history `P-history`
/// (a container never started, and its volume). `P-app` and
/// `P-app-previous` are what deploys before blue-green left (one app
/// container published on the port): the first blue-green deploy removes
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub project: String,
    pub network: String,
    pub db: String,
    pub volume: String,
    pub proxy: String,
    pub lock: String,
    /// The history's container (never started) and its volume.
    pub history: String,
    pub legacy_app: String,
    pub legacy_previous: String,
}

impl Names {
    pub fn new(project: &str) -> Self {
        Names {
            project: project.to_owned(),
            network: project.to_owned(),
            db: format!("{project}-db"),
            volume: format!("{project}-db"),
            proxy: format!("{project}-proxy"),
            lock: format!("{project}-deploy-lock"),
            history: format!("{project}-history"),
            legacy_app: format!("{project}-app"),
            legacy_previous: format!("{project}-app-previous"),
        }
    }

    /// The container of one colour.
    pub fn colour(&self, colour: Colour) -> String {
        format!("{}-{colour}", self.project)
    }
}
