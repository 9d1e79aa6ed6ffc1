//! `cglimit runtime`: a transparent runc wrapper for Docker, which has no
//! hooks setting but lets a runtime be registered in `daemon.json`.
//!
//! Only `create` and `run` are touched: the policy's limits are written into
//! the bundle's `config.json`, so runc itself creates the cgroup with them.
//! Then the real runtime is `exec`ed with the argv unchanged, so every other
//! verb, global flag, exit status, stdout byte and signal is runc's own.

pub mod argv;
pub mod spec;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{OnError, parse_duration};
use crate::config;
use crate::decision::{self, Verdict};
use crate::engine;
use crate::facts::{Facts, Requested};
use crate::logger::{self, Format};
use crate::oci;
use crate::policy;
use crate::record::{self, DecisionRecord};

/// The wrapper's settings: flags first, then the config file, then defaults.
#[derive(Debug)]
struct Options {
    policy_dir: PathBuf,
    runtime: String,
    on_error: OnError,
    log_file: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    engine_timeout: Duration,
    docker_host: Option<String>,
    insecure_policy_perms: bool,
}

/// The wrapper's flags that take no value.
const SWITCHES: &[&str] = &["--no-cache", "--insecure-policy-perms"];

/// The wrapper's own flags at the front of argv, and where runc's begin.
fn own_flags(args: &[String]) -> (Vec<(&str, Option<&str>)>, usize) {
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let (name, inline) = match args[i].split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (args[i].as_str(), None),
        };
        let takes_value = matches!(
            name,
            "--config"
                | "--policy-dir"
                | "--runtime"
                | "--on-error"
                | "--log-file"
                | "--state-dir"
                | "--cache-dir"
                | "--engine-timeout"
                | "--docker-host"
        );
        if !takes_value && !SWITCHES.contains(&name) {
            break;
        }
        let value = match (takes_value, inline) {
            (false, _) => None,
            (true, Some(v)) => Some(v),
            (true, None) => {
                i += 1;
                args.get(i).map(String::as_str)
            }
        };
        flags.push((name, value));
        i += 1;
    }
    (flags, i.min(args.len()))
}

/// The settings from the wrapper's flags, the config file and defaults.
fn options(flags: &[(&str, Option<&str>)]) -> Result<Options, String> {
    if let Some((name, _)) = flags
        .iter()
        .find(|(n, v)| v.is_none() && !SWITCHES.contains(n))
    {
        return Err(format!("{name} needs a value"));
    }
    let config_path = flags
        .iter()
        .rev()
        .find(|(n, _)| *n == "--config")
        .and_then(|(_, v)| v.map(PathBuf::from));
    let insecure = flags.iter().any(|(n, _)| *n == "--insecure-policy-perms");
    let file = config::load(config_path.as_deref(), insecure)?;
    let mut o = Options {
        policy_dir: file
            .policy_dir
            .unwrap_or_else(|| "/etc/cglimit/policies".into()),
        runtime: file.runtime.unwrap_or_else(|| "runc".into()),
        on_error: file.on_error.unwrap_or(OnError::Deny),
        log_file: file.log_file,
        state_dir: file.state_dir,
        cache_dir: Some(
            file.cache_dir
                .unwrap_or_else(|| "/run/cglimit/cache".into()),
        ),
        engine_timeout: match file.engine_timeout {
            Some(t) => parse_duration(&t)?,
            None => Duration::from_millis(250),
        },
        docker_host: file
            .docker_host
            .or_else(|| std::env::var("DOCKER_HOST").ok()),
        insecure_policy_perms: insecure || file.insecure_policy_perms.unwrap_or(false),
    };
    for &(name, value) in flags {
        let v = value.unwrap_or_default();
        match name {
            "--config" => {}
            "--policy-dir" => o.policy_dir = v.into(),
            "--runtime" => o.runtime = v.into(),
            "--on-error" => {
                o.on_error = match v {
                    "deny" => OnError::Deny,
                    "allow" => OnError::Allow,
                    _ => return Err(format!("--on-error {v:?}: use deny or allow")),
                }
            }
            "--log-file" => o.log_file = Some(v.into()),
            "--state-dir" => o.state_dir = Some(v.into()),
            "--cache-dir" => o.cache_dir = Some(v.into()),
            "--no-cache" => o.cache_dir = None,
            "--insecure-policy-perms" => {}
            "--engine-timeout" => o.engine_timeout = parse_duration(v)?,
            "--docker-host" => o.docker_host = Some(v.into()),
            _ => unreachable!("listed above"),
        }
    }
    Ok(o)
}

