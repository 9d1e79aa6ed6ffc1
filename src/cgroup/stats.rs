//! Reading a memory cgroup's counters and usage, v1 and v2.

use std::collections::BTreeMap;

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
    pub counters: BTreeMap<String, u64>,
    /// v1 `under_oom` from `memory.oom_control`.
    pub under_oom: bool,
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
                .insert("failcnt".into(), num(dir, "memory.failcnt")?.unwrap_or(0));
            if dir.has("memory.memsw.failcnt") {
                let memsw = num(dir, "memory.memsw.usage_in_bytes")?.unwrap_or(0);
                s.swap_usage = Some(memsw.saturating_sub(s.usage));
                s.swap_limit = num(dir, "memory.memsw.limit_in_bytes")?;
                s.counters.insert(
                    "memsw_failcnt".into(),
                    num(dir, "memory.memsw.failcnt")?.unwrap_or(0),
                );
            }
            let oom = parse_kv(&dir.read("memory.oom_control")?);
            s.under_oom = oom.get("under_oom").copied().unwrap_or(0) > 0;
            s.counters
                .insert("oom_kill".into(), oom.get("oom_kill").copied().unwrap_or(0));
        }
        Hierarchy::V2 => {
            s.usage = num(dir, "memory.current")?.unwrap_or(0);
            s.limit = num(dir, "memory.max")?;
            s.high = num(dir, "memory.high")?;
            let stat = parse_kv(&dir.read("memory.stat")?);
            s.anon = stat.get("anon").copied().unwrap_or(0);
            s.inactive_file = stat.get("inactive_file").copied().unwrap_or(0);
            s.v2 = true;
            if dir.has("memory.swap.current") {
                s.swap_usage = num(dir, "memory.swap.current")?;
                s.swap_limit = num(dir, "memory.swap.max")?;
            }
            // The local file counts this cgroup's own events, not a child's.
            let events = if dir.has("memory.events.local") {
                dir.read("memory.events.local")?
            } else {
                dir.read("memory.events")?
            };
            s.counters = parse_kv(&events);
        }
    }
    Ok(s)
}

/// The few files an idle container needs read every tick, kept open:
/// usage, and on v1 `memory.failcnt` (v1 notifies only OOM; v2 notifies
/// every `memory.events` change through inotify). One `pread` each, so a
/// thousand idle containers cost two thousand syscalls a second.
/// `memory.memsw.failcnt` is read with everything else: when usage or
/// failcnt changes, and at least every 30 ticks.
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
            Hierarchy::V1 => {
                let f = vec![("failcnt", dir.open_read("memory.failcnt")?)];
                (dir.open_read("memory.usage_in_bytes")?, f)
            }
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
}
