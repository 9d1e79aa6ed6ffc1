//! `cglimit diagnose ID|NAME`: from an alert to its cause on one screen.
//! What the container's memory is (the vocabulary of
//! [`crate::cgroup::stats::Breakdown`]), which processes hold it and which
//! grow, the trend and the time to the limit, the kernel's reports of its
//! OOM kills, and a verdict in plain words. A running container is read
//! now; one that is gone is told from the records it left.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cgroup::procs::{self, Process};
use crate::cgroup::stats::{self, Breakdown, Sample};
use crate::cli::{DiagnoseArgs, Output};
use crate::facts::discover;
use crate::record::journal::{self, Event};
use crate::record::{self as records, DecisionEntry};
use crate::size::Limit;

/// What `diagnose` found (`-o json` prints it as it is).
#[derive(Debug, Serialize)]
pub struct Diagnosis {
    pub container: Container,
    pub limits: Limits,
    pub usage: Option<u64>,
    pub working_set: Option<u64>,
    pub memory: Option<Breakdown>,
    pub processes: Vec<Process>,
    /// Growth of each kind that can leak, bytes per second, over the
    /// window or as the watcher last saw it.
    pub growth: Option<Growth>,
    pub oom_kills: Vec<OomKill>,
    pub verdict: Verdict,
}

#[derive(Debug, Serialize)]
pub struct Container {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub cgroup: Option<String>,
    pub running: bool,
}

/// Bytes; `None`: no limit (or not known).
#[derive(Debug, Default, Serialize)]
pub struct Limits {
    pub memory: Option<u64>,
    /// Swap alone, on top of memory.
    pub swap: Option<u64>,
    pub high: Option<u64>,
    pub policy: Option<String>,
    pub why: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Growth {
    /// The kind that grows fastest (`anon`, `shmem`, `kernel`).
    pub kind: String,
    pub bytes_per_s: f64,
    /// Seconds until the limit at that rate.
    pub time_to_limit: Option<f64>,
    /// Where it was measured: `window` (this run) or `watch` (the
    /// watcher's last leak warning).
    pub from: &'static str,
}

/// One OOM kill, as the watcher recorded it (with the kernel's report
/// where the kernel log could be read).
#[derive(Debug, Serialize)]
pub struct OomKill {
    pub time: String,
    pub victim: Option<crate::sys::kmsg::Victim>,
    pub memory: Option<Breakdown>,
    pub tasks: Vec<crate::sys::kmsg::Task>,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    /// `anon-leak`, `shmem-leak`, `kernel-growth`, `cache`, `stable`.
    pub kind: &'static str,
    pub text: String,
}

pub fn run(args: &DiagnoseArgs) -> ExitCode {
    match diagnose(args) {
        Some(d) => {
            match args.output {
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default())
                }
                Output::Text => print!("{}", text(&d)),
            }
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "cglimit diagnose: no container {:?} is running, and {} holds no record of one",
                args.container,
                args.state_dir.display()
            );
            ExitCode::from(1)
        }
    }
}

