//! The reverse proxy in front of the two colours: HAProxy, its
//! configuration rendered here from the harness's state, never edited by
//! hand.
//!
//! Users' requests go to the backend `live`, which holds both colours as
//! servers, only the live one enabled. While a deploy checks a new colour
//! before the switch, requests carrying the preview header
//! (`prod.preview_header`, [`Backends::preview_header`]) with that
//! deploy's token go to the new colour's own backend: the checks reach it
//! through the same proxy and port as users, and nobody without the token
//! does. The proxy finds the colours by name through Docker's DNS at run
//! time (`init-addr last,none`: never at start, where a colour that is not
//! there would stall it 20 s a name), so a colour that does not run yet (or
//! any more) breaks nothing.
//!
//! A switch changes no file that HAProxy must reload: the harness writes
//! the configuration (what a restarted proxy comes up with) and applies
//! the same state to the running proxy through its runtime API
//! ([`commands`]): servers enabled and disabled, the preview map changed.
//! No connection is closed, so a client's keep-alive connection never
//! races a reload (nginx's reload closes idle ones, and a request sent at
//! that instant fails).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::deploy::haproxy::{self, APP_PORT};
pub use crate::deploy::names::Colour;

/// Where the configuration lives in the proxy container.
pub const CONFIG_DIR: &str = "/etc/haproxy";
pub const CONFIG_FILE: &str = "haproxy.cfg";
/// The preview map: `TOKEN COLOUR` lines.
pub const MAP_FILE: &str = "preview.map";
/// The first line of the configuration: the state it was rendered from, so
/// that the harness reads the live colour back from prod itself.
const STATE_PREFIX: &str = "# books-ms harness state: ";

/// What the proxy routes where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    /// Where users' requests go; none before the first deploy (503).
    pub live: Option<Colour>,
    /// The colour being checked, and the token that reaches it.
    pub preview: Option<Preview>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub colour: Colour,
    pub token: String,
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.live {
            Some(live) => write!(f, "live: {live}")?,
            None => write!(f, "live: none")?,
        }
        if let Some(preview) = &self.preview {
            write!(f, ", preview: {}", preview.colour)?;
        }
        Ok(())
    }
}

/// What the configuration says of the service: its frontend's name (the
/// project's, `-` as `_`), the port the app listens on in its containers,
/// and the header that reaches the preview (`prod.preview_header`).
pub struct Backends {
    pub frontend: String,
    pub app_port: u16,
    pub preview_header: String,
}

impl Backends {
    pub fn of(config: &crate::config::Config) -> Self {
        Backends {
            frontend: config.project().replace('-', "_"),
            app_port: config.app.port,
            preview_header: config.prod.preview_header.clone(),
        }
    }
}

/// HAProxy's configuration for `routing`, the colours' containers named by
/// `container(colour)` on the project's network, listening on
/// `backends.app_port`. The proxy itself listens on [`APP_PORT`] in its
/// container (published on `prod.app_port`).
pub fn render(routing: &Routing, backends: &Backends, container: impl Fn(Colour) -> String) -> String {
    let state = serde_json::to_string(routing).expect("a routing serialises");
    let header = format!("{STATE_PREFIX}{state}\n# Rendered by the harness on every deploy: edits here are lost.");
    let tuning = haproxy::Tuning {
        why: &[
            "A request whose connection to a colour failed is sent again, to",
            "the same colour (the only one enabled).",
        ],
        connect: "3s",
        client: "60s",
        server: "60s",
        check: None,
        retries: 2,
        redispatch: None,
        retry_on: None,
    };
    let mut out = haproxy::preamble(&header, &tuning);
    out.push_str(&format!(
        "resolvers docker\n    \
         nameserver dns 127.0.0.11:53\n    \
         hold valid 1s\n    \
         hold nx 1s\n    \
         hold obsolete 1s\n\n\
         frontend {frontend}\n    \
         bind :{APP_PORT}\n    \
         http-request set-var(txn.preview) req.hdr({header}),map({CONFIG_DIR}/{MAP_FILE})\n    \
         http-request del-header {header}\n    \
         use_backend %[var(txn.preview)] if {{ var(txn.preview) -m found }}\n",
        header = backends.preview_header.to_lowercase(),
        frontend = backends.frontend,
    ));
    out.push_str(&haproxy::write_safety(false));
    out.push_str("    default_backend live\n\n");
    let server = |colour: Colour, enabled: bool| {
        let disabled = if enabled { "" } else { " disabled" };
        let port = backends.app_port;
        format!("    server {colour} {}:{port} resolvers docker init-addr last,none{disabled}\n", container(colour))
    };
    out.push_str("# Users' requests: the live colour only. None live: 503.\nbackend live\n");
    for colour in Colour::BOTH {
        out.push_str(&server(colour, routing.live == Some(colour)));
    }
    for colour in Colour::BOTH {
        out.push_str(&format!("\n# The preview of {colour}.\nbackend {colour}\n"));
        out.push_str(&server(colour, true));
    }
    out
}

