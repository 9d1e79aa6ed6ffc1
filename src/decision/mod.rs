//! The decision: a pure function from a policy set and a container's facts
//! to the limits it must run with, or a refusal.
//!
//! The semantics are those Docker and Kubernetes users already know:
//! - nothing asked → the policy's `default` (or its `max` when it has none);
//! - above `max` or below `min` → clamped, refused or kept-and-recorded,
//!   per `onViolation`;
//! - the OCI `swap` field is memory+swap (`--memory-swap`); the swap a
//!   container asks for is that minus its memory, taken *before* any
//!   clamping, so `-m 1g --memory-swap 1g` asks for no swap and keeps none
//!   after its memory is clamped;
//! - `memory+swap < memory` is refused, as Docker refuses it;
//! - `high` is derived from the final memory limit.

use serde::Serialize;

use crate::policy::select;

use crate::facts::Facts;
use crate::policy::{Action, Bounds, High, Policy};
pub use crate::size::Limits;
use crate::size::{Limit, PAGE_SIZE};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// Enforce `limits`.
    Apply,
    /// Refuse the container; the message says why in the user's terms.
    Deny { message: String },
}

/// One departure from the policy and what was done about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `memory`, `swap` or `request`.
    pub field: &'static str,
    pub asked: Limit,
    /// The bound that was crossed, e.g. `max 8G`.
    pub bound: String,
    pub action: Action,
    /// The value kept after the action (for `deny`, nothing is kept).
    pub result: Limit,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} crosses {}: ", self.field, self.asked, self.bound)?;
        match self.action {
            Action::Clamp => write!(f, "clamped to {}", self.result),
            Action::Deny => f.write_str("refused"),
            Action::Audit => write!(f, "kept {} (audit)", self.result),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// The winning policy's name, if any matched.
    pub policy: Option<String>,
    /// Where the winning policy is written (`file:line`).
    pub origin: Option<String>,
    /// Why this policy and not another.
    pub why: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub limits: Limits,
    pub findings: Vec<Finding>,
    /// Remarks that are not violations (e.g. swap left open because memory is).
    pub notes: Vec<String>,
}

impl Decision {
    /// Who refused: `policy "strict" (file:line)`, or cglimit itself when
    /// no policy matched.
    pub fn refused_by(&self) -> String {
        self.policy
            .as_ref()
            .map(|p| format!("policy {p:?} ({})", self.origin.as_deref().unwrap_or("?")))
            .unwrap_or_else(|| "cglimit".into())
    }

