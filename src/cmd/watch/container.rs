//! A watched container: its cgroup, its notifications, what was last read
//! of it, and the events its counters' rises make.

use super::*;

pub(super) struct Watched {
    pub(super) who: Who,
    /// Its workload's key in the history, and what the key was made from.
    pub(super) workload: (String, Kind),
    /// The policy of cglimit's last decision for it.
    pub(super) policy: Option<String>,
    /// The highest working set read, and the readings, since it last went
    /// into the history.
    pub(super) unrecorded: Option<(u64, u64)>,
    pub(super) cgroup: String,
    /// Its cgroup directory, by path: opened for each full read and closed
    /// after, so that an idle container holds no more than its
    /// notification and its probe.
    pub(super) dir: Place,
    /// v1: the OOM eventfd.
    pub(super) oom: Option<EventFd>,
    /// What could not be set up for it (its OOM notification), and why: retried every [`super::RETRY_EVERY`]
    /// ticks, counted in the metrics.
    pub(super) missing: Option<String>,
    /// v2: the inotify watch on `memory.events`.
    pub(super) wd: Option<WatchDescriptor>,
    /// Inotify watches on its limit files: a write to any of them (by
    /// `docker update`, systemd, a hand) is seen at once, so that an idle
    /// container's files need not all be read again for it. Empty where
    /// they could not be set (then [`super::FULL_EVERY`] bounds it).
    pub(super) limit_wds: [Option<WatchDescriptor>; 3],
    pub(super) sample: stats::Sample,
    pub(super) oom_seen: u64,
    pub(super) leak: leak::Leaks,
    /// Whether the leak detector leans towards growth or suspects it, as of
    /// its last reading: such a container's detector is fed every tick.
    pub(super) leak_hot: bool,
    /// The processes and what they held when growth began to show (see
    /// [`leak::Leaks::leaning`]), with the time in the leak detector's
    /// seconds: a warning names who grew since.
    /// v1: what the memory was when the OOM notification came, before the
    /// kill freed the victim's: the `oom_kill` event carries it.
    pub(super) at_oom: Option<crate::cgroup::stats::Breakdown>,
    pub(super) procs_before: Option<(f64, Vec<crate::cgroup::procs::Process>)>,
    pub(super) recheck_at: Option<Instant>,
    /// v1: after an OOM notification, until when its counters are read
    /// again every millisecond, and the `oom_kill` count they are read
    /// against: the kill comes after the notification (see
    /// `Watcher::await_kill`).
    pub(super) oom_wait: Option<(Instant, Option<u64>)>,
    pub(super) probe: Option<stats::Probe>,
    /// Ticks since every file was last read.
    pub(super) since_full: u32,
    /// Ticks since its usage last moved (a full read that finds it
    /// unchanged does not make it move).
    pub(super) still: u32,
    /// v2: the `some total` of its `memory.pressure` (microseconds stalled)
    /// when last read: at its start, and at each reading of its parent's
    /// members after the parent's trigger fired.
    pub(super) psi_total: Option<u64>,
    /// Sustained pressure fires every window: one event per minute is enough.
    pub(super) last_pressure: Option<Instant>,
    /// This container's key in the epoll set (see [`Watcher::epoll`]).
    pub(super) token: u64,
    /// Its parent's [`super::group::Group`].
    pub(super) group: u32,
    /// The limits as last read or as last decided (memory, swap, high, in
    /// the cgroup's own terms; `Some(None)` for no limit): a read that
    /// differs is a `limit_changed` event. `None` where not known yet.
    pub(super) limits: [Option<Option<u64>>; 3],
    /// `limit_changed` events so far.
    pub(super) limit_changes: u64,
    /// Until then a difference is cglimit's own change still under way
    /// (the wrapper records an update before the runtime makes it): taken
    /// as the new reference, not reported.
    pub(super) settling: Option<Instant>,
    /// Changes seen but not yet recorded: cglimit writes a cgroup before it
    /// records the decision (the hook also tells systemd in between), so a
    /// change is held for [`SETTLING`] and dropped if a decision for this
    /// cgroup arrives meanwhile.
    pub(super) held: Option<(Instant, Vec<Event>)>,
}

