//! Enforcement: the only code that writes cgroup files.
//!
//! v1 and v2 differ in file names, spelling of "no limit" and one ordering
//! rule; both go through [`apply`], which snapshots the current values,
//! writes a plan, and on any failure writes the snapshot back so that a
//! container never runs half-limited.

mod dir;
pub mod procfs;
pub mod procs;
pub mod stats;
mod v1;
mod v2;

pub use dir::{CgroupDir, CgroupError};
pub use procfs::Hierarchy;
pub use v2::swap_max as swap_max_v2;

use serde::Serialize;

use crate::size::Limit;
use crate::size::Limits;

/// What a memory cgroup holds now, in its own terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub memory: Limit,
    /// The swap file's value: v1 `memory.memsw.limit_in_bytes` (memory+swap),
    /// v2 `memory.swap.max` (swap on top); `None` without swap accounting.
    pub swap_file: Option<Limit>,
    /// v1 `memory.soft_limit_in_bytes`, v2 `memory.high`.
    pub high: Limit,
}

/// One write of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    pub file: &'static str,
    pub value: Limit,
}

/// The result of a successful [`apply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub before: Snapshot,
    pub after: Snapshot,
    /// Files written, in order.
    pub written: Vec<&'static str>,
    /// True when the kernel has no swap accounting here, so no swap limit
    /// could be set.
    pub swap_unaccounted: bool,
    /// v1: the socket-buffer limit now in `memory.kmem.tcp.limit_in_bytes`
    /// (the memory limit); `None` on v2, which counts socket memory in
    /// `memory.current` already, and where the file does not exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Limit>,
}

/// Opens the memory cgroup of a process, found through `/proc/<pid>/cgroup`
/// and this mount namespace's mount table, so any runtime's placement
/// (cgroupfs or systemd driver, relative or absolute paths) is followed.
pub fn for_pid(pid: i32) -> Result<(CgroupDir, String), CgroupError> {
    locate(pid).map(|(dir, path, _)| (dir, path))
}

/// [`for_pid`], with the cgroup's `cgroup.procs` where it was read on the
/// way (for [`exclusive`], which then need not read it again).
pub fn locate(pid: i32) -> Result<(CgroupDir, String, Option<String>), CgroupError> {
    // Held from before the cgroup is read until after: if the process
    // exits and its pid is reused meanwhile, the descriptor says so.
    let pidfd = pidfd_open(pid);
    let proc_cgroup =
        procfs::read(format!("/proc/{pid}/cgroup")).map_err(|e| match e.raw_os_error() {
            Some(libc_enoent)
                if libc_enoent == nix::errno::Errno::ENOENT as i32
                    || libc_enoent == nix::errno::Errno::ESRCH as i32 =>
            {
                CgroupError::ProcessGone { pid }
            }
            _ => CgroupError::Io {
                path: format!("/proc/{pid}/cgroup").into(),
                op: "read",
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(5)),
            },
        })?;
    let member =
        procfs::memory_membership(&proc_cgroup).ok_or(CgroupError::NoMemoryController { pid })?;
    // A process that has exited reads as a member of the hierarchy's root
    // (the kernel moves it there on exit), so the cgroup read is only the
    // container's if the process is still alive after it.
    let running = match &pidfd {
        Some(fd) => running(fd),
        None => alive(pid),
    };
    if !running {
        return Err(CgroupError::ProcessGone { pid });
    }
    if member.path == "/" {
        return Err(CgroupError::RootCgroup { pid });
    }
    if let Some((dir, procs)) = at_usual_mount(&member, pid) {
        return Ok((dir, member.path, Some(procs)));
    }
    let dir = open_member(&member).map_err(|e| match e {
        CgroupError::NoMemoryController { .. } => CgroupError::NoMemoryController { pid },
        e => e,
    })?;
    Ok((dir, member.path, None))
}

