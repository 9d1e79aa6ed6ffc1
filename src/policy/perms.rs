//! Who may change what cglimit enforces: policy files (and the wrapper's
//! config file) that someone other than root could edit are refused, as
//! sudo refuses a writable sudoers and sshd (StrictModes) a writable
//! authorized_keys.
//!
//! A policy decides the limits of every container on the host, and the
//! wrapper's config names the binary it executes as root: whoever can write
//! either owns the host. The check covers the file, and every directory on
//! the way to it as the path is written, and for each symlink on the way
//! the directory that holds it and then the way to its target: whoever can
//! write a directory on the way, or the one holding a symlink, can replace
//! what follows. When every step is root's alone, nobody else can change
//! which files are read between the check and the load. A directory
//! writable by others is accepted when its sticky bit is set (`/tmp`):
//! there, others cannot rename or remove what they do not own.

use std::collections::HashSet;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a file may not be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsafe {
    /// Owned by someone who is neither root nor the user cglimit runs as.
    Owner { path: PathBuf, uid: u32, euid: u32 },
    /// Writable by group or others.
    Writable { path: PathBuf, mode: u32 },
    /// Could not be inspected at all.
    Stat { path: PathBuf, error: String },
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsafe::Owner { path, uid, euid } => write!(
                f,
                "{} is owned by uid {uid}, not by root{}: anyone who owns it can change the limits of every container (chown root, or pass --insecure-policy-perms)",
                path.display(),
                if *euid == 0 {
                    String::new()
                } else {
                    format!(" or uid {euid}")
                }
            ),
            Unsafe::Writable { path, mode } => write!(
                f,
                "{} is writable by {} (mode {:04o}): anyone who can write it can change the limits of every container (chmod go-w, or pass --insecure-policy-perms)",
                path.display(),
                match (mode & 0o020 != 0, mode & 0o002 != 0) {
                    (true, true) => "group and others",
                    (true, false) => "its group",
                    _ => "others",
                },
                mode & 0o7777
            ),
            Unsafe::Stat { path, error } => write!(f, "{}: cannot check: {error}", path.display()),
        }
    }
}

impl std::error::Error for Unsafe {}

/// Checks one file and the directories that lead to it.
pub fn check_file(path: &Path) -> Result<(), Unsafe> {
    check_path(path).map(|_| ())
}

/// Checks `path` as it is written, every directory on the way and every
/// symlink's, and returns where it leads (a path without symlinks).
pub(super) fn check_path(path: &Path) -> Result<PathBuf, Unsafe> {
    let euid = nix::unistd::geteuid().as_raw();
    walk(path, &mut HashSet::new(), euid, &mut 0)
}

/// Judges an open file or directory, named `path` in the message, as the
/// last step of a path (a sticky bit does not excuse it).
pub(super) fn judge_meta(path: &Path, m: &std::fs::Metadata, euid: u32) -> Result<(), Unsafe> {
    judge(path, m.uid(), m.mode(), m.is_dir(), true, euid)
}

/// As the kernel bounds symlink resolution.
const MAX_LINKS: u32 = 40;

/// Checks `path` step by step as it is written, resolving each symlink
/// itself (after checking the directory that holds it, which is on the
/// way) and walking its target the same way; returns the real path.
fn walk(
    path: &Path,
    seen: &mut HashSet<PathBuf>,
    euid: u32,
    links: &mut u32,
) -> Result<PathBuf, Unsafe> {
    use std::path::Component;
    let stat_err = |p: &Path, e: std::io::Error| Unsafe::Stat {
        path: p.to_path_buf(),
        error: e.to_string(),
    };
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| stat_err(path, e))?
            .join(path)
    };
    let mut cur = PathBuf::from("/");
    if seen.insert(cur.clone()) {
        let m = std::fs::metadata(&cur).map_err(|e| stat_err(&cur, e))?;
        judge(&cur, m.uid(), m.mode(), true, false, euid)?;
    }
    let parts: Vec<Component> = abs.components().collect();
    for (i, part) in parts.iter().enumerate() {
        let name = match part {
            Component::Normal(n) => n,
            Component::ParentDir => {
                cur.pop();
                continue;
            }
            _ => continue,
        };
        let leaf = i == parts.len() - 1;
        let next = cur.join(name);
        let m = std::fs::symlink_metadata(&next).map_err(|e| stat_err(&next, e))?;
        if m.file_type().is_symlink() {
            *links += 1;
            if *links > MAX_LINKS {
                return Err(stat_err(
                    &next,
                    std::io::Error::other("too many levels of symbolic links"),
                ));
            }
            let target = std::fs::read_link(&next).map_err(|e| stat_err(&next, e))?;
            // The link is as safe as `cur`, already judged; its target is
            // walked as written, from the link's directory.
            cur = walk(&cur.join(&target), seen, euid, links).map_err(|e| match e {
                Unsafe::Stat { path, error } if path == cur.join(&target) => Unsafe::Stat {
                    path: next.clone(),
                    error: format!("a symlink to {}: {error}", target.display()),
                },
                e => e,
            })?;
            if leaf {
                // The target's own check judged it as a leaf.
                return Ok(cur);
            }
            continue;
        }
        if leaf || seen.insert(next.clone()) {
            judge(&next, m.uid(), m.mode(), m.is_dir(), leaf, euid)?;
        }
        cur = next;
    }
    Ok(cur)
}

