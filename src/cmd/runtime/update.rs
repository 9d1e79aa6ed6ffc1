//! `update`: the verb behind `docker update` (and a Kubernetes in-place
//! resize), which changes a running container's limits through the same
//! runtime that created it.
//!
//! The new limits arrive in one of three forms: JSON on stdin (`--resources
//! -`, what containerd's shim sends), a JSON file (`--resources FILE`), or
//! flags (`--memory`, `--memory-swap`, `--memory-reservation`). They are the
//! container's request; the policy decides as it does for `create`, and the
//! runtime gets the decided limits in the same form, with everything else
//! (CPU, pids, I/O, other flags) unchanged. An update that sets no memory
//! passes through untouched.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::argv::{RuncArgs, UpdateArgs};
use super::options::Options;
use crate::decision::Limits;
use crate::enforce::{Failure, Run};
use crate::facts::{FactsError, oci};
use crate::policy;
use crate::record::Source;
use crate::size::{self, Limit};

/// What the runtime gets instead of what was asked.
pub struct Rewrite {
    /// The runtime's argv (everything after the wrapper's own flags).
    pub argv: Vec<OsString>,
    /// New standard input, when the resources came as JSON.
    pub stdin: Option<Vec<u8>>,
    /// What is left to do once the runtime has updated the container: on
    /// v2 the runtime does not set `memory.high` (an update has no field
    /// for it), and on the systemd driver the unit must keep it.
    pub then: Option<Settle>,
}

/// The decided limits, to be settled in the container's cgroup (and unit)
/// after the runtime's own update.
pub struct Settle {
    pub pid: i32,
    pub limits: Limits,
}

/// Writes what the runtime's update left out (`memory.high` on v2) and
/// makes the limits the container's unit's properties when its cgroup is a
/// systemd unit's. Logged; the decision was recorded before the update.
pub fn settle(s: &Settle) {
    let who = format!("container (pid {})", s.pid);
    let (dir, path) = match crate::cgroup::for_pid(s.pid) {
        Ok(x) => x,
        Err(e) => {
            log::warn!("{who}: after the update: {e}");
            return;
        }
    };
    let applied = match crate::cgroup::apply(&dir, &s.limits) {
        Ok(a) => a,
        Err(e) => {
            log::error!("{who}: after the update: {e}");
            return;
        }
    };
    match crate::enforce::persist(&dir, &path, s.pid, &s.limits, &applied) {
        Some(p) if !p.persisted => log::warn!(
            "{path}: the updated limits are not {}'s properties ({}): the next systemctl daemon-reload resets them",
            p.unit,
            p.reason.as_deref().unwrap_or("?")
        ),
        _ => {}
    }
}

/// The request an `update` makes of memory, in the form it came in.
pub struct Request {
    input: Input,
    /// What it asks, as a create's request is read.
    pub requested: crate::facts::Requested,
    /// The reservation it asks (OCI bytes, -1 for none), if any.
    reservation: Option<i64>,
}

enum Input {
    /// `--resources`: the whole JSON document, to be edited.
    Json(serde_json::Value),
    /// Flags: the memory and memory+swap they ask for.
    Flags,
}

/// Decides an `update`; `None` when it sets no memory and passes through.
pub fn decide(o: &Options, r: &RuncArgs, raw: &[OsString]) -> Option<(Run, Option<Rewrite>)> {
    let u = r.update.as_ref()?;
    let mut run = Run::new(Source::Update, Default::default());
    run.facts.id = r.id.clone().unwrap_or_default();
    let request = match read_input(u) {
        Ok(Some(x)) => x,
        Ok(None) => return None,
        Err(e) => {
            run.fail(e);
            return Some((run, None));
        }
    };
    let pid = match gather(o, r, &mut run) {
        Ok(pid) => pid,
        Err(e) => {
            run.fail(e);
            return Some((run, None));
        }
    };
    run.facts.requested = request.requested;
    let policies = match policy::open(
        &o.policy_dir,
        o.cache_dir.as_deref(),
        !o.insecure_policy_perms,
    ) {
        Ok(p) => p,
        Err(e) => {
            run.fail(e);
            return Some((run, None));
        }
    };
    let mut rewritten = None;
    let host = crate::enforce::spec::Host::probe();
    run.enforce(&policies, |l: &Limits| {
        let mut rw = rewrite(u, &request, raw, l, host);
        rw.then = pid
            .filter(|_| host.unified)
            .map(|pid| Settle { pid, limits: *l });
        rewritten = Some(rw);
        Ok(None)
    });
    Some((run, rewritten))
}