/// The process's memory cgroup where systemd, Docker and the distributions
/// mount the hierarchy (`/sys/fs/cgroup/memory` on v1, `/sys/fs/cgroup` on
/// v2), without reading the mount table (a Docker host's runs to hundreds
/// of lines). Taken only when the directory there is a memory cgroup that
/// lists `pid` among its processes: a process is in one cgroup of a
/// hierarchy, so that is its own, whatever the mount's root or the cgroup
/// namespace. Anything else (another mount point, a mount of a subtree, a
/// process not listed) is left to the mount table.
fn at_usual_mount(member: &procfs::Membership, pid: i32) -> Option<(CgroupDir, String)> {
    let (mount, controller) = match member.hierarchy {
        Hierarchy::V1 => ("/sys/fs/cgroup/memory", v1::LIMIT),
        Hierarchy::V2 => ("/sys/fs/cgroup", v2::MAX),
    };
    let rel = member.path.trim_start_matches('/');
    let dir = CgroupDir::open(std::path::Path::new(mount), rel, member.hierarchy.clone()).ok()?;
    if !dir.has(controller) {
        return None;
    }
    let procs = dir.read("cgroup.procs").ok()?;
    procs
        .lines()
        .any(|l| l.trim().parse::<i32>() == Ok(pid))
        .then_some((dir, procs))
}

/// A descriptor of the process `pid` is now (`pidfd_open`), or `None` where
/// the kernel has none (before 5.3).
fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a plain system call; on success it returns a new descriptor
    // that nothing else owns.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process a pidfd refers to has not exited: its pidfd turns
/// readable when it exits (a zombie has), and it cannot refer to another
/// process that took the pid since.
fn running(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsFd;
    let mut p = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    matches!(nix::poll::poll(&mut p, nix::poll::PollTimeout::ZERO), Ok(0))
}

/// Refuses a cgroup that holds processes besides the container's `pid`:
/// at a createRuntime or prestart hook, a runtime's container cgroup holds
/// the container's init alone (podman `--cgroups=disabled`, or a
/// `cgroupsPath` naming a service's own cgroup, would put the caller's
/// session or service under the container's limits).
pub fn exclusive(
    dir: &CgroupDir,
    pid: i32,
    path: &str,
    read: Option<String>,
) -> Result<(), CgroupError> {
    // Read by `locate` after the process was found alive, so no process
    // joined before it that this list would miss.
    let procs = match read {
        Some(p) => p,
        None => dir.read("cgroup.procs")?,
    };
    let others: Vec<(i32, String)> = procs
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p != pid)
        .map(|p| {
            let comm = procfs::read(format!("/proc/{p}/comm")).unwrap_or_default();
            (p, comm.trim().to_string())
        })
        .collect();
    if others.is_empty() {
        Ok(())
    } else {
        Err(CgroupError::Shared {
            pid,
            cgroup: path.to_string(),
            others,
        })
    }
}

/// Whether a process exists and has not exited (zombies have).
fn alive(pid: i32) -> bool {
    let Ok(stat) = procfs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which may itself hold ')'.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X' | 'x'))
}

/// Opens a memory cgroup by its path (as `/proc/<pid>/cgroup` spells it),
/// on the v1 memory hierarchy when there is one, else on v2.
pub fn open_path(path: &str) -> Result<CgroupDir, CgroupError> {
    let own = procfs::read("/proc/self/cgroup").unwrap_or_default();
    let hierarchy = procfs::memory_membership(&own)
        .map(|m| m.hierarchy)
        .unwrap_or(Hierarchy::V2);
    open_member(&procfs::Membership {
        hierarchy,
        path: path.to_string(),
    })
}

fn open_member(member: &procfs::Membership) -> Result<CgroupDir, CgroupError> {
    let mountinfo = procfs::read("/proc/self/mountinfo").map_err(|e| CgroupError::Io {
        path: "/proc/self/mountinfo".into(),
        op: "read",
        errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(5)),
    })?;
    let mounts = procfs::cgroup_mounts(&mountinfo);
    let (mount, rel) = procfs::locate(&mounts, member).ok_or_else(|| CgroupError::NotMounted {
        path: member.path.clone(),
    })?;
    let dir = CgroupDir::open(&mount.mount_point, &rel, member.hierarchy.clone())?;
    if member.hierarchy == Hierarchy::V2 && !dir.has("memory.max") {
        return Err(CgroupError::NoMemoryController { pid: 0 });
    }
    Ok(dir)
}

