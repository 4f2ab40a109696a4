//! `harness logs` on a single host: the colours' containers that run,
//! each marked with its colour, or the database's container.

use futures_util::StreamExt;

use super::HostNames;
use crate::deploy::logs::{LogRequest, Of, Source};
use crate::deploy::names::Colour;
use crate::engine::Engine;

/// The sources `request` names on prod, read from now on.
pub async fn sources(prod: &Engine, names: &HostNames, request: &LogRequest) -> anyhow::Result<Vec<Source>> {
    let options = request.api_options(time::OffsetDateTime::now_utc());
    let source = |mark: &str, container: &str| Source {
        mark: mark.to_owned(),
        stream: prod.docker.logs(container, Some(options.clone())).boxed(),
    };
    match request.of {
        Of::Db => {
            if prod.inspect_container(&names.db).await?.is_none() {
                anyhow::bail!("there is no {} on prod: deploy a release first", names.db);
            }
            Ok(vec![source("db", &names.db)])
        }
        Of::App => {
            let mut sources = Vec::new();
            for colour in Colour::BOTH {
                let name = names.colour(colour);
                let running = prod.inspect_container(&name).await?.and_then(|c| c.state?.running) == Some(true);
                if running {
                    sources.push(source(colour.name(), &name));
                }
            }
            if sources.is_empty() {
                anyhow::bail!(
                    "neither {} nor {} runs on prod: `harness status` shows what is there",
                    names.colour(Colour::Blue),
                    names.colour(Colour::Green)
                );
            }
            Ok(sources)
        }
    }
}
