//! `update`: the verb behind `docker update` (and a Kubernetes in-place
//! resize), which changes a running container's limits through the same
//! runtime that created it.
//!
//! The new limits arrive as JSON on stdin (`--resources -`, what
//! containerd's shim sends), a JSON file (`--resources FILE`), or flags.
//! The wrapper reads them as the runtime would ([`super::argv`] for the
//! options, [`super::resources`] for the document) and never passes the
//! caller's own spelling on: the runtime gets one resources document that
//! the wrapper built — the caller's CPU, pids, I/O settings as read, the
//! memory fields as decided — on stdin, with the container id after `--`.
//!
//! An update that asks nothing of memory (`docker update --cpus 2`, whose
//! memory object is empty) keeps the container's current memory: the
//! current limits are the request, held within the policy's bounds, and
//! the memory fields are sent only when the policy changes them.

use crate::facts::update::{ResourcesError, UpdateError};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::argv::{RuncArgs, UpdateArgs};
use super::options::Options;
use crate::decision::Limits;
use crate::decision::Verdict;
use crate::enforce::{Failure, InCgroup, Run, Written};
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
    let put = InCgroup {
        dir: &dir,
        path: &path,
        pid: s.pid,
    }
    .put(&s.limits);
    match put {
        Err(e) => log::error!("{who}: after the update: {e}"),
        Ok(Written {
            systemd: Some(p), ..
        }) if !p.persisted => log::warn!(
            "{path}: the updated limits are not {}'s properties ({}): the next systemctl daemon-reload resets them",
            p.unit,
            p.reason.as_deref().unwrap_or("?")
        ),
        Ok(_) => {}
    }
}

/// The request an `update` makes, rebuilt canonical.
pub struct Request {
    /// The `LinuxResources` document the runtime would have read.
    resources: serde_json::Value,
    /// Options passed on beside it (Intel RDT schemas, which runc reads
    /// with `--resources` too).
    extra: Vec<(&'static str, String)>,
    /// What it asks of memory, as a create's request is read.
    pub requested: crate::facts::Requested,
    /// The reservation it asks (OCI bytes, -1 for none), if any.
    reservation: Option<i64>,
}

impl Request {
    /// Whether the update sets a memory limit or memory+swap at all.
    pub fn asks_memory(&self) -> bool {
        self.requested.memory.is_some() || self.requested.memory_swap.is_some()
    }
}

/// Decides an `update`; `None` when the runtime is asked for its help.
///
/// The run to finish (`None` when nothing changes and nothing is worth a
/// record) and what the runtime gets instead of the caller's update.
pub type Decided = (Option<Run>, Option<Rewrite>);

pub fn decide(o: &Options, r: &RuncArgs, raw: &[OsString]) -> Option<Decided> {
    let u = r.update.as_ref()?;
    if u.help {
        return None;
    }
    let mut run = Run::new(Source::Update, Default::default());
    run.facts.id = r.id.clone().unwrap_or_default();
    let bad = |e: UpdateError| Failure::Facts(FactsError::Update(e));
    if let Some(e) = &u.error {
        run.fail(bad(e.clone().into()));
        return Some((Some(run), None));
    }
    if r.id.is_none() {
        run.fail(bad(UpdateError::NoId));
        return Some((Some(run), None));
    }
    let mut request = match read_input(u) {
        Ok(x) => x,
        Err(e) => {
            run.fail(e);
            return Some((Some(run), None));
        }
    };
    let (pid, image_id) = match gather(o, r, &mut run) {
        Ok(x) => x,
        Err(e) => {
            run.fail(e);
            return Some((Some(run), None));
        }
    };
    // Nothing asked of memory: what the container has now is the request.
    // The container's cgroup as its init process sees it, as the hook
    // records it (the bundle's `cgroupsPath` may be `slice:prefix:name`):
    // the watcher matches this update's record to the container by it.
    let cgroup = match pid.map(crate::cgroup::for_pid).transpose() {
        Ok(c) => c,
        Err(e) => {
            run.fail(e);
            return Some((Some(run), None));
        }
    };
    if let Some((_, path)) = &cgroup {
        run.facts.cgroup = Some(path.clone());
    }
    let current = if request.asks_memory() {
        None
    } else {
        match cgroup.as_ref().map(|(dir, _)| current_request(dir)) {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                run.fail(e);
                return Some((Some(run), None));
            }
            None => None,
        }
    };
    if let Some(c) = current {
        request.requested = c;
    }
    run.facts.requested = request.requested;
    let policies = match policy::open(
        &o.policy_dir,
        o.cache_dir.as_deref(),
        !o.insecure_policy_perms,
    ) {
        Ok(p) => p,
        Err(e) => {
            run.fail(e);
            return Some((Some(run), None));
        }
    };
    super::mark_image_labels(o, &mut run, &policies, image_id);
    let host = crate::enforce::spec::Host::probe();
    if current.is_none() && !request.asks_memory() {
        // No process to read the limits from: memory is left as it is.
        let rw = rewrite(r, u, &request, raw, None, host);
        return Some((Some(run), Some(rw)));
    }
    if run.decide(&policies).is_none() {
        return Some((Some(run), None));
    }
    let decided = run.decision.as_ref().map(|d| (d.verdict.clone(), d.limits));
    let keeps = |l: &Limits| current.is_some_and(|c| same_as_current(&c, l));
    match decided {
        // An update that asks nothing of memory is never refused for the
        // memory it already has: it keeps it, and `apply` reports it.
        Some((Verdict::Deny { .. }, _)) if current.is_some() => {
            log::warn!(
                "container {}: its current memory is refused by its policy; the update leaves it as it is",
                run.facts.id
            );
            let rw = rewrite(r, u, &request, raw, None, host);
            Some((Some(run), Some(rw)))
        }
        Some((Verdict::Apply, l)) if keeps(&l) => {
            // Nothing changes: no record, memory left out of the update.
            let rw = rewrite(r, u, &request, raw, None, host);
            Some((None, Some(rw)))
        }
        _ => {
            let mut rewritten = None;
            run.write(|l: &Limits| {
                let mut rw = rewrite(r, u, &request, raw, Some(l), host);
                rw.then = pid.map(|pid| Settle { pid, limits: *l });
                rewritten = Some(rw);
                Ok(Written::default())
            });
            Some((Some(run), rewritten))
        }
    }
}

