//! Prometheus text exposition on `--listen`, rendered by the watcher's
//! loop when a scrape asks, from its latest readings: a scrape costs no
//! cgroup reads.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::journal::Who;
use super::stats::Sample;

/// One watched container, as the metrics see it.
pub struct Row<'a> {
    pub who: &'a Who,
    /// Its workload (`facts::workload`): what `recommend` groups by.
    pub workload: &'a str,
    pub workload_kind: crate::facts::workload::Kind,
    pub policy: Option<&'a str>,
    pub sample: &'a Sample,
    /// Watcher-counted OOM notifications (v1 eventfd), kernel counters otherwise.
    pub oom_total: u64,
    pub leak_rate: f64,
    pub leak_suspected: bool,
    /// `limit_changed` events seen for this container.
    pub limit_changes: u64,
    /// When its cgroup was found gone (seconds since the epoch); its series
    /// stay, frozen, for the retention window.
    pub gone_at: Option<f64>,
}

/// Host-wide counters: they exist from the watcher's start (at 0), so an
/// alert on their increase fires for the first event too.
pub struct Host<'a> {
    pub totals: &'a std::collections::BTreeMap<&'static str, u64>,
    pub decisions: &'a std::collections::BTreeMap<(String, String), u64>,
    /// Containers whose notifications could not be set up (retried).
    pub unarmed: u64,
    /// Readings of live cgroups that failed.
    pub read_failures: u64,
}

/// The kinds of `cglimit_host_events_total`.
pub const HOST_KINDS: [&str; 8] = [
    "oom_kill",
    "oom",
    "limit_hit",
    "high",
    "leak_suspected",
    "limit_changed",
    "pressure",
    "runtime_bypassed",
];

/// The event kinds counted in a host kind (v1 `failcnt` and v2 `max` are
/// both the limit being hit).
pub fn host_kind(event: &str) -> Option<&'static str> {
    match event {
        "failcnt" | "max" => Some("limit_hit"),
        e => HOST_KINDS.iter().find(|k| **k == e).copied(),
    }
}

/// Sources and outcomes of `cglimit_decisions_total` present from the
/// start (what to alert on: refusals and failures).
pub const DECISION_KEYS: [(&str, &str); 13] = [
    ("hook", "applied"),
    ("hook", "denied"),
    ("hook", "error"),
    ("hook", "failed-open"),
    ("runtime", "applied"),
    ("runtime", "denied"),
    ("runtime", "error"),
    ("runtime", "failed-open"),
    ("update", "applied"),
    ("update", "denied"),
    ("update", "error"),
    ("apply", "applied"),
    ("watch", "applied"),
];

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '"', '\n']) {
        return s.into();
    }
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// One sample line, `name{labels[,extra]} value`, written piece by piece:
/// at 10,000 containers a render is 200,000 of them. Each `push_str` is a
/// call to the C library's `memcpy` (musl's starts every copy with string
/// instructions, slow for a few bytes): the fixed one-byte pieces are
/// pushed as bytes, an empty `extra` not at all, and a whole number's
/// digits are written in one piece, not through the formatter.
fn line(o: &mut String, name: &str, labels: &str, extra: &str, value: impl Into<Value>) {
    o.push_str(name);
    o.push('{');
    o.push_str(labels);
    if !extra.is_empty() {
        o.push_str(extra);
    }
    o.push('}');
    o.push(' ');
    match value.into() {
        Value::Int(v) => digits(o, v),
        // What `{}` writes of a whole number is its integer's digits.
        Value::Float(v) if v.fract() == 0.0 && v.abs() < 1e15 => {
            if v < 0.0 {
                o.push('-');
            }
            digits(o, v.abs() as u64);
        }
        Value::Float(v) => {
            let _ = write!(o, "{v}");
        }
    }
    o.push('\n');
}

