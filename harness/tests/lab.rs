//! The lab's topology, tested the way the harness uses it: the registry lets
//! in only the lab's user, and prod's Docker API answers only a TLS client
//! holding the lab's client certificate.
//!
//! These tests need the lab up (`lab/up.sh`, which `scripts/test.sh` runs
//! first) and root (the credentials file is mode 600). They never skip: a lab
//! that is down fails them. Addresses and paths come from `lab/topology.env`,
//! the file the lab's scripts read; an environment variable of the same name
//! overrides a value (e.g. `BOOKS_LAB_REGISTRY_CREDENTIALS=/elsewhere`).
//! Every network call is bounded; the images the tests make are removed
//! from both engines and from the registry.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptionsBuilder, PushImageOptionsBuilder, RemoveImageOptionsBuilder};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::StreamExt;

use common::engines::{first_error, pull, tls_client, Dockerd};
use common::{bounded, http_client, negotiate, Lab, DEADLINE};

// ------------------------------------------------------------------ the lab

/// The cd engine (this host's).
async fn cd_docker() -> Docker {
    let docker = Docker::connect_with_local_defaults().expect("a client for the cd engine");
    negotiate(docker, "the cd engine").await
}

// ------------------------------------------------------------------ images

/// A repository name in the registry, unique to this run and test.
fn test_repository(lab: &Lab, what: &str) -> (String, String) {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    (format!("{}/books-lab-tests/{what}", lab.registry), format!("{}-{nanos}", std::process::id()))
}

/// Makes a one-file image (a few bytes) on the engine, as `docker import`.
async fn import_tiny_image(docker: &Docker, repository: &str, tag: &str) {
    let mut tar = tar::Builder::new(Vec::new());
    let content = b"made by harness/tests/lab.rs\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "books-lab-test", &content[..]).unwrap();
    let tar = tar.into_inner().unwrap();

    let options = CreateImageOptionsBuilder::new().from_src("-").repo(repository).tag(tag).build();
    let results: Vec<_> = bounded(
        "importing a tiny image",
        docker.create_image(Some(options), Some(bollard::body_full(tar.into())), None).collect(),
    )
    .await;
    for result in results {
        result.unwrap_or_else(|e| panic!("importing {repository}:{tag} on the cd engine: {e}"));
    }
}

async fn remove_image(docker: &Docker, image: &str) {
    let options = RemoveImageOptionsBuilder::new().force(true).build();
    // Cleaning up: an image that is already gone is fine.
    let _ = bounded("removing an image", docker.remove_image(image, Some(options), None)).await;
}

/// Pushes, returning the stream's first error.
async fn push(
    docker: &Docker,
    repository: &str,
    tag: &str,
    credentials: Option<DockerCredentials>,
) -> Result<(), bollard::errors::Error> {
    let options = PushImageOptionsBuilder::new().tag(tag).build();
    first_error("a push", docker.push_image(repository, Some(options), credentials)).await
}

// ------------------------------------------------------------------ registry

#[tokio::test]
async fn the_registry_refuses_requests_without_the_labs_credentials() {
    let lab = Lab::load();
    let credentials = lab.credentials();
    let client = lab.registry_client();

    let anonymous =
        bounded("GET /v2/", client.get(lab.registry_url("/v2/")).send()).await.expect("the registry answers");
    let wrong_password = bounded(
        "GET /v2/ with a wrong password",
        client.get(lab.registry_url("/v2/")).basic_auth(&credentials.user, Some("not-the-password")).send(),
    )
    .await
    .expect("the registry answers");

    assert_eq!(anonymous.status(), 401);
    let challenge = anonymous.headers().get("www-authenticate").expect("a WWW-Authenticate header");
    assert!(challenge.to_str().unwrap().starts_with("Basic "), "challenge: {challenge:?}");
    assert_eq!(wrong_password.status(), 401);
}

