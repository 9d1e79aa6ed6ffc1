//! Dropping the capabilities the hook and the wrapper do not need, before
//! they read anything a container's creator controls (the bundle's
//! `config.json`, the engine's labels, the state on stdin).
//!
//! Both run as root. What they must do needs no capability when the files
//! are root's own: write cgroup files, read the bundle, write the state
//! dir, connect to the engine's socket. One is kept:
//! - `CAP_DAC_OVERRIDE`: a cgroup subtree can be delegated to another user
//!   (systemd `Delegate=yes`, rootless engines), and its files then belong
//!   to that user; root without this capability could not write them, nor a
//!   state dir or bundle owned by someone else.
//!
//! Capabilities are per thread: [`drop_for_hook`] and [`drop_for_wrapper`]
//! must run before any thread is spawned.

use caps::Capability;

/// What is kept, and why (for the log).
pub const KEPT: &[(Capability, &str)] = &[(
    Capability::CAP_DAC_OVERRIDE,
    "to write cgroup files, state and bundles that belong to another user (delegated subtrees)",
)];

/// [`KEPT`] as the kernel's bit mask.
fn kept() -> u64 {
    KEPT.iter().fold(0, |m, (c, _)| m | (1u64 << c.index()))
}

/// The hook executes nothing: it drops every capability but [`KEPT`] from
/// its effective, permitted, inheritable and ambient sets and sets
/// `no_new_privs`, so nothing it could be tricked into running would get
/// privileges back. The bounding set is left as it is: under
/// `no_new_privs` an exec never gains a capability (the kernel caps the new
/// permitted set at the old one, `cap_bprm_creds_from_file`, even for
/// root's exec, and ignores file capabilities), so the bounding set, which
/// only limits such gains, adds nothing; dropping it took a `prctl` per
/// capability, each a new set of credentials: 40 of them on every container
/// start (35 µs of the hook's time inside `runc run`, BENCHMARKS.md). Raw
/// system calls, one `capget` and one `capset`.
pub fn drop_for_hook() {
    let mut failed = Vec::new();
    // SAFETY: prctl(2) with integer arguments.
    let r = unsafe {
        nix::libc::prctl(
            nix::libc::PR_CAP_AMBIENT,
            nix::libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        failed.push(format!("ambient: {}", nix::errno::Errno::last()));
    }
    if let Err(e) = narrow(kept(), Narrow::Hook) {
        failed.push(format!("capset: {e}"));
    }
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        failed.push(format!("no_new_privs: {e}"));
    }
    report(&failed);
}

/// Which sets [`narrow`] lowers.
#[derive(Clone, Copy, PartialEq)]
enum Narrow {
    /// Effective and permitted to what of `keep` is permitted now,
    /// inheritable to none.
    Hook,
    /// Effective only, to what of `keep` is permitted now.
    Wrapper,
}

/// Lowers this thread's sets to `keep` as `how` says; nothing is ever
/// raised. One `capget`, one `capset`.
fn narrow(keep: u64, how: Narrow) -> nix::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget(2) fills two data structs for version 3.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    nix::errno::Errno::result(r)?;
    for (i, d) in data.iter_mut().enumerate() {
        let k = (keep >> (32 * i)) as u32;
        d.effective = d.permitted & k;
        if how == Narrow::Hook {
            d.permitted = d.effective;
            d.inheritable = 0;
        }
    }
    // SAFETY: capset(2) reads the header and two data structs.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_capset,
            &mut header as *mut Header,
            data.as_ptr(),
        )
    };
    nix::errno::Errno::result(r).map(drop)
}

/// The wrapper ends by executing runc, which must start exactly as if its
/// caller had executed it. It lowers only its effective set for its own
/// work. Lowering the permitted set too would make the exec of runc *gain*
/// capabilities (an exec by uid 0 grants the bounding set again), and the
/// kernel treats a gain like a setuid exec: it clears the parent-death
/// signal (containerd's shim runs runc with `SIGKILL` there, so a runc
/// whose shim died would live on) and makes runc non-dumpable. Measured
/// through `create` before this: parent-death signal 9 became 0. Raw
/// system calls, as the hook's: the `caps` crate's sets of capabilities
/// took 20,000 instructions and a `getrandom` on every runtime call.
pub fn drop_for_wrapper() {
    let mut failed = Vec::new();
    if let Err(e) = narrow(kept(), Narrow::Wrapper) {
        failed.push(format!("Effective: {e}"));
    }
    report(&failed);
}

fn report(failed: &[String]) {
    if !failed.is_empty() {
        log::warn!(
            "could not drop every capability ({}); going on with more than needed",
            failed.join("; ")
        );
    }
    if log::log_enabled!(log::Level::Debug) {
        let kept: Vec<String> = KEPT.iter().map(|(c, why)| format!("{c} ({why})")).collect();
        log::debug!(
            "capabilities dropped; kept {}; {}",
            kept.join(", "),
            status_caps()
        );
    }
}

/// The kernel's own view of this thread's sets, for the log and the tests.
pub fn status_caps() -> String {
    std::fs::read_to_string("/proc/thread-self/status")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}
