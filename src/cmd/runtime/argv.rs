//! Reading a runc command line without changing it: the global flags before
//! the verb, the verb, for `create` / `run` the bundle and container id, and
//! for `update` its memory settings and where they stand.
//!
//! runc (urfave/cli) accepts `-flag` and `--flag`, and `--flag value` or
//! `--flag=value`. A flag's value must never be taken for the verb or the
//! id, so the flags that take a value are listed here; any other flag is
//! taken as a switch.

/// runc's global flags that take a value (crun's too: `--cgroup-manager`).
const GLOBAL_VALUED: &[&str] = &[
    "log",
    "log-format",
    "root",
    "criu",
    "rootless",
    "cgroup-manager",
];

/// `create` / `run` flags that take a value.
const CREATE_VALUED: &[&str] = &[
    "bundle",
    "b",
    "console-socket",
    "pid-file",
    "preserve-fds",
    "pidfd-socket",
    "config",
    "f",
];

/// `update` flags that set memory; every `update` flag takes a value
/// (runc's and crun's alike).
const UPDATE_MEMORY: &[&str] = &[
    "memory",
    "memory-swap",
    "memory-reservation",
    "resources",
    "r",
];

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RuncArgs {
    /// `--root`: the runtime's state directory.
    pub root: Option<String>,
    /// `--log`: where runc (and so the wrapper) writes its log.
    pub log: Option<String>,
    /// `--log-format`: `text` (default) or `json`.
    pub log_format: Option<String>,
    pub verb: Option<String>,
    /// `--bundle` / `-b` of `create` / `run`.
    pub bundle: Option<String>,
    /// The container id: the first argument after the verb's flags.
    pub id: Option<String>,
    /// What `update` asks of memory.
    pub update: Option<UpdateArgs>,
}

/// The memory part of an `update` command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpdateArgs {
    /// `--resources` / `-r`: a JSON file, or `-` for stdin. With it, the
    /// runtime ignores every other flag.
    pub resources: Option<String>,
    /// `--memory`, `--memory-swap`, `--memory-reservation` as given.
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub memory_reservation: Option<String>,
    /// Indices (in the runtime's argv) of the tokens of those flags, names
    /// and values: what a rewrite leaves out.
    pub tokens: Vec<usize>,
    /// Where the verb's flags start, right after the verb: where a rewrite
    /// puts its own, so that no malformed flag after them can take them
    /// for its value and no `--` can make them arguments.
    pub flags_start: usize,
}

impl RuncArgs {
    /// Whether this invocation creates a container (and so gets limits).
    pub fn creates(&self) -> bool {
        matches!(self.verb.as_deref(), Some("create" | "run"))
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
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            out.id = args.get(i + 1).cloned();
            break;
        }
        let Some((name, inline)) = flag(a) else {
            out.id = Some(a.clone());
            break;
        };
        if CREATE_VALUED.contains(&name) {
            let v = match inline {
                Some(v) => Some(v.to_string()),
                None => {
                    i += 1;
                    args.get(i).cloned()
                }
            };
            if name == "bundle" || name == "b" {
                out.bundle = v;
            }
        }
        i += 1;
    }
    out
}

/// The flags of `update` from `args[i..]`, and the container id after them.
fn update(args: &[String], mut i: usize, id: &mut Option<String>) -> UpdateArgs {
    let mut u = UpdateArgs {
        flags_start: i,
        ..Default::default()
    };
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            *id = args.get(i + 1).cloned();
            break;
        }
        let Some((name, inline)) = flag(a) else {
            *id = Some(a.clone());
            break;
        };
        let start = i;
        let value = match (name, inline) {
            ("h" | "help", _) => None,
            (_, Some(v)) => Some(v.to_string()),
            (_, None) => {
                i += 1;
                args.get(i).cloned()
            }
        };
        if UPDATE_MEMORY.contains(&name) {
            u.tokens.extend(start..=i.min(args.len() - 1));
            match name {
                "memory" => u.memory = value,
                "memory-swap" => u.memory_swap = value,
                "memory-reservation" => u.memory_reservation = value,
                _ => u.resources = value,
            }
        }
        i += 1;
    }
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
        assert_eq!(u.resources.as_deref(), Some("-"));
        assert_eq!((u.tokens, u.flags_start), (vec![5, 6], 5));
        let u = p("update -r=/tmp/res.json c1").update.unwrap();
        assert_eq!(u.resources.as_deref(), Some("/tmp/res.json"));
        assert_eq!(u.tokens, vec![1]);
        // Flags, mixed with others that are kept.
        let a = p("update --cpu-share 100 --memory 100g --memory-swap=-1 --pids-limit 5 c1");
        let u = a.update.unwrap();
        assert_eq!(u.memory.as_deref(), Some("100g"));
        assert_eq!(u.memory_swap.as_deref(), Some("-1"));
        assert_eq!(u.resources, None);
        assert_eq!((u.tokens, u.flags_start), (vec![3, 4, 5], 1));
        let a = p("update -r /f -- c1");
        assert_eq!(a.id.as_deref(), Some("c1"));
        assert_eq!(a.id.as_deref(), Some("c1"));
        // No memory at all: nothing to decide.
        let u = p("update --cpu-share 100 c1").update.unwrap();
        assert!(u.tokens.is_empty() && u.memory.is_none());
    }

    #[test]
    fn other_verbs_and_no_verb() {
        assert_eq!(p("features").verb.as_deref(), Some("features"));
        assert_eq!(p("--version").verb, None);
        assert_eq!(p("").verb, None);
        assert!(!p("exec c1 ls").creates());
    }
}
