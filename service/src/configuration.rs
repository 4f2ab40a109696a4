//! Typed settings read from the environment.
//!
//! Compatible with the original service (`DB_HOST`, `DB_PORT_27017_TCP_ADDR`,
//! `DB_DBNAME`, `DB_COLLECTION`) and with what legacy docker links set
//! (`DB_PORT=tcp://ADDR:PORT`, `DB_PORT_27017_TCP_PORT`). There is one source
//! (the environment) and no layering, so no configuration crate: a lookup
//! function keeps the parsing testable without touching the process env.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub database: DatabaseSettings,
    pub static_dir: PathBuf,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Deadlines and limits against slow and hostile clients.
    pub http: HttpSettings,
    /// Who may write, and which pages may call the API.
    pub access: AccessSettings,
}

/// Who may write (`WRITE_TOKEN`, `WRITE_TOKEN_FILE`) and which origins CORS
/// allows (`CORS_ORIGINS`). The default is the original's: anyone who
/// reaches the port writes, and pages on any origin may call the API.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// The token PUT, POST and DELETE must carry as `Authorization: Bearer`;
    /// `None`: writes are open.
    pub write_token: Option<SecretString>,
    pub cors_origins: CorsOrigins,
}

/// The origins whose pages may read the API's answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*`: any origin (the original's behaviour).
    #[default]
    Any,
    /// Only these, as `scheme://host[:port]`, lower case.
    Listed(Vec<String>),
}

/// How long a client may take to send a request, and how many connections
/// the service holds (see README.md, "Slow and hostile clients").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Time from a connection's first byte to the end of its request's
    /// headers (`HTTP_HEADER_TIMEOUT_MS`); past it: 408 and the connection closed.
    pub header_timeout: Duration,
    /// Time to receive a whole request body once its headers arrived
    /// (`HTTP_BODY_TIMEOUT_MS`); past it: 408 with the JSON error body.
    pub body_timeout: Duration,
    /// How long an idle connection stays open between requests
    /// (`HTTP_KEEP_ALIVE_SECS`; 0 closes each connection after one response).
    pub keep_alive: Duration,
    /// Connections held at once, per worker thread (`HTTP_MAX_CONNECTIONS`);
    /// past it the service stops accepting until one closes.
    pub max_connections: usize,
    /// Connections the kernel queues before the service accepts them (`HTTP_BACKLOG`).
    pub backlog: u32,
    /// How long a response may wait for a client that takes nothing of it
    /// (`HTTP_SEND_TIMEOUT_MS`): past it the connection is cut, so that
    /// stalled readers cannot pile up to `max_connections`.
    pub send_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            // actix-web's own default: 5 s is ample for a few hundred bytes of headers.
            header_timeout: Duration::from_secs(5),
            // 256 KiB (the body limit) in 10 s is 26 KB/s, slower than any client we serve.
            body_timeout: Duration::from_secs(10),
            // actix-web's default. actix applies the header deadline to a
            // connection's first request only: on a kept-alive connection a
            // client can trickle its next request's headers (README.md says
            // what bounds that; 0 here closes the gap at the cost of a
            // connection per request).
            keep_alive: Duration::from_secs(5),
            // Per worker (one per core): enough for any real load on this
            // service, and it bounds what a flood of held connections costs
            // (a few KiB each: measured in docs/reliability.md).
            max_connections: 4096,
            // actix-web's default (std's bind would give 128).
            backlog: 1024,
            // A client that takes not one byte of its response for 30 s has
            // stalled (a slow phone still takes some every few seconds); at
            // most this long does it hold a connection and a cursor's batch.
            send_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// A `mongodb://` URI; may hold credentials, so it never prints.
    pub uri: SecretString,
    pub database_name: String,
    pub collection: String,
    /// Bounds server selection and connecting, so that a database that is
    /// down turns into a 503 in about this time, not the driver's 30 s.
    pub timeout: Duration,
    /// Journaled write concern (`DB_JOURNAL`); `None` keeps the URI's choice
    /// or, when the URI has none, the default (journaled, majority).
    pub journal: Option<bool>,
    /// `w` of the write concern (`DB_W`: `majority` or a number).
    pub w: Option<WriteAck>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteAck {
    Majority,
    Nodes(u32),
}

