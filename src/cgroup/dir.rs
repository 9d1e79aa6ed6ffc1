//! A cgroup directory opened safely: beneath its mount, without following
//! symlinks, and only on a cgroup filesystem.
//!
//! The path comes from `/proc/<pid>/cgroup`, which a container's processes
//! influence (they can create child cgroups where delegated); resolving it
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from the mount's
//! own descriptor keeps every open inside the cgroup mount.

use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::Mode;
use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, fstatfs};

use super::procfs::Hierarchy;

/// A failure touching a cgroup, with the file and the errno.
#[derive(Debug)]
pub enum CgroupError {
    /// The container's process is gone (it exited before limits were set).
    ProcessGone { pid: i32 },
    /// The process is in the hierarchy's root cgroup, which has no limits.
    RootCgroup { pid: i32 },
    /// `/proc/<pid>/cgroup` has no memory cgroup line.
    NoMemoryController { pid: i32 },
    /// The container's process shares its memory cgroup with processes
    /// outside the container: limits there would bind them too.
    Shared {
        pid: i32,
        cgroup: String,
        others: Vec<(i32, String)>,
    },
    /// No mount of the hierarchy shows the process's cgroup.
    NotMounted { path: String },
    /// The directory is not on a cgroup filesystem.
    NotCgroupFs { path: PathBuf },
    Io {
        path: PathBuf,
        op: &'static str,
        errno: Errno,
    },
    /// A value read from a cgroup file did not parse.
    Parse { path: PathBuf, value: String },
    /// Some writes failed and the previous values were put back.
    RolledBack {
        cause: Box<CgroupError>,
        restored: Vec<String>,
    },
    /// Some writes failed and restoring failed too: the cgroup may be
    /// half-applied. Only possible when the kernel refuses the old values.
    RollbackFailed {
        cause: Box<CgroupError>,
        restore_error: Box<CgroupError>,
    },
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgroupError::ProcessGone { pid } => {
                write!(
                    f,
                    "container process {pid} has exited; its cgroup cannot be limited"
                )
            }
            CgroupError::RootCgroup { pid } => write!(
                f,
                "process {pid} is in the root memory cgroup, which cannot be limited: is it a container's process?"
            ),
            CgroupError::NoMemoryController { pid } => write!(
                f,
                "process {pid} is in no memory cgroup (no memory controller line in /proc/{pid}/cgroup)"
            ),
            CgroupError::Shared {
                pid,
                cgroup,
                others,
            } => {
                let named: Vec<String> = others
                    .iter()
                    .take(3)
                    .map(|(p, comm)| format!("{p} ({comm})"))
                    .collect();
                write!(
                    f,
                    "memory cgroup {cgroup} of container process {pid} also holds {} other process{}: {}{}; its limits would bind them too (a runtime gives each container a cgroup of its own: is the container run with cgroups disabled, or a cgroupsPath shared with others?)",
                    others.len(),
                    if others.len() == 1 { "" } else { "es" },
                    named.join(", "),
                    if others.len() > 3 { ", …" } else { "" }
                )
            }
            CgroupError::NotMounted { path } => write!(
                f,
                "memory cgroup {path} is not reachable through any cgroup mount in this mount namespace"
            ),
            CgroupError::NotCgroupFs { path } => {
                write!(f, "{} is not on a cgroup filesystem", path.display())
            }
            CgroupError::Io { path, op, errno } => write!(
                f,
                "cannot {op} {}: {} ({:?})",
                path.display(),
                errno.desc(),
                errno
            ),
            CgroupError::Parse { path, value } => {
                write!(f, "unexpected value {value:?} in {}", path.display())
            }
            CgroupError::RolledBack { cause, restored } => {
                write!(
                    f,
                    "{cause}; nothing was changed (restored {})",
                    restored.join(", ")
                )
            }
            CgroupError::RollbackFailed {
                cause,
                restore_error,
            } => write!(
                f,
                "{cause}; restoring the previous limits also failed: {restore_error}"
            ),
        }
    }
}

impl std::error::Error for CgroupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CgroupError::Io { errno, .. } => Some(errno),
            CgroupError::RolledBack { cause, .. } | CgroupError::RollbackFailed { cause, .. } => {
                Some(cause.as_ref())
            }
            _ => None,
        }
    }
}

