//! The size of a container's shared `/dev/shm`, which lives on the host.
//!
//! `docker run --ipc shareable --shm-size 1g` mounts a tmpfs on the host
//! (`DATA_ROOT/containers/ID/mounts/shm`) and bind-mounts it into the
//! container; containers started with `--ipc container:ID` bind the same
//! one. A page of a tmpfs is charged to the cgroup of the process that
//! first touched it, and stays charged to that cgroup after the process and
//! its container are gone: containers that join, write and exit leave their
//! pages in a dead cgroup, outside every limit. The only bound on them is
//! the tmpfs's size, which the creator chose. It is held here to the
//! owner's decided memory limit, by a remount that only ever lowers it.

use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::statvfs::FsFlags;

/// Lowers the size of the tmpfs mounted at `path` to `limit` bytes when it
/// is larger; returns the size it had when it was lowered. Remounting
/// needs `CAP_SYS_ADMIN`, which the wrapper raises in its effective set for
/// this one call (it is in the permitted set: [`super::privilege`]).
pub fn hold_size(path: &Path, limit: u64) -> Result<Option<u64>, ShmError> {
    let stat = |source| ShmError::Stat {
        path: path.to_path_buf(),
        source,
    };
    let fs = nix::sys::statfs::statfs(path).map_err(stat)?;
    if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
        return Ok(None);
    }
    let v = nix::sys::statvfs::statvfs(path).map_err(stat)?;
    let size = v.blocks() * v.fragment_size();
    if size <= limit {
        return Ok(None);
    }
    // A remount sets the mount's flags from its argument: keep them (the
    // atime flags, given none, the kernel keeps as they are).
    let mut flags = MsFlags::MS_REMOUNT;
    for (have, set) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if v.flags().contains(have) {
            flags |= set;
        }
    }
    let data = format!("size={limit}");
    let raised = caps::raise(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_ADMIN,
    );
    let r = nix::mount::mount(None::<&str>, path, None::<&str>, flags, Some(data.as_str()));
    if raised.is_ok() {
        let _ = caps::drop(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_ADMIN,
        );
    }
    r.map_err(|source| ShmError::Remount {
        path: path.to_path_buf(),
        limit,
        source,
    })?;
    Ok(Some(size))
}

/// Why a shared memory mount could not be held to a limit.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error("{}: {source}", path.display())]
    Stat {
        path: std::path::PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot lower {} to {limit} bytes: {source}", path.display())]
    Remount {
        path: std::path::PathBuf,
        limit: u64,
        #[source]
        source: nix::Error,
    },
}
