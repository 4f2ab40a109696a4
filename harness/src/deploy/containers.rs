//! What every target keeps as a container on the engine a deploy talks
//! to (the lock's is in [`super::lock`]), and the canonical JSON both
//! targets' spec fingerprints are computed on.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};

use super::names::{Names, PROJECT_LABEL, ROLE_LABEL};
use crate::config::Config;

/// A listed container's name, as the engine lists it (`names`, the first
/// without its leading `/`); empty when it has none.
pub fn listed_name(names: Option<Vec<String>>) -> String {
    names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_default()
}

/// The image of the containers every target keeps and never starts (the
/// history, the lock of `harness prune` and of a removal with nothing
/// live): the proxy's, which every target runs (a service may have no
/// database). A history made before of another image is found by its
/// name and kept as it is.
pub fn kept_image(config: &Config) -> &str {
    &config.prod.proxy_image
}

/// The history: a container never started, its volume of the same name
/// (see [`super::history`]), of [`kept_image`].
pub fn history(config: &Config, names: &Names) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(kept_image(config).to_owned()),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_owned(), config.project().to_owned()),
            (ROLE_LABEL.to_owned(), "history".to_owned()),
        ])),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:{}", names.history, super::history::DIR)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// JSON text with every object's keys in order. serde_json's maps are
/// sorted only without its `preserve_order` feature, which another crate
/// of a build can turn on (mongodb's bson does, in `cargo build
/// --workspace`); then a HashMap's keys come in a new order in every
/// process, and so would a fingerprint.
pub(crate) fn canonical(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: std::collections::BTreeMap<&String, String> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            let fields: Vec<String> =
                sorted.into_iter().map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k.clone()))).collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_text_of_json_does_not_depend_on_the_order_of_its_keys() {
        let one: serde_json::Value =
            serde_json::from_str(r#"{"b": {"y": 1, "x": [2, {"q": 1, "p": 2}]}, "a": "s"}"#).unwrap();
        let other: serde_json::Value =
            serde_json::from_str(r#"{"a": "s", "b": {"x": [2, {"p": 2, "q": 1}], "y": 1}}"#).unwrap();
        assert_eq!(canonical(&one), canonical(&other));
        assert_eq!(canonical(&one), r#"{"a":"s","b":{"x":[2,{"p":2,"q":1}],"y":1}}"#);
    }
}
