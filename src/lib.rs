//! cglimit as a library: the modules behind the `cglimit` binary, public so
//! that fuzz targets and benchmarks reach the parsers and the decision code.
//!
//! One data path, whatever the entry point:
//!
//! ```text
//! facts about a container → policy decision → enforcement → a record of it
//!   facts/                   policy/, decision/  enforce/, cgroup/   record
//! ```
//!
//! - [`cmd`]: one module per command, each a thin adapter that gathers facts
//!   its own way and hands them to [`enforce`];
//! - [`facts`]: what is known of a container, and where it is learned (OCI
//!   state and bundle, the engine, runtime state directories, cgroups);
//! - [`policy`]: policy files, loaded and checked as one set;
//! - [`decision`]: the pure choice of a policy and of the limits;
//! - [`enforce`]: the one sequence decide → write → record → log, and the
//!   writers it drives (the cgroup files in [`cgroup`], a bundle's
//!   `config.json` in [`enforce::spec`]);
//! - [`record`]: the JSON lines every decision and event leaves behind;
//! - [`sys`]: the process and the outside world (logging, privileges, the
//!   Docker engine's API).

pub mod cgroup;
pub mod cli;
pub mod cmd;
pub mod decision;
pub mod enforce;
pub mod facts;
pub mod glob;
pub mod leak;
pub mod policy;
pub mod record;
pub mod size;
pub mod sizing;
pub mod sys;
pub mod time;

/// Deterministic draws for the property tests: `draws()(n)` is in `0..n`,
/// the same sequence on every run (xorshift64).
#[cfg(test)]
pub(crate) fn draws() -> impl FnMut(usize) -> usize {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}