#[tokio::test]
async fn the_registry_lets_the_lab_user_in() {
    let lab = Lab::load();
    let credentials = lab.credentials();

    let response = bounded(
        "GET /v2/ with the lab's credentials",
        lab.registry_client()
            .get(lab.registry_url("/v2/"))
            .basic_auth(&credentials.user, Some(&credentials.password))
            .send(),
    )
    .await
    .expect("the registry answers");

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_registry_refuses_plain_http_and_a_client_that_does_not_trust_the_labs_ca() {
    let lab = Lab::load();
    let credentials = lab.credentials();

    // Plain HTTP, with the lab's password as a client on the wire would
    // send it: Go's TLS server answers 400 and never reads it as a request.
    let plain = bounded(
        "GET http:// /v2/",
        http_client()
            .get(format!("http://{}/v2/", lab.registry))
            .basic_auth(&credentials.user, Some(&credentials.password))
            .send(),
    )
    .await
    .expect("the registry answers plain HTTP with an error");
    let plain_status = plain.status();
    let plain_body = plain.text().await.unwrap_or_default();
    // HTTPS trusting the system's roots (never the lab's CA): refused in the
    // handshake.
    let untrusted =
        bounded("GET https:// /v2/ without the lab's CA", http_client().get(lab.registry_url("/v2/")).send()).await;
    // HTTPS trusting the lab's CA alone: the registry, asking for credentials.
    let trusted = bounded("GET https:// /v2/", lab.registry_client().get(lab.registry_url("/v2/")).send())
        .await
        .expect("the registry answers HTTPS with a certificate of the lab's CA for its address");

    assert_eq!(plain_status, 400, "plain HTTP must be refused: {plain_body}");
    assert!(plain_body.contains("HTTP request to an HTTPS server"), "{plain_body}");
    let error = untrusted.expect_err("a client that does not trust the lab's CA must be refused");
    assert!(
        format!("{error:?}").to_lowercase().contains("certificate"),
        "refused, but not for its certificate: {error:?}"
    );
    assert_eq!(trusted.status(), 401);
}

/// Every engine of the lab (cd, prod, each swarm node) verifies the
/// registry with the lab's CA: none lists it insecure (from which it would
/// fall back to plain HTTP), and the CA is where Docker reads it.
#[tokio::test]
async fn every_engine_verifies_the_registry_with_the_labs_ca_and_none_lists_it_insecure() {
    let lab = Lab::load();
    let certs_d = Path::new("/etc/docker/certs.d").join(&lab.registry).join("ca.crt");
    let engine_ca = std::fs::read(&certs_d).unwrap_or_else(|e| panic!("{}: {e}", certs_d.display()));
    assert_eq!(engine_ca, std::fs::read(&lab.registry_ca).unwrap(), "{} is not the lab's CA", certs_d.display());

    let mut engines = vec![("cd".to_owned(), cd_docker().await), ("prod".to_owned(), lab.prod_docker().await)];
    engines.push(("swarm-1".to_owned(), lab.swarm_docker().await));
    for i in 2..=lab.swarm_nodes {
        let socket = format!("/run/books-lab/swarm-{i}/docker.sock");
        let docker = Docker::connect_with_unix(&socket, DEADLINE.as_secs(), API_DEFAULT_VERSION)
            .unwrap_or_else(|e| panic!("a client for swarm-{i} on {socket}: {e}"));
        engines.push((format!("swarm-{i}"), negotiate(docker, &format!("swarm-{i}")).await));
    }
    for (name, docker) in engines {
        let info = bounded("docker info", docker.info()).await.unwrap_or_else(|e| panic!("{name}: info: {e}"));
        let registries = info.registry_config.unwrap_or_default();
        let listed = registries.index_configs.unwrap_or_default().get(&lab.registry).and_then(|c| c.secure);
        assert_ne!(listed, Some(false), "{name} lists {} in insecure-registries", lab.registry);
    }
    // And no lab script lists it so again.
    for script in ["lab/topology.sh", "lab/swarm.sh"] {
        let text = std::fs::read_to_string(common::repo_root().join(script)).unwrap();
        assert!(
            !text.contains("\"insecure-registries\": ["),
            "{script} writes an insecure-registries list into a daemon.json"
        );
    }
}

#[tokio::test]
async fn a_push_without_credentials_is_refused() {
    let lab = Lab::load();
    let docker = cd_docker().await;
    let (repository, tag) = test_repository(&lab, "unauthenticated");
    import_tiny_image(&docker, &repository, &tag).await;

    let pushed = push(&docker, &repository, &tag, None).await;
    let in_registry = lab.manifest_digest(&repository, &tag).await;
    remove_image(&docker, &format!("{repository}:{tag}")).await;

    let error = pushed.expect_err("a push without credentials must be refused").to_string();
    assert!(
        ["no basic auth credentials", "authentication required", "unauthorized"]
            .iter()
            .any(|needle| error.to_lowercase().contains(needle)),
        "the push failed, but not for want of authentication: {error}"
    );
    assert_eq!(in_registry, None, "the refused push left a manifest in the registry");
}

#[tokio::test]
async fn an_image_pushed_with_the_labs_credentials_is_pulled_on_prod_with_them_only() {
    let lab = Lab::load();
    let cd = cd_docker().await;
    let prod = lab.prod_docker().await;
    let (repository, tag) = test_repository(&lab, "authenticated");
    let image = format!("{repository}:{tag}");
    import_tiny_image(&cd, &repository, &tag).await;

    let pushed = push(&cd, &repository, &tag, Some(lab.docker_credentials())).await;
    let digest = lab.manifest_digest(&repository, &tag).await;
    let pulled_anonymously = pull(&prod, &repository, &tag, None).await;
    let pulled = pull(&prod, &repository, &tag, Some(lab.docker_credentials())).await;
    let cd_id = cd.inspect_image(&image).await.ok().and_then(|i| i.id);
    let prod_id = prod.inspect_image(&image).await.ok().and_then(|i| i.id);
    remove_image(&cd, &image).await;
    remove_image(&prod, &image).await;
    if let Some(digest) = &digest {
        assert_eq!(lab.delete_manifest(&repository, digest).await, 202, "DELETE of {repository}@{digest}");
    }

    pushed.expect("a push with the lab's credentials");
    assert!(digest.is_some(), "the registry has no manifest for {image} after the push");
    let error = pulled_anonymously.expect_err("prod must not pull without credentials").to_string();
    assert!(error.to_lowercase().contains("auth"), "the anonymous pull failed otherwise: {error}");
    pulled.expect("prod pulls with the lab's credentials");
    assert!(cd_id.is_some(), "the image is not on the cd engine");
    assert_eq!(prod_id, cd_id, "prod holds another image than the one pushed");
}

// ------------------------------------------------------------------ prod

#[tokio::test]
async fn prods_engine_answers_over_tls_with_the_client_certificate() {
    let lab = Lab::load();
    let prod = lab.prod_docker().await;
    let cd = cd_docker().await;

    let version = bounded("prod's version", prod.version()).await.expect("prod's version over TLS");
    let prod_info = bounded("prod's info", prod.info()).await.expect("prod's info over TLS");
    let cd_info = bounded("cd's info", cd.info()).await.expect("cd's info");

    assert!(version.api_version.is_some(), "version: {version:?}");
    assert!(prod_info.id.is_some());
    assert_ne!(prod_info.id, cd_info.id, "prod's API leads to the cd engine, not to a second one");
}

#[tokio::test]
async fn prods_engine_refuses_a_tls_client_without_a_certificate() {
    let lab = Lab::load();
    let url = format!("https://{}/_ping", lab.prod_address());

    let with_certificate =
        bounded("ping with a certificate", tls_client(&lab.prod_cert_path, true).get(&url).send()).await;
    let without = bounded("ping without a certificate", tls_client(&lab.prod_cert_path, false).get(&url).send()).await;

    // The same client with the certificate gets in: what refuses the other
    // is the missing certificate, not the CA or the address.
    assert_eq!(with_certificate.expect("a ping with the client certificate").status(), 200);
    let error = without.expect_err("a TLS client without a certificate must be refused");
    assert!(error.is_connect() || error.is_request(), "unexpected kind of failure: {error:?}");
}

#[tokio::test]
async fn prods_engine_refuses_plain_http() {
    let lab = Lab::load();
    let http =
        Docker::connect_with_http(&format!("http://{}", lab.prod_address()), DEADLINE.as_secs(), API_DEFAULT_VERSION)
            .expect("a plain HTTP client");

    let response =
        bounded("a plain HTTP ping", http_client().get(format!("http://{}/_ping", lab.prod_address())).send())
            .await
            .expect("dockerd answers plain HTTP with an error");
    let version = bounded("a plain HTTP version call", http.version()).await;

    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap_or_default();
    assert!(body.contains("HTTPS"), "body: {body}");
    assert!(version.is_err(), "prod answered a version call over plain HTTP: {version:?}");
}

// ------------------------------------------------------------------ prod's TLS: only the lab's CA

/// A TLS endpoint on loopback (`openssl s_server`) presenting a given
/// certificate, in the place of prod; killed by pid on drop.
struct FakeProd {
    child: std::process::Child,
    port: u16,
}

impl FakeProd {
    fn start(cert: &Path, key: &Path) -> FakeProd {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let prod = FakeProd { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not listen on {port} within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        prod
    }

    fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeProd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs openssl with `args` in `dir`, bounded; panics with its stderr.
fn openssl(dir: &Path, args: &[&str]) {
    let mut command = Command::new("openssl");
    command.args(args).current_dir(dir);
    let run = common::run::run_bounded(&mut command, Duration::from_secs(30));
    assert!(run.success(), "openssl {}: {}", args.join(" "), run.stderr);
}

/// A key and a server certificate for 127.0.0.1 in `dir` as NAME-key.pem
/// and NAME.pem, signed by `ca`/`ca_key`, valid for `days` (-1: expired).
fn server_certificate(dir: &Path, name: &str, ca: &Path, ca_key: &Path, days: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}-key.pem"));
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.pem"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path(&key)]);
    openssl(dir, &["req", "-new", "-key", path(&key), "-subj", "/CN=not prod", "-out", path(&csr)]);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            path(&csr),
            "-CA",
            path(ca),
            "-CAkey",
            path(ca_key),
            "-CAcreateserial",
            "-days",
            days,
            "-extfile",
            path(&ext),
            "-out",
            path(&cert),
        ],
    );
    (cert, key)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// The lab's client certificate folder, copied (the harness reads it as
/// `prod.cert_path`).
fn client_certificates(lab: &Lab, dir: &Path) -> PathBuf {
    let client = dir.join("client");
    std::fs::create_dir_all(&client).unwrap();
    for name in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::copy(lab.prod_cert(name), client.join(name)).unwrap_or_else(|e| panic!("copying {name}: {e}"));
    }
    client
}

