//! Reading a memory cgroup's counters and usage, v1 and v2, and what its
//! memory is ([`Breakdown`]: one vocabulary for both hierarchies).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cgroup::{CgroupDir, CgroupError, Hierarchy};

/// One reading of a container's memory cgroup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub usage: u64,
    /// `None`: no limit.
    pub limit: Option<u64>,
    pub swap_usage: Option<u64>,
    /// As the cgroup's file says it: v2 swap on top of memory
    /// (`memory.swap.max`); v1 memory+swap (`memory.memsw.limit_in_bytes`).
    pub swap_limit: Option<u64>,
    /// Page cache not recently used (v2 `inactive_file`, v1
    /// `total_inactive_file`): what reclaim takes first, and what the
    /// working set leaves out.
    pub inactive_file: u64,
    pub high: Option<u64>,
    /// Anonymous memory: v2 `anon`, v1 `total_rss` (page cache excluded).
    pub anon: u64,
    /// Cumulative counters by name: v1 `failcnt`, `memsw_failcnt`,
    /// `oom_kill`; v2 the `memory.events` keys (`high`, `max`, `oom`,
    /// `oom_kill`, `oom_group_kill`).
    pub counters: Counters,
    /// v1 `under_oom` from `memory.oom_control`.
    pub under_oom: bool,
    /// What the memory is.
    pub memory: Breakdown,
    /// Read from a cgroup v2 hierarchy.
    pub v2: bool,
}

impl Sample {
    /// Memory in use less inactive page cache, as the kubelet, `docker
    /// stats` and podman compute it: what would stay after reclaim.
    pub fn working_set(&self) -> u64 {
        self.usage.saturating_sub(self.inactive_file)
    }

    /// The swap a container may use, alone, on both hierarchies (`None`:
    /// no limit).
    pub fn swap_only_limit(&self) -> Option<u64> {
        if self.v2 {
            self.swap_limit
        } else {
            Some(self.swap_limit?.saturating_sub(self.limit?))
        }
    }

    /// Memory and swap together, on both hierarchies (`None`: no limit).
    pub fn memory_swap_limit(&self) -> Option<u64> {
        if self.v2 {
            self.limit?.checked_add(self.swap_limit?)
        } else {
            self.swap_limit
        }
    }
}

/// Counters by name, in name order: a few per cgroup, kept for thousands
/// of cgroups, so a short vector with the usual names not allocated (a
/// `BTreeMap<String, _>` of three took ten times the memory).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(Vec<(Cow<'static, str>, u64)>);

/// The counter names v1 and v2 cgroups have today; another is kept as its
/// own string.
const KNOWN: &[&str] = &[
    "failcnt",
    "high",
    "low",
    "max",
    "memsw_failcnt",
    "oom",
    "oom_group_kill",
    "oom_kill",
    "sock_throttled",
];

