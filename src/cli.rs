//! The command line: every flag is defined and documented here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::time::{parse_duration, parse_when};

/// `0.1.0 (commit 1a2b3c4d5e6f)`: the package version and the commit built.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CGLIMIT_COMMIT"),
    ")"
);

/// Memory limits for every container: policies in YAML, enforced in the
/// container's cgroup before its first instruction.
#[derive(Parser, Debug)]
#[command(name = "cglimit", version = VERSION, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Append log lines to this file instead of stderr.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Least severe log level written: error, warn, info, debug.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL", value_parser = parse_level)]
    pub log_level: log::LevelFilter,
}

// `cglimit hook ...` is parsed by `HookCli` alone: the hook runs on every
// container start, and building the whole command line (every subcommand's
// flags) cost more instructions than the hook's own work (BENCHMARKS.md).
// The flags are the same definitions as under `Cli`.

/// Run as an OCI hook (createRuntime or prestart): read the container state
/// on stdin and write its limits into its memory cgroup.
#[derive(Parser, Debug)]
#[command(name = "cglimit hook", version = VERSION, max_term_width = 100)]
pub struct HookCli {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub hook: HookArgs,
}

impl HookCli {
    /// The hook's command line read without clap, when it is plainly well
    /// formed: every argument one of the flags above, given once, its value
    /// attached (`--flag=value`) or next, not empty and not starting with
    /// `-`, and accepted by the same parser clap would use. Anything else
    /// (`--help`, `--version`, an unknown or repeated flag, a refused
    /// value) returns `None`, and clap parses and reports it as always.
    /// Building clap's command costs the hook 150 µs of its time inside
    /// `runc run` (BENCHMARKS.md); a runtime passes the same few flags on
    /// every start. The unit tests hold the two parsers to the same result.
    pub fn parse_plain(args: &[std::ffi::OsString]) -> Option<HookCli> {
        let mut c = HookCli {
            log: LogArgs {
                log_file: None,
                log_level: log::LevelFilter::Info,
            },
            hook: HookArgs {
                policy: PolicyArgs {
                    policy_dir: PathBuf::from("/etc/cglimit/policies"),
                    insecure_policy_perms: false,
                },
                state_dir: None,
                on_error: OnError::Deny,
                decided: None,
                decided_by: None,
                cache_dir: PathBuf::from("/run/cglimit/cache"),
                no_cache: false,
                cri: false,
                timeout: Duration::from_secs(5),
            },
        };
        let mut seen: Vec<&str> = Vec::with_capacity(args.len());
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let a = a.to_str()?;
            let (flag, attached) = match a.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (a, None),
            };
            if !flag.starts_with("--") || seen.contains(&flag) {
                return None;
            }
            seen.push(flag);
            let h = &mut c.hook;
            let switch = match flag {
                "--insecure-policy-perms" => Some(&mut h.policy.insecure_policy_perms),
                "--no-cache" => Some(&mut h.no_cache),
                "--cri" => Some(&mut h.cri),
                _ => None,
            };
            if let Some(on) = switch {
                if attached.is_some() {
                    return None;
                }
                *on = true;
                continue;
            }
            let v = match attached {
                Some(v) => v,
                None => it.next()?.to_str()?,
            };
            if v.is_empty() || v.starts_with('-') {
                return None;
            }
            match flag {
                "--policy-dir" => h.policy.policy_dir = v.into(),
                "--state-dir" => h.state_dir = Some(v.into()),
                "--cache-dir" => h.cache_dir = v.into(),
                "--on-error" => {
                    h.on_error = match v {
                        "deny" => OnError::Deny,
                        "allow" => OnError::Allow,
                        _ => return None,
                    }
                }
                "--decided" => h.decided = Some(crate::decision::Limits::from_arg(v).ok()?),
                "--decided-by" => h.decided_by = Some(v.to_string()),
                "--timeout" => h.timeout = parse_duration(v).ok()?,
                "--log-file" => c.log.log_file = Some(v.into()),
                "--log-level" => c.log.log_level = parse_level(v).ok()?,
                _ => return None,
            }
        }
        if c.hook.decided_by.is_some() && c.hook.decided.is_none() {
            return None;
        }
        Some(c)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check policy files; print every error as FILE:LINE:COLUMN: FIELD: MESSAGE
    /// and exit 1 if there is any.
    Validate(ValidateArgs),
    /// Show which policy matches a container and what limits result, without
    /// writing anything.
    Explain(ExplainArgs),
    /// Run as an OCI hook (createRuntime or prestart): read the container
    /// state on stdin and write its limits into its memory cgroup.
    Hook(HookArgs),
    /// Bring running containers under policy: Docker's (through the engine's
    /// update endpoint, so inspect, restarts and stats agree), runc's and
    /// crun's from their state directories, and bare cgroups. Exit 0 when all
    /// are compliant or fixed, 1 when some could not be fixed, 2 on usage errors.
    Apply(ApplyArgs),
    /// Record failcnt, OOM and OOM-kill events durably, export Prometheus
    /// metrics, and warn of leaks before the OOM killer fires.
    Watch(WatchArgs),
    /// Print the recorded events.
    Events(EventsArgs),
    /// Memory of every container, like `docker stats`: usage / limit, swap,
    /// failcnt, OOM kills and the growth trend.
    Top(TopArgs),
    /// What a container's memory is, who holds it, whether it grows, and
    /// what the kernel reported at its OOM kills: one screen with a
    /// verdict (a running container, or the last one of that id or name
    /// in the records when it is gone).
    Diagnose(DiagnoseArgs),
    /// What each workload's memory limit should be, from the watcher's
    /// history (or a Prometheus holding many watchers' metrics): the peak
    /// plus a margin, bumped after OOM kills, never raised for a leak;
    /// printed as a table, JSON, policies or a diff for the policy
    /// directory. Nothing is applied.
    Recommend(RecommendArgs),
    /// Wire cglimit into an engine: docker (the runtime wrapper in
    /// daemon.json, then a reload of dockerd), containerd (a runtime handler
    /// running the wrapper in config.toml), podman or crio (the hook file in
    /// the hooks directory the engine reads); the default policy when the
    /// policy directory holds none. `--dry-run` shows the changes,
    /// `--undo` reverses exactly what setup did.
    Setup(SetupArgs),
    /// Publish the policies of FROM (a Kubernetes ConfigMap volume, a
    /// checkout) into the node's policy directory TO, whole and only when
    /// they validate; with `--interval`, again whenever FROM changes. The
    /// last valid set stays when FROM breaks or goes away.
    SyncPolicies(SyncArgs),
    /// Check that every engine found on this host enforces its policy: a
    /// short probe container started through each, as a user would start
    /// one, must get the limits the policy decides. Exit 0 only when all do.
    Doctor(DoctorArgs),
    /// Print the memory limits of the cgroup this process is in (what
    /// `doctor`'s probe container runs).
    #[command(hide = true)]
    Probe,
    /// Wrap runc for Docker (daemon.json `runtimes`): on `create` and `run`,
    /// write the policy's limits into the bundle's config.json, then exec the
    /// real runtime with the arguments unchanged; everything else passes
    /// through untouched. Its own options come first:
    /// `--config FILE` (default /etc/cglimit/config.yaml), `--policy-dir DIR`,
    /// `--runtime PATH` (default runc), `--on-error deny|allow`,
    /// `--log-file FILE`, `--state-dir DIR`, `--cache-dir DIR`, `--no-cache`,
    /// `--engine-timeout DURATION` (default 250ms), `--docker-host URL`.
    /// Also run as a symlink named `cglimit-runtime`.
    #[command(disable_help_flag = true)]
    Runtime {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Policy files or directories (their *.yaml and *.yml files).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Directory of policy files (*.yaml, *.yml), or one file.
    #[arg(long, default_value = "/etc/cglimit/policies", value_name = "DIR")]
    pub policy_dir: PathBuf,
    /// Accept policy files (and the directories leading to them) that a
    /// user other than root, or than the user cglimit runs as, could change.
    /// By default such files are refused, as sudo and sshd refuse theirs.
    #[arg(long)]
    pub insecure_policy_perms: bool,
}

