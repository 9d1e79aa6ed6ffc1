//! Which policy applies to a container.
//!
//! The matching policy with the highest `priority` wins; among equals, the
//! most specific selector (the most keys) wins; among those, the name that
//! sorts first. The order is total, so the same facts always pick the same
//! policy whatever order the files were read in.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::facts::Facts;
use crate::glob;
use crate::policy::Policy;

/// The kinds of fact `trust:` can name besides label and annotation keys:
/// those the container's creator chooses. A pod's namespace and container
/// type are the runtime's (`facts::pod`), and need no trust.
pub const KINDS: [&str; 5] = ["names", "images", "ids", "cgroups", "pods"];

/// What selection needs of a policy. Implemented by [`Policy`] and by the
/// compiled cache's entries, which are matched straight from the cache's
/// bytes so that a hook with a thousand policies decodes only the winner.
pub trait Candidate {
    fn name(&self) -> &str;
    fn priority(&self) -> i64;
    fn names(&self) -> impl Iterator<Item = &str>;
    fn images(&self) -> impl Iterator<Item = &str>;
    fn ids(&self) -> impl Iterator<Item = &str>;
    fn cgroups(&self) -> impl Iterator<Item = &str>;
    fn namespaces(&self) -> impl Iterator<Item = &str>;
    fn pods(&self) -> impl Iterator<Item = &str>;
    fn container_types(&self) -> impl Iterator<Item = &str>;
    fn labels(&self) -> impl Iterator<Item = (&str, &str)>;
    fn annotations(&self) -> impl Iterator<Item = (&str, &str)>;
    /// What the operator vouches for (`trust:`): fact kinds ([`KINDS`])
    /// and label or annotation keys.
    fn trusted(&self) -> impl Iterator<Item = &str>;

    fn trusts(&self, what: &str) -> bool {
        self.trusted().any(|t| t == what)
    }

    /// Whether the selection depends on a fact the container's creator
    /// sets (every kind of fact a selector can name: names, images, ids,
    /// cgroup parents, labels, annotations) that `trust` does not list,
    /// or on a trusted label whose value in `f` came from the image.
    fn container_controlled(&self, f: &Facts) -> bool {
        self.kinds_used().any(|k| !self.trusts(k))
            || self
                .labels()
                .any(|(k, _)| !self.trusts(k) || f.image_labels.contains(k))
            || self.annotations().any(|(k, _)| !self.trusts(k))
    }

    /// The selector's kinds of fact other than labels and annotations.
    fn kinds_used(&self) -> impl Iterator<Item = &'static str> {
        [
            ("names", self.names().next().is_some()),
            ("images", self.images().next().is_some()),
            ("ids", self.ids().next().is_some()),
            ("cgroups", self.cgroups().next().is_some()),
            ("pods", self.pods().next().is_some()),
        ]
        .into_iter()
        .filter_map(|(k, used)| used.then_some(k))
    }

    /// What [`Self::container_controlled`] found, in words for the log
    /// and `explain`: `name`, `label/annotation "tier"`.
    fn untrusted(&self, f: &Facts) -> Vec<String> {
        let mut out: Vec<String> = self
            .kinds_used()
            .filter(|k| !self.trusts(k))
            .map(|k| k.trim_end_matches('s').to_string())
            .collect();
        let keys: Vec<String> = self
            .labels()
            .chain(self.annotations())
            .map(|(k, _)| k)
            .filter(|k| !self.trusts(k))
            .map(|k| format!("{k:?}"))
            .collect();
        if !keys.is_empty() {
            out.push(format!("label/annotation {}", keys.join(", ")));
        }
        let from_image: Vec<String> = self
            .labels()
            .map(|(k, _)| k)
            .filter(|k| self.trusts(k) && f.image_labels.contains(*k))
            .map(|k| format!("{k:?}"))
            .collect();
        if !from_image.is_empty() {
            out.push(format!(
                "label {} from the image (trustImageLabels is off)",
                from_image.join(", ")
            ));
        }
        out
    }

    /// How many keys constrain the selection: the tie-breaker after priority.
    fn specificity(&self) -> usize {
        [
            self.names().next().is_some(),
            self.images().next().is_some(),
            self.ids().next().is_some(),
            self.cgroups().next().is_some(),
            self.namespaces().next().is_some(),
            self.pods().next().is_some(),
            self.container_types().next().is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
            + self.labels().count()
            + self.annotations().count()
    }

    /// Every key given must match; within a key, any glob may match. An
    /// empty selector matches every container.
    fn matches(&self, f: &Facts) -> bool {
        any_opt(self.names(), f.name.as_deref())
            && any_opt(self.images(), f.image.as_deref())
            && any_opt(self.ids(), Some(&f.id))
            && any_opt(self.cgroups(), f.cgroup.as_deref())
            && any_opt(self.namespaces(), f.namespace.as_deref())
            && any_opt(self.pods(), f.pod.as_deref())
            && any_opt(self.container_types(), f.container_type.map(|t| t.as_str()))
            && all_keys(self.labels(), &f.labels)
            && all_keys(self.annotations(), &f.annotations)
    }
}

