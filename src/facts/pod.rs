//! Kubernetes pod facts — the pod's namespace, the pod's name, sandbox or
//! container — read from the annotations the CRI implementation writes
//! into every container's `config.json`, for containerd and CRI-O alike.
//!
//! | fact | containerd (CRI plugin) | CRI-O |
//! |---|---|---|
//! | sandbox or container | `io.kubernetes.cri.container-type` | `io.kubernetes.cri-o.ContainerType` |
//! | namespace | `io.kubernetes.cri.sandbox-namespace` | `io.kubernetes.cri-o.Namespace` |
//! | pod | `io.kubernetes.cri.sandbox-name` | `io.kubernetes.pod.name`, a sandbox's `io.kubernetes.cri-o.KubeName` |
//! | container name (`names`) | `io.kubernetes.cri.container-name` | `io.kubernetes.container.name` |
//!
//! Who can set them decides what they are worth (`policy::select`): the
//! namespace and the container type come from the runtime, which writes
//! its own keys after any annotation passed through from the pod; a pod's
//! author can only get a pod into a namespace the API server lets them use.
//! The pod's and the container's names are the author's choice.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::facts::Facts;

/// What the CRI created: the pod's sandbox (the pause container that holds
/// its namespaces) or a container of the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerType {
    Sandbox,
    Container,
}

impl ContainerType {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerType::Sandbox => "sandbox",
            ContainerType::Container => "container",
        }
    }

    pub fn parse(s: &str) -> Option<ContainerType> {
        match s {
            "sandbox" => Some(ContainerType::Sandbox),
            "container" => Some(ContainerType::Container),
            _ => None,
        }
    }
}

const TYPE_KEYS: &[&str] = &[
    "io.kubernetes.cri.container-type",
    "io.kubernetes.cri-o.ContainerType",
];
const NAMESPACE_KEYS: &[&str] = &[
    "io.kubernetes.cri.sandbox-namespace",
    "io.kubernetes.cri-o.Namespace",
];
const POD_KEYS: &[&str] = &["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"];
const CRIO_SANDBOX_POD: &str = "io.kubernetes.cri-o.KubeName";

/// Sets the pod facts of `f` from `annotations`; a container no CRI
/// created (no container type) has none.
pub fn fill(annotations: &BTreeMap<String, String>, f: &mut Facts) {
    let first = |keys: &[&str]| keys.iter().find_map(|k| annotations.get(*k));
    let Some(kind) = first(TYPE_KEYS).and_then(|t| ContainerType::parse(t)) else {
        return;
    };
    f.container_type = Some(kind);
    f.namespace = first(NAMESPACE_KEYS).cloned();
    f.pod = first(POD_KEYS).cloned().or_else(|| {
        (kind == ContainerType::Sandbox)
            .then(|| annotations.get(CRIO_SANDBOX_POD).cloned())
            .flatten()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pairs: &[(&str, &str)]) -> Facts {
        let a: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut f = Facts::default();
        fill(&a, &mut f);
        f
    }

    #[test]
    fn containerd_and_cri_o_alike() {
        let c = facts(&[
            ("io.kubernetes.cri.container-type", "container"),
            ("io.kubernetes.cri.sandbox-namespace", "batch"),
            ("io.kubernetes.cri.sandbox-name", "job-1"),
        ]);
        assert_eq!(c.container_type, Some(ContainerType::Container));
        assert_eq!(c.namespace.as_deref(), Some("batch"));
        assert_eq!(c.pod.as_deref(), Some("job-1"));
        let o = facts(&[
            ("io.kubernetes.cri-o.ContainerType", "sandbox"),
            ("io.kubernetes.cri-o.Namespace", "default"),
            ("io.kubernetes.cri-o.KubeName", "web-0"),
        ]);
        assert_eq!(o.container_type, Some(ContainerType::Sandbox));
        assert_eq!(o.namespace.as_deref(), Some("default"));
        assert_eq!(o.pod.as_deref(), Some("web-0"));
        // CRI-O's KubeName of a container is the container's name, not the pod's.
        let oc = facts(&[
            ("io.kubernetes.cri-o.ContainerType", "container"),
            ("io.kubernetes.cri-o.KubeName", "app"),
        ]);
        assert_eq!(oc.pod, None);
    }

    #[test]
    fn without_a_container_type_there_is_no_pod() {
        // A namespace key alone (say, `docker run --annotation`) makes no
        // Kubernetes container: the runtime always writes the type.
        let f = facts(&[("io.kubernetes.cri.sandbox-namespace", "kube-system")]);
        assert_eq!(f, Facts::default());
        let f = facts(&[("io.kubernetes.cri.container-type", "other")]);
        assert_eq!(f.namespace, None);
    }
}