/// An open cgroup directory.
#[derive(Debug)]
pub struct CgroupDir {
    fd: OwnedFd,
    path: PathBuf,
    pub hierarchy: Hierarchy,
}

const RESOLVE: ResolveFlag = ResolveFlag::RESOLVE_BENEATH
    .union(ResolveFlag::RESOLVE_NO_SYMLINKS)
    .union(ResolveFlag::RESOLVE_NO_MAGICLINKS)
    .union(ResolveFlag::RESOLVE_NO_XDEV);

impl CgroupDir {
    /// Opens `rel` beneath the cgroup mount at `mount_point`.
    pub fn open(mount_point: &Path, rel: &str, hierarchy: Hierarchy) -> Result<Self, CgroupError> {
        let path = mount_point.join(rel);
        let io = |op, errno| CgroupError::Io {
            path: path.clone(),
            op,
            errno,
        };
        // `openat`: musl's `open` adds an `fcntl` (crate::sys::open_read).
        let mount = openat(
            nix::fcntl::AT_FDCWD,
            mount_point,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("open", e))?;
        let fd = if rel.is_empty() {
            mount
        } else {
            beneath(&mount, rel, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| io("open", e))?
        };
        let fs = fstatfs(&fd).map_err(|e| io("statfs", e))?;
        let want = match hierarchy {
            Hierarchy::V1 => CGROUP_SUPER_MAGIC,
            Hierarchy::V2 => CGROUP2_SUPER_MAGIC,
        };
        if fs.filesystem_type() != want {
            return Err(CgroupError::NotCgroupFs { path });
        }
        Ok(CgroupDir {
            fd,
            path,
            hierarchy,
        })
    }

    /// A child cgroup, opened beneath this one (no mount table lookup).
    pub fn child(&self, name: &str) -> Result<Self, CgroupError> {
        let path = self.path.join(name);
        let fd = beneath(&self.fd, name, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|errno| {
            CgroupError::Io {
                path: path.clone(),
                op: "open",
                errno,
            }
        })?;
        Ok(CgroupDir {
            fd,
            path,
            hierarchy: self.hierarchy.clone(),
        })
    }