/// `v` in decimal, as `{}` writes it.
fn digits(o: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    o.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

pub fn render(rows: &[Row], host: &Host) -> String {
    let mut o = String::with_capacity(rows.len() * 2048);
    let mut family = |name: &str, kind: &str, help: &str, f: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        f(&mut o);
    };
    // Each row's labels, written once for its twenty series.
    let labels: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "id=\"{}\",name=\"{}\",image=\"{}\",workload=\"{}\"",
                esc(&r.who.id),
                esc(r.who.name.as_deref().unwrap_or("")),
                esc(r.who.image.as_deref().unwrap_or("")),
                esc(r.workload)
            )
        })
        .collect();
    let rows = || rows.iter().zip(labels.iter().map(String::as_str));
    type Get = fn(&Row) -> Option<f64>;
    let series: [(&str, &str, &str, Get); 10] = [
        (
            "cglimit_memory_usage_bytes",
            "gauge",
            "Memory in use, page cache included (v2 memory.current, v1 memory.usage_in_bytes).",
            |r| Some(r.sample.usage as f64),
        ),
        (
            "cglimit_memory_working_set_bytes",
            "gauge",
            "Memory in use less inactive page cache, as the kubelet and docker stats count it.",
            |r| Some(r.sample.working_set() as f64),
        ),
        (
            "cglimit_memory_limit_bytes",
            "gauge",
            "Memory limit (absent: no limit).",
            |r| r.sample.limit.map(|v| v as f64),
        ),
        (
            "cglimit_memory_high_bytes",
            "gauge",
            "memory.high (v2) / soft limit (v1).",
            |r| r.sample.high.map(|v| v as f64),
        ),
        (
            "cglimit_memory_anon_bytes",
            "gauge",
            "Anonymous memory, the leak detector's input.",
            |r| Some(r.sample.anon as f64),
        ),
        ("cglimit_swap_usage_bytes", "gauge", "Swap in use.", |r| {
            r.sample.swap_usage.map(|v| v as f64)
        }),
        (
            "cglimit_swap_limit_bytes",
            "gauge",
            "Swap the container may use, on top of its memory (absent: no limit).",
            |r| r.sample.swap_only_limit().map(|v| v as f64),
        ),
        (
            "cglimit_memory_swap_limit_bytes",
            "gauge",
            "Memory and swap together, docker's --memory-swap (absent: no limit).",
            |r| r.sample.memory_swap_limit().map(|v| v as f64),
        ),
        (
            "cglimit_leak_growth_bytes_per_second",
            "gauge",
            "Robust (Theil-Sen) growth over the window of the fastest growing kind that can leak (anon, shmem, kernel).",
            |r| Some(r.leak_rate),
        ),
        (
            "cglimit_leak_suspected",
            "gauge",
            "1 while growth is steady enough to suspect a leak.",
            |r| Some(if r.leak_suspected { 1.0 } else { 0.0 }),
        ),
    ];
    for (name, kind, help, get) in series {
        family(name, kind, help, &mut |o| {
            for (r, l) in rows() {
                if let Some(v) = get(r) {
                    line(o, name, l, "", v);
                }
            }
        });
    }
    family(
        "cglimit_memory_bytes",
        "gauge",
        "What the memory is, by kind: anon (processes' own), file (page cache, reclaimable), shmem (tmpfs, /dev/shm: not reclaimable), kernel, sock (socket buffers), swap.",
        &mut |o| {
            for (r, l) in rows() {
                for (kind, v) in r.sample.memory.kinds() {
                    let kind = format!(",kind=\"{kind}\"");
                    line(o, "cglimit_memory_bytes", l, &kind, v);
                }
            }
        },
    );
    family(
        "cglimit_leak_time_to_limit_seconds",
        "gauge",
        "Seconds until the limit at the current growth (only while a leak is suspected).",
        &mut |o| {
            for (r, l) in rows().filter(|(r, _)| r.leak_suspected && r.leak_rate > 0.0) {
                if let Some(limit) = r.sample.limit {
                    let t = limit.saturating_sub(r.sample.usage) as f64 / r.leak_rate;
                    line(o, "cglimit_leak_time_to_limit_seconds", l, "", t);
                }
            }
        },
    );
    family(
        "cglimit_memory_failcnt_total",
        "counter",
        "Times the memory limit was hit (v1 memory.failcnt; v2 memory.events max).",
        &mut |o| {
            for (r, l) in rows() {
                let v = r
                    .sample
                    .counters
                    .get("failcnt")
                    .or(r.sample.counters.get("max"));
                if let Some(v) = v {
                    line(o, "cglimit_memory_failcnt_total", l, "", *v);
                }
            }
        },
    );
    family(
        "cglimit_oom_total",
        "counter",
        "OOM conditions (v2 memory.events oom; v1 OOM notifications seen).",
        &mut |o| {
            for (r, l) in rows() {
                line(o, "cglimit_oom_total", l, "", r.oom_total);
            }
        },
    );
    family(
        "cglimit_oom_kills_total",
        "counter",
        "Processes killed by the OOM killer in this cgroup.",
        &mut |o| {
            for (r, l) in rows() {
                let v = r.sample.counters.get("oom_kill").copied().unwrap_or(0);
                line(o, "cglimit_oom_kills_total", l, "", v);
            }
        },
    );
    family(
        "cglimit_memory_events_total",
        "counter",
        "Memory events by kind (v2 memory.events; v1 failcnt, memsw_failcnt, oom_kill).",
        &mut |o| {
            for (r, l) in rows() {
                for (k, v) in &r.sample.counters {
                    let kind = format!(",kind=\"{}\"", esc(k));
                    line(o, "cglimit_memory_events_total", l, &kind, *v);
                }
            }
        },
    );
    family(
        "cglimit_limit_changes_total",
        "counter",
        "Changes of the memory, swap or high limit that cglimit did not make (limit_changed events).",
        &mut |o| {
            for (r, l) in rows() {
                line(o, "cglimit_limit_changes_total", l, "", r.limit_changes);
            }
        },
    );
    family(
        "cglimit_container_info",
        "gauge",
        "Always 1: a watched container, its workload and the policy of cglimit's last decision for it (empty: none seen).",
        &mut |o| {
            for (r, l) in rows() {
                let _ = writeln!(
                    o,
                    "cglimit_container_info{{{l},workload_kind=\"{}\",policy=\"{}\"}} 1",
                    r.workload_kind.as_str(),
                    esc(r.policy.unwrap_or(""))
                );
            }
        },
    );
    family(
        "cglimit_container_gone_timestamp_seconds",
        "gauge",
        "When a container's cgroup was found gone; its series stay, frozen, for --retention.",
        &mut |o| {
            for (r, l) in rows() {
                if let Some(t) = r.gone_at {
                    let _ = writeln!(o, "cglimit_container_gone_timestamp_seconds{{{l}}} {t:.3}");
                }
            }
        },
    );
    family(
        "cglimit_watched_containers",
        "gauge",
        "Containers being watched (not counting those gone).",
        &mut |o| {
            let n = rows().filter(|(r, _)| r.gone_at.is_none()).count();
            let _ = writeln!(o, "cglimit_watched_containers {n}");
        },
    );
    family(
        "cglimit_notification_failures",
        "gauge",
        "Watched containers whose OOM notification (v1 eventfd, v2 memory.events watch) could not be set up, usually for want of descriptors; retried every 10 ticks.",
        &mut |o| {
            let _ = writeln!(o, "cglimit_notification_failures {}", host.unarmed);
        },
    );
    family(
        "cglimit_read_failures_total",
        "counter",
        "Readings of a live container's cgroup that failed (the container stays watched and is read again).",
        &mut |o| {
            let _ = writeln!(o, "cglimit_read_failures_total {}", host.read_failures);
        },
    );
    family(
        "cglimit_host_events_total",
        "counter",
        "Events recorded on this host since the watcher started, by kind (oom_kill: processes killed; limit_hit: v1 failcnt, v2 max; runtime_bypassed: a container started through a runtime that skips cglimit).",
        &mut |o| {
            for (k, v) in host.totals {
                let _ = writeln!(o, "cglimit_host_events_total{{kind=\"{k}\"}} {v}");
            }
        },
    );
    family(
        "cglimit_decisions_total",
        "counter",
        "Decisions recorded by the hook, the wrapper and apply, by source and outcome (applied, denied, error, failed-open).",
        &mut |o| {
            for ((s, out), v) in host.decisions {
                let _ = writeln!(
                    o,
                    "cglimit_decisions_total{{source=\"{}\",outcome=\"{}\"}} {v}",
                    esc(s),
                    esc(out)
                );
            }
        },
    );
    family(
        "cglimit_build_info",
        "gauge",
        "Always 1: the version and commit of the running watcher.",
        &mut |o| {
            let _ = writeln!(
                o,
                "cglimit_build_info{{version=\"{}\",commit=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                env!("CGLIMIT_COMMIT")
            );
        },
    );
    o
}

