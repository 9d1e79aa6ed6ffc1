//! Recommendations as policy changes: a new policy selecting each
//! workload (above the policy that applies to it now), or an edit of the
//! policy that already selects exactly that workload; checked by loading
//! the directory as it would be and choosing for each container seen.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::Row;
use crate::facts::Facts;
use crate::facts::workload::{self, Kind};
use crate::policy::{self, High, Policy, PolicyErrors, Selector};
use crate::size::Limit;

/// Why the changes could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PolicyProblem {
    #[error("{}: {source}", dir.display())]
    Load {
        dir: PathBuf,
        #[source]
        source: PolicyErrors,
    },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A change that does not load: a bug, never printed as a change.
    #[error("the change for {workload} does not load: {source}")]
    Invalid {
        workload: String,
        #[source]
        source: PolicyErrors,
    },
}

/// The files to change, relative to the policy directory: before (none
/// for a new file) and after.
pub struct Plan {
    files: BTreeMap<PathBuf, (Option<String>, String)>,
    /// The policies as they will be, one per workload.
    policies: Vec<Policy>,
    pub notes: Vec<String>,
}

pub fn plan(rows: &mut [Row], dir: &Path) -> Result<Plan, PolicyProblem> {
    let existing = if dir.exists() {
        policy::load_path(dir).map_err(|source| PolicyProblem::Load {
            dir: dir.to_path_buf(),
            source,
        })?
    } else {
        Vec::new()
    };
    let mut plan = Plan {
        files: BTreeMap::new(),
        policies: Vec::new(),
        notes: Vec::new(),
    };
    // Which workloads each policy applies to now: only a policy that
    // applies to one workload alone is edited in place.
    let mut users: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows.iter() {
        if let Some(p) = &r.policy {
            *users.entry(p.clone()).or_insert(0) += 1;
        }
    }
    let today = crate::time::now_rfc3339();
    let today = today.get(..10).unwrap_or(&today);
    for r in rows.iter_mut() {
        let Some((text, bytes)) = r.recommended.clone().zip(r.recommended_bytes) else {
            continue;
        };
        let facts = facts_of(r);
        let current = r
            .policy
            .as_deref()
            .and_then(|n| existing.iter().find(|p| p.name == n))
            .cloned()
            .or_else(|| {
                facts
                    .first()
                    .and_then(|f| policy::select::choose(&existing, f))
                    .map(|c| c.policy)
            });
        let own = format!("recommended-{}", slug(&r.workload));
        let target = existing
            .iter()
            .find(|p| p.name == own)
            .cloned()
            .or_else(|| {
                current
                    .clone()
                    .filter(|p| p.selector != Selector::default() && users.get(&p.name) == Some(&1))
            });
        let edited = match target {
            Some(p) => edit(&mut plan, dir, &p, &text, bytes)?,
            None => None,
        };
        let (policy, what) = match edited {
            Some(p) => {
                let what = format!(
                    "{} {} in {}",
                    if p.name == own { "updates" } else { "edits" },
                    p.name,
                    p.origin.file.display()
                );
                (p, what)
            }
            None => {
                let p = new_policy(r, current.as_ref(), &own, bytes);
                let file = PathBuf::from(format!("{own}.yaml"));
                let body = format!(
                    "# cglimit recommend, {today}: workload {:?} ({} container{}), {} of history,\n# {} samples: peak {}, p99 {}; {}.\n{}",
                    r.workload,
                    r.containers.len(),
                    if r.containers.len() == 1 { "" } else { "s" },
                    crate::time::human_duration(r.observed.span_seconds),
                    r.observed.samples,
                    crate::size::human_rounded(r.observed.peak_bytes),
                    crate::size::human_rounded(r.observed.p99_bytes),
                    r.reason,
                    render(&p)
                );
                let what = format!("new policy {own} in {}", file.display());
                plan.files.insert(file, (None, body));
                (p, what)
            }
        };
        r.change = Some(what);
        plan.policies.push(policy);
    }
    check(&plan, rows, dir, &existing).map(|notes| {
        plan.notes.extend(notes);
        plan
    })
}

/// Containers of the workload as the policies see them: by name, image or
/// pod, as its key was made.
fn facts_of(r: &Row) -> Vec<Facts> {
    let base = Facts {
        id: String::new(),
        ..Facts::default()
    };
    match r.kind {
        Kind::Name => r
            .containers
            .iter()
            .map(|c| Facts {
                name: Some(c.clone()),
                ..base.clone()
            })
            .collect(),
        Kind::Image => vec![Facts {
            image: Some(r.workload.clone()),
            ..base
        }],
        Kind::Pod => {
            let mut parts = r.workload.splitn(3, '/');
            let (ns, owner, name) = (parts.next(), parts.next(), parts.next());
            vec![Facts {
                namespace: ns.map(String::from),
                pod: owner.map(|o| format!("{o}-0")),
                name: name.map(String::from),
                container_type: Some(crate::facts::pod::ContainerType::Container),
                ..base
            }]
        }
        Kind::Id => vec![Facts {
            id: r.workload.trim_start_matches("id:").to_string(),
            ..base
        }],
    }
}

