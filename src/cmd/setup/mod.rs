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

/// podman's hooks directory when `containers.conf` names none (podman 4.x
/// reads no other by default).
pub const PODMAN_HOOKS_DIR: &str = "/usr/share/containers/oci/hooks.d";

/// What setup did, for `--undo`.
#[derive(Serialize, Deserialize, Default, Debug)]
struct Done {
    /// Files and symlinks setup created, with what it wrote (a symlink's
    /// target), so that undo removes only what is still setup's.
    created: Vec<(PathBuf, String)>,
    /// The engine's configuration file (daemon.json, config.toml) and where
    /// its original is: restored byte for byte (`None`: it did not exist,
    /// and is removed).
    #[serde(alias = "daemon_json")]
    edited: Option<(PathBuf, Option<PathBuf>)>,
}

enum Step {
    Write {
        path: PathBuf,
        text: String,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    /// An engine's configuration file, changed in place.
    Edit {
        path: PathBuf,
        before: Option<Vec<u8>>,
        after: String,
        /// What must follow for the engine to see it.
        then: &'static str,
    },
}

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

fn setup(args: &SetupArgs) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
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
            match std::fs::read_to_string(&path) {
                Ok(t) if t == text => {}
                Ok(_) if !args.force => {
                    return Err(format!(
                        "{} exists with other contents (--force replaces it)",
                        path.display()
                    ));
                }
                _ => steps.push(Step::Write { path, text }),
            }
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
        .map_err(|e| format!("{}: {e}", record_path(args).display()))?;
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

/// dockerd still runs a container with any runtime it knows when `docker
/// run --runtime NAME` asks: say which, and what catches them.
fn note_other_runtimes(docker_host: Option<&str>) {
    let Ok(socket) = crate::sys::engine::socket_path(docker_host) else {
        return;
    };
    let Ok((runtimes, _)) =
        crate::sys::engine::runtimes(&socket, std::time::Duration::from_secs(5))
    else {
        return;
    };
    let others: Vec<String> = runtimes
        .iter()
        .filter(|(_, path)| !crate::cmd::apply::follow::is_cglimit(path))
        .map(|(name, _)| name.clone())
        .collect();
    if !others.is_empty() {
        println!(
            "note: dockerd also offers the runtimes {}; `docker run --runtime NAME` with one of them skips cglimit. \
             `cglimit watch --policy-dir /etc/cglimit/policies` (or `cglimit apply --all --watch`) brings such containers under policy as they start, and records and alerts on each",
            others.join(", ")
        );
    }
}

/// containerd reads its configuration only when it starts.
fn restart_containerd(restart: bool) -> Result<(), String> {
    if !restart {
        println!(
            "restart containerd to load the handler (running containers keep running): systemctl restart containerd"
        );
        return Ok(());
    }
    let st = std::process::Command::new("systemctl")
        .args(["restart", "containerd"])
        .status()
        .map_err(|e| format!("cannot run systemctl restart containerd: {e}"))?;
    if !st.success() {
        return Err(format!(
            "systemctl restart containerd failed ({st}): see journalctl -u containerd"
        ));
    }
    println!("containerd restarted");
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
fn wrapper_steps(args: &SetupArgs, exe: &Path, steps: &mut Vec<Step>) -> Result<PathBuf, String> {
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
) -> Result<PathBuf, String> {
    let link = exe.with_file_name(name);
    match std::fs::read_link(&link) {
        Ok(t) if t == Path::new("cglimit") || t == exe => {}
        Ok(t) if !args.force => {
            return Err(format!(
                "{} already points to {} (--force replaces it)",
                link.display(),
                t.display()
            ));
        }
        Err(_) if link.exists() && !args.force => {
            return Err(format!(
                "{} exists and is not a symlink (--force replaces it)",
                link.display()
            ));
        }
        _ => steps.push(Step::Symlink {
            path: link.clone(),
            target: PathBuf::from("cglimit"),
        }),
    }
    Ok(link)
}

/// podman runs no hook on `podman update`: it calls its OCI runtime's
/// `update` and nothing else. So podman's runtime becomes the wrapper (the
/// `cglimit-podman-runtime` link, in a containers.conf drop-in), in front
/// of the runtime podman used so far, deciding updates and restores; the
/// hook keeps deciding creates (`createsByHook`).
fn podman_runtime_steps(args: &SetupArgs, exe: &Path, steps: &mut Vec<Step>) -> Result<(), String> {
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
    match std::fs::read_to_string(&path) {
        Ok(t) if t == text => {}
        Ok(_) if !args.force => {
            return Err(format!(
                "{} exists with other contents (--force replaces it)",
                path.display()
            ));
        }
        _ => steps.push(Step::Write { path, text }),
    }
    Ok(())
}

/// The runtime podman runs now (`podman info`), else crun, else runc.
fn podman_runtime() -> String {
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

fn read_config(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn docker_steps(args: &SetupArgs, exe: &Path, steps: &mut Vec<Step>) -> Result<(), String> {
    let link = wrapper_steps(args, exe, steps)?;
    let before = read_config(&args.daemon_json)?;
    let config = (args.config != Path::new(DEFAULT_CONFIG)).then_some(args.config.as_path());
    let after = merge_daemon_json(before.as_deref(), &link, config, args.force)
        .map_err(|e| format!("{}: {e}", args.daemon_json.display()))?;
    if let Some(after) = after {
        steps.push(Step::Edit {
            path: args.daemon_json.clone(),
            before,
            after,
            then: "reload dockerd (SIGHUP)",
        });
    }
    Ok(())
}

fn containerd_steps(args: &SetupArgs, exe: &Path, steps: &mut Vec<Step>) -> Result<(), String> {
    let link = wrapper_steps(args, exe, steps)?;
    if args.config != Path::new(DEFAULT_CONFIG) {
        eprintln!(
            "note: containerd passes the wrapper no arguments: it reads {DEFAULT_CONFIG}, or the file {} names in containerd's environment, not {}",
            super::runtime::config::ENV,
            args.config.display()
        );
    }
    let path = &args.containerd_config;
    let before = read_config(path)?;
    let text = match &before {
        Some(b) => Some(
            std::str::from_utf8(b).map_err(|_| format!("{}: not UTF-8 text", path.display()))?,
        ),
        None => None,
    };
    let merged = containerd::merge_config(text, &args.handler, &link, args.default, args.force)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for w in &merged.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    if let Some(after) = merged.text {
        steps.push(Step::Edit {
            path: path.clone(),
            before,
            after,
            then: if args.restart {
                "restart containerd"
            } else {
                "containerd needs a restart"
            },
        });
    }
    Ok(())
}

/// daemon.json with cglimit registered as a runtime and made the default,
/// every other key and value kept in order; `None` when it already is.
/// A key already set to something else is refused unless `force`.
pub fn merge_daemon_json(
    before: Option<&[u8]>,
    runtime: &Path,
    config: Option<&Path>,
    force: bool,
) -> Result<Option<String>, String> {
    let mut v: Value = match before {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => {
            serde_json::from_slice(b).map_err(|e| format!("not JSON: {e}"))?
        }
        _ => Value::Object(Default::default()),
    };
    let Some(top) = v.as_object_mut() else {
        return Err("not a JSON object".into());
    };
    let mut entry = serde_json::json!({"path": runtime.display().to_string()});
    if let Some(c) = config {
        entry["runtimeArgs"] = serde_json::json!(["--config", c.display().to_string()]);
    }
    let runtimes = top
        .entry("runtimes")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(runtimes) = runtimes.as_object_mut() else {
        return Err("`runtimes` is not an object".into());
    };
    let mut changed = false;
    match runtimes.get("cglimit") {
        Some(old) if *old == entry => {}
        Some(old) if !force => {
            return Err(format!(
                "`runtimes.cglimit` is already {old} (--force replaces it)"
            ));
        }
        _ => {
            runtimes.insert("cglimit".into(), entry);
            changed = true;
        }
    }
    match top.get("default-runtime").and_then(Value::as_str) {
        Some("cglimit") => {}
        Some(other) if !force => {
            return Err(format!(
                "`default-runtime` is already {other:?} (--force makes it cglimit)"
            ));
        }
        _ => {
            top.insert("default-runtime".into(), "cglimit".into());
            changed = true;
        }
    }
    Ok(changed.then(|| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"))
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
fn configured_hooks_dir(files: &[&str], drop_in_dir: &str, table: &str) -> Option<PathBuf> {
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

fn describe(s: &Step) -> String {
    match s {
        Step::Write { path, text } => format!(
            "would create {} ({} lines)\n",
            path.display(),
            text.lines().count()
        ),
        Step::Symlink { path, target } => {
            format!("would link {} -> {}\n", path.display(), target.display())
        }
        Step::Edit {
            path,
            before,
            after,
            then,
        } => {
            let old = before
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let mut out = format!(
                "would change {}, then {then}:\n--- {0}\n+++ {0}\n",
                path.display()
            );
            out.push_str(&diff(&old, after));
            out
        }
    }
}

fn summary(s: &Step) -> String {
    match s {
        Step::Write { path, .. } => format!("created {}\n", path.display()),
        Step::Symlink { path, target } => {
            format!("linked {} -> {}\n", path.display(), target.display())
        }
        Step::Edit { path, before, .. } => match before {
            Some(_) => format!(
                "changed {} (the original is {})\n",
                path.display(),
                backup_of(path).display()
            ),
            None => format!("created {}\n", path.display()),
        },
    }
}

fn backup_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".before-cglimit");
    path.with_file_name(name)
}

fn perform(s: &Step, done: &mut Done) -> Result<(), String> {
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    match s {
        Step::Write { path, text } => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
            }
            crate::enforce::spec::write_atomically(path, text.as_bytes())
                .map_err(|e| err(path, e))?;
            done.created.push((path.clone(), text.clone()));
        }
        Step::Symlink { path, target } => {
            let _ = std::fs::remove_file(path);
            std::os::unix::fs::symlink(target, path).map_err(|e| err(path, e))?;
            done.created
                .push((path.clone(), target.display().to_string()));
        }
        Step::Edit {
            path,
            before,
            after,
            ..
        } => {
            let backup = match before {
                Some(b) => {
                    let bp = backup_of(path);
                    std::fs::write(&bp, b).map_err(|e| err(&bp, e))?;
                    Some(bp)
                }
                None => None,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
            }
            crate::enforce::spec::write_atomically(path, after.as_bytes())
                .map_err(|e| err(path, e))?;
            done.edited = Some((path.clone(), backup));
        }
    }
    Ok(())
}

fn undo(args: &SetupArgs) -> Result<(), String> {
    let rp = record_path(args);
    let text =
        std::fs::read(&rp).map_err(|e| format!("{}: {e} (nothing to undo)", rp.display()))?;
    let done: Done = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", rp.display()))?;
    if args.dry_run {
        if let Some((p, _)) = &done.edited {
            println!("would restore {}", p.display());
        }
        for (p, _) in &done.created {
            println!("would remove {}", p.display());
        }
        return Ok(());
    }
    if let Some((path, backup)) = &done.edited {
        match backup {
            Some(b) => {
                let bytes = std::fs::read(b).map_err(|e| format!("{}: {e}", b.display()))?;
                crate::enforce::spec::write_atomically(path, &bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let _ = std::fs::remove_file(b);
                println!("restored {}", path.display());
            }
            None => {
                let _ = std::fs::remove_file(path);
                println!("removed {}", path.display());
            }
        }
    }
    for (path, wrote) in done.created.iter().rev() {
        let still = match std::fs::read_link(path) {
            Ok(t) => t.display().to_string() == *wrote,
            Err(_) => std::fs::read_to_string(path).is_ok_and(|t| t == *wrote),
        };
        if still {
            let _ = std::fs::remove_file(path);
            println!("removed {}", path.display());
        } else if path.exists() {
            println!("kept {}: changed since setup", path.display());
        }
    }
    let _ = std::fs::remove_file(&rp);
    if done.edited.is_some() && args.engine == Engine::Containerd {
        restart_containerd(args.restart)?;
    }
    if done.edited.is_some() && args.engine == Engine::Docker {
        // dockerd's reload only applies keys present in the file: a
        // `runtimes` or `default-runtime` taken out stays until a restart.
        match reload_docker(args.docker_host.as_deref(), &args.daemon_json, false) {
            Ok(()) => println!("dockerd reloaded"),
            Err(_) => println!(
                "dockerd reloaded, but a reload keeps runtime settings that were removed: restart dockerd (systemctl restart docker) to stop using cglimit"
            ),
        }
    }
    Ok(())
}

/// Sends dockerd SIGHUP ([`dockerd_pid`]) and, when `expect_cglimit`, waits until it
/// lists the runtime as registered and the default.
fn reload_docker(
    docker_host: Option<&str>,
    daemon_json: &Path,
    expect_cglimit: bool,
) -> Result<(), String> {
    use crate::sys::engine;
    let socket = engine::socket_path(docker_host).map_err(|e| e.to_string())?;
    let pid = dockerd_pid(&socket, daemon_json).ok_or_else(|| {
        format!(
            "cannot find dockerd's pid (neither the process answering on {} nor a pidfile is dockerd); reload it yourself: kill -HUP $(pidof dockerd)",
            socket.display()
        )
    })?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .map_err(|e| format!("cannot signal dockerd (pid {pid}): {e}"))?;
    let t = Instant::now();
    loop {
        let (registered, default) = docker_runtime(&socket)?;
        if registered == expect_cglimit && (default == expect_cglimit || !expect_cglimit) {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "dockerd (pid {pid}) does not list the runtime after a reload (registered: {registered}, default: {default}); see its log"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether dockerd lists the runtime `cglimit`, and whether it is its
/// default (`GET /info`).
pub fn docker_runtime(socket: &Path) -> Result<(bool, bool), String> {
    let body = crate::sys::engine::get(socket, "/info", Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let info: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok((
        info["Runtimes"].get("cglimit").is_some(),
        info["DefaultRuntime"] == "cglimit",
    ))
}

/// dockerd's pid: the process answering on its socket (when dockerd
/// created the socket itself; under socket activation the peer is the
/// init system, which must not get the signal), else its pidfile
/// (daemon.json's `pidfile`, default `/var/run/docker.pid`). Only a process
/// named `dockerd` qualifies.
fn dockerd_pid(socket: &Path, daemon_json: &Path) -> Option<i32> {
    let is_dockerd = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "dockerd")
    };
    if let Ok(pid) = peer_pid(socket)
        && is_dockerd(pid)
    {
        return Some(pid);
    }
    let pidfile = std::fs::read(daemon_json)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["pidfile"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.pid"));
    std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|p| is_dockerd(*p))
}

pub(crate) fn peer_pid(socket: &Path) -> std::io::Result<i32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let s = std::os::unix::net::UnixStream::connect(socket)?;
    let c = getsockopt(&s, PeerCredentials).map_err(std::io::Error::from)?;
    Ok(c.pid())
}

/// A line diff of two small texts (`-` removed, `+` added, ` ` kept),
/// by their longest common subsequence.
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!(" {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_json_keeps_everything_else() {
        let before = br#"{"log-driver": "journald", "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}, "storage-driver": "overlay2"}"#;
        let after = merge_daemon_json(
            Some(before),
            Path::new("/usr/local/bin/cglimit-runtime"),
            None,
            false,
        )
        .unwrap()
        .unwrap();
        let v: Value = serde_json::from_str(&after).unwrap();
        assert_eq!(v["log-driver"], "journald");
        assert_eq!(v["storage-driver"], "overlay2");
        assert_eq!(
            v["runtimes"]["nvidia"]["path"],
            "/usr/bin/nvidia-container-runtime"
        );
        assert_eq!(
            v["runtimes"]["cglimit"]["path"],
            "/usr/local/bin/cglimit-runtime"
        );
        assert_eq!(v["default-runtime"], "cglimit");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "log-driver",
                "runtimes",
                "storage-driver",
                "default-runtime"
            ]
        );
        // Already wired: nothing to change.
        assert_eq!(
            merge_daemon_json(
                Some(after.as_bytes()),
                Path::new("/usr/local/bin/cglimit-runtime"),
                None,
                false
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn daemon_json_conflicts_are_refused_unless_forced() {
        let other = br#"{"default-runtime": "nvidia"}"#;
        let e = merge_daemon_json(Some(other), Path::new("/x"), None, false).unwrap_err();
        assert!(e.contains("`default-runtime` is already \"nvidia\""), "{e}");
        assert!(
            merge_daemon_json(Some(other), Path::new("/x"), None, true)
                .unwrap()
                .is_some()
        );
        let mine = br#"{"runtimes": {"cglimit": {"path": "/opt/other"}}}"#;
        assert!(merge_daemon_json(Some(mine), Path::new("/x"), None, false).is_err());
        assert!(merge_daemon_json(Some(b"[1]"), Path::new("/x"), None, false).is_err());
        assert!(
            merge_daemon_json(Some(b"{"), Path::new("/x"), None, false)
                .unwrap_err()
                .starts_with("not JSON")
        );
        // Missing or empty: created; a config path other than the default
        // goes in runtimeArgs.
        let v: Value = serde_json::from_str(
            &merge_daemon_json(None, Path::new("/x"), Some(Path::new("/c.yaml")), false)
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            v["runtimes"]["cglimit"]["runtimeArgs"],
            serde_json::json!(["--config", "/c.yaml"])
        );
    }

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

    #[test]
    fn a_diff_shows_what_changes() {
        assert_eq!(diff("a\nb\nc\n", "a\nc\nd\n"), " a\n-b\n c\n+d\n");
    }
}