/// The writes that would bring the cgroup from `cur` to `target` (empty
/// when it is compliant).
pub fn pending(dir: &CgroupDir, cur: &Snapshot, target: &Limits) -> Vec<Write> {
    plan(&dir.hierarchy, cur, target)
}

/// Memory in use: v1 `memory.usage_in_bytes`, v2 `memory.current`.
pub fn usage(dir: &CgroupDir) -> Result<u64, CgroupError> {
    let file = match dir.hierarchy {
        Hierarchy::V1 => "memory.usage_in_bytes",
        Hierarchy::V2 => "memory.current",
    };
    match read_limit(dir, file)? {
        Limit::Bytes(b) => Ok(b),
        Limit::Unlimited => Ok(u64::MAX),
    }
}

/// Asks the kernel to reclaim `bytes` from the cgroup first (v2
/// `memory.reclaim`); v1 has no such file, and a lower limit makes the
/// kernel reclaim or answer EBUSY.
pub fn reclaim(dir: &CgroupDir, bytes: u64) -> Result<(), CgroupError> {
    if dir.hierarchy == Hierarchy::V2 && dir.has("memory.reclaim") {
        // EAGAIN means it reclaimed less than asked: lowering then decides.
        match dir.write("memory.reclaim", &bytes.to_string()) {
            Err(CgroupError::Io {
                errno: nix::errno::Errno::EAGAIN,
                ..
            }) => Ok(()),
            r => r,
        }
    } else {
        Ok(())
    }
}

/// Whether this host's memory controller is on the unified (v2) hierarchy:
/// `/sys/fs/cgroup` is a cgroup2 mount (not a v1 or hybrid tmpfs).
pub fn unified_host() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Whether the kernel accounts swap for memory cgroups, probed as Docker
/// probes it: v1 `memory.memsw.limit_in_bytes` at the memory hierarchy's
/// root; v2 `memory.swap.max` in a non-root cgroup (this process's own, or
/// the first child of the root with the memory controller).
pub fn swap_accounted(unified: bool) -> bool {
    // Where the hierarchy is mounted as usual, a stat or two answer.
    let usual = std::path::Path::new("/sys/fs/cgroup");
    if !unified && usual.join("memory").join(v1::LIMIT).exists() {
        return usual.join("memory").join(v1::MEMSW).exists();
    }
    if unified && let Some(answer) = swap_file_near(usual) {
        return answer;
    }
    let Ok(mountinfo) = procfs::read("/proc/self/mountinfo") else {
        return true;
    };
    let want = if unified {
        Hierarchy::V2
    } else {
        Hierarchy::V1
    };
    let Some(mount) = procfs::cgroup_mounts(&mountinfo)
        .into_iter()
        .find(|m| m.hierarchy == want)
    else {
        return true;
    };
    let root = &mount.mount_point;
    if !unified {
        return root.join(v1::MEMSW).exists();
    }
    swap_file_near(root).unwrap_or(true)
}

/// v1: whether the kernel has `memory.kmem.tcp.limit_in_bytes`, which
/// [`apply`] sets and runc 1.1 does not (it ignores a bundle's
/// `kernelTCP`): the runtime wrapper then adds its hook to set it.
pub fn v1_socket_buffer_limit() -> bool {
    let usual = std::path::Path::new("/sys/fs/cgroup/memory");
    if usual.join(v1::LIMIT).exists() {
        return usual.join(v1::TCP).exists();
    }
    procfs::read("/proc/self/mountinfo")
        .ok()
        .and_then(|m| {
            procfs::cgroup_mounts(&m)
                .into_iter()
                .find(|m| m.hierarchy == Hierarchy::V1)
        })
        .is_some_and(|m| m.mount_point.join(v1::TCP).exists())
}

/// v2: whether `memory.swap.max` is beside `memory.max` in this process's
/// own cgroup below `root`, or (at the root) in the first child with the
/// memory controller; `None` when neither can be seen.
fn swap_file_near(root: &std::path::Path) -> Option<bool> {
    let own = procfs::read("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))
        })
        .filter(|p| p != "/");
    let dir = match own {
        Some(own) => root.join(own.trim_start_matches('/')),
        None => std::fs::read_dir(root)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join(v2::MAX).exists())?,
    };
    dir.join(v2::MAX)
        .exists()
        .then(|| dir.join(v2::SWAP_MAX).exists())
}

