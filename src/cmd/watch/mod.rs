//! `cglimit watch`: records failcnt, OOM and OOM-kill events durably, exports
//! Prometheus metrics, and warns of leaks before the OOM killer fires.
//!
//! Event-driven where the kernel offers it: on v1 an eventfd registered on
//! `memory.oom_control` through `cgroup.event_control` (it also fires when
//! the cgroup is removed); on v2 inotify on `memory.events`. Counters the
//! kernel does not notify about (v1 `memory.failcnt`) and the leak
//! detector's samples are read once per `--interval`. New containers are
//! picked up from `decisions.jsonl` as the hook writes it (inotify), and
//! from the engines and runtime state directories every few ticks.

mod container;
mod decisions;
mod discovery;
mod group;

mod limits;
mod metrics;
mod notify;

use container::{Gone, Watched, oom_total, rises};
use limits::{decided_limits, limit_changes, release_held};
use notify::register_oom;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::cgroup::{self, CgroupDir, Hierarchy};
use crate::cgroup::{procs, stats};
use crate::cli::WatchArgs;
use crate::facts::workload::{self, Kind};
use crate::leak;
use crate::record::history::{self, History};
use crate::record::{self, journal};
use crate::sys::kmsg::{KernelLog, OomReport};
use journal::{Event, EventLog, Who};

/// Epoll data of the watcher's own descriptors; a container's descriptors
/// carry its token shifted left by one, plus [`OOM`]; a parent's pressure
/// trigger, its group's slot with [`GROUP_PSI`].
/// How long after a decision record a limit may still be on its way.
const SETTLING: Duration = Duration::from_secs(5);

const INOTIFY: u64 = 0;
const DEMAND: u64 = 1;
const KMSG: u64 = 2;
/// The discovery thread's answer (above any container's token).
const DISCOVERED: u64 = 1 << 61;
/// SIGTERM or SIGINT: the history is written before the watcher exits.
const STOP: u64 = 3;
const OOM: u64 = 0;
const GROUP_PSI: u64 = 1 << 62;

/// Notifications that could not be set up are tried again every this many
/// ticks.
const RETRY_EVERY: u64 = 10;
/// Descriptors never given to notifications: the watcher's own (scrapes,
/// reads by path, the logs) must still open.
const RESERVED_FDS: u64 = 64;
/// Probes are kept open only while this many more stay free.
const PROBE_RESERVE: u64 = 256;

/// An idle container's leak detector gets its (unchanged) reading every
/// this many ticks.
const LEAK_IDLE_EVERY: u64 = 10;

/// A container still for this many ticks has its probe read only every
/// this many ticks.
const IDLE_PROBE_EVERY: u64 = 5;

/// Readings go into the history every this many ticks, as their peak (and
/// when a container goes, and before the history is written).
const HISTORY_EVERY: u64 = 60;

/// The runtimes' containers are listed at least this often, changed state
/// directories or not (a listing that failed, a renamed podman container).
const RELIST: Duration = Duration::from_secs(60);

/// The limit files of an unchanged container whose limit files are not
/// watched are read every this many ticks (the bound on seeing a limit
/// changed outside cglimit), and all its files if one changed.
const FULL_EVERY: u32 = 30;
/// Every file of an unchanged container is read again after this many
/// ticks: a limit change is seen by its watch or the read above; what is
/// left is `memory.stat`'s drift without usage change.
const FULL_IDLE_EVERY: u32 = 300;

