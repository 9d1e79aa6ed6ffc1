//! `cglimit runtime`: a transparent runc wrapper for Docker, which has no
//! hooks setting but lets a runtime be registered in `daemon.json`.
//!
//! Only `create`, `run` and `restore` (a create from a checkpoint) are
//! decided: the policy's limits are written into the bundle's `config.json`,
//! so runc itself creates the cgroup with them; and `update` ([`update`]).
//! Then the real runtime is `exec`ed with the argv unchanged, so every other
//! verb, global flag, exit status, stdout byte and signal is runc's own.

pub mod argv;
pub mod config;
mod options;
pub mod resources;
pub mod update;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::decision::Limits;
use crate::enforce::{Failure, Run, Written, spec};
use crate::facts::{FactsError, oci};
use crate::policy;
use crate::record::Source;
use crate::size::Limit;
use crate::sys::engine;
use crate::sys::logger::{self, Format};
use options::Options;

/// Entry point; `raw` is everything after `runtime` (or after argv[0] for
/// the `cglimit-runtime` symlink). The runtime gets its part byte for byte.
pub fn run(raw: &[OsString]) -> ExitCode {
    let args: Vec<String> = raw
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (flags, n) = options::own_flags(&args);
    let runc_args = argv::parse(&args[n..]);
    crate::sys::phase::mark("argv");
    let opts = match options::options(&flags) {
        Ok(o) => {
            crate::sys::phase::mark("options");
            init_log(o.log_file.as_deref(), &runc_args);
            o
        }
        Err(e) => {
            let fallback = options::fallback(&flags);
            init_log(fallback.log_file.as_deref(), &runc_args);
            let m = format!("cglimit runtime: {e}");
            if runc_args.creates() || runc_args.updates() {
                log::error!("{m}");
                return refuse(&m, &runc_args);
            }
            // Containers must stay stoppable and removable whatever the
            // config file says: verbs on existing ones pass through.
            log::warn!(
                "{m}; passing {:?} through to {}",
                runc_args.verb.as_deref().unwrap_or(""),
                fallback.runtime
            );
            fallback
        }
    };
    crate::sys::phase::mark("config");
    let hooked = opts.creates_by_hook && runc_args.verb.as_deref() != Some("restore");
    if runc_args.creates() && !hooked {
        crate::sys::privilege::drop_for_wrapper();
        crate::sys::phase::mark("caps");
        let run = decide_and_write(&opts, &runc_args);
        crate::sys::phase::mark("written");
        if let Some(m) = run.finish(opts.on_error, opts.state_dir.as_deref()).refusal {
            return refuse(&m, &runc_args);
        }
        crate::sys::phase::mark("finished");
    }
    let mut argv = raw[n..].to_vec();
    let mut then = None;
    if runc_args.updates() {
        crate::sys::privilege::drop_for_wrapper();
        if let Some((run, rewrite)) = update::decide(&opts, &runc_args, &raw[n..]) {
            if let Some(run) = run
                && let Some(m) = run.finish(opts.on_error, opts.state_dir.as_deref()).refusal
            {
                return refuse(&m, &runc_args);
            }
            if let Some(rw) = rewrite {
                if let Some(bytes) = rw.stdin
                    && let Err(e) = replace_stdin(&bytes)
                {
                    let m = format!("cannot pass the decided resources on: {e}");
                    log::error!("{m}");
                    return refuse(&m, &runc_args);
                }
                argv = rw.argv;
                then = rw.then;
            }
        }
    }
    if let Some(settle) = then {
        // The runtime is waited for, not exec'd: what it leaves out of an
        // update is written after it.
        return match std::process::Command::new(&opts.runtime)
            .args(&argv)
            .status()
        {
            Ok(st) if st.success() => {
                update::settle(&settle);
                ExitCode::SUCCESS
            }
            Ok(st) => ExitCode::from(st.code().unwrap_or(1).clamp(0, 255) as u8),
            Err(e) => {
                let m = format!("cannot run the runtime {:?}: {e}", opts.runtime);
                log::error!("{m}");
                refuse(&m, &runc_args);
                ExitCode::from(127)
            }
        };
    }
    let err = std::process::Command::new(&opts.runtime).args(&argv).exec();
    let m = format!("cannot run the runtime {:?}: {err}", opts.runtime);
    log::error!("{m}");
    refuse(&m, &runc_args);
    ExitCode::from(127)
}

