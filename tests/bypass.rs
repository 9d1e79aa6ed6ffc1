//! `docker run --runtime runc` skips the wrapper registered as dockerd's
//! runtime: `-m 3g` got 3G, no `-m` no limit at all, and nothing recorded
//! it. `apply --watch` and `watch --policy-dir` follow the engine's starts
//! and bring such a container under its policy within a second, recorded
//! as `"source": "watch"` with the runtime it used, counted and alerted on.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::{Dockerd, runtime_args};
use common::watch::{Watcher, start_watch_in};
use common::*;

/// The v1 memory limit of a Docker container, read from the host.
fn limit_of(d: &Dockerd, name: &str) -> Option<u64> {
    let out = d.docker(&["inspect", "-f", "{{.State.Pid}}", name]);
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cg
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))?;
    let root = std::path::Path::new("/sys/fs/cgroup/memory");
    std::fs::read_to_string(
        root.join(path.trim_start_matches('/'))
            .join("memory.limit_in_bytes"),
    )
    .ok()?
    .trim()
    .parse()
    .ok()
}

/// Starts `name` through plain runc and waits for its limit to become
/// `want`; how long that took after `docker run -d` returned.
fn bypass(d: &Dockerd, name: &str, flags: &[&str], want: u64) -> Duration {
    let out = d.run_plain(name, flags, &["sleep", "600"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let t = Instant::now();
    loop {
        if limit_of(d, name) == Some(want) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{name}: limit {:?}, want {want}",
            limit_of(d, name)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn bypass_records(lab: &Lab) -> Vec<serde_json::Value> {
    lab.decisions()
        .into_iter()
        .filter(|r| r["source"] == "watch")
        .collect()
}

#[test]
fn a_container_started_through_another_runtime_is_brought_under_policy() {
    let lab = Lab::new("bypass");
    let d = Dockerd::start(&lab, &runtime_args(&lab));
    let docker_host = format!("unix://{}", d.sock.display());
    // apply --watch, its periodic pass a minute away: the start events act.
    let apply = Watcher(
        Command::new(BIN)
            .arg("--log-file")
            .arg(lab.dir.join("apply.log"))
            .args([
                "apply",
                "--all",
                "--watch",
                "--interval",
                "60s",
                "--no-podman",
            ])
            .arg("--policy-dir")
            .arg(&lab.policy_dir)
            .arg("--state-dir")
            .arg(&lab.state_dir)
            .args(["--docker-host", &docker_host])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let big = bypass(&d, "byp-big", &["-m", "3g", "--memory-swap", "3g"], 256 * M);
    let none = bypass(&d, "byp-none", &[], 64 * M);
    eprintln!("brought under policy {big:?} and {none:?} after docker run returned");
    assert!(big < Duration::from_secs(1) && none < Duration::from_secs(1));
    // Through the wrapper: nothing for the follower to do.
    let out = d.run_detached("wrapped", "600");
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(500));
    let recs = bypass_records(&lab);
    assert_eq!(recs.len(), 2, "{recs:?}");
    for r in &recs {
        assert_eq!(r["bypassed_runtime"], "runc", "{r}");
        assert_eq!(r["outcome"], "applied", "{r}");
    }
    drop(apply);

    // The watcher with --policy-dir does the same, and counts it.
    let scope: Vec<String> = ["--docker-host", &docker_host, "--no-podman", "--policy-dir"]
        .iter()
        .map(|s| s.to_string())
        .chain([lab.policy_dir.display().to_string()])
        .collect();
    let (_w, port) = start_watch_in(&lab, None, &scope);
    std::thread::sleep(Duration::from_millis(500));
    bypass(&d, "byp-watch", &["-m", "2g"], 256 * M);
    let t = Instant::now();
    loop {
        let text = common::watch::metrics(port);
        if text.contains("cglimit_host_events_total{kind=\"runtime_bypassed\"} 1") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(bypass_records(&lab).len(), 3);
    let events = std::fs::read_to_string(lab.state_dir.join("events.jsonl")).unwrap();
    assert!(
        events.contains("runtime_bypassed") && events.contains("byp-watch"),
        "{events}"
    );
    let _ = d.docker(&["rm", "-f", "byp-big", "byp-none", "wrapped", "byp-watch"]);
}