pub use crate::enforce::OnError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people (`table` is the same).
    #[value(alias = "table")]
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct HookArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Append one JSON line per decision to DIR/decisions.jsonl.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// What to do when a decision or a cgroup write fails.
    #[arg(long, value_enum, default_value = "deny")]
    pub on_error: OnError,

    /// Limits already decided, as `MEMORY:SWAP:HIGH` in bytes (`max`; HIGH
    /// may be `off`): no policy is read. The runtime wrapper adds the hook
    /// this way to the bundles it rewrites on the systemd cgroup driver, so
    /// that its decision also becomes the container's unit's properties.
    #[arg(long, value_name = "LIMITS", value_parser = crate::decision::Limits::from_arg)]
    pub decided: Option<crate::decision::Limits>,

    /// The policy that decided `--decided`, for the log.
    #[arg(long, value_name = "NAME", requires = "decided")]
    pub decided_by: Option<String>,

    /// Keep a compiled copy of the policies here, checked against every
    /// policy file's size and timestamps on each run, so the hook does not
    /// parse YAML on every container start.
    #[arg(long, default_value = "/run/cglimit/cache", value_name = "DIR")]
    pub cache_dir: PathBuf,

    /// Parse the policy YAML on every run.
    #[arg(long)]
    pub no_cache: bool,

    /// This hook is CRI-O's (`setup crio` writes it): the pod's namespace
    /// and container type are read from CRI-O's annotations, which only it
    /// writes. Without it (podman, runc) those keys are the creator's.
    #[arg(long)]
    pub cri: bool,

    /// Give up after this long (runtimes wait for hooks without a limit).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// An OCI bundle: its config.json gives the requested limits and annotations.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,

    /// Container id (default: the bundle directory's name).
    #[arg(long)]
    pub id: Option<String>,
    /// Container name, for `names` selectors.
    #[arg(long)]
    pub name: Option<String>,
    /// Image reference, for `images` selectors.
    #[arg(long)]
    pub image: Option<String>,
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = parse_pair, value_name = "KEY=VALUE")]
    pub labels: Vec<(String, String)>,
    /// An annotation KEY=VALUE (repeatable), added to the bundle's.
    #[arg(long = "annotation", value_parser = parse_pair, value_name = "KEY=VALUE")]
    pub annotations: Vec<(String, String)>,
    /// Kubernetes: the pod's namespace, for `namespaces` selectors.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Kubernetes: the pod's name, for `pods` selectors.
    #[arg(long)]
    pub pod: Option<String>,
    /// Kubernetes: `sandbox` or `container`, for `containerTypes` selectors.
    #[arg(long, value_parser = ["sandbox", "container"])]
    pub container_type: Option<String>,
    /// Memory cgroup path, for `cgroups` selectors.
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Requested memory limit, as `docker run --memory` (overrides the bundle).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Requested memory+swap, as `docker run --memory-swap` (-1: unlimited).
    #[arg(long, value_name = "SIZE")]
    pub memory_swap: Option<String>,

    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// Containers by id (or unique id prefix) or name.
    #[arg(value_name = "ID|NAME")]
    pub containers: Vec<String>,

    /// Every running container that can be found.
    #[arg(long, conflicts_with = "containers")]
    pub all: bool,

    /// Show current limits, the matching policy, the new values and why;
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Lower a limit below current usage: ask the kernel to reclaim first
    /// (v2 `memory.reclaim`), then lower, accepting an OOM kill.
    #[arg(long)]
    pub force: bool,

    /// Let labels that come from a container's image select a policy that
    /// trusts them (as the wrapper's `trustImageLabels`).
    #[arg(long)]
    pub trust_image_labels: bool,

    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,

    /// Keep running: re-apply on drift every --interval, and record each
    /// correction (`drift_corrected`) in STATE_DIR/events.jsonl.
    #[arg(long)]
    pub watch: bool,

    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Append one JSON line per change to DIR/decisions.jsonl.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(flatten)]
    pub sources: SourceArgs,
}

