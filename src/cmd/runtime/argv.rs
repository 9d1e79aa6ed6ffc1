//! Reading a runc command line without changing it: the global flags before
//! the verb, the verb, for `create` / `run` the bundle and container id, and
//! for `update` its memory settings and where they stand.
//!
//! runc (urfave/cli) accepts `-flag` and `--flag`, and `--flag value` or
//! `--flag=value`. A flag's value must never be taken for the verb or the
//! id, so the flags that take a value are listed here; any other flag is
//! taken as a switch.

use crate::facts::update::ArgumentError;

/// runc's and crun's global options that take a value.
const GLOBAL_VALUED: &[&str] = &[
    "log",
    "log-format",
    "log-level",
    "root",
    "criu",
    "rootless",
    "cgroup-manager",
];

/// Their global options that take none: crun's getopt takes a unique
/// prefix of any of these, so `--cg X` is `--cgroup-manager X` and the verb
/// is what follows X.
const GLOBAL_SWITCHES: &[&str] = &["debug", "systemd-cgroup", "help", "usage", "version"];

/// A global option's full name: itself, or what it uniquely abbreviates.
fn global_option(name: &str) -> &str {
    let all = || GLOBAL_VALUED.iter().chain(GLOBAL_SWITCHES);
    if all().any(|f| *f == name) {
        return name;
    }
    let mut m = all().filter(|f| f.starts_with(name));
    match (m.next(), m.next()) {
        (Some(f), None) => f,
        _ => name,
    }
}

/// `create`, `run` and `restore` options that take a value (runc's and
/// crun's).
const CREATE_VALUED: &[&str] = &[
    "bundle",
    "console-socket",
    "pid-file",
    "preserve-fds",
    "pidfd-socket",
    "config",
    "image-path",
    "work-path",
    "manage-cgroups-mode",
    "empty-ns",
    "lsm-profile",
    "lsm-mount-context",
];

/// Their options that take none: listed so that an abbreviation is read
/// as getopt reads it (unique among all of them, or no option at all).
const CREATE_SWITCHES: &[&str] = &[
    "detach",
    "keep",
    "no-subreaper",
    "no-pivot",
    "no-new-keyring",
    "tcp-established",
    "ext-unix-sk",
    "shell-job",
    "file-locks",
    "auto-dedup",
    "lazy-pages",
    "help",
    "usage",
];

/// The long options of `update`, runc's and crun's together; each takes a
/// value. A caller may abbreviate them as crun's getopt allows (a unique
/// prefix) and put them anywhere among the arguments, as both runtimes
/// reorder them.
pub const UPDATE_FLAGS: &[&str] = &[
    "resources",
    "blkio-weight",
    "cpu-period",
    "cpu-quota",
    "cpu-burst",
    "cpu-share",
    "cpu-rt-period",
    "cpu-rt-runtime",
    "cpuset-cpus",
    "cpuset-mems",
    "cpu-idle",
    "kernel-memory",
    "kernel-memory-tcp",
    "memory",
    "memory-reservation",
    "memory-swap",
    "pids-limit",
    "l3-cache-schema",
    "mem-bw-schema",
];

/// `update`'s options that take no value and ask for help instead.
const UPDATE_HELP: &[&str] = &["help", "usage"];

/// containerd's namespace for the containers its CRI plugin runs.
const CRI_NAMESPACE: &str = "k8s.io";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RuncArgs {
    /// `--root`: the runtime's state directory.
    pub root: Option<String>,
    /// `--log`: where runc (and so the wrapper) writes its log.
    pub log: Option<String>,
    /// `--log-format`: `text` (default) or `json`.
    pub log_format: Option<String>,
    pub verb: Option<String>,
    /// `--bundle` / `-b` of `create` / `run` / `restore`: the last given.
    pub bundle: Option<String>,
    /// crun's `--config` / `-f`: the configuration file it reads instead
    /// of the bundle's `config.json` (relative to the bundle).
    pub config: Option<String>,
    /// The container id: the first argument after the verb that is not an
    /// option or an option's value.
    pub id: Option<String>,
    /// What `update` asks of memory.
    pub update: Option<UpdateArgs>,
}

/// An `update` command line, read as the runtime reads it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpdateArgs {
    /// Each option with its value, under its full name, in order: the last
    /// of a name wins, as in both runtimes.
    pub flags: Vec<(&'static str, String)>,
    /// Help was asked for: the runtime prints it and updates nothing.
    pub help: bool,
    /// What the runtime would refuse (an unknown or ambiguous option, a
    /// missing value, a second container id).
    pub error: Option<ArgumentError>,
    /// Where the verb's arguments start in the runtime's argv.
    pub flags_start: usize,
}