/// The preview map for `routing`.
pub fn map(routing: &Routing) -> String {
    match &routing.preview {
        Some(preview) => format!("{} {}\n", preview.token, preview.colour),
        None => String::new(),
    }
}

/// The runtime API's commands that give the running proxy the state of
/// `routing`, whatever state it had: the map, then the live servers (the
/// new one enabled before the old one drains, so that some server always
/// takes new requests).
pub fn commands(routing: &Routing) -> Vec<String> {
    let map = format!("{CONFIG_DIR}/{MAP_FILE}");
    let mut commands = vec![format!("clear map {map}")];
    if let Some(preview) = &routing.preview {
        commands.push(format!("add map {map} {} {}", preview.token, preview.colour));
    }
    match routing.live {
        Some(live) => {
            commands.push(format!("set server live/{live} state ready"));
            commands.push(format!("set server live/{} state drain", live.other()));
        }
        None => {
            for colour in Colour::BOTH {
                commands.push(format!("set server live/{colour} state maint"));
            }
        }
    }
    commands
}

/// The command line (for `docker exec`) that sends `commands` (separated
/// by `;`) to the runtime API and prints its answer. The commands travel as
/// an argument, never through the shell's parser.
pub fn runtime_api(commands: &str) -> Vec<&str> {
    vec!["sh", "-c", RUNTIME_API_SCRIPT, commands]
}

const RUNTIME_API_SCRIPT: &str = "printf '%s\\n' \"$0\" | socat -t 5 stdio unix-connect:/run/haproxy/admin.sock";

/// The runtime API's command whose answer [`held`] reads: the statistics
/// of the users' backend, as CSV.
pub const STAT_COMMAND: &str = "show stat live 4 -1";

/// The requests the proxy holds on `colour` in the users' backend (its
/// current sessions plus its queue), from the answer to [`STAT_COMMAND`];
/// None when the answer is not what HAProxy prints.
pub fn held(answer: &str, colour: Colour) -> Option<u64> {
    let rows = stat_rows(answer, "live")?;
    let row = rows.iter().find(|row| row.get("svname") == Some(&colour.name()))?;
    let count = |column: &str| match *row.get(column)? {
        "" => Some(0),
        field => field.parse::<u64>().ok(),
    };
    Some(count("qcur")? + count("scur")?)
}

/// The servers' rows of `backend` in the answer to [`STAT_COMMAND`] (CSV,
/// its `# pxname,...` header first), each field by its column's name; the
/// backend's and frontends' own rows left out. None when the answer is not
/// that.
pub fn stat_rows<'a>(answer: &'a str, backend: &str) -> Option<Vec<HashMap<&'a str, &'a str>>> {
    let mut lines = answer.lines();
    let header: Vec<&str> = lines.next()?.strip_prefix("# pxname,").map(|rest| rest.split(','))?.collect();
    let header: Vec<&str> = std::iter::once("pxname").chain(header).collect();
    let rows = lines.map(|line| header.iter().copied().zip(line.split(',')).collect::<HashMap<_, _>>());
    let servers = rows.filter(|row| {
        row.get("pxname") == Some(&backend) && !matches!(row.get("svname"), Some(&"BACKEND" | &"FRONTEND") | None)
    });
    Some(servers.collect())
}

