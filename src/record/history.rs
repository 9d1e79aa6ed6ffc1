//! What the watcher remembers of each workload, for `recommend`: peaks of
//! the working set by hour, a histogram of it by day, the OOM kills and
//! limit hits with the usage at each, the leaks suspected. Kept in
//! `history.json` in the state directory, written whole (beside, then
//! renamed) every `--history-save` and when the watcher stops, so it
//! survives restarts.
//!
//! Bounded whatever the churn: at most [`MAX_HOURS`] hourly peaks and
//! [`MAX_DAYS`] daily histograms per workload (eight days), the last
//! [`MAX_CONTAINERS`] container names and [`MAX_EVENTS`] events of each
//! kind, and at most `--history-workloads` workloads (the ones seen least
//! recently are forgotten first).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::facts::workload::Kind;

pub const FILE: &str = "history.json";
/// Eight days of hourly peaks.
pub const MAX_HOURS: usize = 192;
pub const MAX_DAYS: usize = 8;
pub const MAX_CONTAINERS: usize = 8;
pub const MAX_EVENTS: usize = 16;
pub const DEFAULT_WORKLOADS: usize = 2000;
const VERSION: u32 = 1;
/// Histogram bins grow by 5%: a percentile read from them is at most 5%
/// above the true one (the bin's upper edge is taken).
const BIN_RATIO: f64 = 1.05;

#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct History {
    pub version: u32,
    pub workloads: BTreeMap<String, Workload>,
}

#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Workload {
    pub kind: Kind,
    /// The last names (or ids) of its containers, oldest first.
    pub containers: Vec<String>,
    /// Containers seen in all.
    pub containers_seen: u64,
    /// First and last sample, in seconds since the epoch.
    pub first: u64,
    pub last: u64,
    /// The policy that set its limit, and the limit, as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Hourly peaks: `[hour since the epoch, peak working set, samples]`.
    pub hours: Vec<(u64, u64, u64)>,
    /// Daily histograms of the working set: bin → samples.
    pub days: Vec<Day>,
    pub ooms: Vec<Oom>,
    pub oom_total: u64,
    pub hits: Vec<Hit>,
    pub hit_total: u64,
    pub leaks: Vec<Leak>,
}

#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Day {
    /// Days since the epoch.
    pub day: u64,
    pub bins: BTreeMap<u32, u64>,
}

/// An OOM kill: when, in which container, and what the cgroup held (its
/// limit, or its usage where it had none).
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Oom {
    pub at: u64,
    pub container: String,
    pub usage: u64,
}

/// Times the limit was hit between two readings, and the usage then.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Hit {
    pub at: u64,
    pub count: u64,
    pub usage: u64,
}

#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Leak {
    pub at: u64,
    pub container: String,
    /// Bytes per second.
    pub rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<String>,
}

/// Why the history could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a history file cglimit wrote: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The histogram bin of a size, and the upper edge of a bin.
fn bin(bytes: u64) -> u32 {
    if bytes <= 1 {
        return 0;
    }
    ((bytes as f64).ln() / BIN_RATIO.ln()).ceil() as u32
}

fn upper(bin: u32) -> u64 {
    BIN_RATIO.powi(bin as i32).round() as u64
}

fn push_bounded<T>(v: &mut Vec<T>, item: T, max: usize) {
    if max == 0 {
        return;
    }
    // The oldest out first, and room for `max` at most: a vector left to
    // double would keep up to twice that for every workload.
    if v.len() >= max {
        v.drain(..=v.len() - max);
    }
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() * 2).clamp(4.min(max), max) - v.len());
    }
    v.push(item);
}