/// Reads the current limits.
pub fn snapshot(dir: &CgroupDir) -> Result<Snapshot, CgroupError> {
    match dir.hierarchy {
        Hierarchy::V1 => v1::FILES.snapshot(dir),
        Hierarchy::V2 => v2::FILES.snapshot(dir),
    }
}

fn plan(h: &Hierarchy, cur: &Snapshot, target: &Limits) -> Vec<Write> {
    match h {
        Hierarchy::V1 => v1::plan(cur, target),
        Hierarchy::V2 => v2::plan(cur, target),
    }
}

fn spell(h: &Hierarchy, v: Limit) -> String {
    match (h, v) {
        (_, Limit::Bytes(b)) => b.to_string(),
        // v1 takes -1 for "no limit" and reads back a huge page-aligned number.
        (Hierarchy::V1, Limit::Unlimited) => "-1".into(),
        (Hierarchy::V2, Limit::Unlimited) => "max".into(),
    }
}

/// Sets `target` in the cgroup, all or nothing.
pub fn apply(dir: &CgroupDir, target: &Limits) -> Result<Applied, CgroupError> {
    let before = snapshot(dir)?;
    let writes = plan(&dir.hierarchy, &before, target);
    let mut state = before;
    let mut written = Vec::new();
    for w in &writes {
        if let Err(cause) = dir.write(w.file, &spell(&dir.hierarchy, w.value)) {
            return Err(roll_back(dir, state, before, &written, cause));
        }
        set(&dir.hierarchy, &mut state, w);
        written.push(w.file);
    }
    // v2: a creator's `memory.low` (runc writes the bundle's reservation
    // there before any hook runs) is held to what the policy allows.
    if dir.hierarchy == Hierarchy::V2 {
        let cap = v2::low_cap(target);
        let over = match read_limit_if(dir, v2::LOW) {
            Ok(Some(Limit::Bytes(b))) => b > cap,
            Ok(Some(Limit::Unlimited)) => true,
            Ok(None) | Err(_) => false,
        };
        if over && let Err(cause) = dir.write(v2::LOW, &cap.to_string()) {
            return Err(roll_back(dir, state, before, &written, cause));
        }
        if over {
            written.push(v2::LOW);
        }
    }
    let tcp = match hold_socket_buffers(dir, target.memory) {
        Ok(t) => t,
        Err(cause) => return Err(roll_back(dir, state, before, &written, cause)),
    };
    if tcp.is_some_and(|(_, wrote)| wrote) {
        written.push(v1::TCP);
    }
    // Read back what the kernel made of the writes (v1 rounds to pages);
    // with nothing written, nothing changed.
    let after = if written.is_empty() {
        before
    } else {
        snapshot(dir)?
    };
    Ok(Applied {
        before,
        after,
        written,
        swap_unaccounted: before.swap_file.is_none(),
        tcp: tcp.map(|(l, _)| l),
    })
}

/// v1 charges TCP socket buffers to no memory cgroup until the cgroup's
/// `memory.kmem.tcp.limit_in_bytes` is set: a container limited to 64M
/// could queue gigabytes in its sockets' buffers. Setting that file to the
/// memory limit turns the accounting on and bounds them (buffers then
/// count against the TCP limit, not `memory.limit_in_bytes`, so the bound
/// is the limit again, not a share of it). Written after the memory files,
/// so its failure rolls them back. The value it holds, and whether it was
/// written; `None` on v2 or where the kernel has no such file.
fn hold_socket_buffers(
    dir: &CgroupDir,
    memory: Limit,
) -> Result<Option<(Limit, bool)>, CgroupError> {
    if dir.hierarchy != Hierarchy::V1 {
        return Ok(None);
    }
    match read_limit_if(dir, v1::TCP)? {
        None => return Ok(None),
        Some(l) if l == memory => return Ok(Some((memory, false))),
        Some(_) => {}
    }
    dir.write(v1::TCP, &spell(&dir.hierarchy, memory))?;
    Ok(Some((memory, true)))
}

