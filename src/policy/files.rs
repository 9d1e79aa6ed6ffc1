//! The policy files, opened once: the directory (or the one file) a policy
//! path names, and every policy file in it, as descriptors that the
//! permission check, the cache's fingerprint and the parser all use.
//!
//! Checking a path and then reading it by name leaves a window in which
//! what is read is not what was checked. Here the path is checked as it is
//! written ([`super::perms`]), the directory is opened with no symlink
//! allowed on the way, its owner and mode are judged on the descriptor, and
//! each policy file is opened beneath it (`openat2` with
//! `RESOLVE_BENEATH`: a relative link inside the directory is followed; a
//! link leading out of it, or an absolute one, is refused) and judged on
//! its own descriptor. What is judged is what is read.
//!
//! A Kubernetes ConfigMap volume is a farm of links: `NAME -> ..data/NAME`,
//! `..data -> ..TIMESTAMP/`, and an update writes a new `..TIMESTAMP/`,
//! then swaps `..data` in one rename. Following each name's link on its
//! own could read one file before a swap and the next after it; so when
//! the directory holds `..data`, it is opened once and every file is read
//! from it: one version of the set, whole.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::Mode;

use super::PolicyError;
use super::perms::{self, Unsafe};

/// One policy file, open.
pub struct PolicyFile {
    /// The path it is named by in messages: the policy path joined with
    /// the file's name.
    pub path: PathBuf,
    pub file: File,
    pub meta: Metadata,
}

impl PolicyFile {
    /// The whole file, read through its descriptor.
    pub fn text(&self) -> Result<String, PolicyError> {
        let mut s = String::new();
        (&self.file)
            .read_to_string(&mut s)
            .map_err(|e| read_error(&self.path, &e))?;
        Ok(s)
    }
}

/// The policies a path names, open.
pub struct Opened {
    pub path: PathBuf,
    /// The directory's (or the one file's) metadata, from its descriptor.
    pub meta: Metadata,
    /// The policy files, sorted by name; for a path naming one file, that
    /// file.
    pub files: Vec<PolicyFile>,
}

/// Why the policies could not be opened.
#[derive(Debug)]
pub enum OpenError {
    Unsafe(Unsafe),
    Io(PolicyError),
}

impl From<OpenError> for PolicyError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Io(e) => e,
            OpenError::Unsafe(e) => PolicyError {
                file: match &e {
                    Unsafe::Owner { path, .. }
                    | Unsafe::Writable { path, .. }
                    | Unsafe::Stat { path, .. } => path.clone(),
                },
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("untrusted policy: {e}"),
            },
        }
    }
}

/// Whether a directory entry is a policy file: `*.yaml` or `*.yml`, not
/// hidden (editors' swap files, a ConfigMap's `..data`).
pub fn is_policy_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// Opens the policies at `path`. With `check`, refuses a path, directory
/// or file that someone other than root (or this user) could change, and
/// any policy file whose name leads out of the directory.
pub fn open(path: &Path, check: bool) -> Result<Opened, OpenError> {
    let euid = nix::unistd::geteuid().as_raw();
    let top = if check {
        let real = perms::check_path(path).map_err(OpenError::Unsafe)?;
        open_real(&real).map_err(|e| OpenError::Io(read_error(path, &e.into())))?
    } else {
        File::open(path).map_err(|e| OpenError::Io(read_error(path, &e)))?
    };
    let meta = top
        .metadata()
        .map_err(|e| OpenError::Io(read_error(path, &e)))?;
    if check {
        perms::judge_meta(path, &meta, euid).map_err(OpenError::Unsafe)?;
    }
    if !meta.is_dir() {
        let file = PolicyFile {
            path: path.to_path_buf(),
            file: top,
            meta: meta.clone(),
        };
        regular(&file)?;
        return Ok(Opened {
            path: path.to_path_buf(),
            meta,
            files: vec![file],
        });
    }
    let top = match configmap_data(&top, check) {
        Some(data) => {
            if check {
                let data_meta = data
                    .metadata()
                    .map_err(|e| OpenError::Io(read_error(path, &e)))?;
                perms::judge_meta(&path.join(CONFIGMAP_DATA), &data_meta, euid)
                    .map_err(OpenError::Unsafe)?;
            }
            data
        }
        None => top,
    };
    let mut names = list(&top).map_err(|e| OpenError::Io(read_error(path, &e.into())))?;
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    for (name, link) in names {
        let fpath = path.join(&name);
        let fd = open_entry(&top, &name, check).map_err(|e| match e {
            Errno::ELOOP | Errno::EXDEV if check => OpenError::Unsafe(Unsafe::Stat {
                path: fpath.clone(),
                error: format!(
                    "a symlink leading out of {} (or an absolute one): only relative links inside the policy directory are followed; copy the file in",
                    path.display()
                ),
            }),
            e => {
                let mut err = read_error(&fpath, &e.into());
                if link && let Ok(to) = nix::fcntl::readlinkat(top.as_fd(), name.as_str()) {
                    err.message = format!("{} (a symlink to {})", err.message, to.to_string_lossy());
                }
                OpenError::Io(err)
            }
        })?;
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| OpenError::Io(read_error(&fpath, &e)))?;
        let file = PolicyFile {
            path: fpath,
            file,
            meta,
        };
        regular(&file)?;
        if check {
            if link {
                // The link stays inside the directory, but directories on
                // its way might be others' to change: the way is judged as
                // it is written, as for the policy path itself.
                perms::check_path(&file.path).map_err(OpenError::Unsafe)?;
            }
            perms::judge_meta(&file.path, &file.meta, euid).map_err(OpenError::Unsafe)?;
        }
        files.push(file);
    }
    Ok(Opened {
        path: path.to_path_buf(),
        meta,
        files,
    })
}

