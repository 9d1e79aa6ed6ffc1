//! The processes of a memory cgroup and what each holds: who grows.
//! Read for a container a leak is suspected in, or that `diagnose` is
//! asked about; never for every container on every tick.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cgroup::{CgroupDir, CgroupError};

/// One process and its resident memory, in bytes
/// (`/proc/PID/status`: `RssAnon`, `RssFile`, `RssShmem`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: i32,
    pub comm: String,
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    /// Growth of `anon + shmem` since an earlier reading, bytes per
    /// second; `None` without one.
    #[serde(default)]
    pub growth_bytes_per_s: Option<f64>,
}

/// The processes in the cgroup itself (`cgroup.procs`), largest first by
/// `anon + shmem`; a process that exits meanwhile is left out.
pub fn read(dir: &CgroupDir) -> Result<Vec<Process>, CgroupError> {
    let pids = dir.read("cgroup.procs")?;
    let mut out: Vec<Process> = pids
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter_map(status)
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.anon + p.shmem));
    Ok(out)
}

fn status(pid: i32) -> Option<Process> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut p = Process {
        pid,
        ..Default::default()
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let kb = || {
            v.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .map_or(0, |n| n * 1024)
        };
        match k {
            "Name" => p.comm = v.trim().to_string(),
            "RssAnon" => p.anon = kb(),
            "RssFile" => p.file = kb(),
            "RssShmem" => p.shmem = kb(),
            _ => {}
        }
    }
    Some(p)
}

/// Sets each process's growth against an earlier reading taken `seconds`
/// before (processes new since then are measured from nothing).
pub fn set_growth(now: &mut [Process], before: &[Process], seconds: f64) {
    if seconds <= 0.0 {
        return;
    }
    let old: HashMap<i32, u64> = before.iter().map(|p| (p.pid, p.anon + p.shmem)).collect();
    for p in now {
        let was = old.get(&p.pid).copied().unwrap_or(0);
        p.growth_bytes_per_s = Some(((p.anon + p.shmem) as f64 - was as f64) / seconds);
    }
}

/// The process that grew most, when one grew at all.
pub fn top_grower(procs: &[Process]) -> Option<&Process> {
    procs
        .iter()
        .filter(|p| p.growth_bytes_per_s.is_some_and(|g| g > 0.0))
        .max_by(|a, b| {
            a.growth_bytes_per_s
                .unwrap_or(0.0)
                .total_cmp(&b.growth_bytes_per_s.unwrap_or(0.0))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, anon: u64) -> Process {
        Process {
            pid,
            comm: format!("p{pid}"),
            anon,
            ..Default::default()
        }
    }

    #[test]
    fn the_process_that_grew_most_is_named() {
        let before = [p(1, 100), p(2, 100), p(3, 100)];
        let mut now = [p(1, 100), p(2, 2100), p(3, 50), p(4, 10)];
        set_growth(&mut now, &before, 2.0);
        assert_eq!(now[1].growth_bytes_per_s, Some(1000.0));
        assert_eq!(now[2].growth_bytes_per_s, Some(-25.0));
        assert_eq!(top_grower(&now).map(|p| p.pid), Some(2));
        let mut flat = [p(1, 100)];
        set_growth(&mut flat, &before, 2.0);
        assert_eq!(top_grower(&flat), None);
    }

    #[test]
    fn this_process_reads_itself() {
        let me = status(std::process::id() as i32).unwrap();
        assert!(me.anon > 0 && !me.comm.is_empty(), "{me:?}");
    }
}