impl Watched {
    /// Ticks between full reads of an unchanged container: long when its
    /// limit files are watched, since then only `memory.stat`'s slow drift
    /// (pages aging from active to inactive) is left to catch.
    pub(super) fn full_every(&self) -> u32 {
        super::FULL_IDLE_EVERY
    }

    /// An event of this container, with its usage and limit from `sample`.
    pub(super) fn event(&self, kind: &str, sample: &stats::Sample) -> Event {
        Event {
            time: crate::time::now_rfc3339(),
            kind: kind.into(),
            container: self.who.clone(),
            cgroup: self.cgroup.clone(),
            usage: sample.usage,
            limit: sample.limit,
            ..Default::default()
        }
    }
}

/// A cgroup directory by path and hierarchy.
pub(super) struct Place {
    pub(super) hierarchy: Hierarchy,
    path: std::path::PathBuf,
}

impl Place {
    pub(super) fn of(dir: &CgroupDir) -> Place {
        Place {
            hierarchy: dir.hierarchy.clone(),
            path: dir.path().to_path_buf(),
        }
    }

    pub(super) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Memory in use, read by path (for a container without a probe).
    pub(super) fn usage(&self) -> std::io::Result<u64> {
        let file = match self.hierarchy {
            Hierarchy::V1 => "memory.usage_in_bytes",
            Hierarchy::V2 => "memory.current",
        };
        std::fs::read_to_string(self.path.join(file))?
            .trim()
            .parse()
            .map_err(std::io::Error::other)
    }

    /// The directory, opened again (checked to be a cgroup of its
    /// hierarchy, as every open is).
    pub(super) fn open(&self) -> Result<CgroupDir, crate::cgroup::CgroupError> {
        CgroupDir::open(&self.path, "", self.hierarchy.clone())
    }
}

/// A container whose cgroup is gone, kept for the metrics until `until`.
pub(super) struct Gone {
    pub(super) who: Who,
    pub(super) workload: (String, Kind),
    pub(super) policy: Option<String>,
    pub(super) cgroup: String,
    pub(super) sample: stats::Sample,
    pub(super) oom_total: u64,
    /// What its memory was at its last OOM notification, if it was not
    /// yet put on an `oom_kill` event.
    pub(super) at_oom: Option<stats::Breakdown>,
    pub(super) limit_changes: u64,
    /// When it was found gone, in seconds since the epoch.
    pub(super) at: f64,
    pub(super) until: Instant,
}

/// OOM conditions of a container: v2's own counter; on v1 the
/// notifications the watcher saw, or the log's count when it saw fewer
/// (it restarted).
pub(super) fn oom_total(w: &Watched, baselines: &HashMap<(String, String), u64>) -> u64 {
    if w.dir.hierarchy == Hierarchy::V2 {
        w.sample.counters.get("oom").copied().unwrap_or(0)
    } else {
        w.oom_seen.max(
            baselines
                .get(&(w.cgroup.clone(), "memory.oom_control:notifications".into()))
                .copied()
                .unwrap_or(0),
        )
    }
}

/// Counter rises since the last reading (or since the log's baseline, for a
/// cgroup first seen after a restart), as events.
pub(super) fn rises(
    w: &Watched,
    s: &stats::Sample,
    baselines: &HashMap<(String, String), u64>,
) -> Vec<Event> {
    let mut out = Vec::new();
    for (k, &new) in &s.counters {
        let counter = match (&w.dir.hierarchy, k) {
            (Hierarchy::V1, "failcnt") => "memory.failcnt".to_string(),
            (Hierarchy::V1, "memsw_failcnt") => "memory.memsw.failcnt".to_string(),
            (Hierarchy::V1, "oom_kill") => "memory.oom_control:oom_kill".to_string(),
            (Hierarchy::V2, k) => format!("memory.events:{k}"),
            _ => continue,
        };
        let old = w
            .sample
            .counters
            .get(k)
            .copied()
            .or_else(|| baselines.get(&(w.cgroup.clone(), counter.clone())).copied())
            .unwrap_or(0);
        if new <= old {
            continue;
        }
        let kind = match k {
            "memsw_failcnt" => "failcnt",
            other => other,
        };
        if kind == "low" {
            continue;
        }
        out.push(Event {
            counter: Some(counter),
            old: Some(old),
            new: Some(new),
            ..w.event(kind, s)
        });
    }
    out
}