/// Whether decided limits are what the container has: memory and
/// memory+swap.
fn same_as_current(c: &crate::facts::Requested, l: &Limits) -> bool {
    c.memory == Some(l.memory) && c.memory_swap.is_none_or(|ms| ms == l.memory_swap())
}

/// The container's current memory as a request: an unlimited value is
/// asked as unlimited (so a policy's `max` holds it), never as nothing
/// (which would be the policy's default).
fn current_request(dir: &crate::cgroup::CgroupDir) -> Result<crate::facts::Requested, Failure> {
    let s = crate::cgroup::snapshot(dir)?;
    let memory_swap = match (&dir.hierarchy, s.swap_file) {
        (crate::cgroup::Hierarchy::V1, Some(l)) => Some(l),
        (crate::cgroup::Hierarchy::V2, Some(sw)) => Some(s.memory.saturating_add(sw)),
        _ => None,
    };
    Ok(crate::facts::Requested {
        memory: Some(s.memory),
        memory_swap,
    })
}

/// Reads the request from stdin, its file, or the flags.
fn read_input(u: &UpdateArgs) -> Result<Request, Failure> {
    let bad = |e: UpdateError| Failure::Facts(FactsError::Update(e));
    let bytes = match u.get("resources") {
        None => None,
        Some("-") => {
            let mut b = Vec::new();
            std::io::stdin()
                .lock()
                .take(1 << 20)
                .read_to_end(&mut b)
                .map_err(|e| bad(UpdateError::Stdin(e)))?;
            Some(b)
        }
        Some(file) => Some(oci::read_config_bytes(Path::new(file)).map_err(|problem| {
            bad(UpdateError::File {
                file: file.to_string(),
                problem,
            })
        })?),
    };
    request(u, bytes.as_deref()).map_err(|e| bad(e.into()))
}

/// Options that `--resources` does not replace: runc reads them beside it.
const BESIDE_RESOURCES: &[&str] = &["l3-cache-schema", "mem-bw-schema"];

