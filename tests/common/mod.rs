//! Shared fixtures for integration tests against real runtimes and cgroups.
//!
//! Every test gets a `Lab`: a private directory, a unique name prefix, a
//! parent cgroup below this process's own memory cgroup, and cleanup on drop
//! (containers deleted, cgroups removed) even when the test fails.
#![allow(dead_code)]

pub mod containerd;
pub mod docker;
pub mod watch;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_cglimit");
pub const M: u64 = 1 << 20;
pub const G: u64 = 1 << 30;
/// What cgroup v1 reads back for "no limit".
pub const V1_UNLIMITED: u64 = 9223372036854771712;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The default policy of the tests: small numbers so tests can check them.
pub const POLICY: &str = "name: default
memory: {default: 64M, min: 16M, max: 256M}
swap: {default: 0, max: 32M}
high: 50%
onViolation: clamp
";

pub struct Lab {
    pub name: String,
    pub dir: PathBuf,
    pub policy_dir: PathBuf,
    pub state_dir: PathBuf,
    /// The memory cgroup (absolute, as in /proc/self/cgroup) containers go below.
    pub cgroup_parent: String,
    containers: Vec<(String, String)>,
    extra_cleanup: Vec<Box<dyn FnOnce()>>,
}

/// This process's memory cgroup path (v1 `memory` line, else the v2 line).
pub fn own_memory_cgroup() -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut v2 = None;
    for line in text.lines() {
        let parts: Vec<&str> = line.splitn(3, ':').collect();
        if parts[1].split(',').any(|c| c == "memory") {
            return parts[2].to_string();
        }
        if parts[0] == "0" {
            v2 = Some(parts[2].to_string());
        }
    }
    v2.expect("a memory cgroup")
}

/// Where the v1 memory hierarchy is mounted.
pub fn v1_memory_root() -> PathBuf {
    PathBuf::from("/sys/fs/cgroup/memory")
}

impl Lab {
    pub fn new(test: &str) -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("cgl{}-{}-{}", std::process::id(), n, test);
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let policy_dir = dir.join("policies");
        std::fs::create_dir_all(&policy_dir).unwrap();
        // Whatever the umask: cglimit refuses policies others could write.
        for d in [&dir, &policy_dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        write_private(&policy_dir.join("default.yaml"), POLICY);
        let cgroup_parent = format!("{}/{}", own_memory_cgroup().trim_end_matches('/'), name);
        Lab {
            state_dir: dir.join("state"),
            name,
            dir,
            policy_dir,
            cgroup_parent,
            containers: Vec::new(),
            extra_cleanup: Vec::new(),
        }
    }

    pub fn set_policy(&self, file: &str, text: &str) {
        write_private(&self.policy_dir.join(file), text);
    }

    pub fn on_drop(&mut self, f: impl FnOnce() + 'static) {
        self.extra_cleanup.push(Box::new(f));
    }

    /// The hook arguments used in config.json.
    pub fn hook_args(&self) -> Vec<String> {
        vec![
            "cglimit".into(),
            "hook".into(),
            "--policy-dir".into(),
            self.policy_dir.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
        ]
    }

    /// A bundle whose process prints its own memory limits, then runs `extra`;
    /// with the hook at `stage` (none when empty).
    pub fn bundle(&mut self, id: &str, memory: Option<(i64, Option<i64>)>, stage: &str) -> PathBuf {
        self.bundle_with(id, memory, stage, self.hook_args(), "")
    }