/// Puts back the files already written, in an order the kernel accepts from
/// the state they are in now.
fn roll_back(
    dir: &CgroupDir,
    now: Snapshot,
    before: Snapshot,
    written: &[&'static str],
    cause: CgroupError,
) -> CgroupError {
    if written.is_empty() {
        return CgroupError::RolledBack {
            cause: Box::new(cause),
            restored: Vec::new(),
        };
    }
    let restore: Vec<Write> = plan_to_snapshot(&dir.hierarchy, &now, &before)
        .into_iter()
        .filter(|w| written.contains(&w.file))
        .collect();
    let mut restored = Vec::new();
    for w in &restore {
        if let Err(e) = dir.write(w.file, &spell(&dir.hierarchy, w.value)) {
            return CgroupError::RollbackFailed {
                cause: Box::new(cause),
                restore_error: Box::new(e),
            };
        }
        restored.push(w.file.to_string());
    }
    CgroupError::RolledBack {
        cause: Box::new(cause),
        restored,
    }
}

fn plan_to_snapshot(h: &Hierarchy, now: &Snapshot, to: &Snapshot) -> Vec<Write> {
    match h {
        Hierarchy::V1 => v1::plan_raw(now, to),
        Hierarchy::V2 => v2::plan_raw(now, to),
    }
}

fn set(h: &Hierarchy, s: &mut Snapshot, w: &Write) {
    match h {
        Hierarchy::V1 => v1::FILES.set(s, w),
        Hierarchy::V2 => v2::FILES.set(s, w),
    }
}

/// The three memory files of one hierarchy, by what they hold: the same
/// [`Snapshot`] read and written under v1's and v2's names.
pub struct Files {
    pub memory: &'static str,
    /// v1 memory+swap, v2 swap on top; absent without swap accounting.
    pub swap: &'static str,
    pub high: &'static str,
}

/// The files that hold a cgroup's limits (memory, swap, high) in its
/// hierarchy: what the watcher watches for writes by others.
pub fn limit_files(hierarchy: &Hierarchy) -> [&'static str; 3] {
    let f = match hierarchy {
        Hierarchy::V1 => &v1::FILES,
        Hierarchy::V2 => &v2::FILES,
    };
    [f.memory, f.swap, f.high]
}

impl Files {
    fn snapshot(&self, dir: &CgroupDir) -> Result<Snapshot, CgroupError> {
        Ok(Snapshot {
            memory: read_limit(dir, self.memory)?,
            swap_file: read_limit_if(dir, self.swap)?,
            high: read_limit(dir, self.high)?,
        })
    }

    /// The write each file needs to go from `cur` to `to` (memory, swap,
    /// high), in no particular order: the hierarchy orders them.
    fn changes(&self, cur: &Snapshot, to: &Snapshot) -> [Option<Write>; 3] {
        let write = |file, differs: bool, value| differs.then_some(Write { file, value });
        let swap = match (cur.swap_file, to.swap_file) {
            (Some(c), Some(t)) => write(self.swap, c != t, t),
            _ => None,
        };
        [
            write(self.memory, to.memory != cur.memory, to.memory),
            swap,
            write(self.high, to.high != cur.high, to.high),
        ]
    }

    pub(crate) fn set(&self, s: &mut Snapshot, w: &Write) {
        match w.file {
            f if f == self.memory => s.memory = w.value,
            f if f == self.swap => s.swap_file = Some(w.value),
            _ => s.high = w.value,
        }
    }
}

/// Parses a limit file: `max` (v2), or a byte count where v1's "no limit"
/// is any value at or above `PAGE_COUNTER_MAX` pages.
pub fn parse_limit(value: &str) -> Option<Limit> {
    let v = value.trim();
    if v == "max" {
        return Some(Limit::Unlimited);
    }
    let n: u64 = v.parse().ok()?;
    // v1 reports "unlimited" as LONG_MAX rounded down to a page.
    if n >= (i64::MAX as u64) & !4095 {
        Some(Limit::Unlimited)
    } else {
        Some(Limit::Bytes(n))
    }
}

fn read_limit(dir: &CgroupDir, file: &str) -> Result<Limit, CgroupError> {
    let raw = dir.read_value(file)?;
    parse_limit(&raw).ok_or_else(|| CgroupError::Parse {
        path: dir.path().join(file),
        value: raw,
    })
}

/// [`read_limit`], or `None` where the kernel has no such file (v1 without
/// swap accounting, kernels before a file existed).
fn read_limit_if(dir: &CgroupDir, file: &str) -> Result<Option<Limit>, CgroupError> {
    let Some(raw) = dir.read_if(file)? else {
        return Ok(None);
    };
    let raw = raw.trim();
    parse_limit(raw)
        .map(Some)
        .ok_or_else(|| CgroupError::Parse {
            path: dir.path().join(file),
            value: raw.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spellings_of_no_limit() {
        assert_eq!(parse_limit("max\n"), Some(Limit::Unlimited));
        assert_eq!(parse_limit("9223372036854771712\n"), Some(Limit::Unlimited));
        assert_eq!(parse_limit("536870912"), Some(Limit::Bytes(512 << 20)));
        assert_eq!(parse_limit(""), None);
        assert_eq!(parse_limit("-1"), None);
    }
}

/// Against the real kernel: cgroups created below this test process's own
/// memory cgroup (v1 here; the v2 runner covers v2).
#[cfg(test)]
mod real_kernel {
    use super::*;
    use std::path::PathBuf;

    const M: u64 = 1 << 20;

    /// A fresh child cgroup of our own memory cgroup, removed on drop.
    struct Scratch {
        path: PathBuf,
        rel: String,
        mount: PathBuf,
        hierarchy: Hierarchy,
    }

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
            let member = procfs::memory_membership(&own).unwrap();
            let mounts =
                procfs::cgroup_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
            let (m, rel) = procfs::locate(&mounts, &member).unwrap();
            let rel = format!("{rel}/cglimit-unit-{}-{name}", std::process::id());
            let path = m.mount_point.join(&rel);
            std::fs::create_dir_all(&path).unwrap();
            Scratch {
                path,
                rel,
                mount: m.mount_point.clone(),
                hierarchy: member.hierarchy,
            }
        }

        fn open(&self) -> CgroupDir {
            CgroupDir::open(&self.mount, &self.rel, self.hierarchy.clone()).unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.path);
        }
    }

    fn limits(memory: u64, swap: u64, high: u64) -> Limits {
        Limits {
            memory: Limit::Bytes(memory),
            swap: Limit::Bytes(swap),
            high: Some(Limit::Bytes(high)),
        }
    }

    #[test]
    fn lowers_and_raises_in_an_order_the_kernel_accepts() {
        let s = Scratch::new("order");
        let dir = s.open();
        let a = apply(&dir, &limits(64 * M, 0, 32 * M)).unwrap();
        assert_eq!(a.after.memory, Limit::Bytes(64 * M));
        // Raising far above the current memory+swap needs memsw first on v1.
        let a = apply(&dir, &limits(512 * M, 64 * M, 256 * M)).unwrap();
        assert_eq!(a.after.memory, Limit::Bytes(512 * M));
        if dir.hierarchy == Hierarchy::V1 {
            assert_eq!(a.written[0], "memory.memsw.limit_in_bytes");
            assert_eq!(a.after.swap_file, Some(Limit::Bytes(576 * M)));
        }
        // And lowering again needs the limit first.
        let a = apply(&dir, &limits(32 * M, 0, 16 * M)).unwrap();
        assert_eq!(a.after.memory, Limit::Bytes(32 * M));
        if dir.hierarchy == Hierarchy::V1 {
            assert_eq!(a.written[0], "memory.limit_in_bytes");
        }
        // Applying the same limits again writes nothing.
        assert!(
            apply(&dir, &limits(32 * M, 0, 16 * M))
                .unwrap()
                .written
                .is_empty()
        );
    }

    #[test]
    fn a_cgroup_that_vanished_after_open_is_a_clear_error() {
        let s = Scratch::new("vanish");
        let dir = s.open();
        std::fs::remove_dir(&s.path).unwrap();
        let e = apply(&dir, &limits(64 * M, 0, 32 * M)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("memory."), "names the file: {msg}");
        assert!(
            msg.contains("ENOENT") || msg.contains("ENODEV"),
            "names the errno: {msg}"
        );
    }
}