pub use crate::facts::discover::SourceArgs;

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Where events.jsonl is written and decisions.jsonl is read.
    #[arg(long, default_value = "/var/lib/cglimit", value_name = "DIR")]
    pub state_dir: PathBuf,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9477
    /// (`--web.listen-address`, as exporters name it, is the same flag).
    #[arg(long, alias = "web.listen-address", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Sampling interval for counters without notifications and for the
    /// leak detector.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// Samples in the leak detector's window.
    #[arg(long, default_value = "45", value_name = "N")]
    pub leak_window: usize,

    /// Growth, in bytes per second, of memory that does not go back by
    /// itself (anon, shmem, kernel) above which a leak is suspected.
    #[arg(long, default_value = "262144", value_name = "BYTES")]
    pub leak_threshold: u64,

    /// Inotify watches the containers' limit files may take (three a
    /// container; one whose files are not watched has its limits read
    /// every 30 ticks instead). Default: half of
    /// fs.inotify.max_user_watches, less one per container.
    #[arg(long, value_name = "N")]
    pub limit_watches: Option<u64>,

    /// v2: record a `pressure` event when the container's tasks stall on
    /// memory this long within one second (a PSI trigger on memory.pressure).
    #[arg(long, default_value = "150ms", value_parser = parse_duration, value_name = "DURATION")]
    pub pressure_stall: Duration,

    /// Rotate events.jsonl to events.jsonl.1 above this size.
    #[arg(long, default_value = "16777216", value_name = "BYTES")]
    pub rotate_bytes: u64,
    /// How long a container that is gone keeps its series, frozen at its
    /// last values with `cglimit_container_gone_timestamp_seconds`: a
    /// container OOM-killed at its start and removed in milliseconds is
    /// still there for the next scrapes and its alert.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub retention: Duration,

    /// Bring a Docker container that starts through a runtime other than
    /// cglimit's (`docker run --runtime runc`) under the policies in DIR as
    /// the engine reports its start, as `apply --watch` does.
    #[arg(long, value_name = "DIR")]
    pub policy_dir: Option<PathBuf>,

    /// With --policy-dir: accept policies others than root could change.
    #[arg(long, requires = "policy_dir")]
    pub insecure_policy_perms: bool,

    /// How containers are grouped into workloads for their history and
    /// `recommend`: by name without the instance number (`web-1`, `web-2`
    /// are `web`; unnamed ones by image), or by image repository.
    /// Kubernetes containers are always namespace/owner/container.
    #[arg(long, value_enum, default_value = "name", value_name = "HOW")]
    pub workload_by: crate::facts::workload::By,

    /// How often the workloads' history (history.json in the state dir) is
    /// written; also when the watcher stops.
    #[arg(long, default_value = "1m", value_parser = parse_duration, value_name = "DURATION")]
    pub history_save: Duration,

    /// Workloads kept in the history; the least recently seen go first.
    #[arg(long, default_value_t = crate::record::history::DEFAULT_WORKLOADS, value_name = "N")]
    pub history_workloads: usize,

    #[command(flatten)]
    pub sources: SourceArgs,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[arg(long, default_value = "/var/lib/cglimit", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Only events at or after this: a duration ago (`90s`, `30m`, `1h`,
    /// `2d`) or an RFC 3339 time (`2026-11-30T18:00:00Z`, any offset).
    #[arg(long, value_parser = parse_when, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only events before this (same forms as `--since`).
    #[arg(long, value_parser = parse_when, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only this container (id prefix or name).
    #[arg(long, value_name = "ID|NAME")]
    pub container: Option<String>,
    /// Keep printing new events as they are recorded.
    #[arg(long)]
    pub follow: bool,
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
    Containerd,
    Crio,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
            Engine::Containerd => "containerd",
            Engine::Crio => "crio",
        }
    }
}

