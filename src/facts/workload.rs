//! Which workload a container belongs to: the key under which the watcher
//! keeps its history and `recommend` sizes it, and the selector a policy for
//! that workload is written with.
//!
//! A workload is what one policy should size: the replicas of a service,
//! every run of a job. Containers of one workload differ in the suffix their
//! engine or orchestrator appends, so the key is the name without it:
//! - Kubernetes (the CRI's namespace and pod are known):
//!   `NAMESPACE/OWNER/CONTAINER`, where OWNER is the pod's name without the
//!   suffixes its controller generates (a ReplicaSet's template hash and a
//!   pod's random five characters, a StatefulSet's ordinal);
//! - elsewhere, by name (the default): the container's name without a
//!   trailing instance number (`web-1`, `proj_web_2`, `web.3` are `web`,
//!   `proj_web`, `web`); a container without a name is keyed by its image;
//! - by image (`--workload-by image`): the image's repository, without tag
//!   or digest, whatever the name.
//!
//! A container with neither name nor image is a workload of its own
//! (`id:` and twelve characters of its id).

use serde::Serialize;

/// How containers are grouped into workloads outside Kubernetes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// The container's name without its instance number (else its image).
    #[default]
    Name,
    /// The image's repository, without tag or digest.
    Image,
}

/// What the key is made of.
#[derive(Clone, Copy, Debug, Default)]
pub struct Of<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub image: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub pod: Option<&'a str>,
}

/// What a workload key was made from, which decides how a policy selects it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Name,
    Image,
    Pod,
    Id,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Name => "name",
            Kind::Image => "image",
            Kind::Pod => "pod",
            Kind::Id => "id",
        }
    }
}

/// The workload key of a container, and what it was made from.
pub fn key(by: By, c: Of) -> (String, Kind) {
    let name = c.name.filter(|n| !n.is_empty());
    let image = c.image.filter(|i| !i.is_empty());
    if let (Some(ns), Some(pod), Some(name)) = (c.namespace, c.pod, name) {
        return (format!("{ns}/{}/{name}", pod_owner(pod)), Kind::Pod);
    }
    match (by, name, image) {
        (By::Name, Some(n), _) | (By::Image, Some(n), None) => (stem(n).0.to_string(), Kind::Name),
        (_, _, Some(i)) => (repository(i).to_string(), Kind::Image),
        (_, None, None) => (format!("id:{}", &c.id[..c.id.len().min(12)]), Kind::Id),
    }
}

/// A name without its trailing instance number, and the separator that
/// came before the number (`web-1` → (`web`, Some('-'))).
pub fn stem(name: &str) -> (&str, Option<char>) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits == name.len() {
        return (name, None);
    }
    let rest = &name[..name.len() - digits];
    match rest.chars().last() {
        Some(sep @ ('-' | '_' | '.')) if rest.len() > 1 => (&rest[..rest.len() - 1], Some(sep)),
        _ => (name, None),
    }
}

/// An image reference without its tag or digest: `registry:5000/app:1.2`
/// is `registry:5000/app`.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        // A colon after the last slash is the tag's; before it, a port's.
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// The alphabet Kubernetes draws generated name suffixes from (no vowels,
/// no confusable digits).
const GENERATED: &str = "bcdfghjklmnpqrstvwxz2456789";

/// A pod's name without what its controller appended: `web-7d4b9c8f6d-x2x7q`
/// (Deployment) and `agent-x2x7q` (DaemonSet, Job) are `web` and `agent`;
/// `db-0` (StatefulSet) is `db`.
pub fn pod_owner(pod: &str) -> &str {
    let generated = |s: &str, lens: std::ops::RangeInclusive<usize>| {
        lens.contains(&s.len()) && s.chars().all(|c| GENERATED.contains(c))
    };
    let cut = |s: &str, ok: &dyn Fn(&str) -> bool| -> Option<usize> {
        let i = s.rfind('-')?;
        (i > 0 && ok(&s[i + 1..])).then_some(i)
    };
    if let Some(i) = cut(pod, &|s| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
    }) {
        return &pod[..i];
    }
    let Some(i) = cut(pod, &|s| generated(s, 5..=5)) else {
        return pod;
    };
    let owner = &pod[..i];
    match cut(owner, &|s| generated(s, 6..=10)) {
        Some(j) => &owner[..j],
        None => owner,
    }
}