/// The request of an update, from its `--resources` document (`resources`
/// holds its bytes) or its flags, as the runtime reads them.
pub fn request(u: &UpdateArgs, resources: Option<&[u8]>) -> Result<Request, ResourcesError> {
    let extra: Vec<(&'static str, String)> = u
        .flags
        .iter()
        .filter(|(n, v)| BESIDE_RESOURCES.contains(n) && !v.is_empty())
        .cloned()
        .collect();
    let doc = if u.get("resources").is_some() {
        super::resources::decode(resources.unwrap_or_default())?
    } else {
        from_flags(u)?
    };
    let field = |k: &str| doc["memory"][k].as_i64();
    let (limit, mut swap) = (field("limit"), field("swap"));
    // runc: unlimited memory with swap unsaid is unlimited swap too.
    if limit == Some(-1) && swap.is_none() {
        swap = Some(-1);
    }
    Ok(Request {
        requested: crate::facts::Requested::from_oci(limit, swap),
        reservation: field("reservation").filter(|r| *r != 0),
        resources: doc,
        extra,
    })
}

/// The resources document that runc builds from `update`'s flags.
fn from_flags(u: &UpdateArgs) -> Result<serde_json::Value, ResourcesError> {
    use serde_json::{Value, json};
    let mut doc = json!({});
    let mut put = |obj: &str, key: &str, v: Value| {
        doc[obj][key] = v;
    };
    let number = |flag, source| ResourcesError::Number { flag, source };
    let uint = |flag: &'static str, v: &str| -> Result<Value, ResourcesError> {
        v.parse::<u64>()
            .map(Value::from)
            .map_err(|e| number(flag, e))
    };
    let int = |flag: &'static str, v: &str| -> Result<Value, ResourcesError> {
        v.parse::<i64>()
            .map(Value::from)
            .map_err(|e| number(flag, e))
    };
    for (flag, obj, key) in [
        ("cpu-burst", "cpu", "burst"),
        ("cpu-period", "cpu", "period"),
        ("cpu-rt-period", "cpu", "realtimePeriod"),
        ("cpu-share", "cpu", "shares"),
    ] {
        if let Some(v) = u.get(flag) {
            put(obj, key, uint(flag, v)?);
        }
    }
    for (flag, obj, key) in [
        ("cpu-quota", "cpu", "quota"),
        ("cpu-rt-runtime", "cpu", "realtimeRuntime"),
        ("cpu-idle", "cpu", "idle"),
    ] {
        if let Some(v) = u.get(flag) {
            put(obj, key, int(flag, v)?);
        }
    }
    for (flag, key) in [("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")] {
        if let Some(v) = u.get(flag) {
            put("cpu", key, v.into());
        }
    }
    if let Some(v) = u.get("blkio-weight") {
        let w = v.parse::<u16>().map_err(|e| number("blkio-weight", e))?;
        if w != 0 {
            put("blockIO", "weight", w.into());
        }
    }
    if let Some(v) = u.get("pids-limit") {
        put("pids", "limit", int("pids-limit", v)?);
    }
    for (flag, key) in [
        ("memory", "limit"),
        ("memory-swap", "swap"),
        ("memory-reservation", "reservation"),
    ] {
        if let Some(v) = u.get(flag) {
            let bytes =
                size::parse_limit(v)
                    .map(Limit::to_oci)
                    .map_err(|source| ResourcesError::Size {
                        flag,
                        value: v.to_string(),
                        source,
                    })?;
            put("memory", key, bytes.into());
        }
    }
    for flag in ["kernel-memory", "kernel-memory-tcp"] {
        if u.get(flag).is_some() {
            log::warn!("--{flag} is ignored: the decided limit is the container's");
        }
    }
    Ok(doc)
}

