//! What a workload's memory limit should be, from what it used: a chain of
//! small steps, each with one job, composed in [`recommend`] and tested
//! alone. No I/O: `recommend` (the command) gathers the observations from
//! the watcher's history or from Prometheus.
//!
//! 1. not enough history → no recommendation;
//! 2. a leak suspected → no raise (a bigger limit only feeds the leak);
//! 3. the peak working set × (1 + margin);
//! 4. after an OOM kill, at least the usage then × 1.2, and at least 32 MiB
//!    more than it;
//! 5. at least [`FLOOR`];
//! 6. rounded up to a readable size (two significant figures in M or G).

use serde::Serialize;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Below this a container cannot do much; Docker refuses under 6M.
pub const FLOOR: u64 = 16 * MIB;
/// After an OOM kill: the usage then, times this, …
pub const OOM_FACTOR: f64 = 1.2;
/// … and at least this much more.
pub const OOM_MIN_BUMP: u64 = 32 * MIB;

/// What was observed of a workload over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Observed {
    pub samples: u64,
    pub span_seconds: u64,
    pub peak_bytes: u64,
    pub p99_bytes: u64,
    pub oom_kills: u64,
    /// The largest usage at an OOM kill (its limit, for a kill at the limit).
    #[serde(skip)]
    pub oom_usage: Option<u64>,
    pub limit_hits: u64,
    /// Growth of a suspected leak, bytes per second, and of what.
    #[serde(skip)]
    pub leak: Option<(f64, Option<String>)>,
}

#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// 0.15 for 15%.
    pub margin: f64,
    /// Less history than this gets no recommendation.
    pub min_history_seconds: u64,
}

/// A recommendation, or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub struct Sized {
    /// The limit, as a policy writes it (`130M`, `1.3G`), and in bytes.
    pub limit: Option<(String, u64)>,
    pub reason: String,
    /// How much of `min_history` the history covers, capped at 1.
    pub confidence: f64,
}

/// The chain, in order.
pub fn recommend(o: &Observed, p: &Params) -> Sized {
    let confidence = if p.min_history_seconds == 0 {
        1.0
    } else {
        (o.span_seconds as f64 / p.min_history_seconds as f64).min(1.0)
    };
    if o.samples == 0 || o.span_seconds < p.min_history_seconds {
        return Sized {
            limit: None,
            reason: format!(
                "not enough history: {} of the {} asked for (--min-history)",
                crate::time::human_duration(o.span_seconds),
                crate::time::human_duration(p.min_history_seconds)
            ),
            confidence,
        };
    }
    if let Some((rate, growth)) = &o.leak {
        return Sized {
            limit: None,
            reason: format!(
                "leak suspected: fix it before raising the limit ({}growing {}/s)",
                growth
                    .as_deref()
                    .map(|g| format!("{g} "))
                    .unwrap_or_default(),
                crate::size::human_rounded(*rate as u64)
            ),
            confidence,
        };
    }
    let mut bytes = with_margin(o.peak_bytes, p.margin);
    let mut reason = format!(
        "peak {} + {:.0}%",
        crate::size::human_rounded(o.peak_bytes),
        p.margin * 100.0
    );
    if let Some(usage) = o.oom_usage.filter(|_| o.oom_kills > 0) {
        let bump = oom_bump(usage);
        if bump > bytes {
            bytes = bump;
            reason = format!(
                "{} OOM kill{} at {}: raised by 20% (at least 32M)",
                o.oom_kills,
                if o.oom_kills == 1 { "" } else { "s" },
                crate::size::human_rounded(usage)
            );
        }
    }
    if bytes < FLOOR {
        bytes = FLOOR;
        reason.push_str(", at least 16M");
    }
    let text = readable(bytes);
    let rounded = crate::size::parse_bytes(&text).unwrap_or(bytes);
    Sized {
        limit: Some((text, rounded)),
        reason,
        confidence,
    }
}

pub fn with_margin(peak: u64, margin: f64) -> u64 {
    (peak as f64 * (1.0 + margin)).ceil() as u64
}