/// What a policy for the workload of these containers selects on: globs
/// that match every name seen (and its next instances), or the image's
/// repository with any tag or digest, or the pod's namespace, owner and
/// container name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Globs {
    pub names: Vec<String>,
    pub ids: Vec<String>,
    pub images: Vec<String>,
    pub namespaces: Vec<String>,
    pub pods: Vec<String>,
}

/// The selector for workload `key` made from `kind`.
pub fn globs(kind: Kind, key: &str) -> Globs {
    match kind {
        Kind::Id => Globs {
            ids: vec![format!("{}*", key.strip_prefix("id:").unwrap_or(key))],
            ..Globs::default()
        },
        Kind::Pod => {
            let mut parts = key.splitn(3, '/');
            let (ns, owner, name) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            Globs {
                names: vec![name.to_string()],
                namespaces: vec![ns.to_string()],
                pods: vec![owner.to_string(), format!("{owner}-*")],
                ..Globs::default()
            }
        }
        Kind::Image => Globs {
            images: vec![key.to_string(), format!("{key}:*"), format!("{key}@*")],
            ..Globs::default()
        },
        Kind::Name => Globs {
            names: std::iter::once(key.to_string())
                .chain(
                    ["-", "_", "."]
                        .iter()
                        .map(|sep| format!("{key}{sep}[0-9]*")),
                )
                .collect(),
            ..Globs::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of<'a>(name: Option<&'a str>, image: Option<&'a str>) -> Of<'a> {
        Of {
            id: "0123456789abcdef",
            name,
            image,
            ..Of::default()
        }
    }

    #[test]
    fn replicas_and_runs_are_one_workload() {
        for (n, k) in [
            ("web-1", "web"),
            ("web-12", "web"),
            ("proj_web_2", "proj_web"),
            ("web.3", "web"),
            ("web", "web"),
            ("web2", "web2"),
            ("2048", "2048"),
            ("-1", "-1"),
            ("api-v2", "api-v2"),
        ] {
            assert_eq!(key(By::Name, of(Some(n), Some("nginx:1"))).0, k, "{n}");
        }
        let k = |by, n, i| key(by, of(n, i));
        assert_eq!(
            k(By::Name, None, Some("reg:5000/app:1.2")),
            ("reg:5000/app".into(), Kind::Image)
        );
        assert_eq!(k(By::Name, None, Some("app@sha256:ab")).0, "app");
        assert_eq!(k(By::Image, Some("web-1"), Some("nginx:1")).0, "nginx");
        assert_eq!(
            k(By::Image, Some("web-1"), None),
            ("web".into(), Kind::Name)
        );
        assert_eq!(
            k(By::Name, None, None),
            ("id:0123456789ab".into(), Kind::Id)
        );
    }

    #[test]
    fn pods_are_keyed_by_their_owner() {
        for (p, o) in [
            ("web-7d4b9c8f6d-x2x7q", "web"),
            ("agent-x2x7q", "agent"),
            ("db-0", "db"),
            ("db-12", "db"),
            ("hello", "hello"),
            ("web-hello", "web-hello"),
            ("my-app-5c9d8f7b6-bbbbb", "my-app"),
        ] {
            assert_eq!(pod_owner(p), o, "{p}");
        }
        let c = Of {
            namespace: Some("shop"),
            pod: Some("web-7d4b9c8f6d-x2x7q"),
            ..of(Some("nginx"), Some("nginx:1"))
        };
        assert_eq!(key(By::Name, c), ("shop/web/nginx".into(), Kind::Pod));
    }

    #[test]
    fn the_globs_select_the_workload_and_not_its_neighbours() {
        let g = globs(Kind::Name, "web");
        let any = |n: &str| g.names.iter().any(|p| crate::glob::matches(p, n));
        for n in ["web", "web-1", "web_22", "web.3"] {
            assert!(any(n), "{n}");
            assert_eq!(key(By::Name, of(Some(n), None)).0, "web");
        }
        for n in ["web-api", "webserver", "web-api-1", "aweb-1"] {
            assert!(!any(n), "{n}");
        }
        let g = globs(Kind::Image, "reg:5000/app");
        assert!(
            g.images
                .iter()
                .any(|p| crate::glob::matches(p, "reg:5000/app:1.2"))
        );
        assert!(
            !g.images
                .iter()
                .any(|p| crate::glob::matches(p, "reg:5000/application"))
        );
        let g = globs(Kind::Pod, "shop/web/nginx");
        assert_eq!(g.namespaces, ["shop"]);
        assert_eq!(g.names, ["nginx"]);
    }
}