impl Candidate for Policy {
    fn name(&self) -> &str {
        &self.name
    }
    fn priority(&self) -> i64 {
        self.priority
    }
    fn names(&self) -> impl Iterator<Item = &str> {
        self.selector.names.iter().map(String::as_str)
    }
    fn images(&self) -> impl Iterator<Item = &str> {
        self.selector.images.iter().map(String::as_str)
    }
    fn ids(&self) -> impl Iterator<Item = &str> {
        self.selector.ids.iter().map(String::as_str)
    }
    fn cgroups(&self) -> impl Iterator<Item = &str> {
        self.selector.cgroups.iter().map(String::as_str)
    }
    fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.selector.namespaces.iter().map(String::as_str)
    }
    fn pods(&self) -> impl Iterator<Item = &str> {
        self.selector.pods.iter().map(String::as_str)
    }
    fn container_types(&self) -> impl Iterator<Item = &str> {
        self.selector.container_types.iter().map(String::as_str)
    }
    fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.selector
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
    fn annotations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.selector
            .annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
    fn trusted(&self) -> impl Iterator<Item = &str> {
        self.trust.iter().map(String::as_str)
    }
}

impl<T: Candidate> Candidate for &T {
    fn name(&self) -> &str {
        (*self).name()
    }
    fn priority(&self) -> i64 {
        (*self).priority()
    }
    fn names(&self) -> impl Iterator<Item = &str> {
        (*self).names()
    }
    fn images(&self) -> impl Iterator<Item = &str> {
        (*self).images()
    }
    fn ids(&self) -> impl Iterator<Item = &str> {
        (*self).ids()
    }
    fn cgroups(&self) -> impl Iterator<Item = &str> {
        (*self).cgroups()
    }
    fn namespaces(&self) -> impl Iterator<Item = &str> {
        (*self).namespaces()
    }
    fn pods(&self) -> impl Iterator<Item = &str> {
        (*self).pods()
    }
    fn container_types(&self) -> impl Iterator<Item = &str> {
        (*self).container_types()
    }
    fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        (*self).labels()
    }
    fn annotations(&self) -> impl Iterator<Item = (&str, &str)> {
        (*self).annotations()
    }
    fn trusted(&self) -> impl Iterator<Item = &str> {
        (*self).trusted()
    }
}

/// A selector key on a fact that is unknown does not match: a policy for
/// `web-*` must not catch a container whose name could not be learned.
fn any_opt<'g>(mut globs: impl Iterator<Item = &'g str>, text: Option<&str>) -> bool {
    let Some(first) = globs.next() else {
        return true;
    };
    let Some(t) = text else { return false };
    glob::matches(first, t) || globs.any(|g| glob::matches(g, t))
}

fn all_keys<'g>(
    mut want: impl Iterator<Item = (&'g str, &'g str)>,
    have: &BTreeMap<String, String>,
) -> bool {
    want.all(|(k, g)| have.get(k).is_some_and(|v| glob::matches(g, v)))
}

