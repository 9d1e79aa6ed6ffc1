//! Many starts at once: 50 runc containers through the hook and 20 Docker
//! containers through the wrapper, while `apply --watch` and `watch` run.
//! Every container ends with its policy's limits, the decision log holds
//! exactly one decision per start, and nothing deadlocks.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::docker::{Dockerd, IMAGE};
use common::watch::{Watcher, metrics, start_watch_in};
use common::*;

const RUNC: usize = 50;
const DOCKER: usize = 20;

/// The three v1 limits of a cgroup below the lab's parent.
fn limits_of(lab: &Lab, rel: &str) -> (u64, u64, u64) {
    let dir = v1_memory_root()
        .join(lab.cgroup_parent.trim_start_matches('/'))
        .join(rel);
    let read = |f: &str| -> u64 {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
            .trim()
            .parse()
            .unwrap()
    };
    (
        read("memory.limit_in_bytes"),
        read("memory.memsw.limit_in_bytes"),
        read("memory.soft_limit_in_bytes"),
    )
}

#[test]
fn fifty_runc_and_twenty_docker_starts_at_once_under_apply_and_watch() {
    let mut lab = Lab::new("crowd");
    lab.set_policy(
        "labelled.yaml",
        "name: big\npriority: 5\nmatch: {labels: {tier: big}}\nmemory: {default: 128M, max: 512M}\nswap: {default: 0, max: 0}\nhigh: 75%\n",
    );
    let d = Dockerd::start(
        &lab,
        &[
            "--policy-dir".into(),
            lab.policy_dir.display().to_string(),
            "--state-dir".into(),
            lab.state_dir.display().to_string(),
        ],
    );
    let root = lab.dir.join("runc-root");
    let empty = lab.dir.join("empty");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&empty).unwrap();
    let scope: Vec<String> = vec![
        "--docker-host".into(),
        format!("unix://{}", d.sock.display()),
        "--no-podman".into(),
        "--runc-root".into(),
        root.display().to_string(),
        "--crun-root".into(),
        empty.display().to_string(),
    ];
    let (_watch, port) = start_watch_in(&lab, None, &scope);
    let _apply = Watcher(
        Command::new(BIN)
            .arg("--log-file")
            .arg(lab.dir.join("apply.log"))
            .args([
                "apply",
                "--all",
                "--watch",
                "--interval",
                "1s",
                "--policy-dir",
            ])
            .arg(&lab.policy_dir)
            .arg("--state-dir")
            .arg(&lab.state_dir)
            .args(&scope)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Bundles first (they need the lab), then every start at once.
    let mut runc = Vec::new();
    for i in 0..RUNC {
        // Odd ones ask for 1G (clamped to 256M), even ones for nothing.
        let mem = (i % 2 == 1).then_some((1 << 30, Some(1 << 30)));
        let b = lab.bundle_with(
            &format!("r{i}"),
            mem,
            "createRuntime",
            lab.hook_args(),
            "sleep 120",
        );
        runc.push((format!("{}-r{i}", lab.name), b, i));
    }
    {
        let (root, ids): (PathBuf, Vec<String>) =
            (root.clone(), runc.iter().map(|r| r.0.clone()).collect());
        lab.on_drop(move || {
            for id in ids {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "-f", &id])
                    .stderr(Stdio::null())
                    .status();
            }
        });
    }
    let (tx, rx) = mpsc::channel::<(String, Result<String, String>)>();
    let started = Instant::now();
    for (id, bundle, _) in &runc {
        let (tx, id, bundle, root) = (tx.clone(), id.clone(), bundle.clone(), root.clone());
        // Not a pipe: a detached container keeps runc's stdio open.
        let err_file = lab.dir.join(format!("{id}.err"));
        std::thread::spawn(move || {
            let st = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["run", "-d", "--bundle"])
                .arg(&bundle)
                .arg(&id)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&err_file).unwrap())
                .status()
                .unwrap();
            let r = if st.success() {
                Ok(String::new())
            } else {
                Err(std::fs::read_to_string(&err_file).unwrap_or_default())
            };
            let _ = tx.send((id, r));
        });
    }
    for i in 0..DOCKER {
        let tx = tx.clone();
        let docker = d.client();
        std::thread::spawn(move || {
            let name = format!("d{i}");
            let mut c = docker;
            c.args([
                "run",
                "-d",
                "--runtime",
                "cglimit",
                "--net",
                "none",
                "--name",
                &name,
            ]);
            if i % 2 == 1 {
                c.args(["--label", "tier=big"]);
            }
            let out = c.args([IMAGE, "sleep", "120"]).output().unwrap();
            let r = if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            } else {
                Err(stderr(&out))
            };
            let _ = tx.send((name, r));
        });
    }
    drop(tx);
    let mut docker_ids = BTreeMap::new();
    for _ in 0..RUNC + DOCKER {
        // A start that never returns is a deadlock: fail rather than hang.
        let (name, r) = rx
            .recv_timeout(Duration::from_secs(180))
            .expect("a start never finished");
        let id = r.unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        if name.starts_with('d') {
            docker_ids.insert(name, id);
        }
    }
    eprintln!(
        "{} starts at once took {:?}",
        RUNC + DOCKER,
        started.elapsed()
    );

    let check = |when: &str| {
        for (_, _, i) in &runc {
            let want = if i % 2 == 1 {
                (256 * M, 256 * M, 128 * M)
            } else {
                (64 * M, 64 * M, 32 * M)
            };
            assert_eq!(limits_of(&lab, &format!("r{i}")), want, "r{i} {when}");
        }
        for (name, id) in &docker_ids {
            let i: usize = name[1..].parse().unwrap();
            // The label policy's high (75%) is held to the catch-all's (50%).
            let want = if i % 2 == 1 {
                (128 * M, 128 * M, 64 * M)
            } else {
                (64 * M, 64 * M, 32 * M)
            };
            assert_eq!(limits_of(&lab, id), want, "{name} {when}");
        }
    };
    check("after the starts");
    // Two rounds of apply --watch later, nothing was undone.
    std::thread::sleep(Duration::from_millis(2500));
    check("after apply --watch");

    // Exactly one decision per start, from the hook or the wrapper.
    let records = lab.decisions();
    let mut per_container: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        if r["source"] == "hook" || r["source"] == "runtime" {
            assert_eq!(r["outcome"], "applied", "{r}");
            *per_container
                .entry(r["container"]["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(per_container.len(), RUNC + DOCKER, "{per_container:?}");
    assert!(per_container.values().all(|n| *n == 1), "{per_container:?}");

    // The watcher sees all of them, with the limits they got.
    let t = Instant::now();
    loop {
        let m = metrics(port);
        let limits: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("cglimit_memory_limit_bytes{"))
            .collect();
        if limits.len() >= RUNC + DOCKER {
            let big = limits
                .iter()
                .filter(|l| l.ends_with(&format!(" {}", 128 * M)))
                .count();
            assert_eq!(big, DOCKER / 2, "{limits:#?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "watch shows {} of {} containers",
            limits.len(),
            RUNC + DOCKER
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let events = std::fs::read_to_string(lab.state_dir.join("events.jsonl")).unwrap_or_default();
    for l in events.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
}