impl UpdateArgs {
    /// The last value given for `name`, an empty one counting as none (as
    /// runc reads its string options).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

impl RuncArgs {
    /// Whether this invocation creates a container (and so gets limits):
    /// `restore` creates one from a checkpoint, with the bundle's limits.
    pub fn creates(&self) -> bool {
        matches!(self.verb.as_deref(), Some("create" | "run" | "restore"))
    }

    /// Whether the caller is containerd's CRI plugin: its runc shim passes
    /// `--root STATE/runc/NAMESPACE`, and the CRI's namespace is `k8s.io`.
    /// Only then are the pod facts (namespace, container type) the
    /// runtime's; dockerd's shim passes `.../moby`, and any other caller
    /// of the wrapper writes the annotations it likes.
    pub fn cri(&self) -> bool {
        self.root.as_deref().is_some_and(|r| {
            std::path::Path::new(r)
                .file_name()
                .is_some_and(|n| n == CRI_NAMESPACE)
        })
    }

    /// Whether this invocation changes a running container's resources.
    pub fn updates(&self) -> bool {
        self.verb.as_deref() == Some("update")
    }
}

/// Splits `-x`, `--x`, `--x=v` into the flag's name and inline value.
fn flag(arg: &str) -> Option<(&str, Option<&str>)> {
    let name = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    if name.is_empty() {
        return None;
    }
    Some(match name.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    })
}

pub fn parse(args: &[String]) -> RuncArgs {
    let mut out = RuncArgs::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some((name, inline)) = flag(a) else {
            out.verb = Some(a.clone());
            i += 1;
            break;
        };
        let name = if a.starts_with("--") {
            global_option(name)
        } else {
            name
        };
        let value = if GLOBAL_VALUED.contains(&name) {
            match inline {
                Some(v) => Some(v.to_string()),
                None => {
                    i += 1;
                    args.get(i).cloned()
                }
            }
        } else {
            None
        };
        match name {
            "root" => out.root = value,
            "log" => out.log = value,
            "log-format" => out.log_format = value,
            _ => {}
        }
        i += 1;
    }
    if out.updates() {
        out.update = Some(update(args, i, &mut out.id));
        return out;
    }
    if !out.creates() {
        return out;
    }
    // Options may follow the id: both runtimes reorder them, so a bundle
    // given after it is the bundle.
    let mut options_end = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if options_end || a == "-" || !a.starts_with('-') {
            out.id.get_or_insert_with(|| a.clone());
            continue;
        }
        if a == "--" {
            options_end = true;
            continue;
        }
        let (name, inline) = if let Some(long) = a.strip_prefix("--") {
            let (n, v) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            (create_option(n), v)
        } else {
            let short = &a[1..];
            let (n, v) = match short.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (short, None),
            };
            if let Some(f) = CREATE_VALUED
                .iter()
                .chain(CREATE_SWITCHES)
                .find(|f| **f == n)
            {
                (Some(*f), v)
            } else {
                // getopt: a cluster of switches, then `-b`/`-f` taking
                // the rest of the token or the next argument.
                let mut name = None;
                let mut value = None;
                for (k, c) in short.char_indices() {
                    match c {
                        'b' | 'f' => {
                            name = Some(if c == 'b' { "bundle" } else { "config" });
                            let rest = &short[k + 1..];
                            let rest = rest.strip_prefix('=').unwrap_or(rest);
                            value = (!rest.is_empty()).then(|| rest.to_string());
                            break;
                        }
                        _ => {}
                    }
                }
                (name, value)
            }
        };
        let Some(name) = name else { continue };
        if !CREATE_VALUED.contains(&name) {
            continue;
        }
        let value = match inline {
            Some(v) => Some(v),
            None => {
                i += 1;
                args.get(i - 1).cloned()
            }
        };
        match name {
            "bundle" => out.bundle = value,
            "config" => out.config = value,
            _ => {}
        }
    }
    out
}

/// A `create`/`run`/`restore` long option's full name: itself, or the one
/// it uniquely abbreviates (getopt); `None` for anything else.
fn create_option(name: &str) -> Option<&'static str> {
    let all = || CREATE_VALUED.iter().chain(CREATE_SWITCHES);
    if let Some(f) = all().find(|f| **f == name) {
        return Some(f);
    }
    let mut m = all().filter(|f| f.starts_with(name));
    match (m.next(), m.next()) {
        (Some(f), None) => Some(f),
        _ => None,
    }
}