pub fn oom_bump(usage: u64) -> u64 {
    ((usage as f64 * OOM_FACTOR).ceil() as u64).max(usage + OOM_MIN_BUMP)
}

/// `bytes` rounded up to two significant figures of M (below 1G) or G,
/// written as a policy writes sizes; at least one whole M.
pub fn readable(bytes: u64) -> String {
    let (unit, name) = if bytes < GIB { (MIB, "M") } else { (GIB, "G") };
    let (num, den) = step(bytes);
    // In whole steps, exactly: n steps of unit × num / den.
    let n = (bytes as u128 * den as u128)
        .div_ceil(unit as u128 * num as u128)
        .max(1);
    let v = n * num as u128;
    if den == 10 {
        format!("{}.{}{name}", v / 10, v % 10)
    } else {
        format!("{v}{name}")
    }
}

/// The step of [`readable`] as a fraction of its unit: `(num, den)`.
fn step(bytes: u64) -> (u64, u64) {
    let (unit, whole_min) = if bytes < GIB {
        (MIB, true)
    } else {
        (GIB, false)
    };
    let x = bytes / unit;
    match x {
        0..=9 if whole_min => (1, 1),
        0..=9 => (1, 10),
        _ => (10u64.pow(x.ilog10() - 1), 1),
    }
}

/// The step [`readable`] rounds `bytes` by: recommendations from two
/// sources that sample at different moments agree within it.
#[cfg(test)]
fn rounding_step(bytes: u64) -> u64 {
    let unit = if bytes < GIB { MIB } else { GIB };
    let (num, den) = step(bytes);
    unit * num / den
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(peak: u64) -> Observed {
        Observed {
            samples: 100,
            span_seconds: 3600,
            peak_bytes: peak,
            p99_bytes: peak,
            ..Observed::default()
        }
    }
    const P: Params = Params {
        margin: 0.15,
        min_history_seconds: 600,
    };

    #[test]
    fn readable_sizes_round_up_to_two_figures() {
        for (b, s) in [
            (93 * MIB + 1, "94M"),
            (123 * MIB, "130M"),
            (130 * MIB, "130M"),
            (5 * MIB / 2, "3M"),
            (1, "1M"),
            (1234 * MIB, "1.3G"),
            (13 * GIB / 10, "1.3G"),
            (12 * GIB + 1, "13G"),
            (2 * GIB, "2.0G"),
        ] {
            assert_eq!(readable(b), s, "{b}");
            let back = crate::size::parse_bytes(s).unwrap();
            assert!(back >= b && back - b <= rounding_step(b), "{b} {s}");
        }
    }

    #[test]
    fn peak_plus_margin_rounded() {
        let r = recommend(&observed(100 * MIB), &P);
        let (text, bytes) = r.limit.unwrap();
        assert_eq!(text, "120M");
        assert!((115 * MIB..=120 * MIB).contains(&bytes));
        assert!(r.reason.starts_with("peak 100M + 15%"), "{}", r.reason);
    }

    #[test]
    fn an_oom_kill_bumps_and_a_leak_vetoes() {
        let o = Observed {
            oom_kills: 2,
            oom_usage: Some(64 * MIB),
            ..observed(64 * MIB)
        };
        let (text, _) = recommend(&o, &P).limit.unwrap();
        assert_eq!(text, "96M", "64M + 32M");
        let o = Observed {
            leak: Some((300_000.0, Some("anon".into()))),
            ..o
        };
        let r = recommend(&o, &P);
        assert_eq!(r.limit, None);
        assert!(
            r.reason
                .starts_with("leak suspected: fix it before raising the limit (anon growing"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn short_history_and_tiny_workloads() {
        let o = Observed {
            span_seconds: 60,
            ..observed(100 * MIB)
        };
        let r = recommend(&o, &P);
        assert_eq!(r.limit, None);
        assert!(r.reason.contains("not enough history"), "{}", r.reason);
        assert!((r.confidence - 0.1).abs() < 1e-9);
        assert_eq!(recommend(&observed(MIB), &P).limit.unwrap().0, "16M");
    }
}