impl History {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// The history in `state_dir`; empty when there is none yet.
    pub fn load(state_dir: &Path) -> Result<History, HistoryError> {
        let path = Self::path(state_dir);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::default()),
            Err(source) => return Err(HistoryError::Io { path, source }),
        };
        serde_json::from_slice(&text).map_err(|source| HistoryError::Format { path, source })
    }

    /// Writes the history beside its file, then renames it over: a reader
    /// (or a crash) sees the old one or the new one, never half.
    /// Written whole, streamed (the watcher saves it every minute: ten
    /// thousand workloads are megabytes, neither copied nor held as text).
    pub fn save(&mut self, state_dir: &Path) -> Result<(), HistoryError> {
        let path = Self::path(state_dir);
        let tmp = state_dir.join(format!(".{FILE}.tmp"));
        let io = |source| HistoryError::Io {
            path: path.clone(),
            source,
        };
        let f = std::fs::File::create(&tmp).map_err(io)?;
        self.version = VERSION;
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, f);
        serde_json::to_writer(&mut out, self).map_err(|e| io(e.into()))?;
        let f = out.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    fn entry(&mut self, key: &str, kind: Kind) -> &mut Workload {
        self.workloads
            .entry(key.to_string())
            .or_insert_with(|| Workload {
                kind,
                ..Workload::default()
            })
    }

    /// A container of workload `key` was seen for the first time.
    pub fn container(&mut self, key: &str, kind: Kind, container: &str) {
        let w = self.entry(key, kind);
        w.containers_seen += 1;
        w.containers.retain(|c| c != container);
        push_bounded(&mut w.containers, container.to_string(), MAX_CONTAINERS);
    }

    /// Readings of a container's working set up to `at` (seconds since the
    /// epoch).
    pub fn sample(&mut self, key: &str, kind: Kind, at: u64, r: Reading) {
        let w = match self.workloads.get_mut(key) {
            Some(w) => w,
            None => self.entry(key, kind),
        };
        if w.first == 0 {
            w.first = at;
        }
        w.last = w.last.max(at);
        w.limit = r.limit;
        if let Some(p) = r.policy
            && w.policy.as_deref() != Some(p)
        {
            w.policy = Some(p.to_string());
        }
        let (working_set, n) = (r.peak, r.samples);
        let hour = at / 3600;
        match w.hours.last_mut() {
            Some(h) if h.0 == hour => {
                h.1 = h.1.max(working_set);
                h.2 += n;
            }
            _ => push_bounded(&mut w.hours, (hour, working_set, n), MAX_HOURS),
        }
        let day = at / 86400;
        if w.days.last().is_none_or(|d| d.day != day) {
            push_bounded(
                &mut w.days,
                Day {
                    day,
                    bins: BTreeMap::new(),
                },
                MAX_DAYS,
            );
        }
        if let Some(d) = w.days.last_mut() {
            *d.bins.entry(bin(working_set)).or_insert(0) += n;
        }
    }

    pub fn oom(&mut self, key: &str, kind: Kind, oom: Oom) {
        let w = self.entry(key, kind);
        w.oom_total += 1;
        push_bounded(&mut w.ooms, oom, MAX_EVENTS);
    }

    pub fn hit(&mut self, key: &str, kind: Kind, hit: Hit) {
        let w = self.entry(key, kind);
        w.hit_total += hit.count;
        push_bounded(&mut w.hits, hit, MAX_EVENTS);
    }

    pub fn leak(&mut self, key: &str, kind: Kind, leak: Leak) {
        let w = self.entry(key, kind);
        push_bounded(&mut w.leaks, leak, MAX_EVENTS);
    }

    /// Forgets the workloads seen least recently beyond `max`.
    pub fn trim(&mut self, max: usize) {
        if self.workloads.len() <= max {
            return;
        }
        let mut by_age: Vec<(u64, String)> = self
            .workloads
            .iter()
            .map(|(k, w)| (w.last, k.clone()))
            .collect();
        by_age.sort();
        let n = self.workloads.len() - max;
        for (_, k) in by_age.into_iter().take(n) {
            self.workloads.remove(&k);
        }
    }
}

/// What the watcher read of a container since it last recorded it: the
/// highest working set of `samples` readings, and the limit and policy.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    pub peak: u64,
    pub samples: u64,
    pub limit: Option<u64>,
    pub policy: Option<&'a str>,
}

#[cfg(test)]
impl Reading<'_> {
    /// One reading.
    pub fn one(working_set: u64, limit: Option<u64>) -> Reading<'static> {
        Reading {
            peak: working_set,
            samples: 1,
            limit,
            policy: None,
        }
    }
}

/// A workload's history since some time, as `recommend` weighs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub samples: u64,
    pub span_seconds: u64,
    pub peak: u64,
    pub p99: u64,
    pub oom_kills: u64,
    /// The largest usage at an OOM kill.
    pub oom_usage: Option<u64>,
    pub limit_hits: u64,
    /// The fastest growth of a leak suspected, and of what.
    pub leak: Option<(f64, Option<String>)>,
}

