//! The OCI inputs: the container state a runtime passes to hooks on stdin,
//! and the few fields of the bundle's `config.json` a decision needs.
//!
//! `config.json` is read through a narrow struct rather than
//! `oci_spec::runtime::Spec`, which rejects unknown capability names and
//! drops unknown fields: a policy tool must not refuse a container because
//! its runtime is newer than this crate.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::State;
use serde::Deserialize;

use crate::facts::{Facts, Requested};

/// Refuses absurd inputs before parsing them: a state is a few hundred bytes.
const MAX_STATE: u64 = 1 << 20;
const MAX_CONFIG: u64 = 16 << 20;

/// Why the runtime's state or the bundle's configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("malformed container state on stdin: {0}")]
    State(&'static str),
    #[error("malformed container state on stdin: {0}")]
    StateRead(#[source] std::io::Error),
    #[error("malformed container state on stdin: {0}")]
    StateJson(#[source] serde_json::Error),
    #[error("{}: {problem}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        problem: ConfigProblem,
    },
}

/// What is wrong with a `config.json` (or another JSON document a runtime
/// is given as a file).
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    #[error("larger than 16 MiB")]
    TooLarge,
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("invalid config: {0}")]
    Invalid(#[source] serde_json::Error),
}

/// Reads the state JSON a runtime writes to a hook's stdin.
pub fn read_state(input: impl Read) -> Result<State, OciError> {
    let mut buf = Vec::new();
    input
        .take(MAX_STATE + 1)
        .read_to_end(&mut buf)
        .map_err(OciError::StateRead)?;
    if buf.len() as u64 > MAX_STATE {
        return Err(OciError::State("larger than 1 MiB"));
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err(OciError::State(
            "empty input (a runtime passes the state JSON on stdin)",
        ));
    }
    let state: State = serde_json::from_slice(&buf).map_err(OciError::StateJson)?;
    if state.id().is_empty() {
        return Err(OciError::State("no \"id\""));
    }
    if state.bundle().as_os_str().is_empty() {
        return Err(OciError::State("no \"bundle\""));
    }
    Ok(state)
}

/// The parts of `config.json` cglimit reads.
#[derive(Deserialize, Default, Debug)]
pub struct Config {
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub linux: Option<Linux>,
}

#[derive(Deserialize, Default, Debug)]
pub struct Linux {
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default, rename = "cgroupsPath")]
    pub cgroups_path: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
