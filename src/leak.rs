//! Leak warning: steady growth of memory that does not go back by itself,
//! told apart from flat, sawtooth (garbage-collected) and cache-heavy use.
//!
//! Each kind that can leak has its own detector ([`Leaks`]): `anon`
//! (processes' heaps), `shmem` (files left in a tmpfs or `/dev/shm`) and
//! `kernel` (slab, page tables: sockets or files opened and never closed).
//! Page cache (`file`) is never watched: the kernel takes it back, so a
//! container reading files never looks like a leak. Over a sliding
//! window, two robust slopes (Theil–Sen: the median of pairwise slopes,
//! insensitive to outliers) must both show growth:
//! - the slope of all samples, and
//! - the slope of the *floor*: the minimum of each third of the window.
//!
//! A garbage-collected heap climbs between collections but its floor stays
//! put as long as every third of the window holds a collection (cycles up to
//! a third of the window: 15 s with the default 45 samples of 1 s); a leak
//! raises the floor. The warning clears when either slope falls
//! below half the threshold, so it does not flap at the boundary.

use std::collections::VecDeque;

/// Times are kept relative to a base no more than this many seconds back.
const REBASE: f64 = 65536.0;

#[derive(Clone, Debug)]
pub struct Detector {
    /// (seconds since `base`, bytes), as `f32`: half the memory of a
    /// watcher with thousands of containers (three windows each). Bytes
    /// keep 24 bits of precision (64 bytes in a GiB), times stay within
    /// [`REBASE`] seconds of `base`, where an `f32` is exact to 8 ms.
    samples: VecDeque<(f32, f32)>,
    base: f64,
    window: usize,
    /// Bytes per second above which growth is a suspected leak.
    threshold: f64,
    suspected: bool,
    /// The slope of all samples at the last push.
    rate: f64,
}

/// What a new sample changed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    None,
    /// Growth became steady: bytes per second.
    Suspected(f64),
    Cleared,
}

impl Detector {
    pub fn new(window: usize, threshold: f64) -> Detector {
        let window = window.max(10);
        Detector {
            // Exactly the window: thousands of containers keep three each.
            samples: VecDeque::with_capacity(window),
            base: 0.0,
            window,
            threshold,
            suspected: false,
            rate: 0.0,
        }
    }

    pub fn suspected(&self) -> bool {
        self.suspected
    }

    /// The current growth estimate in bytes per second (0 until the window is full).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Growth from the first sample to the last, before the window is
    /// full too: a rough early sign, not a verdict.
    pub fn early_rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(a), Some(b)) if self.samples.len() >= 3 && b.0 > a.0 => {
                (b.1 as f64 - a.1 as f64) / (b.0 as f64 - a.0 as f64)
            }
            _ => 0.0,
        }
    }

    pub fn push(&mut self, t: f64, bytes: f64) -> Change {
        if self.samples.is_empty() {
            self.base = t;
        }
        if t - self.base > REBASE {
            // Slopes do not depend on where time starts: move it up.
            let shift = (t - self.base) as f32;
            for s in self.samples.iter_mut() {
                s.0 -= shift;
            }
            self.base = t;
        }
        while self.samples.len() >= self.window {
            self.samples.pop_front();
        }
        self.samples
            .push_back(((t - self.base) as f32, bytes as f32));
        if self.samples.len() < self.window {
            return Change::None;
        }
        // An idle container's window is flat: every slope is 0, no need to
        // compute the n² of them.
        let first = self.samples[0].1 as f64;
        let v: Vec<(f64, f64)> = self
            .samples
            .iter()
            .map(|&(t, b)| (t as f64, b as f64))
            .collect();
        let all = if v.iter().all(|s| s.1 == first) {
            0.0
        } else {
            theil_sen(&v)
        };
        self.rate = all;
        let chunk = v.len().div_ceil(3);
        let floor: Vec<(f64, f64)> = v
            .chunks(chunk.max(1))
            .map(|c| {
                let m = c
                    .iter()
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .copied()
                    .unwrap_or((0.0, 0.0));
                (c[c.len() / 2].0, m.1)
            })
            .collect();
        let floor_rate = theil_sen(&floor);
        let growing = all >= self.threshold && floor_rate >= self.threshold;
        let stopped = all < self.threshold / 2.0 || floor_rate < self.threshold / 2.0;
        if !self.suspected && growing {
            self.suspected = true;
            return Change::Suspected(all.min(floor_rate));
        }
        if self.suspected && stopped {
            self.suspected = false;
            return Change::Cleared;
        }
        Change::None
    }
}

