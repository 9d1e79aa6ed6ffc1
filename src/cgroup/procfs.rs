//! Parsers for `/proc/<pid>/cgroup` and `/proc/self/mountinfo`: where a
//! process's memory cgroup is, and where that hierarchy is mounted.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads a kernel file (procfs, cgroupfs). They report a size of 0, so
/// `std::fs::read_to_string` would `fstat` and `lseek` for a size hint and
/// then probe with small reads; these files are short, so they are read
/// into a buffer on the stack (one `read` and the end-of-file one) and the
/// heap holds only the text.
pub fn read(path: impl AsRef<Path>) -> std::io::Result<String> {
    read_from(crate::sys::open_read(path.as_ref())?)
}

/// [`read`] for a file already open.
pub fn read_from(f: std::fs::File) -> std::io::Result<String> {
    read_to_end(f, false)
}

/// [`read_from`] for a kernel file that prints one record: a cgroup's
/// `memory.*` files (a value, or `memory.stat`'s lines from one call).
/// The kernel's `seq_file` then fills a read with all of it, or with as
/// much as fits, so a read that returns less than asked for has reached
/// the end, and the read that would return 0 is not made. (A file of many
/// records, `cgroup.procs` or a mount table, may stop short of a record
/// that does not fit the kernel's page: those are read to the end.)
pub fn read_record_from(f: std::fs::File) -> std::io::Result<String> {
    read_to_end(f, true)
}

fn read_to_end(f: std::fs::File, one_record: bool) -> std::io::Result<String> {
    let mut f = f;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    loop {
        if n == buf.len() {
            // Longer than a page (a mount table, a long cgroup.procs).
            let mut v = buf.to_vec();
            f.read_to_end(&mut v)?;
            return String::from_utf8(v).map_err(|_| invalid_text());
        }
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) if one_record && n + k < buf.len() => {
                n += k;
                break;
            }
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    std::str::from_utf8(&buf[..n])
        .map(str::to_string)
        .map_err(|_| invalid_text())
}

fn invalid_text() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "stream did not contain valid UTF-8",
    )
}

/// A cgroup hierarchy that carries the memory controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// A v1 hierarchy with `memory` in its controller list.
    V1,
    /// The unified (v2) hierarchy.
    V2,
}

/// The memory cgroup path of a process, as its `/proc/<pid>/cgroup` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub hierarchy: Hierarchy,
    pub path: String,
}

/// Finds the process's memory cgroup: the v1 `memory` line when there is
/// one (hybrid hosts keep memory on v1), else the unified `0::` line.
pub fn memory_membership(proc_cgroup: &str) -> Option<Membership> {
    let mut unified = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some(Membership {
                hierarchy: Hierarchy::V1,
                path: path.to_string(),
            });
        }
        if id == "0" && controllers.is_empty() {
            unified = Some(Membership {
                hierarchy: Hierarchy::V2,
                path: path.to_string(),
            });
        }
    }
    unified
}

/// One cgroup mount from mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    pub hierarchy: Hierarchy,
    /// The path inside the hierarchy that is mounted (usually `/`).
    pub root: String,
    pub mount_point: PathBuf,
}