pub fn run(args: &WatchArgs) -> ExitCode {
    // Blocked before any thread starts, so that every thread inherits the
    // mask and the signals reach only the watcher's signalfd.
    let _ = stop_signals().thread_block();
    // Two descriptors per v1 container (eventfd, memory.oom_control) plus
    // the kept-open probes: lift the soft limit to the hard one.
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    if let Some(dir) = &args.policy_dir {
        crate::cmd::apply::follow::spawn(crate::cli::ApplyArgs {
            containers: Vec::new(),
            all: true,
            dry_run: false,
            force: false,
            trust_image_labels: false,
            output: crate::cli::Output::Text,
            watch: true,
            interval: args.interval,
            policy: crate::cli::PolicyArgs {
                policy_dir: dir.clone(),
                insecure_policy_perms: args.insecure_policy_perms,
            },
            state_dir: Some(args.state_dir.clone()),
            sources: args.sources.clone(),
        });
    }
    match Watcher::new(args).and_then(|mut w| w.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ::log::error!("{e}");
            eprintln!("cglimit watch: {e}");
            ExitCode::from(1)
        }
    }
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error("{}: {source}", path.display())]
    StateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: {1}")]
    Kernel(&'static str, #[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

struct Watcher<'a> {
    args: &'a WatchArgs,
    /// Containers that are gone, still exported ([`WatchArgs::retention`]).
    gone: Vec<Gone>,
    /// Events recorded since the watcher started, by kind: host-wide
    /// counters that never reset while it runs and exist from its start.
    totals: std::cell::RefCell<BTreeMap<&'static str, u64>>,
    /// Decision records read, by source and outcome.
    decisions: BTreeMap<(String, String), u64>,
    log: EventLog,
    baselines: HashMap<(String, String), u64>,
    containers: HashMap<String, Watched>,
    inotify: Inotify,
    /// Every descriptor `wait` sleeps on, registered once (data: [`INOTIFY`]
    /// and friends). With 1,000 containers, `poll` re-registered 1,000
    /// eventfds per wake.
    epoll: Epoll,
    tokens: HashMap<u64, String>,
    /// The containers' parents (a slab: a freed slot is reused), and which
    /// slot each parent has.
    groups: Vec<group::Group>,
    group_of: HashMap<std::path::PathBuf, u32>,
    free_groups: Vec<u32>,
    /// Whose file (by token) each inotify watch is on (`memory.events`,
    /// the limits).
    watches: HashMap<WatchDescriptor, u64>,
    /// Whether the limit watches could not all be set and the log said so.
    limit_watch_said: bool,
    /// Limit watches held, and the inotify watches this user may hold
    /// (`fs.inotify.max_user_watches`, read at start).
    limit_watches: u64,
    max_watches: u64,
    next_token: u64,
    /// Where the watcher is in decisions.jsonl.
    tail: decisions::Tail,
    /// The kernel log, for its OOM reports (none where it cannot be read).
    kmsg: Option<KernelLog>,
    /// Why the kernel log cannot be read, until an OOM kill event said it.
    kmsg_problem: Option<String>,
    /// Reports not matched to an event yet, with when they were read.
    oom_reports: Vec<(Instant, OomReport)>,
    /// `oom_kill` events waiting for their report, until then.
    held_ooms: Vec<(Instant, Event)>,
    /// Cgroups of `oom_kill` events recorded without their report, with
    /// when: a report that comes later is theirs, not another kill.
    owed_reports: Vec<(Instant, String)>,
    demand: Arc<metrics::Demand>,
    started: Instant,
    /// Descriptors this process may open (the soft limit, read again at
    /// each retry: `prlimit` can raise it while the watcher runs).
    nofile: u64,
    /// Probes kept open: they use only what the notifications leave.
    probes: u64,
    /// Notification descriptors open (v1 eventfds).
    notifications: u64,
    /// Whether a container's notifications could not be set up and the log
    /// said so (said once, until every container has them again).
    unarmed_said: bool,
    /// Readings of live cgroups that failed (not counting those gone).
    read_failures: std::cell::Cell<u64>,
    read_failure_said: std::cell::Cell<bool>,
    /// SIGTERM and SIGINT, read in the loop.
    stop: nix::sys::signalfd::SignalFd,
    /// What each workload used, for `recommend` (see [`history`]).
    history: std::cell::RefCell<History>,
    history_saved: Instant,
    /// Events that could not be appended (state dir full or read-only):
    /// kept in order and retried every tick, so a full disk delays lines
    /// (with their original times) instead of losing them.
    unwritten: std::cell::RefCell<Vec<Event>>,
    /// The `--cgroup-parent` directories' watches, whether a cgroup was
    /// made or removed under one since they were last listed, and when.
    parent_wds: Vec<(String, WatchDescriptor)>,
    parents_changed: bool,
    /// Cgroups made under a `--cgroup-parent` since it was last listed:
    /// the parent and the name inotify gave.
    made_under_parents: Vec<(String, String)>,
    parents_listed: Instant,
    /// Finds containers without holding the loop up.
    discovery: discovery::Discovery,
    /// The runtimes' state directories as last listed, and when.
    runtime_roots: Vec<crate::facts::discover::RootState>,
    runtimes_listed: Instant,
    /// Whether some container may have a recheck due (see
    /// [`Watched::recheck_at`]).
    rechecks_pending: bool,
    /// The kernel keeps no memory pressure (no PSI): no triggers tried.
    pressure_absent: bool,
    /// Whether a trigger that could not be set up was said (once).
    pressure_said: bool,
}

/// At most this many events wait for a full disk; older ones are dropped
/// (and the drop logged) beyond it.
const MAX_UNWRITTEN: usize = 100_000;