/// The order in which matching policies are preferred (first wins).
pub fn preference(a: &impl Candidate, b: &impl Candidate) -> Ordering {
    b.priority()
        .cmp(&a.priority())
        .then_with(|| b.specificity().cmp(&a.specificity()))
        .then_with(|| a.name().cmp(b.name()))
}

/// Every policy that matches, most preferred first.
pub fn matching<'p>(policies: &'p [Policy], facts: &Facts) -> Vec<&'p Policy> {
    let mut m: Vec<&Policy> = policies.iter().filter(|p| p.matches(facts)).collect();
    m.sort_by(|a, b| preference(*a, *b));
    m
}

/// The outcome of one pass over the candidates.
pub struct Ranking<C> {
    /// The most preferred matching candidate.
    pub first: Option<C>,
    /// The runner-up, for [`why_first`].
    pub second: Option<C>,
    /// The most preferred matching candidate that no container-controlled
    /// key selects: what the container gets without its labels and annotations.
    pub baseline: Option<C>,
    /// Label keys whose values came from the image ([`Facts::image_labels`]).
    image_labels: std::collections::BTreeSet<String>,
}

/// The winner, the runner-up and the baseline, in one pass.
pub fn rank<C: Candidate + Copy>(candidates: impl Iterator<Item = C>, facts: &Facts) -> Ranking<C> {
    let mut r = Ranking {
        first: None,
        second: None,
        baseline: None,
        image_labels: facts.image_labels.clone(),
    };
    for c in candidates.filter(|c| c.matches(facts)) {
        if !c.container_controlled(facts)
            && r.baseline
                .as_ref()
                .is_none_or(|b| preference(&c, b) == Ordering::Less)
        {
            r.baseline = Some(c);
        }
        match &r.first {
            Some(f) if preference(&c, f) != Ordering::Less => {
                if r.second
                    .as_ref()
                    .is_none_or(|s| preference(&c, s) == Ordering::Less)
                {
                    r.second = Some(c);
                }
            }
            _ => r.second = r.first.replace(c),
        }
    }
    r
}

/// The chosen policy and why it was chosen.
pub struct Chosen {
    pub policy: Policy,
    pub why: String,
    /// Set when the policy was selected through keys the container's
    /// creator controls: its bounds are capped at this policy's maximum.
    pub baseline: Option<Policy>,
}

impl<C: Candidate + Copy> Ranking<C> {
    /// The chosen policy, decoding only the winner (and its baseline when
    /// one caps it); `None` when nothing matches, `Err` when decoding fails.
    pub fn chosen<E>(&self, decode: impl Fn(&C) -> Result<Policy, E>) -> Result<Option<Chosen>, E> {
        let Some(w) = &self.first else {
            return Ok(None);
        };
        let mut why = why_first(w, self.second.as_ref());
        let f = Facts {
            image_labels: self.image_labels.clone(),
            ..Default::default()
        };
        let baseline = if w.container_controlled(&f) {
            let facts = w.untrusted(&f).join(", ");
            match &self.baseline {
                Some(b) => {
                    why.push_str(&format!(
                        "; selected through {facts}, set by the container's creator and not in its trust list, so bounded by {:?}",
                        b.name()
                    ));
                    Some(decode(b)?)
                }
                None => {
                    why.push_str(&format!(
                        "; selected through {facts}, set by the container's creator, with no other matching policy to bound it"
                    ));
                    None
                }
            }
        } else {
            None
        };
        Ok(Some(Chosen {
            policy: decode(w)?,
            why,
            baseline,
        }))
    }
}

/// Chooses among fully decoded policies.
pub fn choose(policies: &[Policy], facts: &Facts) -> Option<Chosen> {
    let r = rank(policies.iter(), facts);
    let decoded: Result<_, std::convert::Infallible> = r.chosen(|p| Ok((*p).clone()));
    decoded.unwrap_or_else(|never| match never {})
}

