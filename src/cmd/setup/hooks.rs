//! podman and CRI-O: the hook file in the directory each engine reads
//! (found in their TOML configuration), and for podman the wrapper as its
//! runtime, so that `podman update` is decided too.

use super::plan::{Step, write_step};
use super::*;

/// podman's hooks directory when `containers.conf` names none (podman 4.x
/// reads no other by default).
pub const PODMAN_HOOKS_DIR: &str = "/usr/share/containers/oci/hooks.d";

/// podman runs no hook on `podman update`: it calls its OCI runtime's
/// `update` and nothing else. So podman's runtime becomes the wrapper (the
/// `cglimit-podman-runtime` link, in a containers.conf drop-in), in front
/// of the runtime podman used so far, deciding updates and restores; the
/// hook keeps deciding creates (`createsByHook`).
pub(super) fn podman_runtime_steps(
    args: &SetupArgs,
    exe: &Path,
    steps: &mut Vec<Step>,
) -> Result<(), SetupError> {
    use crate::cmd::runtime::config::PODMAN_LINK;
    let link = link_step(args, exe, PODMAN_LINK, steps)?;
    let config = args.config.with_file_name("podman.yaml");
    if !config.exists() {
        steps.push(Step::Write {
            path: config,
            text: podman_config(&podman_runtime(), &args.policy_dir, &args.state_dir),
        });
    }
    let path = args.containers_conf_dir.join("50-cglimit.conf");
    let text = podman_drop_in(&link);
    write_step(path, text, args.force, steps)?;
    Ok(())
}

/// The runtime podman runs now (`podman info`), else crun, else runc.
pub(super) fn podman_runtime() -> String {
    let asked = std::process::Command::new("podman")
        .args(["info", "--format", "{{.Host.OCIRuntime.Path}}"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| {
            !p.is_empty()
                && Path::new(p)
                    .file_name()
                    .is_none_or(|n| n != crate::cmd::runtime::config::PODMAN_LINK)
        });
    asked.unwrap_or_else(|| {
        let found = |n: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(n).exists()))
        };
        if found("crun") { "crun" } else { "runc" }.to_string()
    })
}

/// The wrapper's configuration for podman.
pub fn podman_config(runtime: &str, policy_dir: &Path, state_dir: &Path) -> String {
    format!(
        "# The wrapper podman runs as its OCI runtime (cglimit setup podman):\n\
         # creates are decided by the hook podman runs; updates and restores here.\n\
         runtime: {runtime}\n\
         policyDir: {}\n\
         stateDir: {}\n\
         createsByHook: true\n",
        policy_dir.display(),
        state_dir.display()
    )
}

/// The containers.conf drop-in that makes the wrapper podman's runtime.
pub fn podman_drop_in(link: &Path) -> String {
    format!(
        "# cglimit setup podman: podman runs its OCI runtime through cglimit, so\n\
         # that `podman update` is held to the memory policies.\n\
         [engine]\n\
         runtime = \"cglimit\"\n\
         \n\
         [engine.runtimes]\n\
         cglimit = [{:?}]\n",
        link.display().to_string()
    )
}

/// The hooks directory podman reads: the first `hooks_dir` of its
/// configuration (users' `/etc` over the distribution's `/usr/share`, a
/// drop-in over both), else its default.
pub fn podman_hooks_dir() -> PathBuf {
    configured_hooks_dir(
        &[
            "/usr/share/containers/containers.conf",
            "/etc/containers/containers.conf",
        ],
        "/etc/containers/containers.conf.d",
        "engine",
    )
    .unwrap_or_else(|| PathBuf::from(PODMAN_HOOKS_DIR))
}

/// The hooks directory CRI-O reads: the first `hooks_dir` of
/// `[crio.runtime]` in crio.conf or a drop-in, else its default (the same
/// directory as podman's).
pub fn crio_hooks_dir() -> PathBuf {
    configured_hooks_dir(
        &["/etc/crio/crio.conf"],
        "/etc/crio/crio.conf.d",
        "crio.runtime",
    )
    .unwrap_or_else(|| PathBuf::from(PODMAN_HOOKS_DIR))
}

/// The first `hooks_dir` of `table` in the last of `files`, then the
/// drop-ins of `drop_in_dir` in name order, that sets one.
pub(super) fn configured_hooks_dir(
    files: &[&str],
    drop_in_dir: &str,
    table: &str,
) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    if let Ok(d) = std::fs::read_dir(drop_in_dir) {
        let mut drop_ins: Vec<PathBuf> = d.flatten().map(|e| e.path()).collect();
        drop_ins.sort();
        files.extend(drop_ins);
    }
    let mut found = None;
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f)
            && let Some(dirs) = hooks_dir_of(&text, table)
            && let Some(first) = dirs.into_iter().next()
        {
            found = Some(PathBuf::from(first));
        }
    }
    found
}

/// `hooks_dir = ["…", …]` of `table` (`engine` in containers.conf,
/// `crio.runtime` in crio.conf, a dotted path), read by a TOML parser:
/// quoted `#`, single-quoted strings and arrays over several lines are
/// TOML's. `None` for a file that is not TOML or does not set it.
pub fn hooks_dir_of(text: &str, table: &str) -> Option<Vec<String>> {
    let doc: toml_edit::DocumentMut = text.parse().ok()?;
    let mut item = doc.as_item();
    for key in table.split('.') {
        item = item.get(key)?;
    }
    let dirs = item.get("hooks_dir")?.as_array()?;
    Some(
        dirs.iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
    )
}

/// The OCI hooks file for podman and CRI-O, naming this binary, its
/// policies and where it records its decisions; CRI-O's (`cri`) marks the
/// hook as the CRI's, so that pod facts are read.
pub fn hook_file(exe: &Path, policy_dir: &Path, state_dir: &Path, cri: bool) -> String {
    let mut args = vec![
        "cglimit".to_string(),
        "hook".into(),
        "--policy-dir".into(),
        policy_dir.display().to_string(),
        "--state-dir".into(),
        state_dir.display().to_string(),
    ];
    if cri {
        args.push("--cri".into());
    }
    let v = serde_json::json!({
        "version": "1.0.0",
        "hook": {
            "path": exe.display().to_string(),
            "args": args,
            "timeout": 10
        },
        "when": {"always": true},
        "stages": ["createRuntime"]
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn hooks_dir_from_containers_conf() {
        let conf = "[containers]\nhooks_dir = [\"/wrong\"]\n[engine]\n# comment\nhooks_dir = [\n  \"/etc/x/hooks.d\", # mine\n  \"/usr/y\",\n]\n";
        assert_eq!(
            hooks_dir_of(conf, "engine").unwrap(),
            ["/etc/x/hooks.d", "/usr/y"]
        );
        assert_eq!(
            hooks_dir_of("[engine]\nevents_logger = \"file\"\n", "engine"),
            None
        );
        let crio = "[crio.runtime]\nhooks_dir = [\"/etc/crio/hooks.d\"]\n";
        assert_eq!(
            hooks_dir_of(crio, "crio.runtime").unwrap(),
            ["/etc/crio/hooks.d"]
        );
        // What a line reader got wrong: `#` inside quotes, single quotes.
        let quoted = "[engine]\nhooks_dir = [\"/etc/h#1\", '/opt/hooks']\n";
        assert_eq!(
            hooks_dir_of(quoted, "engine").unwrap(),
            ["/etc/h#1", "/opt/hooks"]
        );
        let dotted = "crio.runtime.hooks_dir = ['/d']\n";
        assert_eq!(hooks_dir_of(dotted, "crio.runtime").unwrap(), ["/d"]);
    }
}
