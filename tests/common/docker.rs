//! A private dockerd for tests: its own config file, socket, data-root and
//! exec-root, no iptables or bridge, the vfs storage driver, and the
//! cglimit runtime registered. Stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, Lab, busybox};

pub struct Dockerd {
    pub dir: PathBuf,
    pub sock: PathBuf,
    child: Child,
}

pub const IMAGE: &str = "cglbusybox:test";

/// The wrapper's arguments for a lab: its policies and state dir, no cache.
pub fn runtime_args(lab: &Lab) -> Vec<String> {
    vec![
        "--policy-dir".into(),
        lab.policy_dir.display().to_string(),
        "--state-dir".into(),
        lab.state_dir.display().to_string(),
        "--no-cache".into(),
    ]
}

impl Dockerd {
    /// Starts dockerd with the runtime `cglimit` = `cglimit runtime ARGS`.
    pub fn start(lab: &Lab, runtime_args: &[String]) -> Dockerd {
        Self::start_with(lab, Some(runtime_args))
    }

    /// Starts dockerd with no cglimit in its daemon.json, as a host before
    /// `cglimit setup docker`.
    pub fn start_bare(lab: &Lab) -> Dockerd {
        Self::start_with(lab, None)
    }

    fn start_with(lab: &Lab, runtime_args: Option<&[String]>) -> Dockerd {
        // Unix socket paths are limited to 108 bytes: keep this one short.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/cgd{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("exec")).unwrap();
        // The exec-root on a tmpfs, as /run is on real hosts: containerd
        // keeps the bundles there, and the wrapper rewrites their
        // config.json (a rename over a file on ext4 costs ~1 ms more here).
        // Unmounted on drop with dockerd's own mounts.
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m,mode=0711", "tmpfs"])
            .arg(dir.join("exec"))
            .status()
            .unwrap();
        assert!(st.success(), "cannot mount a tmpfs for the exec-root");
        let sock = dir.join("d.sock");
        // The shipped runtimeArgs registration, pointed at this build and this test's dirs.
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/hooks/daemon-runtimeargs.json"
        ))
        .unwrap();
        let mut config: serde_json::Value = serde_json::from_str(&shipped).unwrap();
        match runtime_args {
            Some(runtime_args) => {
                let rt = &mut config["runtimes"]["cglimit"];
                rt["path"] = BIN.into();
                let args = rt["runtimeArgs"].as_array_mut().unwrap();
                args.extend(runtime_args.iter().map(|a| a.clone().into()));
                args.push("--docker-host".into());
                args.push(format!("unix://{}", sock.display()).into());
            }
            None => config = serde_json::json!({}),
        }
        for (k, v) in serde_json::json!({
            "iptables": false, "ip-forward": false, "ip-masq": false, "bridge": "none",
            "storage-driver": "vfs",
            "exec-opts": ["native.cgroupdriver=cgroupfs"],
            "cgroup-parent": lab.cgroup_parent,
        })
        .as_object()
        .unwrap()
        {
            config[k] = v.clone();
        }
        std::fs::write(dir.join("daemon.json"), config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let mut dockerd = Command::new("dockerd");
        // A runtime registered without arguments reads this file.
        let cfg = lab.dir.join("config.yaml");
        if cfg.exists() {
            dockerd.env("CGLIMIT_CONFIG", &cfg);
        }
        let child = dockerd
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd (tests/all.sh installs docker.io)");
        let d = Dockerd { dir, sock, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d.import_busybox();
        d
    }

    /// Registers another runtime, `cglimit runtime ARGS` under `name`, by
    /// rewriting daemon.json and reloading dockerd (SIGHUP).
    pub fn add_runtime(&self, name: &str, runtime_args: &[String]) {
        let mut args = vec!["runtime".to_string()];
        args.extend(runtime_args.iter().cloned());
        self.register(name, serde_json::json!({"path": BIN, "runtimeArgs": args}));
    }

    /// Registers `path` as a runtime without arguments.
    pub fn add_runtime_path(&self, name: &str, path: &Path) {
        self.register(name, serde_json::json!({"path": path}));
    }

    /// Registers `path` with `runtimeArgs`, for which dockerd generates a
    /// shell script that runs it with them.
    pub fn add_runtime_path_args(&self, name: &str, path: &Path, args: &[&str]) {
        self.register(name, serde_json::json!({"path": path, "runtimeArgs": args}));
    }

    fn register(&self, name: &str, entry: serde_json::Value) {
        let path = self.dir.join("daemon.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["runtimes"][name] = entry;
        std::fs::write(&path, config.to_string()).unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = self.docker(&["info", "--format", "{{json .Runtimes}}"]);
            if String::from_utf8_lossy(&info.stdout).contains(name) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not load runtime {name}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `docker run -d` of a sleeping container named `name` through the
    /// cglimit runtime, with no network.
    pub fn run_detached(&self, name: &str, seconds: &str) -> Output {
        self.docker(&[
            "run",
            "-d",
            "--runtime",
            "cglimit",
            "--net",
            "none",
            "--name",
            name,
            IMAGE,
            "sleep",
            seconds,
        ])
    }

    /// `docker run -d` of `IMAGE` with plain runc (no cglimit) and no
    /// network, named `name`, with `flags` before the image and `cmd`
    /// after it.
    pub fn run_plain(&self, name: &str, flags: &[&str], cmd: &[&str]) -> Output {
        let mut a = vec![
            "run",
            "-d",
            "--runtime",
            "runc",
            "--net",
            "none",
            "--name",
            name,
        ];
        a.extend_from_slice(flags);
        a.push(IMAGE);
        a.extend_from_slice(cmd);
        self.docker(&a)
    }

    /// A running container's v1 memory limit and memory+swap, read from
    /// inside it.
    pub fn v1_limits(&self, name: &str) -> (u64, u64) {
        let out = self.docker(&[
            "exec",
            name,
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
        ]);
        let v: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        (v[0], v[1])
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.client().args(args).output().unwrap()
    }

    /// A `docker` command talking to this daemon, for callers that build
    /// their own arguments (or run it on another thread).
    pub fn client(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .stdin(Stdio::null());
        c
    }

    fn import_busybox(&self) {
        let rootfs = self.dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
        for c in ["sh", "cat", "sleep", "echo", "true", "head", "tr"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(c)).unwrap();
        }
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-cf"])
            .arg(self.dir.join("rootfs.tar"))
            .arg(".")
            .status()
            .unwrap();
        assert!(tar.success());
        let out = self.docker(&[
            "import",
            &self.dir.join("rootfs.tar").display().to_string(),
            IMAGE,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_below(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lazily unmounts whatever dockerd left mounted below `dir` (its data-root
/// bind mount, network namespaces), deepest first.
pub fn unmount_below(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}