/// `harness status` against `prod`, with the lab's client certificates
/// and `extra` variables.
async fn harness_status_against(prod: &FakeProd, certs: &Path, extra: &[(&str, &str)]) -> common::run::Run {
    common::run::harness(Duration::from_secs(60))
        .without_harness_env()
        .args(["status"])
        .env("HARNESS_PROD__DOCKER_HOST", prod.host())
        .env("HARNESS_PROD__CERT_PATH", certs)
        .envs(extra.iter().copied())
        .run_async()
        .await
}

#[tokio::test]
async fn a_prod_presenting_a_certificate_from_another_ca_is_refused_even_when_the_system_trusts_that_ca() {
    // Arrange: another CA, trusted by this machine's roots as far as the
    // harness can tell (SSL_CERT_FILE is where the system's roots are read
    // from), and a server certificate from it naming the address.
    let lab = Lab::load();
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_key) = (dir.path().join("other-ca.pem"), dir.path().join("other-ca-key.pem"));
    openssl(dir.path(), &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path(&ca_key)]);
    openssl(
        dir.path(),
        &["req", "-x509", "-new", "-key", path(&ca_key), "-subj", "/CN=another CA", "-days", "30", "-out", path(&ca)],
    );
    let (cert, key) = server_certificate(dir.path(), "server", &ca, &ca_key, "30");
    let prod = FakeProd::start(&cert, &key);
    let certs = client_certificates(&lab, dir.path());

    // A folder of roots holding that CA alone (the temp folder also holds
    // keys, which a loader of roots would report as errors).
    let roots = dir.path().join("roots");
    std::fs::create_dir(&roots).unwrap();
    std::fs::copy(&ca, roots.join("other-ca.pem")).unwrap();

    // Act
    let run =
        harness_status_against(&prod, &certs, &[("SSL_CERT_FILE", path(&ca)), ("SSL_CERT_DIR", path(&roots))]).await;

    // Assert
    assert_eq!(run.code, Some(1), "{run:?}");
    for needle in [prod.host().as_str(), "TLS refused", "not signed by the lab's CA", "unknown CA", "harness lab up"] {
        assert!(run.stderr.contains(needle), "`{needle}` not in: {}", run.stderr);
    }
}