pub struct Resources {
    #[serde(default)]
    pub memory: Option<Memory>,
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
pub struct Memory {
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub swap: Option<i64>,
}

impl Config {
    pub fn memory(&self) -> Memory {
        self.linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
            .and_then(|r| r.memory)
            .unwrap_or_default()
    }
}

/// Reads `BUNDLE/config.json`.
pub fn read_config(bundle: &Path) -> Result<Config, OciError> {
    let path = bundle.join("config.json");
    let err = |problem| OciError::Config {
        path: path.clone(),
        problem,
    };
    let buf = read_config_bytes(&path).map_err(err)?;
    serde_json::from_slice(&buf).map_err(|e| err(ConfigProblem::Json(e)))
}

/// The bytes of a `config.json`, refusing one larger than 16 MiB (it is
/// the container creator's input, and real ones are a few KiB).
pub fn read_config_bytes(path: &Path) -> Result<Vec<u8>, ConfigProblem> {
    let f = crate::sys::open_read(path).map_err(ConfigProblem::Open)?;
    // Sized from the file's length: one read instead of a dozen doubling ones.
    let len = f.metadata().map(|m| m.len()).unwrap_or(0).min(MAX_CONFIG);
    let mut buf = Vec::with_capacity(len as usize + 1);
    f.take(MAX_CONFIG + 1)
        .read_to_end(&mut buf)
        .map_err(ConfigProblem::Read)?;
    if buf.len() as u64 > MAX_CONFIG {
        return Err(ConfigProblem::TooLarge);
    }
    Ok(buf)
}

/// Annotations runtimes and orchestrators use for a container's name and
/// image, most specific first. Docker sets none (the wrapper asks the engine).
/// A Kubernetes container's name is its name in the pod spec (CRI-O's own
/// `ContainerName` is a generated `k8s_…` string, the last resort).
const NAME_KEYS: &[&str] = &[
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
    "io.kubernetes.cri-o.ContainerName",
    "org.opencontainers.container.name",
    "io.container.name",
];
const IMAGE_KEYS: &[&str] = &[
    "io.kubernetes.cri-o.ImageName",
    "io.kubernetes.cri.image-name",
    "org.opencontainers.image.ref.name",
    "io.container.image",
];

/// The name and image that annotations give a container, as runtimes and
/// orchestrators set them: read alike by the hook, the wrapper and
/// `apply`, so all three choose the same policy. (What selects a policy
/// through them is held to the baseline: see `policy::select`.)
pub fn named(annotations: &BTreeMap<String, String>) -> (Option<String>, Option<String>) {
    let first = |keys: &[&str]| keys.iter().find_map(|k| annotations.get(*k).cloned());
    (first(NAME_KEYS), first(IMAGE_KEYS))
}

/// Facts about a container from its state and config. With `cri` (the
/// entry point the operator marked as a CRI implementation's), the pod
/// facts are read from the CRI's annotations; anywhere else those keys are
/// plain annotations, which whoever creates the container may write.
pub fn facts(state: &State, config: &Config, cri: bool) -> Facts {
    let mut annotations = config.annotations.clone();
    if let Some(a) = state.annotations() {
        annotations.extend(a.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let (name, image) = named(&annotations);
    let m = config.memory();
    let mut f = Facts {
        id: state.id().clone(),
        name,
        image,
        requested: Requested::from_oci(m.limit, m.swap),
        ..Default::default()
    };
    if cri {
        crate::facts::pod::fill(&annotations, &mut f);
    }
    f.annotations = annotations;
    f
}

/// Facts about a container from its bundle alone, as the runtime wrapper
/// sees it before the runtime runs (there is no state and no process yet);
/// `cri` as for [`facts`].
pub fn bundle_facts(id: &str, config: &Config, cri: bool) -> Facts {
    let m = config.memory();
    let (name, image) = named(&config.annotations);
    let mut f = Facts {
        id: id.to_string(),
        name,
        image,
        annotations: config.annotations.clone(),
        requested: Requested::from_oci(m.limit, m.swap),
        cgroup: config.linux.as_ref().and_then(|l| l.cgroups_path.clone()),
        ..Default::default()
    };
    if cri {
        crate::facts::pod::fill(&config.annotations, &mut f);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_config_keeps_its_cause() {
        use std::error::Error;
        let dir = std::env::temp_dir().join(format!("cglimit-oci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{\"ociVersion\": 1,").unwrap();
        let e = read_config(&dir).unwrap_err();
        let message = e.to_string();
        assert!(
            message.starts_with(&format!(
                "{}: invalid JSON: ",
                dir.join("config.json").display()
            )),
            "{message}"
        );
        // The chain: the file's problem, then the parser's own error.
        let problem = e.source().expect("the problem");
        assert!(matches!(
            problem.downcast_ref::<ConfigProblem>(),
            Some(ConfigProblem::Json(_))
        ));
        let parser = problem.source().expect("the parser's error");
        assert!(parser.downcast_ref::<serde_json::Error>().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn state_errors_are_clear() {
        let e = read_state(&b""[..]).unwrap_err().to_string();
        assert!(e.contains("empty input"), "{e}");
        let e = read_state(&b"{not json"[..]).unwrap_err().to_string();
        assert!(e.starts_with("malformed container state on stdin"), "{e}");
        let e =
            read_state(&br#"{"ociVersion":"1.0.2","id":"","status":"creating","bundle":"/b"}"#[..])
                .unwrap_err()
                .to_string();
        assert!(e.contains("no \"id\""), "{e}");
        let big = vec![b' '; (MAX_STATE + 10) as usize];
        assert!(
            read_state(&big[..])
                .unwrap_err()
                .to_string()
                .contains("1 MiB")
        );
    }

    #[test]
    fn facts_from_state_and_config() {
        let s = read_state(
            &br#"{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b","annotations":{"x":"1"}}"#[..],
        )
        .unwrap();
        let c: Config = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","process":{"capabilities":{"bounding":["CAP_FUTURE_THING"]}},
               "annotations":{"io.kubernetes.container.name":"web","io.kubernetes.cri.image-name":"nginx:1"},
               "linux":{"resources":{"memory":{"limit":1073741824,"swap":2147483648}},"unknownField":true}}"#,
        )
        .unwrap();
        let f = facts(&s, &c, true);
        assert_eq!(f.id, "c1");
        assert_eq!(f.name.as_deref(), Some("web"));
        assert_eq!(f.image.as_deref(), Some("nginx:1"));
        assert_eq!(f.annotations["x"], "1");
        assert_eq!(
            f.requested,
            Requested::from_oci(Some(1 << 30), Some(2 << 30))
        );
    }
}