impl<'a> Watcher<'a> {
    fn new(args: &'a WatchArgs) -> Result<Self, WatchError> {
        let log = EventLog::new(&args.state_dir, args.rotate_bytes).map_err(|source| {
            WatchError::StateDir {
                path: args.state_dir.clone(),
                source,
            }
        })?;
        let baselines = log.baselines();
        let history = History::load(&args.state_dir).unwrap_or_else(|e| {
            // Kept aside, not overwritten: it may still be read by hand.
            let aside = args.state_dir.join(format!("{}.unreadable", history::FILE));
            let _ = std::fs::rename(History::path(&args.state_dir), &aside);
            ::log::warn!("{e}; starting a new history ({} kept)", aside.display());
            History::default()
        });
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| WatchError::Kernel("inotify", e.into()))?;
        let demand = metrics::Demand::new().map_err(|e| WatchError::Kernel("eventfd", e))?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .and_then(|ep| {
                ep.add(
                    inotify.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, INOTIFY),
                )?;
                ep.add(
                    demand.wake.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, DEMAND),
                )?;
                Ok(ep)
            })
            .map_err(|e| WatchError::Kernel("epoll", e.into()))?;
        let discovery = discovery::Discovery::start(args.sources.clone())
            .and_then(|d| {
                epoll.add(
                    d.ready.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, DISCOVERED),
                )?;
                Ok(d)
            })
            .map_err(|e| WatchError::Kernel("discovery thread", e))?;
        let stop = nix::sys::signalfd::SignalFd::with_flags(
            &stop_signals(),
            nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
        )
        .and_then(|fd| {
            epoll.add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, STOP))?;
            Ok(fd)
        })
        .map_err(|e| WatchError::Kernel("signalfd", e.into()))?;
        let (kmsg, kmsg_problem) = match KernelLog::open() {
            Ok(k) => {
                let ev = EpollEvent::new(EpollFlags::EPOLLIN, KMSG);
                match epoll.add(k.fd(), ev) {
                    Ok(()) => {
                        ::log::info!("the kernel's OOM reports are read from {}", k.name());
                        (Some(k), None)
                    }
                    Err(e) => (None, Some(format!("cannot wait on {}: {e}", k.name()))),
                }
            }
            Err(e) => (
                None,
                Some(format!(
                    "the kernel's OOM reports are not kept: {e}; the watcher needs CAP_SYSLOG, or to read the journal"
                )),
            ),
        };
        if let Some(why) = &kmsg_problem {
            ::log::warn!("{why}");
        }
        if let Some(addr) = &args.listen {
            let l = std::net::TcpListener::bind(addr).map_err(|source| WatchError::Listen {
                addr: addr.clone(),
                source,
            })?;
            metrics::serve(l, Arc::clone(&demand));
        }
        Ok(Watcher {
            args,
            gone: Vec::new(),
            totals: std::cell::RefCell::new(metrics::HOST_KINDS.iter().map(|k| (*k, 0)).collect()),
            decisions: metrics::DECISION_KEYS
                .iter()
                .map(|(s, o)| ((s.to_string(), o.to_string()), 0))
                .collect(),
            log,
            baselines,
            containers: HashMap::new(),
            inotify,
            epoll,
            tokens: HashMap::new(),
            watches: HashMap::new(),
            groups: Vec::new(),
            group_of: HashMap::new(),
            free_groups: Vec::new(),
            limit_watch_said: false,
            limit_watches: 0,
            max_watches: std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(8192),
            // Container data starts at 4: 0 to 2 are the watcher's own.
            next_token: 2,
            kmsg,
            kmsg_problem,
            oom_reports: Vec::new(),
            held_ooms: Vec::new(),
            owed_reports: Vec::new(),
            tail: decisions::Tail::default(),
            demand,
            started: Instant::now(),
            history: std::cell::RefCell::new(history),
            history_saved: Instant::now(),
            nofile: nofile(),
            probes: 0,
            notifications: 0,
            unarmed_said: false,
            read_failures: std::cell::Cell::new(0),
            read_failure_said: std::cell::Cell::new(false),
            stop,
            unwritten: std::cell::RefCell::new(Vec::new()),
            discovery,
            runtime_roots: Vec::new(),
            runtimes_listed: Instant::now(),
            parent_wds: Vec::new(),
            parents_changed: true,
            made_under_parents: Vec::new(),
            parents_listed: Instant::now(),
            rechecks_pending: false,
            pressure_absent: false,
            pressure_said: false,
        })
    }

    fn run(&mut self) -> Result<(), WatchError> {
        let mut next_tick = Instant::now();
        let mut tick_no: u64 = 0;
        loop {
            let now = Instant::now();
            if now >= next_tick {
                if tick_no.is_multiple_of(10) {
                    self.discover();
                }
                if tick_no.is_multiple_of(RETRY_EVERY) {
                    self.retry_unarmed();
                }
                self.ingest_decisions();
                self.sample_all(tick_no);
                // Retries what a full or read-only state dir refused.
                self.record(Vec::new());
                if self.history_saved.elapsed() >= self.args.history_save {
                    self.save_history();
                }
                tick_no += 1;
                next_tick = now + self.args.interval;
            }
            let mut wake = next_tick;
            // Only after an OOM notification does any container wait for a
            // recheck: otherwise no pass over all of them.
            if self.rechecks_pending {
                let rechecks: Vec<String> = self
                    .containers
                    .iter()
                    .filter(|(_, w)| w.recheck_at.is_some_and(|t| t <= Instant::now()))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in rechecks {
                    let wait = self.containers.get_mut(&k).and_then(|w| w.oom_wait.take());
                    self.read_one(&k);
                    if let Some((until, before)) = wait {
                        self.await_kill(&k, before, until);
                    }
                }
                self.rechecks_pending = false;
                for w in self.containers.values() {
                    if let Some(t) = w.recheck_at {
                        wake = wake.min(t);
                        self.rechecks_pending = true;
                    }
                }
            }
            if let Some(t) = self.scan_groups() {
                wake = wake.min(t);
            }
            self.release_ooms();
            for (t, _) in &self.held_ooms {
                wake = wake.min(*t);
            }
            self.wait(wake.saturating_duration_since(Instant::now()));
        }
    }

    fn record(&self, events: Vec<Event>) {
        {
            let mut totals = self.totals.borrow_mut();
            for e in &events {
                let n = match (e.old, e.new) {
                    (Some(old), Some(new)) => new.saturating_sub(old),
                    _ => 1,
                };
                if let Some(k) = metrics::host_kind(&e.kind) {
                    *totals.entry(k).or_insert(0) += n;
                }
            }
        }
        self.remember(&events);
        for e in &events {
            ::log::info!(
                "{} {} {}: {:?} -> {:?}",
                e.kind,
                e.container.id,
                e.cgroup,
                e.old,
                e.new
            );
        }
        let mut pending = self.unwritten.borrow_mut();
        let was_failing = !pending.is_empty();
        let new = events.len();
        pending.extend(events);
        if pending.is_empty() {
            return;
        }
        match self.log.append(&pending) {
            Ok(()) => {
                if was_failing {
                    ::log::info!("recorded {} delayed events", pending.len());
                }
                pending.clear();
            }
            Err(e) => {
                if new > 0 {
                    ::log::error!(
                        "cannot record events ({e}); {} kept, retried every tick",
                        pending.len()
                    );
                }
                if pending.len() > MAX_UNWRITTEN {
                    let n = pending.len() - MAX_UNWRITTEN;
                    pending.drain(..n);
                    ::log::error!("dropped the {n} oldest unrecorded events");
                }
            }
        }
    }

    /// Reads one container's counters now; records rises. A cgroup that is
    /// gone is dropped (after its last counters were read).
    fn read_one(&mut self, key: &str) {
        let Some(w) = self.containers.get_mut(key) else {
            return;
        };
        w.recheck_at = None;
        w.since_full = 0;
        match w.dir.open().and_then(|d| stats::read(&d)) {
            Ok(s) => {
                if s.usage != w.sample.usage {
                    w.still = 0;
                }
                let mut events = rises(w, &s, &self.baselines);
                let now = [s.limit, s.swap_limit, s.high];
                if let Some(until) = w.settling.filter(|t| Instant::now() < *t) {
                    // cglimit's own change, perhaps still being made: the
                    // decision stays the reference; what it did not say is
                    // taken from this reading. A difference is read again
                    // once settled (a write seen at once by its watch
                    // would otherwise wait for the next full read).
                    let mut differs = false;
                    for (known, read) in w.limits.iter_mut().zip(now) {
                        differs |= *known.get_or_insert(read) != read;
                    }
                    if differs {
                        w.recheck_at = Some(until);
                        self.rechecks_pending = true;
                    }
                } else {
                    let changed = limit_changes(w, &s, now);
                    if !changed.is_empty() && w.held.is_none() {
                        w.held = Some((Instant::now(), changed));
                    }
                    w.limits = now.map(Some);
                }
                events.extend(release_held(w, false));
                w.sample = s;
                self.explain_ooms(&mut events);
                self.record(events);
            }
            Err(e) => {
                // Only a cgroup whose directory is gone is gone: a read that
                // fails on a live one (out of descriptors, say) is counted,
                // said once, and tried again next tick.
                if w.dir.path().exists() {
                    self.read_failures.set(self.read_failures.get() + 1);
                    if !self.read_failure_said.replace(true) {
                        ::log::warn!(
                            "{}: cannot read it: {e}; kept and read again every tick (cglimit_read_failures_total counts these; said once)",
                            w.cgroup
                        );
                    }
                } else {
                    ::log::info!("{}: gone ({e})", w.cgroup);
                    flush_history(&self.history, w, epoch_seconds() as u64);
                    let last = release_held(w, true);
                    let at = epoch_seconds();
                    let oom_total = oom_total(w, &self.baselines);
                    self.gone.push(Gone {
                        who: w.who.clone(),
                        workload: w.workload.clone(),
                        policy: w.policy.clone(),
                        cgroup: w.cgroup.clone(),
                        sample: w.sample.clone(),
                        oom_total,
                        at_oom: w.at_oom.take(),
                        limit_changes: w.limit_changes,
                        at,
                        until: Instant::now() + self.args.retention,
                    });
                    for wd in w.wd.iter().chain(w.limit_wds.iter().flatten()) {
                        // Gone with the cgroup's files, mostly.
                        let _ = self.inotify.rm_watch(*wd);
                        self.watches.remove(wd);
                    }
                    self.limit_watches -= w.limit_wds.iter().flatten().count() as u64;
                    if w.probe.is_some() {
                        self.probes -= 1;
                    }
                    self.notifications -= u64::from(w.oom.is_some());
                    let g = w.group as usize;
                    self.groups[g].members -= 1;
                    self.groups[g].leave(w.sample.usage);
                    if self.groups[g].members == 0 {
                        self.groups[g].psi = None;
                        self.groups[g].scan_at = None;
                        self.groups[g].rescan = false;
                        self.group_of.remove(&self.groups[g].parent);
                        self.free_groups.push(g as u32);
                    }
                    // Its descriptors leave the epoll set as they close.
                    self.tokens.remove(&w.token);
                    self.containers.remove(key);
                    if !last.is_empty() {
                        self.record(last);
                    }
                    // A kill its counters were not read for in time (the
                    // cgroup went with its victim) is in the kernel's log.
                    self.drain_kmsg();
                }
            }
        }
    }

    fn sample_all(&mut self, tick: u64) {
        let now = Instant::now();
        self.gone.retain(|g| g.until > now);
        let t = self.started.elapsed().as_secs_f64();
        let epoch = epoch_seconds() as u64;
        // Who needs a full read: one pass, the probe read in place.
        // One pass: an idle container's struct is touched once a tick (at
        // 10,000 containers the passes cost their cache misses).
        let mut fresh: Vec<String> = Vec::new();
        let mut events = Vec::new();
        for (k, w) in self.containers.iter_mut() {
            let g = &mut self.groups[w.group as usize];
            if unchanged(w, tick, g.quiet()) {
                after_reading(w, tick, t, epoch, &self.history, &mut events);
                g.count(still(w), w.sample.usage);
            } else {
                fresh.push(k.clone());
            }
        }
        for k in &fresh {
            self.read_one(k);
            if let Some(w) = self.containers.get_mut(k) {
                after_reading(w, tick, t, epoch, &self.history, &mut events);
                self.groups[w.group as usize].count(still(w), w.sample.usage);
            }
        }
        for g in &mut self.groups {
            g.settle();
        }
        if !events.is_empty() {
            self.record(events);
        }
    }

    /// The slot of `dir`'s parent in [`Watcher::groups`], made if new.
    fn join_group(&mut self, dir: &container::Place) -> u32 {
        let parent = dir.path().parent().unwrap_or(dir.path());
        let slot = match self.group_of.get(parent) {
            Some(slot) => *slot,
            None => {
                let g = group::Group::new(parent, &dir.hierarchy);
                let slot = match self.free_groups.pop() {
                    Some(slot) => {
                        self.groups[slot as usize] = g;
                        slot
                    }
                    None => {
                        self.groups.push(g);
                        self.groups.len() as u32 - 1
                    }
                };
                self.group_of.insert(parent.to_path_buf(), slot);
                slot
            }
        };
        self.groups[slot as usize].members += 1;
        if dir.hierarchy == Hierarchy::V2 && self.groups[slot as usize].psi.is_none() {
            self.arm_group(slot);
        }
        slot
    }

    fn render(&self) {
        let mut rows: Vec<metrics::Row> = self
            .containers
            .values()
            .map(|w| metrics::Row {
                who: &w.who,
                workload: &w.workload.0,
                workload_kind: w.workload.1,
                policy: w.policy.as_deref(),
                sample: &w.sample,
                oom_total: oom_total(w, &self.baselines),
                leak_rate: w.leak.rate(),
                leak_suspected: w.leak.suspected().is_some(),
                limit_changes: w.limit_changes,
                gone_at: None,
            })
            .collect();
        rows.extend(self.gone.iter().map(|g| metrics::Row {
            who: &g.who,
            workload: &g.workload.0,
            workload_kind: g.workload.1,
            policy: g.policy.as_deref(),
            sample: &g.sample,
            oom_total: g.oom_total,
            leak_rate: 0.0,
            leak_suspected: false,
            limit_changes: g.limit_changes,
            gone_at: Some(g.at),
        }));
        let host = metrics::Host {
            totals: &self.totals.borrow(),
            decisions: &self.decisions,
            unarmed: self.unarmed(),
            read_failures: self.read_failures.get(),
        };
        self.demand.done(metrics::render(&rows, &host));
    }

    /// Asks the discovery thread for the containers of the engines and
    /// runtimes, as `apply` finds them, and for the new cgroups under the
    /// parents; unless it is still answering the last time's.
    fn discover(&mut self) {
        if self.discovery.busy() {
            return;
        }
        // The runtimes are listed again (a process each, and podman's)
        // only when their state directories changed, or once a minute.
        let roots = crate::facts::discover::runtime_roots_state(&self.args.sources);
        let runtimes = roots != self.runtime_roots || self.runtimes_listed.elapsed() >= RELIST;
        if runtimes {
            self.runtime_roots = roots;
            self.runtimes_listed = Instant::now();
        }
        // The cgroup parents are listed (ten thousand entries take 12 ms)
        // once a minute and when their watches say something other than
        // a cgroup made; a cgroup made is taken by the name its watch gave.
        let parents = self.parents_changed || self.parents_listed.elapsed() >= RELIST;
        let mut made = std::mem::take(&mut self.made_under_parents);
        if parents {
            self.parents_changed = !self.watch_parents();
            self.parents_listed = Instant::now();
            made.clear();
        }
        made.retain(|(parent, name)| {
            !self
                .containers
                .contains_key(&crate::facts::discover::child_path(parent, name))
        });
        let known = match parents {
            true => self.containers.keys().cloned().collect(),
            false => Default::default(),
        };
        self.discovery.ask(discovery::Request {
            runtimes,
            parents,
            known,
            made,
        });
    }

    /// What the discovery thread found: each container watched (a known
    /// one's names kept up to date).
    fn discovered(&mut self) {
        let Some(found) = self.discovery.take() else {
            return;
        };
        // Listed again at the next pass until it goes through.
        self.parents_changed |= found.parents_trouble;
        for (place, facts) in found.containers {
            let who = Who {
                id: facts.id.clone(),
                name: facts.name.clone(),
                image: facts.image.clone(),
            };
            let cg = facts.cgroup.clone().unwrap_or_default();
            let pod = (facts.namespace.as_deref(), facts.pod.as_deref());
            self.add(cg, who, place, pod);
        }
        let problems = found.problems;
        if found.runtimes && found.unsettled {
            // Something was not taken (a listing failed, a container still
            // being created): listed again at the next pass.
            self.runtime_roots.clear();
        }
        for p in problems {
            // Out of descriptors is the watcher's problem, not the
            // container's: counted, said once, found at the next pass.
            if p.message.contains("EMFILE") || p.message.contains("Too many open files") {
                self.read_failures.set(self.read_failures.get() + 1);
                if !self.read_failure_said.replace(true) {
                    ::log::warn!(
                        "{}: {}; looked for again every 10 ticks (cglimit_read_failures_total counts these; said once)",
                        p.container,
                        p.message
                    );
                }
            } else {
                ::log::debug!("{}: {}", p.container, p.message);
            }
        }
    }

    /// Inotify watches on the `--cgroup-parent` directories, for a cgroup
    /// made or removed under one: whether every one has its watch.
    fn watch_parents(&mut self) -> bool {
        let mut all = true;
        for parent in &self.args.sources.cgroup_parents {
            if self.parent_wds.iter().any(|(p, _)| p == parent) {
                continue;
            }
            let flags =
                AddWatchFlags::IN_CREATE | AddWatchFlags::IN_DELETE | AddWatchFlags::IN_ONLYDIR;
            match cgroup::open_path(parent)
                .map_err(std::io::Error::other)
                .and_then(|d| Ok(self.inotify.add_watch(d.path(), flags)?))
            {
                Ok(wd) => self.parent_wds.push((parent.clone(), wd)),
                Err(_) => all = false,
            }
        }
        all
    }

    /// Watches a container (once): `pod` is its Kubernetes namespace and
    /// pod, where known.
    fn add(
        &mut self,
        cgroup: String,
        who: Who,
        dir: container::Place,
        pod: (Option<&str>, Option<&str>),
    ) {
        // A cgroup back under the same path is a new container.
        self.gone.retain(|g| g.cgroup != cgroup);
        let key = |who: &Who| {
            workload::key(
                self.args.workload_by,
                workload::Of {
                    id: &who.id,
                    name: who.name.as_deref(),
                    image: who.image.as_deref(),
                    namespace: pod.0,
                    pod: pod.1,
                },
            )
        };
        if let Some(w) = self.containers.get(&cgroup) {
            // Names arrive later than cgroups sometimes: keep the best known.
            let mut better = w.who.clone();
            better.name = better.name.or(who.name);
            better.image = better.image.or(who.image);
            if better != w.who {
                let k = key(&better);
                if k != w.workload {
                    self.history
                        .borrow_mut()
                        .container(&k.0, k.1, display_name(&better));
                }
                if let Some(w) = self.containers.get_mut(&cgroup) {
                    w.who = better;
                    w.workload = k;
                }
            }
            return;
        }
        let k = key(&who);
        self.history
            .borrow_mut()
            .container(&k.0, k.1, display_name(&who));
        let group = self.join_group(&dir);
        let w = Watched {
            who,
            workload: k,
            policy: None,
            unrecorded: None,
            cgroup: cgroup.clone(),
            dir,
            oom: None,
            wd: None,
            limit_wds: [None; 3],
            missing: None,
            sample: stats::Sample::default(),
            oom_seen: 0,
            leak: leak::Leaks::new(self.args.leak_window, self.args.leak_threshold as f64),
            leak_hot: false,
            procs_before: None,
            at_oom: None,
            recheck_at: None,
            oom_wait: None,
            probe: None,
            since_full: 0,
            still: 0,
            psi_total: None,
            last_pressure: None,
            token: self.next_token,
            group,
            limits: [None; 3],
            limit_changes: 0,
            settling: None,
            held: None,
        };
        self.next_token += 1;
        self.tokens.insert(w.token, cgroup.clone());
        self.containers.insert(cgroup.clone(), w);
        self.arm(&cgroup);
        self.read_one(&cgroup);
        // Full reads spread over the ticks, not all containers found
        // together read together.
        if let Some(w) = self.containers.get_mut(&cgroup) {
            w.since_full = (w.token % u64::from(w.full_every())) as u32;
        }
    }

    /// Sets up what is missing of a container's notifications (its OOM
    /// eventfd or `memory.events` watch, its first stall reading), then its
    /// probe where descriptors allow. The notifications come first: a
    /// container without a probe is read by path, one without its OOM
    /// notification would miss an OOM.
    fn arm(&mut self, key: &str) {
        let room_for_limits = self.room_for_limit_watches();
        let Some(w) = self.containers.get_mut(key) else {
            return;
        };
        let mut why = Vec::new();
        // Descriptors left for notifications; probes count against them
        // too, since they are open.
        let free = self
            .nofile
            .saturating_sub(RESERVED_FDS + self.notifications + self.probes);
        let full = || {
            format!(
                "{} of {} descriptors in use (RLIMIT_NOFILE)",
                self.nofile - free,
                self.nofile
            )
        };
        match w.dir.hierarchy {
            Hierarchy::V1 if w.oom.is_none() && free == 0 => {
                why.push(format!("no OOM notification: {}", full()))
            }
            Hierarchy::V1 if w.oom.is_none() => match w
                .dir
                .open()
                .map_err(Into::into)
                .and_then(|d| register_oom(&d))
            {
                Ok(efd) => {
                    let ev = EpollEvent::new(EpollFlags::EPOLLIN, w.token << 1 | OOM);
                    match self.epoll.add(efd.as_fd(), ev) {
                        Ok(()) => {
                            w.oom = Some(efd);
                            self.notifications += 1;
                        }
                        Err(e) => why.push(format!("no OOM notification: epoll: {e}")),
                    }
                }
                Err(e) => why.push(format!("no OOM notification: {e}")),
            },
            Hierarchy::V2 if w.wd.is_none() => {
                match self.inotify.add_watch(
                    &w.dir.path().join("memory.events"),
                    AddWatchFlags::IN_MODIFY,
                ) {
                    Ok(wd) => {
                        w.wd = Some(wd);
                        self.watches.insert(wd, w.token);
                    }
                    Err(e) => why.push(format!("no memory.events watch: {e}")),
                }
            }
            _ => {}
        }
        if w.dir.hierarchy == Hierarchy::V2 && w.psi_total.is_none() {
            w.psi_total = notify::stall(w.dir.path()).map(|(_, total, _)| total);
        }
        // Limit watches are a saving, `memory.events` watches (v2) are how
        // OOM kills are seen.
        if w.limit_wds[0].is_none() && !room_for_limits && !self.limit_watch_said {
            self.limit_watch_said = true;
            ::log::warn!(
                "{}: its limit files are not watched: limit watches take at most half of fs.inotify.max_user_watches ({}) less one per container; a change to them is seen within {FULL_EVERY} ticks instead of at once (said once)",
                w.cgroup,
                self.max_watches
            );
        }
        if w.limit_wds[0].is_none() && room_for_limits {
            match watch_limits(&self.inotify, &w.dir) {
                Ok(wds) => {
                    for wd in wds.iter().flatten() {
                        self.watches.insert(*wd, w.token);
                        self.limit_watches += 1;
                    }
                    w.limit_wds = wds;
                }
                Err(e) if !self.limit_watch_said => {
                    self.limit_watch_said = true;
                    ::log::warn!(
                        "{}: its limit files cannot be watched: {e}; a change to them is seen within {FULL_EVERY} ticks instead of at once (fs.inotify.max_user_watches; said once, tried again every {RETRY_EVERY} ticks)",
                        w.cgroup
                    );
                }
                Err(_) => {}
            }
        }
        // Probes take what every container's notification leaves.
        let room = self
            .nofile
            .saturating_sub(RESERVED_FDS + PROBE_RESERVE + self.containers.len() as u64);
        let Some(w) = self.containers.get_mut(key) else {
            return;
        };
        if w.probe.is_none()
            && self.probes < room
            && let Ok(p) = w.dir.open().and_then(|d| stats::Probe::open(&d))
        {
            w.probe = Some(p);
            self.probes += 1;
        }
        w.missing = (!why.is_empty()).then(|| why.join("; "));
        if let Some(m) = &w.missing
            && !self.unarmed_said
        {
            self.unarmed_said = true;
            ::log::warn!(
                "{}: {m}; tried again every {RETRY_EVERY} ticks, counted in cglimit_notification_failures (said once: raise LimitNOFILE / ulimit -n if it is out of descriptors)",
                w.cgroup
            );
        }
    }

    /// Tries again what could not be set up; says when every container has
    /// its notifications again.
    fn retry_unarmed(&mut self) {
        self.nofile = nofile();
        let room = self.room_for_limit_watches();
        let keys: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, w)| {
                w.missing.is_some() || w.probe.is_none() || w.limit_wds[0].is_none() && room
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.arm(&k);
        }
        for slot in 0..self.groups.len() {
            let g = &self.groups[slot];
            if g.unified && g.members > 0 && g.psi.is_none() {
                self.arm_group(slot as u32);
            }
        }
        if self.unarmed_said && self.unarmed() == 0 {
            self.unarmed_said = false;
            ::log::info!("every watched container has its notifications again");
        }
    }

    /// Whether another container's limit watches fit: they take at most
    /// half of the user's inotify watches, less one per container, so that
    /// v2's `memory.events` watches (how OOM kills are seen) have room.
    fn room_for_limit_watches(&self) -> bool {
        match self.args.limit_watches {
            Some(n) => n >= self.limit_watches + 3,
            None => self.max_watches / 2 >= self.limit_watches + 3 + self.containers.len() as u64,
        }
    }

    /// Containers whose notifications could not be set up.
    fn unarmed(&self) -> u64 {
        self.containers
            .values()
            .filter(|w| w.missing.is_some())
            .count() as u64
    }
}

