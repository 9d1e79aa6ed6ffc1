//! `cglimit setup` and `cglimit doctor` against a real dockerd and podman:
//! a host where only the binary is installed is wired in one command, a
//! container started without `-m` gets the default policy, `doctor` says
//! so, `--dry-run` changes nothing, and `--undo` restores daemon.json byte
//! for byte.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::docker::Dockerd;
use common::*;

fn cglimit(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for (flag, p) in paths {
        c.arg(flag).arg(p);
    }
    c.stdin(Stdio::null()).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn setup_docker_wires_a_bare_host_and_undo_restores_it() {
    let lab = Lab::new("setupdocker");
    let d = Dockerd::start_bare(&lab);
    let daemon_json = d.dir.join("daemon.json");
    let before = std::fs::read(&daemon_json).unwrap();
    // Only the binary installed: no policies, no wrapper config.
    let policies = lab.dir.join("etc-policies");
    let config = lab.dir.join("etc-config.yaml");
    let state = lab.dir.join("setup-state");
    let host = format!("unix://{}", d.sock.display());
    let paths = [
        ("--daemon-json", daemon_json.as_path()),
        ("--policy-dir", policies.as_path()),
        ("--config", config.as_path()),
        ("--state-dir", state.as_path()),
    ];
    let doctor = || {
        cglimit(
            &["doctor", "--engine", "docker", "--docker-host", &host],
            &[("--policy-dir", policies.as_path())],
        )
    };

    // Dry run: the change as a diff, nothing touched.
    let out = cglimit(
        &["setup", "docker", "--dry-run", "--docker-host", &host],
        &paths,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains("+  \"default-runtime\": \"cglimit\""),
        "{shown}"
    );
    assert!(
        shown.contains("would create") && shown.contains("00-default.yaml"),
        "{shown}"
    );
    assert_eq!(
        std::fs::read(&daemon_json).unwrap(),
        before,
        "dry run changed daemon.json"
    );
    assert!(!policies.exists() && !config.exists() && !state.exists());

    // Not wired yet: doctor says so and why.
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("00-default.yaml"),
        include_str!("../policies/00-default.yaml"),
    )
    .unwrap();
    let out = doctor();
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("docker: NOT wired") && stdout(&out).contains("no cglimit runtime"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    std::fs::remove_dir_all(&policies).unwrap();

    let out = cglimit(&["setup", "docker", "--docker-host", &host], &paths);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("dockerd reloaded"),
        "{}",
        stdout(&out)
    );
    // The runtimes that skip cglimit are named, with what catches them.
    assert!(
        stdout(&out).contains("also offers the runtimes")
            && stdout(&out).contains("runc")
            && stdout(&out).contains("watch --policy-dir"),
        "{}",
        stdout(&out)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&daemon_json).unwrap()).unwrap();
    assert_eq!(v["default-runtime"], "cglimit");
    assert!(policies.join("00-default.yaml").exists());

    // A container without -m gets the default policy (512M, soft limit 90%).
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        common::docker::IMAGE,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), (512 * M).to_string());
    let out = doctor();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("docker: wired"),
        "{}",
        stdout(&out)
    );

    // Setup again: nothing to change.
    let out = cglimit(
        &["setup", "docker", "--dry-run", "--docker-host", &host],
        &paths,
    );
    assert!(
        stdout(&out).contains("nothing to change"),
        "{}",
        stdout(&out)
    );

    let out = cglimit(
        &["setup", "docker", "--undo", "--docker-host", &host],
        &paths,
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        std::fs::read(&daemon_json).unwrap(),
        before,
        "not restored byte for byte"
    );
    assert!(!policies.join("00-default.yaml").exists());
    assert!(!state.join("setup-docker.json").exists());
    // dockerd keeps removed runtime keys across a reload: undo says so.
    assert!(stdout(&out).contains("restart dockerd"), "{}", stdout(&out));
}