/// The entry of a Kubernetes ConfigMap volume that points at the current
/// version of its files.
pub const CONFIGMAP_DATA: &str = "..data";

/// `dir/..data`, opened once (beneath `dir` when checked), when `dir` is a
/// ConfigMap volume.
fn configmap_data(dir: &File, check: bool) -> Option<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_DIRECTORY;
    let fd = if check {
        let how = OpenHow::new()
            .flags(flags)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(dir.as_fd(), CONFIGMAP_DATA, how) {
            // Without openat2 the link is not followed: the files' own
            // links are, one by one.
            Err(Errno::ENOSYS) => return None,
            other => other.ok()?,
        }
    } else {
        openat(dir.as_fd(), CONFIGMAP_DATA, flags, Mode::empty()).ok()?
    };
    Some(File::from(fd))
}

/// Opens a path just checked and found free of symlinks, refusing one that
/// appeared since. Kernels without `openat2` (before 5.6) get the last
/// component's `O_NOFOLLOW` only; the check found every directory on the
/// way root's alone.
fn open_real(real: &Path) -> Result<File, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(AT_FDCWD, real, how) {
        Err(Errno::ENOSYS) => nix::fcntl::open(real, flags, Mode::empty())?,
        other => other?,
    };
    Ok(File::from(fd))
}

/// Opens one entry of the policy directory, never leaving it when checked.
/// `O_NONBLOCK`: a FIFO named `x.yaml` must not hang a container's start.
fn open_entry(dir: &File, name: &str, check: bool) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    if !check {
        return openat(dir.as_fd(), name, flags, Mode::empty());
    }
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(dir.as_fd(), name, how) {
        Err(Errno::ENOSYS) => openat(dir.as_fd(), name, flags | OFlag::O_NOFOLLOW, Mode::empty()),
        other => other,
    }
}

/// The policy names in the open directory `dir`, read through it, each
/// with whether it is a symlink. `getdents64` into a buffer on the stack:
/// `opendir` would reopen the directory, allocate its buffer and rewind,
/// seven more system calls on every hook's way. `dir` is left at its end.
fn list(dir: &File) -> Result<Vec<(String, bool)>, Errno> {
    use std::os::fd::AsRawFd;
    const DT_UNKNOWN: u8 = 0;
    const DT_LNK: u8 = 10;
    let mut names = Vec::new();
    let mut buf = [0u64; 512];
    loop {
        // SAFETY: the kernel writes at most `len` bytes into `buf`.
        let n = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                std::mem::size_of_val(&buf),
            )
        };
        let n = usize::try_from(Errno::result(n)?).unwrap_or(0);
        if n == 0 {
            return Ok(names);
        }
        // SAFETY: `buf` is a plain buffer of `n` initialised bytes.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let mut at = 0;
        // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
        while at + 19 < n {
            let reclen = usize::from(u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]));
            let Some(rec) = bytes.get(at..at + reclen).filter(|_| reclen > 19) else {
                return Err(Errno::EIO);
            };
            at += reclen;
            let raw = &rec[19..];
            let name = &raw[..raw.iter().position(|b| *b == 0).unwrap_or(raw.len())];
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            if !is_policy_name(name) {
                continue;
            }
            let link = match rec[18] {
                DT_LNK => true,
                // A filesystem that does not say: ask.
                DT_UNKNOWN => nix::sys::stat::fstatat(
                    dir.as_fd(),
                    name,
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .is_ok_and(|s| {
                    s.st_mode & nix::sys::stat::SFlag::S_IFMT.bits()
                        == nix::sys::stat::SFlag::S_IFLNK.bits()
                }),
                _ => false,
            };
            names.push((name.to_string(), link));
        }
    }
}

