//! The reverse proxy in front of the two colours: nginx, its configuration
//! rendered here from the harness's state, never edited by hand.
//!
//! One server on the published port routes every request to the live
//! colour. While a deploy checks a new colour before the switch, requests
//! carrying [`PREVIEW_HEADER`] with that deploy's token go to the new colour
//! instead: the checks reach it through the same proxy and port as users,
//! and nobody without the token does. A change of configuration is applied
//! with SIGHUP: nginx starts new workers with it and lets the old ones
//! finish the requests they hold, so no connection is refused.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the configuration lives in the proxy container (nginx's
/// `conf.d`, which both Debian's package and the official image include).
pub const CONFIG_DIR: &str = "/etc/nginx/conf.d";
pub const CONFIG_FILE: &str = "books-ms.conf";
/// The header that routes a request to the colour being checked.
pub const PREVIEW_HEADER: &str = "X-Books-Ms-Preview";
/// The first line of the configuration: the state it was rendered from, so
/// that the harness reads the live colour back from prod itself.
const STATE_PREFIX: &str = "# books-ms harness state: ";
/// The service's own port inside its container.
pub const APP_PORT: u16 = 8080;

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

/// The nginx configuration for `routing`, the colours' containers named by
/// `container(colour)` on the project's network, listening on `port`.
pub fn render(routing: &Routing, port: u16, container: impl Fn(Colour) -> String) -> String {
    let state = serde_json::to_string(routing).expect("a routing serialises");
    let mut out = format!("{STATE_PREFIX}{state}\n# Rendered by the harness on every deploy: edits here are lost.\n\n");
    let mut colours: Vec<Colour> = routing.live.into_iter().collect();
    if let Some(preview) = &routing.preview {
        if !colours.contains(&preview.colour) {
            colours.push(preview.colour);
        }
    }
    for colour in &colours {
        out.push_str(&format!(
            "upstream books_ms_{colour} {{\n    server {}:{APP_PORT} max_fails=0;\n    keepalive 16;\n}}\n\n",
            container(*colour)
        ));
    }
    let default = match routing.live {
        Some(live) => format!("books_ms_{live}"),
        None => "none".to_owned(),
    };
    out.push_str("map $http_x_books_ms_preview $books_ms_upstream {\n");
    out.push_str(&format!("    default {default};\n"));
    if let Some(preview) = &routing.preview {
        out.push_str(&format!("    \"{}\" books_ms_{};\n", preview.token, preview.colour));
    }
    out.push_str("}\n\n");
    out.push_str(&format!(
        "server {{\n    listen {port};\n    # Bodies up to the service's own limit; it answers 413 beyond.\n    \
         client_max_body_size 2m;\n\n    location / {{\n"
    ));
    if routing.live.is_none() {
        // Before the first switch only a preview is routed.
        out.push_str(
            "        if ($books_ms_upstream = none) {\n            \
             return 503 \"books-ms: no release is live yet\\n\";\n        }\n",
        );
    }
    out.push_str(
        "        proxy_pass http://$books_ms_upstream;\n        \
         proxy_http_version 1.1;\n        \
         proxy_set_header Connection \"\";\n        \
         proxy_set_header Host $http_host;\n        \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        \
         proxy_set_header X-Forwarded-Proto $scheme;\n        \
         proxy_set_header X-Books-Ms-Preview \"\";\n        \
         # A request is retried on the colour's next connection when the\n        \
         # one it used was closed (a keepalive connection the service ended).\n        \
         proxy_next_upstream error timeout;\n        \
         proxy_connect_timeout 3s;\n        \
         proxy_read_timeout 30s;\n    \
         }\n}\n",
    );
    out
}

/// The routing a rendered configuration was made from (its first line);
/// None for a file the harness did not write.
pub fn parse(config: &str) -> Option<Routing> {
    let state = config.lines().next()?.strip_prefix(STATE_PREFIX)?;
    serde_json::from_str(state).ok()
}

/// A tar archive holding the configuration as [`CONFIG_FILE`], to upload
/// into [`CONFIG_DIR`].
pub fn archive(config: &str) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(config.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    builder.append_data(&mut header, CONFIG_FILE, config.as_bytes())?;
    builder.into_inner()
}

/// The configuration file out of the archive a download from the proxy
/// container gives.
pub fn from_archive(archive: &[u8]) -> std::io::Result<String> {
    let mut entries = tar::Archive::new(archive);
    for entry in entries.entries()? {
        let mut entry = entry?;
        if entry.path()?.file_name().is_some_and(|n| n == CONFIG_FILE) {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text)?;
            return Ok(text);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no {CONFIG_FILE} in the archive")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(colour: Colour) -> String {
        format!("books-ms-{colour}")
    }

    #[test]
    fn the_live_colour_gets_every_request_and_the_state_reads_back() {
        let routing = Routing { live: Some(Colour::Blue), preview: None };
        let config = render(&routing, 8080, name);
        assert!(config.contains("server books-ms-blue:8080"), "{config}");
        assert!(!config.contains("books-ms-green"), "{config}");
        assert!(config.contains("default books_ms_blue;"), "{config}");
        assert!(config.contains("listen 8080;"), "{config}");
        assert!(!config.contains("return 503"), "{config}");
        assert_eq!(parse(&config), Some(routing));
    }

    #[test]
    fn a_preview_reaches_the_new_colour_only_with_its_token() {
        let routing = Routing {
            live: Some(Colour::Blue),
            preview: Some(Preview { colour: Colour::Green, token: "t0k3n".into() }),
        };
        let config = render(&routing, 8080, name);
        assert!(config.contains("server books-ms-green:8080"), "{config}");
        assert!(config.contains("default books_ms_blue;\n    \"t0k3n\" books_ms_green;"), "{config}");
        assert_eq!(parse(&config), Some(routing));
    }

    #[test]
    fn before_the_first_switch_users_get_a_503_and_the_preview_its_colour() {
        let routing = Routing { live: None, preview: Some(Preview { colour: Colour::Blue, token: "t".into() }) };
        let config = render(&routing, 8080, name);
        assert!(config.contains("default none;") && config.contains("return 503"), "{config}");
        assert!(config.contains("\"t\" books_ms_blue;"), "{config}");
    }

    #[test]
    fn a_file_the_harness_did_not_write_has_no_state() {
        assert_eq!(parse("server { listen 80; }\n"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn the_configuration_travels_in_a_tar_and_back() {
        let config = render(&Routing { live: Some(Colour::Green), preview: None }, 8080, name);
        assert_eq!(from_archive(&archive(&config).unwrap()).unwrap(), config);
        assert!(from_archive(&archive("x").unwrap()[..0]).is_err());
    }

    #[test]
    fn colours_alternate() {
        assert_eq!(Colour::Blue.other(), Colour::Green);
        assert_eq!(Colour::Green.other().other(), Colour::Green);
    }
}
