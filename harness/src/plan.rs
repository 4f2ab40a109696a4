//! What the user typed, turned into a validated plan before anything touches
//! Docker. `--dry-run` prints it.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::checkout::Source;
use crate::config::Config;
use crate::version::Version;

/// The chapter's nine steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Checkout,
    Test,
    Package,
    Build,
    Push,
    Deploy,
    Integrate,
    Verify,
    PushTests,
}

impl Step {
    pub const ALL: [Step; 9] = [
        Step::Checkout,
        Step::Test,
        Step::Package,
        Step::Build,
        Step::Push,
        Step::Deploy,
        Step::Integrate,
        Step::Verify,
        Step::PushTests,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Step::Checkout => "check out the code",
            Step::Test => "run the pre-deployment tests",
            Step::Package => "compile and package the code",
            Step::Build => "build the container images",
            Step::Push => "push the service image to the registry",
            Step::Deploy => "deploy the container to prod",
            Step::Integrate => "integrate the release (users reach it through the proxy)",
            Step::Verify => "run the post-deployment checks",
            Step::PushTests => "push the tests image to the registry",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that width and alignment flags apply.
        f.pad(match self {
            Step::Checkout => "checkout",
            Step::Test => "test",
            Step::Package => "package",
            Step::Build => "build",
            Step::Push => "push",
            Step::Deploy => "deploy",
            Step::Integrate => "integrate",
            Step::Verify => "verify",
            Step::PushTests => "push-tests",
        })
    }
}

/// The pre-deploy tests: the service's unit tests, its API against a real
/// database container and its runtime image; the service's package alone
/// (`-p books-ms`), with the features its own Cargo.toml names. The
/// harness's own tests are not the gate of the service's release.
pub const PRE_DEPLOY_TESTS: [&str; 8] = ["cargo", "test", "--locked", "-p", "books-ms", "--lib", "--test", "api"];

/// Everything a run will do, and on what.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// The checkout the harness runs in: its `harness.toml`, its
    /// `.harness/` records.
    pub repo: PathBuf,
    /// The code the steps ship (for most commands, `repo` itself).
    pub source: Source,
    pub version: Version,
    pub service_image: String,
    pub tests_image: String,
    pub prod: String,
    pub url: String,
    pub steps: Vec<Step>,
    /// The test step's command (program and arguments); its build alone is
    /// the same with `--no-run`.
    pub test_command: Vec<String>,
    /// The test step passes at once for a committed tree that passed it
    /// before (`harness pipeline` without `--retest`).
    pub reuse_tests: bool,
    /// The committed tree of the working tree, when its tests passed before
    /// and the test step will reuse them.
    pub reused_tree: Option<String>,
    /// A `--source` tree not declared trusted (`--trust-source`): the
    /// pipeline refuses to run its code.
    pub untrusted_source: bool,
}

impl Plan {
    pub fn new(
        repo: PathBuf,
        source: Source,
        version: Version,
        config: &Config,
        steps: Vec<Step>,
    ) -> anyhow::Result<Self> {
        Ok(Plan {
            source,
            service_image: format!("{}:{}", config.service_repository(), version.version),
            tests_image: format!("{}:{}", config.tests_repository(), version.version),
            prod: match config.prod.kind {
                crate::config::TargetKind::Engine => config.prod.docker_host.clone(),
                crate::config::TargetKind::Swarm => config.swarm.docker_host.clone(),
            },
            url: config.target_url()?,
            repo,
            version,
            steps,
            test_command: PRE_DEPLOY_TESTS.iter().map(|s| s.to_string()).collect(),
            reuse_tests: false,
            reused_tree: None,
            untrusted_source: false,
        })
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::WorkingTree { dir } => {
                let tree = if self.version.dirty { "with uncommitted changes" } else { "clean" };
                writeln!(f, "source:        the working tree {} ({tree})", dir.display())?;
            }
            checkout => writeln!(f, "source:        {checkout}")?,
        }
        writeln!(f, "version:       {} (revision {})", self.version.version, self.version.revision)?;
        writeln!(f, "service image: {}", self.service_image)?;
        writeln!(f, "tests image:   {}", self.tests_image)?;
        writeln!(f, "prod:          {}", self.prod)?;
        writeln!(f, "url:           {}", self.url)?;
        writeln!(f, "tests:         {}", self.test_command.join(" "))?;
        for (i, step) in self.steps.iter().enumerate() {
            let reuse = match (&self.reused_tree, *step == Step::Test && self.reuse_tests) {
                (Some(tree), true) => format!(" (reused: tree {} passed them before)", &tree[..tree.len().min(12)]),
                (None, true) => " (reused when this committed tree passed them)".to_owned(),
                (_, false) => String::new(),
            };
            writeln!(f, "{}. {step:<10} {}{reuse}", i + 1, step.describe())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_plan_names_images_host_and_steps_in_order() {
        let version = Version { version: "abc123".into(), revision: "abc123".into(), dirty: false };
        let plan = Plan::new(
            PathBuf::from("/src"),
            Source::WorkingTree { dir: "/src".into() },
            version,
            &crate::config::books_ms(),
            Step::ALL.to_vec(),
        )
        .unwrap();
        let text = plan.to_string();
        assert!(text.contains("service image: 10.200.0.1:5000/books-ms:abc123"), "{text}");
        assert!(text.contains("tests image:   10.200.0.1:5000/books-ms-tests:abc123"), "{text}");
        assert!(text.contains("url:           http://10.200.0.2:8080"), "{text}");
        let order: Vec<_> = text
            .lines()
            .filter_map(|l| l.split_once(". "))
            .map(|(_, rest)| rest.split_whitespace().next().unwrap().to_owned())
            .collect();
        assert_eq!(
            order,
            ["checkout", "test", "package", "build", "push", "deploy", "integrate", "verify", "push-tests"]
        );
    }

    #[test]
    fn a_dirty_tree_is_said_plainly() {
        let version = Version { version: "abc-dirty".into(), revision: "abc-dirty".into(), dirty: true };
        let plan = Plan::new(
            PathBuf::from("/src"),
            Source::WorkingTree { dir: "/src".into() },
            version,
            &crate::config::books_ms(),
            vec![Step::Build],
        )
        .unwrap();
        assert!(plan.to_string().contains("uncommitted changes"));
    }

    #[test]
    fn a_checkout_names_the_ref_the_source_and_the_commit() {
        let version = Version { version: "v2.0.0".into(), revision: "0123456789ab".into(), dirty: false };
        let source = Source::Checkout {
            from: "https://example.invalid/books-ms.git".into(),
            reference: "v2.0.0".into(),
            commit: "0123456789abcdef".into(),
            dir: "/src/.harness/checkout".into(),
        };
        let plan =
            Plan::new(PathBuf::from("/src"), source, version, &crate::config::books_ms(), Step::ALL.to_vec()).unwrap();
        let text = plan.to_string();
        assert!(
            text.contains("source:        v2.0.0 of https://example.invalid/books-ms.git (commit 0123456789abcdef)"),
            "{text}"
        );
        assert!(text.contains("service image: 10.200.0.1:5000/books-ms:v2.0.0"), "{text}");
        assert!(!text.contains("uncommitted"), "{text}");
    }
}
