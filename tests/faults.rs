//! Faults injected around real runc containers and real cgroups: each case
//! ends as documented (the container refused, or started with its limits),
//! limits are never half-applied, and every line of the JSON logs parses.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Every line of a JSON-lines file parses; returns how many there are.
fn all_lines_parse(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("{}: line {l:?} does not parse: {e}", path.display()));
    }
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
    text.lines().count()
}

fn run_default(lab: &mut Lab, id: &str, hook_args: Vec<String>) -> std::process::Output {
    let b = lab.bundle_with(id, None, "createRuntime", hook_args, "");
    lab.run("runc", &format!("{}-{id}", lab.name), &b)
}

/// A tmpfs of `kib` KiB mounted at `dir` for the test, unmounted on drop.
fn small_tmpfs(lab: &mut Lab, dir: &Path, kib: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={kib}k,mode=755"),
            "tmpfs",
        ])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let d = dir.to_path_buf();
    lab.on_drop(move || {
        let _ = Command::new("umount").arg("-l").arg(&d).status();
    });
}

#[test]
fn policies_others_could_write_are_refused() {
    let mut lab = Lab::new("perms");
    let file = lab.policy_dir.join("default.yaml");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
    let args = lab.hook_args();
    let out = run_default(&mut lab, "c", args);
    assert!(
        !out.status.success(),
        "started with a group-writable policy"
    );
    let err = stderr(&out);
    let want = format!("{} is writable by its group (mode 0664)", file.display());
    assert!(err.contains(&want), "want {want:?} in {err}");
    // The directory counts too: whoever can write it can swap the file.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&lab.policy_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let args = lab.hook_args();
    let out = run_default(&mut lab, "d", args);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is writable by group and others (mode 0777)"),
        "{}",
        stderr(&out)
    );
    // An operator may accept it explicitly.
    let mut args = lab.hook_args();
    args.push("--insecure-policy-perms".into());
    let out = run_default(&mut lab, "e", args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (64 * M, 64 * M, 32 * M));
    assert_eq!(all_lines_parse(&lab.state_dir.join("decisions.jsonl")), 3);
}

#[test]
fn the_hook_keeps_only_dac_override() {
    let mut lab = Lab::new("caps");
    let log = lab.dir.join("hook.log");
    let mut args = lab.hook_args();
    args.extend([
        "--log-level".into(),
        "debug".into(),
        "--log-file".into(),
        log.display().to_string(),
    ]);
    let out = run_default(&mut lab, "c", args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (64 * M, 64 * M, 32 * M));
    let text = std::fs::read_to_string(&log).unwrap();
    // The kernel's view of the hook's thread after the drop: bit 1 only,
    // and no exec could gain more (no_new_privs; the bounding set is left).
    for want in [
        "CapPrm: 0000000000000002",
        "CapEff: 0000000000000002",
        "CapInh: 0000000000000000",
        "CapAmb: 0000000000000000",
        "NoNewPrivs: 1",
    ] {
        assert!(text.contains(want), "want {want:?} in {text}");
    }
}

/// A runtime stand-in that records what the kernel handed it (its
/// capability sets, parent-death signal and dumpability), then exits 0.
fn cap_recorder(lab: &Lab) -> (PathBuf, PathBuf) {
    let program = static_program(
        &lab.dir,
        "fake-runc",
        r#"extern "C" {
    fn prctl(option: i32, ...) -> i32;
}
fn main() {
    let mut sig: i32 = 0;
    // PR_GET_PDEATHSIG, PR_GET_DUMPABLE
    unsafe { prctl(2, &mut sig as *mut i32) };
    let dumpable = unsafe { prctl(3) };
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mut out: String = status
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .map(|l| format!("{}\n", l))
        .collect();
    out += &format!("PdeathSig: {}\nDumpable: {}\n", sig, dumpable);
    let exe = std::env::current_exe().unwrap();
    std::fs::write(format!("{}.caps", exe.display()), out).unwrap();
}
"#,
    );
    let out = lab.dir.join("fake-runc.caps");
    (program, out)
}