/// The commands whose answers [`from_runtime`] reads.
pub fn state_commands() -> String {
    format!("show servers state live; show map {CONFIG_DIR}/{MAP_FILE}")
}

/// The routing of a running proxy, from the answers to [`state_commands`]:
/// the live server is the one neither in maintenance nor draining (admin
/// state bits 0x01, 0x02, 0x08, 0x10; 0x04 is only "disabled in the file",
/// which a runtime `ready` does not clear); the preview, the map's entry.
/// None when the answer is not what HAProxy prints.
pub fn from_runtime(answer: &str) -> Option<Routing> {
    let mut live = None;
    let mut servers = 0;
    let mut preview = None;
    for line in answer.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `BE_ID live SRV_ID NAME ADDR OP_STATE ADMIN_STATE ...`
        if fields.len() > 6 && fields[1] == "live" && fields[0].parse::<u32>().is_ok() {
            servers += 1;
            let colour = Colour::BOTH.into_iter().find(|c| c.name() == fields[3])?;
            let admin: u32 = fields[6].parse().ok()?;
            if admin & 0x1B == 0 {
                live = Some(colour);
            }
        }
        // `0xADDRESS TOKEN COLOUR`
        if fields.len() == 3 && fields[0].starts_with("0x") {
            let colour = Colour::BOTH.into_iter().find(|c| c.name() == fields[2])?;
            preview = Some(Preview { colour, token: fields[1].to_owned() });
        }
    }
    (servers == 2).then_some(Routing { live, preview })
}