/// A scrape asks the watcher's loop for fresh text and waits for it: ten
/// thousand containers make 17 MB of text, so it is rendered only when
/// someone reads it, from the loop's own current readings, handed to the
/// scrapes waiting for it, and not kept once they have it.
pub struct Demand {
    /// Written by a scrape; in the loop's poll set.
    pub wake: EventFd,
    shared: Mutex<Shared>,
    rendered: Condvar,
}

#[derive(Default)]
struct Shared {
    /// Bumped by the loop after each render.
    generation: u64,
    /// Scrapes waiting for a render.
    waiting: usize,
    /// The last render, while a scrape that waited for it has not taken it.
    text: Option<Arc<String>>,
}

/// How long a scrape waits for the loop's render (Prometheus gives up
/// after 10 s by default).
const RENDER_WAIT: Duration = Duration::from_secs(9);

impl Demand {
    pub fn new() -> std::io::Result<Arc<Demand>> {
        Ok(Arc::new(Demand {
            wake: EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
            shared: Mutex::new(Shared::default()),
            rendered: Condvar::new(),
        }))
    }

    /// Whether a scrape waits for a render.
    pub fn wanted(&self) -> bool {
        self.shared.lock().is_ok_and(|s| s.waiting > 0)
    }

    /// Called by the loop with fresh text: for the scrapes waiting.
    pub fn done(&self, text: String) {
        if let Ok(mut s) = self.shared.lock() {
            s.generation += 1;
            s.text = (s.waiting > 0).then(|| Arc::new(text));
        }
        self.rendered.notify_all();
    }

