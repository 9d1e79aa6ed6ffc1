//! Limits changed outside cglimit: a cgroup's limits against what cglimit
//! last decided for it, with a settling time for cglimit's own changes
//! still under way, turned into `limit_changed` events.

use super::*;

/// The held `limit_changed` events once no decision claimed them within
/// [`SETTLING`] (or at once with `now`), counted.
pub(super) fn release_held(w: &mut Watched, now: bool) -> Vec<Event> {
    match &w.held {
        Some((seen, _)) if now || seen.elapsed() >= SETTLING => {
            let (_, events) = w
                .held
                .take()
                .unwrap_or_else(|| (Instant::now(), Vec::new()));
            w.limit_changes += events.len() as u64;
            events
        }
        _ => Vec::new(),
    }
}

/// `limit_changed` events: each of memory, swap and high that differs from
/// what was known of it, with the file, both values, and who likely
/// changed it.
pub(super) fn limit_changes(w: &Watched, s: &stats::Sample, now: [Option<u64>; 3]) -> Vec<Event> {
    let files = match w.dir.hierarchy {
        Hierarchy::V1 => [
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
        ],
        Hierarchy::V2 => ["memory.max", "memory.swap.max", "memory.high"],
    };
    // Without swap accounting there is no swap file to compare.
    let accounted = |i: usize| i != 1 || s.swap_usage.is_some();
    let changed: Vec<(usize, Option<u64>)> = (0..3)
        .filter(|&i| accounted(i))
        .filter_map(|i| w.limits[i].filter(|b| *b != now[i]).map(|b| (i, b)))
        .collect();
    if changed.is_empty() {
        return Vec::new();
    }
    let value = |v: Option<u64>| match v {
        Some(b) => serde_json::Value::from(b),
        None => "max".into(),
    };
    let unit = crate::sys::systemd::unit_of(&w.cgroup);
    let lifted = changed
        .iter()
        .any(|(i, b)| now[*i].is_none() && b.is_some());
    let likely = match (unit, lifted) {
        (Some(u), true) => format!(
            "likely systemd re-applying {u}'s own properties (daemon-reload, daemon-reexec) or an engine update"
        ),
        (Some(u), false) => format!("likely an engine update or systemctl set-property on {u}"),
        (None, _) => "likely an engine update without cglimit, or a direct write".to_string(),
    };
    changed
        .into_iter()
        .map(|(i, before)| Event {
            counter: Some(files[i].to_string()),
            before: Some(value(before)),
            after: Some(value(now[i])),
            detail: Some(likely.clone()),
            ..w.event("limit_changed", s)
        })
        .collect()
}

/// What a decision record says a cgroup holds now, in the terms of
/// [`stats::Sample`]: its `applied.after` (read back from the cgroup), or,
/// for a decision the runtime writes (wrapper create and update), its
/// limits as the runtime writes them. A value it cannot tell (v1's soft
/// limit under `high: off` stays as the creator set it) is taken from the
/// next reading.
pub(super) fn decided_limits(
    record: &record::DecisionEntry,
    h: &Hierarchy,
) -> [Option<Option<u64>>; 3] {
    let limit = |v: &Option<record::Written>| v.as_ref().and_then(record::Written::limit);
    if let Some(after) = record.applied.as_ref().and_then(|a| a.after.as_ref()) {
        return [
            limit(&after.memory),
            limit(&after.swap_file),
            limit(&after.high),
        ];
    }
    let Some(l) = record.decision.as_ref().and_then(|d| d.limits.as_ref()) else {
        return [None; 3];
    };
    let (Some(memory), Some(swap)) = (limit(&l.memory), limit(&l.swap)) else {
        return [None; 3];
    };
    let swap_file = match h {
        // memory+swap
        Hierarchy::V1 => memory.zip(swap).map(|(m, s)| m.saturating_add(s)),
        // swap on top; none without a memory limit
        Hierarchy::V2 => memory.and(swap),
    };
    let high = match (limit(&l.high), h) {
        (Some(h), _) => Some(h),
        (None, Hierarchy::V2) => Some(None),
        (None, Hierarchy::V1) => None,
    };
    [Some(memory), Some(swap_file), high]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: serde_json::Value) -> record::DecisionEntry {
        record::DecisionEntry::parse(&v.to_string()).unwrap()
    }

    #[test]
    fn what_a_decision_says_the_cgroup_holds() {
        let m = 64u64 << 20;
        // Read back by the hook or apply: as written.
        let r = entry(
            serde_json::json!({"applied": {"after": {"memory": m, "swap_file": "max", "high": m / 2}}}),
        );
        assert_eq!(
            decided_limits(&r, &Hierarchy::V2),
            [Some(Some(m)), Some(None), Some(Some(m / 2))]
        );
        // Written by the runtime (wrapper): in each hierarchy's terms.
        let r = entry(
            serde_json::json!({"decision": {"limits": {"memory": m, "swap": 0, "high": null}}}),
        );
        assert_eq!(
            decided_limits(&r, &Hierarchy::V1),
            [Some(Some(m)), Some(Some(m)), None],
            "v1: memory+swap; the soft limit under high: off is the creator's"
        );
        assert_eq!(
            decided_limits(&r, &Hierarchy::V2),
            [Some(Some(m)), Some(Some(0)), Some(None)]
        );
        let r = entry(
            serde_json::json!({"decision": {"limits": {"memory": "max", "swap": 0, "high": null}}}),
        );
        assert_eq!(
            decided_limits(&r, &Hierarchy::V2),
            [Some(None), Some(None), Some(None)],
            "no swap limit without a memory limit"
        );
        // A refusal or an error: nothing known.
        assert_eq!(
            decided_limits(&entry(serde_json::json!({})), &Hierarchy::V2),
            [None; 3]
        );
        // A value of another kind is not a limit, and the rest still reads.
        let r =
            entry(serde_json::json!({"applied": {"after": {"memory": -1, "swap_file": "max"}}}));
        assert_eq!(decided_limits(&r, &Hierarchy::V2), [None, Some(None), None]);
    }
}
