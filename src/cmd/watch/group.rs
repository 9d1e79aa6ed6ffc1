//! Containers under one parent cgroup, and what the parent's usage says of
//! the still ones among them.
//!
//! The kernel charges a cgroup's pages to every ancestor too, so a parent's
//! usage (v1 `memory.usage_in_bytes` with `use_hierarchy`, v2
//! `memory.current`) is the sum of its children's plus its own. Less what
//! every member was last read to use, what is left (the residual) is the
//! parent's own pages plus whatever the still containers, whose probes
//! were left unread, moved since: while it stays the same byte for byte, no
//! still container moved, and their probes need not be read. One read of
//! the parent instead of a `pread` per container; anything else moving
//! under the parent (a service beside the containers, a container not
//! watched) changes the residual, and then every still container's probe
//! is read as usual: the residual can only save reads, never hide a change.
//!
//! The residual is compared with what it was when the still containers
//! were last all read, not tick by tick, and only a drift larger than the
//! counters' own imprecision counts ([`fuzz`]): a still container that
//! creeps is seen once it has moved by more than that in all, not never.
//!
//! Containers that come, go, start or stop moving do not change the
//! residual by themselves: each was read when it did (a container is read
//! when it is found, every tick while it moves, and its last reading is
//! kept when its cgroup goes, whose pages the kernel keeps charged to the
//! parent until they are freed). So on a host where containers come and
//! go, the still ones stay quiet.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cgroup::Hierarchy;

/// Below this many still containers, a parent's read (open, read, close)
/// costs more than the probes it saves (one `pread` each per
/// [`super::IDLE_PROBE_EVERY`] ticks).
pub(super) const MIN_STILL: u32 = 32;

/// The still containers' probes are left unread only after the residual
/// was the same for this many ticks in a row, with every still container's
/// probe read in between (each is read once per
/// [`super::IDLE_PROBE_EVERY`] ticks) and found unchanged.
const QUIET: u32 = super::IDLE_PROBE_EVERY as u32;

pub(super) struct Group {
    pub(super) parent: PathBuf,
    /// The parent's usage file; `None` where the parent does not sum its
    /// children (v1 without `use_hierarchy`, v2's root).
    usage: Option<PathBuf>,
    /// Containers in it.
    pub(super) members: u32,
    /// This tick: still containers, and what every member was last read
    /// to use.
    still: u32,
    read: u64,
    /// What members that went were last read to use: their pages stay
    /// charged to the parent until freed.
    gone: u64,
    /// The residual when the still containers were last all read.
    anchor: Option<i128>,
    /// How far the residual may drift from it and still be the same.
    fuzz: i128,
    /// Ticks the residual has been the same.
    quiet: u32,
    /// v2: the parent's PSI trigger (see [`super::notify`]): the one
    /// pressure trigger for all its containers.
    pub(super) psi: Option<File>,
    /// When the members' pressure is to be read, after the trigger fired.
    pub(super) scan_at: Option<Instant>,
    /// Whether the scan due is the second look after a firing (see
    /// `scan_group`): there is no third.
    pub(super) rescan: bool,
    /// Whether the parent is in a v2 hierarchy (where pressure is kept).
    pub(super) unified: bool,
}

impl Group {
    pub(super) fn new(parent: &Path, hierarchy: &Hierarchy) -> Group {
        let usage = match hierarchy {
            Hierarchy::V1 => {
                let sums = std::fs::read_to_string(parent.join("memory.use_hierarchy"))
                    .is_ok_and(|s| s.trim() == "1");
                sums.then(|| parent.join("memory.usage_in_bytes"))
            }
            Hierarchy::V2 => Some(parent.join("memory.current")),
        };
        Group {
            parent: parent.to_path_buf(),
            usage,
            members: 0,
            still: 0,
            read: 0,
            gone: 0,
            anchor: None,
            fuzz: i128::from(fuzz()),
            quiet: 0,
            psi: None,
            scan_at: None,
            rescan: false,
            unified: *hierarchy == Hierarchy::V2,
        }
    }