/// The kinds of memory that can leak, as [`crate::cgroup::stats::Breakdown`]
/// names them.
pub const KINDS: [&str; 3] = ["anon", "shmem", "kernel"];

/// A detector per kind that can leak.
#[derive(Clone, Debug)]
pub struct Leaks {
    detectors: [Detector; 3],
    threshold: f64,
}

impl Leaks {
    pub fn new(window: usize, threshold: f64) -> Leaks {
        // Each made new: a clone would not keep the reserved capacity.
        Leaks {
            detectors: std::array::from_fn(|_| Detector::new(window, threshold)),
            threshold,
        }
    }

    /// Pushes one reading; a change of the container's state: the first
    /// kind to grow steadily (with its rate), or the last to stop.
    pub fn push(
        &mut self,
        t: f64,
        m: &crate::cgroup::stats::Breakdown,
    ) -> (Change, Option<&'static str>) {
        let was = self.suspected();
        for (d, v) in self.detectors.iter_mut().zip([m.anon, m.shmem, m.kernel]) {
            d.push(t, v as f64);
        }
        match (was, self.suspected()) {
            (None, Some(kind)) => (Change::Suspected(self.rate()), Some(kind)),
            (Some(kind), None) => (Change::Cleared, Some(kind)),
            _ => (Change::None, None),
        }
    }

    /// The kind a leak is suspected in (the fastest growing of them).
    pub fn suspected(&self) -> Option<&'static str> {
        KINDS
            .iter()
            .zip(&self.detectors)
            .filter(|(_, d)| d.suspected())
            .max_by(|a, b| a.1.rate().total_cmp(&b.1.rate()))
            .map(|(k, _)| *k)
    }

    /// The growth of the suspected kind, else the fastest, bytes per second.
    pub fn rate(&self) -> f64 {
        match self.suspected() {
            Some(k) => self.detectors[KINDS.iter().position(|x| *x == k).unwrap_or(0)].rate(),
            None => self
                .detectors
                .iter()
                .map(Detector::rate)
                .fold(0.0, f64::max),
        }
    }

    /// Whether some kind grows at half the threshold or more: time to
    /// note which processes hold what, so that a warning can say who grew.
    pub fn leaning(&self) -> bool {
        self.detectors
            .iter()
            .any(|d| d.rate().max(d.early_rate()) >= self.threshold / 2.0)
    }
}