/// runc must start through the wrapper exactly as its caller started it:
/// every capability set as the caller's, and, because the wrapper never
/// lowers its permitted set, no capability gain at the exec, which would
/// make the kernel clear the parent-death signal containerd's shim sets
/// (SIGKILL) and make runc non-dumpable.
#[test]
fn the_wrapper_hands_the_runtime_every_capability() {
    let mut lab = Lab::new("wrapcaps");
    let bundle = lab.bundle_with("c", None, "", vec![], "");
    let (program, caps) = cap_recorder(&lab);
    let mut cmd = Command::new(BIN);
    cmd.arg("runtime")
        .arg("--policy-dir")
        .arg(&lab.policy_dir)
        .arg("--runtime")
        .arg(&program)
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("x1")
        .env(
            "DOCKER_HOST",
            format!("unix://{}/none.sock", lab.dir.display()),
        );
    // As containerd's shim does for every runc it starts.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let theirs = std::fs::read_to_string(&caps).unwrap();
    for l in std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("Cap"))
    {
        assert!(theirs.contains(l), "runtime lost {l}: {theirs}");
    }
    assert!(theirs.contains("PdeathSig: 9\n"), "{theirs}");
    assert!(theirs.contains("Dumpable: 1\n"), "{theirs}");
    // And the limits are in config.json.
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(c["linux"]["resources"]["memory"]["limit"], 64 * M);

    // A config file others could write names the binary run as root: refused.
    let cfg = lab.dir.join("config.yaml");
    std::fs::write(&cfg, format!("policyDir: {}\n", lab.policy_dir.display())).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::remove_file(&caps).unwrap();
    let out = Command::new(BIN)
        .arg("runtime")
        .arg("--config")
        .arg(&cfg)
        .arg("--runtime")
        .arg(&program)
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("x2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "untrusted config: {} is writable by group and others",
            cfg.display()
        )),
        "{err}"
    );
    assert!(!caps.exists(), "the runtime ran");
}

#[test]
fn a_cgroup_removed_between_decision_and_write() {
    let mut lab = Lab::new("vanish");
    // The hook opens the container's cgroup, then opens the policy: a
    // fanotify permission mark holds that open while the test kills the
    // container's init and removes its cgroup.
    let held = HeldOpens::new(&lab.policy_dir.join("default.yaml"));
    let mut args = lab.hook_args();
    args.push("--no-cache".into());
    let b = lab.bundle_with("c", None, "createRuntime", args, "");
    let id = format!("{}-c", lab.name);
    lab.track("runc", &id);
    let runc = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&b)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Blocks until someone opens the policy: the hook, after it opened the
    // cgroup. Its open waits for the answer below.
    let events = held.wait();
    let cg = v1_memory_root()
        .join(lab.cgroup_parent.trim_start_matches('/'))
        .join("c");
    let pids = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert!(!pids.trim().is_empty());
    for pid in pids.split_whitespace() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid.parse().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let t = Instant::now();
    while let Err(e) = std::fs::remove_dir(&cg) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "cannot remove {}: {e}",
            cg.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    held.allow(&events);
    drop(held);
    let out = runc.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("/memory."), "names the file: {err}");
    assert!(
        err.contains("ENOENT") || err.contains("ENODEV"),
        "names the errno: {err}"
    );
    let d = lab.decisions();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["outcome"], "error");
}

fn v1_limits(v: &Victim) -> [u64; 3] {
    [
        "memory.limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "memory.soft_limit_in_bytes",
    ]
    .map(|f| v.read(f))
}

#[test]
fn lowering_below_usage_on_v1_restores_every_limit() {
    let mut lab = Lab::new("ebusy");
    // 48M of a tmpfs file: charged to the cgroup, not reclaimable without swap.
    let shm = lab.dir.join("shm");
    small_tmpfs(&mut lab, &shm, 100 << 10);
    let v = Victim::running(
        &lab,
        "v",
        &[
            "sh",
            "-c",
            &format!(
                "head -c 50331648 /dev/zero > {}/f; exec sleep 60",
                shm.display()
            ),
        ],
    );
    let t = Instant::now();
    while v.read("memory.usage_in_bytes") < 48 * M {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the workload did not grow"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = v1_limits(&v);
    // Nothing asked: the policy's default, 16M, is below the usage.
    lab.set_policy(
        "default.yaml",
        "name: default\nmemory: {default: 16M, max: 256M}\nswap: {max: 0}\nhigh: 50%\n",
    );
    let bundle = lab.dir.join("b");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), r#"{"ociVersion":"1.0.2"}"#).unwrap();
    let state = serde_json::json!({"ociVersion": "1.0.2", "id": "x", "status": "creating", "pid": v.pid(), "bundle": bundle}).to_string();
    let out = hook(&lab.hook_args(), &state);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("memory.limit_in_bytes") && err.contains("EBUSY"),
        "{err}"
    );
    let after = v1_limits(&v);
    assert_eq!(before, after, "limits half-applied");
}