    /// Whether the still containers' probes may be left unread this tick.
    pub(super) fn quiet(&self) -> bool {
        self.quiet >= QUIET
    }

    /// A member as it stands after this tick's reading: `still` if it is
    /// one of those the residual speaks for, `usage` as last read.
    pub(super) fn count(&mut self, still: bool, usage: u64) {
        self.still += u32::from(still);
        self.read = self.read.saturating_add(usage);
    }

    /// A member went, `usage` as last read.
    pub(super) fn leave(&mut self, usage: u64) {
        self.gone = self.gone.saturating_add(usage);
    }

    /// After every member was counted: the parent is read and the
    /// residual compared with the last tick's.
    pub(super) fn settle(&mut self) {
        let (still, read) = (self.still, self.read);
        (self.still, self.read) = (0, 0);
        let parent = match &self.usage {
            Some(path) if still >= MIN_STILL => read_u64(path),
            _ => None,
        };
        let Some(parent) = parent else {
            self.anchor = None;
            self.quiet = 0;
            return;
        };
        let now = i128::from(parent) - i128::from(read) - i128::from(self.gone);
        match self.anchor {
            Some(a) if (now - a).abs() <= self.fuzz => self.quiet = self.quiet.saturating_add(1),
            _ => {
                self.anchor = Some(now);
                self.quiet = 0;
            }
        }
    }
}

/// The kernel charges a memory cgroup's counter (and its ancestors') in
/// batches of this many pages (`MEMCG_CHARGE_BATCH`: 64 since Linux 6.1,
/// 32 before), kept as a per-CPU
/// stock that later charges draw on: between two readings a usage moves by
/// up to a batch per CPU with no page used or freed. (The cgroup v1
/// documentation calls `memory.usage_in_bytes` a "fuzz value" for this.)
const CHARGE_BATCH_PAGES: u64 = 64;

