//! Phase marks on the hook's and the wrapper's paths, for
//! `bench/hook-phases.sh` and `bench/wrapper-phases.sh`: built with
//! the `trace-phases` feature, each mark writes its name to the kernel's
//! trace buffer (tracefs `trace_marker`), where it is timed against the
//! scheduler's own events (the hook's fork, exec and exit inside `runc
//! run`; the wrapper's exec and its exec of the runtime). Without the
//! feature a mark is nothing.

/// Marks the end of a phase named `what`.
#[cfg(feature = "trace-phases")]
pub fn mark(what: &str) {
    use std::io::Write;
    static MARKER: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    let file = MARKER.get_or_init(|| {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/sys/kernel/tracing/trace_marker")
            .ok()
    });
    if let Some(mut f) = file.as_ref() {
        let _ = f.write_all(what.as_bytes());
    }
}

/// Marks the end of a phase named `what` (nothing without `trace-phases`).
#[cfg(not(feature = "trace-phases"))]
#[inline(always)]
pub fn mark(_what: &str) {}
