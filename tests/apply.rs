//! `cglimit apply` against running containers: Docker's through a private
//! dockerd, runc's through a state directory, with real cgroups.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::Dockerd;
use common::*;

fn apply(lab: &Lab, d: Option<&Dockerd>, extra: &[&str]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.arg("apply").arg("--policy-dir").arg(&lab.policy_dir);
    c.arg("--state-dir").arg(&lab.state_dir);
    match d {
        Some(d) => c
            .arg("--docker-host")
            .arg(format!("unix://{}", d.sock.display())),
        None => c.arg("--no-docker"),
    };
    // Only this test's containers: not the host's (or other tests') runc,
    // crun and podman containers.
    let empty = lab.dir.join("empty-root");
    std::fs::create_dir_all(&empty).unwrap();
    c.arg("--no-podman").arg("--crun-root").arg(&empty);
    if !extra.contains(&"--runc-root") {
        c.arg("--runc-root").arg(&empty);
    }
    c.args(extra).stdin(Stdio::null()).output().unwrap()
}

fn inspect(d: &Dockerd, name: &str) -> (u64, u64) {
    let out = d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}",
        name,
    ]);
    let t = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = t
        .split_whitespace()
        .map(|x| x.parse::<i64>().unwrap().max(0) as u64)
        .collect();
    (v[0], v[1])
}

