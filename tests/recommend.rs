//! `cglimit recommend` from a real watcher's history and from a real
//! Prometheus scraping it: runc containers of known shape (one that peaks
//! then settles, a steady one, a job run three times, a leaker, one
//! OOM-killed at its limit), each recommendation checked against what it
//! used; the diff applied with `patch`, validated, and explained.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::watch::*;
use common::*;

const M: u64 = 1 << 20;

/// Starts a runc container named `name` (the name runtimes pass in the
/// `io.container.name` annotation) running `script`; returns its id.
fn named(lab: &mut Lab, name: &str, memory: Option<(i64, Option<i64>)>, script: &str) -> String {
    let bundle = lab.bundle_with(name, memory, "createRuntime", lab.hook_args(), script);
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["annotations"] = serde_json::json!({ "io.container.name": name });
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let id = format!("{}-{name}", lab.name);
    lab.start_detached(None, &bundle, &id);
    id
}

fn state(id: &str) -> String {
    let out = Command::new("runc").args(["state", id]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["status"].as_str().unwrap_or("gone").to_string()
}

fn recommend(lab: &Lab, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("recommend")
        .arg("--state-dir")
        .arg(&lab.state_dir)
        .arg("--policy-dir")
        .arg(&lab.policy_dir)
        .args(["--since", "1h", "--min-history", "5s"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn rows(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "recommend: {}", stderr(out));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn row<'a>(rows: &'a [serde_json::Value], w: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["workload"] == w)
        .unwrap_or_else(|| panic!("no workload {w}: {rows:?}"))
}

/// The rounding step of a recommendation (two significant figures of M).
fn step(bytes: u64) -> u64 {
    let m = bytes / M;
    if m < 10 {
        M
    } else {
        10u64.pow(m.ilog10() - 1) * M
    }
}

/// A recommendation at or above the peak, and no more than the peak plus
/// the margin, rounded up.
fn within_margin(r: &serde_json::Value, at_least: u64) {
    let peak = r["peak_bytes"].as_u64().unwrap();
    let rec = r["recommended_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no recommendation: {r}"));
    assert!(peak >= at_least, "the peak seen is what it used: {r}");
    let most = (peak as f64 * 1.15) as u64;
    assert!(rec >= peak && rec <= most + step(most), "{r}");
}

#[test]
fn recommendations_follow_use_leaks_get_none_ooms_a_bump() {
    let mut lab = Lab::new("recommend");
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    // A policy that selects the steady workload alone: edited in place.
    lab.set_policy(
        "steady.yaml",
        "# The steady service.\nname: steady\npriority: 5\nmatch:\n  names: [\"steady-*\"]\nmemory:\n  default: 48M   # a guess\n  max: 64M\nswap: {default: 0, max: 0}\nhigh: 90%\n",
    );
    let (watcher, port) = start_watch_with(&lab, &["--leak-window", "12", "--history-save", "1s"]);

    // Prometheus scraping the watcher every second, from before the start.
    let cfg = lab.dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: cglimit\n    static_configs: [{{targets: [\"127.0.0.1:{port}\"]}}]\n"
        ),
    )
    .unwrap();
    let (_prom, web) = start_prometheus(&lab, &cfg);
    let url = format!("http://127.0.0.1:{web}");
    let t = Instant::now();
    while prom_get(web, "/api/v1/query?query=up")["data"]["result"][0]["value"][1] != "1" {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "Prometheus never scraped the watcher"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // 40M held for 5 s, then 8M for good.
    named(
        &mut lab,
        "peak-1",
        None,
        "head -c 41943040 /dev/zero > /big/f; sleep 5; head -c 8388608 /dev/zero > /big/f; sleep 600",
    );
    // 24M from the start.
    named(
        &mut lab,
        "steady-1",
        None,
        "head -c 25165824 /dev/zero > /big/f; sleep 600",
    );
    // 64 KiB more tmpfs every 50 ms, under a 256M limit.
    let leak = named(
        &mut lab,
        "leak-1",
        Some((256 << 20, Some(256 << 20))),
        "while :; do head -c 65536 /dev/zero >> /big/f; sleep 0.05; done",
    );
    // A child that grows until the OOM killer kills it at 64M.
    let oom = named(
        &mut lab,
        "oom-1",
        None,
        "sleep 2; sh -c 's=aaaaaaaaaaaaaaaa; while :; do s=\"$s$s\"; done'; sleep 600",
    );
    // A job run three times: 16M for 3 s, then done.
    for n in 1..=3 {
        let id = named(
            &mut lab,
            &format!("job-{n}"),
            None,
            "head -c 16777216 /dev/zero > /big/f; sleep 3",
        );
        let t = Instant::now();
        while state(&id) == "running" {
            assert!(t.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("runc").args(["delete", "-f", &id]).status();
    }
    let wait = |what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        let t = Instant::now();
        while !events(&lab).iter().any(f) {
            assert!(
                t.elapsed() < Duration::from_secs(90),
                "no {what}: {:?}",
                events(&lab)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("leak warning", &|e| {
        e["kind"] == "leak_suspected" && e["container"]["id"] == leak.as_str()
    });
    wait("OOM kill", &|e| {
        e["kind"] == "oom_kill" && e["container"]["id"] == oom.as_str()
    });
    // Prometheus has scraped both (what it holds is what it scraped).
    for q in [
        "cglimit_leak_suspected%7Bworkload%3D%22leak%22%7D%3D%3D1",
        "cglimit_oom_kills_total%7Bworkload%3D%22oom%22%7D%3E0",
    ] {
        let t = Instant::now();
        while prom_get(web, &format!("/api/v1/query?query={q}"))["data"]["result"][0].is_null() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "Prometheus has no {q}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // Stopped, the watcher writes its history.
    let pid = nix::unistd::Pid::from_raw(watcher.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut watcher = watcher;
    let st = watcher.0.wait().unwrap();
    assert!(st.success(), "watch exits 0 on SIGTERM: {st:?}");

    let local = rows(&recommend(&lab, &["-o", "json"]));
    within_margin(row(&local, "peak"), 40 * M);
    within_margin(row(&local, "steady"), 24 * M);
    let job = row(&local, "job");
    within_margin(job, 16 * M);
    let mut names: Vec<&str> = job["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["job-1", "job-2", "job-3"], "{job}");
    let l = row(&local, "leak");
    assert_eq!(l["leak_suspected"], true, "{l}");
    assert!(l["recommended_bytes"].is_null(), "{l}");
    assert!(
        l["reason"]
            .as_str()
            .unwrap()
            .starts_with("leak suspected: fix it before raising the limit (shmem growing"),
        "{l}"
    );
    let o = row(&local, "oom");
    assert!(o["oom_kills"].as_u64().unwrap() >= 1, "{o}");
    assert_eq!(o["current_limit_bytes"], 64 * M, "{o}");
    assert!(
        o["recommended_bytes"].as_u64().unwrap() >= 96 * M,
        "bumped past the limit it was killed at: {o}"
    );
    for r in &local {
        assert_eq!(
            r["policy"],
            if r["workload"] == "steady" {
                "steady"
            } else {
                "default"
            },
            "{r}"
        );
        for k in [
            "workload",
            "containers",
            "samples",
            "span_seconds",
            "peak_bytes",
            "p99_bytes",
            "oom_kills",
            "current_limit_bytes",
            "policy",
            "leak_suspected",
            "recommended_bytes",
            "reason",
        ] {
            assert!(r.get(k).is_some(), "{k} missing: {r}");
        }
    }
    // The table says the same for people.
    let out = recommend(&lab, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("leak ") && l.contains("leak suspected")),
        "{text}"
    );

    // The same from Prometheus, within one rounding step.
    let from_prom = rows(&recommend(&lab, &["--prometheus", &url, "-o", "json"]));
    for r in &local {
        let w = r["workload"].as_str().unwrap();
        let p = row(&from_prom, w);
        assert_eq!(p["leak_suspected"], r["leak_suspected"], "{w}: {p} / {r}");
        assert_eq!(p["policy"], r["policy"], "{w}: {p} / {r}");
        match (
            r["recommended_bytes"].as_u64(),
            p["recommended_bytes"].as_u64(),
        ) {
            (Some(a), Some(b)) => assert!(
                a.abs_diff(b) <= step(a.max(b)),
                "{w}: {a} from the history, {b} from Prometheus: {r} / {p}"
            ),
            (None, None) => {}
            _ => panic!("{w}: {r} / {p}"),
        }
    }

    // The diff, applied to a copy of the policies, validates and selects.
    let out = recommend(&lab, &["-o", "diff"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let copy = lab.dir.join("policies-copy");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&lab.policy_dir)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    let patched = with_stdin(
        {
            let mut c = Command::new("patch");
            c.args(["-p1", "-d"]).arg(&copy);
            c
        },
        &out.stdout,
    );
    assert!(
        patched.status.success(),
        "patch: {}\n{}",
        String::from_utf8_lossy(&patched.stdout),
        String::from_utf8_lossy(&out.stdout)
    );
    let v = Command::new(BIN)
        .arg("validate")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(v.status.success(), "validate: {}", stderr(&v));
    // The steady policy was edited where it is written, comments kept.
    let steady = std::fs::read_to_string(copy.join("steady.yaml")).unwrap();
    let rec = row(&local, "steady")["recommended"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        steady.contains(&format!("  default: {rec}   # a guess"))
            && steady.contains(&format!("  max: {rec}\n"))
            && steady.starts_with("# The steady service."),
        "{steady}"
    );
    for (w, container, policy) in [
        ("peak", "peak-1", "recommended-peak"),
        ("job", "job-7", "recommended-job"),
        ("oom", "oom-1", "recommended-oom"),
        ("steady", "steady-1", "steady"),
    ] {
        let rec = row(&local, w)["recommended_bytes"].as_u64().unwrap();
        let e = explain(&copy, container);
        assert!(
            e.contains("chosen") && e.contains(&format!("\"{policy}\"")),
            "{container}: {e}"
        );
        let limits = e.lines().find(|l| l.starts_with("limits")).unwrap_or("");
        assert!(
            limits.contains(&format!("memory {}", human(rec))),
            "{container}: {rec} in {e}"
        );
    }
    // The leaker is left alone.
    assert!(!copy.join("recommended-leak.yaml").exists());
    assert!(explain(&copy, "leak-1").contains("\"default\""));
    // -o yaml: the policies alone, which load as they are.
    let out = recommend(&lab, &["-o", "yaml"]);
    let y = lab.dir.join("alone.yaml");
    std::fs::write(&y, &out.stdout).unwrap();
    let v = Command::new(BIN).arg("validate").arg(&y).output().unwrap();
    assert!(
        v.status.success(),
        "{}: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&v)
    );
}

fn explain(dir: &Path, name: &str) -> String {
    let out = Command::new(BIN)
        .arg("explain")
        .arg("--policy-dir")
        .arg(dir)
        .args(["--insecure-policy-perms", "--name", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Bytes as `explain` prints a limit (whole binary units).
fn human(b: u64) -> String {
    for (m, u) in [(1u64 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")] {
        if b.is_multiple_of(m) {
            return format!("{}{u}", b / m);
        }
    }
    b.to_string()
}
