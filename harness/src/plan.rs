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
            Step::Package => "package the code (build.package)",
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
    /// None when the service has no tests image (`build.tests_dockerfile`).
    pub tests_image: Option<String>,
    pub prod: String,
    pub url: String,
    pub steps: Vec<Step>,
    /// The test step's command (`test.command`, run with `sh -c` in the
    /// code's folder); None: the step is skipped.
    pub test_command: Option<String>,
    /// Run before it (`test.prepare`, e.g. compiling the tests): the steps
    /// beside the tests start once it ended.
    pub test_prepare: Option<String>,
    /// The package step's command (`build.package`); None: skipped.
    pub package_command: Option<String>,
    /// The steps of `steps` that will be skipped, each with why.
    pub skipped: Vec<Skipped>,
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

/// A step the plan holds that will not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub step: Step,
    pub why: String,
}

/// A command setting, unless blank.
fn command(setting: &str) -> Option<String> {
    Some(setting.trim().to_owned()).filter(|c| !c.is_empty())
}

impl Plan {
    /// Why `step` will be skipped, when it will.
    pub fn skipped(&self, step: Step) -> Option<&str> {
        self.skipped.iter().find(|s| s.step == step).map(|s| s.why.as_str())
    }

    pub fn new(
        repo: PathBuf,
        source: Source,
        version: Version,
        config: &Config,
        steps: Vec<Step>,
    ) -> anyhow::Result<Self> {
        let test_command = command(&config.test.command);
        let package_command = command(&config.build.package);
        let tests_image =
            config.build.tests_dockerfile().map(|_| format!("{}:{}", config.tests_repository(), version.version));
        let skipped = steps
            .iter()
            .filter_map(|&step| {
                let why = match step {
                    Step::Test if test_command.is_none() => "no [test] command in harness.toml",
                    Step::Package if package_command.is_none() => "no [build] package in harness.toml",
                    Step::PushTests if tests_image.is_none() => "no tests image ([build] tests_dockerfile is not set)",
                    _ => return None,
                };
                Some(Skipped { step, why: why.to_owned() })
            })
            .collect();
        Ok(Plan {
            source,
            service_image: format!("{}:{}", config.service_repository(), version.version),
            tests_image,
            prod: match config.prod.kind {
                crate::config::TargetKind::Engine => config.prod.docker_host.clone(),
                crate::config::TargetKind::Swarm => config.swarm.docker_host.clone(),
            },
            url: config.target_url()?,
            repo,
            version,
            steps,
            test_prepare: test_command.as_ref().and_then(|_| command(&config.test.prepare)),
            test_command,
            package_command,
            skipped,
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
        match &self.tests_image {
            Some(image) => writeln!(f, "tests image:   {image}")?,
            None => writeln!(f, "tests image:   none ([build] tests_dockerfile is not set)")?,
        }
        writeln!(f, "prod:          {}", self.prod)?;
        writeln!(f, "url:           {}", self.url)?;
        match (&self.test_command, &self.test_prepare) {
            (Some(test), Some(prepare)) => writeln!(f, "tests:         {test} (first: {prepare})")?,
            (Some(test), None) => writeln!(f, "tests:         {test}")?,
            (None, _) => writeln!(f, "tests:         none ([test] command is not set)")?,
        }
        match &self.package_command {
            Some(package) => writeln!(f, "package:       {package}")?,
            None => writeln!(f, "package:       none ([build] package is not set)")?,
        }
        for (i, step) in self.steps.iter().enumerate() {
            let note = match (self.skipped(*step), &self.reused_tree, *step == Step::Test && self.reuse_tests) {
                (Some(why), _, _) => format!(" (skipped: {why})"),
                (None, Some(tree), true) => {
                    format!(" (reused: tree {} passed them before)", &tree[..tree.len().min(12)])
                }
                (None, None, true) => " (reused when this committed tree passed them)".to_owned(),
                (None, _, false) => String::new(),
            };
            writeln!(f, "{}. {step:<10} {}{note}", i + 1, step.describe())?;
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

    fn plan_for(config: &Config) -> Plan {
        let version = Version { version: "v1".into(), revision: "r1".into(), dirty: false };
        let source = Source::WorkingTree { dir: "/src".into() };
        Plan::new(PathBuf::from("/src"), source, version, config, Step::ALL.to_vec()).unwrap()
    }

    /// A generic service's configuration: hello's name, and `toml` over it.
    fn hello(toml: &str) -> Config {
        use figment::providers::{Format, Serialized, Toml};
        let mut config: Config = figment::Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(&format!("[service]\nname = \"hello\"\n{toml}")))
            .extract()
            .unwrap();
        config.repo = PathBuf::from("/src");
        config
    }

    #[test]
    fn books_ms_plans_its_configured_test_prepare_package_and_tests_image() {
        let plan = plan_for(&crate::config::books_ms());
        assert_eq!(
            plan.test_command.as_deref(),
            Some("cargo test --locked -p books-ms --lib --test api -- --test-threads 8")
        );
        assert_eq!(plan.test_prepare.as_deref(), Some("cargo test --locked -p books-ms --lib --test api --no-run"));
        assert_eq!(plan.package_command.as_deref(), Some("BOOKS_MS_REVISION=$HARNESS_REVISION bash scripts/dist.sh"));
        assert_eq!(plan.tests_image.as_deref(), Some("10.200.0.1:5000/books-ms-tests:v1"));
        assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
        let text = plan.to_string();
        assert!(
            text.contains(
                "tests:         cargo test --locked -p books-ms --lib --test api -- --test-threads 8 (first: cargo"
            ),
            "{text}"
        );
        assert!(text.contains("package:       BOOKS_MS_REVISION=$HARNESS_REVISION bash scripts/dist.sh"), "{text}");
        assert!(!text.contains("skipped"), "{text}");
        // What scripts/demo.sh reads.
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["test_prepare"], "cargo test --locked -p books-ms --lib --test api --no-run");
        assert_eq!(json["package_command"], "BOOKS_MS_REVISION=$HARNESS_REVISION bash scripts/dist.sh");
        assert_eq!(json["version"]["revision"], "r1");
    }

    #[test]
    fn a_service_without_tests_package_or_tests_image_plans_those_steps_skipped_saying_why() {
        let plan = plan_for(&hello(""));
        assert_eq!((plan.test_command.as_deref(), plan.package_command.as_deref()), (None, None));
        assert_eq!((plan.tests_image.as_deref(), plan.test_prepare.as_deref()), (None, None));
        assert_eq!(plan.skipped(Step::Test), Some("no [test] command in harness.toml"));
        assert_eq!(plan.skipped(Step::Package), Some("no [build] package in harness.toml"));
        assert_eq!(plan.skipped(Step::PushTests), Some("no tests image ([build] tests_dockerfile is not set)"));
        assert_eq!(plan.skipped(Step::Build), None);
        let text = plan.to_string();
        assert!(text.contains("tests image:   none ([build] tests_dockerfile is not set)"), "{text}");
        assert!(text.contains("tests:         none ([test] command is not set)"), "{text}");
        assert!(text.contains("package:       none ([build] package is not set)"), "{text}");
        assert!(text.contains("2. test       run the pre-deployment tests (skipped: no [test] command"), "{text}");
        assert!(text.contains("3. package    package the code (build.package) (skipped: no [build] package"), "{text}");
        assert!(text.contains("9. push-tests push the tests image to the registry (skipped: no tests image"), "{text}");
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["test_command"], serde_json::Value::Null);
        assert_eq!(json["skipped"][0], serde_json::json!({"step": "test", "why": "no [test] command in harness.toml"}));
    }

    #[test]
    fn a_service_with_tests_and_a_package_but_no_tests_image_plans_them_and_skips_only_the_push_of_tests() {
        let config = hello("[build]\npackage = \"make dist\"\n[test]\ncommand = \"python3 -m unittest\"\n");
        let plan = plan_for(&config);
        assert_eq!(plan.test_command.as_deref(), Some("python3 -m unittest"));
        assert_eq!(plan.test_prepare, None);
        assert_eq!(plan.package_command.as_deref(), Some("make dist"));
        assert_eq!(plan.skipped.iter().map(|s| s.step).collect::<Vec<_>>(), [Step::PushTests]);
        let text = plan.to_string();
        assert!(text.contains("tests:         python3 -m unittest\n"), "{text}");
        // A blank command is none; a prepare without a command is nothing.
        let plan =
            plan_for(&hello("[test]\ncommand = \"  \"\nprepare = \"make\"\n[build]\ntests_dockerfile = \"T\"\n"));
        assert_eq!((plan.test_command.as_deref(), plan.test_prepare.as_deref()), (None, None));
        assert_eq!(plan.tests_image.as_deref(), Some("10.200.0.1:5000/hello-tests:v1"));
        assert_eq!(plan.skipped(Step::PushTests), None);
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
