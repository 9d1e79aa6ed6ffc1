//! `cglimit apply`: the same policies against containers that already run.
//!
//! Gathering differs (engine, runtime state dirs, cgroups: see [`discover`]);
//! deciding is the hook's code, and writing is the engine's update endpoint
//! for Docker containers (so `docker inspect`, restarts and `docker stats`
//! agree) and the hook's cgroup writer for the rest.

pub mod follow;
mod report;

use std::process::ExitCode;

use serde::Serialize;

use crate::cgroup::{self, Hierarchy, Snapshot};
use crate::cli::ApplyArgs;
use crate::decision::{Decision, Limits, Verdict};
use crate::enforce::OnError;
use crate::enforce::{EngineFailure, Failure, InCgroup, Run, Written};
use crate::facts::discover::{self, Problem, Source, Target};
use crate::policy::{LoadError, PolicySet};
use crate::record;
use crate::record::Source as RecordSource;
use crate::record::journal::{self, Event, Who};
use crate::size::Limit;
use crate::sys::engine;

/// What happened to one container.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Compliant,
    Fixed,
    /// Uses more than its target: held where it is, lowered as usage falls.
    Held,
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
    #[serde(skip)]
    pub cgroup: String,
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
    // Between passes, a container that starts through another runtime is
    // brought under policy as the engine reports it.
    if args.watch {
        follow::spawn(args.clone());
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
                if let Some(dir) = &args.state_dir
                    && let Err(e) = record::append(dir, journal::FILE, &drift_corrected(r))
                {
                    log::error!("{e}");
                }
            }
            for r in rows.iter().filter(|r| r.status == Status::NotFixed) {
                log::warn!("{}: not fixed: {}", r.container, r.reason);
            }
            for r in rows.iter().filter(|r| r.status == Status::Held) {
                log::info!("{}: {}", r.container, r.reason);
            }
            for p in &problems {
                log::warn!("{}: {}", p.container, p.message);
            }
            std::thread::sleep(args.interval);
            continue;
        }
        report::print(args.output, &rows, &problems);
        let failed = rows
            .iter()
            .any(|r| matches!(r.status, Status::NotFixed | Status::Held))
            || !problems.is_empty();
        return if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
}

fn pass(args: &ApplyArgs) -> Result<(Vec<Row>, Vec<Problem>), LoadError> {
    let policies = args.policy.open(None)?;
    let mut problems = Vec::new();
    let mut targets = discover::all(&args.sources, &mut problems);
    if !args.all {
        targets = select(args, targets, &mut problems);
    }
    let rows = targets
        .iter()
        .map(|t| one(args, &policies, t, None))
        .collect();
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
    if !src.no_docker
        && let Ok(socket) = engine::socket_path(src.docker_host.as_deref())
        && let Ok(body) = engine::get(
            &socket,
            &format!("/containers/{want}/json"),
            src.engine_timeout,
        )
    {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let status = v["State"]["Status"].as_str().unwrap_or("unknown");
        if status == "running" {
            return "the engine says it is running, but its memory cgroup was not found; nothing was changed".into();
        }
        return format!(
            "container is not running (status {status}); nothing to apply until it starts (the hook or the runtime wrapper applies its limits then)"
        );
    }
    "no running container with this id or name was found".into()
}