/// Whether a container is idle: usage as at the last full read, and a full
/// read not yet due ([`Watched::full_every`]). Its probe (one `pread`) is
/// read every tick while it moved lately, every [`IDLE_PROBE_EVERY`] ticks
/// once it has been still for as many; without a probe (descriptors ran
/// short) its usage is read by path.
fn unchanged(w: &mut Watched, tick: u64, quiet: bool) -> bool {
    w.since_full += 1;
    w.still = w.still.saturating_add(1);
    if w.since_full >= w.full_every() {
        return false;
    }
    // Limits not watched: read every FULL_EVERY ticks (spread by token),
    // the limit files alone; a full read only if one changed.
    if w.limit_wds[0].is_none()
        && (w.token + tick).is_multiple_of(u64::from(FULL_EVERY))
        && !w
            .dir
            .open()
            .and_then(|d| stats::limits(&d))
            .is_ok_and(|l| l == [w.sample.limit, w.sample.swap_limit, w.sample.high])
    {
        return false;
    }
    if w.still > IDLE_PROBE_EVERY as u32
        && (!(w.token + tick).is_multiple_of(IDLE_PROBE_EVERY) || quiet && still(w))
    {
        return true;
    }
    let usage = match &w.probe {
        Some(p) => p.quick().map(|q| q.usage),
        None => w.dir.usage(),
    };
    match usage {
        // Near its limit a container may hit it without its usage moving
        // (v1 failcnt is not in the probe): read everything.
        Ok(u) if near_limit(u, w.sample.limit) => false,
        Ok(u) => u == w.sample.usage,
        Err(_) => false,
    }
}

