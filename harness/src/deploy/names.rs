//! Names and labels of everything a deploy owns on prod.

/// Every container, network and volume of the project carries it.
pub const PROJECT_LABEL: &str = "org.books-ms.project";
/// `app`, `db` or `deploy-lock`.
pub const ROLE_LABEL: &str = "org.books-ms.role";
pub const VERSION_LABEL: &str = "org.books-ms.version";
pub const REVISION_LABEL: &str = "org.books-ms.revision";
pub const IMAGE_LABEL: &str = "org.books-ms.image";
/// Everything a deploy decides about the app container, in one label: a
/// deploy whose spec equals the running container's has nothing to do.
pub const SPEC_LABEL: &str = "org.books-ms.spec";
/// Who holds the deploy lock, and since when.
pub const LOCK_HOLDER_LABEL: &str = "org.books-ms.lock.holder";

/// Names of everything on prod, from the project `P`: a network `P`, a
/// database container `P-db` with its named volume `P-db`, the app
/// container `P-app`, the one it replaced `P-app-previous`, and the deploy
/// lock `P-deploy-lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub project: String,
    pub network: String,
    pub db: String,
    pub volume: String,
    pub app: String,
    pub previous: String,
    pub lock: String,
}

impl Names {
    pub fn new(project: &str) -> Self {
        Names {
            project: project.to_owned(),
            network: project.to_owned(),
            db: format!("{project}-db"),
            volume: format!("{project}-db"),
            app: format!("{project}-app"),
            previous: format!("{project}-app-previous"),
            lock: format!("{project}-deploy-lock"),
        }
    }
}
