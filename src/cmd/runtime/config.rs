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