fn diagnose(args: &DiagnoseArgs) -> Option<Diagnosis> {
    let q = args.container.as_str();
    let mut problems = Vec::new();
    let targets = discover::all(&args.sources, &mut problems);
    let target = targets
        .iter()
        .find(|t| t.facts.id == q || t.facts.name.as_deref() == Some(q))
        .or_else(|| {
            let mut by_prefix = targets.iter().filter(|t| t.facts.id.starts_with(q));
            match (by_prefix.next(), by_prefix.next()) {
                (Some(t), None) => Some(t),
                _ => None,
            }
        });
    let matches = |id: &str, name: Option<&str>| match target {
        Some(t) => id == t.facts.id,
        None => name == Some(q) || (!q.is_empty() && id.starts_with(q)),
    };
    let events: Vec<Event> = events_of(&args.state_dir, &matches);
    let decision = last_decision(&args.state_dir, &matches);
    let oom_kills: Vec<OomKill> = events
        .iter()
        .filter(|e| e.kind == "oom_kill")
        .rev()
        .take(3)
        .map(|e| OomKill {
            time: e.time.clone(),
            victim: e.victim.clone(),
            memory: e.memory.clone(),
            tasks: e.tasks.clone(),
        })
        .collect();
    let watched_leak = events
        .iter()
        .rev()
        .find(|e| e.kind == "leak_suspected" || e.kind == "leak_cleared")
        .filter(|e| e.kind == "leak_suspected");
    let mut limits = Limits::default();
    if let Some(d) = decision.as_ref().and_then(|d| d.decision.as_ref()) {
        limits.policy = d.policy.clone();
        limits.why = d.why.clone();
    }
    let Some(t) = target else {
        // Gone: what the records say.
        let last = events.last()?;
        let who = &last.container;
        return Some(gone(who, last, decision.as_ref(), limits, oom_kills));
    };
    let first = stats::read(&t.dir).ok()?;
    let mut processes = procs::read(&t.dir).unwrap_or_default();
    let (sample, growth) = match args.window {
        Some(w) => {
            // Read every twentieth of the window: the slope through all
            // readings (Theil-Sen, as the watcher's), not two points that
            // a heap's ups and downs could mislead.
            let started = Instant::now();
            let step = (w / 20).max(Duration::from_millis(50));
            let mut series = vec![(0.0, first.memory.clone())];
            let mut now = first;
            while started.elapsed() < w {
                std::thread::sleep(step);
                if let Ok(s) = stats::read(&t.dir) {
                    series.push((started.elapsed().as_secs_f64(), s.memory.clone()));
                    now = s;
                }
            }
            let mut after = procs::read(&t.dir).unwrap_or_default();
            procs::set_growth(&mut after, &processes, started.elapsed().as_secs_f64());
            processes = after;
            let growth = measured_growth(&series, &now, args.leak_threshold);
            (now, growth)
        }
        None => {
            let growth = watched_leak.map(|e| Growth {
                kind: e.growth.clone().unwrap_or_else(|| "anon".into()),
                bytes_per_s: e.rate.unwrap_or(0.0),
                time_to_limit: e.time_to_limit,
                from: "watch",
            });
            if let Some(p) = watched_leak.and_then(|e| e.process.as_ref())
                && let Some(mine) = processes.iter_mut().find(|x| x.pid == p.pid)
            {
                mine.growth_bytes_per_s = p.growth_bytes_per_s;
            }
            (first, growth)
        }
    };
    limits.memory = sample.limit;
    limits.swap = sample.swap_only_limit();
    limits.high = sample.high;
    let verdict = verdict(&sample, growth.as_ref(), &processes, oom_kills.first());
    Some(Diagnosis {
        container: Container {
            id: t.facts.id.clone(),
            name: t.facts.name.clone(),
            image: t.facts.image.clone(),
            cgroup: t.facts.cgroup.clone(),
            running: true,
        },
        limits,
        usage: Some(sample.usage),
        working_set: Some(sample.working_set()),
        memory: Some(sample.memory.clone()),
        processes,
        growth,
        oom_kills,
        verdict,
    })
}

/// The fastest growing kind that can leak, when it grows above the
/// threshold over the readings of the window.
fn measured_growth(series: &[(f64, Breakdown)], now: &Sample, threshold: u64) -> Option<Growth> {
    if series.len() < 3 {
        return None;
    }
    let rate = |f: fn(&Breakdown) -> u64| {
        let points: Vec<(f64, f64)> = series.iter().map(|(t, m)| (*t, f(m) as f64)).collect();
        crate::leak::theil_sen(&points)
    };
    let (kind, r) = [
        ("anon", rate(|m| m.anon)),
        ("shmem", rate(|m| m.shmem)),
        ("kernel", rate(|m| m.kernel)),
    ]
    .into_iter()
    .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (r >= threshold as f64).then(|| Growth {
        kind: kind.into(),
        bytes_per_s: r,
        time_to_limit: now.limit.map(|l| l.saturating_sub(now.usage) as f64 / r),
        from: "window",
    })
}

