//! The kernel's notifications the watcher waits on: v1's OOM eventfd
//! (`cgroup.event_control`), v2's PSI trigger on `memory.pressure`.

use std::path::Path;

use super::*;

/// v1: an eventfd that the kernel signals on OOM in this cgroup (and on its
/// removal), registered by writing "<eventfd> <fd of memory.oom_control>"
/// to `cgroup.event_control`.
///
/// `memory.oom_control` is closed once registered: the kernel keeps the
/// eventfd and the cgroup, not the file (`memcg_write_event_control`), and
/// still signals the eventfd when the cgroup is removed. One descriptor per
/// container instead of two.
pub(super) fn register_oom(dir: &CgroupDir) -> Result<EventFd, NotifyError> {
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(NotifyError::EventFd)?;
    let f = File::open(dir.path().join("memory.oom_control")).map_err(NotifyError::Open)?;
    dir.write(
        "cgroup.event_control",
        &format!("{} {}", efd.as_fd().as_raw_fd(), f.as_raw_fd()),
    )?;
    Ok(efd)
}

/// Why the kernel could not be asked to notify.
#[derive(Debug, thiserror::Error)]
pub(super) enum NotifyError {
    #[error("eventfd: {0}")]
    EventFd(#[source] nix::Error),
    #[error("{0}")]
    Open(#[source] std::io::Error),
    #[error(transparent)]
    Register(#[from] cgroup::CgroupError),
}

/// v2: a PSI trigger on `memory.pressure` (the kernel's own file where it
/// is the root: `/proc/pressure/memory`): the kernel signals POLLPRI when
/// tasks below stall on memory for `stall` within a one-second window
/// ("some").
///
/// One per parent, not per container: the kernel gives each cgroup with a
/// trigger a kernel thread of its own (`psimon`) and its memory, about
/// 33 KiB a container in the v2 VM (`bash bench/watch-v2.sh`: 2,000
/// triggers, 2,000 threads, +67 MiB of kernel stacks and slab), and a
/// parent's pressure counts every task below it.
pub(super) fn psi_trigger(parent: &Path, stall: Duration) -> std::io::Result<File> {
    use std::io::Write;
    let own = parent.join("memory.pressure");
    let path = if own.exists() {
        own
    } else {
        std::path::PathBuf::from("/proc/pressure/memory")
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    f.write_all(format!("some {} 1000000", stall.as_micros()).as_bytes())?;
    Ok(f)
}

/// A cgroup's memory stall: `some`'s `avg10` (percent), `total`
/// (microseconds) and the line itself.
pub(super) fn stall(dir: &Path) -> Option<(f64, u64, String)> {
    let text = std::fs::read_to_string(dir.join("memory.pressure")).ok()?;
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
    };
    Some((
        field("avg10")?.parse().ok()?,
        field("total")?.parse().ok()?,
        line.to_string(),
    ))
}

/// How long after a parent's trigger fires its members' pressure is read:
/// the kernel updates `avg10` every 2 s, and the reading needs the stall
/// in it.
const SCAN_DELAY: Duration = Duration::from_millis(2100);

/// How long after an OOM notification the kill is waited for.
const KILL_WAIT: Duration = Duration::from_millis(50);

/// How often the kernel brings `avg10` up to date.
const AVG_PERIOD: Duration = Duration::from_secs(2);

impl Watcher<'_> {
    /// Sleeps until `timeout`, an OOM eventfd, a PSI trigger, an inotify
    /// event or a metrics scrape.
    pub(super) fn wait(&mut self, timeout: Duration) {
        let mut events = [EpollEvent::empty(); 64];
        // Rounded up: rounded down, the last fraction of a millisecond before
        // a recheck or a tick is spent calling epoll_wait with no timeout.
        let ms = timeout.as_micros().div_ceil(1000).min(60_000) as u16;
        let n = self
            .epoll
            .wait(&mut events, PollTimeout::from(ms))
            .unwrap_or(0);
        for data in events[..n].iter().map(EpollEvent::data) {
            match data {
                INOTIFY => self.inotify_ready(),
                KMSG => self.drain_kmsg(),
                DISCOVERED => self.discovered(),
                STOP => self.stop(),
                DEMAND => {
                    let _ = self.demand.wake.read();
                    // Not for a scrape that gave up waiting.
                    if self.demand.wanted() {
                        self.render();
                    }
                }
                d if d & GROUP_PSI != 0 => self.group_pressure((d & !GROUP_PSI) as u32),
                d => {
                    let Some(k) = self.tokens.get(&(d >> 1)).cloned() else {
                        continue;
                    };
                    self.oom_fired(&k);
                }
            }
        }
    }

    /// The OOM eventfd of `k` fired: an OOM, or the cgroup's removal.
    fn oom_fired(&mut self, k: &str) {
        let Some(w) = self.containers.get(k) else {
            return;
        };
        let n = w.oom.as_ref().and_then(|e| e.read().ok()).unwrap_or(0);
        // The eventfd also fires when the cgroup is removed: then there was
        // no OOM, the container is just gone.
        if !w.dir.path().exists() {
            self.read_one(k);
            return;
        }
        if let Some(w) = self.containers.get_mut(k) {
            w.oom_seen += n;
        }
        self.oom_notified(k, n);
    }

    fn inotify_ready(&mut self) {
        let Ok(events) = self.inotify.read_events() else {
            return;
        };
        let mut decisions = false;
        let mut touched = Vec::new();
        for e in events {
            if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                // Events were lost: every container is read in full within
                // FULL_EVERY ticks (spread), as if its limits were not
                // watched; the decisions are read again.
                decisions = true;
                self.parents_changed = true;
                for w in self.containers.values_mut() {
                    let due =
                        w.full_every() - FULL_EVERY + (w.token % u64::from(FULL_EVERY)) as u32;
                    w.since_full = w.since_full.max(due);
                }
            } else if self.tail.is(e.wd) {
                decisions = true;
            } else if let Some((parent, _)) = self.parent_wds.iter().find(|(_, wd)| *wd == e.wd) {
                // A cgroup made there is taken by its name; one removed is
                // seen by its own notification. Anything else (the parent
                // itself gone) lists the parent again.
                let made = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ISDIR;
                match &e.name {
                    Some(name) if e.mask.contains(made) => self
                        .made_under_parents
                        .push((parent.clone(), name.to_string_lossy().into_owned())),
                    _ if e.mask.contains(AddWatchFlags::IN_DELETE) => {}
                    _ => self.parents_changed = true,
                }
            } else if let Some(k) = self.watches.get(&e.wd).and_then(|t| self.tokens.get(t))
                && !touched.contains(k)
            {
                touched.push(k.clone());
            }
        }
        if decisions {
            self.ingest_decisions();
        }
        for k in touched {
            self.read_one(&k);
        }
    }

    /// v1 OOM notification (or the cgroup's removal): read the counters at
    /// once, and again shortly, since `oom_kill` rises after the kill.
    fn oom_notified(&mut self, key: &str, n: u64) {
        let Some(w) = self.containers.get_mut(key) else {
            return;
        };
        let ev = Event {
            counter: Some("memory.oom_control:notifications".into()),
            old: Some(w.oom_seen - n),
            new: Some(w.oom_seen),
            ..w.event("oom", &w.sample)
        };
        w.at_oom = w
            .dir
            .open()
            .and_then(|d| stats::read(&d))
            .ok()
            .map(|s| s.memory);
        self.record(vec![ev]);
        // The notification comes as the OOM starts; `oom_kill` rises when the
        // victim is chosen, and the cgroup may vanish soon after the kill.
        let before = self
            .containers
            .get(key)
            .and_then(|w| w.sample.counters.get("oom_kill").copied());
        self.read_one(key);
        self.await_kill(key, before, Instant::now() + KILL_WAIT);
    }

    /// After an OOM notification: while `oom_kill` has not moved from
    /// `before` and `until` has not passed, the container is read again a
    /// millisecond later; then once more 20 ms later. The loop goes on
    /// meanwhile: a notification that no kill follows (`oom_kill_disable`,
    /// `docker run --oom-kill-disable`, whose tasks wait under the OOM; or a
    /// second notification of one OOM) holds no other container's events.
    pub(super) fn await_kill(&mut self, key: &str, before: Option<u64>, until: Instant) {
        let Some(w) = self.containers.get_mut(key) else {
            return;
        };
        let now = Instant::now();
        let count = w.sample.counters.get("oom_kill").copied();
        let next = if count == before && count.is_some() && now < until {
            w.oom_wait = Some((until, before));
            now + Duration::from_millis(1)
        } else {
            now + Duration::from_millis(20)
        };
        w.recheck_at = Some(w.recheck_at.map_or(next, |t| t.min(next)));
        self.rechecks_pending = true;
    }

    /// Sets up the pressure trigger of group `slot`'s parent (v2).
    pub(super) fn arm_group(&mut self, slot: u32) {
        if self.pressure_absent {
            return;
        }
        let parent = self.groups[slot as usize].parent.clone();
        match psi_trigger(&parent, self.args.pressure_stall) {
            Ok(f) => {
                let ev = EpollEvent::new(EpollFlags::EPOLLPRI, GROUP_PSI | u64::from(slot));
                match self.epoll.add(f.as_fd(), ev) {
                    Ok(()) => self.groups[slot as usize].psi = Some(f),
                    Err(e) => self.pressure_failed(&parent, &e.to_string()),
                }
            }
            // A kernel without PSI (or with it off) has none to give.
            Err(e)
                if e.raw_os_error() == Some(libc_enotsup())
                    || e.kind() == std::io::ErrorKind::NotFound =>
            {
                self.pressure_absent = true;
                ::log::info!("no memory pressure events: the kernel keeps no pressure ({e})");
            }
            Err(e) => self.pressure_failed(&parent, &e.to_string()),
        }
    }

    fn pressure_failed(&mut self, parent: &Path, why: &str) {
        if !self.pressure_said {
            self.pressure_said = true;
            ::log::warn!(
                "{}: no pressure trigger: {why}; tried again every {RETRY_EVERY} ticks (said once)",
                parent.display()
            );
        }
    }

    /// A parent's trigger fired: some task below it stalled on memory for
    /// the threshold within a second. Its members are read shortly.
    fn group_pressure(&mut self, slot: u32) {
        if let Some(g) = self.groups.get_mut(slot as usize)
            && g.members > 0
            && g.scan_at.is_none()
        {
            g.scan_at = Some(Instant::now() + SCAN_DELAY);
        }
    }

    /// Reads the members of each group whose scan is due; returns when the
    /// next one is.
    pub(super) fn scan_groups(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for slot in 0..self.groups.len() {
            match self.groups[slot].scan_at {
                Some(t) if t <= now => {
                    self.groups[slot].scan_at = None;
                    self.scan_group(slot as u32);
                }
                Some(t) => next = Some(next.map_or(t, |n| n.min(t))),
                None => {}
            }
        }
        next
    }

    /// Which of the group's containers stalled: those whose stall time grew
    /// by the threshold since it was last read, and recently (`avg10` at
    /// least a twentieth of the threshold's share of a second: 0.75% for
    /// 150 ms). One event a minute at most per container.
    ///
    /// The window the trigger counts in is a second anywhere; `avg10` is
    /// brought up to date every 2 s. A stall that straddles two of those
    /// periods is only half in `avg10` at the first update: a member whose
    /// stall time grew enough but whose `avg10` had not caught up is looked
    /// at once more, an update later, its stall time left unread until then.
    fn scan_group(&mut self, slot: u32) {
        let stall_us = self.args.pressure_stall.as_micros() as u64;
        let min_avg10 = self.args.pressure_stall.as_secs_f64() * 100.0 / 20.0;
        let second_look = std::mem::take(&mut self.groups[slot as usize].rescan);
        let keys: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, w)| w.group == slot)
            .map(|(k, _)| k.clone())
            .collect();
        let mut events = Vec::new();
        let mut again = false;
        for k in keys {
            let Some(w) = self.containers.get_mut(&k) else {
                continue;
            };
            let Some((avg10, total, line)) = stall(w.dir.path()) else {
                continue;
            };
            let grew = total.saturating_sub(w.psi_total.unwrap_or(0));
            match stalled(grew, avg10, stall_us, min_avg10, second_look) {
                Stalled::NotYet => {
                    again = true;
                    continue;
                }
                Stalled::No => {
                    w.psi_total = Some(total);
                    continue;
                }
                Stalled::Yes => w.psi_total = Some(total),
            }
            if w.last_pressure
                .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
            {
                continue;
            }
            w.last_pressure = Some(Instant::now());
            events.push(Event {
                counter: Some("memory.pressure".into()),
                old: Some(total - grew),
                new: Some(total),
                detail: Some(line),
                ..w.event("pressure", &w.sample)
            });
        }
        if again {
            let g = &mut self.groups[slot as usize];
            g.rescan = true;
            g.scan_at = Some(Instant::now() + AVG_PERIOD);
        }
        if !events.is_empty() {
            self.record(events);
        }
    }

    /// Keeps the OOM reports the kernel logged since the last call, for
    /// the `oom_kill` events they explain (a few minutes at most).
    pub(super) fn drain_kmsg(&mut self) {
        let Some(k) = self.kmsg.as_mut() else {
            return;
        };
        let now = Instant::now();
        self.oom_reports
            .retain(|(t, _)| now.duration_since(*t) < Duration::from_secs(300));
        for r in k.read() {
            self.oom_reports.push((now, r));
        }
        if let Some(why) = k.ended() {
            // Closed, so it leaves the epoll set: no busy wake-ups on EOF.
            let why = format!("the kernel's OOM reports are no longer kept: {why}");
            ::log::warn!("{why}");
            self.kmsg = None;
            self.kmsg_problem = Some(why);
        }
        if self.oom_reports.len() > 256 {
            let n = self.oom_reports.len() - 256;
            self.oom_reports.drain(..n);
        }
        self.release_ooms();
        self.count_gone_kills();
    }

    /// Counts the kills that the kernel reported in a container found gone
    /// before its `oom_kill` counter was read after them: the commonest OOM
    /// (the init killed, the container exiting, its cgroup removed at once)
    /// races the reading, and the report is what is left of it. Each makes
    /// an `oom_kill` event, its counter the kernel log.
    fn count_gone_kills(&mut self) {
        if self.gone.is_empty() || self.oom_reports.is_empty() {
            return;
        }
        let now = Instant::now();
        self.owed_reports
            .retain(|(t, _)| now.duration_since(*t) < Duration::from_secs(300));
        let source = self.kmsg.as_ref().map_or("the kernel log", |k| k.name());
        let mut events = Vec::new();
        for g in self.gone.iter_mut() {
            // Every report of a kill in it, oldest first.
            while let Some(i) = report_of(self.oom_reports.iter().map(|(_, r)| r), &g.cgroup) {
                let (_, r) = self.oom_reports.remove(i);
                if let Some(o) = self.owed_reports.iter().position(|(_, c)| *c == g.cgroup) {
                    // The report of a kill already counted, come late.
                    self.owed_reports.remove(o);
                    continue;
                }
                let old = g.sample.counters.get("oom_kill").copied().unwrap_or(0);
                g.sample.counters.insert("oom_kill", old + 1);
                events.push(Event {
                    time: crate::time::now_rfc3339(),
                    kind: "oom_kill".into(),
                    container: g.who.clone(),
                    cgroup: g.cgroup.clone(),
                    counter: Some(source.into()),
                    old: Some(old),
                    new: Some(old + 1),
                    usage: g.sample.usage,
                    limit: g.sample.limit,
                    memory: Some(g.at_oom.take().unwrap_or_else(|| g.sample.memory.clone())),
                    detail: Some(
                        "the cgroup was removed before its oom_kill counter was read again: counted from the kernel's report"
                            .into(),
                    ),
                    victim: Some(r.victim),
                    tasks: r.tasks,
                    ..Default::default()
                });
            }
        }
        if !events.is_empty() {
            self.record(events);
        }
    }

    /// Puts on each `oom_kill` event what the memory was, and the kernel's
    /// report of the kill (or, once, why there is none). The counter rises
    /// as the kernel kills, just before it logs the victim's line: an event
    /// whose report has not come yet is held back (see [`Self::release_ooms`])
    /// instead of recorded without it.
    pub(super) fn explain_ooms(&mut self, events: &mut Vec<Event>) {
        if !events.iter().any(|e| e.kind == "oom_kill") {
            return;
        }
        self.drain_kmsg();
        let mut kept = Vec::with_capacity(events.len());
        for mut e in events.drain(..) {
            if e.kind != "oom_kill" {
                kept.push(e);
                continue;
            }
            e.memory = self
                .containers
                .get_mut(&e.cgroup)
                .map(|w| w.at_oom.take().unwrap_or_else(|| w.sample.memory.clone()));
            match (self.take_report(&e.cgroup), &self.kmsg) {
                (Some(r), _) => {
                    e.victim = Some(r.victim);
                    e.tasks = r.tasks;
                    kept.push(e);
                }
                (None, Some(k)) => self.held_ooms.push((Instant::now() + k.lag(), e)),
                (None, None) => {
                    if let Some(why) = self.kmsg_problem.take() {
                        e.detail = Some(why);
                    }
                    kept.push(e);
                }
            }
        }
        *events = kept;
    }

    /// Records the held `oom_kill` events whose report came, and those
    /// that waited long enough (without it).
    pub(super) fn release_ooms(&mut self) {
        if self.held_ooms.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut i = 0;
        while i < self.held_ooms.len() {
            let cgroup = self.held_ooms[i].1.cgroup.clone();
            if let Some(r) = self.take_report(&cgroup) {
                let (_, mut e) = self.held_ooms.remove(i);
                e.victim = Some(r.victim);
                e.tasks = r.tasks;
                ready.push(e);
            } else if self.held_ooms[i].0 <= now {
                let (_, mut e) = self.held_ooms.remove(i);
                self.owed_reports.push((now, cgroup));
                e.detail = Some(
                    "the kernel's report of this kill was not found in its log (it prints at most 10 in 5 s)"
                        .into(),
                );
                ready.push(e);
            } else {
                i += 1;
            }
        }
        if !ready.is_empty() {
            self.record(ready);
        }
    }

    /// The first report of a kill in `cgroup` read so far.
    fn take_report(&mut self, cgroup: &str) -> Option<OomReport> {
        let i = report_of(self.oom_reports.iter().map(|(_, r)| r), cgroup)?;
        Some(self.oom_reports.remove(i).1)
    }
}

