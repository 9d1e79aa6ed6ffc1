//! The process and the world outside it: where logs go, which privileges
//! the process keeps, the Docker engine's API, systemd's, and the size of
//! a shared `/dev/shm` on the host.

pub mod arena;
pub mod engine;
pub mod events;
pub mod kmsg;
pub mod logger;
pub mod phase;
pub mod privilege;
pub mod shm;
pub mod systemd;
pub mod watchdog;

/// Opens `path` to read, close-on-exec. `openat`, not `open` (which
/// `std::fs::File::open` calls): musl follows an `open` with O_CLOEXEC by
/// an `fcntl` for kernels that ignored the flag, a system call per file on
/// the start path; `openat` passes the flag as it is.
pub fn open_read(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let fd = nix::fcntl::openat(
        nix::fcntl::AT_FDCWD,
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}
