//! cgroup v2 memory files: `memory.max`, `memory.swap.max` (swap on top of
//! memory; absent without swap accounting) and `memory.high`.
//!
//! v2 has no ordering rule between these files, and spells "no limit" `max`.
//! The OCI `swap` field (memory+swap) reaches `memory.swap.max` as
//! `swap - limit` (runc's `ConvertMemorySwapToCgroupV2Value`); the decision
//! already works in swap-on-top terms, see [`swap_max`].

use super::{Files, Snapshot, Write};
use crate::size::Limit;
use crate::size::Limits;

pub const MAX: &str = "memory.max";
pub const SWAP_MAX: &str = "memory.swap.max";
pub const HIGH: &str = "memory.high";
/// Protection from reclaim, runc's `reservation`: what a cgroup keeps
/// while others are reclaimed.
pub const LOW: &str = "memory.low";

/// The most `memory.low` a container may hold under `target`: its
/// decided `high` (protection beyond the point where reclaim starts anyway
/// only pushes reclaim onto the others), none when `high` is off (the
/// policy grants no protection it does not name). The wrapper applies the
/// same rule to the bundle's `reservation` (`enforce::spec::reservation`).
pub fn low_cap(target: &Limits) -> u64 {
    match target.high {
        Some(Limit::Bytes(b)) => b,
        _ => 0,
    }
}

pub const FILES: Files = Files {
    memory: MAX,
    swap: SWAP_MAX,
    high: HIGH,
};

/// `memory.swap.max` for the final limits: `max` when memory or
/// memory+swap is unbounded, `0` when they are equal, else the difference.
pub fn swap_max(l: &Limits) -> Limit {
    match (l.memory, l.memory_swap()) {
        (Limit::Unlimited, _) | (_, Limit::Unlimited) => Limit::Unlimited,
        (Limit::Bytes(m), Limit::Bytes(ms)) => Limit::Bytes(ms.saturating_sub(m)),
    }
}

pub fn plan(cur: &Snapshot, target: &Limits) -> Vec<Write> {
    let to = Snapshot {
        memory: target.memory,
        swap_file: cur.swap_file.map(|_| swap_max(target)),
        high: target.high.unwrap_or(Limit::Unlimited),
    };
    plan_raw(cur, &to)
}

