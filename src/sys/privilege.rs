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

use caps::{CapSet, Capability, CapsHashSet};

/// What is kept, and why (for the log).
pub const KEPT: &[(Capability, &str)] = &[(
    Capability::CAP_DAC_OVERRIDE,
    "to write cgroup files, state and bundles that belong to another user (delegated subtrees)",
)];

fn kept() -> CapsHashSet {
    KEPT.iter().map(|(c, _)| *c).collect()
}

/// The hook executes nothing: it drops every other capability from every
/// set, the bounding set included, and sets `no_new_privs`, so nothing it
/// could be tricked into running would get privileges back.
pub fn drop_for_hook() {
    let keep = kept();
    let mut failed = Vec::new();
    // The bounding set first, while CAP_SETPCAP is still effective.
    if let Ok(set) = bounding_to_drop() {
        for c in set.difference(&keep) {
            if let Err(e) = caps::drop(None, CapSet::Bounding, *c) {
                failed.push(format!("bounding {c}: {e}"));
            }
        }
    }
    narrow(&keep, &mut failed);
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        failed.push(format!("no_new_privs: {e}"));
    }
    report(&failed);
}

/// The capabilities to drop from the bounding set. With CAP_SETPCAP,
/// dropping one already gone succeeds, so there is no need to read the set
/// (one `prctl` per capability), only to know which ones this kernel has
/// (`cap_last_cap`, one file). Without it every drop fails: the set is read,
/// so that the warning names only what is really kept.
fn bounding_to_drop() -> Result<CapsHashSet, caps::errors::CapsError> {
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false)
        && let Ok(known) = caps::runtime::procfs_all_supported(None)
    {
        return Ok(known);
    }
    caps::read(None, CapSet::Bounding)
}

/// What of `keep` this thread holds (nothing is ever raised).
fn held(keep: &CapsHashSet) -> CapsHashSet {
    let permitted = caps::read(None, CapSet::Permitted).unwrap_or_default();
    permitted.intersection(keep).copied().collect()
}

/// The wrapper ends by executing runc, which must start exactly as if its
/// caller had executed it. It lowers only its effective set for its own
/// work. Lowering the permitted set too would make the exec of runc *gain*
/// capabilities (an exec by uid 0 grants the bounding set again), and the
/// kernel treats a gain like a setuid exec: it clears the parent-death
/// signal (containerd's shim runs runc with `SIGKILL` there, so a runc
/// whose shim died would live on) and makes runc non-dumpable. Measured
/// through `create` before this: parent-death signal 9 became 0.
pub fn drop_for_wrapper() {
    let mut failed = Vec::new();
    if let Err(e) = caps::set(None, CapSet::Effective, &held(&kept())) {
        failed.push(format!("Effective: {e}"));
    }
    report(&failed);
}

/// Lowers the ambient, inheritable, effective and permitted sets to `keep`
/// (never raising anything that was not there).
fn narrow(keep: &CapsHashSet, failed: &mut Vec<String>) {
    let target = held(keep);
    if let Err(e) = caps::clear(None, CapSet::Ambient) {
        failed.push(format!("ambient: {e}"));
    }
    let none = CapsHashSet::new();
    for (set, value) in [
        (CapSet::Inheritable, &none),
        (CapSet::Effective, &target),
        (CapSet::Permitted, &target),
    ] {
        if let Err(e) = caps::set(None, set, value) {
            failed.push(format!("{set:?}: {e}"));
        }
    }
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