/// Whether its parent's residual speaks for `w` ([`group`]): still for
/// a while, and not near its limit.
fn still(w: &Watched) -> bool {
    w.still > IDLE_PROBE_EVERY as u32 && !near_limit(w.sample.usage, w.sample.limit)
}

fn near_limit(usage: u64, limit: Option<u64>) -> bool {
    limit.is_some_and(|l| usage >= l - l / 16)
}

/// What follows a container's reading each tick, read afresh or not: held
/// changes released, the history's peak, the leak detector.
fn after_reading(
    w: &mut Watched,
    tick: u64,
    t: f64,
    epoch: u64,
    history: &std::cell::RefCell<History>,
    events: &mut Vec<Event>,
) {
    events.extend(release_held(w, false));
    // Into the history every HISTORY_EVERY ticks (spread by token), the
    // peak of the readings since.
    let ws = w.sample.working_set();
    w.unrecorded = Some(match w.unrecorded {
        Some((peak, n)) => (peak.max(ws), n + 1),
        None => (ws, 1),
    });
    if (w.token + tick).is_multiple_of(HISTORY_EVERY) {
        flush_history(history, w, epoch);
    }
    // An idle container's reading is the last one again: the leak detector
    // gets it every LEAK_IDLE_EVERY ticks (so that a warning still clears
    // when growth stops), a growing one every tick.
    let read_now = w.since_full == 0;
    let idle_due = (w.token + tick).is_multiple_of(LEAK_IDLE_EVERY);
    if !(read_now || idle_due || w.leak_hot) {
        return;
    }
    if let Some(e) = leak_step(w, t) {
        events.push(e);
    }
}

