//! `cglimit recommend`: what each workload's memory limit should be. The
//! observations come from the watcher's history on this host
//! ([`crate::record::history`]) or from a Prometheus holding many
//! watchers' metrics ([`prometheus`]); the sizing is [`crate::sizing`];
//! the output is a table, JSON, policies or a diff against the policy
//! directory ([`policies`]). Nothing is applied.

mod policies;
mod prometheus;

use std::process::ExitCode;

use serde::Serialize;

use crate::cli::{RecommendArgs, RecommendOutput};
use crate::facts::workload::Kind;
use crate::record::history::History;
use crate::sizing::{self, Observed, Params};

/// A workload as observed, before sizing.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub workload: String,
    pub kind: Kind,
    pub containers: Vec<String>,
    pub current_limit: Option<u64>,
    pub policy: Option<String>,
    pub observed: Observed,
}

/// One line of the report (`-o json` prints these).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub kind: Kind,
    pub containers: Vec<String>,
    #[serde(flatten)]
    pub observed: Observed,
    pub current_limit_bytes: Option<u64>,
    pub policy: Option<String>,
    pub leak_suspected: bool,
    pub leak_growth_bytes_per_second: Option<f64>,
    /// The recommended `memory` `max` (and `default`); null when there is
    /// no recommendation.
    pub recommended_bytes: Option<u64>,
    /// The same, as a policy writes it.
    pub recommended: Option<String>,
    pub confidence: f64,
    pub reason: String,
    /// What the policy change for it is (`-o diff`, `-o yaml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

/// Why there is nothing to recommend from.
#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    #[error(transparent)]
    History(#[from] crate::record::history::HistoryError),
    #[error(
        "no history in {0}: run `cglimit watch --state-dir` on that directory for a while, or pass --prometheus"
    )]
    NoHistory(String),
    #[error("{0}")]
    Prometheus(#[from] prometheus::PromError),
    #[error("--margin {0}: a percentage from 0 to 1000")]
    Margin(f64),
    #[error(transparent)]
    Policies(#[from] policies::PolicyProblem),
}

pub fn run(args: &RecommendArgs) -> ExitCode {
    match report(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cglimit recommend: {e}");
            ExitCode::from(1)
        }
    }
}

fn report(args: &RecommendArgs) -> Result<(), RecommendError> {
    if !(0.0..=1000.0).contains(&args.margin) {
        return Err(RecommendError::Margin(args.margin));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let since = now.saturating_sub(args.since.as_secs());
    let mut seen = match &args.prometheus {
        Some(url) => prometheus::observe(url, args.since)?,
        None => from_history(args, since)?,
    };
    if !args.workloads.is_empty() {
        seen.retain(|s| args.workloads.contains(&s.workload));
    }
    let params = Params {
        margin: args.margin / 100.0,
        min_history_seconds: args.min_history.as_secs(),
    };
    let mut rows: Vec<Row> = seen.into_iter().map(|s| size(s, &params)).collect();
    match args.output {
        RecommendOutput::Table => print_table(&rows),
        RecommendOutput::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        RecommendOutput::Yaml | RecommendOutput::Diff => {
            let plan = policies::plan(&mut rows, &args.policy_dir)?;
            for note in &plan.notes {
                eprintln!("cglimit recommend: {note}");
            }
            if args.output == RecommendOutput::Yaml {
                print!("{}", plan.yaml());
            } else {
                print!("{}", plan.diff());
            }
        }
    }
    Ok(())
}

/// The workloads of this host's history, summed up since `since`.
fn from_history(args: &RecommendArgs, since: u64) -> Result<Vec<Seen>, RecommendError> {
    let path = History::path(&args.state_dir);
    if !path.exists() {
        return Err(RecommendError::NoHistory(path.display().to_string()));
    }
    let h = History::load(&args.state_dir)?;
    Ok(h.workloads
        .iter()
        .filter(|(_, w)| w.last >= since)
        .map(|(k, w)| {
            let s = w.summary(since);
            Seen {
                workload: k.clone(),
                kind: w.kind,
                containers: w.containers.clone(),
                current_limit: w.limit,
                policy: w.policy.clone(),
                observed: Observed {
                    samples: s.samples,
                    span_seconds: s.span_seconds,
                    peak_bytes: s.peak,
                    p99_bytes: s.p99,
                    oom_kills: s.oom_kills,
                    oom_usage: s.oom_usage,
                    limit_hits: s.limit_hits,
                    leak: s.leak,
                },
            }
        })
        .collect())
}

fn size(s: Seen, params: &Params) -> Row {
    let r = sizing::recommend(&s.observed, params);
    Row {
        leak_suspected: s.observed.leak.is_some(),
        leak_growth_bytes_per_second: s.observed.leak.as_ref().map(|l| l.0),
        recommended_bytes: r.limit.as_ref().map(|l| l.1),
        recommended: r.limit.map(|l| l.0),
        confidence: (r.confidence * 100.0).round() / 100.0,
        reason: r.reason,
        workload: s.workload,
        kind: s.kind,
        containers: s.containers,
        observed: s.observed,
        current_limit_bytes: s.current_limit,
        policy: s.policy,
        change: None,
    }
}

fn print_table(rows: &[Row]) {
    let h = |b: u64| crate::size::human_rounded(b);
    let mut t = vec![
        [
            "WORKLOAD",
            "CONTAINERS",
            "SPAN",
            "PEAK",
            "P99",
            "OOM",
            "LIMIT",
            "POLICY",
            "RECOMMEND",
            "WHY",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        t.push(vec![
            r.workload.clone(),
            r.containers.len().to_string(),
            crate::time::human_duration(r.observed.span_seconds),
            h(r.observed.peak_bytes),
            h(r.observed.p99_bytes),
            r.observed.oom_kills.to_string(),
            r.current_limit_bytes.map(h).unwrap_or_else(|| "-".into()),
            r.policy.clone().unwrap_or_else(|| "-".into()),
            r.recommended.clone().unwrap_or_else(|| "-".into()),
            r.reason.clone(),
        ]);
    }
    super::print_table(&t);
}