/// `setup docker` on `daemon_json` with no engine to reload.
fn setup_docker_on(lab: &Lab, daemon_json: &Path) -> Output {
    cglimit(
        &[
            "setup",
            "docker",
            "--docker-host",
            "unix:///nonexistent.sock",
        ],
        &[
            ("--daemon-json", daemon_json),
            ("--policy-dir", lab.policy_dir.as_path()),
            ("--config", lab.dir.join("c.yaml").as_path()),
            ("--state-dir", lab.dir.join("s").as_path()),
        ],
    )
}

#[test]
fn setup_refuses_a_daemon_json_it_would_overrule() {
    let lab = Lab::new("setupconflict");
    let daemon_json = lab.dir.join("daemon.json");
    let original = b"{\"default-runtime\": \"nvidia\", \"runtimes\": {\"nvidia\": {\"path\": \"/usr/bin/nvidia-container-runtime\"}}}\n";
    std::fs::write(&daemon_json, original).unwrap();
    let out = setup_docker_on(&lab, &daemon_json);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "daemon.json: `default-runtime` is already \"nvidia\" (--force makes it cglimit)"
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&daemon_json).unwrap(), original);
    assert!(!lab.dir.join("c.yaml").exists(), "half-applied");
    let bad = lab.dir.join("bad.json");
    std::fs::write(&bad, "{\"runtimes\": ").unwrap();
    let out = setup_docker_on(&lab, &bad);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("bad.json: not JSON"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn setup_podman_and_doctor_find_a_misplaced_hook() {
    prepare_crun();
    let mut lab = Lab::new("setuppodman");
    let hooks = lab.dir.join("hooks.d");
    let state = lab.dir.join("state");
    let policy_dir = lab.policy_dir.clone();
    let wrapper_config = lab.dir.join("config.yaml");
    let conf_d = lab.dir.join("containers.conf.d");
    let paths = [
        ("--hooks-dir", hooks.as_path()),
        ("--policy-dir", policy_dir.as_path()),
        ("--state-dir", state.as_path()),
        ("--config", wrapper_config.as_path()),
        ("--containers-conf-dir", conf_d.as_path()),
    ];
    // podman as this host runs it for tests (runc, cgroupfs, vfs in the
    // lab), through its own configuration files: doctor runs plain
    // `podman`, as a user would.
    let (conf, storage) = podman_lab(&mut lab);
    let doctor = || {
        Command::new(BIN)
            .args(["doctor", "--engine", "podman", "--hooks-dir"])
            .arg(&hooks)
            .arg("--policy-dir")
            .arg(&policy_dir)
            .env("CONTAINERS_CONF", &conf)
            .env("CONTAINERS_STORAGE_CONF", &storage)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = doctor();
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("podman: NOT wired"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = cglimit(&["setup", "podman"], &paths);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(hooks.join("cglimit.json").exists());
    let out = doctor();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("podman: wired"),
        "{}",
        stdout(&out)
    );
    podman_update_goes_through_the_wrapper(&mut lab, &conf, &storage, &hooks, &conf_d);
    // The hook file removed: doctor names podman.
    std::fs::remove_file(hooks.join("cglimit.json")).unwrap();
    let out = doctor();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("podman: NOT wired"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("no cglimit hook in"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn setup_containerd_adds_a_handler_that_runs_containers_within_policy() {
    let lab = Lab::new("setupctrd");
    let mut c = common::containerd::Containerd::new();
    let before = std::fs::read(&c.config).unwrap();
    let ctd_config = c.config.clone();
    let policies = lab.dir.join("etc-policies");
    let config = lab.dir.join("etc-config.yaml");
    let state = lab.dir.join("setup-state");
    let paths = [
        ("--containerd-config", ctd_config.as_path()),
        ("--policy-dir", policies.as_path()),
        ("--config", config.as_path()),
        ("--state-dir", state.as_path()),
    ];
    // The shims pass containerd's environment on to the wrapper.
    c.cglimit_config = Some(config.clone());
    c.start();
    // Start times are known to the second (`btime`): let setup's change be
    // clearly later.
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let out = cglimit(&["setup", "containerd", "--dry-run"], &paths);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("+[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.cglimit]"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read(&c.config).unwrap(),
        before,
        "dry run changed it"
    );
    assert!(!policies.exists() && !config.exists());

    let out = cglimit(&["setup", "containerd"], &paths);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("systemctl restart containerd"),
        "{}",
        stdout(&out)
    );
    let after = String::from_utf8(std::fs::read(&c.config).unwrap()).unwrap();
    // Every line that was there is there, in order: setup only added.
    let mut added = after.lines();
    for line in std::str::from_utf8(&before).unwrap().lines() {
        assert!(added.any(|l| l == line), "setup changed {line:?}:\n{after}");
    }
    let binary = c.binary_of("cglimit").expect("a handler named cglimit");
    assert_eq!(binary.file_name().unwrap(), "cglimit-runtime");

    // Not loaded yet: containerd read its configuration before setup.
    let doctor = |c: &common::containerd::Containerd| {
        cglimit(
            &["doctor", "--engine", "containerd"],
            &[
                ("--containerd-config", c.config.as_path()),
                ("--containerd-address", c.sock.as_path()),
                ("--policy-dir", policies.as_path()),
            ],
        )
    };
    let out = doctor(&c);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("changed after containerd started"),
        "{}",
        stdout(&out)
    );
    c.restart();

    // Through the shim path the handler takes: no limit asked, the
    // default policy's 512M; 16G asked, the policy's 8G maximum.
    let rootfs = common::containerd::busybox_rootfs(&lab.dir);
    let run = |id: &str, extra: &[&str]| {
        let cgroup = format!("{}/{id}", lab.cgroup_parent);
        let mut args = vec![
            "run",
            "--rm",
            "--rootfs",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            binary.to_str().unwrap(),
            "--cgroup",
            &cgroup,
            "--mount",
            "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev",
        ];
        args.extend_from_slice(extra);
        let rootfs = rootfs.to_str().unwrap();
        args.extend_from_slice(&[
            rootfs,
            id,
            "/bin/busybox",
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ]);
        c.ctr(&args)
    };
    let out = run(&format!("{}-a", lab.name), &[]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), c.log());
    assert_eq!(stdout(&out).trim(), (512 * M).to_string());
    let out = run(
        &format!("{}-b", lab.name),
        &["--memory-limit", "17179869184"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), (8 * G).to_string());

    let out = doctor(&c);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("containerd: wired"),
        "{}",
        stdout(&out)
    );

    let out = cglimit(&["setup", "containerd", "--undo"], &paths);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        std::fs::read(&c.config).unwrap(),
        before,
        "not restored byte for byte"
    );
    assert!(!config.exists() && !policies.join("00-default.yaml").exists());
    c.restart();
    write_private(
        &policies.join("00-default.yaml"),
        include_str!("../policies/00-default.yaml"),
    );
    let out = doctor(&c);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("no runtime handler in"),
        "{}",
        stdout(&out)
    );
}