#[tokio::test]
async fn a_prod_presenting_an_expired_certificate_from_the_labs_ca_is_refused() {
    let lab = Lab::load();
    let dir = tempfile::tempdir().unwrap();
    // The lab CA's key sits beside the client's folder (lab/topology.sh).
    let tls_dir = lab.prod_cert_path.parent().expect("the lab's TLS folder");
    let (cert, key) =
        server_certificate(dir.path(), "expired", &tls_dir.join("ca.pem"), &tls_dir.join("ca-key.pem"), "-1");
    let prod = FakeProd::start(&cert, &key);
    let certs = client_certificates(&lab, dir.path());

    let run = harness_status_against(&prod, &certs, &[]).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    for needle in [prod.host().as_str(), "TLS refused", "expired", "harness lab up"] {
        assert!(run.stderr.contains(needle), "`{needle}` not in: {}", run.stderr);
    }
}

// ------------------------------------------------------------------ the lab repairs itself

/// `lab/up.sh certificates` on the state folder `data` (a copy, never the
/// live one), bounded: its stderr.
fn repair_certificates(data: &Path) -> String {
    let mut command = Command::new("bash");
    command.arg(common::repo_root().join("lab/up.sh")).arg("certificates").env("BOOKS_LAB_DATA_DIR", data);
    let run = common::run::run_bounded(&mut command, Duration::from_secs(60));
    assert!(run.success(), "lab/up.sh certificates failed: {}", run.stderr);
    run.stderr
}