#[derive(Args, Debug)]
pub struct SetupArgs {
    /// The engine to wire.
    #[arg(value_enum)]
    pub engine: Engine,
    /// Print what would change (daemon.json as a diff) and touch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Reverse what an earlier setup of this engine did.
    #[arg(long)]
    pub undo: bool,
    /// Change keys that are already set to something else.
    #[arg(long)]
    pub force: bool,
    /// Where policies are (the default policy is installed there when it
    /// holds none).
    #[arg(long, default_value = "/etc/cglimit/policies", value_name = "DIR")]
    pub policy_dir: PathBuf,
    /// Where setup keeps what it did, for `--undo`.
    #[arg(long, default_value = "/var/lib/cglimit", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// docker: the daemon's configuration file.
    #[arg(long, default_value = "/etc/docker/daemon.json", value_name = "FILE")]
    pub daemon_json: PathBuf,
    /// docker: the wrapper's configuration file (named in daemon.json's
    /// `runtimeArgs` when it is not the default).
    #[arg(long, default_value = "/etc/cglimit/config.yaml", value_name = "FILE")]
    pub config: PathBuf,
    /// docker: the engine's socket.
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,
    /// podman, crio: the hooks directory (default: the first `hooks_dir` of
    /// the engine's configuration, else its own default).
    #[arg(long, value_name = "DIR")]
    pub hooks_dir: Option<PathBuf>,