/// The median of the slopes between every pair of points.
pub fn theil_sen(p: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::with_capacity(p.len() * p.len() / 2);
    for i in 0..p.len() {
        for j in i + 1..p.len() {
            let dt = p[j].0 - p[i].0;
            if dt > 0.0 {
                slopes.push((p[j].1 - p[i].1) / dt);
            }
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    let mid = slopes.len() / 2;
    let (_, m, _) = slopes.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    *m
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1048576.0;

    fn run(f: impl Fn(f64) -> f64, seconds: usize) -> (Option<usize>, bool) {
        let mut d = Detector::new(30, 256.0 * 1024.0);
        let mut first = None;
        for s in 0..seconds {
            if let Change::Suspected(_) = d.push(s as f64, f(s as f64)) {
                first.get_or_insert(s);
            }
        }
        (first, d.suspected())
    }

    #[test]
    fn a_steady_leak_is_flagged_within_a_minute() {
        // 1 MiB/s on top of 50 MiB, with noise of +-2 MiB.
        let (first, now) = run(
            |t| 50.0 * MIB + t * MIB + ((t * 7.0).sin() * 2.0 * MIB),
            120,
        );
        assert!(first.is_some_and(|s| s <= 60), "{first:?}");
        assert!(now);
    }

    #[test]
    fn flat_sawtooth_and_spikes_are_not() {
        assert_eq!(run(|_| 80.0 * MIB, 300).0, None, "flat");
        // GC: grows 2 MiB/s for 10 s, then drops back.
        assert_eq!(
            run(|t| 40.0 * MIB + (t % 10.0) * 2.0 * MIB, 300).0,
            None,
            "sawtooth"
        );
        // A GC cycle of a third of the window, climbing 3 MiB/s.
        assert_eq!(
            run(|t| 40.0 * MIB + (t % 10.0) * 3.0 * MIB, 300).0,
            None,
            "long sawtooth"
        );
        // Growth that levels off (a cache warming up) is not flagged once flat.
        let (_, now) = run(|t| 40.0 * MIB + t.min(20.0) * MIB, 300);
        assert!(!now, "levelled off");
        // Rare big spikes.
        assert_eq!(
            run(
                |t| if (t as usize).is_multiple_of(17) {
                    500.0 * MIB
                } else {
                    60.0 * MIB
                },
                300
            )
            .0,
            None,
            "spikes"
        );
    }

    #[test]
    fn the_warning_clears_when_growth_stops() {
        let mut d = Detector::new(30, 256.0 * 1024.0);
        let mut flagged = false;
        let mut cleared = false;
        for s in 0..200 {
            let t = s as f64;
            let v = if s < 80 { t * MIB } else { 80.0 * MIB };
            match d.push(t, v) {
                Change::Suspected(r) => {
                    flagged = true;
                    assert!((r - MIB).abs() < 0.2 * MIB, "{r}");
                }
                Change::Cleared => cleared = true,
                Change::None => {}
            }
        }
        assert!(flagged && cleared && !d.suspected());
    }

    #[test]
    fn a_growing_tmpfs_is_a_leak_and_growing_cache_is_not() {
        use crate::cgroup::stats::Breakdown;
        let mut l = Leaks::new(30, 256.0 * 1024.0);
        let mut seen = Vec::new();
        for s in 0..120 {
            let t = s as f64;
            let m = Breakdown {
                anon: 50 << 20,
                // A file read over and over fills the cache fast.
                file: (t * 4.0 * MIB) as u64,
                // Files written to /dev/shm: 1 MiB/s from 60 s on.
                shmem: ((t - 60.0).max(0.0) * MIB) as u64,
                ..Default::default()
            };
            if let (Change::Suspected(r), Some(k)) = l.push(t, &m) {
                seen.push((s, k, r));
            }
        }
        assert_eq!(seen.len(), 1, "{seen:?}");
        let (s, kind, rate) = seen[0];
        assert_eq!(kind, "shmem");
        // Suspected once the window holds enough of the growth; the rate
        // is the window's, so below the final 1 MiB/s at first.
        assert!(
            s >= 60 && (256.0 * 1024.0..=1.1 * MIB).contains(&rate),
            "{seen:?}"
        );
        assert_eq!(l.suspected(), Some("shmem"));
        assert!(l.leaning());
    }

    #[test]
    fn late_and_early_windows_give_the_same_rate() {
        // A watcher up for months: times far from the first sample.
        let run = |t0: f64| {
            let mut d = Detector::new(45, 1e5);
            let mut last = Change::None;
            for i in 0..200 {
                let t = t0 + i as f64 * 1000.0;
                last = d.push(t, 3e9 + i as f64 * 2e8);
            }
            (d.rate(), last)
        };
        let (early, _) = run(0.0);
        let (late, _) = run(1e7);
        assert!(
            (early - 2e5).abs() < 1.0 && (late - 2e5).abs() < 1.0,
            "{early} {late}"
        );
    }

    #[test]
    fn theil_sen_ignores_outliers() {
        let mut p: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, 2.0 * i as f64)).collect();
        p[5].1 = 1e9;
        p[15].1 = -1e9;
        assert!((theil_sen(&p) - 2.0).abs() < 1e-9);
    }
}
