//! `cglimit hook`: the OCI hook entry point.
//!
//! runc and crun apply the spec's own limits before they run `prestart` /
//! `createRuntime` hooks, and the container's process has not run a single
//! instruction yet; so what the hook writes is final. The hook fails closed:
//! any error exits non-zero and the runtime refuses the container, unless
//! the operator chose `--on-error allow`.

use std::process::ExitCode;
use std::time::Duration;

use crate::cgroup::{self, CgroupDir};
use crate::cli::HookArgs;
use crate::decision::Decision;
use crate::enforce::OnError;
use crate::enforce::{Failure, InCgroup, Run};
use crate::facts::{FactsError, oci};
use crate::record::Source;
use crate::sys::watchdog;

pub fn run(args: &HookArgs) -> ExitCode {
    let started = std::time::Instant::now();
    crate::sys::privilege::drop_for_hook();
    crate::sys::phase::mark("caps");
    arm_watchdog(args.timeout, args.on_error);
    crate::sys::phase::mark("watchdog");
    let mut run = Run::new(Source::Hook, Default::default());
    match gather(&mut run, args.cri) {
        Ok((dir, path, pid)) => {
            crate::sys::phase::mark("gathered");
            let writer = |limits: &_| {
                // Never end the process between a write and its rollback.
                watchdog::hands_off();
                InCgroup {
                    dir: &dir,
                    path: &path,
                    pid,
                }
                .put(limits)
            };
            match &args.decided {
                Some(limits) => {
                    run.decision = Some(Decision::given(args.decided_by.clone(), *limits));
                    run.write(writer);
                }
                None => match args
                    .policy
                    .open((!args.no_cache).then_some(args.cache_dir.as_path()))
                {
                    Ok(policies) => {
                        crate::sys::phase::mark("policies");
                        run.enforce(&policies, writer);
                        crate::sys::phase::mark("enforced");
                        // Freed by the exit, not piece by piece.
                        std::mem::forget(policies);
                    }
                    Err(e) => run.fail(e),
                },
            }
        }
        Err(e) => run.fail(e),
    }
    // The wrapper recorded its decision; the hook it added records only
    // what went wrong after it (a write that failed, systemd not keeping
    // the limits), so each container has one decision record.
    let quiet = args.decided.is_some()
        && run.failure.is_none()
        && run.systemd.as_ref().is_none_or(|p| p.persisted);
    // The run's end is decided: from here on the watchdog stays out, so a
    // refused container is not started by a timeout under `--on-error allow`.
    watchdog::hands_off();
    let ending = run.finish(args.on_error, args.state_dir.as_deref().filter(|_| !quiet));
    crate::sys::phase::mark("finished");
    log::debug!("hook done in {} us", started.elapsed().as_micros());
    match ending.refusal {
        Some(m) => {
            user_error(&m);
            ExitCode::from(1)
        }
        None => ExitCode::SUCCESS,
    }
}

/// The container's facts from the state on stdin and its bundle, and the
/// memory cgroup its init process is in (open, and its path), and that
/// process.
fn gather(run: &mut Run, cri: bool) -> Result<(CgroupDir, String, i32), Failure> {
    let state = oci::read_state(std::io::stdin().lock()).map_err(FactsError::from)?;
    crate::sys::phase::mark("state");
    run.facts.id = state.id().clone();
    let pid = state.pid().filter(|p| *p > 0).ok_or(FactsError::NoPid)?;
    let config = oci::read_config(state.bundle()).map_err(FactsError::from)?;
    crate::sys::phase::mark("config");
    run.facts = oci::facts(&state, &config, cri);
    crate::sys::phase::mark("facts");
    let (dir, cgroup_path, procs) = cgroup::locate(pid)?;
    crate::sys::phase::mark("for_pid");
    run.facts.cgroup = Some(cgroup_path.clone());
    cgroup::exclusive(&dir, pid, &cgroup_path, procs)?;
    Ok((dir, cgroup_path, pid))
}

/// Puts a failure where the runtime shows it (runc includes a failed hook's
/// stderr in its error), unless the log already went there.
fn user_error(msg: &str) {
    if !crate::sys::logger::to_stderr() {
        eprintln!("cglimit: {msg}");
    }
}

/// Ends the hook after `timeout` (runtimes wait for hooks without a
/// limit), as `--on-error` says.
fn arm_watchdog(timeout: Duration, on_error: OnError) {
    let msg = format!("timed out after {timeout:?} before the limits were applied");
    let (message, allow) = match on_error {
        OnError::Allow => (
            format!("{msg}; starting the container without enforced limits (--on-error allow)"),
            true,
        ),
        OnError::Deny => (msg, false),
    };
    if let Err(e) = watchdog::arm(timeout, message, allow) {
        log::warn!("no time limit on this run: {e}");
    }
}
