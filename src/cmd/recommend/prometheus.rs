//! The same observations as the watcher's history, from a Prometheus that
//! scrapes the watchers of many hosts: one query per quantity, each
//! aggregated `by (workload)` across every host and container, so the
//! fleet's replicas of a service are one workload.
//!
//! The client speaks HTTP/1.0 (one GET, the body read to the end): what the
//! query API needs, with nothing for TLS or proxies; put Prometheus behind
//! a local address or a tunnel for those.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::Seen;
use crate::facts::workload::Kind;

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error(
        "--prometheus {0}: expected http://HOST:PORT (https is not spoken; use a local address)"
    )]
    Url(String),
    #[error("Prometheus at {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Prometheus at {url}: {what}")]
    Answer { url: String, what: String },
}

/// A series' labels.
type Labels = BTreeMap<String, String>;

struct Api {
    url: String,
    host: String,
    prefix: String,
}

const WS: &str = "cglimit_memory_working_set_bytes";
const OOM: &str = "cglimit_oom_kills_total";
const HITS: &str = "cglimit_memory_failcnt_total";

pub fn observe(url: &str, since: Duration) -> Result<Vec<Seen>, PromError> {
    let api = Api::new(url)?;
    let s = format!("{}s", since.as_secs().max(1));
    // Subqueries for first and last sample: a step of a two-thousandth of
    // the window, at least a second.
    let step = format!("{}s", (since.as_secs() / 2000).max(1));
    let by = |q: String| format!("max by (workload) ({q})");
    let peak = api.values(&by(format!("max_over_time({WS}[{s}])")))?;
    let p99 = api.values(&by(format!("quantile_over_time(0.99, {WS}[{s}])")))?;
    let samples = api.values(&format!("sum by (workload) (count_over_time({WS}[{s}]))"))?;
    let first = api.values(&format!(
        "min by (workload) (min_over_time(timestamp({WS})[{s}:{step}]))"
    ))?;
    let last = api.values(&by(format!("max_over_time(timestamp({WS})[{s}:{step}])")))?;
    // Rises within the window, and the whole count of a series born in it
    // (a kill before any scrape saw the counter at 0).
    let rises = |c: &str| {
        format!(
            "sum by (workload) (((max_over_time({c}[{s}]) - min_over_time({c}[{s}])) + (min_over_time({c}[{s}]) unless {c} offset {s})) or (max_over_time({c}[{s}]) - min_over_time({c}[{s}])))"
        )
    };
    let ooms = api.values(&rises(OOM))?;
    let hits = api.values(&rises(HITS))?;
    // Killed at its limit: the limit of a container with kills.
    let oom_usage = api.values(&by(format!(
        "max_over_time(cglimit_memory_limit_bytes[{s}]) and on (id, instance) (max_over_time({OOM}[{s}]) > 0)"
    )))?;
    let leak = api.values(&by(format!("max_over_time(cglimit_leak_suspected[{s}])")))?;
    let growth = api.values(&by(format!(
        "max_over_time(cglimit_leak_growth_bytes_per_second[{s}])"
    )))?;
    let limit = api.values(&by(format!(
        "last_over_time(cglimit_memory_limit_bytes[{s}])"
    )))?;
    let info = api.series(&format!(
        "max by (workload, workload_kind, name, id, policy) (last_over_time(cglimit_container_info[{s}]))"
    ))?;
    let mut out = Vec::new();
    for (w, peak) in &peak {
        let get = |m: &BTreeMap<String, f64>| m.get(w).copied();
        let mine: Vec<&BTreeMap<String, String>> = info
            .iter()
            .filter(|l| l.get("workload") == Some(w))
            .collect();
        let mut containers: Vec<String> = mine
            .iter()
            .map(|l| {
                l.get("name")
                    .filter(|n| !n.is_empty())
                    .or(l.get("id"))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        containers.sort();
        containers.dedup();
        let kind = mine
            .iter()
            .find_map(|l| l.get("workload_kind"))
            .and_then(|k| serde_json::from_value(serde_json::Value::String(k.clone())).ok())
            .unwrap_or(Kind::Name);
        let policy = mine
            .iter()
            .filter_map(|l| l.get("policy"))
            .find(|p| !p.is_empty())
            .cloned();
        let oom_kills = get(&ooms).unwrap_or(0.0).round() as u64;
        out.push(Seen {
            workload: w.clone(),
            kind,
            containers,
            current_limit: get(&limit).map(|v| v as u64),
            policy,
            observed: crate::sizing::Observed {
                samples: get(&samples).unwrap_or(0.0) as u64,
                span_seconds: match (get(&first), get(&last)) {
                    (Some(f), Some(l)) => (l - f).max(0.0) as u64,
                    _ => 0,
                },
                peak_bytes: *peak as u64,
                p99_bytes: get(&p99).unwrap_or(0.0) as u64,
                oom_kills,
                oom_usage: get(&oom_usage).map(|v| v as u64),
                limit_hits: get(&hits).unwrap_or(0.0).round() as u64,
                leak: (get(&leak) == Some(1.0)).then(|| (get(&growth).unwrap_or(0.0), None)),
            },
        });
    }
    Ok(out)
}

impl Api {
    fn new(url: &str) -> Result<Api, PromError> {
        let bad = || PromError::Url(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (host, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let host = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        Ok(Api {
            url: url.to_string(),
            host,
            prefix: prefix.to_string(),
        })
    }

    /// An instant query's result: each series' labels and value.
    fn query(&self, q: &str) -> Result<Vec<(Labels, f64)>, PromError> {
        let io = |source| PromError::Io {
            url: self.url.clone(),
            source,
        };
        let answer = |what: String| PromError::Answer {
            url: self.url.clone(),
            what,
        };
        let mut s = TcpStream::connect(&self.host).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(io)?;
        write!(
            s,
            "GET {}/api/v1/query?query={} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
            self.prefix,
            crate::sys::engine::percent_encode(q),
            self.host
        )
        .map_err(io)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(io)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| answer("no HTTP answer".into()))?;
        let doc: serde_json::Value = serde_json::from_str(body).map_err(|_| {
            answer(format!(
                "not the query API ({})",
                head.lines().next().unwrap_or("")
            ))
        })?;
        if doc["status"] != "success" {
            return Err(answer(format!(
                "{} for {q}",
                doc["error"].as_str().unwrap_or("error")
            )));
        }
        let mut out = Vec::new();
        for r in doc["data"]["result"].as_array().into_iter().flatten() {
            let labels = r["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let v = r["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite());
            if let Some(v) = v {
                out.push((labels, v));
            }
        }
        Ok(out)
    }

    /// Values by workload.
    fn values(&self, q: &str) -> Result<BTreeMap<String, f64>, PromError> {
        Ok(self
            .query(q)?
            .into_iter()
            .filter_map(|(l, v)| l.get("workload").cloned().map(|w| (w, v)))
            .filter(|(w, _)| !w.is_empty())
            .collect())
    }

    fn series(&self, q: &str) -> Result<Vec<BTreeMap<String, String>>, PromError> {
        Ok(self.query(q)?.into_iter().map(|(l, _)| l).collect())
    }
}