/// A policy name from a workload key: lower case, `[a-z0-9-]`.
fn slug(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.trim_matches('-').to_string()
}

/// A policy for the workload: its selector, the recommended limit as
/// default and max, the rest as the policy that applies now (or the
/// documented defaults), one priority above it.
fn new_policy(r: &Row, current: Option<&Policy>, name: &str, bytes: u64) -> Policy {
    let g = workload::globs(r.kind, &r.workload);
    let selector = Selector {
        names: g.names,
        images: g.images,
        ids: g.ids,
        namespaces: g.namespaces,
        pods: g.pods,
        container_types: if r.kind == Kind::Pod {
            vec!["container".into()]
        } else {
            Vec::new()
        },
        ..Selector::default()
    };
    let swap = current.map(|p| p.swap.clone()).unwrap_or(policy::Bounds {
        default: Some(Limit::Bytes(0)),
        min: 0,
        max: Limit::Bytes(0),
    });
    Policy {
        name: name.to_string(),
        priority: current.map(|p| p.priority + 1).unwrap_or(1),
        selector,
        memory: policy::Bounds {
            default: Some(Limit::Bytes(bytes)),
            min: current.map(|p| p.memory.min).unwrap_or(0).min(bytes),
            max: Limit::Bytes(bytes),
        },
        swap,
        high: current.map(|p| p.high).unwrap_or(Some(High::Percent(90.0))),
        on_violation: current.map(|p| p.on_violation).unwrap_or_default(),
        message: None,
        trust: Vec::new(),
        origin: policy::Origin {
            file: PathBuf::from(format!("{name}.yaml")).into(),
            line: 1,
        },
    }
}

/// Sets memory `default` and `max` of `p` in its file, where both are
/// written; `None` (a new policy is written instead) where they are not.
fn edit(
    plan: &mut Plan,
    dir: &Path,
    p: &Policy,
    text: &str,
    bytes: u64,
) -> Result<Option<Policy>, PolicyProblem> {
    let abs = p.origin.file.to_path_buf();
    let rel = abs
        .strip_prefix(dir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| abs.file_name().map(PathBuf::from).unwrap_or_default());
    let before = match plan.files.get(&rel) {
        Some((_, after)) => after.clone(),
        None => std::fs::read_to_string(&abs).map_err(|source| PolicyProblem::Read {
            path: abs.clone(),
            source,
        })?,
    };
    let Some(places) = policy::memory_places(&before)
        .into_iter()
        .find(|m| m.name == p.name)
    else {
        return Ok(None);
    };
    let (Some(d), Some(m)) = (places.default, places.max) else {
        return Ok(None);
    };
    let mut lines: Vec<String> = before.split('\n').map(String::from).collect();
    // The later place first, so that the earlier one's column still holds.
    let mut at = [d, m];
    at.sort_by(|a, b| b.cmp(a));
    for (line, col) in at {
        let Some(l) = lines.get_mut(line as usize - 1) else {
            return Ok(None);
        };
        let start = l
            .char_indices()
            .nth(col as usize - 1)
            .map(|(i, _)| i)
            .unwrap_or(l.len());
        let end = scalar_end(l, start);
        l.replace_range(start..end, text);
    }
    let after = lines.join("\n");
    let original = plan
        .files
        .get(&rel)
        .map(|(o, _)| o.clone())
        .unwrap_or(Some(before));
    plan.files.insert(rel, (original, after));
    let mut edited = p.clone();
    edited.memory.default = Some(Limit::Bytes(bytes));
    edited.memory.max = Limit::Bytes(bytes);
    edited.memory.min = edited.memory.min.min(bytes);
    Ok(Some(edited))
}

/// Where the plain or quoted scalar starting at `start` ends.
fn scalar_end(line: &str, start: usize) -> usize {
    let rest = &line[start..];
    if let Some(q @ ('"' | '\'')) = rest.chars().next() {
        return rest[1..]
            .find(q)
            .map(|i| start + i + 2)
            .unwrap_or(line.len());
    }
    let mut end = rest.len();
    for (i, c) in rest.char_indices() {
        if matches!(c, ',' | '}' | ']') || (c == '#' && i > 0 && rest[..i].ends_with(' ')) {
            end = i;
            break;
        }
    }
    start + rest[..end].trim_end().len()
}