/// The routing a rendered configuration was made from (its first line);
/// None for a file the harness did not write.
pub fn parse(config: &str) -> Option<Routing> {
    let state = config.lines().next()?.strip_prefix(STATE_PREFIX)?;
    serde_json::from_str(state).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(colour: Colour) -> String {
        format!("books-ms-{colour}")
    }

    fn books() -> Backends {
        Backends { frontend: "books_ms".into(), app_port: 8080, preview_header: "X-Books-Ms-Preview".into() }
    }

    #[test]
    fn the_backends_are_the_apps_port_and_the_frontend_the_services_name() {
        let routing = Routing { live: Some(Colour::Green), preview: None };
        let hello = |colour: Colour| format!("hello-{colour}");
        let backends =
            Backends { frontend: "hello".into(), app_port: 5000, preview_header: "X-Harness-Preview".into() };
        let config = render(&routing, &backends, hello);
        assert!(config.contains("frontend hello\n    bind :8080\n"), "{config}");
        assert!(config.contains("req.hdr(x-harness-preview),map(") && !config.contains("books-ms-preview"), "{config}");
        assert!(
            config.contains("    server green hello-green:5000 resolvers docker init-addr last,none\n"),
            "{config}"
        );
        assert!(!config.contains(":8080 resolvers"), "{config}");
    }

    #[test]
    fn the_requests_held_on_a_colour_are_read_from_haproxys_statistics() {
        let answer = "# pxname,svname,qcur,qmax,scur,smax,slim\n\
                      live,blue,0,0,3,9,\n\
                      live,green,1,1,0,4,\n";
        assert_eq!(held(answer, Colour::Blue), Some(3));
        assert_eq!(held(answer, Colour::Green), Some(1));
        let idle = "# pxname,svname,qcur,qmax,scur\nlive,blue,,0,0\n";
        assert_eq!(held(idle, Colour::Blue), Some(0), "an empty queue field is none");
        assert_eq!(held(idle, Colour::Green), None, "a server it does not list");
        assert_eq!(held("Unknown command.\n", Colour::Blue), None);
        assert_eq!(held("", Colour::Blue), None);
    }

    fn preview(colour: Colour) -> Option<Preview> {
        Some(Preview { colour, token: "t0k3n".into() })
    }

    #[test]
    fn users_reach_the_live_colour_only_and_the_state_reads_back() {
        let routing = Routing { live: Some(Colour::Blue), preview: None };
        let config = render(&routing, &books(), name);
        assert!(config.contains("backend live\n    server blue books-ms-blue:8080 resolvers docker init-addr last,none\n    server green books-ms-green:8080 resolvers docker init-addr last,none disabled\n"), "{config}");
        assert!(config.contains("bind :8080"), "{config}");
        assert_eq!(parse(&config), Some(routing.clone()));
        assert_eq!(map(&routing), "");
    }

    #[test]
    fn before_the_first_switch_no_server_of_live_is_enabled() {
        let routing = Routing { live: None, preview: preview(Colour::Blue) };
        let config = render(&routing, &books(), name);
        let live = &config[config.find("backend live").unwrap()..config.find("backend blue").unwrap()];
        assert_eq!(live.matches(" disabled").count(), 2, "{live}");
        assert_eq!(map(&routing), "t0k3n blue\n");
    }

    #[test]
    fn the_preview_header_is_mapped_then_removed_before_the_service_sees_it() {
        let config = render(&Routing { live: Some(Colour::Blue), preview: preview(Colour::Green) }, &books(), name);
        let set =
            config.find("set-var(txn.preview) req.hdr(x-books-ms-preview),map(/etc/haproxy/preview.map)").unwrap();
        let del = config.find("del-header x-books-ms-preview").unwrap();
        assert!(set < del, "{config}");
        assert!(config.contains("backend green\n    server green books-ms-green:8080"), "{config}");
    }

    #[test]
    fn the_runtime_commands_enable_the_new_colour_before_the_old_one_drains() {
        let routing = Routing { live: Some(Colour::Green), preview: None };
        assert_eq!(
            commands(&routing),
            [
                "clear map /etc/haproxy/preview.map",
                "set server live/green state ready",
                "set server live/blue state drain",
            ]
        );
        let routing = Routing { live: Some(Colour::Blue), preview: preview(Colour::Green) };
        assert_eq!(commands(&routing)[1], "add map /etc/haproxy/preview.map t0k3n green");
        let none = commands(&Routing { live: None, preview: None });
        assert_eq!(none[1..], ["set server live/blue state maint", "set server live/green state maint"]);
    }

    #[test]
    fn the_running_proxys_routing_is_read_from_its_runtime_api() {
        let answer = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...\n\
                      3 live 1 blue 172.18.0.2 2 12 1 1 0 1 0 0 8 0 0 0 books-ms-blue 8080 - 0 0 - - 0\n\
                      3 live 2 green 172.18.0.4 2 4 1 1 0 1 0 0 0 0 0 0 books-ms-green 8080 - 0 0 - - 0\n\
                      \n0x555be992b6f0 t0k3n blue\n";
        let routing = from_runtime(answer).unwrap();
        assert_eq!(routing, Routing { live: Some(Colour::Green), preview: preview(Colour::Blue) });
        let none = "3 live 1 blue - 0 5 1\n3 live 2 green - 0 37 1\n";
        assert_eq!(from_runtime(none), Some(Routing { live: None, preview: None }));
        assert_eq!(from_runtime("Unknown command.\n"), None);
        assert!(runtime_api("show info")[2].contains("socat") && runtime_api("show info")[3] == "show info");
    }

    #[test]
    fn a_file_the_harness_did_not_write_has_no_state() {
        assert_eq!(parse("global\n"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn colours_alternate() {
        assert_eq!(Colour::Blue.other(), Colour::Green);
        assert_eq!(Colour::Green.other().other(), Colour::Green);
    }
}