/// Brings one container under its policy; `bypassed`: the runtime it
/// started with, when that skipped cglimit (recorded even when nothing
/// needs to change, so that every bypass is on record).
fn one(args: &ApplyArgs, policies: &PolicySet, t: &Target, bypassed: Option<&str>) -> Row {
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
        cgroup: t.facts.cgroup.clone().unwrap_or_default(),
    };
    let before = match cgroup::snapshot(&t.dir) {
        Ok(s) => s,
        Err(e) => {
            row.reason = e.to_string();
            return row;
        }
    };
    row.before = Some(before);
    let source = match bypassed {
        Some(_) => RecordSource::Watch,
        None => RecordSource::Apply,
    };
    let mut run = Run::new(source, t.facts.clone());
    run.bypassed_runtime = bypassed.map(String::from);
    if let Source::Docker { socket, running } = &t.source
        && !args.trust_image_labels
    {
        let timeout = args.sources.engine_timeout;
        run.mark_image_labels(policies, || {
            let image = running.facts.image_id.as_deref()?;
            engine::image_labels(socket, image, timeout).ok()
        });
    }
    let Some(d) = run.decide(policies).cloned() else {
        row.reason = run
            .failure
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        return row;
    };
    row.policy = d.policy.clone();
    if let Verdict::Deny { message } = &d.verdict {
        row.reason = format!("the policy refuses this container: {message}");
        return row;
    }
    row.target = Some(d.limits);
    row.reason = why(&d);
    let pending = cgroup::pending(&t.dir, &before, &d.limits);
    let engine_stale = match &t.source {
        Source::Docker { running, .. } => !engine_agrees(running, &d.limits, &t.dir.hierarchy),
        _ => false,
    };
    if pending.is_empty() && !engine_stale {
        row.status = Status::Compliant;
        if bypassed.is_some() && !args.dry_run {
            run.finish(OnError::Deny, args.state_dir.as_deref());
        }
        return row;
    }
    if args.dry_run {
        row.status = Status::WouldFix;
        return row;
    }
    // Held already, as low as its usage lets: nothing to write or record.
    if !args.force
        && let Some((h, used)) = hold(&t.dir, &before, &d.limits)
        && cgroup::pending(&t.dir, &before, &h).is_empty()
    {
        row.reason = held_note(&h, used, &d.limits);
        row.status = Status::Held;
        return row;
    }
    let mut held = None;
    run.write(|l: &Limits| {
        // A usage that grew between the read and the write makes v1 answer
        // EBUSY: read it again and hold there.
        let mut tries = 0;
        loop {
            let hold = (!args.force).then(|| hold(&t.dir, &before, l)).flatten();
            let limits = hold.map(|(h, _)| h).unwrap_or(*l);
            // A hold goes to the cgroup only: in the engine's record it
            // would read as the container's own request next time.
            match write(args, t, &limits, hold.is_none()) {
                Ok(written) => {
                    held = hold;
                    return Ok(written);
                }
                Err(e) if hold.is_some() && tries < 2 => {
                    log::info!("{}: {e}; holding again", row.container);
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    });
    if let Some(e) = &run.failure {
        row.reason = e.to_string();
        return row;
    }
    if let Some((h, used)) = held {
        let note = held_note(&h, used, &d.limits);
        if let Some(dec) = run.decision.as_mut() {
            dec.notes.push(note.clone());
        }
        row.reason = note;
        row.status = Status::Held;
        run.finish(OnError::Deny, args.state_dir.as_deref());
        return row;
    }
    row.status = Status::Fixed;
    // What apply changed is recorded; what it found compliant, or could
    // not fix, is in its report (with --watch, every pass would repeat it).
    run.finish(OnError::Deny, args.state_dir.as_deref());
    row
}

/// The event `apply --watch` records for a container it brought back under
/// its policy, in the watcher's event log.
fn drift_corrected(r: &Row) -> Event {
    Event {
        time: crate::time::now_rfc3339(),
        kind: "drift_corrected".into(),
        container: Who {
            id: r.id.clone(),
            name: Some(r.container.clone()),
            image: None,
        },
        cgroup: r.cgroup.clone(),
        policy: r.policy.clone(),
        before: r.before.and_then(|b| serde_json::to_value(b).ok()),
        after: r.target.and_then(|l| serde_json::to_value(l).ok()),
        source: Some(r.source.into()),
        ..Default::default()
    }
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

/// One process of the container's cgroup, which systemd is asked about
/// when the cgroup is a unit's (0: none found; then no unit is asked).
fn a_pid(t: &Target) -> i32 {
    t.dir
        .read("cgroup.procs")
        .ok()
        .and_then(|p| p.lines().find_map(|l| l.trim().parse::<i32>().ok()))
        .unwrap_or(0)
}

/// What a held container may still allocate: enough for `docker exec`
/// to look inside (a shell and `cat` in its cgroup) without an OOM kill,
/// too little to matter as growth.
const HOLD_ROOM: u64 = 4 << 20;

fn held_note(h: &Limits, used: u64, target: &Limits) -> String {
    format!(
        "held at {}: uses {}, more than the target {}; lowered as usage falls (--force reclaims and lowers now)",
        h.memory,
        Limit::Bytes(used),
        target.memory
    )
}

/// For a container that uses more than its target memory, the limits that
/// hold it where it is instead of leaving it unlimited or OOM-killing it:
/// the memory limit at its usage, rounded up to a MiB with [`HOLD_ROOM`]
/// on top (never above the limit it has), so it cannot grow; swap as the policy says on top; on v2
/// `memory.high` at the target, so the kernel reclaims toward it. Each
/// pass of `apply --watch` holds again, lower as usage falls, until the
/// target is reached. `None` when the target can be written as it is.
fn hold(dir: &cgroup::CgroupDir, before: &Snapshot, target: &Limits) -> Option<(Limits, u64)> {
    let Limit::Bytes(wanted) = target.memory else {
        return None;
    };
    let used = cgroup::usage(dir).ok()?;
    if used <= wanted {
        return None;
    }
    let mut at = (used + HOLD_ROOM).div_ceil(1 << 20) << 20;
    if let Limit::Bytes(now) = before.memory {
        at = at.min(now);
    }
    let high = match dir.hierarchy {
        Hierarchy::V2 => Some(Limit::Bytes(wanted)),
        Hierarchy::V1 => target.high,
    };
    Some((
        Limits {
            memory: Limit::Bytes(at),
            swap: target.swap,
            high,
        },
        used,
    ))
}

/// Whether `docker inspect` already says what the policy wants.
fn engine_agrees(r: &engine::Running, l: &Limits, h: &Hierarchy) -> bool {
    let reservation_ok = match (h, l.high) {
        (Hierarchy::V1, Some(Limit::Bytes(b))) => r.memory_reservation == b as i64,
        _ => true,
    };
    r.memory == l.memory.to_oci() && r.memory_swap == l.memory_swap().to_oci() && reservation_ok
}

/// Writes `l` for one container: first, with `engine`, the engine's own
/// record (so `docker inspect`, restarts and `docker stats` agree), then
/// the one step that writes the cgroup and tells systemd ([`InCgroup`]),
/// which also checks that the cgroup now holds the limits.
fn write(args: &ApplyArgs, t: &Target, l: &Limits, engine: bool) -> Result<Written, Failure> {
    // Never surprise anyone with an OOM kill: a limit below what is in use
    // is only lowered with --force.
    if let Limit::Bytes(wanted) = l.memory {
        let used = cgroup::usage(&t.dir)?;
        if used > wanted {
            if !args.force {
                return Err(Failure::InUse { used, wanted });
            }
            if let Err(e) = cgroup::reclaim(&t.dir, used - wanted) {
                log::warn!(
                    "{}: {e}",
                    discover::display(&t.facts.id, t.facts.name.as_deref())
                );
            }
        }
    }
    if let Source::Docker { socket, running } = &t.source
        && engine
    {
        if l.memory == Limit::Unlimited {
            return Err(EngineFailure::CannotUnlimit.into());
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
        .map_err(|e| Failure::from(EngineFailure::Refused(e)))?;
    }
    // The rest (memory.high on v2; everything for non-engine containers).
    InCgroup {
        dir: &t.dir,
        path: t.facts.cgroup.as_deref().unwrap_or_default(),
        pid: a_pid(t),
    }
    .put(l)
}
