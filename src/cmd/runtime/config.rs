//! `/etc/cglimit/config.yaml`: settings for modes that cannot take flags.
//!
//! dockerd starts a runtime with a fixed argv (`runtimeArgs`), and a
//! `cglimit-runtime` symlink registered without arguments has no other way
//! to learn its policy directory, real runtime, failure mode or log file.
//! Flags given on the command line win over the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::enforce::OnError;

pub const DEFAULT_PATH: &str = "/etc/cglimit/config.yaml";
/// The link podman runs as its runtime (`setup podman`), and the
/// configuration it reads: podman hands its runtime no arguments and no
/// environment of its own.
pub const PODMAN_LINK: &str = "cglimit-podman-runtime";
pub const PODMAN_PATH: &str = "/etc/cglimit/podman.yaml";
/// Names another file where no flag can (the `cglimit-runtime` symlink).
pub const ENV: &str = "CGLIMIT_CONFIG";

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileConfig {
    /// Directory of policy files.
    pub policy_dir: Option<PathBuf>,
    /// The real runtime, a path or a name looked up in PATH (default `runc`).
    pub runtime: Option<String>,
    /// `deny` (default) or `allow`.
    pub on_error: Option<OnError>,
    pub log_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    /// How long to wait for the engine's answer, e.g. `250ms`.
    pub engine_timeout: Option<String>,
    /// The engine's socket, `unix:///var/run/docker.sock` by default.
    pub docker_host: Option<String>,
    /// Accept policy files others than root could change (not advised).
    pub insecure_policy_perms: Option<bool>,
    /// Let labels that come from an image select a policy that trusts
    /// them: only where every image is vetted before it runs.
    pub trust_image_labels: Option<bool>,
    /// The engine runs cglimit's hook at every create (podman): the
    /// wrapper passes `create` and `run` through and decides `update` and
    /// `restore`, which no hook sees.
    pub creates_by_hook: Option<bool>,
}

/// Why the wrapper's configuration could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("untrusted config: {0}")]
    Untrusted(#[source] crate::policy::perms::Unsafe),
    /// Where the YAML is wrong (`:LINE:COLUMN`), and what the parser said.
    #[error("{}{at}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        at: String,
        message: String,
    },
    #[error("{0} needs a value")]
    NoValue(String),
    #[error("--on-error {0:?}: use deny or allow")]
    OnError(String),
    #[error(transparent)]
    Duration(#[from] crate::time::TimeError),
}

/// Reads the file; a missing default file is an empty configuration, a
/// missing explicit one is an error. The file names the binary the wrapper
/// runs as root, so one that others could change is refused unless
/// `insecure` (`--insecure-policy-perms`) says otherwise.
pub fn load(path: Option<&Path>, insecure: bool) -> Result<FileConfig, ConfigError> {
    let from_env = std::env::var_os(ENV).map(PathBuf::from);
    let (path, explicit) = match (path, &from_env) {
        (Some(p), _) => (p, true),
        (None, Some(p)) => (p.as_path(), true),
        (None, None) => (Path::new(DEFAULT_PATH), false),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileConfig::default());
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !insecure {
        crate::policy::perms::check_file(path).map_err(ConfigError::Untrusted)?;
    }
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    if let Some(c) = flat(&text) {
        return Ok(c);
    }
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options(&text, options).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        at: e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default(),
        message: e.without_snippet().to_string(),
    })
}