    pub fn bundle_with(
        &mut self,
        id: &str,
        memory: Option<(i64, Option<i64>)>,
        stage: &str,
        hook_args: Vec<String>,
        extra: &str,
    ) -> PathBuf {
        let bundle = self.dir.join(id);
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["proc", "sys", "dev", "tmp", "big"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let bb = rootfs.join("bin/busybox");
        if !bb.exists() {
            std::fs::copy(busybox(), &bb).unwrap();
            for c in ["sh", "cat", "sleep", "echo"] {
                std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(c)).unwrap();
            }
        }
        let mut resources = serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]});
        if let Some((limit, swap)) = memory {
            let mut m = serde_json::json!({"limit": limit});
            if let Some(s) = swap {
                m["swap"] = s.into();
            }
            resources["memory"] = m;
        }
        let script = format!("{READ_LIMITS}{extra}");
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sh", "-c", script],
                "env": ["PATH=/bin"],
                "cwd": "/",
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "t",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
                {"destination": "/big", "type": "tmpfs", "source": "tmpfs", "options": ["size=200m"]}
            ],
            "hooks": if stage.is_empty() { serde_json::json!({}) } else { serde_json::json!({ stage: [{"path": BIN, "args": hook_args}] }) },
            "linux": {
                "cgroupsPath": format!("{}/{}", self.cgroup_parent, id),
                "resources": resources,
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/sys"]
            }
        });
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        bundle
    }

    /// Runs a container to completion with `runtime` (runc or crun).
    pub fn run(&mut self, runtime: &str, id: &str, bundle: &Path) -> Output {
        self.run_command(runtime, id, bundle).output().unwrap()
    }

    /// `runtime run --bundle BUNDLE ID`, to be cleaned up with the lab.
    fn run_command(&mut self, runtime: &str, id: &str, bundle: &Path) -> Command {
        self.containers.push((runtime.to_string(), id.to_string()));
        let mut c = Command::new(runtime);
        c.args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null());
        c
    }

    /// `runtime run` of `bundle` as `id`, not waited for; cleaned up with
    /// the lab.
    pub fn spawn_run(&mut self, runtime: &str, id: &str, bundle: &Path) -> std::process::Child {
        self.run_command(runtime, id, bundle)
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// A detached runc container with the hook, running `script` after it
    /// prints its limits; cleaned up with the lab. Returns its id.
    pub fn detached(
        &mut self,
        name: &str,
        memory: Option<(i64, Option<i64>)>,
        script: &str,
    ) -> String {
        let bundle = self.bundle_with(name, memory, "createRuntime", self.hook_args(), script);
        let id = format!("{}-{name}", self.name);
        self.start_detached(None, &bundle, &id);
        id
    }

    /// Starts `bundle` detached as `id` with runc, its state under `root`
    /// (else runc's default); deleted with the lab.
    pub fn start_detached(&mut self, root: Option<&Path>, bundle: &Path, id: &str) {
        self.start_detached_on("runc", root, bundle, id)
    }

    /// [`Lab::start_detached`] with `runtime` (runc or crun).
    pub fn start_detached_on(
        &mut self,
        runtime: &'static str,
        root: Option<&Path>,
        bundle: &Path,
        id: &str,
    ) {
        let mut c = Command::new(runtime);
        if let Some(r) = root {
            c.arg("--root").arg(r);
        }
        let st = c
            .args(["run", "-d", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{runtime} run -d {id}");
        match root {
            None => self.track(runtime, id),
            Some(r) => {
                let (r, id) = (r.to_path_buf(), id.to_string());
                self.on_drop(move || {
                    let _ = Command::new(runtime)
                        .arg("--root")
                        .arg(&r)
                        .args(["delete", "-f", &id])
                        .status();
                });
            }
        }
    }

    /// Records a container for cleanup when it is created another way.
    pub fn track(&mut self, runtime: &str, id: &str) {
        self.containers.push((runtime.to_string(), id.to_string()));
    }

    pub fn decisions(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.state_dir.join("decisions.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every record line is JSON"))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (rt, id) in self.containers.drain(..) {
            let _ = Command::new(&rt)
                .args(["delete", "-f", &id])
                .stderr(Stdio::null())
                .status();
        }
        for f in self.extra_cleanup.drain(..) {
            f();
        }
        remove_cgroups(&self.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a file only its owner may change (mode 0644, whatever the umask).
pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Removes a cgroup path (and children) from every hierarchy it exists in.
pub fn remove_cgroups(path: &str) {
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut mounts: Vec<PathBuf> = roots.flatten().map(|e| e.path()).collect();
    mounts.push("/sys/fs/cgroup".into());
    mounts.push("/run/cglimit-hugetlb".into());
    for m in mounts {
        let p = m.join(path.trim_start_matches('/'));
        if p.is_dir() {
            rmdir_tree(&p);
        }
    }
}

fn rmdir_tree(p: &Path) {
    if let Ok(entries) = std::fs::read_dir(p) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    // A runtime's helper (podman's conmon) may leave its cgroup a moment
    // after the container is gone: retry while the kernel says busy.
    for _ in 0..50 {
        match std::fs::remove_dir(p) {
            Err(e) if e.raw_os_error() == Some(16) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            _ => return,
        }
    }
}

/// A real memory cgroup with a sleeping process in it, removed on drop.
pub struct Victim {
    pub dir: PathBuf,
    pub child: std::process::Child,
}

impl Victim {
    pub fn new(lab: &Lab, name: &str) -> Victim {
        Victim::running(lab, name, &["sleep", "60"])
    }

    /// `argv` runs in the cgroup from its first instruction: a shell joins
    /// it, then executes `argv`.
    pub fn running(lab: &Lab, name: &str, argv: &[&str]) -> Victim {
        let dir = v1_memory_root()
            .join(lab.cgroup_parent.trim_start_matches('/'))
            .join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg("echo $$ > \"$0/cgroup.procs\" && shift && exec \"$@\"")
            .arg(&dir)
            .arg("_")
            .args(argv)
            .spawn()
            .unwrap();
        let procs = dir.join("cgroup.procs");
        let t = std::time::Instant::now();
        while !std::fs::read_to_string(&procs)
            .unwrap_or_default()
            .contains(&child.id().to_string())
        {
            assert!(
                t.elapsed().as_secs() < 10,
                "{} did not join {}",
                child.id(),
                dir.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Victim { dir, child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn read(&self, file: &str) -> u64 {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn write(&self, file: &str, v: u64) {
        std::fs::write(self.dir.join(file), v.to_string()).unwrap();
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        rmdir_tree(&self.dir);
    }
}

/// The container prints its limits as seen from inside, before anything else.
const READ_LIMITS: &str = "cd /sys/fs/cgroup/memory 2>/dev/null && cat memory.limit_in_bytes memory.memsw.limit_in_bytes memory.soft_limit_in_bytes || { cd /sys/fs/cgroup && cat memory.max memory.swap.max memory.high; }; ";

/// Parses the three numbers the container printed: memory, memory+swap (v1)
/// and soft limit.
pub fn limits_seen(out: &Output) -> (u64, u64, u64) {
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .lines()
        .take(3)
        .map(|l| {
            if l == "max" {
                V1_UNLIMITED
            } else {
                l.trim().parse().unwrap_or_else(|_| {
                    panic!(
                        "not a number {l:?} in {text:?}, stderr {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })
            }
        })
        .collect();
    assert_eq!(
        v.len(),
        3,
        "container output {text:?}, stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (v[0], v[1], v[2])
}

pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("busybox-static is not installed (tests/all.sh installs it)");
}

/// crun refuses a hybrid layout while cgroup2 still holds a controller; bind
/// `hugetlb` to a v1 hierarchy of its own so cgroup2's list empties. Left
/// mounted: it is machine setup, like an installed package.
pub fn prepare_crun() {
    let ctl =
        std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
    if ctl.trim().is_empty() {
        return;
    }
    std::fs::create_dir_all("/run/cglimit-hugetlb").unwrap();
    let st = Command::new("mount")
        .args([
            "-t",
            "cgroup",
            "-o",
            "hugetlb",
            "none",
            "/run/cglimit-hugetlb",
        ])
        .status()
        .unwrap();
    let ctl =
        std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
    assert!(
        st.success() || ctl.trim().is_empty(),
        "cannot free cgroup2 of controllers: {ctl}"
    );
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the hook binary directly with `state` on stdin.
pub fn hook(args: &[String], state: &str) -> Output {
    let mut c = Command::new(BIN);
    c.args(&args[1..]);
    with_stdin(c, state.as_bytes())
}

/// Runs `c` to completion with `input` on its stdin.
pub fn with_stdin(mut c: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The C library cglimit is built against, as `static_program` takes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Libc {
    Musl,
    Glibc,
}

/// The C library of this build, and so of the cglimit under test.
pub const OWN_LIBC: Libc = if cfg!(target_env = "musl") {
    Libc::Musl
} else {
    Libc::Glibc
};

/// Builds `source` into a static, stripped program `dir/name` against the
/// same C library as cglimit: a baseline that costs what the mechanism under
/// test costs and nothing more, or a stand-in that reports what the kernel
/// gave it.
pub fn static_program(dir: &Path, name: &str, source: &str) -> PathBuf {
    static_program_with(OWN_LIBC, dir, name, source)
}

/// `static_program` against a chosen C library.
pub fn static_program_with(libc: Libc, dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.rs"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let target = match libc {
        Libc::Musl => ["--target", "x86_64-unknown-linux-musl"],
        Libc::Glibc => ["-C", "target-feature=+crt-static"],
    };
    let st = std::process::Command::new("rustc")
        // Position-dependent, as cglimit is built (.cargo/config.toml).
        .args(["-O", "-C", "strip=symbols", "-C", "relocation-model=static"])
        .args(target)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "rustc could not build {name}");
    out
}

/// Holds every open of a file until allowed: a fanotify permission mark,
/// so a test can stop a process exactly there (the hook's open of its
/// policy). Dropping it lets every held open through.
pub struct HeldOpens(nix::sys::fanotify::Fanotify);

impl HeldOpens {
    pub fn new(path: &Path) -> HeldOpens {
        use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
        let fan = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC,
            EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC,
        )
        .expect("fanotify (CONFIG_FANOTIFY_ACCESS_PERMISSIONS)");
        fan.mark(
            MarkFlags::FAN_MARK_ADD,
            MaskFlags::FAN_OPEN_PERM,
            nix::fcntl::AT_FDCWD,
            Some(path),
        )
        .unwrap();
        HeldOpens(fan)
    }

    /// Waits until someone opens the file; they stay blocked.
    pub fn wait(&self) -> Vec<nix::sys::fanotify::FanotifyEvent> {
        let events = self.0.read_events().unwrap();
        assert!(!events.is_empty());
        events
    }

    /// Lets the opens of `events` through.
    pub fn allow(&self, events: &[nix::sys::fanotify::FanotifyEvent]) {
        use nix::sys::fanotify::{FanotifyResponse, Response};
        for e in events {
            if let Some(fd) = e.fd() {
                self.0
                    .write_response(FanotifyResponse::new(fd, Response::FAN_ALLOW))
                    .unwrap();
            }
        }
    }
}

/// `cglimit runtime` with the lab's policies and state, in front of runc,
/// asking no engine; the caller adds runc's arguments (or `--runtime`).
pub fn wrapper(lab: &Lab) -> Command {
    let mut c = Command::new(BIN);
    c.args(["runtime", "--policy-dir"])
        .arg(&lab.policy_dir)
        .arg("--state-dir")
        .arg(&lab.state_dir)
        .arg("--no-cache")
        .arg("--docker-host")
        .arg(format!(
            "unix://{}",
            lab.dir.join("no-engine.sock").display()
        ));
    c
}

/// podman as this host runs it for tests (runc, cgroupfs, vfs in the lab,
/// events in a file), through its own configuration files: the paths for
/// `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF`. Its containers are
/// removed with the lab.
pub fn podman_lab(lab: &mut Lab) -> (PathBuf, PathBuf) {
    let conf = lab.dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )
    .unwrap();
    let storage = lab.dir.join("storage.conf");
    std::fs::write(
        &storage,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            lab.dir.join("root").display(),
            lab.dir.join("runroot").display()
        ),
    )
    .unwrap();
    let (c2, s2) = (conf.clone(), storage.clone());
    lab.on_drop(move || {
        let _ = Command::new("podman")
            .env("CONTAINERS_CONF", &c2)
            .env("CONTAINERS_STORAGE_CONF", &s2)
            .args(["rm", "-af", "-t", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
    (conf, storage)
}
