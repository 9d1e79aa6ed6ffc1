//! The hook's time limit: runtimes wait for a hook without one, so a hook
//! stuck on a runtime that never closes its stdin, a hung D-Bus or a dead
//! file server would hold the container's start for ever.
//!
//! Timers, not a thread: a thread costs its `clone`, its stack, musl's
//! locks from then on and its exit on every container start (about 50 µs
//! of the hook's time inside `runc run`, BENCHMARKS.md), for a limit that
//! almost never fires. Two timers:
//! - at the limit, `SIGALRM`, whose handler logs why and exits as
//!   `--on-error` says. It only loads atomics, formats its line on the
//!   stack and calls `write(2)` and `_exit(2)`: nothing that could wait on
//!   a lock the interrupted code holds.
//! - [`GRACE`] later, `SIGKILL`, for the one case where no handler can run:
//!   a wait the kernel lets only a fatal signal end (an open on a hung NFS
//!   or FUSE mount, a fanotify permission check). The runtime then reports
//!   the hook killed and refuses the container, under `--on-error allow`
//!   too: failing closed, without the log line.
//!
//! Neither fires once [`hands_off`] is called: a write and its rollback
//! are never cut apart, nor is a decided refusal turned into a start.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::time::{TimeSpec, TimeVal, TimeValLike};

/// How long after the limit a hook that no handler could reach is killed.
pub const GRACE: Duration = Duration::from_millis(250);

/// What the handler says and how the process ends, prepared when armed.
struct Expiry {
    message: String,
    /// `--on-error allow`: exit 0 (the container starts) after a warning.
    allow: bool,
}

static EXPIRY: OnceLock<Expiry> = OnceLock::new();

static HANDS_OFF: AtomicBool = AtomicBool::new(false);

/// The `SIGKILL` timer (a `timer_t`; the kernel's first is 0), when
/// [`KILLER_ARMED`].
static KILLER: AtomicUsize = AtomicUsize::new(0);
static KILLER_ARMED: AtomicBool = AtomicBool::new(false);

/// Ends the process after `timeout` with `message` logged: exit 0 when
/// `allow`, else 1; killed [`GRACE`] later if that could not run; unless
/// [`hands_off`] was called before.
pub fn arm(timeout: Duration, message: String, allow: bool) -> nix::Result<()> {
    let _ = EXPIRY.set(Expiry { message, allow });
    let action = SigAction::new(
        SigHandler::Handler(expired),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler is async-signal-safe (see the module's comment).
    unsafe { sigaction(Signal::SIGALRM, &action) }?;
    // At least a microsecond (a zero timer never fires), at most ten years.
    let micros = timeout.as_micros().clamp(1, 10 * 365 * 86_400 * 1_000_000) as i64;
    let value = nix::libc::itimerval {
        it_interval: *TimeVal::zero().as_ref(),
        it_value: *TimeVal::microseconds(micros).as_ref(),
    };
    // SAFETY: setitimer(2) with a valid value and no old value asked.
    let r = unsafe { nix::libc::setitimer(nix::libc::ITIMER_REAL, &value, std::ptr::null_mut()) };
    nix::errno::Errno::result(r)?;
    arm_killer(micros + GRACE.as_micros() as i64)
}

fn arm_killer(micros: i64) -> nix::Result<()> {
    // SAFETY: a sigevent is plain data; zeroed is a valid start.
    let mut ev: nix::libc::sigevent = unsafe { std::mem::zeroed() };
    ev.sigev_notify = nix::libc::SIGEV_SIGNAL;
    ev.sigev_signo = nix::libc::SIGKILL;
    let mut timer: nix::libc::timer_t = std::ptr::null_mut();
    // SAFETY: timer_create(2) fills `timer` on success.
    let r = unsafe { nix::libc::timer_create(nix::libc::CLOCK_MONOTONIC, &mut ev, &mut timer) };
    nix::errno::Errno::result(r)?;
    let spec = nix::libc::itimerspec {
        it_interval: *TimeSpec::zero().as_ref(),
        it_value: *TimeSpec::microseconds(micros).as_ref(),
    };
    // SAFETY: timer_settime(2) on the timer just made.
    let r = unsafe { nix::libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) };
    nix::errno::Errno::result(r)?;
    KILLER.store(timer as usize, Ordering::SeqCst);
    KILLER_ARMED.store(true, Ordering::SeqCst);
    Ok(())
}

/// From here on neither timer ends the process.
pub fn hands_off() {
    if HANDS_OFF.swap(true, Ordering::SeqCst) {
        return;
    }
    if KILLER_ARMED.load(Ordering::SeqCst) {
        let timer = KILLER.load(Ordering::SeqCst);
        let zero = nix::libc::itimerspec {
            it_interval: *TimeSpec::zero().as_ref(),
            it_value: *TimeSpec::zero().as_ref(),
        };
        // SAFETY: disarms the timer made by `arm_killer`.
        unsafe {
            nix::libc::timer_settime(timer as nix::libc::timer_t, 0, &zero, std::ptr::null_mut())
        };
    }
}

extern "C" fn expired(_: nix::libc::c_int) {
    if HANDS_OFF.load(Ordering::SeqCst) {
        return;
    }
    let Some(e) = EXPIRY.get() else { return };
    let level = if e.allow {
        log::Level::Warn
    } else {
        log::Level::Error
    };
    super::logger::write_raw(level, &e.message);
    if !e.allow && !super::logger::to_stderr() {
        // The runtime shows a failed hook's stderr.
        let parts: [&[u8]; 3] = [b"cglimit: ", e.message.as_bytes(), b"\n"];
        for p in parts {
            // SAFETY: write(2) of a live buffer.
            unsafe { nix::libc::write(2, p.as_ptr().cast(), p.len()) };
        }
    }
    // SAFETY: _exit(2) ends the process at once, as a handler may.
    unsafe { nix::libc::_exit(if e.allow { 0 } else { 1 }) }
}