/// Loads the directory as the change leaves it and chooses for every
/// container seen: each must get its workload's policy and limit.
fn check(
    plan: &Plan,
    rows: &[Row],
    dir: &Path,
    existing: &[Policy],
) -> Result<Vec<String>, PolicyProblem> {
    let mut all: Vec<Policy> = existing
        .iter()
        .filter(|p| {
            let file = p.origin.file.strip_prefix(dir).unwrap_or(&p.origin.file);
            !plan.files.contains_key(file)
        })
        .cloned()
        .collect();
    for (file, (_, text)) in &plan.files {
        let parsed =
            policy::parse_file(&dir.join(file), text).map_err(|e| PolicyProblem::Invalid {
                workload: file.display().to_string(),
                source: PolicyErrors(e),
            })?;
        all.extend(parsed);
    }
    policy::check_names(&all).map_err(|e| PolicyProblem::Invalid {
        workload: dir.display().to_string(),
        source: PolicyErrors(e),
    })?;
    let mut notes = Vec::new();
    for (r, p) in rows
        .iter()
        .filter(|r| r.change.is_some())
        .zip(&plan.policies)
    {
        for f in facts_of(r) {
            let who = f.name.clone().or(f.image.clone()).unwrap_or_default();
            match policy::select::choose(&all, &f) {
                Some(c) if c.policy.name == p.name => {
                    if let Some(b) = &c.baseline
                        && b.memory
                            .max
                            .bytes()
                            .is_some_and(|m| Some(m) < r.recommended_bytes)
                    {
                        notes.push(format!(
                            "{}: {} stays capped at {}, the max of {:?}: {who} chose it through its name or image, which its creator sets (docs/policies.md); raise {:?}'s max or add `trust` to {}",
                            r.workload, r.recommended.as_deref().unwrap_or(""), b.memory.max, b.name, b.name, p.name
                        ));
                    }
                }
                other => notes.push(format!(
                    "{}: {who} would still get {:?}, not {:?}",
                    r.workload,
                    other.map(|c| c.policy.name).unwrap_or_default(),
                    p.name
                )),
            }
        }
    }
    Ok(notes)
}

impl Plan {
    /// The policies alone, one YAML document each.
    pub fn yaml(&self) -> String {
        self.policies
            .iter()
            .map(render)
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// A unified diff against the policy directory: `patch -p1 -d DIR`.
    pub fn diff(&self) -> String {
        let mut out = String::new();
        for (file, (before, after)) in &self.files {
            let name = file.display();
            match before {
                None => {
                    let lines: Vec<&str> = after.lines().collect();
                    let _ = writeln!(
                        out,
                        "--- /dev/null\n+++ b/{name}\n@@ -0,0 +1,{} @@",
                        lines.len()
                    );
                    for l in lines {
                        let _ = writeln!(out, "+{l}");
                    }
                }
                Some(before) => {
                    let _ = writeln!(out, "--- a/{name}\n+++ b/{name}");
                    out.push_str(&hunks(before, after));
                }
            }
        }
        out
    }
}

/// Unified hunks, three lines of context, between two texts of the same
/// number of lines (edits replace values within lines).
fn hunks(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.split('\n').collect();
    let b: Vec<&str> = after.split('\n').collect();
    // A final newline leaves an empty last element: not a line.
    let n = if a.last() == Some(&"") {
        a.len() - 1
    } else {
        a.len()
    };
    let changed: Vec<usize> = (0..n).filter(|&i| a[i] != b[i]).collect();
    let mut out = String::new();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(3);
        let mut last = changed[i];
        while i + 1 < changed.len() && changed[i + 1] <= last + 7 {
            i += 1;
            last = changed[i];
        }
        let end = (last + 4).min(n);
        let len = end - start;
        let _ = writeln!(out, "@@ -{},{len} +{},{len} @@", start + 1, start + 1);
        // A run of changed lines: the old ones, then the new ones.
        let mut j = start;
        while j < end {
            if a[j] == b[j] {
                let _ = writeln!(out, " {}", a[j]);
                j += 1;
                continue;
            }
            let run = (j..end).take_while(|&k| a[k] != b[k]).count();
            for l in &a[j..j + run] {
                let _ = writeln!(out, "-{l}");
            }
            for l in &b[j..j + run] {
                let _ = writeln!(out, "+{l}");
            }
            j += run;
        }
        i += 1;
    }
    out
}