/// Why the winner beat the runner-up, in words for `explain` and the log.
pub fn why_first(winner: &impl Candidate, runner_up: Option<&impl Candidate>) -> String {
    let Some(r) = runner_up else {
        return "the only matching policy".into();
    };
    if winner.priority() != r.priority() {
        format!(
            "highest priority ({} over {} of {:?})",
            winner.priority(),
            r.priority(),
            r.name()
        )
    } else if winner.specificity() != r.specificity() {
        format!(
            "same priority {} as {:?}; more specific selector ({} keys over {})",
            winner.priority(),
            r.name(),
            winner.specificity(),
            r.specificity()
        )
    } else {
        format!(
            "same priority {} and specificity {} as {:?}; name sorts first",
            winner.priority(),
            winner.specificity(),
            r.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_file;
    use std::path::Path;

    fn policies(text: &str) -> Vec<Policy> {
        parse_file(Path::new("t.yaml"), text).unwrap()
    }

    fn facts() -> Facts {
        Facts {
            id: "abc123".into(),
            name: Some("web-1".into()),
            image: Some("docker.io/library/nginx:1.27".into()),
            labels: [("tier".to_string(), "frontend".to_string())].into(),
            annotations: [("team".to_string(), "payments".to_string())].into(),
            cgroup: Some("/docker/abc123".into()),
            ..Default::default()
        }
    }

    #[test]
    fn empty_selector_matches_all() {
        let p = policies("name: all\n");
        assert!(p[0].matches(&facts()));
        assert!(p[0].matches(&Facts::default()));
    }

    #[test]
    fn every_key_must_match() {
        let f = facts();
        for (sel, want) in [
            ("names: ['web-*']", true),
            ("names: ['api-*', 'web-?']", true),
            ("names: ['api-*']", false),
            ("images: ['*nginx*']", true),
            ("ids: ['abc*']", true),
            ("ids: ['x*']", false),
            ("labels: {tier: front*}", true),
            ("labels: {tier: back*}", false),
            ("labels: {missing: '*'}", false),
            ("annotations: {team: payments}", true),
            ("cgroups: ['/docker/*']", true),
            ("names: ['web-*']\n  labels: {tier: backend}", false),
        ] {
            let p = policies(&format!("name: x\nmatch:\n  {sel}\n"));
            assert_eq!(p[0].matches(&f), want, "{sel}");
        }
    }

    #[test]
    fn unknown_fact_never_matches_a_glob() {
        let p = policies("name: x\nmatch: {names: ['*']}\n");
        let f = Facts {
            name: None,
            ..facts()
        };
        assert!(!p[0].matches(&f));
    }

    #[test]
    fn priority_then_specificity_then_name() {
        let p = policies(
            "name: b-default\n---\nname: a-default\n---\nname: web\nmatch: {names: ['web-*']}\n---\nname: low\npriority: -1\nmatch: {names: ['web-*'], labels: {tier: '*'}}\n---\nname: urgent\npriority: 5\nmatch: {ids: ['nomatch']}\n",
        );
        let m = matching(&p, &facts());
        let names: Vec<&str> = m.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["web", "a-default", "b-default", "low"]);
        assert!(why_first(m[0], Some(m[1])).contains("more specific"));
        assert!(why_first(m[1], Some(m[2])).contains("name sorts first"));
        assert!(why_first(m[2], Some(m[3])).contains("highest priority"));
        // The one-pass choice agrees with the full sort.
        let r = rank(p.iter(), &facts());
        assert_eq!(
            (
                r.first.unwrap().name.as_str(),
                r.second.unwrap().name.as_str()
            ),
            ("web", "a-default")
        );
    }

    #[test]
    fn order_of_files_does_not_change_the_winner() {
        let mut p = policies("name: a\n---\nname: b\n---\nname: c\nmatch: {labels: {tier: '*'}}\n");
        let first = matching(&p, &facts())[0].name.clone();
        p.reverse();
        assert_eq!(matching(&p, &facts())[0].name, first);
        p.rotate_left(1);
        assert_eq!(matching(&p, &facts())[0].name, first);
    }
}
