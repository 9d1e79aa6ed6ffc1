//! Finding running containers and the facts to decide on: from the Docker
//! engine, from runc's and crun's state directories, and from bare cgroups.
//! What cannot be asked is reported, and the rest goes on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Args;
use serde::Deserialize;

use crate::cgroup::{self, CgroupDir};
use crate::facts::oci;
use crate::facts::{Facts, Requested};
use crate::size::Limit;
use crate::sys::engine::{self, ListEntry, Running};

/// Where running containers are looked for (`apply`, `watch`, `top`).
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// The Docker engine (default $DOCKER_HOST, else unix:///var/run/docker.sock).
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,

    /// Do not ask the Docker engine.
    #[arg(long)]
    pub no_docker: bool,

    /// How long to wait for each engine answer.
    #[arg(long, default_value = "5s", value_parser = crate::time::parse_duration, value_name = "DURATION")]
    pub engine_timeout: std::time::Duration,

    /// runc state directories (`runc --root`); default /run/runc.
    #[arg(long = "runc-root", value_name = "DIR")]
    pub runc_roots: Vec<PathBuf>,

    /// crun state directories (`crun --root`); default /run/crun.
    #[arg(long = "crun-root", value_name = "DIR")]
    pub crun_roots: Vec<PathBuf>,

    /// Treat every child of this memory cgroup (a path as in
    /// /proc/PID/cgroup) as a container, for hosts with no engine to ask.
    #[arg(long = "cgroup-parent", value_name = "PATH")]
    pub cgroup_parents: Vec<String>,

    /// Do not ask podman (`podman ps`) for names, labels and images of the
    /// containers found in the runtime state directories.
    #[arg(long)]
    pub no_podman: bool,

    /// podman's --root and --runroot, where its storage is not the default.
    #[arg(long, value_name = "DIR")]
    pub podman_root: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    pub podman_runroot: Option<PathBuf>,
}

/// Where a container was found, which decides how its limits change.
pub enum Source {
    /// Through the engine's update endpoint (and `memory.high` in the cgroup).
    Docker {
        socket: PathBuf,
        running: Running,
    },
    /// Directly in the cgroup.
    Runtime {
        name: &'static str,
    },
    Cgroup,
}

impl Source {
    pub fn label(&self) -> &'static str {
        match self {
            Source::Docker { .. } => "docker",
            Source::Runtime { name } => name,
            Source::Cgroup => "cgroup",
        }
    }
}

pub struct Target {
    pub facts: Facts,
    pub source: Source,
    pub dir: CgroupDir,
}

/// A container that was found but cannot be handled, or a source that could
/// not be asked.
pub struct Problem {
    pub container: String,
    pub message: String,
}

pub fn all(args: &SourceArgs, problems: &mut Vec<Problem>) -> Vec<Target> {
    all_but(args, problems, &|_| false, true, true, &mut false)
}

/// A runtime's state directory and its change time and inode (`None`: not
/// there).
pub type RootState = (PathBuf, Option<(i64, i64, u64)>);

/// The runtimes' state directories that [`all`] lists (`runc list`, `crun
/// list`), with what their entries were last changed: each container is a
/// directory there, so a new or removed one changes its parent's time. A
/// caller that asks again and again (the watcher) runs the listings, and
/// the `podman ps` that names their containers, only when this changed.
pub fn runtime_roots_state(args: &SourceArgs) -> Vec<RootState> {
    use std::os::unix::fs::MetadataExt;
    runtime_roots(args)
        .into_iter()
        .flat_map(|(_, roots, _)| roots)
        .map(|r| {
            let m = std::fs::metadata(&r)
                .ok()
                .map(|m| (m.mtime(), m.mtime_nsec(), m.ino()));
            (r, m)
        })
        .collect()
}

