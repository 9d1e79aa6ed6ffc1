//! `cglimit watch`, `events` and `top` with real runc containers and the
//! hook: OOM kills recorded within a second and counted in /metrics, no
//! duplicates after a restart, a leak flagged and a flat workload not.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::watch::*;
use common::*;

/// `docker run --oom-kill-disable` (runc's `disableOOMKiller`): at its
/// limit the container's tasks wait under the OOM and nothing is killed.
/// The notification is recorded as an `oom`, never as a kill; and while
/// the watcher waits for a kill that does not come, another container's
/// kill is recorded with its own line.
#[test]
fn an_oom_with_the_killer_disabled_is_no_kill_and_holds_no_other() {
    let mut lab = Lab::new("watchnokill");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (_w, _) = start_watch(&lab, None);
    let grow = "sh -c 's=aaaaaaaaaaaaaaaa; while :; do s=\"$s$s\"; done'";
    let bundle = lab.bundle_with(
        "stuck",
        None,
        "createRuntime",
        lab.hook_args(),
        &format!("sleep 2; {grow}"),
    );
    let config = bundle.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["linux"]["resources"]["memory"]["disableOOMKiller"] = true.into();
    std::fs::write(&config, c.to_string()).unwrap();
    let stuck = format!("{}-stuck", lab.name);
    lab.start_detached(None, &bundle, &stuck);
    let killed = lab.detached("killed", None, &format!("sleep 2.5; {grow}; sleep 600"));
    let t = Instant::now();
    let of = |e: &serde_json::Value, kind: &str, id: &str| {
        e["kind"] == kind && e["container"]["id"] == id
    };
    while t.elapsed() < Duration::from_secs(20)
        && !(events(&lab).iter().any(|e| of(e, "oom", &stuck))
            && events(&lab).iter().any(|e| of(e, "oom_kill", &killed)))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Time for a wrongly claimed kill to be recorded.
    std::thread::sleep(Duration::from_millis(500));
    let evs = events(&lab);
    assert!(
        evs.iter().any(|e| of(e, "oom", &stuck)),
        "the waiting container's OOM is recorded: {evs:?}"
    );
    assert!(
        !evs.iter().any(|e| of(e, "oom_kill", &stuck)),
        "no kill is claimed where none happened: {evs:?}"
    );
    assert!(
        evs.iter()
            .any(|e| of(e, "oom_kill", &killed) && e["new"] == 1),
        "the other container's kill is recorded: {evs:?}"
    );
}

