//! A database container of a test's own, through testcontainers, as the
//! service's API tests start theirs (service/tests/api/helpers.rs).

use testcontainers::bollard::models::PortBinding;
use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::bounded;

/// The label `scripts/test.sh` removes leftover test containers by (its
/// value: the test process's id), as the API tests'.
pub const RUN_LABEL: &str = "books-ms.tests.pid";
const DB_PORT: ContainerPort = ContainerPort::Tcp(27017);

/// The database image of every test that starts one, the harness's and the
/// service's alike: `BOOKS_TEST_DB_IMAGE`, which `.cargo/config.toml` sets
/// for every cargo command to the lab's local FerretDB image (the lab cannot
/// pull), and which the environment overrides. Unset (a test binary run
/// without cargo), the fallback is the service tests' own (`db_image` in
/// service/tests/api/helpers.rs), so the two suites never disagree: change
/// both together.
pub fn db_image() -> String {
    std::env::var("BOOKS_TEST_DB_IMAGE").unwrap_or_else(|_| "mongo:7".to_owned())
}

/// `host:5000/a/b:tag` → (`host:5000/a/b`, `tag`).
fn split_reference(reference: &str) -> (String, String) {
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (reference.to_owned(), "latest".to_owned()),
    }
}

/// A database container ([`db_image`]) published on a loopback port,
/// labelled with [`RUN_LABEL`]. Dropping it removes it (forced, with its
/// volumes, paused or not), also when the test fails.
pub struct Database {
    container: ContainerAsync<GenericImage>,
    port: u16,
}

impl Database {
    pub async fn start() -> Database {
        let reference = db_image();
        let (name, tag) = split_reference(&reference);
        let request = GenericImage::new(name, tag)
            .with_exposed_port(DB_PORT)
            .with_label(RUN_LABEL, std::process::id().to_string())
            // On 127.0.0.1 only (a port Docker picks), not on every
            // interface as testcontainers publishes by default.
            .with_host_config_modifier(|host| {
                let binding = PortBinding { host_ip: Some("127.0.0.1".to_owned()), host_port: None };
                host.publish_all_ports = Some(false);
                host.port_bindings = Some([(DB_PORT.to_string(), Some(vec![binding]))].into());
            });
        let container = bounded("starting the database container", request.start()).await.unwrap_or_else(|e| {
            panic!("cannot start the database container {reference} ({e}); is the lab up? (`bash lab/up.sh`)")
        });
        // From here on, dropping `container` removes it.
        let port = bounded("reading the database's port", container.get_host_port_ipv4(DB_PORT))
            .await
            .unwrap_or_else(|e| panic!("the database container's port: {e}"));
        Database { container, port }
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Frozen, not stopped: the service's calls hang into its timeout, and
    /// the data is there again after [`Database::unpause`].
    pub async fn pause(&self) {
        bounded("pausing the database container", self.container.pause())
            .await
            .unwrap_or_else(|e| panic!("pausing the database container: {e}"));
    }

    pub async fn unpause(&self) {
        bounded("unpausing the database container", self.container.unpause())
            .await
            .unwrap_or_else(|e| panic!("unpausing the database container: {e}"));
    }
}