/// One step of a container's leak detector, and the event it makes.
fn leak_step(w: &mut Watched, t: f64) -> Option<Event> {
    let (change, growth) = w.leak.push(t, &w.sample.memory);
    // Only a push changes the detectors: what the loop asks of them every
    // tick is kept here, so an idle container's windows are not touched.
    w.leak_hot = w.leak.leaning() || w.leak.suspected().is_some();
    // Who holds what is read only while some kind grows.
    if w.leak.leaning() {
        if w.procs_before.is_none() {
            w.procs_before = w
                .dir
                .open()
                .and_then(|d| procs::read(&d))
                .ok()
                .map(|p| (t, p));
        }
    } else if w.leak.suspected().is_none() {
        w.procs_before = None;
    }
    let (kind, rate) = match change {
        leak::Change::None => return None,
        leak::Change::Suspected(rate) => ("leak_suspected", Some(rate)),
        leak::Change::Cleared => ("leak_cleared", None),
    };
    let ttl = rate
        .zip(w.sample.limit)
        .map(|(r, l)| l.saturating_sub(w.sample.usage) as f64 / r);
    // Who grew since growth began to show; else who holds the most now.
    let process = match (rate, &w.procs_before) {
        (Some(_), before) => w
            .dir
            .open()
            .and_then(|d| procs::read(&d))
            .ok()
            .and_then(|mut now| {
                if let Some((t0, before)) = before {
                    procs::set_growth(&mut now, before, t - t0);
                }
                procs::top_grower(&now).or(now.first()).cloned()
            }),
        _ => None,
    };
    Some(Event {
        rate,
        time_to_limit: ttl,
        growth: growth.map(String::from),
        process,
        memory: Some(w.sample.memory.clone()),
        ..w.event(kind, &w.sample)
    })
}