/// `podman update --memory 3g` ran no hook and reached the runtime
/// directly: 64M became 3G. `setup podman` makes the wrapper podman's
/// runtime (a containers.conf drop-in naming the `cglimit-podman-runtime`
/// link, which reads /etc/cglimit/podman.yaml): the hook still decides the
/// create, the wrapper the update. podman hands its runtime no environment,
/// so the link's fixed configuration path is bound, in a mount namespace of
/// the test's own, to the one setup wrote in the lab.
fn podman_update_goes_through_the_wrapper(
    lab: &mut Lab,
    conf: &std::path::Path,
    storage: &std::path::Path,
    hooks: &std::path::Path,
    conf_d: &std::path::Path,
) {
    let drop_in = std::fs::read_to_string(conf_d.join("50-cglimit.conf")).unwrap();
    assert!(drop_in.contains("runtime = \"cglimit\""), "{drop_in}");
    let link = drop_in
        .lines()
        .find_map(|l| {
            l.strip_prefix("cglimit = [\"")
                .and_then(|l| l.strip_suffix("\"]"))
        })
        .unwrap()
        .to_string();
    let podman_yaml = lab.dir.join("podman.yaml");
    let written = std::fs::read_to_string(&podman_yaml).unwrap();
    assert!(written.contains("createsByHook: true"), "{written}");
    // The lab's podman runs runc (crun needs a hugetlb hierarchy here).
    let runtime_line = written.lines().find(|l| l.starts_with("runtime:")).unwrap();
    std::fs::write(&podman_yaml, written.replace(runtime_line, "runtime: runc")).unwrap();
    // The lab's containers.conf with the drop-in's runtime in place.
    let base = std::fs::read_to_string(conf).unwrap();
    let through = lab.dir.join("containers-cglimit.conf");
    std::fs::write(
        &through,
        base.replace("runtime = \"runc\"", "runtime = \"cglimit\"")
            + &format!(
                "hooks_dir = [{:?}]\n[engine.runtimes]\ncglimit = [{link:?}]\n",
                hooks.display().to_string()
            ),
    )
    .unwrap();
    // /etc/cglimit/podman.yaml, in this namespace only.
    let etc = std::path::Path::new("/etc/cglimit");
    let made_dir = !etc.exists();
    std::fs::create_dir_all(etc).unwrap();
    let target = etc.join("podman.yaml");
    let made_file = !target.exists();
    if made_file {
        std::fs::write(&target, "").unwrap();
    }
    lab.on_drop(move || {
        if made_file {
            let _ = std::fs::remove_file("/etc/cglimit/podman.yaml");
        }
        if made_dir {
            let _ = std::fs::remove_dir("/etc/cglimit");
        }
    });
    let podman = |args: &str| {
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind {} /etc/cglimit/podman.yaml && exec podman {args}",
                podman_yaml.display()
            ))
            .env("CONTAINERS_CONF", &through)
            .env("CONTAINERS_STORAGE_CONF", storage)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let image = format!("localhost/{}", lab.name.to_lowercase());
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
    let out = podman(&format!("import {} {image}", tar.display()));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = podman(&format!(
        "run -d --net none --name upd --cgroup-parent {} {image} sleep 600",
        lab.cgroup_parent
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let limit = || {
        let out = podman("inspect -f {{.State.Pid}} upd");
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let path = cg
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
            .unwrap();
        std::fs::read_to_string(v1_memory_root_of(&path).join("memory.limit_in_bytes"))
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(limit(), 64 * M, "the hook decided the create");
    let out = podman("update --memory 3g upd");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        limit(),
        256 * M,
        "the wrapper held the update to the policy's max"
    );
    let rec = lab.decisions().pop().unwrap();
    assert_eq!(rec["source"], "update", "{rec}");
    let _ = podman("rm -f -t 0 upd");
}

fn v1_memory_root_of(path: &str) -> std::path::PathBuf {
    std::path::Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'))
}

/// A containerd that serves only dockerd (Debian's docker.io installs and
/// runs one) is no gap: doctor reports it as not used and does not fail
/// on it, unless `--strict`. Once something runs a container in another
/// namespace (the CRI's `k8s.io`, or `ctr`), it must be wired, and doctor
/// names it.
#[test]
fn doctor_requires_containerd_only_when_something_uses_it() {
    let lab = Lab::new("doctorctrd");
    let mut c = common::containerd::Containerd::new();
    c.start();
    let doctor = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["doctor", "-o", "json", "--containerd-address"])
            .arg(&c.sock)
            .arg("--containerd-config")
            .arg(&c.config)
            .arg("--policy-dir")
            .arg(&lab.policy_dir)
            .args(["--docker-host", "unix:///nonexistent/docker.sock"])
            .args(extra)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["engine"] == "containerd")
            .cloned()
            .unwrap()
    };
    let r = doctor(&[]);
    assert_eq!(
        (r["wired"].as_bool(), r["used"].as_bool()),
        (Some(false), Some(false)),
        "{r}"
    );
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("used by nothing but Docker"),
        "{r}"
    );
    // A container in a namespace of its own: containerd is used, and unwired.
    c.import_busybox("other", "localhost/doctor:1");
    let out = c.ctr(&[
        "-n",
        "other",
        "containers",
        "create",
        "localhost/doctor:1",
        "doctor-c1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = doctor(&[]);
    assert_eq!(
        (r["wired"].as_bool(), r["used"].as_bool()),
        (Some(false), Some(true)),
        "{r}"
    );
    let _ = c.ctr(&["-n", "other", "containers", "delete", "doctor-c1"]);
}
