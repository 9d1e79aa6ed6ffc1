//! `cglimit apply`: the same policies against containers that already run.
//!
//! Gathering differs (engine, runtime state dirs, cgroups: see [`discover`]);
//! deciding is the hook's code, and writing is the engine's update endpoint
//! for Docker containers (so `docker inspect`, restarts and `docker stats`
//! agree) and the hook's cgroup writer for the rest.

pub mod discover;
mod report;

use std::process::ExitCode;

use serde::Serialize;

use crate::cgroup::{self, Hierarchy, Snapshot};
use crate::cli::ApplyArgs;
use crate::decision::{self, Decision, Limits, Verdict};
use crate::engine;
use crate::policy;
use crate::record::{self, DecisionRecord};
use crate::size::Limit;
use discover::{Problem, Source, Target};

/// The containers `watch` follows besides the recorded decisions.
pub fn discover_for_watch(
    args: &crate::cli::WatchArgs,
    problems: &mut Vec<Problem>,
) -> Vec<Target> {
    discover::all(&args.sources, problems)
}

/// What happened to one container.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Compliant,
    Fixed,
    WouldFix,
    NotFixed,
}

#[derive(Serialize)]
pub struct Row {
    pub container: String,
    pub id: String,
    pub source: &'static str,
    pub policy: Option<String>,
    pub before: Option<Snapshot>,
    pub target: Option<Limits>,
    pub status: Status,
    pub reason: String,
    #[serde(skip)]
    pub hierarchy: Option<Hierarchy>,
}

pub fn run(args: &ApplyArgs) -> ExitCode {
    if !args.all && args.containers.is_empty() {
        eprintln!("cglimit apply: name containers (ID|NAME...) or use --all");
        return ExitCode::from(2);
    }
    if args.watch && args.dry_run {
        eprintln!("cglimit apply: --watch and --dry-run do not go together");
        return ExitCode::from(2);
    }
    loop {
        let (rows, problems) = match pass(args) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("cglimit apply: {e}");
                if !args.watch {
                    return ExitCode::from(1);
                }
                (Vec::new(), Vec::new())
            }
        };
        if args.watch {
            for r in rows.iter().filter(|r| r.status == Status::Fixed) {
                log::info!("{}: drift corrected: {}", r.container, r.reason);
                if let Some(dir) = &args.state_dir {
                    let ev = serde_json::json!({
                        "time": record::now_rfc3339(),
                        "kind": "drift_corrected",
                        "container": {"id": r.id, "name": r.container},
                        "policy": r.policy,
                        "before": r.before,
                        "after": r.target,
                        "source": r.source,
                    });
                    if let Err(e) = record::append(dir, "events.jsonl", &ev) {
                        log::error!("{e}");
                    }
                }
            }
            for r in rows.iter().filter(|r| r.status == Status::NotFixed) {
                log::warn!("{}: not fixed: {}", r.container, r.reason);
            }
            for p in &problems {
                log::warn!("{}: {}", p.container, p.message);
            }
            std::thread::sleep(args.interval);
            continue;
        }
        report::print(args.output, &rows, &problems);
        let failed = rows.iter().any(|r| r.status == Status::NotFixed) || !problems.is_empty();
        return if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
}

fn pass(args: &ApplyArgs) -> Result<(Vec<Row>, Vec<Problem>), String> {
    args.policy
        .check_perms()
        .map_err(|e| format!("untrusted policy: {e}"))?;
    let policies =
        policy::load_path(&args.policy.policy_dir).map_err(|e| format!("invalid policy:\n{e}"))?;
    let mut problems = Vec::new();
    let mut targets = discover::all(&args.sources, &mut problems);
    if !args.all {
        targets = select(args, targets, &mut problems);
    }
    let rows = targets.iter().map(|t| one(args, &policies, t)).collect();
    Ok((rows, problems))
}

/// Keeps the named containers, and says why any name was not found.
fn select(args: &ApplyArgs, targets: Vec<Target>, problems: &mut Vec<Problem>) -> Vec<Target> {
    let matches = |t: &Target, want: &str| {
        t.facts.name.as_deref() == Some(want)
            || t.facts.id == want
            || (want.len() >= 4 && t.facts.id.starts_with(want))
    };
    for want in &args.containers {
        if targets.iter().any(|t| matches(t, want)) {
            continue;
        }
        let message = stopped_or_unknown(args, want);
        problems.push(Problem {
            container: want.clone(),
            message,
        });
    }
    targets
        .into_iter()
        .filter(|t| args.containers.iter().any(|w| matches(t, w)))
        .collect()
}

