//! What is known about a container when a decision is made.
//!
//! Each entry point gathers these differently (OCI state and bundle for the
//! hook, `config.json` and the engine for the runtime wrapper, the engine and
//! cgroup tree for `apply`); nothing after gathering depends on which.
//!
//! Where they are learned: [`oci`] (the runtime's state and the bundle),
//! [`discover`] (running containers, for `apply`, `watch` and `top`).

pub mod discover;
pub mod oci;
pub mod pod;
pub mod update;
pub mod workload;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::size::Limit;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Keys of `labels` whose value is the image's own (Docker merges the
    /// image's labels into the container's): set by whoever published the
    /// image, so never trusted unless the operator says images are
    /// (`trustImageLabels`).
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub image_labels: std::collections::BTreeSet<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The memory cgroup path as the container's init process sees it
    /// from the host (`/proc/<pid>/cgroup`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Kubernetes: the pod's namespace, the pod's name and whether this is
    /// the pod's sandbox or one of its containers, as the CRI
    /// implementation wrote them ([`pod`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_type: Option<pod::ContainerType>,
    pub requested: Requested,
}

/// The memory settings the container was created with, in OCI terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Requested {
    /// `linux.resources.memory.limit` (docker `--memory`); `None` when absent or 0.
    pub memory: Option<Limit>,
    /// `linux.resources.memory.swap`: memory + swap (docker `--memory-swap`).
    pub memory_swap: Option<Limit>,
}

impl Requested {
    /// Reads the OCI fields, where 0 means "not set" as it does for runc.
    pub fn from_oci(limit: Option<i64>, swap: Option<i64>) -> Requested {
        let conv = |v: Option<i64>| v.filter(|v| *v != 0).map(Limit::from_oci);
        Requested {
            memory: conv(limit),
            memory_swap: conv(swap),
        }
    }
}

/// Why the facts an entry point needs could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The runtime's state on stdin, or the bundle's `config.json`.
    #[error(transparent)]
    Oci(#[from] oci::OciError),
    /// The state names no process: the hook ran at the wrong stage.
    #[error("the container state has no \"pid\": run cglimit as a createRuntime or prestart hook")]
    NoPid,
    /// The wrapper was given no `--bundle` and has no working directory.
    #[error("no bundle: {0}")]
    NoBundle(#[source] std::io::Error),
    /// An `update`'s request, or the container it names, could not be read.
    #[error("update: {0}")]
    Update(#[from] update::UpdateError),
}