    /// A directory of files laid out like a cgroup, for unit tests of the
    /// v2 logic on hosts whose memory controller is v1 (no fs check).
    #[cfg(test)]
    pub fn fake(dir: &Path, hierarchy: Hierarchy) -> Self {
        let fd = openat(
            nix::fcntl::AT_FDCWD,
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        CgroupDir {
            fd,
            path: dir.to_path_buf(),
            hierarchy,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Whether the kernel offers this interface file here (e.g. `memory.memsw.*`
    /// only with swap accounting).
    pub fn has(&self, name: &str) -> bool {
        beneath(&self.fd, name, OFlag::O_PATH).is_ok()
    }

    pub fn read(&self, name: &str) -> Result<String, CgroupError> {
        self.read_if(name)?.ok_or_else(|| CgroupError::Io {
            path: self.file_path(name),
            op: "open",
            errno: Errno::ENOENT,
        })
    }

    /// [`Self::read`], or `None` where the kernel has no such file (one
    /// open where [`Self::has`] and a read would take two).
    pub fn read_if(&self, name: &str) -> Result<Option<String>, CgroupError> {
        let io = |op, errno| CgroupError::Io {
            path: self.file_path(name),
            op,
            errno,
        };
        let fd = match beneath(&self.fd, name, OFlag::O_RDONLY) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(io("open", e)),
        };
        let f = std::fs::File::from(fd);
        // v1's `memory.kmem.slabinfo` printed a record per slab cache
        // (before 5.9).
        if name.starts_with("memory.") && name != "memory.kmem.slabinfo" {
            super::procfs::read_record_from(f)
        } else {
            super::procfs::read_from(f)
        }
        .map(Some)
        .map_err(|e| io("read", errno_of(&e)))
    }

    /// Writes `value` in one `write(2)`: cgroup files take a whole value
    /// per write and report the kernel's verdict as its errno.
    pub fn write(&self, name: &str, value: &str) -> Result<(), CgroupError> {
        let io = |op, errno| CgroupError::Io {
            path: self.file_path(name),
            op,
            errno,
        };
        let fd =
            beneath(&self.fd, name, OFlag::O_WRONLY | OFlag::O_TRUNC).map_err(|e| io("open", e))?;
        let mut f = std::fs::File::from(fd);
        match f.write(value.as_bytes()) {
            Ok(n) if n == value.len() => Ok(()),
            Ok(_) => Err(io("write", Errno::EIO)),
            Err(e) => Err(io("write", errno_of(&e))),
        }
    }

    /// Opens a file for repeated reads (`pread` at offset 0 re-reads a
    /// cgroup file's current value without another open).
    pub fn open_read(&self, name: &str) -> Result<std::fs::File, CgroupError> {
        beneath(&self.fd, name, OFlag::O_RDONLY)
            .map(std::fs::File::from)
            .map_err(|errno| CgroupError::Io {
                path: self.file_path(name),
                op: "open",
                errno,
            })
    }

    /// Reads a file holding one number (or `max`).
    pub fn read_value(&self, name: &str) -> Result<String, CgroupError> {
        Ok(self.read(name)?.trim().to_string())
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32))
}

/// Opens `rel` beneath `dir`, never leaving it and never following a link.
/// Falls back to component-wise `O_NOFOLLOW` opens on kernels without
/// `openat2` (before 5.6).
fn beneath<Fd: AsFd>(dir: &Fd, rel: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    if rel.split('/').any(|c| c == "..") {
        return Err(Errno::EXDEV);
    }
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(RESOLVE);
    match openat2(dir, rel, how) {
        Err(Errno::ENOSYS) => {}
        other => return other,
    }
    let mut parts = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .peekable();
    let mut cur: Option<OwnedFd> = None;
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        let f = if last {
            flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW
        } else {
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW
        };
        let next = match &cur {
            Some(fd) => openat(fd, part, f, Mode::empty()),
            None => openat(dir, part, f, Mode::empty()),
        }?;
        cur = Some(next);
    }
    cur.ok_or(Errno::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::open;

    #[test]
    fn refuses_a_non_cgroup_directory() {
        let tmp = std::env::temp_dir();
        let e = CgroupDir::open(&tmp, "", Hierarchy::V1).unwrap_err();
        assert!(matches!(e, CgroupError::NotCgroupFs { .. }), "{e}");
    }

    #[test]
    fn never_follows_symlinks_or_dotdot() {
        let base = std::env::temp_dir().join(format!("cglimit-beneath-{}", std::process::id()));
        std::fs::create_dir_all(base.join("d")).unwrap();
        std::fs::write(base.join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", base.join("link")).unwrap();
        let dir = open(&base, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        assert!(beneath(&dir, "d/f", OFlag::O_RDONLY).is_ok());
        assert!(beneath(&dir, "link/passwd", OFlag::O_RDONLY).is_err());
        assert!(beneath(&dir, "link", OFlag::O_PATH | OFlag::O_DIRECTORY).is_err());
        assert!(beneath(&dir, "../etc/passwd", OFlag::O_RDONLY).is_err());
        assert!(beneath(&dir, "/etc/passwd", OFlag::O_RDONLY).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A `memory.*` file read in one `read` (no end-of-file read) is read
    /// whole: every file of this process's memory cgroup, against the
    /// same file read to the end, line by line and key by key (the values
    /// move between the two reads).
    #[test]
    fn memory_files_read_whole_in_one_read() {
        let Ok((dir, _)) = crate::cgroup::for_pid(std::process::id() as i32) else {
            eprintln!("skipped: this process has no memory cgroup of its own");
            return;
        };
        let shape = |t: &str| -> Vec<String> {
            t.lines()
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .collect()
        };
        let mut files = 0;
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if !name.starts_with("memory.") {
                continue;
            }
            let Ok(whole) = std::fs::read_to_string(dir.path().join(&name)) else {
                continue; // write-only (force_empty, pressure_level)
            };
            let one = dir.read(&name).unwrap();
            assert_eq!(one.ends_with('\n'), whole.ends_with('\n'), "{name}");
            if name.ends_with(".stat") || name.ends_with("_control") || name.ends_with("events") {
                assert_eq!(shape(&one), shape(&whole), "{name}");
            } else {
                assert_eq!(one.lines().count(), whole.lines().count(), "{name}");
            }
            files += 1;
        }
        assert!(
            files > 5,
            "{files} memory files in {}",
            dir.path().display()
        );
    }
}
