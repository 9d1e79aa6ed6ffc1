//! Why setup (or its undo) stopped: what it could not read or write, a
//! configuration it will not edit, a daemon that did not take the change.
//! Every step before the failing one stands; `setup --undo` reverts them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No record of an earlier setup to undo.
    #[error("{}: {source} (nothing to undo)", path.display())]
    NoRecord {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A configuration file setup does not edit as it is.
    #[error("{}: {problem}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        problem: ConfigProblem,
    },
    /// Something is already there that is not setup's: `--force` replaces it.
    #[error("{0}")]
    Taken(String),
    #[error("cannot find this binary: {0}")]
    Exe(#[source] std::io::Error),
    #[error(transparent)]
    Engine(#[from] crate::sys::engine::EngineError),
    #[error("{0}")]
    NoDockerd(String),
    #[error("cannot signal dockerd (pid {pid}): {source}")]
    Signal {
        pid: i32,
        #[source]
        source: nix::Error,
    },
    #[error(
        "dockerd (pid {pid}) does not list the runtime after a reload (registered: {registered}, default: {default}); see its log"
    )]
    NotReloaded {
        pid: i32,
        registered: bool,
        default: bool,
    },
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {hint}")]
    Failed {
        command: &'static str,
        status: std::process::ExitStatus,
        hint: &'static str,
    },
}

/// What is wrong with a configuration file (`daemon.json`, containerd's
/// `config.toml`) for setup to edit it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("not TOML: {0}")]
    Toml(#[source] toml_edit::TomlError),
    #[error("not UTF-8 text")]
    Utf8,
    /// The layout is not one setup edits, or a key already holds another
    /// value (`--force` replaces it).
    #[error("{0}")]
    Layout(String),
}

impl SetupError {
    pub fn file(path: &std::path::Path) -> impl Fn(std::io::Error) -> SetupError + '_ {
        move |source| SetupError::File {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn config(path: &std::path::Path) -> impl Fn(ConfigProblem) -> SetupError + '_ {
        move |problem| SetupError::Config {
            path: path.to_path_buf(),
            problem,
        }
    }
}
