//! Containers under one parent cgroup, and what the parent's usage says of
//! the still ones among them.
//!
//! The kernel charges a cgroup's pages to every ancestor too, so a parent's
//! usage (v1 `memory.usage_in_bytes` with `use_hierarchy`, v2
//! `memory.current`) is the sum of its children's plus its own. Less what
//! the moving containers use (each read this tick), what is left is the
//! still containers' share plus the rest of the parent's: while it stays
//! the same byte for byte, no still container moved, and their probes need
//! not be read. One read of the parent instead of a `pread` per container;
//! anything else moving under the parent (a service beside the containers,
//! a container not watched) changes the remainder, and then every still
//! container's probe is read as usual: the remainder can only save reads,
//! never hide a change.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cgroup::Hierarchy;

/// Below this many still containers, a parent's read (open, read, close)
/// costs more than the probes it saves (one `pread` each per
/// [`super::IDLE_PROBE_EVERY`] ticks).
pub(super) const MIN_STILL: u32 = 32;

/// The still containers' probes are left unread only after the remainder
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
    /// This tick: still containers, the sum of their tokens (who they
    /// are), and what the others were read to use.
    still: u32,
    tokens: u64,
    moving: u64,
    /// The remainder last computed, and for which still containers.
    last: Option<(i128, u32, u64)>,
    /// Ticks the remainder has been the same.
    quiet: u32,
    /// v2: the parent's PSI trigger (see [`super::notify`]): the one
    /// pressure trigger for all its containers.
    pub(super) psi: Option<File>,
    /// When the members' pressure is to be read, after the trigger fired.
    pub(super) scan_at: Option<Instant>,
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
            tokens: 0,
            moving: 0,
            last: None,
            quiet: 0,
            psi: None,
            scan_at: None,
            unified: *hierarchy == Hierarchy::V2,
        }
    }

    /// Whether the still containers' probes may be left unread this tick.
    pub(super) fn quiet(&self) -> bool {
        self.quiet >= QUIET
    }

    /// A container as it stands after this tick's reading: `still` if it
    /// is one of those the remainder speaks for.
    pub(super) fn count(&mut self, still: bool, token: u64, usage: u64) {
        if still {
            self.still += 1;
            self.tokens = self.tokens.wrapping_add(token);
        } else {
            self.moving = self.moving.saturating_add(usage);
        }
    }

    /// After every member was counted: the parent is read and the
    /// remainder compared with the last tick's.
    pub(super) fn settle(&mut self) {
        let (still, tokens, moving) = (self.still, self.tokens, self.moving);
        (self.still, self.tokens, self.moving) = (0, 0, 0);
        let parent = match &self.usage {
            Some(path) if still >= MIN_STILL => read_u64(path),
            _ => None,
        };
        let Some(parent) = parent else {
            self.last = None;
            self.quiet = 0;
            return;
        };
        let now = (i128::from(parent) - i128::from(moving), still, tokens);
        if self.last == Some(now) {
            self.quiet = self.quiet.saturating_add(1);
        } else {
            self.last = Some(now);
            self.quiet = 0;
        }
    }
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
        Group::new(dir, &Hierarchy::V2)
    }

    fn tick(g: &mut Group, still: &[u64], moving: &[u64]) {
        for t in still {
            g.count(true, *t, 0);
        }
        for u in moving {
            g.count(false, 0, *u);
        }
        g.settle();
    }

    fn tokens() -> Vec<u64> {
        (0..=MIN_STILL as u64).collect()
    }

    #[test]
    fn quiet_only_after_the_remainder_held_for_a_full_round_of_probes() {
        let d = Dir::new("quiet");
        let mut g = group(d.path(), 1000);
        for _ in 0..QUIET {
            tick(&mut g, &tokens(), &[100]);
            assert!(!g.quiet());
        }
        tick(&mut g, &tokens(), &[100]);
        assert!(g.quiet());
        // The moving container grew and the parent with it: the same
        // remainder, still quiet.
        std::fs::write(d.path().join("memory.current"), "1500").unwrap();
        tick(&mut g, &tokens(), &[600]);
        assert!(g.quiet());
        // Something else grew: probes again, until it holds again.
        std::fs::write(d.path().join("memory.current"), "1501").unwrap();
        tick(&mut g, &tokens(), &[600]);
        assert!(!g.quiet());
    }

    #[test]
    fn a_container_that_stops_or_starts_moving_breaks_the_quiet() {
        let d = Dir::new("breaks");
        let mut g = group(d.path(), 1000);
        for _ in 0..=QUIET {
            tick(&mut g, &tokens(), &[]);
        }
        assert!(g.quiet());
        let mut fewer = tokens();
        fewer.pop();
        tick(&mut g, &fewer, &[0]);
        assert!(!g.quiet(), "one less still container, same usage");
        for _ in 0..=QUIET {
            tick(&mut g, &fewer, &[0]);
        }
        assert!(g.quiet());
        // Another container in its place, as many as before.
        let mut other = fewer.clone();
        other.push(1000);
        tick(&mut g, &other, &[]);
        assert!(!g.quiet());
    }

    #[test]
    fn never_quiet_without_a_parent_that_sums_or_with_few_still_ones() {
        let d = Dir::new("never");
        std::fs::write(d.path().join("memory.use_hierarchy"), "0\n").unwrap();
        std::fs::write(d.path().join("memory.usage_in_bytes"), "1000\n").unwrap();
        let mut flat = Group::new(d.path(), &Hierarchy::V1);
        let mut few = group(d.path(), 1000);
        for _ in 0..=QUIET * 2 {
            tick(&mut flat, &tokens(), &[]);
            tick(&mut few, &tokens()[..MIN_STILL as usize - 1], &[]);
        }
        assert!(!flat.quiet());
        assert!(!few.quiet());
        let gone = d.path().join("gone");
        let mut unreadable = Group::new(&gone, &Hierarchy::V2);
        for _ in 0..=QUIET * 2 {
            tick(&mut unreadable, &tokens(), &[]);
        }
        assert!(!unreadable.quiet());
    }
}
