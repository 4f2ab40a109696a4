//! books-ms's containers and proxy configuration as the harness produced
//! them before services were described by their `harness.toml` (issue
//! 21), kept in `testdata/books-ms-specs.txt`: a change that alters one
//! byte of them would recreate books-ms's containers on prod at its next
//! deploy. The test renders them from the configuration books-ms ships
//! with and compares.

use bollard::models::ContainerCreateBody;

use super::proxy::{self, Preview, Routing};
use super::{containers, HostNames};
use crate::config::Config;
use crate::deploy::containers::canonical;
use crate::deploy::names::Colour;
use crate::release::Release;

/// Every create body and proxy configuration a deploy of books-ms makes,
/// as text: canonical JSON for the bodies (their spec labels included),
/// the configuration files as they are written.
pub(crate) fn specs(config: &Config) -> String {
    let names = HostNames::new("books-ms");
    let release = Release::given("10.200.0.1:5000/books-ms@sha256:abc".into(), "v2".into(), Some("r2".into()));
    let json = |body: &ContainerCreateBody| canonical(&serde_json::to_value(body).expect("a body serialises"));
    let mut out = String::new();
    for colour in Colour::BOTH {
        out.push_str(&format!("== app {colour}\n{}\n", json(&containers::app(config, &release, &names, colour))));
    }
    out.push_str(&format!("== proxy\n{}\n", json(&containers::proxy(config, &names))));
    let db = config.accessories.get("db").expect("books-ms's accessory db");
    out.push_str(&format!("== database\n{}\n", json(&containers::accessory(config, &names, "db", db))));
    let preview = |colour| Some(Preview { colour, token: "t0k3n".into() });
    for routing in [
        Routing { live: None, preview: preview(Colour::Blue) },
        Routing { live: Some(Colour::Blue), preview: None },
        Routing { live: Some(Colour::Blue), preview: preview(Colour::Green) },
        Routing { live: Some(Colour::Green), preview: None },
    ] {
        out.push_str(&format!("== proxy configuration, {routing}\n"));
        out.push_str(&proxy::render(&routing, &proxy::Backends::of(config), |colour| names.colour(colour)));
        out.push_str(&format!("== preview map, {routing}\n{}", proxy::map(&routing)));
    }
    out
}

/// The same with the write token set and the healthcheck's interval and
/// the limits given: what a production of books-ms sets.
pub(crate) fn with_settings(mut config: Config) -> Config {
    config.prod.health_interval_ms = Some(500);
    config.prod.memory_mb = Some(256);
    config.prod.cpus = Some(1.5);
    config.verify.write_token = Some("t0k3n-of-the-test".to_owned().into());
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = include_str!("testdata/books-ms-specs.txt");

    /// books-ms's configuration: its committed harness.toml.
    fn books_ms() -> Config {
        crate::config::books_ms()
    }

    #[test]
    fn books_ms_containers_and_proxy_are_byte_identical_to_before_issue_21() {
        let rendered = format!("{}==== with settings\n{}", specs(&books_ms()), specs(&with_settings(books_ms())));
        if std::env::var_os("HARNESS_WRITE_GOLDEN").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/src/deploy/host/testdata/books-ms-specs.txt"),
                &rendered,
            )
            .unwrap();
        }
        assert!(rendered == GOLDEN, "books-ms's specs changed: its containers would be recreated");
    }
}