/// The public key of a certificate or of a private key, as openssl prints it.
fn public_key(dir: &Path, file: &Path, is_certificate: bool) -> String {
    let args: Vec<&str> =
        if is_certificate { vec!["x509", "-noout", "-pubkey", "-in"] } else { vec!["pkey", "-pubout", "-in"] };
    let mut command = Command::new("openssl");
    command.args(&args).arg(file).current_dir(dir);
    let run = common::run::run_bounded(&mut command, Duration::from_secs(30));
    assert!(run.success(), "openssl on {}: {}", file.display(), run.stderr);
    run.stdout
}

/// Every key in `tls` goes with its certificate, every certificate chains
/// to the CA, is valid for 30 more days, and each folder's ca.pem is the CA.
fn assert_certificates_sound(tls: &Path) {
    let ca = tls.join("ca.pem");
    assert_eq!(public_key(tls, &ca, true), public_key(tls, &tls.join("ca-key.pem"), false), "the CA and its key");
    for name in ["server", "swarm-manager", "registry", "client"] {
        let dir = tls.join(name);
        let cert = dir.join("cert.pem");
        assert_eq!(public_key(tls, &cert, true), public_key(tls, &dir.join("key.pem"), false), "{name}'s key");
        openssl(tls, &["verify", "-CAfile", path(&ca), path(&cert)]);
        openssl(tls, &["x509", "-noout", "-checkend", "2592000", "-in", path(&cert)]);
        assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), std::fs::read(&ca).unwrap(), "{name}/ca.pem");
    }
}

