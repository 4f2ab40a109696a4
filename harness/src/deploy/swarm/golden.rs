//! books-ms's swarm services, config object and proxy configuration as
//! the harness produced them before the swarm target was driven by the
//! service's `harness.toml` (issue 21), kept in
//! `testdata/books-ms-specs.txt`: a change that alters one byte of them
//! would update books-ms's services on the swarm at its next deploy (the
//! database's would be warned of, never updated). The test renders them
//! from the configuration books-ms ships with and compares.

use bollard::models::ServiceSpec;

use super::services::{self, SwarmNames};
use crate::config::Config;
use crate::deploy::containers::canonical;
use crate::release::Release;

/// Every service spec, config object and proxy configuration a deploy of
/// books-ms makes on the swarm, as text: canonical JSON for the specs
/// (their spec labels included), the configuration as it is shipped.
pub(crate) fn specs(config: &Config) -> String {
    let names = SwarmNames::new("books-ms");
    let release = Release::given("10.200.0.1:5000/books-ms@sha256:abc".into(), "v2".into(), Some("r2".into()));
    let json = |spec: &ServiceSpec| canonical(&serde_json::to_value(spec).expect("a spec serialises"));
    let mut out = String::new();
    out.push_str(&format!("== app\n{}\n", json(&services::app(config, &release, &names))));
    let accessory = config.accessories.get("db").expect("books-ms's accessory db");
    let db = services::accessory(config, &names, "db", accessory, &services::pinned_to("n0de1d"));
    out.push_str(&format!("== database\n{}\n", json(&db)));
    let text = services::proxy_text(config, &names);
    let config_name = names.proxy_config(&text);
    let config_spec = services::proxy_config(config, &config_name, &text);
    let config_json = canonical(&serde_json::to_value(&config_spec).expect("a config serialises"));
    out.push_str(&format!("== proxy config object\n{config_json}\n"));
    out.push_str(&format!("== proxy\n{}\n", json(&services::proxy(config, &names, &config_name))));
    out.push_str(&format!("== proxy configuration {config_name}\n{text}"));
    out
}

/// The same with the write token, the limits and the swarm's own
/// settings given: what a production of books-ms sets.
pub(crate) fn with_settings(mut config: Config) -> Config {
    config.prod.memory_mb = Some(256);
    config.prod.cpus = Some(1.5);
    config.prod.log_max_size = "20m".to_owned();
    config.verify.write_token = Some("t0k3n-of-the-test".to_owned().into());
    config.swarm.replicas = 3;
    config.swarm.app_port = 9090;
    config.swarm.update_parallelism = 2;
    config.swarm.update_delay_secs = 1;
    config.swarm.update_monitor_secs = 7;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = include_str!("testdata/books-ms-specs.txt");

    #[test]
    fn books_ms_swarm_services_and_proxy_are_byte_identical_to_before_issue_21() {
        let books_ms = crate::config::books_ms();
        let rendered = format!("{}==== with settings\n{}", specs(&books_ms), specs(&with_settings(books_ms.clone())));
        if std::env::var_os("HARNESS_WRITE_GOLDEN").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/src/deploy/swarm/testdata/books-ms-specs.txt"),
                &rendered,
            )
            .unwrap();
        }
        assert!(rendered == GOLDEN, "books-ms's swarm specs changed: its services would be updated");
    }
}
