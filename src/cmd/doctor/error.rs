//! Why doctor finds an engine not wired, or could not probe it.

use std::path::{Path, PathBuf};

use super::Seen;

/// Why an engine is not wired, or the probe could not tell.
#[derive(Debug, thiserror::Error)]
pub(super) enum DoctorError {
    /// What is missing, and the command that adds it.
    #[error("{0}")]
    Unwired(String),
    #[error(transparent)]
    Engine(#[from] crate::sys::engine::EngineError),
    #[error("cannot read {}: {source}: `cglimit setup containerd`", path.display())]
    NoConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        problem: crate::cmd::setup::ConfigProblem,
    },
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// What a command that failed wrote on stderr.
    #[error("{0}")]
    Said(String),
    #[error("the probe said {text:?}: {source}")]
    Probe {
        text: String,
        #[source]
        source: serde_json::Error,
    },
}

impl DoctorError {
    pub(super) fn file(path: &Path) -> impl Fn(std::io::Error) -> DoctorError + '_ {
        move |source| DoctorError::File {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(super) fn spawn(program: &'static str) -> impl Fn(std::io::Error) -> DoctorError {
        move |source| DoctorError::Spawn { program, source }
    }

    pub(super) fn said(stderr: &[u8]) -> DoctorError {
        DoctorError::Said(String::from_utf8_lossy(stderr).trim().to_string())
    }

    /// The probe's answer on stdout.
    pub(super) fn probe(stdout: &[u8]) -> Result<Seen, DoctorError> {
        let text = String::from_utf8_lossy(stdout);
        serde_json::from_str(text.trim()).map_err(|source| DoctorError::Probe {
            text: text.into_owned(),
            source,
        })
    }
}