/// The long option `name` abbreviates: itself, or the one option it is a
/// unique prefix of.
fn long_option(name: &str) -> Result<&'static str, ArgumentError> {
    let all = UPDATE_FLAGS.iter().chain(UPDATE_HELP);
    if let Some(f) = all.clone().find(|f| **f == name) {
        return Ok(f);
    }
    let mut matches = all.filter(|f| f.starts_with(name));
    match (matches.next(), matches.next()) {
        (Some(f), None) => Ok(f),
        (Some(_), Some(_)) => Err(ArgumentError::Ambiguous(name.to_string())),
        _ => Err(ArgumentError::Unknown(format!("--{name}"))),
    }
}

/// The arguments of `update` from `args[i..]`, and the container id.
/// Options may follow the id (urfave/cli and getopt both reorder); `--`
/// ends them. A token is read as every runtime may read it: `--name`,
/// `-name` (Go), unique prefixes (getopt), `-r FILE`, `-rFILE` (getopt).
fn update(args: &[String], mut i: usize, id: &mut Option<String>) -> UpdateArgs {
    let mut u = UpdateArgs {
        flags_start: i,
        ..Default::default()
    };
    let mut ids = Vec::new();
    let mut options_end = false;
    let fail = |u: &mut UpdateArgs, m: ArgumentError| {
        u.error.get_or_insert(m);
    };
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if options_end || a == "-" || !a.starts_with('-') {
            ids.push(a.clone());
            continue;
        }
        if a == "--" {
            options_end = true;
            continue;
        }
        let (name, inline) = if let Some(long) = a.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (long_option(n), Some(v.to_string())),
                None => (long_option(long), None),
            }
        } else {
            let short = &a[1..];
            let (n, v) = match short.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (short, None),
            };
            // Go's flag package takes `-name` for `--name`; getopt reads
            // `-r…` as -r with what follows as its value, and `-h`/`-?`.
            if let Some(f) = UPDATE_FLAGS.iter().chain(UPDATE_HELP).find(|f| **f == n) {
                (Ok(*f), v)
            } else if n == "h" || n == "?" {
                (Ok("help"), None)
            } else if let Some(rest) = short.strip_prefix('r') {
                let rest = rest.strip_prefix('=').unwrap_or(rest);
                (
                    Ok("resources"),
                    (!rest.is_empty()).then(|| rest.to_string()),
                )
            } else {
                (Err(ArgumentError::Unknown(a.clone())), None)
            }
        };
        let name = match name {
            Ok(n) => n,
            Err(m) => {
                fail(&mut u, m);
                continue;
            }
        };
        if UPDATE_HELP.contains(&name) {
            u.help = true;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => match args.get(i) {
                Some(v) => {
                    i += 1;
                    v.clone()
                }
                None => {
                    fail(&mut u, ArgumentError::NoValue(name));
                    continue;
                }
            },
        };
        u.flags.push((name, value));
    }
    if ids.len() > 1 {
        fail(&mut u, ArgumentError::Ids(ids.clone()));
    }
    *id = ids.into_iter().next();
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RuncArgs {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn what_containerd_sends() {
        let a = p(
            "--root /var/run/docker/runtime-runc/moby --log /run/x/log.json --log-format json create --bundle /run/x/abc --pid-file /run/x/init.pid abc",
        );
        assert_eq!(a.verb.as_deref(), Some("create"));
        assert_eq!(a.bundle.as_deref(), Some("/run/x/abc"));
        assert_eq!(a.id.as_deref(), Some("abc"));
        assert_eq!(a.log.as_deref(), Some("/run/x/log.json"));
        assert_eq!(a.log_format.as_deref(), Some("json"));
        assert!(a.creates());
    }

    #[test]
    fn every_bundle_spelling() {
        for s in [
            "create -b /b c1",
            "create --bundle=/b c1",
            "create -bundle /b c1",
            "create --bundle /b c1",
            "run -d --bundle /b c1",
            "create -b=/b --no-pivot c1",
        ] {
            let a = p(s);
            assert_eq!(a.bundle.as_deref(), Some("/b"), "{s}");
            assert_eq!(a.id.as_deref(), Some("c1"), "{s}");
        }
        let a = p("create c1");
        assert_eq!((a.bundle, a.id.as_deref()), (None, Some("c1")));
    }

    #[test]
    fn a_flag_value_is_never_the_verb_or_the_id() {
        // A root directory named "create" is not the verb.
        let a = p("--root create --log=run delete c1");
        assert_eq!(a.verb.as_deref(), Some("delete"));
        assert!(!a.creates());
        // A bundle named like the id is not the id.
        let a = p("create --bundle c2 --console-socket /s c1");
        assert_eq!(
            (a.bundle.as_deref(), a.id.as_deref()),
            (Some("c2"), Some("c1"))
        );
        let a = p("--systemd-cgroup --debug create --pid-file run c1");
        assert_eq!(
            (a.verb.as_deref(), a.id.as_deref()),
            (Some("create"), Some("c1"))
        );
    }

    #[test]
    fn update_in_every_form() {
        // containerd's shim: the resources as JSON on stdin.
        let a = p("--root /r --log /l update --resources - c1");
        assert!(a.updates() && !a.creates());
        assert_eq!(a.root.as_deref(), Some("/r"));
        assert_eq!(a.id.as_deref(), Some("c1"));
        let u = a.update.unwrap();
        assert_eq!(u.get("resources"), Some("-"));
        assert_eq!(u.flags_start, 5);
        for s in [
            "update -r=/f c1",
            "update -r /f c1",
            "update -r/f c1",
            "update --reso /f c1",
            "update --resources=/f c1",
            "update -resources /f c1",
            "update c1 -r /f",
            "update c1 --re=/f",
        ] {
            let a = p(s);
            assert_eq!(a.id.as_deref(), Some("c1"), "{s}");
            let u = a.update.unwrap();
            assert_eq!((u.get("resources"), &u.error), (Some("/f"), &None), "{s}");
        }
        // Flags anywhere, abbreviated, the last of a name winning.
        let a = p("update --cpu-share 100 c1 --memory 100g --memory-s=-1 --pids 5 --memory 1g");
        let u = a.update.unwrap();
        assert_eq!(a.id.as_deref(), Some("c1"));
        assert_eq!(u.get("memory"), Some("1g"));
        assert_eq!(u.get("memory-swap"), Some("-1"));
        assert_eq!(u.get("pids-limit"), Some("5"));
        assert_eq!(u.get("cpu-share"), Some("100"));
        assert_eq!(u.error, None);
        let a = p("update -- -c1");
        assert_eq!(a.id.as_deref(), Some("-c1"));
    }

    #[test]
    fn what_the_runtime_refuses_is_an_error() {
        for s in [
            "update --mem 1g c1",
            "update --cpu 1 c1",
            "update --bogus 1 c1",
            "update c1 --memory",
            "update c1 c2",
            "update -x c1",
        ] {
            assert!(p(s).update.unwrap().error.is_some(), "{s}");
        }
        assert!(p("update -h").update.unwrap().help);
        assert!(p("update --he c1").update.unwrap().help);
    }

    #[test]
    fn global_options_are_abbreviated_as_crun_allows() {
        let a = p("--cg systemd update --memory 1g c1");
        assert_eq!(a.verb.as_deref(), Some("update"));
        let a = p("--roo=/r --log-f json update c1");
        assert_eq!(a.verb.as_deref(), Some("update"));
        assert_eq!(a.log_format.as_deref(), Some("json"));
    }

    #[test]
    fn restore_and_options_after_the_id_are_read_as_runtimes_read_them() {
        let a = p(
            "restore --image-path /ck --work-path /w --detach --bundle /b --pid-file /p --no-subreaper c1",
        );
        assert!(a.creates());
        assert_eq!(
            (a.bundle.as_deref(), a.id.as_deref()),
            (Some("/b"), Some("c1"))
        );
        // A bundle after the id, abbreviated, attached, in a cluster.
        for s in [
            "create c1 --bundle /b",
            "create --bun /b c1",
            "create -b/b c1",
            "run -db /b c1",
            "create -b /x c1 -b /b",
        ] {
            let a = p(s);
            assert_eq!(a.bundle.as_deref(), Some("/b"), "{s}");
            assert_eq!(a.id.as_deref(), Some("c1"), "{s}");
        }
        let a = p("create -f other.json --bundle /b c1");
        assert_eq!(a.config.as_deref(), Some("other.json"));
    }

    #[test]
    fn other_verbs_and_no_verb() {
        assert_eq!(p("features").verb.as_deref(), Some("features"));
        assert_eq!(p("--version").verb, None);
        assert_eq!(p("").verb, None);
        assert!(!p("exec c1 ls").creates());
    }
}