/// runc's and crun's state directories, and whether they were given.
fn runtime_roots(args: &SourceArgs) -> [(&'static str, Vec<PathBuf>, bool); 2] {
    let or = |given: &Vec<PathBuf>, default: &str| {
        if given.is_empty() {
            vec![PathBuf::from(default)]
        } else {
            given.clone()
        }
    };
    [
        (
            "runc",
            or(&args.runc_roots, "/run/runc"),
            !args.runc_roots.is_empty(),
        ),
        (
            "crun",
            or(&args.crun_roots, "/run/crun"),
            !args.crun_roots.is_empty(),
        ),
    ]
}

/// [`all`], leaving out the bare cgroups (`--cgroup-parent`) whose path
/// `known` says the caller has already: the watcher, which looks again
/// every ten seconds, then opens and reads only the new ones; and without
/// the runtimes' listings unless `runtimes` (see [`runtime_roots_state`]);
/// `unsettled` is set when a listed container was still being created.
pub fn all_but(
    args: &SourceArgs,
    problems: &mut Vec<Problem>,
    known: &dyn Fn(&str) -> bool,
    runtimes: bool,
    parents: bool,
    unsettled: &mut bool,
) -> Vec<Target> {
    let mut out = Vec::new();
    if !args.no_docker {
        docker(args, &mut out, problems);
    }
    if runtimes {
        let podman = if args.no_podman {
            HashMap::new()
        } else {
            podman(args, problems)
        };
        for (name, roots, explicit) in runtime_roots(args) {
            for root in &roots {
                runtime(name, root, explicit, &podman, &mut out, problems, unsettled);
            }
        }
    }
    if parents {
        out.extend(under_parents(args, problems, known));
    }
    // An engine's container may also be in a runtime's state dir: keep one.
    let mut seen = std::collections::HashSet::new();
    out.retain(|t| seen.insert(t.facts.id.clone()));
    out
}

/// The cgroups under the `--cgroup-parent` directories that `known` does
/// not know.
pub fn under_parents(
    args: &SourceArgs,
    problems: &mut Vec<Problem>,
    known: &dyn Fn(&str) -> bool,
) -> Vec<Target> {
    let mut out = Vec::new();
    for parent in &args.cgroup_parents {
        cgroups(parent, &mut out, problems, known);
    }
    out
}

fn docker(args: &SourceArgs, out: &mut Vec<Target>, problems: &mut Vec<Problem>) {
    let socket = match engine::socket_path(args.docker_host.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            problems.push(Problem {
                container: "docker".into(),
                message: e.to_string(),
            });
            return;
        }
    };
    let asked = args.docker_host.is_some() || std::env::var_os("DOCKER_HOST").is_some();
    if !asked && !socket.exists() {
        return; // No Docker on this host, and none was asked for.
    }
    let running = match engine::running(&socket, args.engine_timeout) {
        Ok(r) => r,
        Err(e) => {
            problems.push(Problem {
                container: "docker".into(),
                message: format!(
                    "cannot ask the Docker engine: {e}; Docker containers were skipped"
                ),
            });
            return;
        }
    };
    for r in running {
        match docker_target(&socket, r) {
            Ok(t) => out.push(t),
            Err(p) => problems.push(p),
        }
    }
}

/// A running Docker container as a target: its cgroup found through its
/// init process.
fn docker_target(socket: &Path, r: Running) -> Result<Target, Problem> {
    let (dir, path) = cgroup::for_pid(r.pid).map_err(|e| Problem {
        container: display(&r.id, r.facts.name.as_deref()),
        message: e.to_string(),
    })?;
    let facts = Facts {
        id: r.id.clone(),
        name: r.facts.name.clone(),
        image: r.facts.image.clone(),
        labels: r.facts.labels.clone(),
        cgroup: Some(path),
        requested: Requested::from_oci(Some(r.memory), Some(r.memory_swap)),
        ..Default::default()
    };
    Ok(Target {
        facts,
        source: Source::Docker {
            socket: socket.to_path_buf(),
            running: r,
        },
        dir,
    })
}