/// The container's facts as `create` learned them: its bundle (found
/// through the runtime's own state) and what the engine knows of it; and
/// its init process, when it has one.
fn gather(
    o: &Options,
    r: &RuncArgs,
    run: &mut Run,
) -> Result<(Option<i32>, Option<String>), Failure> {
    let question = super::ask_engine(o, &run.facts.id);
    let (bundle, pid) = bundle_of(&o.runtime, r.root.as_deref(), &run.facts.id)?;
    let config = oci::read_config(&bundle).map_err(FactsError::from)?;
    run.facts = oci::bundle_facts(&run.facts.id, &config, r.cri());
    let image_id = super::add_engine_facts(question, run);
    Ok((pid, image_id))
}

/// The bundle and init process of a container, from `RUNTIME [--root
/// ROOT] state ID`.
fn bundle_of(
    runtime: &str,
    root: Option<&str>,
    id: &str,
) -> Result<(PathBuf, Option<i32>), Failure> {
    let bad = |e: UpdateError| Failure::Facts(FactsError::Update(e));
    let (name, id_) = (runtime.to_string(), id.to_string());
    let mut c = std::process::Command::new(runtime);
    if let Some(root) = root {
        c.args(["--root", root]);
    }
    let out = c
        .args(["state", "--", id])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| {
            bad(UpdateError::RunState {
                runtime: name.clone(),
                source,
            })
        })?;
    if !out.status.success() {
        return Err(bad(UpdateError::StateFailed {
            runtime: name,
            id: id_,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }));
    }
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|source| {
        bad(UpdateError::StateJson {
            runtime: name.clone(),
            id: id_.clone(),
            source,
        })
    })?;
    let pid = state["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0);
    state["bundle"]
        .as_str()
        .map(|b| (PathBuf::from(b), pid))
        .ok_or_else(|| {
            bad(UpdateError::NoBundle {
                runtime: name,
                id: id_,
            })
        })
}