fn verdict(
    s: &Sample,
    growth: Option<&Growth>,
    processes: &[Process],
    last_kill: Option<&OomKill>,
) -> Verdict {
    let m = &s.memory;
    let per_min = |r: f64| format!("{}/min", Limit::Bytes((r * 60.0) as u64));
    let eta = |g: &Growth| {
        g.time_to_limit
            .map(|t| format!("; limit reached in ~{}", duration(t)))
            .unwrap_or_default()
    };
    let mut v = match growth {
        Some(g) if g.kind == "anon" => {
            let who = procs::top_grower(processes)
                .or(processes.first())
                .map(|p| format!(" in pid {} ({})", p.pid, p.comm))
                .unwrap_or_default();
            Verdict {
                kind: "anon-leak",
                text: format!(
                    "anon grows {}{who}: a heap leak in that process{}",
                    per_min(g.bytes_per_s),
                    eta(g)
                ),
            }
        }
        Some(g) if g.kind == "shmem" => Verdict {
            kind: "shmem-leak",
            text: format!(
                "shmem (tmpfs, /dev/shm) {} and growing {}: files written there count against the limit and are never reclaimed{}",
                Limit::Bytes(m.shmem),
                per_min(g.bytes_per_s),
                eta(g)
            ),
        },
        Some(g) => Verdict {
            kind: "kernel-growth",
            text: format!(
                "kernel memory {} and growing {}: slab and page tables, often sockets or files opened and never closed{}",
                Limit::Bytes(m.kernel),
                per_min(g.bytes_per_s),
                eta(g)
            ),
        },
        None if m.file > 0 && m.file >= m.anon + m.shmem + m.kernel => Verdict {
            kind: "cache",
            text: format!(
                "file cache {} of {}: reclaimable, not a leak; the working set is {}",
                Limit::Bytes(m.file),
                Limit::Bytes(s.usage),
                Limit::Bytes(s.working_set())
            ),
        },
        None => Verdict {
            kind: "stable",
            text: format!(
                "stable: {} in use{}, nothing grows",
                Limit::Bytes(s.working_set()),
                s.limit
                    .map(|l| format!(" of {}", Limit::Bytes(l)))
                    .unwrap_or_default()
            ),
        },
    };
    if let Some(k) = last_kill {
        v.text.push_str(&format!("; last OOM kill at {}", k.time));
        if let Some(victim) = &k.victim {
            v.text.push_str(&format!(
                ": {} (pid {}, anon {})",
                victim.comm,
                victim.pid,
                Limit::Bytes(victim.anon_rss)
            ));
        }
    }
    v
}

/// A container that is gone, as its records tell it.
fn gone(
    who: &journal::Who,
    last: &Event,
    decision: Option<&DecisionEntry>,
    mut limits: Limits,
    oom_kills: Vec<OomKill>,
) -> Diagnosis {
    let memory = oom_kills
        .first()
        .and_then(|k| k.memory.clone())
        .or_else(|| last.memory.clone());
    limits.memory = last.limit;
    let text = match oom_kills.first() {
        Some(k) => format!(
            "gone; OOM-killed at {}{}",
            k.time,
            k.victim
                .as_ref()
                .map(|v| format!(
                    ": {} (pid {}, anon {}, shmem {})",
                    v.comm,
                    v.pid,
                    Limit::Bytes(v.anon_rss),
                    Limit::Bytes(v.shmem_rss)
                ))
                .unwrap_or_default()
        ),
        None => format!("gone; its last event: {} at {}", last.kind, last.time),
    };
    Diagnosis {
        container: Container {
            id: who.id.clone(),
            name: who.name.clone(),
            image: who.image.clone(),
            cgroup: Some(last.cgroup.clone())
                .filter(|c| !c.is_empty())
                .or_else(|| decision.and_then(|d| d.container.cgroup.clone())),
            running: false,
        },
        limits,
        usage: None,
        working_set: None,
        memory,
        processes: Vec::new(),
        growth: None,
        oom_kills,
        verdict: Verdict {
            kind: "stable",
            text,
        },
    }
}