/// A policy as YAML that `validate` reads back to the same policy.
pub fn render(p: &Policy) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let list = |v: &[String]| {
        format!(
            "[{}]",
            v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
        )
    };
    let map = |m: &BTreeMap<String, String>| {
        format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", q(k), q(v)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let limit = |l: &Limit| match l {
        Limit::Unlimited => "max".to_string(),
        Limit::Bytes(b) => crate::size::human(*b),
    };
    let bounds = |b: &policy::Bounds| {
        let mut parts = Vec::new();
        if let Some(d) = &b.default {
            parts.push(format!("default: {}", limit(d)));
        }
        if b.min > 0 {
            parts.push(format!("min: {}", crate::size::human(b.min)));
        }
        parts.push(format!("max: {}", limit(&b.max)));
        format!("{{{}}}", parts.join(", "))
    };
    let s = &p.selector;
    let mut out = String::new();
    let plain = !p.name.is_empty()
        && p.name.starts_with(|c: char| c.is_ascii_alphabetic())
        && p.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let _ = writeln!(
        out,
        "name: {}",
        if plain { p.name.clone() } else { q(&p.name) }
    );
    let _ = writeln!(out, "priority: {}", p.priority);
    let _ = writeln!(out, "match:");
    let mut any = false;
    for (k, v) in [
        ("names", &s.names),
        ("images", &s.images),
        ("ids", &s.ids),
        ("cgroups", &s.cgroups),
        ("namespaces", &s.namespaces),
        ("pods", &s.pods),
        ("containerTypes", &s.container_types),
    ] {
        if !v.is_empty() {
            let _ = writeln!(out, "  {k}: {}", list(v));
            any = true;
        }
    }
    for (k, v) in [("labels", &s.labels), ("annotations", &s.annotations)] {
        if !v.is_empty() {
            let _ = writeln!(out, "  {k}: {}", map(v));
            any = true;
        }
    }
    if !any {
        out = out.replace("match:\n", "match: {}\n");
    }
    let _ = writeln!(out, "memory: {}", bounds(&p.memory));
    let _ = writeln!(out, "swap: {}", bounds(&p.swap));
    let high = match p.high {
        None => "off".to_string(),
        Some(High::Percent(v)) => format!("{v}%"),
        Some(High::Size(b)) => crate::size::human(b),
    };
    let _ = writeln!(out, "high: {high}");
    let _ = writeln!(out, "onViolation: {}", p.on_violation);
    if let Some(m) = &p.message {
        let _ = writeln!(out, "message: {}", q(m));
    }
    if !p.trust.is_empty() {
        let _ = writeln!(out, "trust: {}", list(&p.trust));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_policy_reads_back_the_same() {
        let text = "name: web\npriority: 3\nmatch: {names: [web, \"web-[0-9]*\"], labels: {a: b}}\nmemory: {default: 120M, min: 16M, max: 120M}\nswap: {default: 0, max: 1G}\nhigh: 90%\nonViolation: deny\nmessage: no\ntrust: [a]\n";
        let p = policy::parse_file(Path::new("x.yaml"), text)
            .unwrap()
            .remove(0);
        let back = policy::parse_file(Path::new("x.yaml"), &render(&p))
            .unwrap()
            .remove(0);
        assert_eq!(back, p, "{}", render(&p));
    }

    #[test]
    fn values_are_replaced_where_they_are_written() {
        let line = "memory: {default: 512M, min: 16M, max: \"8G\"}  # note";
        let s = line.find("512M").unwrap();
        assert_eq!(&line[s..scalar_end(line, s)], "512M");
        let s = line.find("\"8G\"").unwrap();
        assert_eq!(&line[s..scalar_end(line, s)], "\"8G\"");
        let line = "  max: 8G   # the ceiling";
        let s = line.find("8G").unwrap();
        assert_eq!(&line[s..scalar_end(line, s)], "8G");
    }

    #[test]
    fn hunks_carry_context_and_merge() {
        let a: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let b = a
            .replace("l5\n", "five\n")
            .replace("l7\n", "seven\n")
            .replace("l19\n", "nineteen\n");
        let h = hunks(&a, &b);
        assert!(
            h.starts_with("@@ -2,9 +2,9 @@\n l2\n l3\n l4\n-l5\n+five\n l6\n-l7\n+seven\n l8\n l9\n l10\n@@ -16,5 +16,5 @@\n l16\n l17\n l18\n-l19\n+nineteen\n l20\n"),
            "{h}"
        );
        let b = a.replace("l5\n", "five\n").replace("l6\n", "six\n");
        assert!(
            hunks(&a, &b)
                .starts_with("@@ -2,8 +2,8 @@\n l2\n l3\n l4\n-l5\n-l6\n+five\n+six\n l7\n"),
            "{h}"
        );
    }
}