/// How far a parent's usage can move from the charge stocks alone: a batch
/// of pages per online CPU.
fn fuzz() -> u64 {
    static FUZZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *FUZZ.get_or_init(|| {
        use nix::unistd::{SysconfVar, sysconf};
        let value = |v| {
            sysconf(v)
                .ok()
                .flatten()
                .and_then(|n| u64::try_from(n).ok())
        };
        let page = value(SysconfVar::PAGE_SIZE).unwrap_or(crate::size::PAGE_SIZE);
        let cpus = value(SysconfVar::_NPROCESSORS_ONLN).unwrap_or(1).max(1);
        CHARGE_BATCH_PAGES * page * cpus
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    let mut buf = [0u8; 32];
    let n = crate::sys::open_read(path).ok()?.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("cglimit-group-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn group(dir: &Path, usage: u64) -> Group {
        std::fs::write(dir.join("memory.current"), format!("{usage}\n")).unwrap();
        let mut g = Group::new(dir, &Hierarchy::V2);
        // Exact unless a test says otherwise.
        g.fuzz = 0;
        g
    }

    /// One tick: the still members and the moving ones, by their usage.
    fn tick(g: &mut Group, still: &[u64], moving: &[u64]) {
        for u in still {
            g.count(true, *u);
        }
        for u in moving {
            g.count(false, *u);
        }
        g.settle();
    }

    /// Enough still members, using 10 bytes each.
    fn members() -> Vec<u64> {
        vec![10; MIN_STILL as usize + 1]
    }

    fn parent(d: &Dir, usage: u64) {
        std::fs::write(d.path().join("memory.current"), format!("{usage}\n")).unwrap();
    }

    #[test]
    fn quiet_only_after_the_residual_held_for_a_full_round_of_probes() {
        let d = Dir::new("quiet");
        let base = 1000 + 10 * members().len() as u64;
        let mut g = group(d.path(), base + 100);
        for _ in 0..QUIET {
            tick(&mut g, &members(), &[100]);
            assert!(!g.quiet());
        }
        tick(&mut g, &members(), &[100]);
        assert!(g.quiet());
        // The moving container grew and the parent with it: the same
        // residual, still quiet.
        parent(&d, base + 600);
        tick(&mut g, &members(), &[600]);
        assert!(g.quiet());
        // Something else grew: probes again, until it holds again.
        parent(&d, base + 601);
        tick(&mut g, &members(), &[600]);
        assert!(!g.quiet());
        for _ in 1..QUIET {
            tick(&mut g, &members(), &[600]);
            assert!(!g.quiet());
        }
        tick(&mut g, &members(), &[600]);
        assert!(g.quiet());
    }

    #[test]
    fn containers_that_come_go_or_start_moving_keep_the_quiet() {
        let d = Dir::new("churn");
        let mut still = members();
        let mut usage = 1000 + still.iter().sum::<u64>();
        let mut g = group(d.path(), usage);
        for _ in 0..=QUIET {
            tick(&mut g, &still, &[]);
        }
        assert!(g.quiet());
        // One starts moving, read at 10 as it was.
        still.pop();
        tick(&mut g, &still, &[10]);
        assert!(g.quiet(), "a still container that starts moving, read");
        // A new one, read at 50, which the parent already counted.
        usage += 50;
        parent(&d, usage);
        tick(&mut g, &still, &[10, 50]);
        assert!(g.quiet(), "a new container, read when found");
        // The first one's cgroup goes; its pages stay charged to the parent.
        g.leave(10);
        tick(&mut g, &still, &[50]);
        assert!(g.quiet(), "a container gone");
        // The new one goes still.
        still.push(50);
        tick(&mut g, &still, &[]);
        assert!(g.quiet(), "a container that went still");
        // A still one moves unseen: the parent shows it.
        parent(&d, usage + 4096);
        tick(&mut g, &still, &[]);
        assert!(!g.quiet(), "a still container that moved unseen");
    }

    #[test]
    fn a_drift_within_the_charge_stocks_keeps_the_quiet_until_it_adds_up() {
        let d = Dir::new("fuzz");
        let usage = (100 << 20) + members().iter().sum::<u64>();
        let mut g = group(d.path(), usage);
        g.fuzz = 4096 * 64;
        for _ in 0..=QUIET {
            tick(&mut g, &members(), &[]);
        }
        assert!(g.quiet());
        // A stock refilled, then drawn on.
        for drift in [4096 * 64, 4096, -4096 * 63, 0] {
            parent(&d, (usage as i64 + drift) as u64);
            tick(&mut g, &members(), &[]);
            assert!(g.quiet(), "{drift} within the stocks");
        }
        // A still container creeping a page a tick: seen once it is more
        // than the stocks from where they were all read.
        let mut crept = 0;
        while g.quiet() {
            crept += 4096;
            parent(&d, usage + crept);
            tick(&mut g, &members(), &[]);
            assert!(crept <= 4096 * 65, "never seen");
        }
        assert_eq!(crept, 4096 * 65);
    }

    #[test]
    fn never_quiet_without_a_parent_that_sums_or_with_few_still_ones() {
        let d = Dir::new("never");
        std::fs::write(d.path().join("memory.use_hierarchy"), "0\n").unwrap();
        std::fs::write(d.path().join("memory.usage_in_bytes"), "1000\n").unwrap();
        let mut flat = Group::new(d.path(), &Hierarchy::V1);
        let mut few = group(d.path(), 1000);
        for _ in 0..=QUIET * 2 {
            tick(&mut flat, &members(), &[]);
            tick(&mut few, &members()[..MIN_STILL as usize - 1], &[]);
        }
        assert!(!flat.quiet());
        assert!(!few.quiet());
        let gone = d.path().join("gone");
        let mut unreadable = Group::new(&gone, &Hierarchy::V2);
        for _ in 0..=QUIET * 2 {
            tick(&mut unreadable, &members(), &[]);
        }
        assert!(!unreadable.quiet());
    }
}