impl Counters {
    pub fn get(&self, name: &str) -> Option<&u64> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn insert(&mut self, name: &str, value: u64) {
        match self.0.binary_search_by(|(k, _)| k.as_ref().cmp(name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => {
                let name = match KNOWN.iter().find(|k| **k == name) {
                    Some(k) => Cow::Borrowed(*k),
                    None => Cow::Owned(name.to_string()),
                };
                self.0.insert(i, (name, value));
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &u64)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    fn shrink(mut self) -> Self {
        self.0.shrink_to_fit();
        self
    }
}

impl<'a> IntoIterator for &'a Counters {
    type Item = (&'a str, &'a u64);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Cow<'static, str>, u64)>,
        fn(&'a (Cow<'static, str>, u64)) -> (&'a str, &'a u64),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

/// What a container's memory is, in bytes, in the same terms on v1 and v2
/// (docs/watch.md#what-the-memory-is). `anon + file + shmem + kernel +
/// sock` is close to the cgroup's usage; swap is outside it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    /// Processes' own memory (heaps, stacks, anonymous mappings): leaves
    /// only when they free it, or to swap. v2 `anon`; v1 `total_rss`.
    pub anon: u64,
    /// Page cache of files, tmpfs left out: the kernel takes it back under
    /// pressure. v2 `file - shmem`; v1 `total_cache - total_shmem`.
    pub file: u64,
    /// Of `file`, recently used (reclaimed last). v2 `active_file`; v1
    /// `total_active_file`.
    pub file_active: u64,
    /// Of `file`, not recently used (reclaimed first; the working set
    /// leaves it out). v2 `inactive_file`; v1 `total_inactive_file`.
    pub file_inactive: u64,
    /// Files in tmpfs (`/dev/shm`, `--tmpfs`) and shared anonymous memory:
    /// counted against the limit, never reclaimed without swap. v2
    /// `shmem`; v1 `total_shmem`.
    pub shmem: u64,
    /// The kernel's memory for the container (slab, stacks, page tables).
    /// v2 `kernel` (before 5.18 the sum of `slab`, `kernel_stack`,
    /// `pagetables`, `percpu`); v1 `memory.kmem.usage_in_bytes`, 0 where
    /// kernel memory is not accounted.
    pub kernel: u64,
    /// Socket buffers. v2 `sock`; v1 `memory.kmem.tcp.usage_in_bytes` (TCP
    /// only, and only once a TCP limit is set: cglimit sets one).
    pub sock: u64,
    /// Swapped out (outside the usage). v2 `memory.swap.current`; v1
    /// `memory.memsw.usage_in_bytes - memory.usage_in_bytes`.
    pub swap: u64,
}

impl Breakdown {
    /// The kinds by name, in a fixed order (metrics, `top`, `diagnose`).
    pub fn kinds(&self) -> [(&'static str, u64); 6] {
        [
            ("anon", self.anon),
            ("file", self.file),
            ("shmem", self.shmem),
            ("kernel", self.kernel),
            ("sock", self.sock),
            ("swap", self.swap),
        ]
    }

    /// From v2's `memory.stat`.
    pub fn from_v2(stat: &BTreeMap<String, u64>, swap: u64) -> Breakdown {
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        let shmem = get("shmem");
        let kernel = match stat.get("kernel") {
            Some(k) => *k,
            None => {
                let slab = stat
                    .get("slab")
                    .copied()
                    .unwrap_or_else(|| get("slab_reclaimable") + get("slab_unreclaimable"));
                slab + get("kernel_stack") + get("pagetables") + get("percpu")
            }
        };
        Breakdown {
            anon: get("anon"),
            file: get("file").saturating_sub(shmem),
            file_active: get("active_file"),
            file_inactive: get("inactive_file"),
            shmem,
            kernel,
            sock: get("sock"),
            swap,
        }
    }

    /// From v1's `memory.stat` (hierarchical `total_` keys) and the kmem
    /// counters.
    pub fn from_v1(
        stat: &BTreeMap<String, u64>,
        kmem: Option<u64>,
        tcp: Option<u64>,
        swap: u64,
    ) -> Breakdown {
        let get = |k: &str| {
            stat.get(&format!("total_{k}"))
                .or(stat.get(k))
                .copied()
                .unwrap_or(0)
        };
        let shmem = get("shmem");
        Breakdown {
            anon: get("rss"),
            file: get("cache").saturating_sub(shmem),
            file_active: get("active_file"),
            file_inactive: get("inactive_file"),
            shmem,
            kernel: kmem.unwrap_or(0),
            sock: tcp.unwrap_or(0),
            swap,
        }
    }
}

/// `key value` lines (`memory.stat`, `memory.events`, `memory.oom_control`).
pub fn parse_kv(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

fn num(dir: &CgroupDir, file: &str) -> Result<Option<u64>, CgroupError> {
    let v = dir.read_value(file)?;
    Ok(crate::cgroup::parse_limit(&v).and_then(|l| l.bytes()))
}

/// [`num`] of a file the kernel may not have: `None` then (one open, where
/// a check and a read would take two).
fn num_if(dir: &CgroupDir, file: &str) -> Result<Option<Option<u64>>, CgroupError> {
    Ok(dir
        .read_if(file)?
        .map(|v| crate::cgroup::parse_limit(v.trim()).and_then(|l| l.bytes())))
}

/// The limits alone, as [`read`] reads them: `[limit, swap_limit, high]`.
pub fn limits(dir: &CgroupDir) -> Result<[Option<u64>; 3], CgroupError> {
    let (memory, swap, high) = match dir.hierarchy {
        Hierarchy::V1 => (
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
        ),
        Hierarchy::V2 => ("memory.max", "memory.swap.max", "memory.high"),
    };
    Ok([
        num(dir, memory)?,
        num_if(dir, swap)?.flatten(),
        num(dir, high)?,
    ])
}

pub fn read(dir: &CgroupDir) -> Result<Sample, CgroupError> {
    let mut s = Sample::default();
    match dir.hierarchy {
        Hierarchy::V1 => {
            s.usage = num(dir, "memory.usage_in_bytes")?.unwrap_or(0);
            s.limit = num(dir, "memory.limit_in_bytes")?;
            s.high = num(dir, "memory.soft_limit_in_bytes")?;
            let stat = parse_kv(&dir.read("memory.stat")?);
            s.anon = stat
                .get("total_rss")
                .or(stat.get("rss"))
                .copied()
                .unwrap_or(0);
            s.inactive_file = stat
                .get("total_inactive_file")
                .or(stat.get("inactive_file"))
                .copied()
                .unwrap_or(0);
            s.counters
                .insert("failcnt", num(dir, "memory.failcnt")?.unwrap_or(0));
            if let Some(memsw_failcnt) = num_if(dir, "memory.memsw.failcnt")? {
                let memsw = num(dir, "memory.memsw.usage_in_bytes")?.unwrap_or(0);
                s.swap_usage = Some(memsw.saturating_sub(s.usage));
                s.swap_limit = num(dir, "memory.memsw.limit_in_bytes")?;
                s.counters
                    .insert("memsw_failcnt", memsw_failcnt.unwrap_or(0));
            }
            let oom = parse_kv(&dir.read("memory.oom_control")?);
            s.under_oom = oom.get("under_oom").copied().unwrap_or(0) > 0;
            s.counters
                .insert("oom_kill", oom.get("oom_kill").copied().unwrap_or(0));
            let kmem =
                |f: &str| -> Result<Option<u64>, CgroupError> { Ok(num_if(dir, f)?.flatten()) };
            s.memory = Breakdown::from_v1(
                &stat,
                kmem("memory.kmem.usage_in_bytes")?,
                kmem("memory.kmem.tcp.usage_in_bytes")?,
                s.swap_usage.unwrap_or(0),
            );
        }
        Hierarchy::V2 => {
            s.usage = num(dir, "memory.current")?.unwrap_or(0);
            s.limit = num(dir, "memory.max")?;
            s.high = num(dir, "memory.high")?;
            let stat = parse_kv(&dir.read("memory.stat")?);
            s.anon = stat.get("anon").copied().unwrap_or(0);
            s.inactive_file = stat.get("inactive_file").copied().unwrap_or(0);
            s.v2 = true;
            if let Some(swap) = num_if(dir, "memory.swap.current")? {
                s.swap_usage = swap;
                s.swap_limit = num(dir, "memory.swap.max")?;
            }
            // The local file counts this cgroup's own events, not a child's.
            let events = match dir.read_if("memory.events.local")? {
                Some(e) => e,
                None => dir.read("memory.events")?,
            };
            for (k, v) in &parse_kv(&events) {
                s.counters.insert(k, *v);
            }
            s.memory = Breakdown::from_v2(&stat, s.swap_usage.unwrap_or(0));
        }
    }
    s.counters = s.counters.shrink();
    Ok(s)
}

/// The file a container's usage is read from every tick while it moves,
/// kept open: one `pread`. v1 `memory.failcnt` is not in it: a failcnt
/// rise comes with usage at the limit, where the watcher reads every file
/// anyway (and v2 notifies every `memory.events` change through inotify).
pub struct Probe {
    usage: std::fs::File,
    failcnt: Vec<(&'static str, std::fs::File)>,
}

/// What the quick read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quick {
    pub usage: u64,
    pub counters: Vec<(&'static str, u64)>,
}

impl Probe {
    pub fn open(dir: &CgroupDir) -> Result<Probe, CgroupError> {
        let (usage, failcnt) = match dir.hierarchy {
            // Usage only: one descriptor per container. A failcnt rise
            // comes with usage at the limit, where the watcher reads every
            // file anyway.
            Hierarchy::V1 => (dir.open_read("memory.usage_in_bytes")?, Vec::new()),
            Hierarchy::V2 => (dir.open_read("memory.current")?, Vec::new()),
        };
        Ok(Probe { usage, failcnt })
    }

    pub fn quick(&self) -> std::io::Result<Quick> {
        let mut counters = Vec::with_capacity(self.failcnt.len());
        for (k, f) in &self.failcnt {
            counters.push((*k, pread_u64(f)?));
        }
        Ok(Quick {
            usage: pread_u64(&self.usage)?,
            counters,
        })
    }
}

fn pread_u64(f: &std::fs::File) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 32];
    let n = f.read_at(&mut buf, 0)?;
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_files() {
        let e = parse_kv("low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n");
        assert_eq!(e["high"], 12);
        assert_eq!(e["oom_kill"], 1);
        let o = parse_kv("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n");
        assert_eq!(o["oom_kill"], 4);
        let s = parse_kv("cache 8192\nrss 4096\ntotal_rss 1048576\nbad line\nx y\n");
        assert_eq!(s["total_rss"], 1048576);
        assert!(!s.contains_key("x"));
    }

    #[test]
    fn one_vocabulary_for_both_hierarchies() {
        // v2: file includes tmpfs; kernel summed before 5.18.
        let v2 = parse_kv(
            "anon 100\nfile 300\nshmem 120\nactive_file 50\ninactive_file 130\nslab 7\nkernel_stack 2\npagetables 1\npercpu 0\nsock 4\n",
        );
        let b = Breakdown::from_v2(&v2, 9);
        assert_eq!(
            (b.anon, b.file, b.shmem, b.kernel, b.sock, b.swap),
            (100, 180, 120, 10, 4, 9)
        );
        assert_eq!((b.file_active, b.file_inactive), (50, 130));
        let v2k = parse_kv("kernel 33\nslab 7\n");
        assert_eq!(Breakdown::from_v2(&v2k, 0).kernel, 33);
        // v1: cache includes tmpfs; the hierarchical totals win.
        let v1 = parse_kv(
            "cache 1\nrss 1\nshmem 1\ntotal_cache 300\ntotal_rss 100\ntotal_shmem 120\ntotal_active_file 50\ntotal_inactive_file 130\n",
        );
        let b = Breakdown::from_v1(&v1, Some(10), Some(4), 9);
        assert_eq!(
            (b.anon, b.file, b.shmem, b.kernel, b.sock, b.swap),
            (100, 180, 120, 10, 4, 9)
        );
    }
}