/// Makes `bytes` the standard input the runtime will read: an anonymous
/// file, written whole and rewound, so its size never blocks the wrapper.
fn replace_stdin(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    let fd =
        nix::sys::memfd::memfd_create(c"cglimit-update", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    f.rewind()?;
    // The copy on descriptor 0 is not close-on-exec: the runtime reads it.
    nix::unistd::dup2_stdin(&f)?;
    Ok(())
}

/// Logs go to the configured file, else where runc's `--log` says (in its
/// format), else stderr; never stdout, which is the runtime's.
fn init_log(file: Option<&Path>, runc: &argv::RuncArgs) {
    let (path, format) = match (file, &runc.log) {
        (Some(f), _) => (Some(f.to_path_buf()), Format::Plain),
        (None, Some(l)) => (
            Some(PathBuf::from(l)),
            if runc.log_format.as_deref() == Some("json") {
                Format::RuncJson
            } else {
                Format::RuncText
            },
        ),
        (None, None) => (None, Format::Plain),
    };
    if logger::init_with(path.as_deref(), log::LevelFilter::Info, format).is_err() {
        let _ = logger::init(None, log::LevelFilter::Info);
    }
}

/// Fails the runtime call with `message` (already logged) where each
/// caller looks for it: containerd reads the last error line of runc's
/// `--log` back into the error `docker run` prints; other callers read
/// stderr.
fn refuse(message: &str, runc: &argv::RuncArgs) -> ExitCode {
    if let Some(path) = &runc.log
        && !logger::writes_to(Path::new(path))
    {
        let json = runc.log_format.as_deref() == Some("json");
        let line = logger::runc_line(json, "error", message);
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    }
    if !logger::to_stderr() {
        eprintln!("cglimit: {message}");
    }
    ExitCode::from(1)
}

/// Gathers the container's facts from the bundle and the engine, and runs
/// the sequence with the bundle's `config.json` as the writer.
fn decide_and_write(o: &Options, r: &argv::RuncArgs) -> Run {
    let started = std::time::Instant::now();
    let mut run = Run::new(Source::Runtime, Default::default());
    let bundle = match &r.bundle {
        Some(b) => PathBuf::from(b),
        None => match std::env::current_dir() {
            Ok(d) => d,
            Err(e) => {
                run.fail(FactsError::NoBundle(e));
                return run;
            }
        },
    };
    run.facts.id = r.id.clone().unwrap_or_else(|| {
        bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    // crun reads `--config` instead of config.json when it is given.
    let path = bundle.join(r.config.as_deref().unwrap_or("config.json"));
    let bundle_err = |problem| {
        Failure::Facts(FactsError::Oci(oci::OciError::Config {
            path: path.clone(),
            problem,
        }))
    };
    // The engine's answer is the longest wait of a create: ask first, and
    // read the bundle and the policies while the engine looks it up.
    let question = ask_engine(o, &run.facts.id);
    crate::sys::phase::mark("asked");
    let bytes = match oci::read_config_bytes(&path) {
        Ok(b) => b,
        Err(e) => {
            run.fail(bundle_err(e));
            return run;
        }
    };
    let parsed = serde_json::from_slice::<serde_json::Value>(&bytes)
        .map_err(|e| bundle_err(oci::ConfigProblem::Json(e)))
        .and_then(|tree| {
            <oci::Config as serde::Deserialize>::deserialize(&tree)
                .map(|narrow| (tree, narrow))
                .map_err(|e| bundle_err(oci::ConfigProblem::Invalid(e)))
        });
    let (mut tree, narrow) = match parsed {
        Ok(x) => x,
        Err(e) => {
            run.fail(e);
            return run;
        }
    };
    run.facts = oci::bundle_facts(&run.facts.id, &narrow, r.cri());
    crate::sys::phase::mark("bundle");
    let loaded = policy::open(
        &o.policy_dir,
        o.cache_dir.as_deref(),
        !o.insecure_policy_perms,
    );
    crate::sys::phase::mark("policies");
    let waiting = std::time::Instant::now();
    let image_id = add_engine_facts(question, &mut run);
    let engine_time = waiting.elapsed();
    crate::sys::phase::mark("engine");
    let policies = match loaded {
        Ok(p) => p,
        Err(e) => {
            run.fail(e);
            return run;
        }
    };
    mark_image_labels(o, &mut run, &policies, image_id);
    let id = run.facts.id.clone();
    let mut notes = Vec::new();
    run.enforce(&policies, |limits: &Limits| {
        let err = |problem: spec::BundleProblem| Failure::Bundle {
            path: path.clone(),
            problem,
        };
        if let Limit::Bytes(limit) = limits.memory {
            for c in spec::hold_tmpfs(&mut tree, limit, host_memory) {
                notes.push(format!(
                    "tmpfs {} held to the memory limit (size was {})",
                    c.destination,
                    c.was
                        .as_deref()
                        .unwrap_or("unset: half of the host's memory")
                ));
            }
            for src in spec::own_shared_shm(&tree, &id) {
                if let Some(was) =
                    crate::sys::shm::hold_size(Path::new(&src), limit).map_err(|e| err(e.into()))?
                {
                    notes.push(format!(
                        "shared /dev/shm held to the memory limit (size was {})",
                        Limit::Bytes(was)
                    ));
                }
            }
        }
        let host = spec::Host::probe();
        if !host.swap {
            log::info!("no swap accounting in this kernel: swap not limited");
        }
        spec::set_limits(&mut tree, limits, host).map_err(|e| err(e.into()))?;
        if let Ok(exe) = std::env::current_exe() {
            spec::add_unit_hook(
                &mut tree,
                &exe,
                limits,
                !host.unified && crate::cgroup::v1_socket_buffer_limit(),
                o.log_file.as_deref(),
                o.state_dir.as_deref(),
            )
            .map_err(|e| err(e.into()))?;
        }
        // Sized as the file read: no regrowth while serializing.
        let mut out = Vec::with_capacity(bytes.len() + 512);
        serde_json::to_writer(&mut out, &tree)
            .map_err(|e| err(spec::BundleProblem::Serialize(e)))?;
        spec::write_atomically(&path, &out).map_err(|e| err(spec::BundleProblem::Write(e)))?;
        Ok(Written::default())
    });
    if let Some(d) = run.decision.as_mut() {
        d.notes.extend(notes);
    }
    run.detail = Some(format!(
        "decided in {} us, of which waiting for the engine {} us",
        started.elapsed().as_micros(),
        engine_time.as_micros()
    ));
    run
}

/// The host's memory in bytes (`MemTotal`), for a tmpfs sized in percent.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kb| kb * 1024)
}

/// Sends the engine the lookup of the container's name, image and labels
/// (Docker puts none of them in `config.json`).
pub(super) fn ask_engine(o: &Options, id: &str) -> Result<engine::Question, engine::EngineError> {
    let socket = engine::socket_path(o.docker_host.as_deref())?;
    engine::ask(&socket, id, o.engine_timeout)
}

/// Adds what the engine answered (within its timeout) to the run's facts;
/// without an answer the decision is made on the bundle alone, and the log
/// says so. Returns the container's image id, when the engine named it.
pub(super) fn add_engine_facts(
    question: Result<engine::Question, engine::EngineError>,
    run: &mut Run,
) -> Option<String> {
    let f = &mut run.facts;
    let id = &f.id;
    match question.and_then(engine::Question::answer) {
        Ok(Some(e)) => {
            // The engine's own record wins over annotations.
            f.name = e.name.or(f.name.take());
            f.image = e.image.or(f.image.take());
            f.labels = e.labels;
            return e.image_id;
        }
        Ok(None) => {
            log::info!("container {id}: the engine does not know it; deciding on the bundle alone")
        }
        Err(e) => log::warn!("container {id}: {e}; deciding without its name, image and labels"),
    }
    None
}

/// Marks the labels the container's image set (unless the operator trusts
/// images), asking the engine for the image's labels only when a trusted
/// label selects the policy ([`Run::mark_image_labels`]).
pub(super) fn mark_image_labels(
    o: &Options,
    run: &mut Run,
    policies: &policy::PolicySet,
    image_id: Option<String>,
) {
    if o.trust_image_labels {
        return;
    }
    let id = run.facts.id.clone();
    run.mark_image_labels(policies, || {
        let image = image_id?;
        let socket = engine::socket_path(o.docker_host.as_deref()).ok()?;
        engine::image_labels(&socket, &image, o.engine_timeout)
            .map_err(|e| {
                log::warn!(
                    "container {id}: cannot read image {image}'s labels ({e}); its trusted labels count as the image's"
                )
            })
            .ok()
    });
}