/// A configuration problem: which variable, and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self { variable, problem: problem.into() }
    }
}

pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";
/// How long SIGTERM waits for requests in flight, unless configured.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_DB_PORT: u16 = 27017;

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads settings through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| lookup(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let listen_addr = parse_listen_addr(get("LISTEN_ADDR").as_deref().unwrap_or(DEFAULT_LISTEN_ADDR))?;
        let uri = match get("MONGODB_URI") {
            Some(uri) => parse_uri(uri)?,
            None => uri_from_host_and_port(&get)?,
        };
        let database_name = get("DB_DBNAME").unwrap_or_else(|| "books".to_owned());
        check_database_name(&database_name)?;
        let collection = get("DB_COLLECTION").unwrap_or_else(|| "books".to_owned());
        check_collection_name(&collection)?;
        let timeout = match get("DB_TIMEOUT_MS") {
            Some(v) => parse_millis("DB_TIMEOUT_MS", &v)?,
            None => Duration::from_secs(2),
        };
        let journal = get("DB_JOURNAL").map(|v| parse_bool("DB_JOURNAL", &v)).transpose()?;
        let w = get("DB_W").map(|v| parse_w(&v)).transpose()?;
        let static_dir = PathBuf::from(get("STATIC_DIR").unwrap_or_else(|| "client".to_owned()));
        let shutdown_timeout = match get("SHUTDOWN_TIMEOUT_SECS") {
            Some(v) => Duration::from_secs(v.parse::<u64>().ok().filter(|s| *s <= 3600).ok_or_else(|| {
                ConfigError::new("SHUTDOWN_TIMEOUT_SECS", format!("`{v}` is not a number of seconds from 0 to 3600"))
            })?),
            None => DEFAULT_SHUTDOWN_TIMEOUT,
        };

        let http = parse_http(&get)?;
        let access = AccessSettings {
            write_token: write_token(&lookup, |path| std::fs::read_to_string(path))?,
            cors_origins: get("CORS_ORIGINS").map(|v| parse_origins(&v)).transpose()?.unwrap_or_default(),
        };

        Ok(Settings {
            listen_addr,
            database: DatabaseSettings { uri, database_name, collection, timeout, journal, w },
            static_dir,
            shutdown_timeout,
            http,
            access,
        })
    }
}

impl DatabaseSettings {
    /// The URI's host part for logs, credentials removed.
    pub fn redacted_uri(&self) -> String {
        let uri = self.uri.expose_secret();
        match (uri.find("://"), uri.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}://***@{}", &uri[..scheme_end], &uri[at + 1..])
            }
            _ => uri.to_owned(),
        }
    }
}

fn parse_http(get: &impl Fn(&str) -> Option<String>) -> Result<HttpSettings, ConfigError> {
    let defaults = HttpSettings::default();
    let millis = |variable: &'static str, default: Duration| match get(variable) {
        Some(v) => parse_millis(variable, &v),
        None => Ok(default),
    };
    let count = |variable: &'static str, default: u64, max: u64| match get(variable) {
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ConfigError::new(variable, format!("`{v}` is not a whole number from 1 to {max}"))),
        None => Ok(default),
    };
    let keep_alive = match get("HTTP_KEEP_ALIVE_SECS") {
        Some(v) => Duration::from_secs(v.parse::<u64>().ok().filter(|s| *s <= 3600).ok_or_else(|| {
            ConfigError::new("HTTP_KEEP_ALIVE_SECS", format!("`{v}` is not a number of seconds from 0 to 3600"))
        })?),
        None => defaults.keep_alive,
    };
    Ok(HttpSettings {
        header_timeout: millis("HTTP_HEADER_TIMEOUT_MS", defaults.header_timeout)?,
        body_timeout: millis("HTTP_BODY_TIMEOUT_MS", defaults.body_timeout)?,
        keep_alive,
        max_connections: count("HTTP_MAX_CONNECTIONS", defaults.max_connections as u64, 1_000_000)? as usize,
        backlog: count("HTTP_BACKLOG", u64::from(defaults.backlog), 65_535)? as u32,
        send_timeout: millis("HTTP_SEND_TIMEOUT_MS", defaults.send_timeout)?,
    })
}

