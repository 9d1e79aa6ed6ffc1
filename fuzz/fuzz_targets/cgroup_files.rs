//! The kernel files cglimit parses: `/proc/<pid>/cgroup`, mountinfo,
//! `memory.stat` / `memory.events`, limit files. Never a panic, and a
//! cgroup located through a mount stays beneath it.
#![no_main]

use cglimit::cgroup::{self, procfs};
use cglimit::cmd::watch::stats;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // One input feeds every parser; `\x1e` splits it in two for locate().
    let (proc_cgroup, mountinfo) = text.split_once('\x1e').unwrap_or((text, text));
    let member = procfs::memory_membership(proc_cgroup);
    let mounts = procfs::cgroup_mounts(mountinfo);
    if let Some(m) = &member
        && let Some((mount, rel)) = procfs::locate(&mounts, m)
    {
        assert!(mounts.contains(mount));
        assert!(!rel.starts_with('/'), "{rel:?} is absolute");
        assert!(
            !rel.split('/').any(|c| c == ".."),
            "{rel:?} climbs out of {}",
            mount.mount_point.display()
        );
    }
    let kv = stats::parse_kv(text);
    for k in kv.keys() {
        assert!(!k.is_empty() && !k.contains(char::is_whitespace), "{k:?}");
    }
    let _ = cgroup::parse_limit(text);
});