fn events_of(state_dir: &Path, matches: &dyn Fn(&str, Option<&str>) -> bool) -> Vec<Event> {
    let path = state_dir.join(journal::FILE);
    let mut all = journal::read(&path.with_extension("jsonl.1"));
    all.extend(journal::read(&path));
    all.retain(|e| matches(&e.container.id, e.container.name.as_deref()));
    all
}

fn last_decision(
    state_dir: &Path,
    matches: &dyn Fn(&str, Option<&str>) -> bool,
) -> Option<DecisionEntry> {
    let text = std::fs::read_to_string(state_dir.join(records::DECISIONS)).ok()?;
    text.lines()
        .rev()
        .filter_map(DecisionEntry::parse)
        .find(|d| d.decision.is_some() && matches(&d.container.id, d.container.name.as_deref()))
}

fn duration(secs: f64) -> String {
    crate::time::human_duration(secs.max(0.0) as u64)
}

fn text(d: &Diagnosis) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let b = |v: u64| Limit::Bytes(v).to_string();
    let opt = |v: Option<u64>| v.map_or("none".to_string(), b);
    let c = &d.container;
    let _ = writeln!(
        o,
        "{}{}{}",
        discover::display(&c.id, c.name.as_deref()),
        c.image
            .as_deref()
            .map(|i| format!(" ({i})"))
            .unwrap_or_default(),
        if c.running { "" } else { " — gone" }
    );
    let l = &d.limits;
    let _ = writeln!(
        o,
        "limits:     memory {}, swap {}, high {}{}",
        opt(l.memory),
        opt(l.swap),
        opt(l.high),
        l.policy
            .as_deref()
            .map(|p| format!(" — policy {p:?}"))
            .unwrap_or_default()
    );
    if let Some(why) = &l.why {
        let _ = writeln!(o, "            {why}");
    }
    if let (Some(u), Some(ws)) = (d.usage, d.working_set) {
        let pct = l
            .memory
            .map(|m| format!(" ({:.0}% of the limit)", ws as f64 * 100.0 / m as f64))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "usage:      {} with cache, working set {}{pct}",
            b(u),
            b(ws)
        );
    }
    if let Some(m) = &d.memory {
        let parts: Vec<String> = m
            .kinds()
            .iter()
            .map(|(k, v)| format!("{k} {}", b(*v)))
            .collect();
        let _ = writeln!(o, "memory:     {}", parts.join(", "));
        let _ = writeln!(
            o,
            "            (file: {} active, {} inactive, reclaimable)",
            b(m.file_active),
            b(m.file_inactive)
        );
    }
    if let Some(g) = &d.growth {
        let _ = writeln!(
            o,
            "growth:     {} +{}/s ({}){}",
            g.kind,
            b(g.bytes_per_s as u64),
            g.from,
            g.time_to_limit
                .map(|t| format!(", limit in ~{}", duration(t)))
                .unwrap_or_default()
        );
    }
    if !d.processes.is_empty() {
        let _ = writeln!(o, "processes:");
        let mut rows =
            vec![["PID", "COMMAND", "ANON", "FILE", "SHMEM", "GROWTH"].map(String::from)];
        for p in d.processes.iter().take(10) {
            rows.push([
                p.pid.to_string(),
                p.comm.clone(),
                b(p.anon),
                b(p.file),
                b(p.shmem),
                p.growth_bytes_per_s
                    .map(|g| {
                        if g.abs() < 1.0 {
                            "flat".to_string()
                        } else if g > 0.0 {
                            format!("+{}/s", b(g as u64))
                        } else {
                            format!("-{}/s", b((-g) as u64))
                        }
                    })
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        let mut table = String::new();
        for r in crate::cmd::table_lines(&rows) {
            let _ = writeln!(table, "  {r}");
        }
        o.push_str(&table);
    }
    for k in &d.oom_kills {
        match &k.victim {
            Some(v) => {
                let _ = writeln!(
                    o,
                    "OOM kill:   {} {} (pid {}): anon {}, file {}, shmem {}",
                    k.time,
                    v.comm,
                    v.pid,
                    b(v.anon_rss),
                    b(v.file_rss),
                    b(v.shmem_rss)
                );
            }
            None => {
                let _ = writeln!(o, "OOM kill:   {} (no kernel report)", k.time);
            }
        }
    }
    let _ = writeln!(o, "verdict:    {} — {}", d.verdict.kind, d.verdict.text);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn sample(m: Breakdown) -> Sample {
        Sample {
            usage: m.anon + m.file + m.shmem + m.kernel,
            limit: Some(256 * MIB),
            memory: m,
            ..Default::default()
        }
    }

    #[test]
    fn each_kind_gets_its_verdict() {
        let m = Breakdown {
            anon: 20 * MIB,
            file: 200 * MIB,
            ..Default::default()
        };
        assert_eq!(verdict(&sample(m.clone()), None, &[], None).kind, "cache");
        let steady = Breakdown {
            anon: 20 * MIB,
            file: MIB,
            ..Default::default()
        };
        assert_eq!(verdict(&sample(steady), None, &[], None).kind, "stable");
        let p = |pid, g: f64| Process {
            pid,
            comm: format!("w{pid}"),
            growth_bytes_per_s: Some(g),
            ..Default::default()
        };
        let g = |kind: &str| Growth {
            kind: kind.into(),
            bytes_per_s: MIB as f64,
            time_to_limit: Some(90.0),
            from: "window",
        };
        let v = verdict(
            &sample(m.clone()),
            Some(&g("anon")),
            &[p(7, 0.0), p(42, MIB as f64), p(9, 10.0)],
            None,
        );
        assert_eq!(v.kind, "anon-leak");
        assert!(
            v.text.contains("pid 42 (w42)") && v.text.contains("90 s"),
            "{}",
            v.text
        );
        assert_eq!(
            verdict(&sample(m.clone()), Some(&g("shmem")), &[], None).kind,
            "shmem-leak"
        );
        assert_eq!(
            verdict(&sample(m), Some(&g("kernel")), &[], None).kind,
            "kernel-growth"
        );
    }

    #[test]
    fn growth_below_the_threshold_or_of_cache_is_none() {
        // Cache grows fast, anon barely: nothing grows that could leak.
        let series: Vec<(f64, Breakdown)> = (0..10)
            .map(|i| {
                let m = Breakdown {
                    anon: 10 * MIB + i * 1000,
                    file: 10 * MIB + i * 50 * MIB,
                    ..Default::default()
                };
                (i as f64, m)
            })
            .collect();
        let now = sample(series[9].1.clone());
        assert!(measured_growth(&series, &now, 262_144).is_none());
        // A heap that doubles and halves around a steady tmpfs growth: the
        // slope through every reading is the tmpfs's 1 MiB/s.
        let series: Vec<(f64, Breakdown)> = (0..20)
            .map(|i| {
                let m = Breakdown {
                    anon: if i % 2 == 0 { 10 * MIB } else { 20 * MIB },
                    shmem: i * MIB,
                    ..Default::default()
                };
                (i as f64, m)
            })
            .collect();
        let now = sample(series[19].1.clone());
        let g = measured_growth(&series, &now, 262_144).unwrap();
        assert_eq!((g.kind.as_str(), g.bytes_per_s), ("shmem", MIB as f64));
    }
}