/// `WRITE_TOKEN`, or the contents of the file `WRITE_TOKEN_FILE` names (a
/// secret mounted as a file stays out of `docker inspect`). Unlike other
/// variables, a set but empty one is an error, not "unset": a deployment that
/// meant to close writes and passed an empty value must not run open.
fn write_token(
    lookup: &impl Fn(&str) -> Option<String>,
    read: impl Fn(&str) -> std::io::Result<String>,
) -> Result<Option<SecretString>, ConfigError> {
    let token = match (lookup("WRITE_TOKEN"), lookup("WRITE_TOKEN_FILE")) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "WRITE_TOKEN",
                "WRITE_TOKEN and WRITE_TOKEN_FILE are both set; set one of them",
            ))
        }
        (Some(token), None) => check_token("WRITE_TOKEN", token.trim())?,
        (None, Some(path)) => {
            let path = path.trim();
            if path.is_empty() {
                return Err(ConfigError::new("WRITE_TOKEN_FILE", "is empty; set it to the path of the token's file"));
            }
            let contents =
                read(path).map_err(|e| ConfigError::new("WRITE_TOKEN_FILE", format!("cannot read `{path}`: {e}")))?;
            // A file written by `echo` ends with a newline, not part of the token.
            check_token("WRITE_TOKEN_FILE", contents.trim())
                .map_err(|e| ConfigError::new(e.variable, format!("`{path}`: {}", e.problem)))?
        }
    };
    Ok(Some(token))
}

/// A token a client can send in a header: visible ASCII, no spaces (RFC 6750's
/// `b64token` and more). Never echoed.
fn check_token(variable: &'static str, token: &str) -> Result<SecretString, ConfigError> {
    if token.is_empty() {
        return Err(ConfigError::new(variable, "the write token is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(variable, "the write token must be visible ASCII characters, without spaces"));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// `*`, or a comma-separated list of origins (`https://books.example.com,
/// http://localhost:8080`): scheme, host and port, no path.
fn parse_origins(value: &str) -> Result<CorsOrigins, ConfigError> {
    if value == "*" {
        return Ok(CorsOrigins::Any);
    }
    let mut origins = Vec::new();
    for origin in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let bad = |why: &str| ConfigError::new("CORS_ORIGINS", format!("`{origin}` {why}"));
        if origin == "*" {
            return Err(bad("cannot be mixed with listed origins: set `*` alone, or only origins"));
        }
        let (scheme, host) =
            origin.split_once("://").ok_or_else(|| bad("is not an origin such as https://host:port"))?;
        if !matches!(scheme, "http" | "https") || host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad("is not an origin such as https://host:port (http or https, no path, no trailing /)"));
        }
        origins.push(origin.to_ascii_lowercase());
    }
    if origins.is_empty() {
        return Err(ConfigError::new("CORS_ORIGINS", "lists no origin; set `*` or origins separated by commas"));
    }
    Ok(CorsOrigins::Listed(origins))
}

fn parse_listen_addr(value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::new(
            "LISTEN_ADDR",
            format!("`{value}` is not an IP address and port such as 0.0.0.0:8080 or [::]:0"),
        )
    })
}

fn parse_uri(uri: String) -> Result<SecretString, ConfigError> {
    if uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://") {
        Ok(SecretString::from(uri))
    } else {
        // Never echo the value: it may hold a password.
        Err(ConfigError::new("MONGODB_URI", "must start with mongodb:// or mongodb+srv://"))
    }
}

