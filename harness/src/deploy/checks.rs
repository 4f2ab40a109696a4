//! The post-deploy checks of `[[checks]]`, run by the executor through the
//! proxy: before the switch with the preview header (the new release
//! alone), then as users reach it. A request check is sent here; a command
//! check runs on this machine (`sh -c`, in the repository) with where and
//! what to check in its environment.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use secrecy::{ExposeSecret, SecretString};

use super::hooks::HOOK_INHERITS;
use crate::child::Output;
use crate::config::Check;

/// One request check's answer (connect and whole request).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A command check's deadline (`harness verify` bounds its own run at 60 s).
pub const COMMAND_TIMEOUT_SECS: u64 = 120;
/// How much of a failed check's answer or output is shown.
const SHOWN_CHARS: usize = 2000;

/// What a check is run with.
pub struct Run<'a> {
    /// Where users reach the service.
    pub url: &'a str,
    /// The revision the release carries.
    pub revision: Option<&'a str>,
    /// The preview token, before the switch.
    pub preview: Option<&'a str>,
    /// The header that carries it (`prod.preview_header`).
    pub preview_header: &'a str,
    /// The app's secrets, by name: a command check gets them.
    pub secrets: &'a [(String, SecretString)],
    /// The repository: a command check's folder.
    pub repo: &'a Path,
    /// `verify.ids`, given to a command check as `HARNESS_VERIFY__IDS`:
    /// `harness verify` in a check writes on the ids this run was given
    /// (from any layer of its configuration), not only its file's.
    pub verify_ids: &'a [i32],
    /// When set (the count of signals [`crate::interrupt::received`] gave
    /// when the checks started), Ctrl-C or SIGTERM after it is passed on
    /// to a running command check (SIGINT to its group), which is then
    /// waited for, so that it removes what it wrote; unset, a check runs
    /// to its end or is dropped with its caller.
    pub interrupt_after: Option<usize>,
}

/// Runs `check`; an error says what failed and what was seen.
pub async fn run(check: &Check, on: &Run<'_>) -> anyhow::Result<()> {
    match check {
        Check::Request { name, method, path, status, body_contains } => {
            request(on, method, path, *status, body_contains.as_deref())
                .await
                .with_context(|| format!("check `{name}`"))
        }
        Check::Command { name, command } => {
            self::command(on, name, command).await.with_context(|| format!("check `{name}`"))
        }
    }
}

async fn request(
    on: &Run<'_>,
    method: &str,
    path: &str,
    status: u16,
    body_contains: Option<&str>,
) -> anyhow::Result<()> {
    let url = format!("{}{path}", on.url);
    let method = reqwest::Method::from_bytes(method.as_bytes()).with_context(|| format!("method {method}"))?;
    let http = crate::http::client(REQUEST_TIMEOUT, REQUEST_TIMEOUT)?;
    let mut request = http.request(method.clone(), &url);
    if let Some(token) = on.preview {
        request = request.header(on.preview_header, token);
    }
    let through = if on.preview.is_some() { " with the preview header" } else { "" };
    let response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{method} {url}{through}: no answer: {}", crate::http::error_chain(&e)))?;
    let got = response.status();
    let body = response.text().await.with_context(|| format!("{method} {url}{through}: reading the body"))?;
    if got.as_u16() != status {
        bail!(
            "{method} {url}{through} answered {got}, expected {status}: {}",
            crate::runner::cut(body.trim(), SHOWN_CHARS)
        );
    }
    if let Some(text) = body_contains.filter(|text| !body.contains(text)) {
        bail!(
            "{method} {url}{through} answered {got} without {text:?} in its body: {}",
            crate::runner::cut(body.trim(), SHOWN_CHARS)
        );
    }
    Ok(())
}

/// The variables a command check gets besides [`HOOK_INHERITS`]: where to
/// check, the revision, the preview header (`NAME: TOKEN`, before the
/// switch only), the app's secrets.
pub fn command_env(on: &Run<'_>) -> Vec<(String, String)> {
    let mut env = vec![
        ("HARNESS_URL".to_owned(), on.url.to_owned()),
        ("HARNESS_REVISION".to_owned(), on.revision.unwrap_or_default().to_owned()),
    ];
    if let Some(token) = on.preview {
        env.push(("HARNESS_PREVIEW_HEADER".to_owned(), format!("{}: {token}", on.preview_header)));
    }
    if !on.verify_ids.is_empty() {
        let ids: Vec<String> = on.verify_ids.iter().map(i32::to_string).collect();
        env.push(("HARNESS_VERIFY__IDS".to_owned(), format!("[{}]", ids.join(","))));
    }
    env.extend(on.secrets.iter().map(|(name, value)| (name.clone(), value.expose_secret().to_owned())));
    env
}