/// v2 has no ordering rule between the files.
pub fn plan_raw(cur: &Snapshot, to: &Snapshot) -> Vec<Write> {
    FILES.changes(cur, to).into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    #[test]
    fn memory_low_is_held_to_high() {
        let l = |high| Limits {
            memory: Limit::Bytes(G),
            swap: Limit::Bytes(0),
            high,
        };
        assert_eq!(low_cap(&l(Some(Limit::Bytes(G / 2)))), G / 2);
        assert_eq!(low_cap(&l(None)), 0);
        assert_eq!(low_cap(&l(Some(Limit::Unlimited))), 0);
    }

    #[test]
    fn swap_conversion_edge_cases() {
        let l = |m, s| Limits {
            memory: m,
            swap: s,
            high: None,
        };
        // Equal memory and memory+swap: no swap at all, written as 0.
        assert_eq!(
            swap_max(&l(Limit::Bytes(G), Limit::Bytes(0))),
            Limit::Bytes(0)
        );
        assert_eq!(
            swap_max(&l(Limit::Bytes(G), Limit::Bytes(G))),
            Limit::Bytes(G)
        );
        assert_eq!(
            swap_max(&l(Limit::Bytes(G), Limit::Unlimited)),
            Limit::Unlimited
        );
        assert_eq!(
            swap_max(&l(Limit::Unlimited, Limit::Bytes(G))),
            Limit::Unlimited
        );
    }

    #[test]
    fn plan_spells_every_file_and_never_an_empty_value() {
        let cur = Snapshot {
            memory: Limit::Unlimited,
            swap_file: Some(Limit::Unlimited),
            high: Limit::Unlimited,
        };
        let target = Limits {
            memory: Limit::Bytes(G),
            swap: Limit::Bytes(0),
            high: Some(Limit::Bytes(G / 2)),
        };
        let p = plan(&cur, &target);
        assert_eq!(
            p,
            [
                Write {
                    file: MAX,
                    value: Limit::Bytes(G)
                },
                Write {
                    file: SWAP_MAX,
                    value: Limit::Bytes(0)
                },
                Write {
                    file: HIGH,
                    value: Limit::Bytes(G / 2)
                },
            ]
        );
        for w in &p {
            assert!(!super::super::spell(&super::super::Hierarchy::V2, w.value).is_empty());
        }
        let without_swap = Snapshot {
            swap_file: None,
            ..cur
        };
        assert_eq!(plan(&without_swap, &target).len(), 2);
    }

    /// A v2 tree in a temp dir: what is written, and what is not.
    fn tree(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("cglimit-v2-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (f, v) in files {
            std::fs::write(d.join(f), v).unwrap();
        }
        d
    }

    fn read(d: &std::path::Path, f: &str) -> String {
        std::fs::read_to_string(d.join(f)).unwrap()
    }

    #[test]
    fn writes_a_v2_tree() {
        use super::super::{CgroupDir, Hierarchy, apply};
        let d = tree(
            "write",
            &[(MAX, "max\n"), (SWAP_MAX, "max\n"), (HIGH, "max\n")],
        );
        let dir = CgroupDir::fake(&d, Hierarchy::V2);
        let l = Limits {
            memory: Limit::Bytes(G),
            swap: Limit::Bytes(0),
            high: Some(Limit::Bytes(G / 2)),
        };
        let a = apply(&dir, &l).unwrap();
        assert_eq!(read(&d, MAX), G.to_string());
        assert_eq!(read(&d, SWAP_MAX), "0");
        assert_eq!(read(&d, HIGH), (G / 2).to_string());
        assert_eq!(a.written, [MAX, SWAP_MAX, HIGH]);
        assert!(!a.swap_unaccounted);
        // Unlimited is spelled max, never an empty string.
        let open = Limits {
            memory: Limit::Unlimited,
            swap: Limit::Unlimited,
            high: None,
        };
        apply(&dir, &open).unwrap();
        assert_eq!(read(&d, MAX), "max");
        assert_eq!(read(&d, SWAP_MAX), "max");
        assert_eq!(read(&d, HIGH), "max");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn v2_without_swap_accounting_applies_the_rest() {
        use super::super::{CgroupDir, Hierarchy, apply};
        let d = tree("noswap", &[(MAX, "max\n"), (HIGH, "max\n")]);
        let dir = CgroupDir::fake(&d, Hierarchy::V2);
        let l = Limits {
            memory: Limit::Bytes(G),
            swap: Limit::Bytes(G),
            high: None,
        };
        let a = apply(&dir, &l).unwrap();
        assert!(a.swap_unaccounted);
        assert_eq!(read(&d, MAX), G.to_string());
        assert!(!d.join(SWAP_MAX).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn v2_unreadable_file_writes_nothing() {
        use super::super::{CgroupDir, Hierarchy, apply};
        let d = tree("fail", &[(MAX, "max\n"), (SWAP_MAX, "12345\n")]);
        // memory.high is a directory: the snapshot fails before any write.
        std::fs::create_dir(d.join(HIGH)).unwrap();
        let dir = CgroupDir::fake(&d, Hierarchy::V2);
        let l = Limits {
            memory: Limit::Bytes(G),
            swap: Limit::Bytes(0),
            high: Some(Limit::Bytes(G / 2)),
        };
        let e = apply(&dir, &l).unwrap_err();
        assert!(e.to_string().contains("memory.high"), "{e}");
        assert_eq!(read(&d, MAX), "max\n");
        assert_eq!(read(&d, SWAP_MAX), "12345\n");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
