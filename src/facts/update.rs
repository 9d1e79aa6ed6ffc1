//! Why what an `update` asks for, or the container it names, could not be
//! read: the runtime wrapper's update facts (`cmd/runtime/update.rs`,
//! `resources.rs`, `argv.rs`) fail with these.

use super::oci::ConfigProblem;
use crate::size::SizeError;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Arguments(#[from] ArgumentError),
    #[error("no container id")]
    NoId,
    #[error("cannot read the resources on stdin: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("{file}: {problem}")]
    File {
        file: String,
        #[source]
        problem: ConfigProblem,
    },
    #[error(transparent)]
    Resources(#[from] ResourcesError),
    #[error("cannot run {runtime} state: {source}")]
    RunState {
        runtime: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{runtime} state {id}: {stderr}")]
    StateFailed {
        runtime: String,
        id: String,
        stderr: String,
    },
    #[error("{runtime} state {id}: {source}")]
    StateJson {
        runtime: String,
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{runtime} state {id} names no bundle")]
    NoBundle { runtime: String, id: String },
}

/// An `update` command line the runtime would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    #[error("option --{0} is ambiguous")]
    Ambiguous(String),
    #[error("unknown option {0}")]
    Unknown(String),
    #[error("option --{0} needs a value")]
    NoValue(&'static str),
    #[error("one container id expected, got {}: {:?}", .0.len(), .0)]
    Ids(Vec<String>),
}

/// An update's resources that the runtime would not accept.
#[derive(Debug, thiserror::Error)]
pub enum ResourcesError {
    #[error("the resources are not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the resources are empty")]
    Empty,
    #[error("the resources are not a JSON object")]
    NotObject,
    /// Where Go's decoder fails, in its words (`json: cannot unmarshal …`).
    #[error("{0}")]
    Decode(String),
    #[error("invalid value for {flag}: {source}")]
    Number {
        flag: &'static str,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("--{flag} {value:?}: {source}")]
    Size {
        flag: &'static str,
        value: String,
        #[source]
        source: SizeError,
    },
}