fn stopped_or_unknown(args: &ApplyArgs, want: &str) -> String {
    let src = &args.sources;
    if !src.no_docker {
        let host = src
            .docker_host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok());
        if let Ok(socket) = engine::socket_path(host.as_deref())
            && let Ok(body) = engine::get(
                &socket,
                &format!("/containers/{want}/json"),
                src.engine_timeout,
            )
        {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let status = v["State"]["Status"].as_str().unwrap_or("unknown");
            return format!(
                "container is not running (status {status}); nothing to apply until it starts (the hook or the runtime wrapper applies its limits then)"
            );
        }
    }
    "no running container with this id or name was found".into()
}

fn one(args: &ApplyArgs, policies: &[policy::Policy], t: &Target) -> Row {
    let mut row = Row {
        container: discover::display(&t.facts.id, t.facts.name.as_deref()),
        id: t.facts.id.clone(),
        source: t.source.label(),
        policy: None,
        before: None,
        target: None,
        status: Status::NotFixed,
        reason: String::new(),
        hierarchy: Some(t.dir.hierarchy.clone()),
    };
    let before = match cgroup::snapshot(&t.dir) {
        Ok(s) => s,
        Err(e) => {
            row.reason = e.to_string();
            return row;
        }
    };
    row.before = Some(before);
    let d = decision::decide(policies, &t.facts);
    row.policy = d.policy.clone();
    if let Verdict::Deny { message } = &d.verdict {
        row.reason = format!("the policy refuses this container: {message}");
        return row;
    }
    row.target = Some(d.limits);
    let pending = cgroup::pending(&t.dir, &before, &d.limits);
    let engine_stale = match &t.source {
        Source::Docker { running, .. } => !engine_agrees(running, &d.limits, &t.dir.hierarchy),
        _ => false,
    };
    if pending.is_empty() && !engine_stale {
        row.status = Status::Compliant;
        row.reason = why(&d);
        return row;
    }
    row.reason = why(&d);
    if args.dry_run {
        row.status = Status::WouldFix;
        return row;
    }
    // Never surprise anyone with an OOM kill: a limit below what is in use
    // is only lowered with --force.
    if let Limit::Bytes(want) = d.limits.memory {
        match cgroup::usage(&t.dir) {
            Ok(used) if used > want => {
                if !args.force {
                    row.reason = format!(
                        "uses {}, more than the wanted limit {}; not lowered (--force reclaims and lowers, accepting an OOM kill)",
                        Limit::Bytes(used),
                        Limit::Bytes(want)
                    );
                    return row;
                }
                if let Err(e) = cgroup::reclaim(&t.dir, used - want) {
                    log::warn!("{}: {e}", row.container);
                }
            }
            Err(e) => {
                row.reason = e.to_string();
                return row;
            }
            _ => {}
        }
    }
    if let Err(e) = enforce(t, &d.limits) {
        row.reason = e;
        return row;
    }
    row.status = Status::Fixed;
    if let Some(dir) = &args.state_dir {
        let rec = DecisionRecord {
            time: record::now_rfc3339(),
            source: "apply",
            outcome: "applied",
            container: &t.facts,
            decision: Some(&d),
            applied: None,
            error: None,
        };
        if let Err(e) = record::append(dir, record::DECISIONS, &rec) {
            log::error!("{e}");
        }
    }
    row
}

fn why(d: &Decision) -> String {
    let mut parts: Vec<String> = d.findings.iter().map(|f| f.to_string()).collect();
    parts.extend(d.notes.iter().cloned());
    if parts.is_empty() {
        "within the policy".into()
    } else {
        parts.join("; ")
    }
}

/// Whether `docker inspect` already says what the policy wants.
fn engine_agrees(r: &engine::Running, l: &Limits, h: &Hierarchy) -> bool {
    let reservation_ok = match (h, l.high) {
        (Hierarchy::V1, Some(Limit::Bytes(b))) => r.memory_reservation == b as i64,
        _ => true,
    };
    r.memory == l.memory.to_oci() && r.memory_swap == l.memory_swap().to_oci() && reservation_ok
}

fn enforce(t: &Target, l: &Limits) -> Result<(), String> {
    if let Source::Docker { socket, running } = &t.source {
        if l.memory == Limit::Unlimited {
            return Err(
                "the engine cannot remove a memory limit through an update; left as is".into(),
            );
        }
        // v1: the engine's reservation is the soft limit, i.e. `high`.
        let reservation = match (&t.dir.hierarchy, l.high) {
            (Hierarchy::V1, Some(Limit::Bytes(b))) => Some(b as i64),
            _ => None,
        };
        engine::update(
            socket,
            &running.id,
            l.memory.to_oci(),
            l.memory_swap().to_oci(),
            reservation,
            std::time::Duration::from_secs(10),
        )
        .map_err(|e| format!("the engine refused the update: {e}"))?;
    }
    // The rest (memory.high on v2; everything for non-engine containers),
    // and a check that the cgroup now holds the limits.
    cgroup::apply(&t.dir, l)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