    /// podman: where the containers.conf drop-in that makes the wrapper
    /// podman's runtime is written.
    #[arg(
        long,
        default_value = "/etc/containers/containers.conf.d",
        value_name = "DIR"
    )]
    pub containers_conf_dir: PathBuf,
    /// containerd: its configuration file (version 2 or 3).
    #[arg(
        long,
        default_value = "/etc/containerd/config.toml",
        value_name = "FILE"
    )]
    pub containerd_config: PathBuf,
    /// containerd: the runtime handler's name (a RuntimeClass's `handler`).
    #[arg(long, default_value = "cglimit", value_name = "NAME")]
    pub handler: String,
    /// containerd: make the handler the CRI's default runtime, for every pod
    /// without a RuntimeClass.
    #[arg(long)]
    pub default: bool,
    /// containerd: restart it (`systemctl restart containerd`) so that it
    /// loads the handler; running containers keep running. Without it,
    /// setup prints the command.
    #[arg(long)]
    pub restart: bool,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Where the policies come from.
    #[arg(value_name = "FROM")]
    pub from: PathBuf,
    /// The node's policy directory (`/etc/cglimit/policies`).
    #[arg(value_name = "TO")]
    pub to: PathBuf,
    /// Publish once and exit: 0 when FROM was valid and is published.
    #[arg(long)]
    pub once: bool,
    /// How often to look at FROM again.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Where policies are.
    #[arg(long, default_value = "/etc/cglimit/policies", value_name = "DIR")]
    pub policy_dir: PathBuf,
    /// docker: the engine's socket.
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,
    /// podman, crio: the hooks directory to check (default as `setup` finds
    /// it).
    #[arg(long, value_name = "DIR")]
    pub hooks_dir: Option<PathBuf>,
    /// Where the hook and wrapper record decisions: a probe's record there
    /// tells whether systemd keeps its limits.
    #[arg(long, default_value = "/var/lib/cglimit", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// containerd: its configuration file.
    #[arg(
        long,
        default_value = "/etc/containerd/config.toml",
        value_name = "FILE"
    )]
    pub containerd_config: PathBuf,
    /// containerd: its socket.
    #[arg(
        long,
        default_value = "/run/containerd/containerd.sock",
        value_name = "PATH"
    )]
    pub containerd_address: PathBuf,
    /// Check only these engines (default: every engine found).
    /// Fail on every engine that is not wired, also one that nothing but
    /// another engine uses (containerd serving only dockerd).
    #[arg(long)]
    pub strict: bool,

    #[arg(long = "engine", value_enum, value_name = "ENGINE")]
    pub engines: Vec<Engine>,
    /// `table` (one line per engine) or `json`.
    #[arg(long, short = 'o', default_value = "table")]
    pub output: String,
}

#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    /// The container: its id (or a unique prefix) or its name.
    #[arg(value_name = "ID|NAME")]
    pub container: String,
    /// Where the hook, the wrapper and the watcher record.
    #[arg(long, default_value = "/var/lib/cglimit", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Read the container twice, this far apart, and measure what grows
    /// and in which process. Without it the growth is the watcher's (its
    /// last leak warning), and nothing is waited for.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub window: Option<std::time::Duration>,
    /// Growth, in bytes per second, above which memory that does not go
    /// back by itself (anon, shmem, kernel) counts as growing.
    #[arg(long, default_value = "262144", value_name = "BYTES")]
    pub leak_threshold: u64,
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// How `recommend` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RecommendOutput {
    Table,
    Json,
    /// The policies alone, one YAML document each.
    Yaml,
    /// A unified diff against the policy directory (`patch -p1 -d DIR`).
    Diff,
}

