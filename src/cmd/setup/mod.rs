//! `cglimit setup ENGINE`: wires cglimit into Docker, containerd, podman or
//! CRI-O in one command, shows the change first with `--dry-run`, and
//! reverses exactly what it did with `--undo`.
//!
//! Docker: the `cglimit-runtime` symlink beside the binary, `runtimes.cglimit`
//! and `default-runtime` merged into `daemon.json` (every other key kept,
//! the original kept beside it), then dockerd reloaded with SIGHUP (it
//! re-reads `runtimes` and `default-runtime`; running containers are not
//! touched) and asked whether it now lists the runtime. containerd: the
//! same symlink, and a runtime handler in `config.toml` ([`containerd`]).
//! podman and CRI-O: the hook file in the directory the engine reads. All:
//! the default policy when the policy directory holds none. What was done
//! is kept in `STATE_DIR/setup-ENGINE.json` for `--undo`.

pub mod containerd;
mod docker;
pub mod error;
mod hooks;
mod plan;

use containerd::{containerd_steps, restart_containerd};
use docker::*;
pub use docker::{docker_runtime, peer_pid};
pub use error::{ConfigProblem, SetupError};
use hooks::*;
pub use hooks::{PODMAN_HOOKS_DIR, crio_hooks_dir, podman_hooks_dir};
use plan::*;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::{Engine, SetupArgs};

/// The shipped catch-all policy, carried by the binary.
pub const DEFAULT_POLICY: &str = include_str!("../../../policies/00-default.yaml");
/// The shipped policies installed into an empty policy directory: the
/// catch-all, and the one for Kubernetes pod sandboxes (which matches
/// nothing elsewhere).
pub const SHIPPED_POLICIES: [(&str, &str); 2] = [
    ("00-default.yaml", DEFAULT_POLICY),
    (
        "05-pod-sandboxes.yaml",
        include_str!("../../../policies/05-pod-sandboxes.yaml"),
    ),
];
const WRAPPER_CONFIG: &str = include_str!("../../../hooks/config.yaml");
const DEFAULT_CONFIG: &str = "/etc/cglimit/config.yaml";

pub fn run(args: &SetupArgs) -> ExitCode {
    let r = if args.undo { undo(args) } else { setup(args) };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cglimit setup: {e}");
            ExitCode::from(1)
        }
    }
}

fn record_path(args: &SetupArgs) -> PathBuf {
    args.state_dir
        .join(format!("setup-{}.json", args.engine.name()))
}

fn setup(args: &SetupArgs) -> Result<(), SetupError> {
    let exe = std::env::current_exe().map_err(SetupError::Exe)?;
    let mut steps = Vec::new();
    if !holds_policies(&args.policy_dir) {
        for (name, text) in SHIPPED_POLICIES {
            steps.push(Step::Write {
                path: args.policy_dir.join(name),
                text: text.to_string(),
            });
        }
    }
    match args.engine {
        Engine::Docker => docker_steps(args, &exe, &mut steps)?,
        Engine::Containerd => containerd_steps(args, &exe, &mut steps)?,
        Engine::Podman | Engine::Crio => {
            let dir = match (&args.hooks_dir, args.engine) {
                (Some(d), _) => d.clone(),
                (None, Engine::Crio) => crio_hooks_dir(),
                (None, _) => podman_hooks_dir(),
            };
            let path = dir.join("cglimit.json");
            let cri = args.engine == Engine::Crio;
            let text = hook_file(&exe, &args.policy_dir, &args.state_dir, cri);
            write_step(path, text, args.force, &mut steps)?;
            if args.engine == Engine::Podman {
                podman_runtime_steps(args, &exe, &mut steps)?;
            }
        }
    }
    if args.dry_run {
        for s in &steps {
            print!("{}", describe(s));
        }
        if steps.is_empty() {
            println!("nothing to change");
        }
        return Ok(());
    }
    let mut done = Done::default();
    for s in &steps {
        perform(s, &mut done)?;
        print!("{}", summary(s));
    }
    std::fs::create_dir_all(&args.state_dir)
        .and_then(|()| {
            std::fs::write(
                record_path(args),
                serde_json::to_vec_pretty(&done).unwrap_or_default(),
            )
        })
        .map_err(SetupError::file(&record_path(args)))?;
    match args.engine {
        Engine::Docker => {
            reload_docker(args.docker_host.as_deref(), &args.daemon_json, true)?;
            println!("dockerd reloaded: runtime \"cglimit\" registered and the default");
            note_other_runtimes(args.docker_host.as_deref());
        }
        Engine::Containerd if steps.iter().any(|s| matches!(s, Step::Edit { .. })) => {
            restart_containerd(args.restart)?
        }
        _ => {}
    }
    Ok(())
}

fn holds_policies(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|it| {
        it.flatten()
            .any(|e| crate::policy::files::is_policy_name(&e.file_name().to_string_lossy()))
    })
}

/// The `cglimit-runtime` symlink beside this binary and the wrapper's
/// configuration file where missing; returns the symlink's path.
fn wrapper_steps(
    args: &SetupArgs,
    exe: &Path,
    steps: &mut Vec<Step>,
) -> Result<PathBuf, SetupError> {
    let link = link_step(args, exe, "cglimit-runtime", steps)?;
    if !args.config.exists() {
        steps.push(Step::Write {
            path: args.config.clone(),
            text: WRAPPER_CONFIG
                .replace(
                    "policyDir: /etc/cglimit/policies",
                    &format!("policyDir: {}", args.policy_dir.display()),
                )
                .replace(
                    "# stateDir: /var/lib/cglimit ",
                    &format!("stateDir: {}", args.state_dir.display()),
                ),
        });
    }
    Ok(link)
}

/// A link named `name` beside this binary, pointing to it, where missing.
fn link_step(
    args: &SetupArgs,
    exe: &Path,
    name: &str,
    steps: &mut Vec<Step>,
) -> Result<PathBuf, SetupError> {
    let link = exe.with_file_name(name);
    match std::fs::read_link(&link) {
        Ok(t) if t == Path::new("cglimit") || t == exe => {}
        Ok(t) if !args.force => {
            return Err(SetupError::Taken(format!(
                "{} already points to {} (--force replaces it)",
                link.display(),
                t.display()
            )));
        }
        Err(_) if link.exists() && !args.force => {
            return Err(SetupError::Taken(format!(
                "{} exists and is not a symlink (--force replaces it)",
                link.display()
            )));
        }
        _ => steps.push(Step::Symlink {
            path: link.clone(),
            target: PathBuf::from("cglimit"),
        }),
    }
    Ok(link)
}