impl Workload {
    /// What was recorded at or after `since` (seconds since the epoch):
    /// peaks by the hour and percentiles by the day that `since` falls in.
    pub fn summary(&self, since: u64) -> Summary {
        let hours: Vec<_> = self.hours.iter().filter(|h| h.0 >= since / 3600).collect();
        let mut bins: BTreeMap<u32, u64> = BTreeMap::new();
        for d in self.days.iter().filter(|d| d.day >= since / 86400) {
            for (b, n) in &d.bins {
                *bins.entry(*b).or_insert(0) += n;
            }
        }
        let total: u64 = bins.values().sum();
        let mut p99 = 0;
        let mut seen = 0;
        for (b, n) in &bins {
            seen += n;
            if seen as f64 >= 0.99 * total as f64 {
                p99 = upper(*b);
                break;
            }
        }
        let peak = hours.iter().map(|h| h.1).max().unwrap_or(0);
        let ooms: Vec<_> = self.ooms.iter().filter(|o| o.at >= since).collect();
        let leak = self
            .leaks
            .iter()
            .filter(|l| l.at >= since)
            .max_by(|a, b| a.rate.total_cmp(&b.rate))
            .map(|l| (l.rate, l.growth.clone()));
        Summary {
            samples: hours.iter().map(|h| h.2).sum(),
            span_seconds: if hours.is_empty() {
                0
            } else {
                self.last.saturating_sub(self.first.max(since))
            },
            peak,
            // Never above the peak: the bin's upper edge may be.
            p99: p99.min(peak),
            oom_kills: ooms.len() as u64,
            oom_usage: ooms.iter().map(|o| o.usage).max(),
            limit_hits: self
                .hits
                .iter()
                .filter(|h| h.at >= since)
                .map(|h| h.count)
                .sum(),
            leak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;

    #[test]
    fn peaks_percentiles_and_events_since() {
        let mut h = History::default();
        let t0 = 1_000 * 86400;
        h.container("web", Kind::Name, "web-1");
        for s in 0..1000 {
            let ws = if s == 500 { 300 * M } else { 100 * M };
            let r = Reading {
                policy: Some("default"),
                ..Reading::one(ws, Some(512 * M))
            };
            h.sample("web", Kind::Name, t0 + s, r);
        }
        h.oom(
            "web",
            Kind::Name,
            Oom {
                at: t0 + 10,
                container: "web-1".into(),
                usage: 512 * M,
            },
        );
        let s = h.workloads["web"].summary(t0);
        assert_eq!(s.samples, 1000);
        assert_eq!(s.span_seconds, 999);
        assert_eq!(s.peak, 300 * M);
        assert!(s.p99 >= 100 * M && s.p99 <= 105 * M, "{}", s.p99);
        assert_eq!((s.oom_kills, s.oom_usage), (1, Some(512 * M)));
        // A day later, nothing of that day counts.
        assert_eq!(h.workloads["web"].summary(t0 + 86400).samples, 0);
        assert_eq!(h.workloads["web"].policy.as_deref(), Some("default"));
    }

    #[test]
    fn bounded_after_ten_thousand_containers_of_a_thousand_workloads() {
        let mut h = History::default();
        let t0 = 20_000 * 86400;
        // Ten days of hourly samples for 10,000 containers of 1,000
        // workloads, each with an OOM kill, a limit hit and a leak, and
        // sizes spread over many bins.
        for c in 0..10_000u64 {
            let key = format!("svc{}", c % 1000);
            h.container(&key, Kind::Name, &format!("{key}-{c}"));
        }
        for hour in 0..240u64 {
            for w in 0..1000u64 {
                let key = format!("svc{w}");
                let at = t0 + hour * 3600;
                let ws = (w + 1) * M + (hour * 7919 % 97) * M;
                let r = Reading {
                    policy: Some("default"),
                    ..Reading::one(ws, Some(1 << 30))
                };
                h.sample(&key, Kind::Name, at, r);
                h.oom(
                    &key,
                    Kind::Name,
                    Oom {
                        at,
                        container: format!("{key}-{hour}"),
                        usage: ws,
                    },
                );
                h.hit(
                    &key,
                    Kind::Name,
                    Hit {
                        at,
                        count: 1,
                        usage: ws,
                    },
                );
                h.leak(
                    &key,
                    Kind::Name,
                    Leak {
                        at,
                        container: format!("{key}-{hour}"),
                        rate: 1e6,
                        growth: Some("anon".into()),
                    },
                );
            }
        }
        h.trim(DEFAULT_WORKLOADS);
        assert_eq!(h.workloads.len(), 1000);
        for w in h.workloads.values() {
            assert!(w.hours.len() <= MAX_HOURS && w.days.len() <= MAX_DAYS);
            assert!(w.containers.len() <= MAX_CONTAINERS && w.ooms.len() <= MAX_EVENTS);
        }
        let bytes = serde_json::to_vec(&h).unwrap().len();
        eprintln!("history of 1,000 full workloads: {bytes} bytes");
        // The bound docs/recommend.md states: 16 KiB per workload at most.
        assert!(bytes < 1000 * 16 * 1024, "{bytes}");
        // More workloads than kept: the least recent go.
        h.sample("late", Kind::Name, t0 + 241 * 3600, Reading::one(M, None));
        h.trim(1000);
        assert!(h.workloads.contains_key("late") && h.workloads.len() == 1000);
    }

    #[test]
    fn saved_whole_and_read_back() {
        let dir = std::env::temp_dir().join(format!("cglimit-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut h = History::default();
        h.sample("web", Kind::Name, 86400, Reading::one(5 * M, None));
        h.save(&dir).unwrap();
        let back = History::load(&dir).unwrap();
        assert_eq!(back.workloads, h.workloads);
        std::fs::write(History::path(&dir), "{").unwrap();
        let e = History::load(&dir).unwrap_err().to_string();
        assert!(e.contains("history.json: not a history file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