/// The original's variables: the host from the docker link or `DB_HOST`, the
/// port from the link's variables (`DB_PORT` may be `tcp://ADDR:PORT`).
fn uri_from_host_and_port(get: &impl Fn(&str) -> Option<String>) -> Result<SecretString, ConfigError> {
    let mut host = get("DB_PORT_27017_TCP_ADDR").or_else(|| get("DB_HOST"));
    let mut port = None;
    for variable in ["DB_PORT_27017_TCP_PORT", "DB_PORT", "DB_PORT_27017_PORT"] {
        let Some(value) = get(variable) else { continue };
        let (link_host, link_port) = parse_port(variable, &value)?;
        if host.is_none() {
            host = link_host;
        }
        port = Some(link_port);
        break;
    }
    let host = host.unwrap_or_else(|| "localhost".to_owned());
    if host.contains(['/', '@', '?', '#', ' ']) {
        return Err(ConfigError::new("DB_HOST", format!("`{host}` is not a host name or IP address")));
    }
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
    Ok(SecretString::from(format!("mongodb://{host}:{}", port.unwrap_or(DEFAULT_DB_PORT))))
}

/// `27017` or docker's link form `tcp://172.17.0.2:27017`.
fn parse_port(variable: &'static str, value: &str) -> Result<(Option<String>, u16), ConfigError> {
    let bad = || ConfigError::new(variable, format!("`{value}` is not a port (1-65535) or tcp://HOST:PORT"));
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
    match value.strip_prefix("tcp://") {
        Some(rest) => {
            let (host, p) = rest.rsplit_once(':').ok_or_else(bad)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad());
            }
            Ok((Some(host.to_owned()), port(p)?))
        }
        None => Ok((None, port(value)?)),
    }
}

fn check_database_name(name: &str) -> Result<(), ConfigError> {
    if name.len() > 63 || name.contains(['/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0']) {
        return Err(ConfigError::new(
            "DB_DBNAME",
            format!("`{name}` is not a valid database name (at most 63 characters, none of /\\. \"$*<>:|?)"),
        ));
    }
    Ok(())
}

fn check_collection_name(name: &str) -> Result<(), ConfigError> {
    if name.contains(['$', '\0']) || name.starts_with("system.") || name.len() > 120 {
        return Err(ConfigError::new(
            "DB_COLLECTION",
            format!("`{name}` is not a valid collection name (no `$`, not `system.*`, at most 120 characters)"),
        ));
    }
    Ok(())
}

fn parse_millis(variable: &'static str, value: &str) -> Result<Duration, ConfigError> {
    value.parse::<u64>().ok().filter(|ms| (1..=600_000).contains(ms)).map(Duration::from_millis).ok_or_else(|| {
        ConfigError::new(variable, format!("`{value}` is not a number of milliseconds from 1 to 600000"))
    })
}

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(variable, format!("`{value}` is not true or false"))),
    }
}

