//! `cglimit hook`: the OCI hook entry point.
//!
//! runc and crun apply the spec's own limits before they run `prestart` /
//! `createRuntime` hooks, and the container's process has not run a single
//! instruction yet; so what the hook writes is final. The hook fails closed:
//! any error exits non-zero and the runtime refuses the container, unless
//! the operator chose `--on-error allow`.

use std::fmt;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cgroup::{self, Applied, CgroupError};
use crate::cli::{HookArgs, OnError};
use crate::decision::{self, Decision, Verdict};
use crate::facts::Facts;
use crate::oci::{self, OciError};
use crate::policy::perms::Unsafe;
use crate::policy::{self, PolicyErrors};
use crate::record::{self, DecisionRecord};
use crate::size::Limit;

#[derive(Debug)]
pub enum HookError {
    Oci(OciError),
    Policy(PolicyErrors),
    Perms(Unsafe),
    Cgroup(CgroupError),
    NoPid,
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookError::Oci(e) => e.fmt(f),
            HookError::Policy(e) => write!(f, "invalid policy:\n{e}"),
            HookError::Perms(e) => write!(f, "untrusted policy: {e}"),
            HookError::Cgroup(e) => e.fmt(f),
            HookError::NoPid => f.write_str(
                "the container state has no \"pid\": run cglimit as a createRuntime or prestart hook",
            ),
        }
    }
}

/// What a hook run found and did, for the log and the record.
struct Run {
    facts: Facts,
    decision: Option<Decision>,
    applied: Option<Applied>,
}

pub fn run(args: &HookArgs) -> ExitCode {
    let started = std::time::Instant::now();
    // Before the watchdog thread exists: capabilities are per thread.
    crate::privilege::drop_for_hook();
    // Held from the first cgroup write until exit, so the watchdog never
    // ends the process between a write and its rollback.
    let enforcing = Arc::new(Mutex::new(()));
    watchdog(args.timeout, args.on_error, Arc::clone(&enforcing));
    let mut run = Run {
        facts: Facts::default(),
        decision: None,
        applied: None,
    };
    let result = decide_and_enforce(args, &mut run, &enforcing);
    let code = finish(args, &run, result);
    log::debug!("hook done in {} us", started.elapsed().as_micros());
    code
}

fn decide_and_enforce(
    args: &HookArgs,
    run: &mut Run,
    enforcing: &Mutex<()>,
) -> Result<(), HookError> {
    let state = oci::read_state(std::io::stdin().lock()).map_err(HookError::Oci)?;
    run.facts.id = state.id().clone();
    let pid = state.pid().filter(|p| *p > 0).ok_or(HookError::NoPid)?;
    let config = oci::read_config(state.bundle()).map_err(HookError::Oci)?;
    run.facts = oci::facts(&state, &config);
    let (dir, cgroup_path) = cgroup::for_pid(pid).map_err(HookError::Cgroup)?;
    run.facts.cgroup = Some(cgroup_path);
    args.policy.check_perms().map_err(HookError::Perms)?;
    let cache = (!args.no_cache).then_some(args.cache_dir.as_path());
    let chosen = policy::cache::choose(&args.policy.policy_dir, cache, &run.facts)
        .map_err(HookError::Policy)?;
    let d = decision::decide_chosen(chosen, &run.facts);
    if d.is_denied() {
        run.decision = Some(d);
        return Ok(());
    }
    let limits = d.limits;
    run.decision = Some(d);
    let _guard = enforcing.lock().unwrap_or_else(|e| e.into_inner());
    let applied = cgroup::apply(&dir, &limits).map_err(HookError::Cgroup)?;
    run.applied = Some(applied);
    // Keep the guard until the process exits.
    std::mem::forget(_guard);
    Ok(())
}

fn finish(args: &HookArgs, run: &Run, result: Result<(), HookError>) -> ExitCode {
    let who = describe(&run.facts);
    let (outcome, code, error) = match (&result, &run.decision) {
        (Err(e), _) => {
            if args.on_error == OnError::Allow {
                log::warn!("{who}: {e}; starting it without enforced limits (--on-error allow)");
                ("failed-open", ExitCode::SUCCESS, Some(e.to_string()))
            } else {
                log::error!("{who}: {e}");
                user_error(&format!("{who}: {e}"));
                ("error", ExitCode::from(1), Some(e.to_string()))
            }
        }
        (Ok(()), Some(d)) => match &d.verdict {
            Verdict::Deny { message } => {
                let by = d.refused_by();
                log::error!("{who}: refused by {by}: {message}");
                user_error(&format!("{who} refused by {by}: {message}"));
                ("denied", ExitCode::from(1), None)
            }
            Verdict::Apply => {
                log::info!("{who}: {}", summary(d, run.applied.as_ref()));
                ("applied", ExitCode::SUCCESS, None)
            }
        },
        (Ok(()), None) => unreachable!("a successful run always decides"),
    };
    if let Some(dir) = &args.state_dir {
        let rec = DecisionRecord {
            time: record::now_rfc3339(),
            source: "hook",
            outcome,
            container: &run.facts,
            decision: run.decision.as_ref(),
            applied: run.applied.as_ref(),
            error,
        };
        if let Err(e) = record::append(dir, record::DECISIONS, &rec) {
            // The limits are in place; a lost record must not stop the container.
            log::error!("{who}: {e}");
        }
    }
    code
}

/// Puts a failure where the runtime shows it (runc includes a failed hook's
/// stderr in its error), unless the log already went there.
fn user_error(msg: &str) {
    if !crate::logger::to_stderr() {
        eprintln!("cglimit: {msg}");
    }
}

/// `container 3f2a… (web-1)`
pub fn describe(f: &Facts) -> String {
    let id = if f.id.is_empty() { "?" } else { &f.id };
    match &f.name {
        Some(n) => format!("container {id} ({n})"),
        None => format!("container {id}"),
    }
}

/// One line: policy, limits, and every departure from what was asked.
pub fn summary(d: &Decision, applied: Option<&Applied>) -> String {
    let l = &d.limits;
    let mut s = format!(
        "policy {:?}: memory {}, swap {} (memory+swap {}), high {}",
        d.policy.as_deref().unwrap_or("-"),
        l.memory,
        l.swap,
        l.memory_swap(),
        l.high.unwrap_or(Limit::Unlimited)
    );
    for f in &d.findings {
        s.push_str(&format!("; {f}"));
    }
    for n in &d.notes {
        s.push_str(&format!("; {n}"));
    }
    if let Some(a) = applied
        && a.swap_unaccounted
    {
        s.push_str("; no swap accounting in this kernel: swap not limited");
    }
    s
}

fn watchdog(timeout: Duration, on_error: OnError, enforcing: Arc<Mutex<()>>) {
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        // Never end the process in the middle of a write and its rollback.
        let _g = enforcing.lock();
        let msg = format!("timed out after {timeout:?} before the limits were applied");
        if on_error == OnError::Allow {
            log::warn!("{msg}; starting the container without enforced limits (--on-error allow)");
            std::process::exit(0);
        }
        log::error!("{msg}");
        user_error(&msg);
        std::process::exit(1);
    });
}