    /// A decision made elsewhere (the runtime wrapper) and handed over
    /// with its limits: applied as it is.
    pub fn given(policy: Option<String>, limits: Limits) -> Decision {
        Decision {
            policy,
            origin: None,
            why: "decided by the runtime wrapper".into(),
            verdict: Verdict::Apply,
            limits,
            findings: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn is_denied(&self) -> bool {
        matches!(self.verdict, Verdict::Deny { .. })
    }

    fn deny(policy: Option<&Policy>, why: String, message: String) -> Decision {
        Decision {
            policy: policy.map(|p| p.name.clone()),
            origin: policy.map(|p| p.origin.to_string()),
            why,
            verdict: Verdict::Deny { message },
            limits: Limits {
                memory: Limit::Unlimited,
                swap: Limit::Unlimited,
                high: None,
            },
            findings: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Decides the limits for a container.
pub fn decide(policies: &[Policy], facts: &Facts) -> Decision {
    decide_chosen(select::choose(policies, facts), facts)
}

/// Decides with a policy already chosen (see [`select::choose`]).
pub fn decide_chosen(chosen: Option<select::Chosen>, facts: &Facts) -> Decision {
    let Some(chosen) = chosen else {
        return Decision::deny(
            None,
            "no policy matches".into(),
            format!(
                "no policy matches container {}; add a catch-all policy (`match: {{}}`) so every container gets limits",
                facts.id
            ),
        );
    };
    let Some(base) = &chosen.baseline else {
        return decide_with(&chosen.policy, facts, chosen.why);
    };
    let (policy, notes) = bounded_by(&chosen.policy, base);
    let mut d = decide_with(&policy, facts, chosen.why);
    d.notes.splice(0..0, notes);
    if !d.is_denied() {
        held_to_baseline(&mut d, &chosen.policy.name, base);
    }
    d
}

/// What the bounds alone do not catch: `audit` keeps what was asked, and a
/// policy's `high` may be looser than the baseline's. Neither may give more
/// than the baseline would: limits above its maximum come down to it, and
/// `memory.high` is at most what the baseline's `high` gives the final
/// limit.
fn held_to_baseline(d: &mut Decision, name: &str, base: &Policy) {
    let l = &mut d.limits;
    for (field, value, cap) in [
        ("memory", &mut l.memory, base.memory.max),
        ("swap", &mut l.swap, base.swap.max),
    ] {
        let cap = to_page(cap);
        if *value > cap {
            d.notes.push(format!(
                "{field} {value} kept by {name:?} is held to {cap}, the max of {:?}: it was selected through facts the container's creator sets",
                base.name
            ));
            *value = cap;
            for f in d.findings.iter_mut().filter(|f| f.field == field) {
                f.result = f.result.min(cap);
            }
        }
    }
    let Some(bh) = base
        .high
        .and_then(|h| derive_high(h, l.memory))
        .map(to_page)
    else {
        return;
    };
    if l.high.is_none_or(|h| h > bh) {
        d.notes.push(format!(
            "high {} of {name:?} is held to {bh}, what the high of {:?} gives: it was selected through facts the container's creator sets",
            l.high.unwrap_or(Limit::Unlimited),
            base.name
        ));
        l.high = Some(bh);
    }
}

/// Caps a policy selected through container-controlled keys at the
/// baseline's maximum: defaults, minimums and maximums above it come down
/// to it, so a label cannot buy a container more than the operator's own
/// selection gives it. Lower bounds stay as written.
fn bounded_by(policy: &Policy, base: &Policy) -> (Policy, Vec<String>) {
    let mut p = policy.clone();
    let mut notes = Vec::new();
    for (field, b, cap) in [
        ("memory", &mut p.memory, base.memory.max),
        ("swap", &mut p.swap, base.swap.max),
    ] {
        if b.max <= cap {
            continue;
        }
        notes.push(format!(
            "{field} max {} of {:?} is capped at {cap}, the max of {:?}: it was selected through facts the container's creator sets",
            b.max, policy.name, base.name
        ));
        b.max = cap;
        b.default = b.default.map(|d| d.min(cap));
        if let Limit::Bytes(c) = cap {
            b.min = b.min.min(c);
        }
    }
    (p, notes)
}

/// Applies one policy to a container's request.
pub fn decide_with(policy: &Policy, facts: &Facts, why: String) -> Decision {
    let req = facts.requested;
    let mut notes = Vec::new();
    let swap_ask = match (req.memory, req.memory_swap) {
        (_, None) => None,
        (_, Some(Limit::Unlimited)) => Some(Limit::Unlimited),
        (Some(Limit::Bytes(m)), Some(Limit::Bytes(s))) => {
            if s < m {
                return Decision::deny(
                    Some(policy),
                    why,
                    format!(
                        "memory+swap limit {} is less than memory limit {}: memory+swap must be at least the memory limit (as docker requires of --memory-swap)",
                        Limit::Bytes(s),
                        Limit::Bytes(m)
                    ),
                );
            }
            Some(Limit::Bytes(s - m))
        }
        (_, Some(Limit::Bytes(s))) => {
            notes.push(format!(
                "memory+swap {} was given without a memory limit; the swap request is ignored",
                Limit::Bytes(s)
            ));
            None
        }
    };
    let mut findings = Vec::new();
    let memory = match bound(
        "memory",
        req.memory,
        &policy.memory,
        policy.on_violation,
        &mut findings,
    ) {
        Ok(m) => m,
        Err(Refusal(m)) => return denied(policy, why, m, findings),
    };
    let mut swap = match bound(
        "swap",
        swap_ask,
        &policy.swap,
        policy.on_violation,
        &mut findings,
    ) {
        Ok(s) => s,
        Err(Refusal(m)) => return denied(policy, why, m, findings),
    };
    if memory == Limit::Unlimited && swap != Limit::Unlimited {
        notes.push(format!(
            "swap {swap} cannot be bounded without a memory limit; swap left unlimited"
        ));
        swap = Limit::Unlimited;
    }
    let high = policy.high.and_then(|h| derive_high(h, memory));
    Decision {
        policy: Some(policy.name.clone()),
        origin: Some(policy.origin.to_string()),
        why,
        verdict: Verdict::Apply,
        limits: Limits {
            memory: to_page(memory),
            swap: to_page(swap),
            high: high.map(to_page),
        },
        findings,
        notes,
    }
}

fn denied(policy: &Policy, why: String, detail: String, findings: Vec<Finding>) -> Decision {
    let message = match &policy.message {
        Some(m) => format!("{m} ({detail})"),
        None => detail,
    };
    let mut d = Decision::deny(Some(policy), why, message);
    d.findings = findings;
    d
}

/// Why `deny` refuses a request: the sentence shown to whoever asked.
struct Refusal(String);

/// Resolves one quantity against its bounds. `Err` carries the refusal.
fn bound(
    field: &'static str,
    ask: Option<Limit>,
    b: &Bounds,
    action: Action,
    findings: &mut Vec<Finding>,
) -> Result<Limit, Refusal> {
    let Some(asked) = ask else {
        return Ok(b.default.unwrap_or(b.max));
    };
    let (crossed, nearest) = if asked > b.max {
        (format!("max {}", b.max), b.max)
    } else if asked < Limit::Bytes(b.min) {
        (format!("min {}", Limit::Bytes(b.min)), Limit::Bytes(b.min))
    } else {
        return Ok(asked);
    };
    let result = match action {
        Action::Clamp => nearest,
        Action::Audit => asked,
        Action::Deny => asked,
    };
    let side = if asked > b.max { "above" } else { "below" };
    findings.push(Finding {
        field,
        asked,
        bound: crossed.clone(),
        action,
        result,
    });
    match action {
        Action::Deny => Err(Refusal(format!(
            "{field} {asked} is {side} the policy's {crossed}"
        ))),
        _ => Ok(result),
    }
}

/// Rounds a limit down to a whole page, as the kernel stores it: what is
/// decided and recorded is what the cgroup file reads back, so a later
/// comparison (`apply`, the watcher) never sees a difference that is not one.
fn to_page(l: Limit) -> Limit {
    match l {
        Limit::Bytes(b) => Limit::Bytes(b / PAGE_SIZE * PAGE_SIZE),
        Limit::Unlimited => Limit::Unlimited,
    }
}

fn derive_high(h: High, memory: Limit) -> Option<Limit> {
    match (h, memory) {
        (High::Percent(p), Limit::Bytes(m)) => {
            let v = ((m as f64) * p / 100.0) as u64;
            Some(Limit::Bytes(v / PAGE_SIZE * PAGE_SIZE))
        }
        (High::Percent(_), Limit::Unlimited) => None,
        (High::Size(s), Limit::Bytes(m)) => Some(Limit::Bytes(s.min(m))),
        (High::Size(s), Limit::Unlimited) => Some(Limit::Bytes(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Requested;
    use crate::policy::parse_file;
    use std::path::Path;

    const G: u64 = 1 << 30;
    const M: u64 = 1 << 20;

    fn policy(action: &str) -> Vec<Policy> {
        parse_file(
            Path::new("t.yaml"),
            &format!(
                "name: default\nmemory: {{default: 512M, min: 16M, max: 8G}}\nswap: {{default: 0, max: 1G}}\nhigh: 90%\nonViolation: {action}\n"
            ),
        )
        .unwrap()
    }

    fn ask(memory: Option<i64>, swap: Option<i64>) -> Facts {
        Facts {
            id: "c1".into(),
            requested: Requested::from_oci(memory, swap),
            ..Default::default()
        }
    }

    fn b(n: u64) -> Limit {
        Limit::Bytes(n)
    }

    fn gi(n: i64) -> Option<i64> {
        Some(n << 30)
    }

    fn run(action: &str, memory: Option<i64>, swap: Option<i64>) -> Decision {
        decide(&policy(action), &ask(memory, swap))
    }

    /// Every fact a selector names is the container creator's to set:
    /// whatever selected a policy, it gives no more than the baseline
    /// (here the catch-all: 256M, no swap, high 50%) unless trusted.
    #[test]
    fn creator_set_facts_never_lift_a_container_above_the_baseline() {
        let set = parse_file(
            Path::new("t.yaml"),
            "name: default\nmemory: {default: 64M, max: 256M}\nswap: {max: 0}\nhigh: 50%\n---\nname: ci\npriority: 5\nmatch: {names: [ci-*]}\nmemory: {max: 4G}\nswap: {max: 1G}\n---\nname: db\npriority: 5\nmatch: {images: ['*postgres*']}\nmemory: {default: 4G, max: 16G}\nhigh: off\nonViolation: audit\n---\nname: team\npriority: 5\nmatch: {labels: {team: '*'}}\nmemory: {max: 4G}\nonViolation: audit\n---\nname: vetted\npriority: 6\nmatch: {names: [vetted-*]}\ntrust: [names]\nmemory: {max: 4G}\n",
        )
        .unwrap();
        let facts =
            |name: Option<&str>, image: Option<&str>, label: bool, memory: Option<i64>| Facts {
                id: "c1".into(),
                name: name.map(String::from),
                image: image.map(String::from),
                labels: if label {
                    [("team".to_string(), "x".to_string())].into()
                } else {
                    Default::default()
                },
                requested: Requested::from_oci(memory, None),
                ..Default::default()
            };
        let limits = |f: &Facts| {
            let d = decide(&set, f);
            (
                d.limits.memory,
                d.limits.swap,
                d.limits.high,
                d.notes.join("; "),
                d.why,
            )
        };
        // A name: capped at the baseline's max, swap too.
        let (m, s, h, notes, why) = limits(&facts(Some("ci-evil"), None, false, gi(1)));
        assert_eq!((m, s, h), (b(256 * M), b(0), Some(b(128 * M))), "{notes}");
        assert!(why.contains("selected through name"), "{why}");
        assert!(
            notes.contains("memory max 4G of \"ci\" is capped at 256M"),
            "{notes}"
        );
        // An image and audit: audit keeps what was asked, but not above the
        // baseline; `high: off` does not escape the baseline's high.
        let (m, _, h, notes, _) = limits(&facts(None, Some("evil/postgres:1"), false, gi(2)));
        assert_eq!((m, h), (b(256 * M), Some(b(128 * M))), "{notes}");
        assert!(
            notes.contains("held to 128M, what the high of \"default\" gives"),
            "{notes}"
        );
        let (m, _, _, notes, _) = limits(&facts(None, Some("evil/postgres:1"), false, Some(-1)));
        assert_eq!(m, b(256 * M), "unlimited asked through audit: {notes}");
        // A label and audit: -m 2g keeps at most the baseline's max.
        let (m, ..) = limits(&facts(None, None, true, gi(2)));
        assert_eq!(m, b(256 * M));
        let (m, ..) = limits(&facts(None, None, true, Some(-1)));
        assert_eq!(m, b(256 * M));
        // Below the baseline is kept: lowering is always allowed.
        let (m, ..) = limits(&facts(None, None, true, Some(100 << 20)));
        assert_eq!(m, b(100 * M));
        // What the operator vouches for keeps its own bounds.
        let (m, _, _, notes, _) = limits(&facts(Some("vetted-1"), None, false, gi(1)));
        assert_eq!(m, b(G), "{notes}");
    }

    /// A pod's namespace and container type are the runtime's facts: a
    /// namespace policy keeps its own bounds. Its pod and container names
    /// are its author's: held to the baseline unless trusted.
    #[test]
    fn namespaces_are_the_runtimes_and_pod_names_the_authors() {
        let set = parse_file(
            Path::new("k.yaml"),
            "name: default\nmemory: {default: 64M, max: 256M}\nswap: {max: 0}\n---\nname: batch\npriority: 5\nmatch: {namespaces: [batch], containerTypes: [container]}\nmemory: {default: 1G, max: 4G}\n---\nname: pause\npriority: 9\nmatch: {containerTypes: [sandbox]}\nmemory: {default: 32M, max: 32M}\n---\nname: db-pods\npriority: 6\nmatch: {namespaces: [batch], pods: [db-*]}\nmemory: {max: 16G}\n---\nname: vetted\npriority: 7\nmatch: {namespaces: [prod], pods: [pg-*]}\ntrust: [pods]\nmemory: {max: 16G}\n",
        )
        .unwrap();
        let pod = |ns: &str, pod: &str, kind: ContainerType, memory: Option<i64>| Facts {
            id: "c1".into(),
            namespace: Some(ns.into()),
            pod: Some(pod.into()),
            container_type: Some(kind),
            requested: Requested::from_oci(memory, None),
            ..Default::default()
        };
        use crate::facts::pod::ContainerType;
        let d = decide(&set, &pod("batch", "job-1", ContainerType::Container, None));
        assert_eq!(
            (d.policy.as_deref().unwrap_or(""), d.limits.memory),
            ("batch", b(G))
        );
        let d = decide(
            &set,
            &pod("batch", "job-1", ContainerType::Container, gi(3)),
        );
        assert_eq!(d.limits.memory, b(3 * G), "{:?}", d.notes);
        // The sandbox of the same pod: its own policy.
        let d = decide(&set, &pod("batch", "job-1", ContainerType::Sandbox, None));
        assert_eq!(
            (d.policy.as_deref().unwrap_or(""), d.limits.memory),
            ("pause", b(32 * M))
        );
        // Another namespace: the catch-all.
        let d = decide(
            &set,
            &pod("default", "job-1", ContainerType::Container, gi(3)),
        );
        assert_eq!(
            (d.policy.as_deref().unwrap_or(""), d.limits.memory),
            ("default", b(256 * M))
        );
        // A pod named to match: held to the baseline, here `batch`'s 4G.
        let d = decide(&set, &pod("batch", "db-1", ContainerType::Container, gi(8)));
        assert_eq!(d.policy.as_deref(), Some("db-pods"));
        assert_eq!(d.limits.memory, b(4 * G), "{:?}", d.notes);
        assert!(d.why.contains("selected through pod"), "{}", d.why);
        // Trusted pod names keep their bounds.
        let d = decide(&set, &pod("prod", "pg-1", ContainerType::Container, gi(8)));
        assert_eq!(
            (d.policy.as_deref().unwrap_or(""), d.limits.memory),
            ("vetted", b(8 * G))
        );
        // No pod facts (not a CRI container): no namespace policy.
        let d = decide(
            &set,
            &Facts {
                id: "c2".into(),
                ..Default::default()
            },
        );
        assert_eq!(d.policy.as_deref(), Some("default"));
    }

    #[test]
    fn decided_sizes_are_whole_pages() {
        let p = &parse_file(
            Path::new("p.yaml"),
            "name: p\nmemory: {max: 100000001}\nswap: {max: 1000001}\nhigh: 5000000\nonViolation: audit\n",
        )
        .unwrap()[0];
        let mut f = Facts {
            requested: Requested::from_oci(Some(99_999_999), Some(100_999_999)),
            ..Default::default()
        };
        let d = decide_with(p, &f, String::new());
        assert_eq!(d.limits.memory, Limit::Bytes(99_999_999 / 4096 * 4096));
        assert_eq!(d.limits.swap, Limit::Bytes(1_000_000 / 4096 * 4096));
        assert_eq!(d.limits.high, Some(Limit::Bytes(5_000_000 / 4096 * 4096)));
        // Audit keeps what was asked above max, rounded as the kernel stores it.
        f.requested = Requested::from_oci(Some(200_000_001), None);
        let d = decide_with(p, &f, String::new());
        assert_eq!(d.limits.memory, Limit::Bytes(200_000_001 / 4096 * 4096));
    }

    #[test]
    fn nothing_asked_gets_defaults() {
        let d = run("clamp", None, None);
        assert_eq!(d.verdict, Verdict::Apply);
        assert_eq!(d.limits.memory, b(512 * M));
        assert_eq!(d.limits.swap, b(0));
        assert_eq!(d.limits.memory_swap(), b(512 * M));
        assert_eq!(
            d.limits.high,
            Some(b(512 * M * 9 / 10 / PAGE_SIZE * PAGE_SIZE))
        );
        assert!(d.findings.is_empty());
        // OCI 0 means unset, as runc reads it.
        assert_eq!(run("clamp", Some(0), Some(0)).limits, d.limits);
    }

    #[test]
    fn within_bounds_is_kept() {
        let d = run("deny", gi(2), gi(2).map(|v| v + (512 << 20)));
        assert_eq!(d.verdict, Verdict::Apply);
        assert_eq!(d.limits.memory, b(2 * G));
        assert_eq!(d.limits.swap, b(512 * M));
        assert_eq!(d.limits.memory_swap(), b(2 * G + 512 * M));
    }

    #[test]
    fn unlimited_memory_per_action() {
        let d = run("clamp", Some(-1), None);
        assert_eq!(d.limits.memory, b(8 * G));
        assert_eq!(d.findings[0].bound, "max 8G");
        let d = run("deny", Some(-1), None);
        assert!(d.is_denied());
        let Verdict::Deny { message } = &d.verdict else {
            unreachable!()
        };
        assert!(
            message.contains("memory unlimited is above the policy's max 8G"),
            "{message}"
        );
        let d = run("audit", Some(-1), None);
        assert_eq!(d.verdict, Verdict::Apply);
        assert_eq!(d.limits.memory, Limit::Unlimited);
        assert_eq!(
            d.limits.swap,
            Limit::Unlimited,
            "swap cannot be bounded without memory"
        );
        assert_eq!(d.findings.len(), 1);
        assert_eq!(d.findings[0].action, Action::Audit);
        assert_eq!(d.notes.len(), 1);
    }

    #[test]
    fn above_max_per_action() {
        let d = run("clamp", gi(16), None);
        assert_eq!(d.limits.memory, b(8 * G));
        assert_eq!(d.findings[0].asked, b(16 * G));
        assert!(run("deny", gi(16), None).is_denied());
        let d = run("audit", gi(16), None);
        assert_eq!(d.limits.memory, b(16 * G));
        assert_eq!(
            d.limits.high,
            Some(b(16 * G / 10 * 9 / PAGE_SIZE * PAGE_SIZE))
        );
    }

    #[test]
    fn below_min_per_action() {
        let d = run("clamp", Some(8 << 20), None);
        assert_eq!(d.limits.memory, b(16 * M));
        assert_eq!(d.findings[0].bound, "min 16M");
        assert!(run("deny", Some(8 << 20), None).is_denied());
        assert_eq!(run("audit", Some(8 << 20), None).limits.memory, b(8 * M));
    }

    #[test]
    fn swap_is_taken_before_clamping() {
        // -m 16g --memory-swap 16g asks for no swap and keeps none.
        let d = run("clamp", gi(16), gi(16));
        assert_eq!(d.limits.memory, b(8 * G));
        assert_eq!(d.limits.swap, b(0));
        assert_eq!(d.limits.memory_swap(), b(8 * G));
        // -m 16g --memory-swap 20g asks for 4g swap: clamped to 1g on top of 8g.
        let d = run("clamp", gi(16), gi(20));
        assert_eq!(d.limits.memory_swap(), b(9 * G));
        assert_eq!(d.findings.len(), 2);
    }

    #[test]
    fn docker_default_swap_is_twice_memory() {
        // `-m 1g` alone arrives as swap = 2g, i.e. 1g of swap on top.
        let d = run("clamp", gi(1), gi(2));
        assert_eq!(d.limits.memory, b(G));
        assert_eq!(d.limits.swap, b(G));
        let d = run("clamp", Some(512 << 20), Some(1024 << 20));
        assert_eq!(d.limits.swap, b(512 * M));
    }

    #[test]
    fn unlimited_swap_per_action() {
        let d = run("clamp", gi(1), Some(-1));
        assert_eq!(d.limits.swap, b(G));
        assert!(run("deny", gi(1), Some(-1)).is_denied());
        assert_eq!(run("audit", gi(1), Some(-1)).limits.swap, Limit::Unlimited);
    }

    #[test]
    fn swap_less_than_memory_is_refused_whatever_the_action() {
        for a in ["clamp", "deny", "audit"] {
            let d = run(a, gi(2), gi(1));
            assert!(d.is_denied(), "{a}");
        }
    }

    #[test]
    fn swap_without_memory_is_ignored() {
        let d = run("deny", None, gi(2));
        assert_eq!(d.verdict, Verdict::Apply);
        assert_eq!(d.limits.memory, b(512 * M));
        assert_eq!(d.limits.swap, b(0));
        assert_eq!(d.notes.len(), 1);
    }

    #[test]
    fn no_match_is_refused() {
        let p = parse_file(Path::new("t"), "name: web\nmatch: {names: [web]}\n").unwrap();
        let d = decide(&p, &ask(None, None));
        assert!(d.is_denied());
        assert_eq!(d.policy, None);
    }

    #[test]
    fn deny_uses_the_policys_message() {
        let p = parse_file(
            Path::new("t"),
            "name: strict\nmemory: {max: 1g}\nonViolation: deny\nmessage: ask the platform team\n",
        )
        .unwrap();
        let d = decide(&p, &ask(gi(2), None));
        let Verdict::Deny { message } = d.verdict else {
            panic!()
        };
        assert!(message.starts_with("ask the platform team"), "{message}");
        assert!(
            message.contains("memory 2G is above the policy's max 1G"),
            "{message}"
        );
    }

    #[test]
    fn no_default_falls_back_to_max() {
        let p = parse_file(Path::new("t"), "name: x\nmemory: {max: 1g}\n").unwrap();
        let d = decide(&p, &ask(None, None));
        assert_eq!(d.limits.memory, b(G));
        assert_eq!(d.limits.swap, Limit::Unlimited);
        assert_eq!(d.limits.high, None);
    }

    #[test]
    fn high_as_a_size_is_capped_by_the_limit() {
        let p = parse_file(Path::new("t"), "name: x\nmemory: {default: 1g}\nhigh: 2g\n").unwrap();
        assert_eq!(decide(&p, &ask(None, None)).limits.high, Some(b(G)));
        let p = parse_file(
            Path::new("t"),
            "name: x\nmemory: {default: 1g}\nhigh: 256m\n",
        )
        .unwrap();
        assert_eq!(decide(&p, &ask(None, None)).limits.high, Some(b(256 * M)));
    }

    /// Property: whatever is asked, a clamp policy yields limits within bounds,
    /// memory+swap >= memory, and high <= memory.
    #[test]
    fn clamp_always_lands_within_bounds() {
        let p = policy("clamp");
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let pick = |r: u64| -> Option<i64> {
                match r % 5 {
                    0 => None,
                    1 => Some(-1),
                    2 => Some(0),
                    _ => Some((r >> 8) as i64 % (20 << 30)),
                }
            };
            let (m, s) = (pick(next()), pick(next()));
            let d = decide(&p, &ask(m, s));
            if d.is_denied() {
                // Only an inconsistent request may be refused under clamp.
                let (Some(m), Some(s)) = (m, s) else {
                    panic!("{m:?} {s:?}")
                };
                assert!(s > 0 && m > 0 && s < m, "{m} {s}");
                continue;
            }
            let l = d.limits;
            assert!(
                l.memory >= b(16 * M) && l.memory <= b(8 * G),
                "{m:?} {s:?} {l:?}"
            );
            assert!(l.swap <= b(G), "{m:?} {s:?} {l:?}");
            assert!(l.memory_swap() >= l.memory);
            assert!(l.high.is_some_and(|h| h <= l.memory));
        }
    }

    const TRUST: &str = "name: default\nmemory: {max: 2G}\nswap: {max: 0}\n---\nname: big\npriority: 10\nmatch: {labels: {tier: batch}}\nmemory: {default: 4G, min: 3G, max: 16G}\nswap: {max: 4G}\n";

    fn labelled(text: &str, memory: Option<i64>) -> Decision {
        let p = parse_file(Path::new("t.yaml"), text).unwrap();
        let f = Facts {
            labels: [("tier".to_string(), "batch".to_string())].into(),
            ..ask(memory, None)
        };
        decide(&p, &f)
    }

    #[test]
    fn a_label_cannot_lift_a_container_above_the_baseline() {
        // Asked 6G: the label policy allows 16G, the baseline only 2G.
        let d = labelled(TRUST, gi(6));
        assert_eq!(d.policy.as_deref(), Some("big"));
        assert_eq!(d.limits.memory, b(2 * G));
        assert_eq!(d.limits.swap, b(0));
        assert!(d.why.contains("tier"), "{}", d.why);
        assert!(d.why.contains("\"default\""), "{}", d.why);
        assert!(
            d.notes.iter().any(|n| n.contains("memory max 16G")),
            "{:?}",
            d.notes
        );
        // Nothing asked: the default and the min come down to the cap too.
        let d = labelled(TRUST, None);
        assert_eq!(d.limits.memory, b(2 * G));
    }

    #[test]
    fn a_trusted_key_may_lift_it() {
        let text = format!("{TRUST}trust: [tier]\n");
        let d = labelled(&text, gi(6));
        assert_eq!(d.limits.memory, b(6 * G));
        assert_eq!(d.limits.swap, b(4 * G));
        assert!(d.notes.is_empty(), "{:?}", d.notes);
        assert!(!d.why.contains("creator"), "{}", d.why);
    }

    #[test]
    fn a_label_may_always_lower_limits() {
        let text = "name: default\nmemory: {max: 2G}\n---\nname: small\npriority: 10\nmatch: {annotations: {tier: batch}}\nmemory: {max: 256M}\n";
        let p = parse_file(Path::new("t.yaml"), text).unwrap();
        let f = Facts {
            annotations: [("tier".to_string(), "batch".to_string())].into(),
            ..ask(gi(1), None)
        };
        let d = decide(&p, &f);
        assert_eq!(d.limits.memory, b(256 * M));
        assert!(d.notes.is_empty(), "{:?}", d.notes);
    }

    #[test]
    fn without_a_baseline_nothing_caps_and_the_reason_says_so() {
        let text = "name: big\nmatch: {labels: {tier: batch}}\nmemory: {max: 16G}\n";
        let d = labelled(text, gi(6));
        assert_eq!(d.limits.memory, b(6 * G));
        assert!(d.why.contains("no other matching policy"), "{}", d.why);
    }
}