/// The cgroup mounts that can hold the memory controller: v1 mounts whose
/// super options name `memory`, and every cgroup2 mount.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // id parent maj:min root mount-point options [optional...] - fstype source super-options
        // The last three fields (escaped, so without spaces) come first:
        // most lines are not cgroup mounts and are skipped on the fs type,
        // which matters on hosts with hundreds of overlay mounts.
        let mut r = line.rsplitn(4, ' ');
        let (Some(super_options), Some(_source), Some(fstype), Some(rest)) =
            (r.next(), r.next(), r.next(), r.next())
        else {
            continue;
        };
        let hierarchy = match fstype {
            "cgroup2" => Hierarchy::V2,
            "cgroup" if super_options.split(',').any(|o| o == "memory") => Hierarchy::V1,
            _ => continue,
        };
        let Some(left) = rest.strip_suffix(" -") else {
            continue;
        };
        let mut f = left.split(' ');
        let (Some(_id), Some(_parent), Some(_dev), Some(root), Some(mount_point)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        out.push(CgroupMount {
            hierarchy,
            root: unescape(root),
            mount_point: PathBuf::from(unescape(mount_point)),
        });
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for `\`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount through which `member` is reachable, and the path below the
/// mount point. A cgroup outside every mount's root is not reachable, and
/// neither is a path with a `..` component: the kernel never writes one,
/// so it can only come from somewhere that must not steer the open
/// (`openat2` would refuse it too, as `RESOLVE_BENEATH`).
pub fn locate<'m>(
    mounts: &'m [CgroupMount],
    member: &Membership,
) -> Option<(&'m CgroupMount, String)> {
    if member.path.split('/').any(|c| c == "..") {
        return None;
    }
    mounts
        .iter()
        .filter(|m| m.hierarchy == member.hierarchy)
        .filter_map(|m| {
            let rel = if m.root == "/" {
                Some(member.path.trim_start_matches('/'))
            } else {
                member
                    .path
                    .strip_prefix(m.root.as_str())
                    .filter(|r| r.is_empty() || r.starts_with('/'))
                    .map(|r| r.trim_start_matches('/'))
            }?;
            Some((m, rel.to_string()))
        })
        // Prefer the mount whose root is deepest (the most direct view).
        .max_by_key(|(m, _)| m.root.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "9:name=systemd:/\n4:memory:/process_api/abc/ctr\n3:cpuset:/\n0::/\n";
    const UNIFIED: &str = "0::/system.slice/docker-abc.scope\n";

    #[test]
    fn membership_prefers_v1_memory() {
        assert_eq!(
            memory_membership(HYBRID),
            Some(Membership {
                hierarchy: Hierarchy::V1,
                path: "/process_api/abc/ctr".into()
            })
        );
        assert_eq!(
            memory_membership(UNIFIED),
            Some(Membership {
                hierarchy: Hierarchy::V2,
                path: "/system.slice/docker-abc.scope".into()
            })
        );
        assert_eq!(memory_membership("4:cpu,memory:/a\n").unwrap().path, "/a");
        assert_eq!(memory_membership("garbage\n3:cpu:/x\n"), None);
        assert_eq!(memory_membership(""), None);
    }

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
33 25 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
40 25 0:27 /process_api /mnt/my\\040cg rw - cgroup cgroup rw,memory
";

    #[test]
    fn mounts_with_memory() {
        let m = cgroup_mounts(MOUNTINFO);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(m[1].hierarchy, Hierarchy::V2);
        assert_eq!(m[2].mount_point, PathBuf::from("/mnt/my cg"));
        assert_eq!(m[2].root, "/process_api");
    }

    /// Found by fuzzing (`fuzz/` `cgroup_files`).
    #[test]
    fn a_path_that_climbs_is_not_located() {
        let mounts = cgroup_mounts(MOUNTINFO);
        for path in ["/a/../../etc", "/..", "/docker/../x"] {
            let member = Membership {
                hierarchy: Hierarchy::V1,
                path: path.into(),
            };
            assert_eq!(locate(&mounts, &member), None, "{path}");
        }
    }

    #[test]
    fn locate_strips_the_mount_root() {
        let mounts = cgroup_mounts(MOUNTINFO);
        let member = memory_membership(HYBRID).unwrap();
        let (m, rel) = locate(&mounts, &member).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/mnt/my cg"));
        assert_eq!(rel, "abc/ctr");
        let outside = Membership {
            hierarchy: Hierarchy::V1,
            path: "/process_apiX/y".into(),
        };
        let (m, rel) = locate(&mounts, &outside).unwrap();
        assert_eq!(
            (m.mount_point.to_str().unwrap(), rel.as_str()),
            ("/sys/fs/cgroup/memory", "process_apiX/y")
        );
        let v2 = memory_membership(UNIFIED).unwrap();
        let (m, rel) = locate(&mounts, &v2).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(rel, "system.slice/docker-abc.scope");
    }
}