/// The lab's keys and certificates, as paths in its `tls/` folder.
const TLS_FILES: [&str; 10] = [
    "ca.pem",
    "ca-key.pem",
    "server/cert.pem",
    "server/key.pem",
    "swarm-manager/cert.pem",
    "swarm-manager/key.pem",
    "registry/cert.pem",
    "registry/key.pem",
    "client/cert.pem",
    "client/key.pem",
];

fn read_all(tls: &Path) -> Vec<(String, Vec<u8>)> {
    TLS_FILES.iter().map(|f| (f.to_string(), std::fs::read(tls.join(f)).unwrap_or_default())).collect()
}

/// A copy of the lab's state folder with its certificates (`tls/`).
fn copy_of_the_labs_certificates(lab: &Lab) -> tempfile::TempDir {
    let live = lab.prod_cert_path.parent().expect("the lab's TLS folder");
    let data = tempfile::tempdir().unwrap();
    let mut copy = Command::new("cp");
    copy.arg("-a").arg(live).arg(data.path().join("tls"));
    assert!(common::run::run_bounded(&mut copy, Duration::from_secs(30)).success(), "copying {}", live.display());
    data
}

#[tokio::test]
async fn a_certificate_step_interrupted_between_a_key_and_its_certificate_is_repaired_by_the_next_run() {
    let lab = Lab::load();
    // Each fault a killed run (or a bad day) can leave, and what must be
    // made anew; what is not named must be left exactly as it was.
    type Fault = fn(&Path);
    let faults: [(&str, Fault, &[&str]); 6] = [
        (
            "the server's new key written, not its certificate",
            |tls| new_key_at(&tls.join("server/key.pem")),
            &["server/cert.pem", "server/key.pem"],
        ),
        (
            "the client's certificate cut short",
            |tls| std::fs::write(tls.join("client/cert.pem"), "-----BEGIN").unwrap(),
            &["client/cert.pem", "client/key.pem"],
        ),
        ("the CA's new key written, not the CA", |tls| new_key_at(&tls.join("ca-key.pem")), &TLS_FILES),
        (
            "the swarm manager's certificate missing",
            |tls| std::fs::remove_file(tls.join("swarm-manager/cert.pem")).unwrap(),
            &["swarm-manager/cert.pem", "swarm-manager/key.pem"],
        ),
        ("the client's copy of the CA missing", |tls| std::fs::remove_file(tls.join("client/ca.pem")).unwrap(), &[]),
        ("the server's certificate expired", expire_server_certificate, &["server/cert.pem", "server/key.pem"]),
    ];
    for (fault, make, remade) in faults {
        let data = copy_of_the_labs_certificates(&lab);
        let tls = data.path().join("tls");
        make(&tls);
        let before = read_all(&tls);

        let said = repair_certificates(data.path());

        assert_certificates_sound(&tls);
        assert!(said.contains("tls: made"), "{fault}: {said}");
        for ((file, old), (_, new)) in before.iter().zip(read_all(&tls)) {
            assert_eq!(remade.contains(&file.as_str()), *old != new, "{fault}: {file} changed or not as it should");
        }
        // A second run finds everything sound and changes nothing.
        let again = read_all(&tls);
        let said = repair_certificates(data.path());
        assert!(said.contains("valid, each with its key"), "{fault}: {said}");
        assert_eq!(read_all(&tls), again, "{fault}: a second run changed the certificates");
    }
}

fn new_key_at(file: &Path) {
    let mut command = Command::new("openssl");
    command.args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"]).arg(file);
    assert!(common::run::run_bounded(&mut command, Duration::from_secs(30)).success(), "a new key");
}