    /// Asks for a render and waits for it (at most [`RENDER_WAIT`]); the
    /// last scrape to take a render lets it go.
    fn fresh(&self) -> Option<Arc<String>> {
        let mut s = self.shared.lock().ok()?;
        let before = s.generation;
        s.waiting += 1;
        let _ = self.wake.write(1);
        let (mut s, _) = self
            .rendered
            .wait_timeout_while(s, RENDER_WAIT, |s| s.generation == before)
            .ok()?;
        let text = (s.generation != before).then(|| s.text.clone()).flatten();
        s.waiting -= 1;
        if s.waiting == 0 {
            s.text = None;
        }
        text
    }
}

/// At most this many connections are served at once; more are closed at
/// once, unanswered.
const MAX_CONNECTIONS: usize = 64;
/// A request must arrive whole within this time, however slowly it trickles.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Requests larger than this are refused.
const MAX_REQUEST: usize = 16 * 1024;

/// Serves `GET /metrics` from `text` until the process ends: each
/// connection on its own thread, with a deadline for its whole request, so
/// a slow or hostile client holds only its own connection.
pub fn serve(listener: TcpListener, demand: Arc<Demand>) {
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(s) = stream else { continue };
            use std::sync::atomic::Ordering;
            if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let (demand, mine) = (Arc::clone(&demand), Arc::clone(&active));
            let spawned = std::thread::Builder::new()
                .name("metrics".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    answer(s, &demand);
                    mine.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    });
}

