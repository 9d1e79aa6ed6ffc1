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
use crate::policy::{Policy, Selector};

impl Selector {
    pub fn matches(&self, f: &Facts) -> bool {
        any_opt(&self.names, f.name.as_deref())
            && any_opt(&self.images, f.image.as_deref())
            && any(&self.ids, &f.id)
            && any_opt(&self.cgroups, f.cgroup.as_deref())
            && all_keys(&self.labels, &f.labels)
            && all_keys(&self.annotations, &f.annotations)
    }
}

fn any(globs: &[String], text: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| glob::matches(g, text))
}

/// A selector key on a fact that is unknown does not match: a policy for
/// `web-*` must not catch a container whose name could not be learned.
fn any_opt(globs: &[String], text: Option<&str>) -> bool {
    globs.is_empty() || text.is_some_and(|t| any(globs, t))
}

fn all_keys(want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) -> bool {
    want.iter()
        .all(|(k, g)| have.get(k).is_some_and(|v| glob::matches(g, v)))
}

/// The order in which matching policies are preferred (first wins).
pub fn preference(a: &Policy, b: &Policy) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| b.selector.specificity().cmp(&a.selector.specificity()))
        .then_with(|| a.name.cmp(&b.name))
}

/// Every policy that matches, most preferred first.
pub fn matching<'p>(policies: &'p [Policy], facts: &Facts) -> Vec<&'p Policy> {
    let mut m: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.selector.matches(facts))
        .collect();
    m.sort_by(|a, b| preference(a, b));
    m
}

/// Why the winner beat the runner-up, in words for `explain` and the log.
pub fn why_first(winner: &Policy, runner_up: Option<&Policy>) -> String {
    let Some(r) = runner_up else {
        return "the only matching policy".into();
    };
    if winner.priority != r.priority {
        format!(
            "highest priority ({} over {} of {:?})",
            winner.priority, r.priority, r.name
        )
    } else if winner.selector.specificity() != r.selector.specificity() {
        format!(
            "same priority {} as {:?}; more specific selector ({} keys over {})",
            winner.priority,
            r.name,
            winner.selector.specificity(),
            r.selector.specificity()
        )
    } else {
        format!(
            "same priority {} and specificity {} as {:?}; name sorts first",
            winner.priority,
            winner.selector.specificity(),
            r.name
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
        assert!(p[0].selector.matches(&facts()));
        assert!(p[0].selector.matches(&Facts::default()));
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
            assert_eq!(p[0].selector.matches(&f), want, "{sel}");
        }
    }

    #[test]
    fn unknown_fact_never_matches_a_glob() {
        let p = policies("name: x\nmatch: {names: ['*']}\n");
        let f = Facts {
            name: None,
            ..facts()
        };
        assert!(!p[0].selector.matches(&f));
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