/// Which of `reports` (the first, oldest first) is of a kill in `cgroup`:
/// one that names it, as the killed task's cgroup or as the cgroup whose
/// limit was hit, else one whose killed task was below it (a container
/// with cgroups of its own: its counters count their kills too).
fn report_of<'a>(
    reports: impl Iterator<Item = &'a OomReport> + Clone,
    cgroup: &str,
) -> Option<usize> {
    reports
        .clone()
        .position(|r| r.task_memcg == cgroup || r.oom_memcg == cgroup)
        .or_else(|| {
            reports
                .into_iter()
                .position(|r| within(&r.task_memcg, cgroup))
        })
}

/// What a member's reading says, after its parent's trigger fired.
#[derive(Debug, PartialEq, Eq)]
enum Stalled {
    Yes,
    No,
    /// Its stall time grew enough, but `avg10` has not caught up: read it
    /// again an update later, its stall time left as it was.
    NotYet,
}

/// A member stalled if its stall time grew by `stall_us` since it was last
/// read and `avg10` shows it was recent; on the first look, growth that
/// `avg10` does not show yet is looked at again.
fn stalled(grew: u64, avg10: f64, stall_us: u64, min_avg10: f64, second_look: bool) -> Stalled {
    match (grew >= stall_us, avg10 >= min_avg10) {
        (true, true) => Stalled::Yes,
        (true, false) if !second_look => Stalled::NotYet,
        _ => Stalled::No,
    }
}