/// Entry point; `raw` is everything after `runtime` (or after argv[0] for
/// the `cglimit-runtime` symlink). The runtime gets its part byte for byte.
pub fn main(raw: &[OsString]) -> ExitCode {
    let args: Vec<String> = raw
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (flags, n) = own_flags(&args);
    let runc_args = argv::parse(&args[n..]);
    let opts = match options(&flags) {
        Ok(o) => o,
        Err(e) => {
            init_log(None, &runc_args);
            return refuse(&format!("cglimit runtime: {e}"), &runc_args);
        }
    };
    init_log(opts.log_file.as_deref(), &runc_args);
    if runc_args.creates() {
        crate::privilege::drop_for_wrapper();
    }
    if runc_args.creates()
        && let Err(e) = decide_and_write(&opts, &runc_args)
    {
        match (e, opts.on_error) {
            (Failure::Denied(m), _) | (Failure::Error(m), OnError::Deny) => {
                return refuse(&m, &runc_args);
            }
            (Failure::Error(m), OnError::Allow) => {
                log::warn!(
                    "{m}; creating the container without enforced limits (--on-error allow)"
                );
            }
        }
    }
    let err = std::process::Command::new(&opts.runtime)
        .args(&raw[n..])
        .exec();
    refuse(
        &format!("cannot run the runtime {:?}: {err}", opts.runtime),
        &runc_args,
    );
    ExitCode::from(127)
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

/// Fails the runtime call with `message` where each caller looks for it:
/// containerd reads the last error line of runc's `--log` back into the
/// error `docker run` prints; other callers read stderr.
fn refuse(message: &str, runc: &argv::RuncArgs) -> ExitCode {
    log::error!("{message}");
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

enum Failure {
    Denied(String),
    Error(String),
}

fn decide_and_write(o: &Options, r: &argv::RuncArgs) -> Result<(), Failure> {
    let bundle = match &r.bundle {
        Some(b) => PathBuf::from(b),
        None => std::env::current_dir().map_err(|e| Failure::Error(format!("no bundle: {e}")))?,
    };
    let id = r.id.clone().unwrap_or_else(|| {
        bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let path = bundle.join("config.json");
    let err = |m: String| Failure::Error(format!("container {id}: {}: {m}", path.display()));
    let started = std::time::Instant::now();
    // The engine's answer is the longest wait of a create (about half of
    // it, measured): ask first, and read the bundle and the policies while
    // the engine looks the container up.
    let question = ask_engine(o, &id);
    let bytes = oci::read_config_bytes(&path).map_err(err)?;
    let mut tree: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let narrow = <oci::Config as serde::Deserialize>::deserialize(&tree)
        .map_err(|e| err(format!("invalid config: {e}")))?;
    let mut facts = bundle_facts(&id, &narrow, &tree);
    let trusted = if o.insecure_policy_perms {
        Ok(())
    } else {
        policy::perms::check_policies(&o.policy_dir)
    };
    // Only policies from a directory only root can change are read.
    let loaded = trusted.map(|()| policy::cache::load(&o.policy_dir, o.cache_dir.as_deref()));
    let waiting = std::time::Instant::now();
    add_engine_facts(question, &mut facts);
    let engine_time = waiting.elapsed();
    let who = crate::hook::describe(&facts);
    let set = match loaded {
        Err(e) => return Err(Failure::Error(format!("{who}: untrusted policy: {e}"))),
        Ok(Err(e)) => return Err(Failure::Error(format!("{who}: invalid policy:\n{e}"))),
        Ok(Ok(set)) => set,
    };
    let chosen = policy::cache::choose_from(&set, &o.policy_dir, o.cache_dir.as_deref(), &facts)
        .map_err(|e| Failure::Error(format!("{who}: invalid policy:\n{e}")))?;
    let d = decision::decide_chosen(chosen, &facts);
    let result = match &d.verdict {
        Verdict::Deny { message } => {
            let by = d.refused_by();
            Err(Failure::Denied(format!("{who} refused by {by}: {message}")))
        }
        Verdict::Apply => {
            spec::set_limits(&mut tree, &d.limits, crate::cgroup::unified_host())
                .map_err(|e| err(e.to_string()))?;
            // Sized as the file read: no regrowth while serializing.
            let mut out = Vec::with_capacity(bytes.len() + 512);
            serde_json::to_writer(&mut out, &tree).map_err(|e| err(e.to_string()))?;
            spec::write_atomically(&path, &out).map_err(|e| err(format!("cannot write: {e}")))?;
            log::info!(
                "{who}: {}; decided in {} us, of which waiting for the engine {} us",
                crate::hook::summary(&d, None),
                started.elapsed().as_micros(),
                engine_time.as_micros()
            );
            Ok(())
        }
    };
    if let Some(dir) = &o.state_dir {
        let rec = DecisionRecord {
            time: record::now_rfc3339(),
            source: "runtime",
            outcome: if result.is_ok() { "applied" } else { "denied" },
            container: &facts,
            decision: Some(&d),
            applied: None,
            error: None,
        };
        if let Err(e) = record::append(dir, record::DECISIONS, &rec) {
            log::error!("{who}: {e}");
        }
    }
    result
}

/// What the bundle says of a container.
fn bundle_facts(id: &str, c: &oci::Config, tree: &serde_json::Value) -> Facts {
    let m = c.memory();
    Facts {
        id: id.to_string(),
        annotations: c.annotations.clone(),
        requested: Requested::from_oci(m.limit, m.swap),
        cgroup: tree["linux"]["cgroupsPath"].as_str().map(String::from),
        ..Default::default()
    }
}

/// Sends the engine the lookup of the container's name, image and labels
/// (Docker puts none of them in `config.json`).
fn ask_engine(o: &Options, id: &str) -> Result<engine::Question, String> {
    let socket = engine::socket_path(o.docker_host.as_deref())?;
    engine::ask(&socket, id, o.engine_timeout)
}

/// Adds what the engine answered (within its timeout) to `f`; without an
/// answer the decision is made on the bundle alone, and the log says so.
fn add_engine_facts(question: Result<engine::Question, String>, f: &mut Facts) {
    let id = &f.id;
    match question.and_then(engine::Question::answer) {
        Ok(Some(e)) => {
            f.name = e.name;
            f.image = e.image;
            f.labels = e.labels;
        }
        Ok(None) => {
            log::info!("container {id}: the engine does not know it; deciding on the bundle alone")
        }
        Err(e) => log::warn!("container {id}: {e}; deciding without its name, image and labels"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (Vec<(String, Option<String>)>, Vec<String>) {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        let (f, n) = own_flags(&args);
        let f = f
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.map(String::from)))
            .collect();
        (f, args[n..].to_vec())
    }

    #[test]
    fn own_flags_stop_at_runcs() {
        let (f, rest) = split(
            "--policy-dir /p --no-cache --runtime=/usr/bin/crun --root /r create --bundle /b c1",
        );
        assert_eq!(f.len(), 3);
        assert_eq!(f[2], ("--runtime".into(), Some("/usr/bin/crun".into())));
        assert_eq!(rest[0], "--root");
        let (f, rest) = split("--version");
        assert!(f.is_empty());
        assert_eq!(rest, ["--version"]);
        // runc's own --log is not the wrapper's --log-file.
        let (f, rest) = split("--log /l create c1");
        assert!(f.is_empty() && rest.len() == 4);
    }

    #[test]
    fn a_missing_value_is_an_error() {
        let args: Vec<String> = vec!["--policy-dir".into()];
        let (f, n) = own_flags(&args);
        assert_eq!(n, 1);
        assert!(
            options(&f)
                .unwrap_err()
                .contains("--policy-dir needs a value")
        );
    }
}