/// One Docker container by id, as [`all`] finds it; `None` when it no
/// longer runs.
pub fn docker_one(
    socket: &Path,
    id: &str,
    timeout: std::time::Duration,
) -> Result<Option<Target>, Problem> {
    let problem = |e: engine::EngineError| Problem {
        container: display(id, None),
        message: e.to_string(),
    };
    let Some(mut r) = engine::inspect(socket, id, timeout).map_err(problem)? else {
        return Ok(None);
    };
    if let Some(f) = engine::ask(socket, id, timeout)
        .and_then(engine::Question::answer)
        .map_err(problem)?
    {
        r.facts = f;
    }
    docker_target(socket, r).map(Some)
}

/// podman has no daemon to ask; `podman ps --format json` names its
/// containers, which run under runc's or crun's state directory (found
/// there, and named from here).
/// `podman` with the storage these options name.
pub fn podman_command(args: &SourceArgs) -> Command {
    let mut c = Command::new("podman");
    if let Some(r) = &args.podman_root {
        c.arg("--root").arg(r);
    }
    if let Some(r) = &args.podman_runroot {
        c.arg("--runroot").arg(r);
    }
    if args.podman_root.is_some() {
        c.args(["--storage-driver", "vfs"]);
    }
    c
}

fn podman(args: &SourceArgs, problems: &mut Vec<Problem>) -> HashMap<String, ListEntry> {
    let explicit = args.podman_root.is_some() || args.podman_runroot.is_some();
    let out = podman_command(args)
        .args(["ps", "--format", "json"])
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            if explicit {
                problems.push(Problem {
                    container: "podman".into(),
                    message: format!(
                        "podman ps failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                });
            }
            return HashMap::new();
        }
        // No podman on this host: nothing to ask.
        Err(_) => return HashMap::new(),
    };
    let list: Vec<ListEntry> = serde_json::from_slice(&out).unwrap_or_default();
    list.into_iter().map(|e| (e.id.clone(), e)).collect()
}

#[derive(Deserialize)]
struct ListedState {
    id: String,
    #[serde(default)]
    pid: i32,
    #[serde(default)]
    status: String,
    #[serde(default)]
    bundle: String,
}

/// Containers of `runc` / `crun` under `root`, through `<runtime> --root
/// ROOT list --format json`, the runtime's own view of its state.
fn runtime(
    name: &'static str,
    root: &Path,
    explicit: bool,
    podman: &HashMap<String, ListEntry>,
    out: &mut Vec<Target>,
    problems: &mut Vec<Problem>,
    unsettled: &mut bool,
) {
    if !root.exists() {
        if explicit {
            problems.push(Problem {
                container: name.into(),
                message: format!("{} does not exist", root.display()),
            });
        }
        return;
    }
    let listed = Command::new(name)
        .arg("--root")
        .arg(root)
        .args(["list", "--format", "json"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let listed = match listed {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            problems.push(Problem {
                container: name.into(),
                message: format!(
                    "{name} --root {} list failed: {}",
                    root.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            });
            return;
        }
        Err(e) => {
            problems.push(Problem {
                container: name.into(),
                message: format!("cannot run {name}: {e}"),
            });
            return;
        }
    };
    let states: Vec<ListedState> =
        if listed.iter().all(u8::is_ascii_whitespace) || listed.starts_with(b"null") {
            Vec::new()
        } else {
            match serde_json::from_slice(&listed) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(Problem {
                        container: name.into(),
                        message: format!("unexpected {name} list output: {e}"),
                    });
                    return;
                }
            }
        };
    for s in states {
        if s.status == "creating" {
            // Its process and cgroup are not there yet: a caller that
            // lists only on changes must look again.
            *unsettled = true;
            continue;
        }
        if s.status != "running" && s.status != "paused" && s.status != "created" {
            continue;
        }
        let (dir, path) = match cgroup::for_pid(s.pid) {
            Ok(x) => x,
            Err(e) => {
                problems.push(Problem {
                    container: s.id.clone(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let mut facts = Facts {
            id: s.id.clone(),
            cgroup: Some(path),
            ..Default::default()
        };
        match oci::read_config(Path::new(&s.bundle)) {
            Ok(c) => {
                let m = c.memory();
                facts.requested = Requested::from_oci(m.limit, m.swap);
                (facts.name, facts.image) = oci::named(&c.annotations);
                facts.annotations = c.annotations;
            }
            Err(e) => {
                // The bundle may be gone; decide on what the cgroup holds.
                log::info!(
                    "{}: {e}; using the cgroup's current limits as the request",
                    s.id
                );
                facts.requested = current_as_request(&dir);
            }
        }
        let mut source = Source::Runtime { name };
        if let Some(p) = podman.get(&facts.id) {
            let known = p.clone().facts();
            facts.name = known.name;
            facts.image = known.image;
            facts.labels = known.labels;
            source = Source::Runtime { name: "podman" };
        }
        out.push(Target { facts, source, dir });
    }
}

/// Every child of a memory cgroup, as a container with its directory name as id.
fn cgroups(
    parent: &str,
    out: &mut Vec<Target>,
    problems: &mut Vec<Problem>,
    known: &dyn Fn(&str) -> bool,
) {
    let Some(parent_dir) = open_parent(parent, problems) else {
        return;
    };
    let entries = match std::fs::read_dir(parent_dir.path()) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem {
                container: parent.into(),
                message: format!("cannot list: {e}"),
            });
            return;
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    children(parent, &parent_dir, names, out, problems, known);
}

/// The cgroups `names` directly under the `--cgroup-parent` `parent`, as
/// inotify named them when they were made: what the watcher takes between
/// two listings of the parent.
pub fn named_under_parent(
    parent: &str,
    names: Vec<String>,
    problems: &mut Vec<Problem>,
) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(parent_dir) = open_parent(parent, problems) {
        children(parent, &parent_dir, names, &mut out, problems, &|_| false);
    }
    out
}

/// The cgroup path of `name` under the `--cgroup-parent` `parent`: the
/// key a bare cgroup is known by.
pub fn child_path(parent: &str, name: &str) -> String {
    format!("{}/{name}", parent.trim_end_matches('/'))
}

fn open_parent(parent: &str, problems: &mut Vec<Problem>) -> Option<CgroupDir> {
    cgroup::open_path(parent)
        .map_err(|e| {
            problems.push(Problem {
                container: parent.into(),
                message: e.to_string(),
            })
        })
        .ok()
}

/// Each of `names` under `parent` that `known` does not know, opened.
fn children(
    parent: &str,
    parent_dir: &CgroupDir,
    names: Vec<String>,
    out: &mut Vec<Target>,
    problems: &mut Vec<Problem>,
    known: &dyn Fn(&str) -> bool,
) {
    for n in names {
        let path = child_path(parent, &n);
        if known(&path) {
            continue;
        }
        match parent_dir.child(&n) {
            Ok(dir) => {
                let requested = current_as_request(&dir);
                out.push(Target {
                    facts: Facts {
                        id: n,
                        cgroup: Some(path),
                        requested,
                        ..Default::default()
                    },
                    source: Source::Cgroup,
                    dir,
                });
            }
            Err(e) => problems.push(Problem {
                container: n,
                message: e.to_string(),
            }),
        }
    }
}

/// With no bundle to say what was asked, the cgroup's bounded limits are
/// the request; an unbounded one is "nothing asked" (the default applies).
fn current_as_request(dir: &CgroupDir) -> Requested {
    let Ok(s) = cgroup::snapshot(dir) else {
        return Requested::default();
    };
    let bounded = |l: Limit| matches!(l, Limit::Bytes(_)).then_some(l);
    let memory = bounded(s.memory);
    let memory_swap = match (dir.hierarchy.clone(), s.swap_file) {
        (cgroup::Hierarchy::V1, Some(l)) => bounded(l),
        (cgroup::Hierarchy::V2, Some(Limit::Bytes(sw))) => {
            memory.map(|m| m.saturating_add(Limit::Bytes(sw)))
        }
        _ => None,
    };
    Requested {
        memory,
        memory_swap: memory.and(memory_swap),
    }
}

/// `name (id…)` or the short id.
pub fn display(id: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => n.to_string(),
        None => id.chars().take(12).collect(),
    }
}