fn answer(mut s: std::net::TcpStream, demand: &Demand) {
    let deadline = std::time::Instant::now() + REQUEST_DEADLINE;
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || req.len() > MAX_REQUEST {
            return;
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let text;
    let (status, body, ctype) = if path == "/metrics" || path.starts_with("/metrics?") {
        text = demand.fresh();
        match &text {
            Some(t) => (
                "200 OK",
                t.as_str(),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            None => (
                "503 Service Unavailable",
                "the watcher's loop did not render the metrics in time\n",
                "text/plain",
            ),
        }
    } else {
        ("404 Not Found", "try /metrics\n", "text/plain")
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_writes_its_value_as_the_formatter_does() {
        let values: Vec<Value> = [0u64, 7, 10, 999, 1 << 40, u64::MAX]
            .into_iter()
            .map(Value::from)
            .chain(
                [0.0, -0.0, 3.0, -3.0, 0.5, -2.25, 1e15, 1e16, 123456789.0]
                    .into_iter()
                    .map(Value::from),
            )
            .collect();
        for v in values {
            let want = match v {
                Value::Int(i) => format!("m{{a=\"b\",c=\"d\"}} {i}\n"),
                Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
                    format!("m{{a=\"b\",c=\"d\"}} {}\n", f as i64)
                }
                Value::Float(f) => format!("m{{a=\"b\",c=\"d\"}} {f}\n"),
            };
            let mut o = String::new();
            line(&mut o, "m", "a=\"b\"", ",c=\"d\"", v);
            assert_eq!(o, want);
        }
        let mut o = String::new();
        line(&mut o, "m", "a=\"b\"", "", 5u64);
        assert_eq!(o, "m{a=\"b\"} 5\n");
    }

    #[test]
    fn a_render_goes_to_the_scrapes_waiting_and_is_not_kept() {
        let demand = Demand::new().unwrap();
        demand.done("nobody asked".into());
        assert!(demand.shared.lock().unwrap().text.is_none());
        let scrapes: Vec<_> = (0..3)
            .map(|_| {
                let d = Arc::clone(&demand);
                std::thread::spawn(move || d.fresh())
            })
            .collect();
        while demand.shared.lock().unwrap().waiting < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(demand.wanted());
        demand.done("fresh".into());
        for s in scrapes {
            assert_eq!(
                s.join().unwrap().as_deref().map(String::as_str),
                Some("fresh")
            );
        }
        assert!(!demand.wanted());
        assert!(demand.shared.lock().unwrap().text.is_none(), "kept");
    }

    #[test]
    fn renders_counters_and_labels() {
        let who = Who {
            id: "abc".into(),
            name: Some("we\"b".into()),
            image: None,
        };
        let mut s = Sample {
            usage: 10,
            limit: Some(100),
            anon: 5,
            ..Default::default()
        };
        s.counters.insert("oom_kill", 2);
        s.counters.insert("failcnt", 7);
        let rows = [Row {
            who: &who,
            workload: "web",
            workload_kind: crate::facts::workload::Kind::Name,
            policy: Some("default"),
            sample: &s,
            oom_total: 3,
            leak_rate: 1.5,
            leak_suspected: true,
            limit_changes: 4,
            gone_at: None,
        }];
        let totals = HOST_KINDS.iter().map(|k| (*k, 0)).collect();
        let decisions = Default::default();
        let t = render(
            &rows,
            &Host {
                totals: &totals,
                decisions: &decisions,
                unarmed: 0,
                read_failures: 0,
            },
        );
        assert!(
            t.contains("cglimit_host_events_total{kind=\"oom_kill\"} 0"),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "cglimit_build_info{{version=\"{}\",commit=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                env!("CGLIMIT_COMMIT")
            )),
            "{t}"
        );
        assert!(
            t.contains("cglimit_limit_changes_total{id=\"abc\",name=\"we\\\"b\",image=\"\",workload=\"web\"} 4"),
            "{t}"
        );
        assert!(
            t.contains(
                "cglimit_oom_kills_total{id=\"abc\",name=\"we\\\"b\",image=\"\",workload=\"web\"} 2"
            ),
            "{t}"
        );
        assert!(
            t.contains("cglimit_memory_failcnt_total{id=\"abc\",name=\"we\\\"b\",image=\"\",workload=\"web\"} 7"),
            "{t}"
        );
        assert!(
            t.contains("cglimit_memory_limit_bytes{id=\"abc\",name=\"we\\\"b\",image=\"\",workload=\"web\"} 100"),
            "{t}"
        );
        assert!(
            t.contains(
                "cglimit_leak_time_to_limit_seconds{id=\"abc\",name=\"we\\\"b\",image=\"\",workload=\"web\"} 60"
            ),
            "{t}"
        );
        assert!(t.contains("# TYPE cglimit_oom_kills_total counter"));
        assert!(
            t.contains(
                "cglimit_container_info{id=\"abc\",name=\"we\\\"b\",image=\"\",workload=\"web\",workload_kind=\"name\",policy=\"default\"} 1"
            ),
            "{t}"
        );
    }
}
