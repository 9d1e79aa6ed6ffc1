//! containerd: whether something other than Docker uses it (only then
//! must it be wired), the handler setup wrote as containerd has loaded it,
//! and the probe run through containerd's runc shim with that handler's
//! binary, as the CRI runs a pod of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{DoctorError, Seen};
use crate::cli::DoctorArgs;

/// A containerd namespace other than Docker's that holds containers (the
/// CRI's `k8s.io`, or anyone's through `ctr`): `None` when only Docker's
/// `moby` does.
pub(super) fn containerd_user(args: &DoctorArgs) -> Result<Option<String>, DoctorError> {
    let ctr = |a: &[&str]| -> Result<String, DoctorError> {
        let out = std::process::Command::new("ctr")
            .arg("--address")
            .arg(&args.containerd_address)
            .args(a)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(DoctorError::spawn("ctr"))?;
        if !out.status.success() {
            return Err(DoctorError::said(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    for ns in ctr(&["namespaces", "list", "-q"])?.lines().map(str::trim) {
        if ns.is_empty() || ns == "moby" {
            continue;
        }
        if !ctr(&["-n", ns, "containers", "list", "-q"])?
            .trim()
            .is_empty()
        {
            return Ok(Some(ns.to_string()));
        }
    }
    Ok(None)
}

/// The handler containerd runs cglimit through, as its configuration and
/// the running daemon have it.
pub(super) struct ContainerdWiring {
    pub(super) binary: PathBuf,
    pub(super) systemd_cgroup: bool,
    /// How pods reach it, for the report.
    pub(super) note: String,
}

pub(super) fn containerd_wiring(args: &DoctorArgs) -> Result<ContainerdWiring, DoctorError> {
    use crate::cmd::setup::containerd;
    let path = &args.containerd_config;
    let text = std::fs::read_to_string(path).map_err(|source| DoctorError::NoConfig {
        path: path.clone(),
        source,
    })?;
    let w = containerd::wiring(&text).map_err(|problem| DoctorError::Config {
        path: path.clone(),
        problem,
    })?;
    let Some((name, binary)) = w
        .handlers
        .iter()
        .find(|(n, _)| Some(n) == w.default.as_ref())
        .or(w.handlers.first())
        .cloned()
    else {
        return Err(DoctorError::Unwired(format!(
            "no runtime handler in {} runs cglimit-runtime: `cglimit setup containerd`",
            path.display()
        )));
    };
    if w.cri_disabled {
        return Err(DoctorError::Unwired(format!(
            "the CRI plugin is disabled in {} (`disabled_plugins`): Kubernetes cannot reach handler {name:?}",
            path.display()
        )));
    }
    if let (Some(started), Ok(changed)) = (
        containerd_started(&args.containerd_address),
        std::fs::metadata(path).and_then(|m| m.modified()),
    ) && changed > started + std::time::Duration::from_secs(1)
    {
        return Err(DoctorError::Unwired(format!(
            "{} changed after containerd started: restart it to load handler {name:?} (systemctl restart containerd)",
            path.display()
        )));
    }
    let systemd_cgroup = w.systemd_cgroup.contains(&name);
    let note = if w.default.is_some() {
        format!(" (handler {name:?}, the CRI's default)")
    } else {
        format!(
            " (handler {name:?} is not the CRI's default: only pods of a RuntimeClass with handler {name:?} use it; `setup containerd --default` makes it every pod's)"
        )
    };
    Ok(ContainerdWiring {
        binary,
        systemd_cgroup,
        note,
    })
}

/// When the containerd answering on `socket` started.
fn containerd_started(socket: &Path) -> Option<std::time::SystemTime> {
    let pid = crate::cmd::setup::peer_pid(socket).ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim() != "containerd" {
        return None;
    }
    start_time(pid)
}

/// A process's start (`/proc/PID/stat` field 22, clock ticks after boot,
/// plus the boot time of `/proc/stat`), to the tick.
fn start_time(pid: i32) -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold ')') start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = rest.split_whitespace().nth(22 - 3)?.parse().ok()?;
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|h| *h > 0)? as u64;
    Some(
        std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(btime)
            + std::time::Duration::from_millis(ticks * 1000 / hz),
    )
}

/// The container's own cgroups at `/sys/fs/cgroup`, read-only.
const CGROUP_MOUNT: &str =
    "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev";

/// Runs the probe through containerd's runc shim with the handler's
/// binary, from a root filesystem holding only this binary.
pub(super) fn ctr_probe(
    args: &DoctorArgs,
    w: &ContainerdWiring,
    container: &str,
) -> Result<Seen, DoctorError> {
    let dir = std::env::temp_dir().join(format!("cglimit-probe-rootfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(DoctorError::file(&dir))?;
    let result = (|| {
        let copy = dir.join("cglimit");
        std::fs::copy("/proc/self/exe", &copy).map_err(DoctorError::file(&copy))?;
        let mut c = Command::new("ctr");
        c.arg("-a")
            .arg(&args.containerd_address)
            .args(["-n", "cglimit-doctor", "run", "--rm", "--rootfs"])
            // ctr's default spec mounts no cgroup filesystem, the CRI's does.
            .args(["--mount", CGROUP_MOUNT])
            .args(["--runtime", crate::cmd::setup::containerd::RUNC_SHIM])
            .arg("--runc-binary")
            .arg(&w.binary);
        if w.systemd_cgroup {
            // ctr needs the unit spelled out on the systemd driver.
            c.arg("--runc-systemd-cgroup")
                .arg("--cgroup")
                .arg(format!("system.slice:cglimit-doctor:{container}"));
        }
        let out = c
            .arg(&dir)
            .args([container, "/cglimit", "probe"])
            .stdin(Stdio::null())
            .output()
            .map_err(DoctorError::spawn("ctr"))?;
        if !out.status.success() {
            return Err(DoctorError::said(&out.stderr));
        }
        DoctorError::probe(&out.stdout)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
