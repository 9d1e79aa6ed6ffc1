//! The decisions tail: new records of `decisions.jsonl` (written by the
//! hook, the wrapper and `apply`) as they are appended, each a container to
//! watch, the reference for its limits, a count for the metrics, and, for a
//! container started around cglimit, a `runtime_bypassed` event.

use super::*;
use crate::record::DecisionEntry;

/// Where the watcher is in `decisions.jsonl`.
#[derive(Default)]
pub(super) struct Tail {
    /// The inotify watch on the file, once it exists.
    wd: Option<WatchDescriptor>,
    /// Bytes read so far (whole lines only).
    read: u64,
    /// Whether what the file held at the start was read: those records are
    /// replayed for the containers they name, not re-reported.
    caught_up: bool,
}

impl Tail {
    pub(super) fn is(&self, wd: WatchDescriptor) -> bool {
        self.wd == Some(wd)
    }

    /// The records appended since the last call, and whether they are the
    /// ones the file held when the watcher started.
    fn read_new(
        &mut self,
        path: &std::path::Path,
        inotify: &Inotify,
    ) -> (Vec<DecisionEntry>, bool) {
        if self.wd.is_none() && path.exists() {
            self.wd = inotify.add_watch(path, AddWatchFlags::IN_MODIFY).ok();
        }
        let Ok(mut f) = File::open(path) else {
            // Nothing from before the start: every record to come is new.
            self.caught_up = true;
            return (Vec::new(), false);
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.read {
            self.read = 0; // replaced
        }
        use std::io::{Read, Seek, SeekFrom};
        let mut text = String::new();
        if f.seek(SeekFrom::Start(self.read)).is_err() || f.read_to_string(&mut text).is_err() {
            return (Vec::new(), false);
        }
        let complete = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
        self.read += complete as u64;
        let replayed = !std::mem::replace(&mut self.caught_up, true);
        let entries = text[..complete]
            .lines()
            .filter_map(DecisionEntry::parse)
            .collect();
        (entries, replayed)
    }
}

impl Watcher<'_> {
    /// New cgroups from the hook's, wrapper's and apply's decision records.
    pub(super) fn ingest_decisions(&mut self) {
        let path = self.args.state_dir.join(record::DECISIONS);
        let (entries, replayed) = self.tail.read_new(&path, &self.inotify);
        for e in entries {
            if let (Some(s), Some(o)) = (&e.source, &e.outcome) {
                *self.decisions.entry((s.clone(), o.clone())).or_insert(0) += 1;
            }
            let Some(cg) = e.container.cgroup.clone() else {
                continue;
            };
            let who = Who {
                id: e.container.id.clone(),
                name: e.container.name.clone(),
                image: e.container.image.clone(),
            };
            if let Some(runtime) = &e.bypassed_runtime
                && !replayed
            {
                self.record(vec![Event {
                    time: crate::time::now_rfc3339(),
                    kind: "runtime_bypassed".into(),
                    container: who.clone(),
                    cgroup: cg.clone(),
                    detail: Some(format!(
                        "started through runtime {runtime:?}, which skips cglimit; {}",
                        match e.outcome.as_deref() {
                            Some("applied") => "brought under its policy",
                            _ => "NOT brought under its policy",
                        }
                    )),
                    policy: e.decision.as_ref().and_then(|d| d.policy.clone()),
                    ..Default::default()
                }]);
            }
            // Watched from here on (a container first seen through an
            // update's record, too: its first read may come before the
            // runtime has made the update).
            if let Ok(dir) = cgroup::open_path(&cg) {
                let pod = (e.container.namespace.as_deref(), e.container.pod.as_deref());
                self.add(cg.clone(), who, container::Place::of(&dir), pod);
            }
            if let Some(w) = self.containers.get_mut(&cg) {
                if let Some(p) = e.decision.as_ref().and_then(|d| d.policy.clone()) {
                    w.policy = Some(p);
                }
                // cglimit's own change: what it decided is the new reference.
                w.limits = decided_limits(&e, &w.dir.hierarchy);
                w.settling = Some(Instant::now() + SETTLING);
                // What was held was this decision on its way.
                w.held = None;
            }
        }
    }
}