/// Puts what was read of `w` since the last time into its workload's
/// history.
fn flush_history(history: &std::cell::RefCell<History>, w: &mut Watched, now: u64) {
    if let Some((peak, n)) = w.unrecorded.take() {
        history.borrow_mut().sample(
            &w.workload.0,
            w.workload.1,
            now,
            history::Reading {
                peak,
                samples: n,
                limit: w.sample.limit,
                policy: w.policy.as_deref(),
            },
        );
    }
}

/// Inotify watches on `dir`'s limit files (a file the hierarchy does not
/// have, swap without swap accounting, is skipped); none if one fails.
fn watch_limits(
    inotify: &Inotify,
    dir: &container::Place,
) -> nix::Result<[Option<WatchDescriptor>; 3]> {
    let mut wds = [None; 3];
    for (i, file) in cgroup::limit_files(&dir.hierarchy).into_iter().enumerate() {
        match inotify.add_watch(&dir.path().join(file), AddWatchFlags::IN_MODIFY) {
            Ok(wd) => wds[i] = Some(wd),
            // The swap file, without swap accounting.
            Err(nix::errno::Errno::ENOENT) if i == 1 => {}
            Err(e) => {
                for wd in wds.into_iter().flatten() {
                    let _ = inotify.rm_watch(wd);
                }
                return Err(e);
            }
        }
    }
    Ok(wds)
}

