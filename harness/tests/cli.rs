//! The harness binary as a command-line citizen: a reader that goes away
//! (`harness status --json | head -3`) ends the run quietly, with the exit
//! code of the work, never a panic and a backtrace.

mod common;

use std::time::Duration;

use common::run::harness;

const DEADLINE: Duration = Duration::from_secs(60);

fn assert_quiet_success(run: &common::run::Run) {
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.is_empty(), "nothing on stderr when stdout's reader is gone: {run:?}");
}

#[test]
fn a_closed_stdout_ends_a_dry_run_quietly_as_text_and_as_json() {
    for json in [false, true] {
        let mut command = harness(DEADLINE).arg("--repo").arg(common::repo_root()).args(["--dry-run", "pipeline"]);
        if json {
            command = command.arg("--json");
        }
        assert_quiet_success(&command.run_with_stdout_closed());
    }
}

#[tokio::test]
async fn a_closed_stdout_ends_status_json_quietly() {
    // prod's engine answers (the lab is up): the harness has a result to
    // print, and nobody to print it to.
    let run = harness(DEADLINE)
        .arg("--repo")
        .arg(common::repo_root())
        .args(["status", "--json"])
        .run_with_stdout_closed_async()
        .await;
    assert_quiet_success(&run);
}

#[test]
fn a_step_past_its_deadline_is_killed_with_its_process_group_and_named() {
    // The test step (cargo test) cannot finish in a second: it is stopped,
    // and the error names the setting that bounds it.
    let run = harness(Duration::from_secs(120))
        .arg("--repo")
        .arg(common::repo_root())
        .arg("test")
        .env("HARNESS_PIPELINE__TEST_TIMEOUT_SECS", "1")
        .run();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("did not end within 1 s (pipeline.test_timeout_secs)"), "{run:?}");
    assert!(run.stderr.contains("killed with its process group"), "{run:?}");
    assert!(run.elapsed < Duration::from_secs(60), "took {:?}", run.elapsed);
}

#[test]
fn a_source_tree_runs_no_code_here_unless_trusted_and_the_refusal_says_why() {
    // A tree whose test and package script would each leave a mark.
    let marks = tempfile::tempdir().unwrap();
    let mark = |name: &str| marks.path().join(name).display().to_string();
    let files = [
        (
            "Cargo.toml",
            "[package]\nname = \"books-ms\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n".to_owned(),
        ),
        ("src/lib.rs", "//! An upstream.\n".to_owned()),
        ("tests/api.rs", format!("#[test]\nfn marks() {{ std::fs::write({:?}, \"ran\").unwrap(); }}\n", mark("test"))),
        ("scripts/dist.sh", format!("touch {:?}\n", mark("package"))),
    ];
    let upstream = common::committed_tree(&files, "an upstream");
    let state = tempfile::tempdir().unwrap();

    let run = harness(DEADLINE)
        .arg("--repo")
        .arg(state.path())
        .args(["pipeline", "--source"])
        .arg(upstream.path())
        .env("HARNESS_SERVICE__NAME", "books-ms")
        .env("HARNESS_PROD__PROJECT", format!("books-ms-untrusted-{}", std::process::id()))
        .run();

    assert_eq!(run.code, Some(1), "{run:?}");
    for words in ["--trust-source", "registry's password", "prod's client key"] {
        assert!(run.stderr.contains(words), "the refusal names {words}: {run:?}");
    }
    assert!(!marks.path().join("test").exists() && !marks.path().join("package").exists(), "its code ran");
    let report = state.path().join(".harness/logs");
    assert!(!report.join("test.log").exists() && !report.join("package.log").exists(), "a step ran: {run:?}");
}