fn parse_w(value: &str) -> Result<WriteAck, ConfigError> {
    if value.eq_ignore_ascii_case("majority") {
        return Ok(WriteAck::Majority);
    }
    value
        .parse::<u32>()
        .map(WriteAck::Nodes)
        .map_err(|_| ConfigError::new("DB_W", format!("`{value}` is not `majority` or a number of nodes")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    fn uri(vars: &[(&str, &str)]) -> String {
        settings(vars).unwrap().database.uri.expose_secret().to_owned()
    }

    #[test]
    fn defaults_match_the_original_service() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.database.uri.expose_secret(), "mongodb://localhost:27017");
        assert_eq!(s.database.database_name, "books");
        assert_eq!(s.database.collection, "books");
        assert_eq!(s.database.timeout, Duration::from_secs(2));
        assert_eq!(s.database.journal, None);
        assert_eq!(s.static_dir, PathBuf::from("client"));
        assert_eq!(s.http, HttpSettings::default());
    }

    #[test]
    fn http_limits_parse() {
        let s = settings(&[
            ("HTTP_HEADER_TIMEOUT_MS", "1500"),
            ("HTTP_BODY_TIMEOUT_MS", "2500"),
            ("HTTP_KEEP_ALIVE_SECS", "0"),
            ("HTTP_MAX_CONNECTIONS", "100"),
            ("HTTP_BACKLOG", "64"),
            ("HTTP_SEND_TIMEOUT_MS", "4000"),
        ])
        .unwrap();
        assert_eq!(
            s.http,
            HttpSettings {
                header_timeout: Duration::from_millis(1500),
                body_timeout: Duration::from_millis(2500),
                keep_alive: Duration::ZERO,
                max_connections: 100,
                backlog: 64,
                send_timeout: Duration::from_secs(4),
            }
        );
    }

    #[test]
    fn link_address_wins_over_db_host() {
        assert_eq!(uri(&[("DB_HOST", "h1"), ("DB_PORT_27017_TCP_ADDR", "10.0.0.9")]), "mongodb://10.0.0.9:27017");
        assert_eq!(uri(&[("DB_HOST", "h1")]), "mongodb://h1:27017");
    }

    #[test]
    fn port_comes_from_link_variables_in_either_form() {
        assert_eq!(uri(&[("DB_HOST", "db"), ("DB_PORT_27017_TCP_PORT", "27018")]), "mongodb://db:27018");
        assert_eq!(uri(&[("DB_HOST", "db"), ("DB_PORT", "27019")]), "mongodb://db:27019");
        assert_eq!(uri(&[("DB_HOST", "db"), ("DB_PORT", "tcp://172.17.0.2:27020")]), "mongodb://db:27020");
        // With no host variable, the link form also gives the host.
        assert_eq!(uri(&[("DB_PORT", "tcp://172.17.0.2:27020")]), "mongodb://172.17.0.2:27020");
    }

    #[test]
    fn mongodb_uri_wins_over_host_and_port() {
        assert_eq!(
            uri(&[("DB_HOST", "db"), ("DB_PORT", "1"), ("MONGODB_URI", "mongodb://a:1,b:2/?replicaSet=rs")]),
            "mongodb://a:1,b:2/?replicaSet=rs"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(uri(&[("DB_HOST", "::1")]), "mongodb://[::1]:27017");
    }

    #[test]
    fn listen_addr_accepts_port_zero() {
        assert_eq!(settings(&[("LISTEN_ADDR", "127.0.0.1:0")]).unwrap().listen_addr.port(), 0);
    }

    #[test]
    fn each_invalid_value_names_its_variable() {
        let cases = [
            ("LISTEN_ADDR", "localhost"),
            ("DB_PORT", "abc"),
            ("DB_PORT", "0"),
            ("DB_PORT", "tcp://nohost"),
            ("DB_PORT_27017_TCP_PORT", "70000"),
            ("DB_DBNAME", "my.db"),
            ("DB_COLLECTION", "a$b"),
            ("DB_TIMEOUT_MS", "-5"),
            ("DB_JOURNAL", "perhaps"),
            ("DB_W", "most"),
            ("SHUTDOWN_TIMEOUT_SECS", "soon"),
            ("HTTP_HEADER_TIMEOUT_MS", "0"),
            ("HTTP_BODY_TIMEOUT_MS", "ten"),
            ("HTTP_KEEP_ALIVE_SECS", "-1"),
            ("HTTP_MAX_CONNECTIONS", "0"),
            ("HTTP_BACKLOG", "70000"),
            ("HTTP_SEND_TIMEOUT_MS", "0"),
            ("MONGODB_URI", "http://db"),
        ];
        for (variable, value) in cases {
            let err = settings(&[(variable, value)]).expect_err(variable);
            assert_eq!(err.variable, variable, "{value}");
            assert!(err.to_string().starts_with(variable), "{err}");
        }
    }

    #[test]
    fn a_bad_uri_is_not_echoed() {
        let err = settings(&[("MONGODB_URI", "postgres://user:hunter2@db")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn write_concern_settings_parse() {
        let s = settings(&[("DB_JOURNAL", "false"), ("DB_W", "1")]).unwrap();
        assert_eq!(s.database.journal, Some(false));
        assert_eq!(s.database.w, Some(WriteAck::Nodes(1)));
        assert_eq!(settings(&[("DB_W", "Majority")]).unwrap().database.w, Some(WriteAck::Majority));
    }

    #[test]
    fn writes_and_origins_are_open_by_default() {
        let s = settings(&[]).unwrap();
        assert!(s.access.write_token.is_none());
        assert_eq!(s.access.cors_origins, CorsOrigins::Any);
    }

    #[test]
    fn the_write_token_comes_from_the_variable_or_the_file() {
        let s = settings(&[("WRITE_TOKEN", " s3cret ")]).unwrap();
        assert_eq!(s.access.write_token.unwrap().expose_secret(), "s3cret");
        let lookup = |k: &str| (k == "WRITE_TOKEN_FILE").then(|| "/run/secrets/token".to_owned());
        let read = |path: &str| {
            assert_eq!(path, "/run/secrets/token");
            Ok("from-file\n".to_owned())
        };
        assert_eq!(write_token(&lookup, read).unwrap().unwrap().expose_secret(), "from-file");
    }

    #[test]
    fn a_bad_write_token_is_refused_naming_its_variable() {
        let err = settings(&[("WRITE_TOKEN", "a"), ("WRITE_TOKEN_FILE", "/x")]).unwrap_err();
        assert!(err.to_string().contains("WRITE_TOKEN and WRITE_TOKEN_FILE"), "{err}");
        assert_eq!(settings(&[("WRITE_TOKEN", " ")]).unwrap_err().variable, "WRITE_TOKEN");
        let err = settings(&[("WRITE_TOKEN", "two words")]).unwrap_err();
        assert_eq!(err.variable, "WRITE_TOKEN");
        assert!(!err.to_string().contains("words"), "{err}");
        assert_eq!(settings(&[("WRITE_TOKEN_FILE", "")]).unwrap_err().variable, "WRITE_TOKEN_FILE");
        let lookup = |k: &str| (k == "WRITE_TOKEN_FILE").then(|| "/t".to_owned());
        let err = write_token(&lookup, |_| Ok("\n".to_owned())).unwrap_err();
        assert_eq!(err.variable, "WRITE_TOKEN_FILE");
        assert!(err.to_string().contains("empty"), "{err}");
        let err = write_token(&lookup, |_| Err(std::io::ErrorKind::NotFound.into())).unwrap_err();
        assert_eq!(err.variable, "WRITE_TOKEN_FILE");
        assert!(err.to_string().contains("/t"), "{err}");
    }

    #[test]
    fn cors_origins_parse() {
        let origins = |v: &str| settings(&[("CORS_ORIGINS", v)]).map(|s| s.access.cors_origins);
        assert_eq!(origins("*").unwrap(), CorsOrigins::Any);
        assert_eq!(
            origins("https://Books.example.com, http://localhost:8080,").unwrap(),
            CorsOrigins::Listed(vec!["https://books.example.com".to_owned(), "http://localhost:8080".to_owned()])
        );
        for bad in ["books.example.com", "https://a.com/", "ftp://a.com", "*, https://a.com", ","] {
            assert_eq!(origins(bad).unwrap_err().variable, "CORS_ORIGINS", "{bad}");
        }
    }

    #[test]
    fn redacted_uri_hides_credentials() {
        let s = settings(&[("MONGODB_URI", "mongodb://u:secret@db:27017/x")]).unwrap();
        assert_eq!(s.database.redacted_uri(), "mongodb://***@db:27017/x");
        assert!(!format!("{s:?}").contains("secret"));
    }
}
