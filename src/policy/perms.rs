//! Who may change what cglimit enforces: policy files (and the wrapper's
//! config file) that someone other than root could edit are refused, as
//! sudo refuses a writable sudoers and sshd (StrictModes) a writable
//! authorized_keys.
//!
//! A policy decides the limits of every container on the host, and the
//! wrapper's config names the binary it executes as root: whoever can write
//! either owns the host. The check covers the file, and every directory on
//! the way to it (after symlinks are resolved), since a writable directory
//! lets its writer replace the file. A directory writable by others is
//! accepted when its sticky bit is set (`/tmp`): there, others cannot rename
//! or remove what they do not own.

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

/// Checks `path` (a policy directory or file) and each policy file in it.
pub fn check_policies(path: &Path) -> Result<(), Unsafe> {
    let mut seen = HashSet::new();
    check(path, &mut seen)?;
    if path.is_dir() {
        let files = super::policy_files(path).map_err(|e| Unsafe::Stat {
            path: path.to_path_buf(),
            error: e.message,
        })?;
        for f in files {
            check(&f, &mut seen)?;
        }
    }
    Ok(())
}

/// Checks one file and the directories that lead to it.
pub fn check_file(path: &Path) -> Result<(), Unsafe> {
    check(path, &mut HashSet::new())
}

fn check(path: &Path, seen: &mut HashSet<PathBuf>) -> Result<(), Unsafe> {
    let stat_err = |p: &Path, e: std::io::Error| Unsafe::Stat {
        path: p.to_path_buf(),
        error: e.to_string(),
    };
    let real = std::fs::canonicalize(path).map_err(|e| match std::fs::read_link(path) {
        Ok(target) => Unsafe::Stat {
            path: path.to_path_buf(),
            error: format!("a symlink to {}: {e}", target.display()),
        },
        Err(_) => stat_err(path, e),
    })?;
    let euid = nix::unistd::geteuid().as_raw();
    let mut leaf = true;
    for p in real.ancestors() {
        if !seen.insert(p.to_path_buf()) && !leaf {
            break;
        }
        let m = std::fs::metadata(p).map_err(|e| stat_err(p, e))?;
        judge(p, m.uid(), m.mode(), m.is_dir(), leaf, euid)?;
        leaf = false;
    }
    Ok(())
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
        check_policies(&d).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = check_policies(&d).unwrap_err();
        assert!(
            matches!(&e, Unsafe::Writable { path, .. } if path.ends_with("a.yaml")),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(check_policies(&d), Err(Unsafe::Writable { .. })));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A symlink is judged by what it points to, and the way there.
        let link = d.join("b.yaml");
        let target_dir = d.join("open");
        std::fs::create_dir_all(&target_dir).unwrap();
        std::fs::set_permissions(&target_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(target_dir.join("t.yaml"), "name: t\n").unwrap();
        std::os::unix::fs::symlink(target_dir.join("t.yaml"), &link).unwrap();
        let e = check_policies(&d).unwrap_err();
        assert!(
            matches!(&e, Unsafe::Writable { path, .. } if path.ends_with("open")),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
