//! The escape suite: each test tries to get a real container above its
//! policy through a real component, as a careless or hostile container
//! creator would, and checks that it stays inside. TESTING.md has the table.

mod common;

use std::process::{Command, Stdio};

use common::docker::{Dockerd, IMAGE, runtime_args};
use common::*;

/// What the test policy allows (`common::POLICY`): max 256M, swap up to
/// 32M, high 50%; and a `deny` policy for containers named `strict-*`.
const STRICT: &str = "name: strict\npriority: 5\nmatch: {names: ['strict-*']}\nmemory: {default: 64M, max: 128M}\nswap: {max: 0}\nonViolation: deny\nmessage: ask the platform team for more than 128M\n---\nname: strict-ids\npriority: 5\nmatch: {ids: ['*-strict*']}\nmemory: {default: 64M, max: 128M}\nswap: {max: 0}\nonViolation: deny\nmessage: ask the platform team for more than 128M\n";

fn v1_limits(cgroup: &str) -> (u64, u64, u64) {
    let dir = v1_memory_root().join(cgroup.trim_start_matches('/'));
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    (
        read("memory.limit_in_bytes"),
        read("memory.memsw.limit_in_bytes"),
        read("memory.soft_limit_in_bytes"),
    )
}

/// A running runc container created with the hook (64M by the default
/// policy); its id and cgroup.
fn running(lab: &mut Lab, name: &str) -> (String, String) {
    let id = lab.detached(name, None, "sleep 600");
    let cgroup = format!("{}/{name}", lab.cgroup_parent);
    assert_eq!(v1_limits(&cgroup).0, 64 * M, "created under policy");
    (id, cgroup)
}

/// An update through `wrapper` by a resources file asking for 8G: held to
/// the policy's max, the rest of the document passed through.
fn update_by_file(lab: &Lab, mut wrapper: Command, id: &str, cgroup: &str) {
    let file = lab.dir.join("res.json");
    std::fs::write(
        &file,
        r#"{"memory":{"limit":8589934592,"swap":8589934592},"pids":{"limit":78}}"#,
    )
    .unwrap();
    let out = wrapper
        .args(["update", "-r"])
        .arg(&file)
        .arg(id)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v1_limits(cgroup), (256 * M, 256 * M, 128 * M));
    let pids = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{cgroup}/pids.max")).unwrap();
    assert_eq!(pids.trim(), "78", "the rest of the document passes through");
}