/// Reads the request from stdin or its file: `None` when the update does
/// not touch memory.
fn read_input(u: &UpdateArgs) -> Result<Option<Request>, Failure> {
    let bad = |message: String| Failure::Facts(FactsError::Update(message));
    let bytes = match u.resources.as_deref() {
        None => None,
        Some("-") => {
            let mut b = Vec::new();
            std::io::stdin()
                .lock()
                .take(1 << 20)
                .read_to_end(&mut b)
                .map_err(|e| bad(format!("cannot read the resources on stdin: {e}")))?;
            Some(b)
        }
        Some(file) => {
            Some(oci::read_config_bytes(Path::new(file)).map_err(|e| bad(format!("{file}: {e}")))?)
        }
    };
    request(u, bytes.as_deref()).map_err(bad)
}

/// The request of an update, from its flags or (with `--resources`) its
/// JSON document: `None` when it does not touch memory.
pub fn request(u: &UpdateArgs, resources: Option<&[u8]>) -> Result<Option<Request>, String> {
    if u.resources.is_some() {
        let tree: serde_json::Value = serde_json::from_slice(resources.unwrap_or_default())
            .map_err(|e| format!("the resources are not JSON: {e}"))?;
        let memory = &tree["memory"];
        if !memory.is_object() {
            return Ok(None);
        }
        let field = |k: &str| memory[k].as_i64();
        let requested = crate::facts::Requested::from_oci(field("limit"), field("swap"));
        let reservation = field("reservation");
        return Ok(Some(Request {
            input: Input::Json(tree),
            requested,
            reservation,
        }));
    }
    if u.memory.is_none() && u.memory_swap.is_none() && u.memory_reservation.is_none() {
        return Ok(None);
    }
    let size = |flag: &str, v: &Option<String>| -> Result<Option<i64>, String> {
        v.as_deref()
            .map(|v| {
                size::parse_limit(v)
                    .map(Limit::to_oci)
                    .map_err(|e| format!("--{flag} {v:?}: {e}"))
            })
            .transpose()
    };
    let requested = crate::facts::Requested::from_oci(
        size("memory", &u.memory)?,
        size("memory-swap", &u.memory_swap)?,
    );
    Ok(Some(Request {
        input: Input::Flags,
        requested,
        reservation: size("memory-reservation", &u.memory_reservation)?,
    }))
}

/// The container's facts as `create` learned them: its bundle (found
/// through the runtime's own state) and what the engine knows of it; and
/// its init process, when it has one.
fn gather(o: &Options, r: &RuncArgs, run: &mut Run) -> Result<Option<i32>, Failure> {
    let question = super::ask_engine(o, &run.facts.id);
    let (bundle, pid) = bundle_of(&o.runtime, r.root.as_deref(), &run.facts.id)?;
    let config = oci::read_config(&bundle).map_err(FactsError::from)?;
    run.facts = oci::bundle_facts(&run.facts.id, &config);
    super::add_engine_facts(question, run);
    Ok(pid)
}

