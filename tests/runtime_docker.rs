//! Docker with `cglimit runtime` registered in daemon.json: a private dockerd,
//! a busybox image imported from busybox-static, limits checked from inside
//! the containers.

mod common;

use common::docker::{Dockerd, IMAGE, runtime_args};
use common::*;

const READ: &[&str] = &[
    "cat",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
    "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
];

fn run(d: &Dockerd, flags: &[&str]) -> std::process::Output {
    let mut a = vec!["run", "--rm", "--runtime", "cglimit", "--net", "none"];
    a.extend_from_slice(flags);
    a.push(IMAGE);
    a.extend_from_slice(READ);
    d.docker(&a)
}

#[test]
fn docker_containers_get_their_policys_limits() {
    let lab = Lab::new("docker");
    lab.set_policy(
        "labelled.yaml",
        "name: big\npriority: 5\nmatch: {labels: {tier: big}}\nmemory: {default: 128M, max: 512M}\nswap: {default: 0, max: 0}\nhigh: 75%\n---\nname: huge\npriority: 5\nmatch: {labels: {tier: huge}}\ntrust: [tier]\nmemory: {max: 512M}\nswap: {max: 0}\nhigh: 75%\n---\nname: strict\npriority: 5\nmatch: {names: ['denyme-*']}\nmemory: {default: 64M, max: 256M}\nonViolation: deny\nmessage: ask the platform team for more than 256M\n",
    );
    let d = Dockerd::start(&lab, &runtime_args(&lab));

    // No -m: the default.
    let out = run(&d, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (64 * M, 64 * M, 32 * M));
    // A label selects its policy (names and labels come from the engine).
    // Its high (75%) is held to the default's (50%): a label buys no looser throttle.
    let out = run(&d, &["--label", "tier=big"]);
    assert_eq!(limits_seen(&out), (128 * M, 128 * M, 64 * M));
    // A label is the container creator's to set: it cannot lift the
    // container above the default's max (256M) unless the key is trusted.
    let out = run(
        &d,
        &["--label", "tier=big", "-m", "400m", "--memory-swap", "400m"],
    );
    assert_eq!(limits_seen(&out), (256 * M, 256 * M, 128 * M));
    let out = run(
        &d,
        &[
            "--label",
            "tier=huge",
            "-m",
            "400m",
            "--memory-swap",
            "400m",
        ],
    );
    assert_eq!(limits_seen(&out), (400 * M, 400 * M, 300 * M));
    // -m 1g --memory-swap 1g above max: clamped, and no swap (it asked for none).
    let out = run(&d, &["-m", "1g", "--memory-swap", "1g"]);
    assert_eq!(limits_seen(&out), (256 * M, 256 * M, 128 * M));
    // -m alone arrives as swap = 2 x memory: 100M of swap asked, 32M allowed.
    let out = run(&d, &["-m", "100m"]);
    assert_eq!(limits_seen(&out), (100 * M, 132 * M, 50 * M));
    // Within bounds is kept.
    let out = run(&d, &["-m", "128m", "--memory-swap", "160m"]);
    assert_eq!(limits_seen(&out), (128 * M, 160 * M, 64 * M));
    // deny: docker run fails with the policy's message.
    let out = run(&d, &["--name", "denyme-1", "-m", "1g"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("ask the platform team for more than 256M"),
        "{err}"
    );
    assert!(err.contains("denyme-1"), "{err}");

    // docker stats shows the enforced limit.
    let out = d.run_detached("longrun", "300");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}",
        "longrun",
    ]);
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(stats.trim().ends_with("/ 64MiB"), "{stats}");

    // docker start after docker stop applies the policy again: change it in between.
    assert!(d.docker(&["stop", "-t", "1", "longrun"]).status.success());
    lab.set_policy(
        "default.yaml",
        &POLICY.replace("default: 64M", "default: 96M"),
    );
    let out = d.docker(&["start", "longrun"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.docker(&[
        "exec",
        "longrun",
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (96 * M).to_string()
    );

    // A broken policy fails the start visibly, naming the file and line.
    lab.set_policy("default.yaml", "name: default\nmemory: {default: 64Q}\n");
    let out = run(&d, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("default.yaml:2:"), "{err}");
    assert!(err.contains("memory.default"), "{err}");

    let recs = lab.decisions();
    assert!(recs.iter().all(|r| r["source"] == "runtime"));
    assert!(
        recs.iter()
            .any(|r| r["container"]["name"] == "denyme-1" && r["outcome"] == "denied")
    );
    assert!(
        recs.iter()
            .any(|r| r["container"]["labels"]["tier"] == "big" && r["decision"]["policy"] == "big")
    );
    assert!(recs.iter().any(|r| r["container"]["image"] == IMAGE));
}

#[test]
fn docker_verbs_pass_through_untouched() {
    let lab = Lab::new("dockerpass");
    let d = Dockerd::start(&lab, &runtime_args(&lab));
    let out = d.run_detached("p1", "300");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.docker(&["exec", "p1", "echo", "hello from exec"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from exec\n");
    let out = d.docker(&["exec", "p1", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "exit statuses pass through");
    assert!(d.docker(&["pause", "p1"]).status.success());
    let state = |d: &Dockerd| {
        String::from_utf8_lossy(
            &d.docker(&["inspect", "-f", "{{.State.Status}}", "p1"])
                .stdout,
        )
        .trim()
        .to_string()
    };
    assert_eq!(state(&d), "paused");
    assert!(d.docker(&["unpause", "p1"]).status.success());
    assert_eq!(state(&d), "running");
    assert!(d.docker(&["kill", "p1"]).status.success());
    assert_eq!(state(&d), "exited");
    assert!(d.docker(&["rm", "-f", "p1"]).status.success());
    assert!(d.docker(&["inspect", "p1"]).status.code() != Some(0));
    // One decision, for the one create.
    assert_eq!(lab.decisions().len(), 1);
}

/// `cglimit-runtime`, a symlink registered without arguments, reads its
/// settings from the config file (`CGLIMIT_CONFIG` names another one), and
/// passes runc's own verbs through.
#[test]
fn symlink_dispatch_with_a_config_file() {
    let mut lab = Lab::new("symlink");
    let link = lab.dir.join("cglimit-runtime");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let cfg = lab.dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "policyDir: {}\nstateDir: {}\nruntime: runc\nonError: deny\ndockerHost: unix:///nonexistent/d.sock\nengineTimeout: 50ms\n",
            lab.policy_dir.display(),
            lab.state_dir.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(&link)
        .arg("--version")
        .env("CGLIMIT_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("runc version"),
        "passes through"
    );
    // The bundle asks for 1g; the policy's max is 256M.
    let bundle = lab.bundle_with("c", Some((1 << 30, Some(1 << 30))), "", vec![], "");
    let id = format!("{}-c", lab.name);
    lab.track("runc", &id);
    let out = std::process::Command::new(&link)
        .args([
            "--log",
            &lab.dir.join("runc.log").display().to_string(),
            "run",
            "--bundle",
        ])
        .arg(&bundle)
        .arg(&id)
        .env("CGLIMIT_CONFIG", &cfg)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (256 * M, 256 * M, 128 * M));
    let log = std::fs::read_to_string(lab.dir.join("runc.log")).unwrap();
    assert!(
        log.contains("cannot connect to /nonexistent/d.sock"),
        "engine trouble is logged, not fatal: {log}"
    );
    assert_eq!(lab.decisions()[0]["source"], "runtime");
    // A config file with a typo stops create with file and line.
    std::fs::write(&cfg, "policyDir: /x\nruntme: runc\n").unwrap();
    let out = std::process::Command::new(&link)
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("x2")
        .env("CGLIMIT_CONFIG", &cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.yaml:2:"), "{}", stderr(&out));
}

/// The shipped `hooks/daemon.json`: the `cglimit-runtime` symlink without
/// runtimeArgs (dockerd then runs it directly, not through a generated
/// shell script), configured by its config file.
#[test]
fn the_shipped_symlink_registration_runs_docker_containers() {
    let lab = Lab::new("shipped");
    lab.set_policy(
        "labelled.yaml",
        "name: big\npriority: 5\nmatch: {labels: {tier: big}}\nmemory: {default: 128M, max: 512M}\nswap: {default: 0, max: 0}\nhigh: 75%\n",
    );
    // dockerd hands CGLIMIT_CONFIG to the runtimes it starts when this
    // file exists at its start; the engine's socket is known only after.
    let cfg = lab.dir.join("config.yaml");
    write_private(&cfg, "");
    let d = Dockerd::start(&lab, &runtime_args(&lab));
    let shipped: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/daemon.json"))
            .unwrap(),
    )
    .unwrap();
    let entry = &shipped["runtimes"]["cglimit"];
    assert!(entry.get("runtimeArgs").is_none(), "{entry}");
    assert_eq!(shipped["default-runtime"], "cglimit");
    let name = std::path::Path::new(entry["path"].as_str().unwrap())
        .file_name()
        .unwrap();
    let link = lab.dir.join(name);
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    write_private(
        &cfg,
        &format!(
            "policyDir: {}\nstateDir: {}\ndockerHost: unix://{}\n",
            lab.policy_dir.display(),
            lab.state_dir.display(),
            d.sock.display()
        ),
    );
    d.add_runtime_path("cglimit-shipped", &link);
    let mut a = vec![
        "run",
        "--rm",
        "--runtime",
        "cglimit-shipped",
        "--net",
        "none",
    ];
    a.extend(["--label", "tier=big", IMAGE]);
    a.extend_from_slice(READ);
    let out = d.docker(&a);
    assert!(out.status.success(), "{}", stderr(&out));
    // The label policy: the engine was asked, through the config's dockerHost.
    assert_eq!(limits_seen(&out), (128 * M, 128 * M, 64 * M));
    let d0 = &lab.decisions()[0];
    assert_eq!(d0["source"], "runtime");
    assert_eq!(d0["decision"]["policy"], "big");
}