/// The update the runtime gets: `GLOBALS update --resources - [RDT
/// options] -- ID`, the document on stdin, its memory fields the decided
/// limits (`None`: the memory fields left out, so memory stays as it is).
pub fn rewrite(
    r: &RuncArgs,
    u: &UpdateArgs,
    request: &Request,
    raw: &[OsString],
    decided: Option<&Limits>,
    host: crate::enforce::spec::Host,
) -> Rewrite {
    let start = u.flags_start.min(raw.len());
    let mut argv: Vec<OsString> = raw[..start].to_vec();
    argv.extend(["--resources".into(), "-".into()]);
    for (name, value) in &request.extra {
        argv.push(format!("--{name}={value}").into());
    }
    argv.push("--".into());
    argv.push(r.id.clone().unwrap_or_default().into());
    let mut doc = request.resources.clone();
    if !doc["memory"].is_object() {
        doc["memory"] = serde_json::json!({});
    }
    let m = doc["memory"].as_object_mut().expect("an object");
    // Kernel memory is the kernel's to account: the wrapper sets TCP
    // buffers itself (v1), and no caller's value reaches the runtime.
    m.remove("kernel");
    m.remove("kernelTCP");
    for k in ["limit", "swap", "reservation"] {
        m.remove(k);
    }
    if let Some(l) = decided {
        m.insert("limit".into(), l.memory.to_oci().into());
        if host.swap {
            m.insert("swap".into(), l.memory_swap().to_oci().into());
        }
        if let Some(res) = crate::enforce::spec::reservation(request.reservation, l, host) {
            m.insert("reservation".into(), res.into());
        }
    }
    Rewrite {
        argv,
        stdin: Some(serde_json::to_vec(&doc).unwrap_or_default()),
        then: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::runtime::argv;
    use crate::enforce::spec::Host;
    use serde_json::json;

    const V1: Host = Host {
        unified: false,
        swap: true,
    };

    fn limits(high: Option<u64>) -> Limits {
        Limits {
            memory: Limit::Bytes(256 << 20),
            swap: Limit::Bytes(0),
            high: high.map(Limit::Bytes),
        }
    }

    /// The argv and document the runtime gets for `args` (and `body` as
    /// the resources), with `decided` limits.
    fn sent(
        args: &str,
        body: &str,
        decided: Option<&Limits>,
        host: Host,
    ) -> (Vec<String>, serde_json::Value) {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        let r = argv::parse(&args);
        let u = r.update.as_ref().unwrap();
        assert_eq!(u.error, None);
        let req = request(u, Some(body.as_bytes())).unwrap();
        let raw: Vec<OsString> = args.iter().map(OsString::from).collect();
        let rw = rewrite(&r, u, &req, &raw, decided, host);
        let argv = rw
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        (argv, serde_json::from_slice(&rw.stdin.unwrap()).unwrap())
    }

    /// Whatever the form and spelling of the caller's update, the runtime
    /// gets one document the wrapper built, after the verb, and the id
    /// after `--`: no malformed flag can swallow it, no other flag is left.
    #[test]
    fn the_runtime_gets_a_canonical_update() {
        let l = limits(Some(128 << 20));
        let (argv, doc) = sent(
            "--root /r update --pids-limit 7 c1 --memory 100g --memory-swap=-1 --cpu-sh 5",
            "",
            Some(&l),
            V1,
        );
        assert_eq!(
            argv,
            ["--root", "/r", "update", "--resources", "-", "--", "c1"]
        );
        assert_eq!(
            doc,
            json!({"pids":{"limit":7},"cpu":{"shares":5},"memory":{"limit":268435456,"swap":268435456,"reservation":134217728}})
        );
        // Go's JSON: case folded, the last duplicate winning.
        let (_, doc) = sent(
            "update -r - c1",
            r#"{"Memory":{"limit":33554432,"LIMIT":1073741824,"kernelTCP":-1},"PIDS":{"limit":3}}"#,
            Some(&l),
            V1,
        );
        assert_eq!(
            doc,
            json!({"memory":{"limit":268435456,"swap":268435456,"reservation":134217728},"pids":{"limit":3}})
        );
        let (argv, _) = sent(
            "update --l3-cache-schema L3:0=f -r - -- c1",
            "{}",
            Some(&l),
            V1,
        );
        assert_eq!(
            argv,
            [
                "update",
                "--resources",
                "-",
                "--l3-cache-schema=L3:0=f",
                "--",
                "c1"
            ]
        );
    }

    /// `docker update --cpus 2`: an empty memory object, nothing decided;
    /// the runtime gets no memory field and keeps what the container has.
    #[test]
    fn an_update_without_memory_leaves_memory_alone() {
        let body = r#"{"blockIO":{"weight":0},"cpu":{"shares":0,"period":100000,"quota":200000},"memory":{},"pids":{"limit":0}}"#;
        let args: Vec<String> = ["update", "-r", "-", "c1"].map(String::from).to_vec();
        let r = argv::parse(&args);
        let req = request(r.update.as_ref().unwrap(), Some(body.as_bytes())).unwrap();
        assert!(!req.asks_memory());
        let (_, doc) = sent("update -r - c1", body, None, V1);
        assert_eq!(doc["memory"], json!({}));
        assert_eq!(doc["cpu"]["quota"], 200000);
        // Zero is runc's "unchanged" too.
        let req = request(
            r.update.as_ref().unwrap(),
            Some(br#"{"memory":{"limit":0,"swap":0}}"#),
        )
        .unwrap();
        assert!(!req.asks_memory());
    }

    #[test]
    fn the_current_limits_are_kept_when_the_policy_agrees() {
        let cur = crate::facts::Requested {
            memory: Some(Limit::Bytes(200 << 20)),
            memory_swap: Some(Limit::Bytes(200 << 20)),
        };
        let l = Limits {
            memory: Limit::Bytes(200 << 20),
            swap: Limit::Bytes(0),
            high: None,
        };
        assert!(same_as_current(&cur, &l));
        let lower = Limits {
            memory: Limit::Bytes(64 << 20),
            ..l
        };
        assert!(!same_as_current(&cur, &lower));
    }

    #[test]
    fn a_reservation_is_held_to_high_on_v2() {
        let v2 = Host {
            unified: true,
            swap: true,
        };
        let body = r#"{"memory":{"limit":1,"reservation":1099511627776}}"#;
        let (_, doc) = sent("update -r - c1", body, Some(&limits(Some(128 << 20))), v2);
        assert_eq!(doc["memory"]["reservation"], 128 << 20);
        let (_, doc) = sent("update -r - c1", body, Some(&limits(None)), v2);
        assert!(doc["memory"].get("reservation").is_none());
    }
}