/// The form nearly every config file has, read without the YAML parser:
/// `key: value` lines, plain values, comments after ` #` or on lines of
/// their own, printable ASCII. Every call of the wrapper reads the file,
/// and the parser's start alone (its thread-local anchor store, registered
/// through the C allocator, its stack and heap pages) costs a call ~45 µs
/// on a virtual machine (`bench/wrapper-phases.sh`). `None` for anything
/// else, however valid: the parser reads it, and stays the reference
/// (the tests check that both read alike every file this accepts).
fn flat(text: &str) -> Option<FileConfig> {
    let mut c = FileConfig::default();
    let mut seen = 0u16;
    for line in text.split('\n') {
        if !line.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return None;
        }
        let content = match line.find(" #") {
            _ if line.starts_with('#') => continue,
            Some(i) => &line[..i],
            None => line,
        };
        if content.trim_start_matches(' ').is_empty() {
            continue;
        }
        let (key, value) = content.split_once(": ")?;
        let value = value.trim_matches(' ');
        let flag = |v: &str| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        let string = |v: &str| plain_string(v).then(|| v.to_string());
        let (bit, slot) = match key {
            "policyDir" => (0, c.policy_dir = Some(string(value)?.into())),
            "runtime" => (1, c.runtime = Some(string(value)?)),
            "onError" => (
                2,
                c.on_error = Some(match value {
                    "deny" => OnError::Deny,
                    "allow" => OnError::Allow,
                    _ => return None,
                }),
            ),
            "logFile" => (3, c.log_file = Some(string(value)?.into())),
            "stateDir" => (4, c.state_dir = Some(string(value)?.into())),
            "cacheDir" => (5, c.cache_dir = Some(string(value)?.into())),
            "engineTimeout" => (6, c.engine_timeout = Some(string(value)?)),
            "dockerHost" => (7, c.docker_host = Some(string(value)?)),
            "insecurePolicyPerms" => (8, c.insecure_policy_perms = Some(flag(value)?)),
            "trustImageLabels" => (9, c.trust_image_labels = Some(flag(value)?)),
            "createsByHook" => (10, c.creates_by_hook = Some(flag(value)?)),
            _ => return None,
        };
        let () = slot;
        if seen & (1 << bit) != 0 {
            return None;
        }
        seen |= 1 << bit;
    }
    Some(c)
}

/// A plain scalar YAML reads as this very string, whatever the type asked:
/// no indicator first, nothing that could end it or start a comment, not
/// null, a boolean or anything that could be read as a number.
fn plain_string(v: &str) -> bool {
    let Some(first) = v.bytes().next() else {
        return false;
    };
    if b"-?:,[]{}#&*!|>'\"%@`~.+".contains(&first) {
        return false;
    }
    if v.ends_with(':') || v.contains(": ") || v.contains('#') {
        return false;
    }
    if v.bytes().any(|b| b",[]{}\\\"'".contains(&b)) {
        return false;
    }
    // `250ms` is a string; `250`, `1e3`, `0x1f` and `1_000` are not.
    if first.is_ascii_digit()
        && !v
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && !b"eExXoObBaAcCdDfF".contains(&b))
    {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "null"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | "inf"
            | "nan"
            | "infinity"
    )
}