/// Re-issues the server's certificate, same key, from the copy's CA, expired.
fn expire_server_certificate(tls: &Path) {
    let server = tls.join("server");
    openssl(&server, &["req", "-new", "-key", "key.pem", "-subj", "/CN=prod", "-out", "expired.csr"]);
    std::fs::write(server.join("san.ext"), "subjectAltName=IP:10.200.0.2\n").unwrap();
    openssl(
        &server,
        &[
            "x509",
            "-req",
            "-in",
            "expired.csr",
            "-CA",
            "../ca.pem",
            "-CAkey",
            "../ca-key.pem",
            "-CAcreateserial",
            "-days",
            "-1",
            "-extfile",
            "san.ext",
            "-out",
            "cert.pem",
        ],
    );
}

#[tokio::test]
async fn prods_engine_listens_on_no_unix_socket_only_on_tls() {
    // prod's dockerd, from the pid file lab/topology.sh gives it.
    let dockerd = Dockerd::from_pid_file("/run/books-lab/prod/dockerd.pid");
    let (pid, args, hosts) = (dockerd.pid, &dockerd.args, &dockerd.hosts);

    // Its hosts are TCP only, with client certificates required.
    assert!(!hosts.is_empty() && hosts.iter().all(|h| h.starts_with("tcp://")), "prod's dockerd listens on {hosts:?}");
    assert!(dockerd.verifies_clients(), "prod's dockerd runs without --tlsverify: {args:?}");

    // No unix socket it listens on answers Docker's API (it has others of
    // its own, e.g. libnetwork's, which speak something else).
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("prod's dockerd's descriptors (root)")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).expect("its unix sockets");
    let listening: Vec<String> = unix
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Flags 00010000: accepting connections; a path, not abstract.
            let path = fields.get(7).filter(|p| p.starts_with('/'))?;
            (fields[3] == "00010000" && inodes.iter().any(|i| i == fields[6])).then(|| path.to_string())
        })
        .collect();
    for socket in &listening {
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::UnixStream::connect(socket).await.ok()?;
            stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").await.ok()?;
            let mut reply = Vec::new();
            let _ = stream.read_to_end(&mut reply).await;
            Some(String::from_utf8_lossy(&reply).into_owned())
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        assert!(
            !answer.to_ascii_lowercase().contains("api-version"),
            "prod's dockerd answers its API on the unix socket {socket}: {answer}"
        );
    }
}

// ------------------------------------------------------------------ no password on a command line

#[test]
fn no_lab_or_project_script_puts_a_password_on_a_command_line() {
    // What another user of the machine would read in `ps`: curl's -u/--user,
    // docker login's -p/--password (not --password-stdin), htpasswd's -b,
    // a swarm's join token (`docker swarm join --token`).
    // (command, options that take a secret there)
    let forbidden: [(&str, &[&str]); 4] = [
        ("curl", &[" -u ", " --user ", " --user=", " -u\"", " -u$"]),
        (" login", &[" -p ", " --password ", " --password="]),
        ("htpasswd", &[" -b", " -nb"]),
        ("swarm join", &[" --token"]),
    ];
    let mut scripts = Vec::new();
    for dir in ["lab", "scripts", "bench/pipeline", ".ci"] {
        for entry in std::fs::read_dir(common::repo_root().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if path.extension().is_some_and(|e| e == "sh") || text.starts_with("#!") {
                scripts.push((path, text));
            }
        }
    }
    assert!(scripts.len() >= 8, "found only {} scripts", scripts.len());
    for (path, text) in &scripts {
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or(line);
            if code.trim_start().starts_with('#') {
                continue;
            }
            // A password file is created readable by no other user from its
            // first byte, not chmod-ed after it was written.
            if code.contains("htpasswd -c") {
                assert!(
                    code.contains("umask 077"),
                    "{}:{}: htpasswd -c without umask 077: {line}",
                    path.display(),
                    n + 1
                );
            }
            for (command, options) in forbidden {
                for option in options.iter().filter(|_| code.contains(command)) {
                    assert!(
                        !code.contains(option),
                        "{}:{}: `{command} {option}` puts a password on a command line: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
}
