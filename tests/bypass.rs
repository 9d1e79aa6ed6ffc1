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

/// `apply --all --watch` on the lab's policies, its periodic pass a
/// minute away, so that only the followed starts act; killed on drop.
fn apply_watch(lab: &Lab, flags: &[&str], env: &[(&str, std::path::PathBuf)]) -> Watcher {
    Watcher(
        Command::new(BIN)
            .arg("--log-file")
            .arg(lab.dir.join("apply.log"))
            .args(["apply", "--all", "--watch", "--interval", "60s"])
            .args(flags)
            .arg("--policy-dir")
            .arg(&lab.policy_dir)
            .arg("--state-dir")
            .arg(&lab.state_dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
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
    let apply = apply_watch(&lab, &["--no-podman", "--docker-host", &docker_host], &[]);
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

/// podman runs cglimit's hook whatever the runtime, unless told to read
/// another hooks directory: `podman --hooks-dir /empty run -m 3g` got 3G.
/// `apply --watch` follows `podman events` and brings a container that
/// started with no decision of the hook's under its policy.
#[test]
fn a_podman_container_started_without_the_hook_is_brought_under_policy() {
    let mut lab = Lab::new("bypasspod");
    let (conf, storage) = podman_lab(&mut lab);
    let env = [
        ("CONTAINERS_CONF", conf.clone()),
        ("CONTAINERS_STORAGE_CONF", storage.clone()),
    ];
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.envs(env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::null());
        c.output().unwrap()
    };
    let rootfs = lab.dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep")).unwrap();
    let tar = lab.dir.join("rootfs.tar");
    assert!(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    let image = format!("localhost/{}", lab.name.to_lowercase());
    let out = podman(&["import", &tar.display().to_string(), &image]);
    assert!(out.status.success(), "{}", stderr(&out));
    let empty = lab.dir.join("no-hooks");
    std::fs::create_dir_all(&empty).unwrap();
    let _apply = apply_watch(&lab, &["--no-docker"], &env);
    std::thread::sleep(Duration::from_millis(1500));
    let out = podman(&[
        "--hooks-dir",
        &empty.display().to_string(),
        "run",
        "-d",
        "--net",
        "none",
        "--cgroup-parent",
        &lab.cgroup_parent,
        "-m",
        "3g",
        &image,
        "sleep",
        "600",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let pid = String::from_utf8_lossy(&podman(&["inspect", "-f", "{{.State.Pid}}", &id]).stdout)
        .trim()
        .to_string();
    let limit = || -> Option<u64> {
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let path = cg
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))?;
        std::fs::read_to_string(
            v1_memory_root()
                .join(path.trim_start_matches('/'))
                .join("memory.limit_in_bytes"),
        )
        .ok()?
        .trim()
        .parse()
        .ok()
    };
    let t = Instant::now();
    while limit() != Some(256 * M) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "limit {:?}; {}",
            limit(),
            std::fs::read_to_string(lab.dir.join("apply.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "podman container brought under policy {:?} after podman run returned",
        t.elapsed()
    );
    let rec = bypass_records(&lab);
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert!(
        rec[0]["bypassed_runtime"]
            .as_str()
            .unwrap()
            .contains("without cglimit's hook"),
        "{}",
        rec[0]
    );
}