/// Whether the memory cgroup `path` is `cgroup` or below it.
fn within(path: &str, cgroup: &str) -> bool {
    path.strip_prefix(cgroup)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(oom: &str, task: &str) -> OomReport {
        OomReport {
            oom_memcg: oom.into(),
            task_memcg: task.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_stall_avg10_has_not_caught_up_with_is_looked_at_again_once() {
        let (us, min) = (150_000, 0.75);
        // 150 ms straddling two of the kernel's 2 s periods: at the first
        // update only 75 ms are in avg10, 3.75% × (1 − e^(−2/10)) = 0.68%.
        let half = 3.75 * (1.0 - (-0.2f64).exp());
        assert!(half < min);
        assert_eq!(stalled(us, half, us, min, false), Stalled::NotYet);
        // An update later the rest is in: 0.68% × e^(−0.2) + 0.68%.
        let whole = half * (-0.2f64).exp() + half;
        assert!(whole >= min);
        assert_eq!(stalled(us, whole, us, min, true), Stalled::Yes);
        // Still not there at the second look: no event, no third look.
        assert_eq!(stalled(us, half, us, min, true), Stalled::No);
        // Old stall time (a first reading of a long life) that avg10 does
        // not show as recent, on the second look: no event.
        assert_eq!(stalled(10 * us, 0.0, us, min, true), Stalled::No);
        // Too little growth, whatever avg10 says.
        assert_eq!(stalled(us - 1, 5.0, us, min, false), Stalled::No);
        assert_eq!(stalled(us, 5.0, us, min, false), Stalled::Yes);
    }

    #[test]
    fn a_report_is_found_by_its_cgroup_then_below_it() {
        let reports = [
            report("/pod", "/pod/c1/inner"),
            report("/pod/c2", "/pod/c2"),
            report("/pod/c1", "/pod/c1"),
        ];
        // Named exactly, it comes first, even after one below.
        assert_eq!(report_of(reports.iter(), "/pod/c1"), Some(2));
        assert_eq!(report_of(reports.iter(), "/pod/c2"), Some(1));
        // The pod's limit hit: its report names it.
        assert_eq!(report_of(reports.iter(), "/pod"), Some(0));
        // Only below it: a container's own cgroups.
        assert_eq!(report_of(reports[..1].iter(), "/pod/c1"), Some(0));
        // A sibling whose name begins the same is not below it.
        assert_eq!(report_of(reports[..1].iter(), "/pod/c"), None);
        assert_eq!(report_of(reports.iter(), "/other"), None);
    }
}
