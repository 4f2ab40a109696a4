//! Both targets' HAProxy configurations, as the harness renders them, are
//! accepted by the lab's HAProxy (`haproxy -c`, in the image prod and the
//! swarm run): a directive in the wrong section, or one this HAProxy does
//! not know, fails here and not in the middle of a deploy. Needs the lab's
//! images on this machine (`lab/up.sh`); never skips.

mod common;

use harness::deploy::host::proxy::{self, Preview, Routing};
use harness::deploy::names::Colour;
use harness::deploy::swarm::haproxy;

use common::release::docker;
use common::{parse_env, repo_root};

/// The proxy image the lab builds (lab/lab.env).
fn proxy_image() -> String {
    let env = parse_env(&std::fs::read_to_string(repo_root().join("lab/lab.env")).expect("lab/lab.env"));
    env.get("BOOKS_PROXY_IMAGE").cloned().expect("lab/lab.env names the proxy image")
}

/// `haproxy -c` on `config` in the lab's proxy image: its output, and
/// whether it passed.
fn check(name: &str, config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(proxy::CONFIG_FILE), config).unwrap();
    std::fs::write(dir.path().join(proxy::MAP_FILE), "").unwrap();
    let mount = format!("{}:{}", dir.path().display(), proxy::CONFIG_DIR);
    let path = format!("{}/{}", proxy::CONFIG_DIR, proxy::CONFIG_FILE);
    let image = proxy_image();
    let args = ["run", "--rm", "--network", "none", "-v", &mount, &image, "haproxy", "-c", "-f", &path];
    match docker(&args).succeeds() {
        Ok(run) => (true, format!("{name}: {}{}", run.stdout, run.stderr)),
        Err(e) => (false, format!("{name}: {e}")),
    }
}

#[test]
fn the_lab_haproxy_accepts_the_configurations_of_both_targets() {
    let preview =
        Routing { live: Some(Colour::Blue), preview: Some(Preview { colour: Colour::Green, token: "t".into() }) };
    // Another service than books-ms: its app on another port.
    let backends = proxy::Backends { frontend: "p".into(), app_port: 5000, preview_header: "X-P-Preview".into() };
    let first = Routing { live: None, preview: None };
    let configs = [
        ("single host, first deploy", proxy::render(&first, &backends, |c| format!("p-{c}"))),
        ("single host, preview", proxy::render(&preview, &backends, |c| format!("p-{c}"))),
        ("swarm", haproxy::render("p-app", 8080, "/health")),
        ("swarm, another service", haproxy::render("p-app", 5000, "/ready?deep=1")),
    ];
    for (name, config) in configs {
        let (passed, output) = check(name, &config);
        assert!(passed, "HAProxy refuses the {name} configuration:\n{output}\n{config}");
    }
}