/// The rule itself, apart from the filesystem so it can be tested for any
/// owner and mode.
fn judge(
    path: &Path,
    uid: u32,
    mode: u32,
    is_dir: bool,
    leaf: bool,
    euid: u32,
) -> Result<(), Unsafe> {
    if uid != 0 && uid != euid {
        return Err(Unsafe::Owner {
            path: path.to_path_buf(),
            uid,
            euid,
        });
    }
    let sticky = is_dir && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && (leaf || !sticky) {
        return Err(Unsafe::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_rule() {
        let p = Path::new("/x");
        assert!(judge(p, 0, 0o100644, false, true, 0).is_ok());
        assert!(judge(p, 1000, 0o100600, false, true, 1000).is_ok());
        assert!(matches!(
            judge(p, 1000, 0o100644, false, true, 0),
            Err(Unsafe::Owner { uid: 1000, .. })
        ));
        assert!(matches!(
            judge(p, 0, 0o100664, false, true, 0),
            Err(Unsafe::Writable { .. })
        ));
        assert!(matches!(
            judge(p, 0, 0o100646, false, true, 0),
            Err(Unsafe::Writable { .. })
        ));
        // /tmp: world-writable but sticky, fine on the way; never as the leaf.
        assert!(judge(p, 0, 0o41777, true, false, 0).is_ok());
        assert!(judge(p, 0, 0o41777, true, true, 0).is_err());
        assert!(judge(p, 0, 0o40777, true, false, 0).is_err());
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = judge(Path::new("/etc/p.yaml"), 0, 0o100664, false, true, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/p.yaml is writable by its group (mode 0664): anyone who can write it can change the limits of every container (chmod go-w, or pass --insecure-policy-perms)"
        );
        let e = judge(Path::new("/etc/p.yaml"), 1000, 0o100644, false, true, 0).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/etc/p.yaml is owned by uid 1000, not by root:"),
            "{e}"
        );
    }

    #[test]
    fn real_files_and_directories() {
        let d = std::env::temp_dir().join(format!("cglimit-perms-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = d.join("a.yaml");
        std::fs::write(&f, "name: a\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        crate::policy::files::check_policies(&d).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = crate::policy::files::check_policies(&d).unwrap_err();
        assert!(
            matches!(&e, Unsafe::Writable { path, .. } if path.ends_with("a.yaml")),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(
            crate::policy::files::check_policies(&d),
            Err(Unsafe::Writable { .. })
        ));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A symlink is judged by the directory holding it, what it points
        // to, and the way there.
        let link = d.join("b.yaml");
        let target_dir = d.join("open");
        std::fs::create_dir_all(&target_dir).unwrap();
        std::fs::set_permissions(&target_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(target_dir.join("t.yaml"), "name: t\n").unwrap();
        // Absolute, or leading out of the directory: refused, whatever
        // the target.
        std::os::unix::fs::symlink(target_dir.join("t.yaml"), &link).unwrap();
        let e = crate::policy::files::check_policies(&d).unwrap_err();
        assert!(e.to_string().contains("a symlink leading out of"), "{e}");
        std::fs::remove_file(&link).unwrap();
        let out = format!("cglimit-out-{}.yaml", std::process::id());
        let out_path = d.parent().unwrap().join(&out);
        std::fs::write(&out_path, "name: o\n").unwrap();
        std::os::unix::fs::symlink(format!("../{out}"), &link).unwrap();
        let e = crate::policy::files::check_policies(&d).unwrap_err();
        std::fs::remove_file(&out_path).unwrap();
        assert!(e.to_string().contains("a symlink leading out of"), "{e}");
        std::fs::remove_file(&link).unwrap();
        // Relative and inside, through a directory others can write.
        std::os::unix::fs::symlink("open/t.yaml", &link).unwrap();
        let e = crate::policy::files::check_policies(&d).unwrap_err();
        assert!(
            matches!(&e, Unsafe::Writable { path, .. } if path.ends_with("open")),
            "{e}"
        );
        std::fs::remove_file(&link).unwrap();
        // A directory reached through a symlink held in a directory that
        // others can write: the link can be swapped for another.
        let safe = d.join("safe");
        std::fs::create_dir_all(&safe).unwrap();
        std::fs::set_permissions(&safe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(safe.join("p.yaml"), "name: p\n").unwrap();
        std::fs::set_permissions(safe.join("p.yaml"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        crate::policy::files::check_policies(&safe).unwrap();
        let via = target_dir.join("via");
        std::os::unix::fs::symlink(&safe, &via).unwrap();
        let e = crate::policy::files::check_policies(&via).unwrap_err();
        assert!(
            matches!(&e, Unsafe::Writable { path, .. } if path.ends_with("open")),
            "{e}"
        );
        // The same link held in a safe directory is fine, and so is a
        // relative link inside the policy directory (a ConfigMap's layout).
        let good = d.join("good");
        std::os::unix::fs::symlink("safe", &good).unwrap();
        crate::policy::files::check_policies(&good).unwrap();
        std::fs::create_dir_all(safe.join("..data")).unwrap();
        std::fs::set_permissions(safe.join("..data"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::rename(safe.join("p.yaml"), safe.join("..data/p.yaml")).unwrap();
        std::os::unix::fs::symlink("..data/p.yaml", safe.join("p.yaml")).unwrap();
        crate::policy::files::check_policies(&good).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
