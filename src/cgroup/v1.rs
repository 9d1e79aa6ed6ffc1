//! cgroup v1 memory files: `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`
//! (memory+swap, only with swap accounting) and `memory.soft_limit_in_bytes`.

use super::{Files, Snapshot, Write};
use crate::size::Limit;
use crate::size::Limits;

pub const LIMIT: &str = "memory.limit_in_bytes";
pub const MEMSW: &str = "memory.memsw.limit_in_bytes";
pub const SOFT: &str = "memory.soft_limit_in_bytes";
/// The socket-buffer limit ([`super::apply`] says why it is set).
pub const TCP: &str = "memory.kmem.tcp.limit_in_bytes";

pub const FILES: Files = Files {
    memory: LIMIT,
    swap: MEMSW,
    high: SOFT,
};

pub fn plan(cur: &Snapshot, target: &Limits) -> Vec<Write> {
    let to = Snapshot {
        memory: target.memory,
        swap_file: cur.swap_file.map(|_| target.memory_swap()),
        high: target.high.unwrap_or(Limit::Unlimited),
    };
    plan_raw(cur, &to)
}

/// The kernel keeps `limit <= memsw` at every step and answers EINVAL to a
/// write that would break it. So the memory limit goes first when the new
/// limit fits under the current memsw (lowering), and memsw goes first
/// otherwise (raising). One of the two orders is always valid: if the new
/// limit exceeds the current memsw, the new memsw (>= new limit) exceeds
/// the current limit.
pub fn plan_raw(cur: &Snapshot, to: &Snapshot) -> Vec<Write> {
    let [limit, memsw, high] = FILES.changes(cur, to);
    let limit_first = match cur.swap_file {
        Some(cur_memsw) => to.memory <= cur_memsw,
        None => true,
    };
    let (first, second) = if limit_first {
        (limit, memsw)
    } else {
        (memsw, limit)
    };
    [first, second, high].into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    fn snap(memory: Limit, memsw: Option<Limit>) -> Snapshot {
        Snapshot {
            memory,
            swap_file: memsw,
            high: Limit::Unlimited,
        }
    }

    fn limits(memory: u64, swap: u64) -> Limits {
        Limits {
            memory: Limit::Bytes(memory),
            swap: Limit::Bytes(swap),
            high: None,
        }
    }

    /// Simulates the kernel's rule on each step of a plan.
    fn kernel_accepts(mut s: Snapshot, plan: &[Write]) -> bool {
        for w in plan {
            FILES.set(&mut s, w);
            if let Some(sw) = s.swap_file
                && s.memory > sw
            {
                return false;
            }
        }
        true
    }

    #[test]
    fn raising_from_unlimited_writes_limit_first() {
        let cur = snap(Limit::Unlimited, Some(Limit::Unlimited));
        let p = plan(&cur, &limits(G, 0));
        assert_eq!(p.iter().map(|w| w.file).collect::<Vec<_>>(), [LIMIT, MEMSW]);
        assert!(kernel_accepts(cur, &p));
    }

    #[test]
    fn raising_above_current_memsw_writes_memsw_first() {
        let cur = snap(Limit::Bytes(G), Some(Limit::Bytes(G)));
        let p = plan(&cur, &limits(4 * G, G));
        assert_eq!(p.iter().map(|w| w.file).collect::<Vec<_>>(), [MEMSW, LIMIT]);
        assert!(kernel_accepts(cur, &p));
    }

    #[test]
    fn without_swap_accounting_memsw_is_skipped() {
        let cur = snap(Limit::Unlimited, None);
        let p = plan(&cur, &limits(G, G));
        assert_eq!(p.iter().map(|w| w.file).collect::<Vec<_>>(), [LIMIT]);
    }

    #[test]
    fn unchanged_values_are_not_written() {
        let cur = Snapshot {
            memory: Limit::Bytes(G),
            swap_file: Some(Limit::Bytes(2 * G)),
            high: Limit::Bytes(G / 2),
        };
        let l = Limits {
            memory: Limit::Bytes(G),
            swap: Limit::Bytes(G),
            high: Some(Limit::Bytes(G / 2)),
        };
        assert!(plan(&cur, &l).is_empty());
    }

    /// Property: from any valid state to any valid target, the plan never
    /// passes through a state the kernel refuses.
    #[test]
    fn every_plan_is_kernel_valid() {
        let vals = [
            Limit::Bytes(0),
            Limit::Bytes(G),
            Limit::Bytes(2 * G),
            Limit::Bytes(3 * G),
            Limit::Unlimited,
        ];
        for &l0 in &vals {
            for &s0 in &vals {
                if l0 > s0 {
                    continue;
                }
                for &l1 in &vals[..4] {
                    for &sw in &vals {
                        let cur = snap(l0, Some(s0));
                        let target = Limits {
                            memory: l1,
                            swap: sw,
                            high: None,
                        };
                        let p = plan(&cur, &target);
                        assert!(kernel_accepts(cur, &p), "{cur:?} -> {target:?}: {p:?}");
                        // And back again, as a rollback would.
                        let mut after = cur;
                        p.iter().for_each(|w| FILES.set(&mut after, w));
                        let back = plan_raw(&after, &cur);
                        assert!(
                            kernel_accepts(after, &back),
                            "rollback {after:?} -> {cur:?}"
                        );
                    }
                }
            }
        }
    }
}
