//! Bakes the git revision into the binary for `GET /version`.
//!
//! `BOOKS_MS_REVISION` wins (the harness and the image builds set it, since a
//! build context has no `.git`); otherwise ask git; otherwise `unknown`.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BOOKS_MS_REVISION");
    let revision = std::env::var("BOOKS_MS_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BOOKS_MS_REVISION={revision}");
}

fn git_revision() -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            // `git status` would otherwise refresh and rewrite the index,
            // which this script watches: the next cargo command (the
            // harness's test step compiles, then runs) would then run it
            // again and recompile the crate for nothing.
            .env("GIT_OPTIONAL_LOCKS", "0")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    // Rebuild when HEAD moves or the index changes (a commit, a checkout).
    // git prints these paths relative to the current directory, which is
    // the package directory, as cargo expects.
    for f in ["HEAD", "index"] {
        if let Some(p) = git(&["rev-parse", "--git-path", f]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}
