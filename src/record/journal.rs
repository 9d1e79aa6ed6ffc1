//! The event log: `STATE_DIR/events.jsonl`, one JSON line per event.
//!
//! Appended with one `write(2)` per batch and `fdatasync` before the batch
//! counts as recorded, so a crash loses no acknowledged line; rotated by
//! size to `events.jsonl.1`. On start the watcher reads both back to learn
//! the last value recorded for each counter of each cgroup, so a restart
//! neither loses nor repeats an event.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE: &str = "events.jsonl";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Who {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub time: String,
    /// `oom`, `oom_kill`, `failcnt`, `high`, `max`, `oom_group_kill`,
    /// `leak_suspected`, `leak_cleared`, `drift_corrected`,
    /// `limit_changed`…
    pub kind: String,
    pub container: Who,
    #[serde(default)]
    pub cgroup: String,
    /// The kernel counter that rose (`memory.failcnt`, `memory.events:oom_kill`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<u64>,
    #[serde(default)]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Leak: growth of anonymous memory, bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Leak: seconds until the limit at that rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_limit: Option<f64>,
    /// Pressure: the kernel's `some` line (`avg10=… avg60=… total=…`);
    /// `limit_changed`: who likely changed the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Drift: the policy whose limits were restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Drift: what the cgroup held (a [`crate::cgroup::Snapshot`]); for
    /// `limit_changed`, the file's value before (`max`: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// Drift: the limits restored (a [`crate::decision::Limits`]); for
    /// `limit_changed`, the file's value now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
    /// Drift: where the container was found (`docker`, `runc`, `cgroup`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Leak: the kind of memory that grows (`anon`, `shmem`, `kernel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<String>,
    /// Leak: the process that grew most (its growth over the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<crate::cgroup::procs::Process>,
    /// OOM kill: the process the kernel killed, as its log reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim: Option<crate::sys::kmsg::Victim>,
    /// OOM kill: the largest processes of the kernel's task list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<crate::sys::kmsg::Task>,
    /// OOM kill, leak: what the container's memory was at that moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::cgroup::stats::Breakdown>,
}

pub struct EventLog {
    path: PathBuf,
    max_bytes: u64,
}

impl EventLog {
    pub fn new(state_dir: &Path, max_bytes: u64) -> std::io::Result<EventLog> {
        std::fs::create_dir_all(state_dir)?;
        Ok(EventLog {
            path: state_dir.join(FILE),
            max_bytes,
        })
    }

    /// Appends and syncs a batch; returns once it is on disk.
    pub fn append(&self, events: &[Event]) -> std::io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        if std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0) > self.max_bytes {
            std::fs::rename(&self.path, self.path.with_extension("jsonl.1"))?;
        }
        let mut buf = Vec::new();
        for e in events {
            serde_json::to_writer(&mut buf, e)?;
            buf.push(b'\n');
        }
        crate::record::append_lines(&self.path, &buf, true)
    }

    /// The last recorded value of each (cgroup, counter), from the log and
    /// its previous generation.
    pub fn baselines(&self) -> HashMap<(String, String), u64> {
        let mut out = HashMap::new();
        for p in [self.path.with_extension("jsonl.1"), self.path.clone()] {
            for e in read(&p) {
                if let (Some(c), Some(n)) = (e.counter, e.new) {
                    let slot = out.entry((e.cgroup, c)).or_insert(0);
                    *slot = (*slot).max(n);
                }
            }
        }
        out
    }
}

/// Every event of a log file; a torn last line (a crash mid-write before
/// the sync) is skipped.
pub fn read(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Golden lines: `events`, alerts and people's scripts read these.
    #[test]
    fn event_lines_keep_their_shape() {
        let who = Who {
            id: "c1".into(),
            name: Some("web".into()),
            image: None,
        };
        let oom_kill = Event {
            time: "T".into(),
            kind: "oom_kill".into(),
            container: who.clone(),
            cgroup: "/x/c1".into(),
            counter: Some("memory.events:oom_kill".into()),
            old: Some(0),
            new: Some(1),
            usage: 4096,
            limit: Some(8192),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&oom_kill).unwrap(),
            r#"{"time":"T","kind":"oom_kill","container":{"id":"c1","name":"web"},"cgroup":"/x/c1","counter":"memory.events:oom_kill","old":0,"new":1,"usage":4096,"limit":8192}"#
        );
        let leak = Event {
            time: "T".into(),
            kind: "leak_suspected".into(),
            container: who.clone(),
            cgroup: "/x/c1".into(),
            usage: 4096,
            rate: Some(1.5),
            time_to_limit: Some(60.0),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&leak).unwrap(),
            r#"{"time":"T","kind":"leak_suspected","container":{"id":"c1","name":"web"},"cgroup":"/x/c1","usage":4096,"rate":1.5,"time_to_limit":60.0}"#
        );
        let drift = Event {
            time: "T".into(),
            kind: "drift_corrected".into(),
            container: who,
            cgroup: "/x/c1".into(),
            policy: Some("default".into()),
            before: Some(serde_json::json!({"memory": "max"})),
            after: Some(serde_json::json!({"memory": 8192})),
            source: Some("docker".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&drift).unwrap(),
            r#"{"time":"T","kind":"drift_corrected","container":{"id":"c1","name":"web"},"cgroup":"/x/c1","usage":0,"policy":"default","before":{"memory":"max"},"after":{"memory":8192},"source":"docker"}"#
        );
    }

    #[test]
    fn append_rotate_and_rebuild() {
        let d = std::env::temp_dir().join(format!("cglimit-evlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let log = EventLog::new(&d, 300).unwrap();
        let ev = |n: u64| Event {
            time: "t".into(),
            kind: "failcnt".into(),
            cgroup: "/a".into(),
            counter: Some("memory.failcnt".into()),
            old: Some(n - 1),
            new: Some(n),
            ..Default::default()
        };
        for n in 1..=5 {
            log.append(&[ev(n)]).unwrap();
        }
        assert!(d.join("events.jsonl.1").exists(), "rotated by size");
        // A torn line at the end is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.join(FILE))
            .unwrap()
            .write_all(b"{\"time\":")
            .unwrap();
        let b = log.baselines();
        assert_eq!(b[&("/a".to_string(), "memory.failcnt".to_string())], 5);
        // The next append cuts it off: every line parses again.
        log.append(&[ev(6)]).unwrap();
        let text = std::fs::read_to_string(d.join(FILE)).unwrap();
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<Event>(l).is_ok()),
            "{text}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
