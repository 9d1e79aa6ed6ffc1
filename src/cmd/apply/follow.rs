//! Containers started through a runtime other than cglimit's.
//!
//! dockerd lets `docker run --runtime runc` (or any runtime in its
//! `daemon.json`, `io.containerd.runc.v2` included) skip the wrapper that
//! is its default: such a container starts with what it asked, or with no
//! limit at all. The engine reports every start on its event stream; this
//! follows it, asks which runtime the container was created with, and
//! brings one that skipped cglimit under its policy at once, through the
//! same step as every `apply` pass. The record says `"source": "watch"`
//! and `"bypassed_runtime"`, which the watcher counts and alerts on.
//!
//! podman runs cglimit's hook whatever the runtime, unless told to read
//! another hooks directory (`podman --hooks-dir /empty run`). Its event
//! stream is `podman events`; a container that starts with no decision
//! record of the hook's is brought under its policy the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Status, one};
use crate::cli::ApplyArgs;
use crate::facts::discover;
use crate::sys::{engine, events};

/// Follows the Docker engine's starts on a thread of its own, for as long
/// as the process runs; reconnects when the stream breaks. `None` when
/// there is no engine to follow.
pub fn spawn(args: ApplyArgs) {
    if !args.sources.no_podman && args.state_dir.is_some() {
        let a = args.clone();
        let _ = std::thread::Builder::new()
            .name("podman-events".into())
            .spawn(move || follow_podman(&a));
    }
    if args.sources.no_docker {
        return;
    }
    let Ok(socket) = engine::socket_path(args.sources.docker_host.as_deref()) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("docker-events".into())
        .spawn(move || follow(&args, &socket));
}

/// Follows `podman events` (a process printing one JSON object a line),
/// started again from where it stopped whenever it ends.
fn follow_podman(args: &ApplyArgs) {
    use std::io::BufRead;
    #[derive(serde::Deserialize)]
    struct PodmanEvent {
        #[serde(rename = "ID", default)]
        id: String,
        /// RFC 3339 with nanoseconds.
        #[serde(rename = "Time", default)]
        time: String,
    }
    let nanos = |t: &str| {
        ::time::OffsetDateTime::parse(t, &::time::format_description::well_known::Rfc3339)
            .map_or(0, |t| t.unix_timestamp_nanos() as i64)
    };
    // As for Docker: replayed from the second of the last start handled,
    // what came before it left out by its time.
    let mut last = now_ns();
    let mut said = false;
    loop {
        let child = discover::podman_command(&args.sources)
            .args(["events", "--format", "json", "--filter", "type=container"])
            .args(["--filter", "event=start", "--since"])
            .arg((last / 1_000_000_000).to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    for line in std::io::BufReader::new(out).lines() {
                        let Ok(line) = line else { break };
                        let Ok(e) = serde_json::from_str::<PodmanEvent>(&line) else {
                            continue;
                        };
                        let at = nanos(&e.time);
                        if at > last {
                            last = at;
                            podman_started(args, &e.id);
                        }
                    }
                }
                let _ = child.wait();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if !std::mem::replace(&mut said, true) => {
                log::warn!("not following podman's starts ({e}); trying again every second");
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Whether the hook recorded a decision for container `id`: it decides
/// before the container's process runs, so a start without one skipped it.
fn decided_by_hook(state_dir: &Path, id: &str) -> bool {
    let needle = format!("\"id\":\"{id}\"");
    std::fs::read_to_string(state_dir.join(crate::record::DECISIONS))
        .is_ok_and(|t| t.lines().rev().any(|l| l.contains(&needle)))
}

fn podman_started(args: &ApplyArgs, id: &str) {
    let Some(state_dir) = &args.state_dir else {
        return;
    };
    if id.is_empty() || decided_by_hook(state_dir, id) {
        return;
    }
    let runtime = discover::podman_command(&args.sources)
        .args(["inspect", "--format", "{{.OCIRuntime}}", id])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "podman".into());
    let runtime = format!("{runtime} (without cglimit's hook)");
    let policies = match args.policy.open(None) {
        Ok(p) => p,
        Err(e) => {
            log::error!("podman container {id} started without cglimit's hook: {e}");
            return;
        }
    };
    let mut problems = Vec::new();
    let Some(target) = discover::all(&args.sources, &mut problems)
        .into_iter()
        .find(|t| t.facts.id == id)
    else {
        log::error!("podman container {id} started without cglimit's hook and was not found");
        return;
    };
    let row = one(args, &policies, &target, Some(&runtime));
    log::warn!(
        "{}: started through podman without cglimit's hook: {}",
        row.container,
        row.reason
    );
}

fn follow(args: &ApplyArgs, socket: &Path) {
    let mut said = false;
    // Each (re)connect replays from the second of the last start handled;
    // what that replays again, or what happened before this process
    // started following, is left out by its time in nanoseconds.
    let mut last = now_ns();
    loop {
        let r = events::follow_starts(socket, last / 1_000_000_000, |e| {
            said = false;
            if e.time_nano > last {
                last = e.time_nano;
                started(args, socket, &e.id);
            }
            true
        });
        if let Err(e) = r
            && !std::mem::replace(&mut said, true)
        {
            log::warn!("not following the Docker engine's starts ({e}); trying again every second");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Whether a runtime's path is cglimit's own (the wrapper as `cglimit
/// runtime …` or the `cglimit-runtime` link).
pub fn is_cglimit(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .is_some_and(|n| n == "cglimit" || n == "cglimit-runtime")
}

/// The runtime a container started with when that is not cglimit's.
fn bypassed(
    socket: &Path,
    id: &str,
    timeout: Duration,
) -> Result<Option<String>, engine::EngineError> {
    let runtime = engine::runtime_of(socket, id, timeout)?;
    let (runtimes, default) = engine::runtimes(socket, timeout)?;
    let name = if runtime.is_empty() { default } else { runtime };
    // dockerd's built-in runtimes are not in its list with a path.
    let path = runtimes.get(&name).map(PathBuf::from).unwrap_or_default();
    Ok((!is_cglimit(&path.to_string_lossy())).then_some(name))
}

fn started(args: &ApplyArgs, socket: &Path, id: &str) {
    let timeout = args.sources.engine_timeout;
    let short: String = id.chars().take(12).collect();
    let runtime = match bypassed(socket, id, timeout) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            log::warn!("container {short} started: {e}");
            return;
        }
    };
    let policies = match args.policy.open(None) {
        Ok(p) => p,
        Err(e) => {
            log::error!("container {short} started through {runtime}, skipping cglimit: {e}");
            return;
        }
    };
    let target = match discover::docker_one(socket, id, timeout) {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(p) => {
            log::error!("{}: started through {runtime}: {}", p.container, p.message);
            return;
        }
    };
    let row = one(args, &policies, &target, Some(&runtime));
    let verb = match row.status {
        Status::Compliant => "within its policy",
        Status::Fixed => "brought under its policy",
        Status::Held => "held",
        Status::WouldFix | Status::NotFixed => "NOT brought under its policy",
    };
    log::warn!(
        "{}: started through runtime {runtime:?}, which skips cglimit: {verb}: {}",
        row.container,
        row.reason
    );
}