/// The bundle and init process of a container, from `RUNTIME [--root
/// ROOT] state ID`.
fn bundle_of(
    runtime: &str,
    root: Option<&str>,
    id: &str,
) -> Result<(PathBuf, Option<i32>), Failure> {
    let bad = |message: String| Failure::Facts(FactsError::Update(message));
    let mut c = std::process::Command::new(runtime);
    if let Some(root) = root {
        c.args(["--root", root]);
    }
    let out = c
        .args(["state", id])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| bad(format!("cannot run {runtime} state: {e}")))?;
    if !out.status.success() {
        return Err(bad(format!(
            "{runtime} state {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let state: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| bad(format!("{runtime} state {id}: {e}")))?;
    let pid = state["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0);
    state["bundle"]
        .as_str()
        .map(|b| (PathBuf::from(b), pid))
        .ok_or_else(|| bad(format!("{runtime} state {id} names no bundle")))
}

/// The update the runtime gets: the decided limits, in the form asked.
pub fn rewrite(
    u: &UpdateArgs,
    request: &Request,
    raw: &[OsString],
    l: &Limits,
    host: crate::enforce::spec::Host,
) -> Rewrite {
    let reservation = crate::enforce::spec::reservation(request.reservation, l, host);
    // The verb and what precedes it; then the decided flags; then every
    // other token as it came, the memory flags left out.
    let start = u.flags_start.min(raw.len());
    let mut argv: Vec<OsString> = raw[..start].to_vec();
    let stdin = match &request.input {
        Input::Json(tree) => {
            let mut tree = tree.clone();
            let m = &mut tree["memory"];
            m["limit"] = l.memory.to_oci().into();
            if host.swap {
                m["swap"] = l.memory_swap().to_oci().into();
            } else if let Some(m) = m.as_object_mut() {
                m.remove("swap");
            }
            if let Some(m) = m.as_object_mut() {
                match reservation {
                    Some(r) => m.insert("reservation".into(), r.into()),
                    None => m.remove("reservation"),
                };
            }
            argv.extend(["--resources".into(), "-".into()]);
            Some(serde_json::to_vec(&tree).unwrap_or_default())
        }
        Input::Flags => {
            let mut flag = |name: &str, v: i64| {
                argv.push(format!("--{name}").into());
                argv.push(v.to_string().into());
            };
            flag("memory", l.memory.to_oci());
            if host.swap {
                flag("memory-swap", l.memory_swap().to_oci());
            }
            if let Some(r) = reservation {
                flag("memory-reservation", r);
            }
            None
        }
    };
    argv.extend(
        (start..raw.len())
            .filter(|i| !u.tokens.contains(i))
            .map(|i| raw[i].clone()),
    );
    Rewrite {
        argv,
        stdin,
        then: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::runtime::argv;
    use crate::enforce::spec::Host;

    fn rewritten(args: &[&str], body: &str) -> Vec<String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let r = argv::parse(&args);
        let u = r.update.as_ref().unwrap();
        let req = request(u, Some(body.as_bytes())).unwrap().unwrap();
        let raw: Vec<OsString> = args.iter().map(OsString::from).collect();
        let l = Limits {
            memory: Limit::Bytes(256 << 20),
            swap: Limit::Bytes(0),
            high: Some(Limit::Bytes(128 << 20)),
        };
        let host = Host {
            unified: false,
            swap: true,
        };
        rewrite(u, &req, &raw, &l, host)
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// Found by fuzzing: the decided flags go right after the verb, where
    /// neither a flag missing its value nor a `--` can swallow them.
    #[test]
    fn decided_flags_cannot_be_swallowed() {
        let out = rewritten(&["update", "-r", "/f", "-2e"], r#"{"memory":{"limit":1}}"#);
        assert_eq!(out, ["update", "--resources", "-", "-2e"]);
        let out = rewritten(
            &["--root", "/r", "update", "--memory", "1g", "--", "c1"],
            "",
        );
        assert_eq!(
            out,
            [
                "--root",
                "/r",
                "update",
                "--memory",
                "268435456",
                "--memory-swap",
                "268435456",
                "--memory-reservation",
                "134217728",
                "--",
                "c1"
            ]
        );
    }

    #[test]
    fn a_reservation_is_held_to_high_on_v2() {
        let args: Vec<String> = ["update", "-r", "-", "c1"].map(String::from).to_vec();
        let r = argv::parse(&args);
        let u = r.update.as_ref().unwrap();
        let body = br#"{"memory":{"limit":1,"reservation":1099511627776}}"#;
        let req = request(u, Some(body)).unwrap().unwrap();
        let raw: Vec<OsString> = args.iter().map(OsString::from).collect();
        let v2 = Host {
            unified: true,
            swap: true,
        };
        let sent = |high: Option<u64>| -> serde_json::Value {
            let l = Limits {
                memory: Limit::Bytes(256 << 20),
                swap: Limit::Bytes(0),
                high: high.map(Limit::Bytes),
            };
            serde_json::from_slice(&rewrite(u, &req, &raw, &l, v2).stdin.unwrap()).unwrap()
        };
        assert_eq!(sent(Some(128 << 20))["memory"]["reservation"], 128 << 20);
        assert!(sent(None)["memory"].get("reservation").is_none());
    }
}