fn limit_inside(d: &Dockerd, name: &str) -> u64 {
    let out = d.docker(&[
        "exec",
        name,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn start(d: &Dockerd, name: &str, flags: &[&str]) {
    let out = d.run_plain(name, flags, &["sleep", "600"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn apply_brings_docker_containers_under_policy() {
    let lab = Lab::new("apply");
    lab.set_policy("labelled.yaml", "name: big\npriority: 5\nmatch: {labels: {tier: big}}\nmemory: {default: 128M, max: 512M}\nswap: {default: 0, max: 0}\nhigh: 75%\n");
    let d = Dockerd::start(&lab, &[]);
    // Started with plain runc: no limits at all, one labelled, one above max.
    start(&d, "free1", &[]);
    start(&d, "free2", &[]);
    start(&d, "labelled", &["--label", "tier=big"]);
    start(&d, "greedy", &["-m", "1g", "--memory-swap", "1g"]);

    // --dry-run shows the plan and changes nothing.
    let out = apply(&lab, Some(&d), &["--all", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(
        plan.contains("free1") && plan.contains("unlimited -> 64M") && plan.contains("would fix"),
        "{plan}"
    );
    assert!(
        plan.contains("greedy: memory 1G crosses max 256M: clamped to 256M"),
        "{plan}"
    );
    assert_eq!(limit_inside(&d, "free1"), V1_UNLIMITED);
    assert_eq!(inspect(&d, "greedy"), (1 << 30, 1 << 30));
    let json = apply(&lab, Some(&d), &["--all", "--dry-run", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v["containers"].as_array().unwrap().len(),
        4,
        "{}",
        stdout(&json)
    );
    assert!(
        v["containers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "would_fix")
    );

    // apply --all fixes them, and docker inspect agrees with the cgroup.
    let out = apply(&lab, Some(&d), &["--all"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(limit_inside(&d, "free1"), 64 * M);
    assert_eq!(inspect(&d, "free1"), (64 * M, 64 * M));
    assert_eq!(limit_inside(&d, "labelled"), 128 * M);
    assert_eq!(limit_inside(&d, "greedy"), 256 * M);
    assert_eq!(inspect(&d, "greedy"), (256 * M, 256 * M));
    let stats = d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}",
        "greedy",
    ]);
    assert!(
        stdout(&stats).trim().ends_with("/ 256MiB"),
        "{}",
        stdout(&stats)
    );
    // A second pass finds everything compliant.
    let out = apply(&lab, Some(&d), &["--all"]);
    assert!(
        stdout(&out).matches("compliant").count() == 4,
        "{}",
        stdout(&out)
    );

    // A docker update above max is corrected by apply.
    assert!(
        d.docker(&["update", "-m", "2g", "--memory-swap", "2g", "free2"])
            .status
            .success()
    );
    assert_eq!(limit_inside(&d, "free2"), 2 << 30);
    let out = apply(&lab, Some(&d), &["free2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limit_inside(&d, "free2"), 256 * M);

    // ... and by --watch within one interval, recorded as drift_corrected.
    let mut watch = Command::new(BIN)
        .arg("apply")
        .arg("--policy-dir")
        .arg(&lab.policy_dir)
        .arg("--state-dir")
        .arg(&lab.state_dir)
        .arg("--docker-host")
        .arg(format!("unix://{}", d.sock.display()))
        .args(["--all", "--watch", "--interval", "1s", "--no-podman"])
        .arg("--runc-root")
        .arg(lab.dir.join("empty-root"))
        .arg("--crun-root")
        .arg(lab.dir.join("empty-root"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        d.docker(&["update", "-m", "3g", "--memory-swap", "3g", "free1"])
            .status
            .success()
    );
    let t = Instant::now();
    // Above max is clamped to max, as at the start.
    while limit_inside(&d, "free1") != 256 * M && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t.elapsed();
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(limit_inside(&d, "free1"), 256 * M, "corrected");
    assert_eq!(inspect(&d, "free1"), (256 * M, 256 * M));
    assert!(
        took < Duration::from_millis(2500),
        "within one interval (1s) of the next pass: {took:?}"
    );
    let events = std::fs::read_to_string(lab.state_dir.join("events.jsonl")).unwrap();
    let ev: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        ev.iter()
            .any(|e| e["kind"] == "drift_corrected" && e["container"]["name"] == "free1"),
        "{events}"
    );

    // A stopped container: a clear message, exit 1.
    assert!(d.docker(&["stop", "-t", "1", "labelled"]).status.success());
    let out = apply(&lab, Some(&d), &["labelled", "free1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("labelled: container is not running (status exited)"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("free1"),
        "the rest is still applied: {}",
        stdout(&out)
    );
}

#[test]
fn apply_reports_instead_of_killing_and_finds_runc_containers() {
    let mut lab = Lab::new("applyv1");
    let d = Dockerd::start(&lab, &[]);
    // 100M in a tmpfs (shmem, charged to the container, not reclaimable
    // without swap); the policy wants 64M: v1 would answer EBUSY.
    let out = d.run_plain(
        "fat",
        &["--tmpfs", "/big:size=200m"],
        &[
            "sh",
            "-c",
            "head -c 100000000 /dev/zero > /big/f; sleep 600",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let t = Instant::now();
    loop {
        let u = d.docker(&[
            "exec",
            "fat",
            "cat",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ]);
        if String::from_utf8_lossy(&u.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
            > 90 * M
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the workload did not grow"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A runc container no engine owns, in its own state directory.
    let root = lab.dir.join("runc-root");
    let bundle = lab.bundle_with("r1", None, "", vec![], "sleep 600");
    let id = format!("{}-r1", lab.name);
    lab.start_detached(Some(&root), &bundle, &id);
    let root_arg = root.display().to_string();
    let out = apply(&lab, Some(&d), &["--all", "--runc-root", &root_arg]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one is not at its target yet: {}",
        stdout(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("fat: held at") && text.contains("more than the target 64M"),
        "{text}"
    );
    assert!(text.contains(&id[..12]) && text.contains("runc"), "{text}");
    // Not killed, and not left unlimited: held at its usage, so it cannot
    // grow; the runc container was fixed.
    let state = d.docker(&["inspect", "-f", "{{.State.Status}}", "fat"]);
    assert_eq!(stdout(&state).trim(), "running");
    let held = d.v1_limits("fat").0;
    assert!((90 * M..=110 * M).contains(&held), "held at {held}");
    let cg = v1_memory_root()
        .join(lab.cgroup_parent.trim_start_matches('/'))
        .join("r1");
    let lim: u64 = std::fs::read_to_string(cg.join("memory.limit_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(lim, 64 * M);
    let rec = lab
        .decisions()
        .into_iter()
        .rev()
        .find(|r| r["container"]["name"] == "fat")
        .unwrap();
    assert!(
        rec["decision"]["notes"].to_string().contains("held at"),
        "{rec}"
    );
    // As usage falls, each pass holds it lower, then at its target.
    let shrink = |bytes: &str| {
        let out = d.docker(&[
            "exec",
            "fat",
            "sh",
            "-c",
            &format!("head -c {bytes} /dev/zero > /big/f"),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    shrink("80000000");
    let _ = apply(&lab, Some(&d), &["fat"]);
    let lower = d.v1_limits("fat").0;
    assert!(
        lower < held && lower >= 76 * M,
        "held lower: {lower} after {held}"
    );
    shrink("0");
    let out = apply(&lab, Some(&d), &["fat"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(d.v1_limits("fat").0, 64 * M);

    // With no engine running: a clear message, and the runc container still handled.
    let out = Command::new(BIN)
        .arg("apply")
        .arg("--policy-dir")
        .arg(&lab.policy_dir)
        .args([
            "--all",
            "--docker-host",
            "unix:///nonexistent/d.sock",
            "--runc-root",
            &root_arg,
            "--crun-root",
            &root_arg,
            "--no-podman",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot ask the Docker engine"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("compliant"), "{}", stdout(&out));
}

/// podman has no daemon: its containers are found in runc's state directory
/// and named through `podman ps`.
#[test]
fn apply_finds_podman_containers_by_name() {
    let mut lab = Lab::new("applypodman");
    let rootfs = lab.dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep")).unwrap();
    let (root, runroot) = (lab.dir.join("proot"), lab.dir.join("prunroot"));
    let podman = |args: &[&str]| {
        Command::new("podman")
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--runtime",
                "runc",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf"])
        .arg(lab.dir.join("r.tar"))
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    let img = format!("localhost/{}", lab.name.to_lowercase());
    assert!(
        podman(&["import", &lab.dir.join("r.tar").display().to_string(), &img])
            .status
            .success()
    );
    let (r2, rr2) = (root.clone(), runroot.clone());
    lab.on_drop(move || {
        let _ = Command::new("podman")
            .arg("--root")
            .arg(&r2)
            .arg("--runroot")
            .arg(&rr2)
            .args(["--storage-driver", "vfs", "rm", "-af"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
    let name = format!("{}-pm", lab.name);
    let out = podman(&[
        "run",
        "-d",
        "--net",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--cgroup-parent",
        &lab.cgroup_parent,
        "--name",
        &name,
        "--label",
        "tier=big",
        &img,
        "sleep",
        "600",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    lab.set_policy(
        "big.yaml",
        "name: big\npriority: 5\nmatch: {labels: {tier: big}}\nmemory: {default: 128M}\n",
    );
    let out = Command::new(BIN)
        .arg("apply")
        .arg("--policy-dir")
        .arg(&lab.policy_dir)
        .args(["--no-docker", "--podman-root"])
        .arg(&root)
        .arg("--podman-runroot")
        .arg(&runroot)
        .arg(&name)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let row = text
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("podman") && row.contains("big") && row.contains("fixed"),
        "{row}"
    );
    let id = String::from_utf8_lossy(&podman(&["inspect", "-f", "{{.Id}}", &name]).stdout)
        .trim()
        .to_string();
    let cg = v1_memory_root()
        .join(lab.cgroup_parent.trim_start_matches('/'))
        .join(format!("libpod-{id}"));
    let lim: u64 = std::fs::read_to_string(cg.join("memory.limit_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(lim, 128 * M);
}