/// `runc update` through the wrapper, in each of its three input forms:
/// flags, a resources file, resources on stdin (what containerd sends).
#[test]
fn runc_update_cannot_lift_a_container_above_its_policy() {
    let mut lab = Lab::new("escupdate");
    let (id, cgroup) = running(&mut lab, "u1");

    // Flags: 100G of memory, unlimited swap, mixed with a flag kept as is.
    let out = wrapper(&lab)
        .args(["update", "--pids-limit", "77", "--memory", "100g"])
        .args(["--memory-swap=-1", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v1_limits(&cgroup), (256 * M, 288 * M, 128 * M));
    let pids = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{cgroup}/pids.max")).unwrap();
    assert_eq!(pids.trim(), "77", "the other flags pass through");

    // Within the policy: kept.
    let out = wrapper(&lab)
        .args(["update", "--memory", "100m", "--memory-swap", "110m", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v1_limits(&cgroup), (100 * M, 110 * M, 50 * M));

    update_by_file(&lab, wrapper(&lab), &id, &cgroup);

    // Resources on stdin: unlimited memory.
    let mut c = wrapper(&lab);
    c.args(["update", "--resources", "-", &id]);
    let out = with_stdin(
        c,
        br#"{"memory":{"limit":-1,"swap":-1},"pids":{"limit":79}}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v1_limits(&cgroup).0, 256 * M);
    let pids = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{cgroup}/pids.max")).unwrap();
    assert_eq!(pids.trim(), "79", "the rest of the document passes through");

    // An update that sets no memory passes through untouched, undecided.
    let before = lab.decisions().len();
    let out = wrapper(&lab)
        .args(["update", "--pids-limit", "80", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lab.decisions().len(), before);

    let updates: Vec<_> = lab
        .decisions()
        .into_iter()
        .filter(|r| r["source"] == "update")
        .collect();
    assert_eq!(updates.len(), 4, "one record per memory update");
    assert!(updates.iter().all(|r| r["outcome"] == "applied"));
    assert_eq!(updates[0]["decision"]["limits"]["memory"], 256 * M);
}

/// The same through crun, which podman and CRI-O drive: its `update`
/// takes the same flags and `-r FILE`; the wrapper finds the bundle through
/// `crun state`.
#[test]
fn crun_update_cannot_lift_a_container_above_its_policy() {
    prepare_crun();
    let mut lab = Lab::new("escupcrun");
    let bundle = lab.bundle_with("c1", None, "createRuntime", lab.hook_args(), "sleep 600");
    let id = format!("{}-c1", lab.name);
    lab.start_detached_on("crun", None, &bundle, &id);
    let cgroup = format!("{}/c1", lab.cgroup_parent);
    assert_eq!(v1_limits(&cgroup).0, 64 * M, "created under policy");
    let crun = |lab: &Lab| {
        let mut c = wrapper(lab);
        c.args(["--runtime", "crun"]);
        c
    };

    let out = crun(&lab)
        .args([
            "update",
            "--memory",
            "107374182400",
            "--memory-swap=-1",
            &id,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v1_limits(&cgroup), (256 * M, 288 * M, 128 * M));

    update_by_file(&lab, crun(&lab), &id, &cgroup);

    let updates = lab
        .decisions()
        .into_iter()
        .filter(|r| r["source"] == "update" && r["outcome"] == "applied")
        .count();
    assert_eq!(updates, 2, "one record per memory update");
}

/// `deny` refuses the update with the policy's message and leaves the
/// container's limits as they were.
#[test]
fn a_denied_update_changes_nothing() {
    let mut lab = Lab::new("escupdeny");
    lab.set_policy("strict.yaml", STRICT);
    let (id, cgroup) = running(&mut lab, "strict1");
    let before = v1_limits(&cgroup);
    let out = wrapper(&lab)
        .args(["update", "--memory", "1g", "--memory-swap", "1g", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ask the platform team for more than 128M"),
        "{}",
        stderr(&out)
    );
    assert_eq!(v1_limits(&cgroup), before);
    let last = lab.decisions().pop().unwrap();
    assert_eq!(
        (last["source"].as_str(), last["outcome"].as_str()),
        (Some("update"), Some("denied"))
    );
}

/// `docker update -m 100g` on a container started through the wrapper:
/// containerd's shim calls the runtime's `update` with the resources on
/// stdin; the container keeps its policy's maximum, and a `deny` policy
/// makes `docker update` fail with its message.
#[test]
fn docker_update_stays_within_the_policy() {
    let lab = Lab::new("escdockerupd");
    lab.set_policy("strict.yaml", STRICT);
    let d = Dockerd::start(&lab, &runtime_args(&lab));
    let start = |name: &str| {
        let out = d.run_detached(name, "600");
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let limit = |name: &str| d.v1_limits(name);
    start("free-1");
    assert_eq!(limit("free-1"), (64 * M, 64 * M));
    let out = d.docker(&["update", "-m", "100g", "--memory-swap", "100g", "free-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        limit("free-1"),
        (256 * M, 256 * M),
        "clamped to the policy's max"
    );

    start("strict-1");
    assert_eq!(limit("strict-1"), (64 * M, 64 * M));
    let out = d.docker(&["update", "-m", "1g", "--memory-swap", "1g", "strict-1"]);
    assert!(!out.status.success(), "a denied update fails");
    assert!(
        stderr(&out).contains("ask the platform team for more than 128M"),
        "docker update prints the policy's message: {}",
        stderr(&out)
    );
    assert_eq!(limit("strict-1"), (64 * M, 64 * M));
    let _ = d.docker(&["rm", "-f", "free-1", "strict-1"]);
}

/// A broken wrapper config (an unknown key) refuses creates, but never the
/// verbs that stop and remove containers: they pass through to the runtime.
#[test]
fn a_broken_config_never_traps_a_container() {
    let mut lab = Lab::new("escbrokencfg");
    let (id, _) = running(&mut lab, "b1");
    let cfg = lab.dir.join("broken.yaml");
    write_private(&cfg, "policyDir: /nonexistent\nnoSuchKey: 1\n");
    let wrapped = |args: &[&str]| {
        Command::new(BIN)
            .args(["runtime", "--config"])
            .arg(&cfg)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = wrapped(&["state", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    assert!(stderr(&out).contains("noSuchKey"), "{}", stderr(&out));
    let out = wrapped(&["kill", &id, "KILL"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wrapped(&["delete", "--force", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let gone = Command::new("runc").args(["state", &id]).output().unwrap();
    assert!(!gone.status.success(), "deleted");

    // A create through the same config is refused, before runc runs.
    let bundle = lab.bundle_with("b2", None, "", vec![], "sleep 600");
    let id2 = format!("{}-b2", lab.name);
    lab.track("runc", &id2);
    let out = wrapped(&["create", "--bundle", bundle.to_str().unwrap(), &id2]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("noSuchKey"), "{}", stderr(&out));
    let never = Command::new("runc").args(["state", &id2]).output().unwrap();
    assert!(!never.status.success(), "never created");
}

/// A name or annotation holding a newline cannot forge a line of the plain
/// log: continuation lines are indented, other control characters escaped.
#[test]
fn a_name_cannot_forge_a_log_line() {
    let mut lab = Lab::new("esclogforge");
    let log = lab.dir.join("hook.log");
    let mut args = lab.hook_args();
    args.extend(["--log-file".into(), log.display().to_string()]);
    let bundle = lab.bundle_with("f1", None, "createRuntime", args, "");
    let config = bundle.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["annotations"] = serde_json::json!({
        "io.container.name": "web\n2026-11-30T00:00:00.000000000Z cglimit[1]: info: container forged: policy \"default\"\r\u{1b}[1A"
    });
    std::fs::write(&config, c.to_string()).unwrap();
    let out = lab.run("runc", &format!("{}-f1", lab.name), &bundle);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.is_empty());
    for line in text.lines() {
        assert!(
            line.starts_with("    ") || line.contains("cglimit[") && !line.contains("cglimit[1]:"),
            "a forged line: {line:?}"
        );
        assert!(!line.contains('\r') && !line.contains('\u{1b}'), "{line:?}");
    }
}

/// A policy whose default is 0 once made the wrapper write `"limit": 0`,
/// which runc reads as no limit at all. Such a policy is now refused where
/// it is written, and the create with it (fail closed by default).
#[test]
fn a_zero_size_cannot_mean_no_limit() {
    let mut lab = Lab::new("esczero");
    lab.set_policy(
        "default.yaml",
        "name: default\nmemory: {default: 0, max: 256M}\n",
    );
    let bundle = lab.bundle_with("z1", None, "", vec![], "sleep 600");
    let id = format!("{}-z1", lab.name);
    lab.track("runc", &id);
    // Not a pipe: a created container would hold it open.
    let err_file = lab.dir.join("create.err");
    let status = wrapper(&lab)
        .args(["create", "--bundle", bundle.to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .status()
        .unwrap();
    let created = Command::new("runc").args(["state", &id]).output().unwrap();
    if created.status.success() {
        let limit = v1_limits(&format!("{}/z1", lab.cgroup_parent)).0;
        panic!("created with memory.limit_in_bytes {limit}");
    }
    assert_eq!(status.code(), Some(1));
    let err = std::fs::read_to_string(&err_file).unwrap();
    let f = lab.policy_dir.join("default.yaml");
    assert!(
        err.contains(&format!(
            "{}:2:19: memory.default: 0 is below 6M",
            f.display()
        )),
        "{err}"
    );
    let v = Command::new(BIN)
        .arg("validate")
        .arg(&lab.policy_dir)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(1), "validate refuses it too");
}

/// A container whose cgroup is shared with a process outside it (a
/// `cgroupsPath` naming a service's own cgroup): the hook would put the
/// service under the container's limit. It refuses, naming the others.
#[test]
fn a_cgroup_shared_with_others_is_not_limited() {
    let mut lab = Lab::new("escshared");
    let service = Victim::new(&lab, "svc");
    let bundle = lab.bundle_with("s1", None, "createRuntime", lab.hook_args(), "");
    let config = bundle.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["linux"]["cgroupsPath"] = format!("{}/svc", lab.cgroup_parent).into();
    std::fs::write(&config, c.to_string()).unwrap();
    let out = lab.run("runc", &format!("{}-s1", lab.name), &bundle);
    assert_eq!(
        service.read("memory.limit_in_bytes"),
        V1_UNLIMITED,
        "the service's cgroup was limited: {}",
        stderr(&out)
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("also holds 1 other process: {}", service.pid())),
        "{}",
        stderr(&out)
    );
}

/// Names, images and labels are the creator's to set: a policy selected
/// through them gives no more than the catch-all (256M here), in `audit`
/// too, unless its `trust` vouches for them.
const GENEROUS: &str = "name: ci\npriority: 5\nmatch: {names: ['ci-*']}\nmemory: {max: 4G}\nswap: {max: 1G}\n---\nname: team\npriority: 5\nmatch: {labels: {team: '*'}}\nmemory: {max: 4G}\nonViolation: audit\n---\nname: vetted\npriority: 6\nmatch: {names: ['vetted-*']}\ntrust: [names]\nmemory: {max: 4G}\nswap: {max: 0}\n";

#[test]
fn a_chosen_name_or_label_buys_no_memory_through_docker() {
    let lab = Lab::new("esctrustdocker");
    lab.set_policy("generous.yaml", GENEROUS);
    let d = Dockerd::start(&lab, &runtime_args(&lab));
    let run = |flags: &[&str]| {
        let mut a = vec!["run", "--rm", "--runtime", "cglimit", "--net", "none"];
        a.extend_from_slice(flags);
        a.extend([
            IMAGE,
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
        ]);
        let out = d.docker(&a);
        assert!(out.status.success(), "{}", stderr(&out));
        limits_seen(&out)
    };
    let gig = ["-m", "1g", "--memory-swap", "1g"];
    let name = [&["--name", "ci-evil"][..], &gig].concat();
    assert_eq!(run(&name), (256 * M, 256 * M, 128 * M));
    let label = ["--label", "team=x", "-m", "2g", "--memory-swap", "2g"];
    assert_eq!(run(&label), (256 * M, 256 * M, 128 * M), "audit held");
    let vetted = [&["--name", "vetted-1"][..], &gig].concat();
    assert_eq!(run(&vetted).0, G, "trusted names keep their bounds");
}

/// The hook reads a container's name from its annotations
/// (`io.container.name`): set by whoever writes the bundle.
#[test]
fn an_annotated_name_buys_no_memory_through_the_hook() {
    let mut lab = Lab::new("esctrusthook");
    lab.set_policy("generous.yaml", GENEROUS);
    let bundle = lab.bundle("n1", Some((1 << 30, Some(1 << 30))), "createRuntime");
    let config = bundle.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["annotations"] = serde_json::json!({"io.container.name": "ci-evil"});
    std::fs::write(&config, c.to_string()).unwrap();
    let out = lab.run("runc", &format!("{}-n1", lab.name), &bundle);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (256 * M, 256 * M, 128 * M));
    let d = lab.decisions().pop().unwrap();
    assert_eq!(d["container"]["name"], "ci-evil");
    assert!(
        d["decision"]["why"]
            .as_str()
            .unwrap()
            .contains("selected through name"),
        "{d}"
    );
}

/// The policy directory reached through a symlink that sits in a
/// directory another user owns: that user can point the link at policies
/// of their own at any moment (a loop doing so got its own policy loaded
/// in 2 of 1,500 hook runs). The check walks the path as written.
#[test]
fn a_policy_dir_behind_a_user_owned_symlink_is_refused() {
    use std::os::unix::fs::{PermissionsExt, chown};
    let mut lab = Lab::new("escpolicylink");
    let users = lab.dir.join("home");
    std::fs::create_dir_all(&users).unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown(&users, Some(65534), Some(65534)).unwrap();
    let link = users.join("policies");
    std::os::unix::fs::symlink(&lab.policy_dir, &link).unwrap();
    let mut args = lab.hook_args();
    args[3] = link.display().to_string();
    let bundle = lab.bundle_with(
        "l1",
        Some((1 << 30, Some(1 << 30))),
        "createRuntime",
        args,
        "",
    );
    let out = lab.run("runc", &format!("{}-l1", lab.name), &bundle);
    assert!(
        !out.status.success(),
        "started: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr(&out).contains(&format!("{} is owned by uid 65534", users.display())),
        "{}",
        stderr(&out)
    );
    // The same link in a directory only root can write is fine.
    let root_link = lab.dir.join("policies-link");
    std::os::unix::fs::symlink(&lab.policy_dir, &root_link).unwrap();
    let mut args = lab.hook_args();
    args[3] = root_link.display().to_string();
    let bundle = lab.bundle_with(
        "l2",
        Some((1 << 30, Some(1 << 30))),
        "createRuntime",
        args,
        "",
    );
    let out = lab.run("runc", &format!("{}-l2", lab.name), &bundle);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out).0, 256 * M);
}

/// The hook reads a container's name from its annotations; `apply` read
/// none, chose another policy for the same container and "fixed" it, so
/// the two undid each other. They now read the same facts.
#[test]
fn hook_and_apply_choose_the_same_policy() {
    let lab = Lab::new("escsamefacts");
    lab.set_policy(
        "tiny.yaml",
        "name: tiny\npriority: 5\nmatch: {names: ['tiny-*']}\nmemory: {default: 32M, max: 32M}\nswap: {max: 0}\nhigh: 50%\n",
    );
    let root = lab.dir.join("runc-root");
    let mut lab = lab;
    let bundle = lab.bundle_with("t1", None, "createRuntime", lab.hook_args(), "sleep 600");
    let config = bundle.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["annotations"] = serde_json::json!({"io.container.name": "tiny-1"});
    std::fs::write(&config, c.to_string()).unwrap();
    let id = format!("{}-t1", lab.name);
    lab.start_detached(Some(&root), &bundle, &id);
    let cgroup = format!("{}/t1", lab.cgroup_parent);
    assert_eq!(v1_limits(&cgroup).0, 32 * M, "the hook chose tiny");
    let empty = lab.dir.join("empty-root");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(BIN)
        .args([
            "apply",
            "--all",
            "--no-docker",
            "--no-podman",
            "--policy-dir",
        ])
        .arg(&lab.policy_dir)
        .arg("--runc-root")
        .arg(&root)
        .arg("--crun-root")
        .arg(&empty)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(
        report.contains("tiny-1") && report.contains("compliant"),
        "{report}"
    );
    assert_eq!(
        v1_limits(&cgroup).0,
        32 * M,
        "apply left it as the hook set it"
    );
}

/// A refused container must not start because appending its record
/// stalled past the hook's timeout under `--on-error allow`: the watchdog
/// stays out once the run's end is decided. The record file's lock is held
/// for 3 s against a 1 s timeout.
#[test]
fn a_refusal_is_not_turned_into_a_start_by_the_timeout() {
    use nix::fcntl::{Flock, FlockArg};
    let mut lab = Lab::new("escdenytimeout");
    lab.set_policy("strict.yaml", STRICT);
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let rec = std::fs::File::create(lab.state_dir.join("decisions.jsonl")).unwrap();
    let lock = Flock::lock(rec, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let mut args = lab.hook_args();
    args.extend(["--on-error", "allow", "--timeout", "1s"].map(String::from));
    let bundle = lab.bundle_with(
        "strict2",
        Some((1 << 30, Some(1 << 30))),
        "createRuntime",
        args,
        "",
    );
    let id = format!("{}-strict2", lab.name);
    let holder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(lock);
    });
    let out = lab.run("runc", &id, &bundle);
    holder.join().unwrap();
    assert!(
        !out.status.success(),
        "the refused container started: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let last = lab
        .decisions()
        .pop()
        .expect("recorded once the lock was free");
    assert_eq!(last["outcome"], "denied");
}

/// `tests/programs/fill_sockets.rs`, built and run in a container.
const SOCKET_FILLER: &str = include_str!("programs/fill_sockets.rs");

fn queued(out: &std::process::Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("queued "))
        .unwrap_or_else(|| panic!("no count in {text:?}; {}", stderr(out)))
        .parse()
        .unwrap()
}

/// On cgroup v1, TCP buffers are charged to no memory cgroup unless its
/// `memory.kmem.tcp.limit_in_bytes` is set: a 64M container once queued
/// 2.2 GB in 300 loopback connections. The hook and the Docker wrapper set
/// that file to the limit (runc 1.1 ignores a bundle's `kernelTCP`), and
/// the record says so. The kernel still lets each connection queue one
/// segment past the limit (TCP forces the first buffer of an empty write
/// queue), so the bound is the limit plus at most 64 KiB per connection.
/// Stopped at 1 GiB so a failure cannot exhaust the host's TCP memory.
#[test]
fn socket_buffers_are_held_to_the_limit_on_v1() {
    let mut lab = Lab::new("esctcp");
    if !v1_memory_root()
        .join("memory.kmem.tcp.limit_in_bytes")
        .exists()
    {
        eprintln!("skipped: this kernel has no v1 memory.kmem.tcp.limit_in_bytes");
        return;
    }
    let filler = static_program(&lab.dir, "fill-sockets", SOCKET_FILLER);
    let bundle = lab.bundle_with(
        "t1",
        None,
        "createRuntime",
        lab.hook_args(),
        "/bin/fill-sockets 300 1073741824",
    );
    std::fs::copy(&filler, bundle.join("rootfs/bin/fill-sockets")).unwrap();
    let id = format!("{}-t1", lab.name);
    let out = lab.run("runc", &id, &bundle);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out).0, 64 * M);
    let q = queued(&out);
    let bound = 64 * M + 300 * 64 * 1024;
    eprintln!("runc + hook: {q} bytes queued in 300 connections");
    assert!(q <= bound, "runc + hook: {} MiB queued", q / M);
    let rec = lab.decisions().pop().unwrap();
    assert_eq!(rec["applied"]["tcp"], 64 * M, "{rec}");

    let d = Dockerd::start(&lab, &runtime_args(&lab));
    let mount = format!("{}:/fill:ro", filler.display());
    let out = d.docker(&[
        "run",
        "--rm",
        "--runtime",
        "cglimit",
        "--net",
        "none",
        "-v",
        &mount,
        IMAGE,
        "/fill",
        "300",
        "1073741824",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let q = queued(&out);
    eprintln!("docker + wrapper: {q} bytes queued in 300 connections");
    assert!(q <= bound, "docker + wrapper: {} MiB queued", q / M);
}

/// `docker start --checkpoint` makes the runtime `restore` a container
/// from the creator's bundle; the wrapper passed `restore` through
/// untouched, so a bundle asking 3G reached runc with 3G. CRIU cannot
/// checkpoint on this kernel: a stand-in runtime behind the wrapper keeps
/// the `config.json` it was handed, which now holds the decided limits.
#[test]
fn a_restore_is_decided_as_a_create() {
    let mut lab = Lab::new("escrestore");
    let bundle = lab.bundle("r1", Some((3 << 30, Some(6 << 30))), "");
    let seen = lab.dir.join("seen.json");
    let stub = lab.dir.join("stand-in-runtime");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\nb=.\nwhile [ $# -gt 0 ]; do case \"$1\" in --bundle|-b) b=$2; shift;; esac; shift; done\ncp \"$b/config.json\" {}\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut c = wrapper(&lab);
    c.arg("--runtime").arg(&stub);
    // What containerd's shim sends for a restore.
    let out = c
        .args([
            "restore",
            "--image-path",
            "/ck/cp0",
            "--work-path",
            "/ck/work",
        ])
        .args(["--detach", "--pid-file", "/dev/null", "--bundle"])
        .arg(&bundle)
        .args(["--no-subreaper", "r1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    let m = &config["linux"]["resources"]["memory"];
    assert_eq!(m["limit"], 256 * M, "{m}");
    assert_eq!(m["swap"], 288 * M, "{m}");
    let rec = lab.decisions().pop().unwrap();
    assert_eq!(rec["source"], "runtime");
    assert_eq!(rec["container"]["requested"]["memory"], 3u64 << 30);
    assert_eq!(rec["decision"]["limits"]["memory"], 256 * M);
}

/// A trusted label baked into an image (`LABEL cglimit.io/class=batch`)
/// selected the trusted 2G policy without any `--label`: Docker merges an
/// image's labels into the container's, so whoever publishes an image
/// picked the policy. A label whose value is the image's is now the
/// creator's, unless the operator trusts images (`--trust-image-labels`).
#[test]
fn a_label_baked_into_an_image_is_not_trusted() {
    let lab = Lab::new("escimagelabel");
    lab.set_policy(
        "batch.yaml",
        "name: batch\npriority: 5\nmatch: {labels: {cglimit.io/class: batch}}\ntrust: [cglimit.io/class]\nmemory: {max: 2G}\nswap: {max: 0}\n",
    );
    let d = Dockerd::start(&lab, &runtime_args(&lab));
    let out = d.docker(&[
        "import",
        "--change",
        "LABEL cglimit.io/class=batch",
        &d.dir.join("rootfs.tar").display().to_string(),
        "labelled:test",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let limit = |runtime: &str, flags: &[&str], image: &str| {
        let mut a = vec!["run", "--rm", "--runtime", runtime, "--net", "none"];
        a.extend_from_slice(flags);
        a.extend([image, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]);
        let out = d.docker(&a);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let gig = ["-m", "1g", "--memory-swap", "1g"];
    assert_eq!(
        limit("cglimit", &gig, "labelled:test"),
        256 * M,
        "the image's label buys nothing"
    );
    let given = [&["--label", "cglimit.io/class=batch"][..], &gig].concat();
    assert_eq!(
        limit("cglimit", &given, IMAGE),
        G,
        "an operator's --label does"
    );
    let rec = lab
        .decisions()
        .into_iter()
        .find(|r| r["container"]["image"] == "labelled:test")
        .unwrap();
    assert!(
        rec["decision"]["why"]
            .as_str()
            .unwrap()
            .contains("from the image"),
        "{rec}"
    );
    // The operator may say images are vetted.
    let mut trusting = runtime_args(&lab);
    trusting.push("--trust-image-labels".into());
    trusting.push("--docker-host".into());
    trusting.push(format!("unix://{}", d.sock.display()));
    d.add_runtime("trusting", &trusting);
    assert_eq!(limit("trusting", &gig, "labelled:test"), G);
}

/// The size of each tmpfs in a Docker container's bundle, from inside it.
fn tmpfs_sizes(d: &Dockerd, name: &str) -> std::collections::BTreeMap<String, String> {
    let out = d.docker(&["exec", name, "cat", "/proc/mounts"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" tmpfs "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let size = f.get(3)?.split(',').find_map(|o| o.strip_prefix("size="))?;
            Some((f.get(1)?.to_string(), size.to_string()))
        })
        .collect()
}

/// A shared `/dev/shm` (`--ipc shareable --shm-size 1g`) lives on the
/// host, and its pages stay charged to the cgroup of whoever wrote them,
/// also after that container is gone: six `-m 64m` containers joining it
/// once left 300 MB there, outside every limit. The owner's shm is now
/// held to the owner's limit (a remount on the host), each tmpfs in a
/// bundle to the container's (a `--tmpfs` without a size is half of the
/// host's memory), and the decision notes it.
#[test]
fn tmpfs_and_a_shared_dev_shm_are_held_to_the_limit() {
    let lab = Lab::new("escshm");
    let d = Dockerd::start(&lab, &runtime_args(&lab));
    let run = |name: &str, flags: &[&str], cmd: &[&str]| {
        let mut a = vec![
            "run",
            "--runtime",
            "cglimit",
            "--net",
            "none",
            "--name",
            name,
        ];
        a.extend_from_slice(flags);
        a.push(IMAGE);
        a.extend_from_slice(cmd);
        d.docker(&a)
    };
    let out = run(
        "tmp",
        &[
            "-d",
            "--tmpfs",
            "/t",
            "--tmpfs",
            "/u:size=2g",
            "--tmpfs",
            "/v:size=8m",
        ],
        &["sleep", "600"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sizes = tmpfs_sizes(&d, "tmp");
    assert_eq!(sizes["/t"], "65536k", "{sizes:?}");
    assert_eq!(sizes["/u"], "65536k", "{sizes:?}");
    assert_eq!(sizes["/v"], "8192k", "a smaller size is kept: {sizes:?}");
    let rec = lab
        .decisions()
        .into_iter()
        .find(|r| r["container"]["name"] == "tmp")
        .unwrap();
    assert!(
        rec["decision"]["notes"]
            .to_string()
            .contains("tmpfs /t held"),
        "{rec}"
    );

    // The owner of a shared shm, 128M; joiners of 64M that write and exit.
    let out = run(
        "owner",
        &["-d", "--ipc", "shareable", "--shm-size", "1g", "-m", "128m"],
        &["sleep", "600"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(tmpfs_sizes(&d, "owner")["/dev/shm"], "131072k");
    for i in 0..4 {
        // Each writes 50 MB and exits; the third and fourth find it full.
        let _ = run(
            &format!("joiner{i}"),
            &["--rm", "--ipc", "container:owner", "-m", "64m"],
            &[
                "sh",
                "-c",
                &format!("head -c 52428800 /dev/zero > /dev/shm/f{i}"),
            ],
        );
    }
    let out = d.docker(&["exec", "owner", "busybox", "du", "-sk", "/dev/shm"]);
    let kib: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kib * 1024 <= 128 * M, "{kib} KiB left in the shared shm");
    let _ = d.docker(&["rm", "-f", "tmp", "owner"]);
}
