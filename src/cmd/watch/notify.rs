//! The kernel's notifications the watcher waits on: v1's OOM eventfd
//! (`cgroup.event_control`), v2's PSI trigger on `memory.pressure`.

use super::*;

/// v1: an eventfd that the kernel signals on OOM in this cgroup (and on its
/// removal), registered by writing "<eventfd> <fd of memory.oom_control>"
/// to `cgroup.event_control`.
pub(super) fn register_oom(dir: &CgroupDir) -> Result<(EventFd, File), String> {
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(|e| e.to_string())?;
    let f = File::open(dir.path().join("memory.oom_control")).map_err(|e| e.to_string())?;
    dir.write(
        "cgroup.event_control",
        &format!("{} {}", efd.as_fd().as_raw_fd(), f.as_raw_fd()),
    )
    .map_err(|e| e.to_string())?;
    Ok((efd, f))
}

/// v2: a PSI trigger: the kernel signals POLLPRI when tasks of the cgroup
/// stall on memory for `stall` within a one-second window ("some").
pub(super) fn psi_trigger(dir: &CgroupDir, stall: Duration) -> std::io::Result<File> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(dir.path().join("memory.pressure"))?;
    f.write_all(format!("some {} 1000000", stall.as_micros()).as_bytes())?;
    Ok(f)
}