/// Only regular files are read: a FIFO or a device is refused by name.
fn regular(f: &PolicyFile) -> Result<(), OpenError> {
    if f.meta.is_file() {
        return Ok(());
    }
    Err(OpenError::Io(PolicyError {
        file: f.path.clone(),
        line: 0,
        column: 0,
        field: String::new(),
        message: "not a regular file".to_string(),
    }))
}

fn read_error(file: &Path, e: &std::io::Error) -> PolicyError {
    PolicyError {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!("cannot read: {e}"),
    }
}

/// Checks `path` (a policy directory or file) and each policy file in it,
/// on the descriptors they are read through ([`open`]).
pub fn check_policies(path: &Path) -> Result<(), Unsafe> {
    match open(path, true) {
        Ok(_) => Ok(()),
        Err(OpenError::Unsafe(e)) => Err(e),
        Err(OpenError::Io(e)) => Err(Unsafe::Stat {
            path: e.file,
            error: e.message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cglimit-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn what_is_judged_is_what_is_read() {
        let d = dir("same");
        std::fs::write(d.join("a.yaml"), "name: checked\n").unwrap();
        let opened = open(&d, true).ok().unwrap();
        // Replaced after the check by a file anyone could have written:
        // the load still reads the file that was judged.
        std::fs::remove_file(d.join("a.yaml")).unwrap();
        std::fs::write(d.join("a.yaml"), "name: swapped\n").unwrap();
        std::fs::set_permissions(d.join("a.yaml"), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(opened.files.len(), 1);
        assert_eq!(opened.files[0].text().unwrap(), "name: checked\n");
        assert!(matches!(open(&d, true), Err(OpenError::Unsafe(_))));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_regular_files_and_a_fifo_does_not_hang() {
        let d = dir("fifo");
        nix::unistd::mkfifo(&d.join("f.yaml"), Mode::from_bits_truncate(0o644)).unwrap();
        let e = open(&d, true).err().unwrap();
        let e = PolicyError::from(e);
        assert_eq!(e.message, "not a regular file");
        assert!(e.file.ends_with("f.yaml"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_configmap_layout_is_read() {
        // kubelet's layout: files are links into `..data`, itself a link
        // to a timestamped directory; hidden names are not policies.
        let d = dir("cm");
        let ts = d.join("..2026_11_30_18_00_00.1");
        std::fs::create_dir(&ts).unwrap();
        std::fs::set_permissions(&ts, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(ts.join("p.yaml"), "name: p\n").unwrap();
        std::os::unix::fs::symlink("..2026_11_30_18_00_00.1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/p.yaml", d.join("p.yaml")).unwrap();
        let opened = open(&d, true).ok().unwrap();
        assert_eq!(opened.files.len(), 1);
        assert_eq!(opened.files[0].path, d.join("p.yaml"));
        assert_eq!(opened.files[0].text().unwrap(), "name: p\n");

        // Mid-update, as kubelet leaves it between its steps: the new
        // version's link `q.yaml` exists, `..data` still points at the old
        // version. One version is read, whole: the old one.
        let v2 = d.join("..2026_11_30_18_05_00.2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::set_permissions(&v2, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(v2.join("p.yaml"), "name: p2\n").unwrap();
        std::fs::write(v2.join("q.yaml"), "name: q2\n").unwrap();
        std::os::unix::fs::symlink("..data/q.yaml", d.join("q.yaml")).unwrap();
        let texts =
            |o: &Opened| -> Vec<String> { o.files.iter().map(|f| f.text().unwrap()).collect() };
        assert_eq!(texts(&open(&d, true).ok().unwrap()), ["name: p\n"]);
        // The swap: one rename, then both files of the new version.
        std::os::unix::fs::symlink("..2026_11_30_18_05_00.2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        let opened = open(&d, true).ok().unwrap();
        assert_eq!(texts(&opened), ["name: p2\n", "name: q2\n"]);
        assert_eq!(opened.files[1].path, d.join("q.yaml"));
        // A version directory others could write is refused.
        std::fs::set_permissions(&v2, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(open(&d, true), Err(OpenError::Unsafe(_))));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