#[test]
fn oom_kills_are_recorded_counted_and_not_repeated() {
    let mut lab = Lab::new("watchoom");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (w, port) = start_watch(&lab, None);
    // A child doubles a string until the 64M limit: the OOM killer takes it,
    // the container's shell lives on.
    let id = lab.detached("oom",
        None,
        "sleep 2; sh -c 's=aaaaaaaaaaaaaaaa; while :; do s=\"$s$s\"; done'; echo survived; sleep 600",
    );
    let t = Instant::now();
    let mut first_kill = None;
    while t.elapsed() < Duration::from_secs(20) {
        if let Some(e) = events(&lab).into_iter().find(|e| e["kind"] == "oom_kill") {
            first_kill = Some(e);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = first_kill.unwrap_or_else(|| {
        panic!(
            "no oom_kill event; events {:?}; watch log {}",
            events(&lab),
            std::fs::read_to_string(lab.dir.join("watch.log")).unwrap_or_default()
        )
    });
    assert_eq!(e["container"]["id"], id.as_str());
    assert_eq!(e["new"], 1);
    assert_eq!(e["limit"], 64 * M);
    // Recorded within a second of the kill: the kernel's counter and the
    // line's time stamp are compared through the OOM notification, which
    // precedes the kill by microseconds.
    let evs = events(&lab);
    let oom = evs
        .iter()
        .find(|e| e["kind"] == "oom")
        .expect("an oom event");
    let ts = |v: &serde_json::Value| v["time"].as_str().unwrap().to_string();
    let secs = |s: &str| -> f64 {
        let hms = &s[11..s.len() - 1];
        let p: Vec<&str> = hms.split(':').collect();
        p[0].parse::<f64>().unwrap() * 3600.0
            + p[1].parse::<f64>().unwrap() * 60.0
            + p[2].parse::<f64>().unwrap()
    };
    let lag = secs(&ts(&e)) - secs(&ts(oom));
    assert!(
        (0.0..1.0).contains(&lag),
        "oom_kill recorded {lag}s after the OOM"
    );
    // Counted in /metrics.
    std::thread::sleep(Duration::from_millis(1200));
    let m = metrics(port);
    let line = m
        .lines()
        .find(|l| l.starts_with("cglimit_oom_kills_total") && l.contains(&id))
        .unwrap_or_default()
        .to_string();
    assert!(line.ends_with(" 1"), "{line}\n{m}");

    // A restart neither loses nor repeats events.
    let before = events(&lab).len();
    drop(w);
    let (_w, _) = start_watch(&lab, Some(port));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(events(&lab).len(), before, "no event recorded twice");
    let m = metrics(port);
    assert!(
        m.lines().any(|l| l.starts_with("cglimit_oom_kills_total")
            && l.contains(&id)
            && l.ends_with(" 1")),
        "{m}"
    );

    // An OOM kill while the watcher is down is recorded when it is back.
    drop(_w);
    let st = Command::new("runc")
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "s=aaaaaaaaaaaaaaaa; while :; do s=\"$s$s\"; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success(), "the exec'd process was OOM-killed");
    let (_w, _) = start_watch(&lab, Some(port));
    let t = Instant::now();
    while !events(&lab)
        .iter()
        .any(|e| e["kind"] == "oom_kill" && e["new"] == 2)
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the kill while down was lost"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kills: Vec<_> = events(&lab)
        .into_iter()
        .filter(|e| e["kind"] == "oom_kill")
        .collect();
    assert_eq!(kills.len(), 2, "one line per kill: {kills:?}");
    assert_eq!(
        (kills[1]["old"].as_u64(), kills[1]["new"].as_u64()),
        (Some(1), Some(2))
    );
    let before = events(&lab).len();

    // events prints them, filtered.
    let out = Command::new(BIN)
        .args(["events", "--state-dir"])
        .arg(&lab.state_dir)
        .args(["--container", &id, "--output", "json"])
        .output()
        .unwrap();
    let printed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len(), before);
    let out = Command::new(BIN)
        .args(["events", "--state-dir"])
        .arg(&lab.state_dir)
        .args(["--container", "nope"])
        .output()
        .unwrap();
    assert!(out.stdout.is_empty());
    // --since / --until: durations (the README's `1h`) and RFC 3339 times.
    let count = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["events", "--state-dir"])
            .arg(&lab.state_dir)
            .args(["--container", &id, "-o", "json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(count(&["--since", "1h"]), before);
    assert_eq!(
        count(&["--since", "2d", "--until", "2999-01-01T00:00:00+02:00"]),
        before
    );
    assert_eq!(count(&["--since", "2999-01-01T00:00:00Z"]), 0);
    assert_eq!(count(&["--until", "1d"]), 0);
}

#[test]
fn a_leak_is_flagged_and_a_flat_workload_is_not() {
    let mut lab = Lab::new("watchleak");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (_w, port) = start_watch(&lab, None);
    // ~1 MiB/s of anonymous memory that is never freed.
    let leaker = lab.detached(
        "leak",
        Some((256 << 20, Some(256 << 20))),
        "s=''; while :; do s=\"$s$(head -c 1048576 /dev/zero | tr '\\000' a)\"; sleep 1; done",
    );
    let flat = lab.detached("flat", None, "sleep 600");
    // Garbage-collector-like: 8 MiB built up over 4 s, then dropped (large
    // strings are mmap'd, so freeing them returns the memory), again and again.
    let saw = lab.detached("saw",
        Some((256 << 20, Some(256 << 20))),
        "while :; do s=''; i=0; while [ $i -lt 8 ]; do s=\"$s$(head -c 1048576 /dev/zero | tr '\\000' a)\"; i=$((i+1)); sleep 0.5; done; done",
    );
    // Cache-heavy: 100 MiB of tmpfs written and read over and over.
    let cache = lab.detached("cache",
        Some((256 << 20, Some(256 << 20))),
        "while :; do head -c 100000000 /dev/zero > /big/f; cat /big/f > /dev/null; rm /big/f; sleep 1; done",
    );
    let stat = |name: &str, key: &str| -> u64 {
        let p = v1_memory_root()
            .join(lab.cgroup_parent.trim_start_matches('/'))
            .join(name)
            .join("memory.stat");
        let text = std::fs::read_to_string(p).unwrap_or_default();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{key} "))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    };
    let (mut saw_min, mut saw_max, mut cache_max) = (u64::MAX, 0u64, 0u64);
    let t = Instant::now();
    let mut flagged = None;
    while t.elapsed() < Duration::from_secs(75) {
        if let Some(e) = events(&lab)
            .into_iter()
            .find(|e| e["kind"] == "leak_suspected")
        {
            flagged = Some((t.elapsed(), e));
            break;
        }
        if t.elapsed() > Duration::from_secs(5) {
            let a = stat("saw", "total_rss");
            saw_min = saw_min.min(a);
            saw_max = saw_max.max(a);
        }
        cache_max = cache_max.max(stat("cache", "total_cache"));
        std::thread::sleep(Duration::from_millis(250));
    }
    // The quiet workloads really did what they stand for.
    assert!(
        saw_max - saw_min >= 6 * M,
        "sawtooth anon between {saw_min} and {saw_max}"
    );
    assert!(
        cache_max >= 60 * M,
        "cache-heavy reached {cache_max} of page cache"
    );
    let (after, e) = flagged.expect("the leak is flagged");
    assert_eq!(e["container"]["id"], leaker.as_str());
    let rate = e["rate"].as_f64().unwrap();
    assert!(
        rate > 0.5 * M as f64 && rate < 4.0 * M as f64,
        "rate {rate}"
    );
    assert!(e["time_to_limit"].as_f64().unwrap() > 0.0);
    assert!(after < Duration::from_secs(60), "flagged after {after:?}");
    for quiet in [&flat, &saw, &cache] {
        assert!(
            !events(&lab)
                .iter()
                .any(|e| e["kind"] == "leak_suspected" && e["container"]["id"] == quiet.as_str()),
            "{quiet} was flagged: {:?}",
            events(&lab)
        );
    }
    let m = metrics(port);
    assert!(
        m.lines().any(|l| l.starts_with("cglimit_leak_suspected")
            && l.contains(&leaker)
            && l.ends_with(" 1")),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with("cglimit_leak_suspected")
            && l.contains(&flat)
            && l.ends_with(" 0")),
        "{m}"
    );

    // top --once shows what the cgroup says.
    let out = Command::new(BIN)
        .args([
            "top",
            "--once",
            "--no-docker",
            "--cgroup-parent",
            &lab.cgroup_parent,
        ])
        .args([
            "--runc-root",
            &lab.dir.join("no-runc").display().to_string(),
        ])
        .args([
            "--crun-root",
            &lab.dir.join("no-runc").display().to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("flat"))
        .unwrap_or_else(|| panic!("{text}"));
    let cg = v1_memory_root()
        .join(lab.cgroup_parent.trim_start_matches('/'))
        .join("flat");
    let usage: u64 = std::fs::read_to_string(cg.join("memory.usage_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let inactive: u64 = std::fs::read_to_string(cg.join("memory.stat"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .unwrap()
        .parse()
        .unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    let shown: u64 = cols[cols.len() - 1].parse().unwrap();
    let working_set: u64 = cols[cols.len() - 2].parse().unwrap();
    assert!(
        working_set.abs_diff(usage - inactive) <= 64 * 1024,
        "top's working set {working_set} vs cgroup {usage} - {inactive}: {row}"
    );
    assert!(
        shown.abs_diff(usage) <= 64 * 1024,
        "top {shown} vs cgroup {usage}: {row}"
    );
    assert!(row.contains("/ 64M"), "{row}");
    let lrow = text
        .lines()
        .find(|l| l.starts_with("leak"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(lrow.contains("/ 256M"), "{lrow}");
}

/// The commonest OOM: the container's init is killed, the container exits
/// and runc removes its cgroup at once. Its series stay, frozen, with a
/// `gone` time stamp, and the host's counters (present from the start, at
/// 0) count the kill and the hook's decision.
#[test]
fn a_container_killed_and_gone_keeps_its_series() {
    let mut lab = Lab::new("watchgone");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (_w, port) = start_watch(&lab, None);
    let before = metrics(port);
    for line in [
        "cglimit_host_events_total{kind=\"oom_kill\"} 0",
        "cglimit_decisions_total{source=\"hook\",outcome=\"error\"} 0",
    ] {
        assert!(before.contains(line), "no {line} at the start:\n{before}");
    }
    let bundle = lab.bundle_with(
        "init",
        None,
        "createRuntime",
        lab.hook_args(),
        "sleep 1; s=aaaaaaaaaaaaaaaa; while :; do s=\"$s$s\"; done",
    );
    let id = format!("{}-init", lab.name);
    let out = lab.run("runc", &id, &bundle);
    assert!(!out.status.success(), "the init was not killed");
    let cgroup = v1_memory_root()
        .join(lab.cgroup_parent.trim_start_matches('/'))
        .join("init");
    assert!(!cgroup.exists(), "runc left the cgroup");
    let t = Instant::now();
    let gone = loop {
        let m = metrics(port);
        if m.lines()
            .any(|l| l.starts_with("cglimit_container_gone_timestamp_seconds") && l.contains(&id))
        {
            break m;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no gone series for {id}:\n{m}\n{}",
            std::fs::read_to_string(lab.dir.join("watch.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let value = |name: &str| series(&gone, name, &id);
    assert_eq!(value("cglimit_oom_kills_total"), Some(1.0), "{gone}");
    assert_eq!(value("cglimit_memory_limit_bytes"), Some((64 * M) as f64));
    assert!(
        gone.contains("cglimit_host_events_total{kind=\"oom_kill\"} 1"),
        "{gone}"
    );
    assert!(
        gone.contains("cglimit_decisions_total{source=\"hook\",outcome=\"applied\"} 1"),
        "{gone}"
    );
    assert!(gone.contains("cglimit_watched_containers 0"), "{gone}");
    // Scraped again later: still there (retention 5m by default).
    std::thread::sleep(Duration::from_millis(2500));
    let again = metrics(port);
    assert!(
        again
            .lines()
            .any(|l| l.starts_with("cglimit_oom_kills_total")
                && l.contains(&id)
                && l.ends_with(" 1")),
        "{again}"
    );
}

/// The watcher is not always there when the kill happens: frozen while a
/// container's init is killed and runc removes its cgroup, it wakes to find
/// the cgroup gone, its `oom_kill` counter never read after the kill, and
/// counts the kill from the kernel's report of it.
#[test]
fn a_kill_read_too_late_is_counted_from_the_kernel_log() {
    let mut lab = Lab::new("watchlate");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (w, port) = start_watch(&lab, None);
    let bundle = lab.bundle_with(
        "init",
        None,
        "createRuntime",
        lab.hook_args(),
        "while [ ! -e /go ]; do sleep 0.1; done; s=aaaaaaaaaaaaaaaa; while :; do s=\"$s$s\"; done",
    );
    let id = format!("{}-init", lab.name);
    let mut runc = lab.spawn_run("runc", &id, &bundle);
    let t = Instant::now();
    while !metrics(port)
        .lines()
        .any(|l| l.starts_with("cglimit_container_info") && l.contains(&id))
    {
        assert!(t.elapsed() < Duration::from_secs(10), "{id} not watched");
        std::thread::sleep(Duration::from_millis(100));
    }
    let watcher = nix::unistd::Pid::from_raw(w.0.id() as i32);
    nix::sys::signal::kill(watcher, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let resume = Resume(watcher);
    std::fs::write(bundle.join("rootfs/go"), "").unwrap();
    let status = runc.wait().unwrap();
    assert!(!status.success(), "the init was not killed");
    let cgroup = v1_memory_root()
        .join(lab.cgroup_parent.trim_start_matches('/'))
        .join("init");
    assert!(!cgroup.exists(), "runc left the cgroup");
    drop(resume);
    let t = Instant::now();
    let kill = loop {
        if let Some(e) = events(&lab)
            .into_iter()
            .find(|e| e["kind"] == "oom_kill" && e["container"]["id"] == id.as_str())
        {
            break e;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no oom_kill event for {id}: {:?}\n{}",
            events(&lab),
            std::fs::read_to_string(lab.dir.join("watch.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(kill["counter"], "/dev/kmsg", "{kill}");
    assert_eq!(
        (&kill["old"], &kill["new"]),
        (&0.into(), &1.into()),
        "{kill}"
    );
    assert_eq!(kill["victim"]["comm"], "sh", "{kill}");
    assert!(
        kill["victim"]["anon_rss"].as_u64().unwrap() > 16 * M,
        "{kill}"
    );
    let m = metrics(port);
    assert_eq!(series(&m, "cglimit_oom_kills_total", &id), Some(1.0), "{m}");
    assert!(
        m.contains("cglimit_host_events_total{kind=\"oom_kill\"} 1"),
        "{m}"
    );
    assert_eq!(
        events(&lab)
            .iter()
            .filter(|e| e["kind"] == "oom_kill")
            .count(),
        1,
        "{:?}",
        events(&lab)
    );
}

/// Sends SIGCONT to a stopped process when dropped, also on a failure.
struct Resume(nix::unistd::Pid);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// The shipped alert rules pass promtool and their unit tests, and a real
/// Prometheus scraping a real watcher fires each of them for its case.
#[test]
fn prometheus_fires_every_alert_case() {
    let st = Command::new("promtool")
        .args([
            "check",
            "rules",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/cglimit-alerts.yml"),
        ])
        .output()
        .expect("promtool (tests/all.sh installs prometheus)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );
    // The rules' own unit tests: an OOM kill of a child, of an init whose
    // container is gone, one in the first seconds, a leak, near the limit
    // by working set, enforcement failing, the watcher down.
    let st = Command::new("promtool")
        .args([
            "test",
            "rules",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/cglimit-alerts.test.yml"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}{}",
        String::from_utf8_lossy(&st.stdout),
        String::from_utf8_lossy(&st.stderr)
    );

    // A real Prometheus with the shipped rules (their `for:` shortened to
    // 0s, scrapes and evaluations every second) over a real watcher, and
    // every case an operator needs an alert for.
    let mut lab = Lab::new("prom");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (_w, port) = start_watch_with(&lab, &["--interval", "250ms", "--leak-window", "16"]);
    let cfg = lab.dir.join("prometheus.yml");
    let rules = lab.dir.join("rules.yml");
    let shipped = |f: &str| {
        std::fs::read_to_string(format!("{}/deploy/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let mut r = shipped("cglimit-alerts.yml");
    for d in ["5m", "2m", "1m"] {
        r = r.replace(&format!("for: {d}"), "for: 0s");
    }
    std::fs::write(&rules, r).unwrap();
    // A second target of the same job where nothing listens: a watcher
    // that is down.
    let down = free_port();
    std::fs::write(
        &cfg,
        shipped("prometheus.yml")
            .replace(
                "scrape_interval: 15s",
                "scrape_interval: 1s\n  evaluation_interval: 1s",
            )
            .replace(
                "\"127.0.0.1:9477\"",
                &format!("\"127.0.0.1:{port}\", \"127.0.0.1:{down}\""),
            )
            .replace("cglimit-alerts.yml", &rules.display().to_string()),
    )
    .unwrap();
    let (_p, web) = start_prometheus(&lab, &cfg);
    // Prometheus scrapes the watcher before anything happens, as it does
    // on a host where it has run for a while.
    let t = Instant::now();
    let up = format!("/api/v1/query?query=up%7Binstance%3D%22127.0.0.1%3A{port}%22%7D");
    while prom_get(web, &up)["data"]["result"][0]["value"][1] != "1" {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "Prometheus never scraped the watcher"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // A child OOM-killed after the first scrapes; the container lives on.
    let child = lab.detached(
        "child",
        None,
        "sleep 3; sh -c 's=aaaaaaaaaaaaaaaa; while :; do s=\"$s$s\"; done'; sleep 600",
    );
    // A child OOM-killed at once: the counter is born at 1, before any
    // scrape saw it at 0.
    let first = lab.detached(
        "first",
        None,
        "sh -c 's=aaaaaaaaaaaaaaaa; while :; do s=\"$s$s\"; done'; sleep 600",
    );
    // ~1 MiB/s of anonymous memory never freed.
    let leak = lab.detached(
        "leak",
        Some((256 << 20, Some(256 << 20))),
        "s=''; while :; do s=\"$s$(head -c 1048576 /dev/zero | tr '\\000' a)\"; sleep 1; done",
    );
    // 60M of 64M held in tmpfs (not reclaimable without swap): a working
    // set at 94% of the limit.
    let full = lab.detached(
        "full",
        None,
        "head -c 62914560 /dev/zero > /big/f; sleep 600",
    );
    // The init of a container OOM-killed: the container exits and runc
    // removes its cgroup at once. It waits a second first, as in
    // `a_container_killed_and_gone_keeps_its_series`: the watcher learns of
    // a container from the hook's record at its next tick, and a kill
    // before that is the host's only (`HostOOMKills`).
    let bundle = lab.bundle_with(
        "init",
        None,
        "createRuntime",
        lab.hook_args(),
        "sleep 1; s=aaaaaaaaaaaaaaaa; while :; do s=\"$s$s\"; done",
    );
    let init = format!("{}-init", lab.name);
    assert!(!lab.run("runc", &init, &bundle).status.success());

    let down_instance = format!("127.0.0.1:{down}");
    let want: Vec<(&str, &str, &str)> = vec![
        ("ContainerOOMKilled", "id", &child),
        ("ContainerOOMKilled", "id", &first),
        ("ContainerOOMKilled", "id", &init),
        ("HostOOMKills", "kind", "oom_kill"),
        ("ContainerMemoryLeakSuspected", "id", &leak),
        ("ContainerMemoryNearLimit", "id", &full),
        ("CglimitWatcherDown", "instance", &down_instance),
    ];
    let t = Instant::now();
    let mut missing: Vec<String>;
    loop {
        let firing = prom_get(
            web,
            "/api/v1/query?query=ALERTS%7Balertstate%3D%22firing%22%7D",
        );
        let results = firing["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        missing = want
            .iter()
            .filter(|(alert, label, value)| {
                !results
                    .iter()
                    .any(|r| r["metric"]["alertname"] == *alert && r["metric"][*label] == *value)
            })
            .map(|(a, l, v)| format!("{a}{{{l}={v}}}"))
            .collect();
        // None of the quiet ones fires.
        for r in &results {
            let id = r["metric"]["id"].as_str().unwrap_or("");
            assert!(
                !(r["metric"]["alertname"] == "ContainerMemoryNearLimit" && id == leak),
                "near-limit fired for the leaking container at 256M: {r}"
            );
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "alerts that never fired: {missing:?}; firing: {results:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `GET path` of the Prometheus HTTP API, as JSON (`null` until it answers).
#[test]
fn a_full_state_dir_delays_events_and_loses_none() {
    let mut lab = Lab::new("watchfull");
    let state = lab.state_dir.clone();
    std::fs::create_dir_all(&state).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=755", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(st.success());
    {
        let s = state.clone();
        lab.on_drop(move || {
            let _ = Command::new("umount").arg("-l").arg(&s).status();
        });
    }
    let (_w, port) = start_watch(&lab, None);
    let id = lab.detached(
        "oom",
        None,
        "sleep 5; sh -c 's=aaaaaaaaaaaaaaaa; while :; do s=\"$s$s\"; done'; sleep 600",
    );
    // The watcher learns of it from the hook's decision record...
    let t = Instant::now();
    while !metrics(port).contains(&id) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the watcher never saw {id}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...then the disk fills (the write fails part-way with ENOSPC, as
    // intended) before the OOM kill.
    let filler = state.join("filler");
    assert!(std::fs::write(&filler, vec![0u8; 256 << 10]).is_err());
    let log = || std::fs::read_to_string(lab.dir.join("watch.log")).unwrap_or_default();
    let t = Instant::now();
    while !log().contains("cannot record events") {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no OOM kill seen: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!events(&lab).iter().any(|e| e["kind"] == "oom_kill"));
    // Space again: the kept events are written, with their own times.
    std::fs::remove_file(&filler).unwrap();
    let t = Instant::now();
    while !events(&lab).iter().any(|e| e["kind"] == "oom_kill") {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the kill was lost: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kills: Vec<_> = events(&lab)
        .into_iter()
        .filter(|e| e["kind"] == "oom_kill")
        .collect();
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert_eq!(kills[0]["container"]["id"], id.as_str());
    assert!(
        log().contains("recorded") && log().contains("delayed events"),
        "{}",
        log()
    );
}

/// A limit changed behind cglimit's back (here a direct write; on a
/// systemd host a daemon-reload) is a `limit_changed` event and counted;
/// one cglimit makes itself (an update through the wrapper) is not.
#[test]
fn a_limit_changed_outside_cglimit_is_recorded() {
    limit_change_case("watchlimit", &[], Duration::from_secs(15));
}

/// The same where the limit files are not watched (out of inotify watches,
/// here `--limit-watches 0`): their limits are read every 30 ticks.
#[test]
fn an_unwatched_limit_changed_outside_cglimit_is_recorded() {
    limit_change_case(
        "watchlimitread",
        &["--limit-watches", "0", "--interval", "200ms"],
        Duration::from_secs(20),
    );
}

fn limit_change_case(name: &str, flags: &[&str], within: Duration) {
    let mut lab = Lab::new(name);
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (_w, port) = start_watch_with(&lab, flags);
    let id = lab.detached("c", None, "sleep 600");
    let cg = v1_memory_root()
        .join(lab.cgroup_parent.trim_start_matches('/'))
        .join("c");
    let watched = |port| metrics(port).contains(&format!("id=\"{id}\""));
    let t = Instant::now();
    while !watched(port) {
        assert!(t.elapsed() < Duration::from_secs(10), "never watched");
        std::thread::sleep(Duration::from_millis(100));
    }
    // cglimit's own change: an update through the wrapper.
    let out = Command::new(BIN)
        .args(["runtime", "--policy-dir"])
        .arg(&lab.policy_dir)
        .arg("--state-dir")
        .arg(&lab.state_dir)
        .args(["--no-cache", "--docker-host"])
        .arg(format!("unix://{}", lab.dir.join("none.sock").display()))
        .args(["update", "--memory", "100m", "--memory-swap", "100m", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(2500));
    // Then someone else's (v1: not above memory+swap, 100M).
    std::fs::write(cg.join("memory.limit_in_bytes"), "67108864").unwrap();
    let t = Instant::now();
    let changed = loop {
        let e: Vec<_> = events(&lab)
            .into_iter()
            .filter(|e| e["kind"] == "limit_changed")
            .collect();
        // Seen at once (a watch on the limit files), held for the 5 s in
        // which it could still be cglimit's own: an idle container's files
        // are otherwise read again only every 300 ticks.
        if !e.is_empty() || t.elapsed() > within {
            break e;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        changed.len(),
        1,
        "one change, not cglimit's own: {changed:?}"
    );
    let e = &changed[0];
    assert_eq!(e["container"]["id"], id.as_str());
    assert_eq!(e["counter"], "memory.limit_in_bytes");
    assert_eq!(e["before"], 100 * M);
    assert_eq!(e["after"], 64 * M);
    assert!(
        e["detail"].as_str().unwrap().contains("direct write"),
        "{e}"
    );
    let m = metrics(port);
    assert!(
        m.lines()
            .any(|l| l.starts_with("cglimit_limit_changes_total{")
                && l.contains(&id)
                && l.ends_with(" 1")),
        "{m}"
    );
}

/// A client that trickles its request a byte a second holds only its own
/// connection: 50 scrapers at once are all answered while it is still
/// connected (before, the server read one connection at a time, and every
/// scrape waited behind it).
#[test]
fn a_slow_client_does_not_stall_fifty_scrapers() {
    let lab = Lab::new("watchslow");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (_w, port) = start_watch(&lab, None);
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"G").unwrap();
    let trickle = {
        let mut s = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for b in b"ET /metrics HTTP/1.1\r\nHost: x" {
                std::thread::sleep(Duration::from_secs(1));
                if s.write_all(&[*b]).is_err() {
                    return;
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let scrapers: Vec<_> = (0..50)
        .map(|_| std::thread::spawn(move || metrics(port)))
        .collect();
    for s in scrapers {
        let m = s.join().unwrap();
        assert!(m.contains("cglimit_build_info"), "{m}");
    }
    // The slow client is still connected: the scrapes did not wait for it
    // to finish or be dropped.
    slow.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    match slow.peek(&mut b) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the slow client was answered or closed first: {other:?}"),
    }
    drop(slow);
    let _ = trickle.join();
}

/// `events --follow` reads each line once, in order: lines written in
/// pieces, and across a rotation, including lines the old file got after
/// the follower's last read and before the rename.
#[test]
fn events_follow_misses_nothing_across_rotation() {
    use std::io::BufRead;
    let lab = Lab::new("follow");
    let dir = lab.state_dir.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.jsonl");
    let line = |n: u32| {
        format!(
            "{{\"time\":\"2026-11-30T22:00:00.{n:09}Z\",\"kind\":\"oom_kill\",\"container\":{{\"id\":\"c{n}\"}},\"cgroup\":\"/x\",\"usage\":0}}\n"
        )
    };
    let append = |n: u32| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(line(n).as_bytes()).unwrap();
    };
    for n in 0..3 {
        append(n);
    }
    let mut child = Command::new(BIN)
        .args(["events", "--follow", "-o", "json", "--state-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    // Killed on drop, also when an assertion fails.
    let follower = Watcher(child);
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines() {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            let _ = tx.send(v["container"]["id"].as_str().unwrap().to_string());
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(20)).expect("a line");
    for n in 0..3 {
        assert_eq!(next(), format!("c{n}"));
    }
    // A line written in two pieces is shown once, whole.
    let l3 = line(3);
    let (a, b) = l3.split_at(40);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(a.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    f.write_all(b.as_bytes()).unwrap();
    assert_eq!(next(), "c3");
    // Rotation as the watcher does it: lines into the old file, the
    // rename, lines into a new one.
    append(4);
    append(5);
    std::fs::rename(&file, dir.join("events.jsonl.1")).unwrap();
    append(6);
    append(7);
    for n in 4..8 {
        assert_eq!(next(), format!("c{n}"));
    }
    append(8);
    assert_eq!(next(), "c8");
    drop(follower);
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "a line was repeated"
    );
}

/// Out of descriptors, the watcher drops no container: those it could not
/// arm are counted and retried, the log says so once, and once descriptors
/// are free again every one gets its OOM notification (an OOM then is
/// recorded).
#[test]
fn out_of_descriptors_no_container_is_dropped() {
    let lab = Lab::new("watchfds");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let parent = v1_memory_root().join(lab.cgroup_parent.trim_start_matches('/'));
    for i in 0..120 {
        std::fs::create_dir_all(parent.join(format!("idle{i}"))).unwrap();
    }
    let oomc = parent.join("zz-oom");
    std::fs::create_dir_all(&oomc).unwrap();
    std::fs::write(oomc.join("memory.limit_in_bytes"), "33554432").unwrap();
    // 128 descriptors: 64 for notifications, 121 cgroups.
    let (_w, pid, port) = watch_parent(&lab, &["prlimit", "--nofile=128:128", "--"], "1s");
    let value = |m: &str, name: &str| -> Option<f64> {
        m.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let scrape = || scrape(port);
    let t = Instant::now();
    let m = loop {
        let m = scrape();
        if value(&m, "cglimit_watched_containers") == Some(121.0) {
            break m;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "not every cgroup watched: {m}\n{}",
            std::fs::read_to_string(lab.dir.join("watch.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let unarmed = value(&m, "cglimit_notification_failures").unwrap();
    assert!(unarmed >= 50.0, "{m}");
    // Kept, and said once.
    std::thread::sleep(Duration::from_secs(12));
    let m = scrape();
    assert_eq!(value(&m, "cglimit_watched_containers"), Some(121.0), "{m}");
    let log = std::fs::read_to_string(lab.dir.join("watch.log")).unwrap();
    assert_eq!(log.matches("tried again every").count(), 1, "{log}");
    assert!(log.contains("descriptors in use (RLIMIT_NOFILE)"), "{log}");
    assert!(!log.contains(": gone ("), "{log}");
    // With 80 of them gone, every other one is armed at the next retry,
    // and an OOM is seen.
    for i in 0..80 {
        std::fs::remove_dir(parent.join(format!("idle{i}"))).unwrap();
    }
    let t = Instant::now();
    while value(&scrape(), "cglimit_notification_failures") != Some(0.0) {
        assert!(t.elapsed() < Duration::from_secs(30), "{}", scrape());
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = std::fs::read_to_string(lab.dir.join("watch.log")).unwrap();
    assert!(
        log.contains("every watched container has its notifications again"),
        "{log}"
    );
    // Two descriptors per container at most.
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(fds <= 2 * 41 + 30, "{fds} descriptors for 41 cgroups");
    let mut p = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs; exec sh -c 's=aaaaaaaaaaaaaaaa; while :; do s=$s$s; done'",
            oomc.display()
        ))
        .spawn()
        .unwrap();
    let _ = p.wait();
    let t = Instant::now();
    while !events(&lab)
        .iter()
        .any(|e| e["kind"] == "oom" && e["cgroup"].as_str().unwrap_or("").ends_with("zz-oom"))
    {
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", events(&lab));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A hundred still containers under one parent are read through the
/// parent's usage, not one by one; one of them that starts to grow is
/// still seen within a few ticks.
#[test]
fn still_containers_are_read_through_their_parent_and_one_that_grows_is_seen() {
    let lab = Lab::new("watchgroup");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let parent = v1_memory_root().join(lab.cgroup_parent.trim_start_matches('/'));
    for i in 0..100 {
        std::fs::create_dir_all(parent.join(format!("still{i}"))).unwrap();
    }
    let grower = parent.join("grower");
    std::fs::create_dir_all(&grower).unwrap();
    let (_w, pid, port) = watch_parent(&lab, &[], "200ms");
    let scrape = || scrape(port);
    let t = Instant::now();
    while !scrape().contains("cglimit_watched_containers 101") {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", scrape());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Read system calls (read, pread) over 20 ticks, once every container
    // has been still for long enough: one probe each every fifth tick
    // would be 400.
    std::thread::sleep(Duration::from_secs(4));
    let reads = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/io"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("syscr: "))
            .unwrap()
            .parse()
            .unwrap()
    };
    // The best of a few windows of 10 ticks: other tests' memory pressure
    // can move a still cgroup's usage (the kernel reclaiming what is
    // charged to it), and a moving one is rightly probed again for a
    // while; with the parent ignored every window reads each container.
    let mut per_tick = u64::MAX;
    for _ in 0..4 {
        let before = reads();
        std::thread::sleep(Duration::from_secs(2));
        per_tick = per_tick.min((reads() - before) / 10);
        if per_tick < 10 {
            break;
        }
    }
    assert!(
        per_tick < 10,
        "{per_tick} reads a tick for 101 still containers: each read alone"
    );
    // Containers coming and going beside them (one made every fifth tick,
    // each removed 20 ticks later, still by then) leave the parent's
    // account as it was: the still ones are not probed again for it. Each
    // new one is read in full when found (12 reads) and probed while it is
    // new; were the still ones probed, that would be 20 reads a tick more.
    let mut per_tick = u64::MAX;
    for round in 0..3 {
        let before = reads();
        let mut made = std::collections::VecDeque::new();
        for i in 0..12 {
            let d = parent.join(format!("churn{round}-{i}"));
            std::fs::create_dir(&d).unwrap();
            made.push_back(d);
            if made.len() > 4 {
                let _ = std::fs::remove_dir(made.pop_front().unwrap());
            }
            std::thread::sleep(Duration::from_millis(1000));
        }
        per_tick = per_tick.min((reads() - before) / 60);
        for d in made {
            let _ = std::fs::remove_dir(d);
        }
        if per_tick < 12 {
            break;
        }
    }
    assert!(
        per_tick < 12,
        "{per_tick} reads a tick for 101 still containers while others come and go"
    );
    // One of them grows (a shell doubling a string to 16 MiB, then
    // waiting on its stdin).
    let mut p = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs; s=aaaaaaaaaaaaaaaa; i=0; while [ $i -lt 20 ]; do s=$s$s; i=$((i+1)); done; read x",
            grower.display()
        ))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let grown = |m: &str| {
        m.lines().any(|l| {
            l.starts_with("cglimit_memory_usage_bytes{")
                && l.contains("grower")
                && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) > Some(8.0 * M as f64)
        })
    };
    let t = Instant::now();
    let seen = loop {
        let m = metrics(port);
        if grown(&m) {
            break None;
        }
        // 25 ticks: a full read would come only after 300.
        if t.elapsed() > Duration::from_secs(5) {
            break Some(m);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = p.kill();
    let _ = p.wait();
    if let Some(m) = seen {
        panic!("the growing container not seen within 25 ticks:\n{m}");
    }
    // The parent is listed again only when a cgroup is made under it (or
    // once a minute): one made now is watched within a few passes.
    std::fs::create_dir_all(parent.join("late")).unwrap();
    let t = Instant::now();
    while !scrape().contains("cglimit_watched_containers 102") {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", scrape());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `cglimit watch` of the cgroups under the lab's cgroup parent, run
/// through `wrap` (a command and its arguments before the binary), at
/// `interval`: the watcher, its pid, its metrics port.
fn watch_parent(lab: &Lab, wrap: &[&str], interval: &str) -> (Watcher, u32, u16) {
    let none = lab.dir.join("no-runc");
    std::fs::create_dir_all(&none).unwrap();
    let port = free_port();
    let mut cmd = match wrap {
        [first, rest @ ..] => {
            let mut c = Command::new(first);
            c.args(rest).arg(BIN);
            c
        }
        [] => Command::new(BIN),
    };
    let child = cmd
        .arg("--log-file")
        .arg(lab.dir.join("watch.log"))
        .arg("watch")
        .arg("--state-dir")
        .arg(&lab.state_dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--interval",
            interval,
        ])
        .args([
            "--no-docker",
            "--no-podman",
            "--cgroup-parent",
            &lab.cgroup_parent,
        ])
        .arg("--runc-root")
        .arg(&none)
        .arg("--crun-root")
        .arg(&none)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    (Watcher(child), pid, port)
}

/// The watcher's metrics, or nothing while it does not listen yet.
fn scrape(port: u16) -> String {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .ok()
        .map(|_| metrics(port))
        .unwrap_or_default()
}
