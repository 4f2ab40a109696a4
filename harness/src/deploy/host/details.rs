//! `harness details` on a single host: both colours' containers, the
//! proxy (its container, which colour it serves and each server's state
//! from HAProxy's runtime API), the database, the lock and the last
//! deploys. Reads only.

use bollard::models::ContainerInspectResponse;

use super::observe;
use super::proxy;
use super::HostNames;
use crate::config::Config;
use crate::deploy::details::{digest_in, Details, Live, Proxy, Server, Unit};
use crate::deploy::names::*;
use crate::engine::Engine;

pub async fn details(prod: &Engine, config: &Config) -> anyhow::Result<Details> {
    let names = HostNames::new(config.project());
    let observed = observe::observe(prod, &names, config.accessories.keys().map(String::as_str)).await?;
    let routing = observed.proxy.as_ref().and_then(|p| p.routing.clone());
    let live = match observed.live() {
        Some(colour) => observe::release_of(prod, &names.colour(colour))
            .await?
            .map(|release| Live { colour: Some(colour), release }),
        None => None,
    };
    let mut app = Vec::new();
    for colour in Colour::BOTH {
        app.extend(unit(prod, &names.colour(colour)).await?);
    }
    let servers = match observed.proxy.as_ref().is_some_and(|p| p.container.running) {
        // The users' backend's servers; an answer HAProxy did not give
        // (the exec failed) leaves them out rather than failing the read.
        true => match prod.exec(&names.proxy, &proxy::runtime_api(proxy::STAT_COMMAND)).await {
            Ok(Some((0, answer))) => servers_from_stat(&answer, "live"),
            _ => Vec::new(),
        },
        false => Vec::new(),
    };
    let (lock, history) = crate::deploy::history::lock_and_last_entries(prod, config).await?;
    Ok(Details {
        target: config.prod.kind,
        engine: config.prod.docker_host.clone(),
        url: config.prod_url()?,
        live,
        app,
        proxy: Proxy {
            units: unit(prod, &names.proxy).await?.into_iter().collect(),
            serves: observed.live(),
            preview: routing.and_then(|r| r.preview).map(|p| p.colour),
            servers,
        },
        accessories: unit(prod, &names.db).await?.into_iter().collect(),
        lock,
        history,
        traffic: None,
    })
}

/// The container `name`, if there is one.
async fn unit(prod: &Engine, name: &str) -> anyhow::Result<Option<Unit>> {
    let Some(inspected) = prod.inspect_container(name).await? else { return Ok(None) };
    let mut unit = from_inspect(name, inspected);
    if unit.digest.is_none() {
        // An image by tag (the database's, the proxy's): the digest prod
        // pulled it by.
        let image = unit.image.clone();
        let found =
            crate::engine::found(prod.call(format!("for the image {image}"), prod.docker.inspect_image(&image)).await)?;
        unit.digest = found.and_then(|i| i.repo_digests?.iter().find_map(|d| digest_in(d)));
    }
    Ok(Some(unit))
}

/// A container as `details` shows it, from its inspection: the release's
/// labels where a deploy set them, else the image's own.
fn from_inspect(name: &str, inspected: ContainerInspectResponse) -> Unit {
    let labels = inspected.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
    let label = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
    let image = label(IMAGE_LABEL).or_else(|| inspected.config.as_ref()?.image.clone()).unwrap_or_default();
    let state = inspected.state.unwrap_or_default();
    Unit {
        name: name.to_owned(),
        role: label(ROLE_LABEL).unwrap_or_default(),
        digest: digest_in(&image),
        image,
        version: label(VERSION_LABEL).or_else(|| label(IMAGE_VERSION_LABEL)),
        revision: label(REVISION_LABEL).or_else(|| label(IMAGE_REVISION_LABEL)),
        colour: Colour::BOTH.into_iter().find(|c| label(COLOUR_LABEL).as_deref() == Some(c.name())),
        node: None,
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        health: state.health.and_then(|h| h.status).map(|s| s.to_string()),
        started: state.started_at.filter(|s| !s.starts_with("0001-")),
        restarts: inspected.restart_count,
    }
}

/// The servers of backend `backend` in the answer to HAProxy's `show
/// stat`; empty when the answer is not that.
fn servers_from_stat(answer: &str, backend: &str) -> Vec<Server> {
    let rows = proxy::stat_rows(answer, backend).unwrap_or_default();
    let rows = rows.iter().filter(|row| row.contains_key("status"));
    rows.map(|row| {
        let number = |column: &str| row.get(column)?.parse().ok();
        Server {
            name: row["svname"].to_owned(),
            status: row["status"].to_owned(),
            sessions: number("scur"),
            total: number("stot"),
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_backends_servers_are_read_from_haproxys_statistics() {
        let answer =
            "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n\
                      books_ms,FRONTEND,,,1,3,,40,,,,,,,,,,OPEN\n\
                      live,blue,0,0,1,2,,37,,,,,,,,,,UP\n\
                      live,green,0,0,0,1,,3,,,,,,,,,,MAINT\n\
                      live,BACKEND,0,0,1,2,,40,,,,,,,,,,UP\n\
                      blue,blue,0,0,0,1,,0,,,,,,,,,,UP\n";
        assert_eq!(
            servers_from_stat(answer, "live"),
            [
                Server { name: "blue".into(), status: "UP".into(), sessions: Some(1), total: Some(37) },
                Server { name: "green".into(), status: "MAINT".into(), sessions: Some(0), total: Some(3) },
            ]
        );
        assert!(servers_from_stat("Unknown command.\n", "live").is_empty());
        assert!(servers_from_stat("", "live").is_empty());
    }

    #[test]
    fn a_colours_container_shows_its_release_colour_state_and_health() {
        let inspected: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Name": "/books-ms-blue",
            "RestartCount": 2,
            "Config": {
                "Image": "r/books-ms@sha256:ab12",
                "Labels": {
                    "org.books-ms.role": "app",
                    "org.books-ms.colour": "blue",
                    "org.books-ms.version": "v1",
                    "org.books-ms.revision": "",
                    "org.opencontainers.image.revision": "abc1234",
                    "org.books-ms.image": "r/books-ms@sha256:ab12"
                }
            },
            "State": { "Status": "running", "StartedAt": "2026-01-01T00:00:00Z", "Health": { "Status": "healthy" } }
        }))
        .unwrap();
        let unit = from_inspect("books-ms-blue", inspected);
        assert_eq!(
            (unit.colour, unit.role.as_str(), unit.digest.as_deref()),
            (Some(Colour::Blue), "app", Some("sha256:ab12"))
        );
        assert_eq!((unit.version.as_deref(), unit.revision.as_deref()), (Some("v1"), Some("abc1234")));
        assert_eq!((unit.state.as_str(), unit.health.as_deref(), unit.restarts), ("running", Some("healthy"), Some(2)));
        let never: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Config": { "Image": "books-lab/haproxy:1" },
            "State": { "Status": "created", "StartedAt": "0001-01-01T00:00:00Z" }
        }))
        .unwrap();
        let unit = from_inspect("books-ms-proxy", never);
        assert_eq!((unit.colour, unit.digest, unit.started, unit.health), (None, None, None, None));
        assert_eq!(unit.image, "books-lab/haproxy:1");
    }
}