#[test]
fn broken_policy_dirs_refuse_the_start() {
    let mut lab = Lab::new("baddir");
    let file = lab.policy_dir.join("default.yaml");
    // Empty: nothing matches, so nothing starts without limits.
    std::fs::remove_file(&file).unwrap();
    let args = lab.hook_args();
    let out = run_default(&mut lab, "empty", args);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no policy matches"),
        "{}",
        stderr(&out)
    );
    // A policy "file" that cannot be read (a directory; root reads anything else).
    std::fs::create_dir(&file).unwrap();
    let args = lab.hook_args();
    let out = run_default(&mut lab, "eisdir", args);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("default.yaml: not a regular file"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir(&file).unwrap();
    // A dangling symlink.
    std::os::unix::fs::symlink("gone/nowhere.yaml", &file).unwrap();
    let args = lab.hook_args();
    let out = run_default(&mut lab, "dangling", args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nowhere.yaml"), "{}", stderr(&out));
    // A policy dir that does not exist.
    let mut args = lab.hook_args();
    args[3] = lab.dir.join("missing").display().to_string();
    let out = run_default(&mut lab, "missing", args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    assert_eq!(all_lines_parse(&lab.state_dir.join("decisions.jsonl")), 4);
}

#[test]
fn policies_replaced_while_containers_start() {
    let mut lab = Lab::new("swap");
    let a =
        "name: default\nmemory: {default: 64M, max: 256M}\nswap: {default: 0, max: 0}\nhigh: 50%\n";
    let b = "name: default\nmemory: {default: 96M, max: 256M}\nswap: {default: 8M, max: 8M}\nhigh: 75%\n";
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Replaced as git and configuration managers do: write beside, rename.
    let swapper = {
        let (dir, stop) = (lab.policy_dir.clone(), stop.clone());
        let (a, b) = (a.to_string(), b.to_string());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tmp = dir.join(".default.yaml.tmp");
                write_private(&tmp, if n.is_multiple_of(2) { &a } else { &b });
                std::fs::rename(&tmp, dir.join("default.yaml")).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            n
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..12 {
        let args = lab.hook_args();
        let out = run_default(&mut lab, &format!("c{i}"), args);
        assert!(out.status.success(), "{}", stderr(&out));
        let l = limits_seen(&out);
        assert!(
            l == (64 * M, 64 * M, 32 * M) || l == (96 * M, 104 * M, 72 * M),
            "a mix of two policies: {l:?}"
        );
        seen.insert(l);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 12, "{swaps}");
    assert_eq!(all_lines_parse(&lab.state_dir.join("decisions.jsonl")), 12);
    // Each record says what its container got.
    for d in lab.decisions() {
        let m = d["decision"]["limits"]["memory"].as_u64().unwrap();
        assert!(m == 64 * M || m == 96 * M, "{d}");
    }
    eprintln!("limits seen while swapping: {seen:?}");
}

#[test]
fn a_full_or_read_only_state_dir_does_not_stop_enforcement() {
    let mut lab = Lab::new("full");
    let state = lab.state_dir.clone();
    small_tmpfs(&mut lab, &state, 16);
    // runc shows a hook's stderr only when it fails: log to a file.
    let log = lab.dir.join("hook.log");
    let mut args = lab.hook_args();
    args.extend(["--log-file".into(), log.display().to_string()]);
    let logged = |what: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(what)
    };
    // Some records fit, then the disk is full.
    let mut started = 0;
    while !logged("No space left") {
        assert!(started < 60, "the disk never filled");
        let out = run_default(&mut lab, &format!("c{started}"), args.clone());
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(limits_seen(&out), (64 * M, 64 * M, 32 * M));
        started += 1;
    }
    let n = all_lines_parse(&state.join("decisions.jsonl"));
    assert_eq!(n, started - 1, "one start was not recorded");
    // Read-only: the same.
    let st = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(st.success());
    let out = run_default(&mut lab, "ro", args.clone());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (64 * M, 64 * M, 32 * M));
    assert!(logged("Read-only file system"));
    assert_eq!(all_lines_parse(&state.join("decisions.jsonl")), n);
}

#[test]
fn an_engine_that_is_down_or_silent_is_decided_without() {
    let mut lab = Lab::new("engine");
    let (script, caps) = cap_recorder(&lab);
    // One socket nobody listens on, one that accepts and never answers.
    let silent = lab.dir.join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let _held = std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in listener.incoming().flatten() {
            keep.push(s);
        }
    });
    for (name, sock) in [("down", lab.dir.join("down.sock")), ("silent", silent)] {
        let bundle = lab.bundle_with(name, None, "", vec![], "");
        let t = Instant::now();
        let out = Command::new(BIN)
            .arg("runtime")
            .arg("--policy-dir")
            .arg(&lab.policy_dir)
            .arg("--state-dir")
            .arg(&lab.state_dir)
            .arg("--runtime")
            .arg(&script)
            .args(["create", "--bundle"])
            .arg(&bundle)
            .arg(name)
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .output()
            .unwrap();
        let took = t.elapsed();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(caps.exists(), "{name}: the runtime did not run");
        std::fs::remove_file(&caps).unwrap();
        let err = stderr(&out);
        assert!(
            err.contains("deciding without its name, image and labels"),
            "{name}: {err}"
        );
        // The lookup is bounded (250 ms by default), not the engine's pace.
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        let c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 64 * M, "{name}");
    }
    assert_eq!(all_lines_parse(&lab.state_dir.join("decisions.jsonl")), 2);
}