#[derive(Args, Debug)]
pub struct RecommendArgs {
    /// History to weigh: a duration back from now.
    #[arg(long, default_value = "7d", value_parser = parse_duration, value_name = "DURATION")]
    pub since: Duration,
    /// Less history than this (from first to last sample) gets no
    /// recommendation.
    #[arg(long, default_value = "1d", value_parser = parse_duration, value_name = "DURATION")]
    pub min_history: Duration,
    /// Headroom over the peak, in percent.
    #[arg(long, default_value = "15", value_name = "PERCENT")]
    pub margin: f64,
    /// Where the watcher keeps its history (history.json).
    #[arg(long, default_value = "/var/lib/cglimit", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Policies to compare with and to write changes for (yaml, diff).
    #[arg(long, default_value = "/etc/cglimit/policies", value_name = "DIR")]
    pub policy_dir: PathBuf,
    /// Read the watchers' metrics from this Prometheus (http://HOST:PORT)
    /// instead of this host's history: every host that scrapes into it.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Only these workloads (repeatable).
    #[arg(long = "workload", value_name = "KEY")]
    pub workloads: Vec<String>,
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: RecommendOutput,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Print one table and exit (`--no-stream`, as `docker stats` says it).
    #[arg(long, alias = "no-stream")]
    pub once: bool,
    /// Also show what the memory is: anon, file (page cache), shmem
    /// (tmpfs), kernel, sock.
    #[arg(long)]
    pub wide: bool,
    /// Also show the containers recorded in DIR/decisions.jsonl.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub sources: SourceArgs,
}

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("invalid log level {s:?}: use error, warn, info or debug"))
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        HookCli::command().debug_assert();
    }

    /// Whatever the plain reader accepts, clap reads the same way; what it
    /// leaves to clap includes everything clap refuses. Arguments drawn
    /// from flags, values and malformed pieces, thousands of lines.
    #[test]
    fn the_plain_hook_reader_agrees_with_clap() {
        const PIECES: &[&str] = &[
            "--policy-dir",
            "--state-dir",
            "--cache-dir",
            "--on-error",
            "--decided",
            "--decided-by",
            "--timeout",
            "--log-file",
            "--log-level",
            "--no-cache",
            "--cri",
            "--insecure-policy-perms",
            "--help",
            "--version",
            "-h",
            "--policy",
            "--cri=true",
            "--timeout=250ms",
            "--on-error=allow",
            "--decided=64M:0:off",
            "/p",
            "",
            "-",
            "deny",
            "allow",
            "Allow",
            "5s",
            "0s",
            "x",
            "debug",
            "warn",
            "loud",
            "67108864:0:off",
            "1:2",
            "max:max:max",
            "--",
            "--log-level=error",
            "--state-dir=",
            "--policy-dir=/a=b",
            "team",
            "-x",
        ];
        let mut next = crate::draws();
        let mut plain = 0;
        for _ in 0..20_000 {
            let len = next(7);
            let args: Vec<std::ffi::OsString> = (0..len)
                .map(|_| PIECES[next(PIECES.len())].into())
                .collect();
            let fast = HookCli::parse_plain(&args);
            let argv = std::iter::once("cglimit hook".into()).chain(args.iter().cloned());
            let slow = HookCli::try_parse_from(argv);
            if let Some(f) = fast {
                plain += 1;
                let s =
                    slow.unwrap_or_else(|e| panic!("{args:?}: plain read it, clap refused: {e}"));
                assert_eq!(format!("{f:?}"), format!("{s:?}"), "{args:?}");
            }
        }
        // The usual lines are read plainly.
        assert!(plain > 500, "{plain}");
        for line in [
            &[
                "--policy-dir",
                "/etc/p",
                "--state-dir",
                "/var/lib/cglimit",
                "--timeout",
                "2s",
            ][..],
            &[
                "--decided",
                "67108864:0:off",
                "--decided-by",
                "team",
                "--cri",
            ],
            &[],
        ] {
            let args: Vec<std::ffi::OsString> = line.iter().map(Into::into).collect();
            assert!(HookCli::parse_plain(&args).is_some(), "{line:?}");
        }
    }

    #[test]
    fn the_exporters_name_for_the_listen_flag() {
        // The exporters' name for the listen flag.
        let c = Cli::try_parse_from(["cglimit", "watch", "--web.listen-address", "127.0.0.1:1"])
            .unwrap();
        assert!(
            matches!(c.command, Command::Watch(w) if w.listen.as_deref() == Some("127.0.0.1:1"))
        );
    }
}
