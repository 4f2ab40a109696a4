//! The user's hooks (`hooks.pre_deploy`, `hooks.post_deploy`): commands run
//! on this machine during a deploy, with the release in their environment
//! and nothing of the harness's settings.

use super::names::Colour;
use super::plan::{Core, HookKind};
use crate::child::{Ended, Output};
use crate::config::Config;
use crate::release::Release;

/// The variables of the harness's own environment that a hook gets,
/// besides the release's ([`RELEASE_VARIABLES`]): none of the harness's
/// settings (`HARNESS_*` of its own: the registry's password among them),
/// nothing else the harness was started with.
pub const HOOK_INHERITS: [&str; 9] = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// The release's variables a hook gets (`HARNESS_COLOUR` on a single host
/// only), each also as `BOOKS_MS_*` (`BOOKS_MS_IMAGE`...) for the hooks
/// written before services were configured (deprecated).
pub const RELEASE_VARIABLES: [&str; 6] =
    ["HARNESS_SERVICE", "HARNESS_IMAGE", "HARNESS_VERSION", "HARNESS_REVISION", "HARNESS_URL", "HARNESS_COLOUR"];

/// How much of a failed hook's output is shown.
pub(crate) const OUTPUT_CHARS: usize = 2000;

/// The hook `kind`, when one is configured, for a deploy of `release`
/// reached at `url`; `colour`: the colour it runs as, where there is one
/// (`BOOKS_MS_COLOUR` is set only then).
pub fn planned(config: &Config, kind: HookKind, release: &Release, url: &str, colour: Option<Colour>) -> Option<Core> {
    let command = match kind {
        HookKind::PreDeploy => config.hooks.pre_deploy.as_ref(),
        HookKind::PostDeploy => config.hooks.post_deploy.as_ref(),
    }?;
    let mut values = vec![
        ("SERVICE", config.service.name.clone()),
        ("IMAGE", release.image.clone()),
        ("VERSION", release.version.clone()),
        ("REVISION", release.revision.clone().unwrap_or_default()),
        ("URL", url.to_owned()),
    ];
    if let Some(colour) = colour {
        values.push(("COLOUR", colour.name().to_owned()));
    }
    let mut env: Vec<(String, String)> = values.iter().map(|(k, v)| (format!("HARNESS_{k}"), v.clone())).collect();
    // BOOKS_MS_SERVICE never was one.
    env.extend(values.iter().filter(|(k, _)| *k != "SERVICE").map(|(k, v)| (format!("BOOKS_MS_{k}"), v.clone())));
    Some(Core::Hook {
        name: kind,
        command: command.clone(),
        timeout_secs: config.hooks.timeout_secs.unwrap_or(60),
        env,
    })
}

/// Runs a hook with `sh -c`, bounded as [`crate::child::run`] bounds it
/// (its whole process group, what it started in the background too), in
/// the environment [`HOOK_INHERITS`] says plus `env`. None when it passed;
/// how it ended when it failed.
pub async fn run(
    name: HookKind,
    command: &str,
    timeout_secs: u64,
    env: &[(String, String)],
) -> anyhow::Result<Option<Ended>> {
    let mut child = tokio::process::Command::new("sh");
    child.arg("-c").arg(command).env_clear();
    for key in HOOK_INHERITS {
        if let Some(value) = std::env::var_os(key) {
            child.env(key, value);
        }
    }
    child.envs(env.iter().map(|(k, v)| (k, v)));
    let what = format!("the {name} hook");
    let ended = crate::child::run(&mut child, &what, Output::Capture, (timeout_secs, "hooks.timeout_secs")).await?;
    Ok((!ended.status.success()).then_some(ended))
}

/// `text` with every secret in it replaced by `***`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hook_sees_the_release_and_a_few_of_the_harness_variables_never_its_settings() {
        // The harness's process holds a setting (as a user gives the
        // registry's password); the hook prints its environment.
        std::env::set_var("HARNESS_REGISTRY__PASSWORD", "s3cr3t-of-the-test");
        let file = std::env::temp_dir().join(format!("harness-hook-env-{}", std::process::id()));
        let env = [("BOOKS_MS_REVISION".to_owned(), "r2".to_owned())];

        let failed = run(HookKind::PostDeploy, &format!("env > {}", file.display()), 10, &env).await.unwrap();

        assert!(failed.is_none(), "the hook passed");
        let seen = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert!(!seen.contains("s3cr3t-of-the-test"), "{seen}");
        assert!(seen.lines().any(|l| l == "BOOKS_MS_REVISION=r2"), "{seen}");
        for line in seen.lines() {
            let name = line.split('=').next().unwrap_or_default();
            let documented =
                HOOK_INHERITS.contains(&name) || RELEASE_VARIABLES.contains(&name) || name.starts_with("BOOKS_MS_");
            // sh sets these itself.
            let from_sh = matches!(name, "PWD" | "SHLVL" | "_" | "OLDPWD");
            assert!(documented || from_sh, "the hook saw {name}: {seen}");
        }
    }

    #[tokio::test]
    async fn a_failing_hooks_output_is_returned_for_the_person_and_redacted_of_the_registrys_password() {
        let command = "echo 'using pa55word here' >&2; exit 3";
        let failed = run(HookKind::PreDeploy, command, 10, &[]).await.unwrap().unwrap();
        assert_eq!(failed.status.code(), Some(3));
        assert_eq!(redact(&failed.output, &["pa55word", ""]), "using *** here");
    }
}
