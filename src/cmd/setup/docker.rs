//! Docker: `runtimes.cglimit` and `default-runtime` merged into
//! `daemon.json`, dockerd reloaded (SIGHUP) and asked whether it lists the
//! runtime; the runtimes that would skip cglimit named.

use super::plan::{Step, read_config};
use super::*;

/// dockerd still runs a container with any runtime it knows when `docker
/// run --runtime NAME` asks: say which, and what catches them.
pub(super) fn note_other_runtimes(docker_host: Option<&str>) {
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

pub(super) fn docker_steps(
    args: &SetupArgs,
    exe: &Path,
    steps: &mut Vec<Step>,
) -> Result<(), SetupError> {
    let link = wrapper_steps(args, exe, steps)?;
    let before = read_config(&args.daemon_json)?;
    let config = (args.config != Path::new(DEFAULT_CONFIG)).then_some(args.config.as_path());
    let after = merge_daemon_json(before.as_deref(), &link, config, args.force)
        .map_err(SetupError::config(&args.daemon_json))?;
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

/// daemon.json with cglimit registered as a runtime and made the default,
/// every other key and value kept in order; `None` when it already is.
/// A key already set to something else is refused unless `force`.
pub fn merge_daemon_json(
    before: Option<&[u8]>,
    runtime: &Path,
    config: Option<&Path>,
    force: bool,
) -> Result<Option<String>, ConfigProblem> {
    let layout = |m: String| ConfigProblem::Layout(m);
    let mut v: Value = match before {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => {
            serde_json::from_slice(b).map_err(ConfigProblem::Json)?
        }
        _ => Value::Object(Default::default()),
    };
    let Some(top) = v.as_object_mut() else {
        return Err(layout("not a JSON object".into()));
    };
    let mut entry = serde_json::json!({"path": runtime.display().to_string()});
    if let Some(c) = config {
        entry["runtimeArgs"] = serde_json::json!(["--config", c.display().to_string()]);
    }
    let runtimes = top
        .entry("runtimes")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(runtimes) = runtimes.as_object_mut() else {
        return Err(layout("`runtimes` is not an object".into()));
    };
    let mut changed = false;
    match runtimes.get("cglimit") {
        Some(old) if *old == entry => {}
        Some(old) if !force => {
            return Err(layout(format!(
                "`runtimes.cglimit` is already {old} (--force replaces it)"
            )));
        }
        _ => {
            runtimes.insert("cglimit".into(), entry);
            changed = true;
        }
    }
    match top.get("default-runtime").and_then(Value::as_str) {
        Some("cglimit") => {}
        Some(other) if !force => {
            return Err(layout(format!(
                "`default-runtime` is already {other:?} (--force makes it cglimit)"
            )));
        }
        _ => {
            top.insert("default-runtime".into(), "cglimit".into());
            changed = true;
        }
    }
    Ok(changed.then(|| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"))
}

/// Sends dockerd SIGHUP ([`dockerd_pid`]) and, when `expect_cglimit`, waits until it
/// lists the runtime as registered and the default.
pub(super) fn reload_docker(
    docker_host: Option<&str>,
    daemon_json: &Path,
    expect_cglimit: bool,
) -> Result<(), SetupError> {
    use crate::sys::engine;
    let socket = engine::socket_path(docker_host)?;
    let pid = dockerd_pid(&socket, daemon_json).ok_or_else(|| {
        SetupError::NoDockerd(format!(
            "cannot find dockerd's pid (neither the process answering on {} nor a pidfile is dockerd); reload it yourself: kill -HUP $(pidof dockerd)",
            socket.display()
        ))
    })?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .map_err(|source| SetupError::Signal { pid, source })?;
    let t = Instant::now();
    loop {
        let (registered, default) = docker_runtime(&socket)?;
        if registered == expect_cglimit && (default == expect_cglimit || !expect_cglimit) {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(10) {
            return Err(SetupError::NotReloaded {
                pid,
                registered,
                default,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether dockerd lists the runtime `cglimit`, and whether it is its
/// default (`GET /info`).
pub fn docker_runtime(socket: &Path) -> Result<(bool, bool), crate::sys::engine::EngineError> {
    use crate::sys::engine;
    let body = engine::get(socket, "/info", Duration::from_secs(5))?;
    let info: Value = serde_json::from_slice(&body).map_err(engine::EngineError::Unexpected)?;
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
pub(super) fn dockerd_pid(socket: &Path, daemon_json: &Path) -> Option<i32> {
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

pub fn peer_pid(socket: &Path) -> std::io::Result<i32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let s = std::os::unix::net::UnixStream::connect(socket)?;
    let c = getsockopt(&s, PeerCredentials).map_err(std::io::Error::from)?;
    Ok(c.pid())
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
        let e = merge_daemon_json(Some(other), Path::new("/x"), None, false)
            .unwrap_err()
            .to_string();
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
                .to_string()
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
}
