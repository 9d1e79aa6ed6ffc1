//! A containerd of the test's own: its own configuration file, socket, root
//! and state directories, so that it neither sees nor disturbs the host's.
//! Stopped, its containers and shims removed, on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::docker::unmount_below;

pub struct Containerd {
    pub dir: PathBuf,
    pub sock: PathBuf,
    /// The configuration file it starts with (what `setup containerd` edits).
    pub config: PathBuf,
    child: Option<Child>,
    /// `CGLIMIT_CONFIG` in its environment, which its shims pass on to
    /// the wrapper.
    pub cglimit_config: Option<PathBuf>,
}

impl Containerd {
    /// Prepares the directories and a configuration file like a host's
    /// (version 2, the CRI plugin on, the native snapshotter, since overlay
    /// does not nest here); does not start it.
    pub fn new() -> Containerd {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Unix socket paths are limited to 108 bytes: keep this one short.
        let dir = PathBuf::from(format!("/tmp/cgc{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["root", "state", "cni/bin", "cni/conf"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let sock = dir.join("c.sock");
        let config = dir.join("config.toml");
        let c = Containerd {
            config,
            sock,
            dir,
            child: None,
            cglimit_config: None,
        };
        std::fs::write(&c.config, c.base_config()).unwrap();
        c
    }

    pub fn base_config(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"

[grpc]
  address = "{d}/c.sock"

[ttrpc]
  address = "{d}/c.sock.ttrpc"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    stream_server_address = "127.0.0.1"
    # This host may not lower a process's oom_score_adj below its own (the
    # CRI gives sandboxes -998): hold them at containerd's.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "native"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{d}/cni/bin"
      conf_dir = "{d}/cni/conf"
"#
        )
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("containerd.log"))
            .unwrap();
        let mut c = Command::new("containerd");
        if let Some(cfg) = &self.cglimit_config {
            c.env("CGLIMIT_CONFIG", cfg);
        }
        let child = c
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (tests/all.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops containerd; its shims, and so the containers, keep running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(&self.sock)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The value of `BinaryName` of runtime handler `handler` in the
    /// configuration file.
    pub fn binary_of(&self, handler: &str) -> Option<PathBuf> {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"][handler]["options"]
            ["BinaryName"]
            .as_str()
            .map(PathBuf::from)
    }
}

/// The sandbox image the CRI plugin runs for every pod, made locally.
pub const PAUSE_IMAGE: &str = "localhost/cglimit-test/pause:1";

/// A root filesystem holding only busybox, for `ctr run --rootfs`.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    for d in ["proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(super::busybox(), rootfs.join("bin/busybox")).unwrap();
    rootfs
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ns = self.ctr(&["namespaces", "ls", "-q"]);
            for ns in String::from_utf8_lossy(&ns.stdout).split_whitespace() {
                let tasks = self.ctr(&["-n", ns, "tasks", "ls", "-q"]);
                for t in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
                    let _ = self.ctr(&["-n", ns, "tasks", "kill", "-s", "SIGKILL", t]);
                    let _ = self.ctr(&["-n", ns, "tasks", "delete", "-f", t]);
                }
                let cs = self.ctr(&["-n", ns, "containers", "ls", "-q"]);
                for c in String::from_utf8_lossy(&cs.stdout).split_whitespace() {
                    let _ = self.ctr(&["-n", ns, "containers", "delete", c]);
                }
            }
        }
        self.stop();
        // Shims of this containerd that outlived it.
        if let Ok(procs) = std::fs::read_dir("/proc") {
            let me = self.sock.display().to_string();
            for p in procs.flatten() {
                let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains(&me) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        unmount_below(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Containerd {
    /// Makes an image holding only busybox (`/bin/busybox`), tagged `tag`,
    /// and imports it into namespace `ns` (no registry is needed): written
    /// in `docker save`'s layout, which `ctr images import` reads.
    pub fn import_busybox(&self, ns: &str, tag: &str) {
        let work = self
            .dir
            .join(format!("image-{}", tag.replace(['/', ':'], "_")));
        let rootfs = busybox_rootfs(&work);
        let archive = work.join("archive");
        std::fs::create_dir_all(&archive).unwrap();
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(archive.join("layer.tar"))
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let sha = |p: &Path| {
            let out = Command::new("sha256sum").arg(p).output().unwrap();
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        };
        let diff_id = sha(&archive.join("layer.tar"));
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/busybox", "sleep", "3600"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        });
        std::fs::write(archive.join("config.json"), config.to_string()).unwrap();
        let config_sha = sha(&archive.join("config.json"));
        std::fs::rename(
            archive.join("config.json"),
            archive.join(format!("{config_sha}.json")),
        )
        .unwrap();
        let manifest = serde_json::json!([{
            "Config": format!("{config_sha}.json"),
            "RepoTags": [tag],
            "Layers": ["layer.tar"],
        }]);
        std::fs::write(archive.join("manifest.json"), manifest.to_string()).unwrap();
        let tar = work.join("image.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&archive)
            .arg("-cf")
            .arg(&tar)
            .args(["manifest.json", "layer.tar", &format!("{config_sha}.json")])
            .status()
            .unwrap();
        assert!(st.success());
        let out = self.ctr(&[
            "-n",
            ns,
            "images",
            "import",
            "--snapshotter",
            "native",
            tar.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "ctr images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
