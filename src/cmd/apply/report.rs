//! The plan or result of `apply`: a table people read, or JSON for scripts.

use crate::cgroup::{Hierarchy, Snapshot};
use crate::cli::Output;
use crate::size::Limit;

use super::discover::Problem;
use super::{Row, Status};

pub fn print(output: Output, rows: &[Row], problems: &[Problem]) {
    if output == Output::Json {
        let out = serde_json::json!({
            "containers": rows,
            "problems": problems.iter().map(|p| serde_json::json!({"container": p.container, "message": p.message})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    let mut table = vec![[
        "CONTAINER".to_string(),
        "SOURCE".into(),
        "POLICY".into(),
        "MEMORY".into(),
        "SWAP".into(),
        "HIGH".into(),
        "STATUS".into(),
    ]];
    for r in rows {
        let (m, s, h) = columns(r);
        table.push([
            r.container.clone(),
            r.source.into(),
            r.policy.clone().unwrap_or_else(|| "-".into()),
            m,
            s,
            h,
            status(r.status).into(),
        ]);
    }
    crate::cmd::print_table(&table);
    for r in rows.iter().filter(|r| r.reason != "within the policy") {
        println!("  {}: {}", r.container, r.reason);
    }
    for p in problems {
        eprintln!("{}: {}", p.container, p.message);
    }
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Compliant => "compliant",
        Status::Fixed => "fixed",
        Status::Held => "HELD",
        Status::WouldFix => "would fix",
        Status::NotFixed => "NOT FIXED",
    }
}

/// `before -> after` per quantity, in the user's terms (swap on top).
fn columns(r: &Row) -> (String, String, String) {
    let Some(b) = r.before else {
        return ("?".into(), "?".into(), "?".into());
    };
    let (bm, bs) = current(&b, r.hierarchy.as_ref());
    let arrow = |from: Limit, to: Option<Limit>| match to {
        Some(t) if t != from => format!("{from} -> {t}"),
        _ => from.to_string(),
    };
    match r.target {
        Some(t) => (
            arrow(bm, Some(t.memory)),
            arrow(bs, Some(t.swap)),
            arrow(b.high, Some(t.high.unwrap_or(Limit::Unlimited))),
        ),
        None => (bm.to_string(), bs.to_string(), b.high.to_string()),
    }
}

fn current(b: &Snapshot, h: Option<&Hierarchy>) -> (Limit, Limit) {
    let swap = match (h, b.swap_file, b.memory) {
        (Some(Hierarchy::V1), Some(Limit::Bytes(ms)), Limit::Bytes(m)) => {
            Limit::Bytes(ms.saturating_sub(m))
        }
        (Some(Hierarchy::V1), Some(l), _) => l,
        (_, Some(l), _) => l,
        (_, None, _) => Limit::Unlimited,
    };
    (b.memory, swap)
}