async fn command(on: &Run<'_>, name: &str, command: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("sh");
    child.arg("-c").arg(command).env_clear().current_dir(on.repo);
    for key in HOOK_INHERITS {
        if let Some(value) = std::env::var_os(key) {
            child.env(key, value);
        }
    }
    // This harness's folder first: `harness` in a check is this harness.
    if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_owned)) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let paths = std::iter::once(dir).chain(std::env::split_paths(&path));
        child.env("PATH", std::env::join_paths(paths).context("PATH with the harness's folder")?);
    }
    child.envs(command_env(on));
    let what = format!("the check {name}");
    let stop = async {
        match on.interrupt_after {
            Some(seen) => {
                crate::interrupt::requested_after(seen).await;
            }
            None => std::future::pending().await,
        }
    };
    let deadline = (COMMAND_TIMEOUT_SECS, "its deadline");
    let ended = crate::child::run_until(&mut child, &what, Output::Capture, deadline, stop).await?;
    if !ended.status.success() {
        let secrets: Vec<&str> = on.secrets.iter().map(|(_, v)| v.expose_secret()).collect();
        let output = super::hooks::redact(&crate::runner::cut(ended.output.trim(), SHOWN_CHARS), &secrets);
        bail!("`{command}` failed ({}): {output}", ended.status);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on<'a>(url: &'a str, preview: Option<&'a str>, secrets: &'a [(String, SecretString)]) -> Run<'a> {
        Run {
            url,
            revision: Some("r2"),
            preview,
            preview_header: "X-Books-Ms-Preview",
            secrets,
            repo: Path::new("/"),
            verify_ids: &[7, 8],
            interrupt_after: None,
        }
    }

    #[tokio::test]
    async fn a_command_check_sees_where_and_what_to_check_and_the_apps_secrets_never_the_harness_settings() {
        std::env::set_var("HARNESS_REGISTRY__PASSWORD", "s3cr3t-of-the-checks-test");
        let secrets = [("API_KEY".to_owned(), SecretString::from("k3y"))];
        let check = Check::Command { name: "env".into(), command: "env; exit 3".into() };
        let err = run(&check, &on("http://h:1", Some("t0k3n"), &secrets)).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(text.starts_with("check `env`: `env; exit 3` failed"), "{text}");
        for line in [
            "HARNESS_URL=http://h:1",
            "HARNESS_REVISION=r2",
            "HARNESS_PREVIEW_HEADER=X-Books-Ms-Preview: t0k3n",
            "HARNESS_VERIFY__IDS=[7,8]",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains("s3cr3t-of-the-checks-test") && !text.contains("k3y"), "{text}");
        assert!(text.contains("API_KEY=***"), "the secret reaches it, redacted in the output: {text}");
        let passes = Check::Command { name: "ok".into(), command: "test -z \"$HARNESS_PREVIEW_HEADER\"".into() };
        run(&passes, &on("http://h:1", None, &[])).await.unwrap();
    }

    #[tokio::test]
    async fn a_command_check_finds_this_harness_first_on_its_path() {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().display().to_string();
        let check =
            Check::Command { name: "path".into(), command: format!("case \"$PATH\" in {dir}:*) ;; *) exit 1;; esac") };
        run(&check, &on("http://h:1", None, &[])).await.unwrap();
    }

    /// A server on a free local port that answers every request with
    /// `status` and `body` (closing each connection), in a thread; its URL.
    fn answering(status: &str, body: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let status = status.to_owned();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(10) {
                let Ok(mut stream) = stream else { continue };
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        url
    }

    fn request(status: u16, body_contains: Option<&str>) -> Check {
        Check::Request {
            name: "hello".into(),
            method: "GET".into(),
            path: "/hello".into(),
            status,
            body_contains: body_contains.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn a_request_check_passes_on_the_status_and_text_it_expects_and_names_what_it_got_otherwise() {
        let url = answering("200 OK", "hi from r2");
        run(&request(200, Some("hi from")), &on(&url, None, &[])).await.unwrap();
        let err = format!("{:#}", run(&request(200, Some("bye")), &on(&url, None, &[])).await.unwrap_err());
        assert!(err.contains("without \"bye\" in its body: hi from r2"), "{err}");
        let err = format!("{:#}", run(&request(201, None), &on(&url, Some("t"), &[])).await.unwrap_err());
        assert!(err.contains("/hello with the preview header answered 200 OK, expected 201: hi from r2"), "{err}");
        let missing = answering("404 Not Found", "no");
        run(&request(404, None), &on(&missing, None, &[])).await.unwrap();
    }

    #[tokio::test]
    async fn a_request_check_with_nothing_listening_names_the_request() {
        let check = Check::Request {
            name: "hello".into(),
            method: "GET".into(),
            path: "/hello".into(),
            status: 200,
            body_contains: None,
        };
        let err = format!("{:#}", run(&check, &on("http://127.0.0.1:9", Some("t"), &[])).await.unwrap_err());
        assert!(
            err.starts_with("check `hello`: GET http://127.0.0.1:9/hello with the preview header: no answer"),
            "{err}"
        );
    }
}