/// The runtime a config file names, read leniently: for verbs that touch
/// existing containers (`delete`, `kill`, `state`…) when the file does not
/// load. Only a file no one but root could have written is believed; else
/// `None`, and the caller uses the default.
pub fn runtime_despite_errors(path: Option<&Path>) -> Option<String> {
    #[derive(Deserialize)]
    struct JustRuntime {
        runtime: Option<String>,
    }
    let from_env = std::env::var_os(ENV).map(PathBuf::from);
    let path = path
        .map(Path::to_path_buf)
        .or(from_env)
        .unwrap_or_else(|| DEFAULT_PATH.into());
    crate::policy::perms::check_file(&path).ok()?;
    let text = std::fs::read_to_string(&path).ok()?;
    serde_saphyr::from_str::<JustRuntime>(&text).ok()?.runtime
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_sample_loads() {
        let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/config.yaml"));
        let c = load(Some(p), true).unwrap();
        assert_eq!(c.insecure_policy_perms, Some(false));
        assert_eq!(c.runtime.as_deref(), Some("runc"));
    }

    fn by_parser(text: &str) -> Result<FileConfig, String> {
        let options = serde_saphyr::options! { strict_booleans: true };
        serde_saphyr::from_str_with_options(text, options).map_err(|e| e.to_string())
    }

    /// Every file the flat reader takes, the YAML parser reads the same:
    /// files made of lines drawn from keys, separators, values and comments
    /// chosen to sit on either side of each of its rules.
    #[test]
    fn the_flat_reader_reads_as_the_parser_does() {
        let sample = include_str!("../../../hooks/config.yaml");
        assert_eq!(
            flat(sample),
            Some(by_parser(sample).unwrap()),
            "the shipped file"
        );
        let keys = [
            "policyDir",
            "runtime",
            "onError",
            "logFile",
            "stateDir",
            "cacheDir",
            "engineTimeout",
            "dockerHost",
            "insecurePolicyPerms",
            "trustImageLabels",
            "createsByHook",
            "runtme",
            "PolicyDir",
            " runtime",
            "-runtime",
            "runtime ",
        ];
        let seps = [": ", ":  ", ":", " : ", ":\t", ": \t"];
        let values = [
            "/etc/cglimit/policies",
            "runc",
            "deny",
            "allow",
            "Deny",
            "true",
            "false",
            "True",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "null",
            "Null",
            "~",
            "",
            "250ms",
            "250",
            "1e3",
            "0x1f",
            "0o17",
            "1_000",
            "1.5",
            "1.5s",
            "12h",
            "1d",
            ".inf",
            "-1",
            "+1",
            "inf",
            "nan",
            "unix:///var/run/docker.sock",
            "a: b",
            "a:b",
            "a #b",
            "a#b",
            "'quoted'",
            "\"quoted\"",
            "[a]",
            "{a: b}",
            "a,b",
            "&anchor a",
            "*alias",
            "!tag a",
            "|",
            ">",
            "%x",
            "@x",
            "`x",
            "a b",
            " a",
            "a ",
            "\\x",
            "é",
            "a\tb",
            "-",
            "?",
            "---",
        ];
        let suffixes = [
            "",
            " # note",
            "  #note",
            "#x",
            " ",
            "\r",
            " # deny: refuse; allow",
        ];
        let extras = [
            "",
            "# comment",
            "   # indented comment",
            "   ",
            "---",
            "...",
            "  policyDir: /x",
            "\t",
            "%YAML 1.2",
            "runtime:",
            "runtime:\n  runc",
        ];
        let mut next = crate::draws();
        let (mut taken, mut cases) = (0, 0);
        for _ in 0..40_000 {
            let mut text = String::new();
            for _ in 0..1 + next(4) {
                if next(5) == 0 {
                    text.push_str(extras[next(extras.len())]);
                } else {
                    text.push_str(keys[next(keys.len())]);
                    text.push_str(if next(3) == 0 {
                        seps[next(seps.len())]
                    } else {
                        ": "
                    });
                    text.push_str(values[next(values.len())]);
                    text.push_str(if next(2) == 0 {
                        suffixes[next(suffixes.len())]
                    } else {
                        ""
                    });
                }
                text.push('\n');
            }
            cases += 1;
            if let Some(c) = flat(&text) {
                taken += 1;
                assert_eq!(Ok(c), by_parser(&text), "{text:?}");
            }
        }
        // Both sides of the rules are reached.
        assert!(taken > 1_000 && taken < cases / 2, "{taken} of {cases}");
    }

    #[test]
    fn reads_every_key_and_rejects_unknown_ones() {
        let dir = std::env::temp_dir().join(format!("cglimit-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.yaml");
        std::fs::write(
            &p,
            "policyDir: /p\nruntime: /usr/bin/runc\nonError: allow\nlogFile: /l\nstateDir: /s\ncacheDir: /c\nengineTimeout: 100ms\ndockerHost: unix:///d.sock\n",
        )
        .unwrap();
        let c = load(Some(&p), false).unwrap();
        assert_eq!(c.policy_dir, Some("/p".into()));
        assert_eq!(c.on_error, Some(OnError::Allow));
        assert_eq!(c.engine_timeout.as_deref(), Some("100ms"));
        std::fs::write(&p, "policyDir: /p\nruntme: runc\n").unwrap();
        let e = load(Some(&p), false).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("runtme"), "{e}");
        assert!(load(Some(&dir.join("missing.yaml")), false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