#[test]
fn a_hook_killed_mid_run_never_leaves_a_container_half_limited() {
    let mut lab = Lab::new("sigkill");
    // The hook runs from a shell that SIGKILLs it after a varying delay.
    let mut outcomes = (0, 0);
    let delays = [
        "",
        "sleep 0.001;",
        "sleep 0.002;",
        "sleep 0.004;",
        "sleep 0.008;",
    ];
    for i in 0..15 {
        let delay = delays[i % delays.len()];
        let cmd = format!(
            "exec 3<&0; {BIN} hook --policy-dir {} --state-dir {} <&3 & p=$!; {delay} kill -9 $p 2>/dev/null; wait $p",
            lab.policy_dir.display(),
            lab.state_dir.display()
        );
        let args = vec!["sh".to_string(), "-c".to_string(), cmd];
        let b = lab.bundle_with(&format!("k{i}"), None, "createRuntime", args.clone(), "");
        // The hook path is the shell.
        let cfg = b.join("config.json");
        let mut c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
        c["hooks"]["createRuntime"][0]["path"] = "/bin/sh".into();
        std::fs::write(&cfg, serde_json::to_vec(&c).unwrap()).unwrap();
        let out = lab.run("runc", &format!("{}-k{i}", lab.name), &b);
        if out.status.success() {
            // Finished before the kill: all of its limits.
            assert_eq!(limits_seen(&out), (64 * M, 64 * M, 32 * M));
            outcomes.0 += 1;
        } else {
            // Killed: runc refuses the start and removes the container with
            // its cgroup; nothing runs half-limited.
            assert!(
                out.stdout.is_empty(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            let cg = v1_memory_root()
                .join(lab.cgroup_parent.trim_start_matches('/'))
                .join(format!("k{i}"));
            assert!(!cg.exists(), "{} left behind", cg.display());
            outcomes.1 += 1;
        }
    }
    eprintln!("finished {}, killed {}", outcomes.0, outcomes.1);
    assert!(
        outcomes.1 > 0,
        "never killed in time: the test proves nothing"
    );
    all_lines_parse(&lab.state_dir.join("decisions.jsonl"));
}

#[test]
fn a_container_process_that_exited_is_not_mistaken_for_the_root_cgroup() {
    // An exited, unreaped process (a zombie) reads as a member of the
    // hierarchy's root: the hook must not go on to limit the root.
    let lab = Lab::new("zombie");
    let child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    let t = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .contains(") Z")
    {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
    }
    let bundle = lab.dir.join("b");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), r#"{"ociVersion":"1.0.2"}"#).unwrap();
    let state = serde_json::json!({"ociVersion": "1.0.2", "id": "z", "status": "creating", "pid": pid, "bundle": bundle}).to_string();
    let out = hook(&lab.hook_args(), &state);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("container process {pid} has exited")),
        "{err}"
    );
    drop(child);
}

/// A cgroup that looks like a systemd unit's where systemd cannot be asked
/// (no bus; a bus that accepts and never answers): the limits are still
/// written and the container starts, after at most the 2 s bound, and the
/// record says the limits are not the unit's properties, and why.
#[test]
fn a_unit_cgroup_without_an_answering_systemd_is_still_limited() {
    let mut lab = Lab::new("sdbus");
    let silent = lab.dir.join("silent-bus.sock");
    let listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    for (n, bus, reason) in [
        ("a", lab.dir.join("no-bus.sock"), "cannot reach systemd"),
        ("b", silent.clone(), "did not answer within 2s"),
    ] {
        let id = format!("cglimit-{n}.scope");
        let b = lab.bundle_with(&id, None, "createRuntime", lab.hook_args(), "");
        let config = b.join("config.json");
        let mut c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        c["hooks"]["createRuntime"][0]["env"] = serde_json::json!([format!(
            "DBUS_SYSTEM_BUS_ADDRESS=unix:path={}",
            bus.display()
        )]);
        std::fs::write(&config, c.to_string()).unwrap();
        let t = Instant::now();
        let out = lab.run("runc", &format!("{}-{n}", lab.name), &b);
        let took = t.elapsed();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(limits_seen(&out).0, 64 * M, "the files are written");
        assert!(took < Duration::from_secs(4), "held {took:?}");
        let d = lab.decisions();
        let r = d.last().unwrap();
        assert_eq!(r["outcome"], "applied");
        assert_eq!(r["systemd"]["unit"], id.as_str());
        assert_eq!(r["systemd"]["persisted"], false);
        let why = r["systemd"]["reason"].as_str().unwrap();
        assert!(why.contains(reason), "{why}");
    }
}