/// The soft limit on open descriptors.
fn nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
}

fn libc_enotsup() -> i32 {
    nix::errno::Errno::EOPNOTSUPP as i32
}

fn stop_signals() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGTERM);
    set.add(nix::sys::signal::Signal::SIGINT);
    set
}

fn epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// How a container is named in its workload's history.
fn display_name(who: &Who) -> &str {
    who.name.as_deref().unwrap_or(&who.id)
}

impl Watcher<'_> {
    /// Puts OOM kills, limit hits and suspected leaks into their
    /// workload's history.
    fn remember(&self, events: &[Event]) {
        let mut h = self.history.borrow_mut();
        for e in events {
            let Some((workload, name)) = self
                .containers
                .get(&e.cgroup)
                .map(|w| (&w.workload, display_name(&w.who)))
                .or_else(|| {
                    self.gone
                        .iter()
                        .find(|g| g.cgroup == e.cgroup)
                        .map(|g| (&g.workload, display_name(&g.who)))
                })
            else {
                continue;
            };
            let at = epoch_seconds() as u64;
            let (key, kind) = (&workload.0, workload.1);
            match e.kind.as_str() {
                "oom_kill" => {
                    let n = match (e.old, e.new) {
                        (Some(old), Some(new)) => new.saturating_sub(old).max(1),
                        _ => 1,
                    };
                    for _ in 0..n.min(history::MAX_EVENTS as u64) {
                        h.oom(
                            key,
                            kind,
                            history::Oom {
                                at,
                                container: name.to_string(),
                                // Killed at its limit: the usage then.
                                usage: e.limit.unwrap_or(e.usage).max(e.usage),
                            },
                        );
                    }
                }
                "failcnt" | "max" => h.hit(
                    key,
                    kind,
                    history::Hit {
                        at,
                        count: e.new.unwrap_or(0).saturating_sub(e.old.unwrap_or(0)).max(1),
                        usage: e.usage,
                    },
                ),
                "leak_suspected" => h.leak(
                    key,
                    kind,
                    history::Leak {
                        at,
                        container: name.to_string(),
                        rate: e.rate.unwrap_or(0.0),
                        growth: e.growth.clone(),
                    },
                ),
                _ => {}
            }
        }
    }

    /// SIGTERM or SIGINT: the history is kept, then the watcher exits.
    fn stop(&mut self) -> ! {
        let signal = self
            .stop
            .read_signal()
            .ok()
            .flatten()
            .map(|s| s.ssi_signo)
            .unwrap_or(0);
        ::log::info!("stopping (signal {signal}); writing the history");
        self.save_history();
        std::process::exit(0)
    }

    /// Writes the history (bounded first); a failure is logged and retried
    /// at the next save.
    fn save_history(&mut self) {
        self.history_saved = Instant::now();
        let now = epoch_seconds() as u64;
        for w in self.containers.values_mut() {
            flush_history(&self.history, w, now);
        }
        let mut h = self.history.borrow_mut();
        h.trim(self.args.history_workloads);
        if let Err(e) = h.save(&self.args.state_dir) {
            ::log::warn!("cannot keep the workloads' history: {e}");
        }
    }
}
