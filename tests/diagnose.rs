//! From alert to cause, with real runc containers under a 64M limit: the
//! kernel's OOM report on the `oom_kill` event (a child killed, and a
//! container's init), and `cglimit diagnose` telling a heap leak in one
//! process of three, a tmpfs filling up, a file read over and over and a
//! steady container apart — and the watcher's leak warning saying what
//! grows, in whom.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::watch::*;
use common::*;

/// The cgroup of the container `lab.detached(name, …)` started.
fn cgroup_dir(lab: &Lab, id: &str) -> PathBuf {
    let name = id.strip_prefix(&format!("{}-", lab.name)).unwrap_or(id);
    v1_memory_root()
        .join(lab.cgroup_parent.trim_start_matches('/'))
        .join(name)
}

/// The host pid of the process in `id`'s cgroup that is `sh -c` of a
/// script starting with `marker`, waiting for it to appear.
fn pid_with(lab: &Lab, id: &str, marker: &str) -> i32 {
    let t = Instant::now();
    loop {
        let procs =
            std::fs::read_to_string(cgroup_dir(lab, id).join("cgroup.procs")).unwrap_or_default();
        for p in procs.lines() {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if argv.len() > 2 && argv[1] == b"-c" && argv[2].starts_with(marker.as_bytes()) {
                return p.parse().unwrap();
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no process with {marker:?} in {id}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for(lab: &Lab, what: &str, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let t = Instant::now();
    loop {
        if let Some(e) = events(lab).into_iter().find(|e| f(e)) {
            return e;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no {what}; events {:?}; watch log {}",
            events(lab),
            std::fs::read_to_string(lab.dir.join("watch.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn diagnose(lab: &Lab, target: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("diagnose")
        .arg(target)
        .arg("--state-dir")
        .arg(&lab.state_dir)
        .args(["--no-docker", "--no-podman"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn diagnose_json(lab: &Lab, target: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["-o", "json"];
    args.extend_from_slice(extra);
    let out = diagnose(lab, target, &args);
    assert!(out.status.success(), "diagnose {target}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// 100 MiB that no page cache holds, so that reading it charges the reader.
fn uncached_file(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..100 {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
    nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .unwrap();
}

#[test]
fn oom_kill_events_carry_the_kernels_report() {
    let mut lab = Lab::new("diagoom");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (_w, _) = start_watch(&lab, None);
    // A child killed, the container's shell living on.
    let child = lab.detached(
        "child",
        None,
        "sh -c ': victim; sleep 3; exec busybox dd if=/dev/zero of=/dev/null bs=100M count=1'; echo survived; sleep 600",
    );
    let victim = pid_with(&lab, &child, ": victim");
    let e = wait_for(&lab, "oom_kill of the child", |e| {
        e["kind"] == "oom_kill" && e["container"]["id"] == child.as_str()
    });
    assert_eq!(e["victim"]["pid"], victim, "{e}");
    assert_eq!(e["victim"]["comm"], "busybox", "{e}");
    let anon = e["victim"]["anon_rss"].as_u64().unwrap();
    assert!((32 * M..=64 * M).contains(&anon), "anon_rss {anon}: {e}");
    assert!(e["memory"]["anon"].as_u64().is_some(), "{e}");
    let tasks = e["tasks"].as_array().expect("the kernel's task list");
    assert!(tasks.iter().any(|t| t["pid"] == victim), "{e}");

    // The container's init.
    let init = lab.detached(
        "init",
        None,
        "sleep 3; exec busybox dd if=/dev/zero of=/dev/null bs=100M count=1",
    );
    let state = Command::new("runc")
        .args(["state", &init])
        .output()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let e = wait_for(&lab, "oom_kill of the init", |e| {
        e["kind"] == "oom_kill" && e["container"]["id"] == init.as_str()
    });
    assert_eq!(e["victim"]["pid"], pid, "{e}");
    assert!(e["victim"]["anon_rss"].as_u64().unwrap() >= 32 * M, "{e}");

    // diagnose names the kill: of the running child container, and of the
    // init's container after it is gone.
    let d = diagnose_json(&lab, &child, &[]);
    assert_eq!(d["oom_kills"][0]["victim"]["pid"], victim, "{d}");
    assert_eq!(d["container"]["running"], true);
    let t = Instant::now();
    while Command::new("runc")
        .args(["state", &init])
        .output()
        .unwrap()
        .stdout
        .windows(7)
        .any(|w| w == b"running")
    {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("runc").args(["delete", "-f", &init]).status();
    let d = diagnose_json(&lab, &init, &[]);
    assert_eq!(d["container"]["running"], false, "{d}");
    assert_eq!(d["oom_kills"][0]["victim"]["pid"], pid, "{d}");
    assert!(
        d["verdict"]["text"]
            .as_str()
            .unwrap()
            .contains("OOM-killed"),
        "{d}"
    );
}

#[test]
fn diagnose_tells_a_leak_a_tmpfs_the_cache_and_a_steady_one_apart() {
    let mut lab = Lab::new("diagkinds");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (_w, port) = start_watch_with(&lab, &["--leak-window", "12"]);
    // Three processes, one of them keeping 64 KiB more every 50 ms (a new
    // shell variable each time).
    let leak = lab.detached(
        "leak",
        None,
        "sleep 600 & sleep 600 & sh -c ': leaker; x=$(busybox head -c 65536 /dev/zero | busybox tr \"\\0\" a); i=0; while :; do eval \"v$i=\\$x\"; i=$((i+1)); sleep 0.05; done'",
    );
    let shm = lab.detached(
        "shm",
        None,
        "while :; do busybox head -c 65536 /dev/zero >> /big/f; sleep 0.05; done",
    );
    let data = lab.dir.join("cache").join("rootfs");
    std::fs::create_dir_all(&data).unwrap();
    uncached_file(&data.join("data"));
    let cache = lab.detached("cache", None, "while :; do cat /data > /dev/null; done");
    let steady = lab.detached("steady", None, "sleep 600");
    let leaker = pid_with(&lab, &leak, ": leaker");

    let d = diagnose_json(&lab, &leak, &["--window", "3s"]);
    assert_eq!(d["verdict"]["kind"], "anon-leak", "{d}");
    assert!(
        d["verdict"]["text"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {leaker} ")),
        "{d}"
    );
    // The leaker (the shell execs it) and two sleeps; and the leaker's own
    // 50 ms `sleep`, mostly, when the reading catches one.
    let procs = d["processes"].as_array().unwrap();
    let sleeps = procs.iter().filter(|p| p["comm"] == "sleep").count();
    assert!(sleeps == 2 || sleeps == 3, "{d}");
    assert_eq!(procs.len() - sleeps, 1, "the leaker: {d}");
    assert!(
        procs.iter().all(|p| p["growth_bytes_per_s"].is_number()),
        "{d}"
    );
    assert_eq!(d["growth"]["kind"], "anon");
    assert!(d["limits"]["memory"] == 64 * M, "{d}");
    for k in ["anon", "file", "shmem", "kernel", "sock", "swap"] {
        assert!(d["memory"][k].is_u64(), "{k}: {d}");
    }
    let d = diagnose_json(&lab, &shm, &["--window", "3s"]);
    assert_eq!(d["verdict"]["kind"], "shmem-leak", "{d}");
    assert!(d["memory"]["shmem"].as_u64().unwrap() > M, "{d}");
    let d = diagnose_json(&lab, &cache, &["--window", "3s"]);
    assert_eq!(d["verdict"]["kind"], "cache", "{d}");
    let d = diagnose_json(&lab, &steady, &["--window", "2s"]);
    assert_eq!(d["verdict"]["kind"], "stable", "{d}");
    // The text form says the same, with the process named.
    let out = diagnose(&lab, &leak, &["--window", "2s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("verdict:    anon-leak") && text.contains(&leaker.to_string()),
        "{text}"
    );

    // The watcher's warnings say what grows, and in whom; the cache
    // reader is never warned about.
    let e = wait_for(&lab, "a leak warning for the leaker", |e| {
        e["kind"] == "leak_suspected" && e["container"]["id"] == leak.as_str()
    });
    assert_eq!(e["growth"], "anon", "{e}");
    assert_eq!(e["process"]["pid"], leaker, "{e}");
    let e = wait_for(&lab, "a leak warning for the tmpfs writer", |e| {
        e["kind"] == "leak_suspected" && e["container"]["id"] == shm.as_str()
    });
    assert_eq!(e["growth"], "shmem", "{e}");
    assert!(
        !events(&lab)
            .iter()
            .any(|e| e["kind"] == "leak_suspected" && e["container"]["id"] == cache.as_str()),
        "{:?}",
        events(&lab)
    );
    // Without a window, diagnose takes the watcher's growth.
    let d = diagnose_json(&lab, &shm, &[]);
    assert_eq!(
        (d["growth"]["from"].as_str(), d["verdict"]["kind"].as_str()),
        (Some("watch"), Some("shmem-leak")),
        "{d}"
    );
    // The breakdown is in the metrics.
    let m = metrics(port);
    assert!(
        m.lines().any(|l| l.starts_with("cglimit_memory_bytes{")
            && l.contains(&shm)
            && l.contains("kind=\"shmem\"")
            && l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > M as f64)),
        "{m}"
    );
}
