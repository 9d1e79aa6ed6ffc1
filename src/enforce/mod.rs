//! The one sequence every entry point runs for a container, once its facts
//! are gathered: decide → enforce → record → log.
//!
//! The hook, the runtime wrapper and `apply` differ in how they learn a
//! container's facts and in what they write (the cgroup files, the bundle's
//! `config.json` in [`spec`], the engine's update endpoint); they do not
//! differ in how a policy is chosen, how a refusal or an error is handled
//! under `--on-error`, or what is recorded and logged. That lives here.

pub mod spec;

use std::path::{Path, PathBuf};

use crate::cgroup::{Applied, CgroupError};
use crate::decision::{self, Decision, Limits, Verdict};
use crate::facts::{Facts, FactsError};
use crate::policy::perms::Unsafe;
use crate::policy::{LoadError, PolicyErrors, PolicySet};
use crate::record::{self, DecisionRecord, Outcome, Source};
use crate::size::Limit;
pub use crate::sys::systemd::Persistence;

/// What to do when cglimit cannot decide or enforce (`--on-error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse to start the container when cglimit cannot decide or enforce.
    Deny,
    /// Start the container anyway and log that it runs without enforced limits.
    Allow,
}

/// Why a container's limits were not put in place.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// What the container is could not be learned (runtime state, bundle).
    #[error(transparent)]
    Facts(#[from] FactsError),
    /// The policy directory could be changed by someone other than root or
    /// this user.
    #[error("untrusted policy: {0}")]
    Perms(#[source] Unsafe),
    /// A policy file does not parse or does not make sense.
    #[error("invalid policy:\n{0}")]
    Policy(#[source] PolicyErrors),
    /// A cgroup file could not be read or written (nothing was left half
    /// written: see [`crate::cgroup::apply`]).
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The bundle's `config.json` could not be rewritten.
    #[error("{}: {problem}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        problem: spec::BundleProblem,
    },
    /// The engine refused a change, or could not be asked.
    #[error(transparent)]
    Engine(#[from] EngineFailure),
    /// A limit below what the container uses now would be an OOM kill;
    /// `apply` lowers it only when forced.
    #[error(
        "uses {}, more than the wanted limit {}; not lowered (--force reclaims and lowers, accepting an OOM kill)",
        Limit::Bytes(*used),
        Limit::Bytes(*wanted)
    )]
    InUse { used: u64, wanted: u64 },
    /// The policy refuses the container.
    #[error("refused by {by}: {message}")]
    Denied { by: String, message: String },
}

/// What the engine did not do for `apply`.
#[derive(Debug, thiserror::Error)]
pub enum EngineFailure {
    #[error("the engine cannot remove a memory limit through an update; left as is")]
    CannotUnlimit,
    #[error("the engine refused the update: {0}")]
    Refused(#[source] crate::sys::engine::EngineError),
}

impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Untrusted(e) => Failure::Perms(e),
            LoadError::Invalid(e) => Failure::Policy(e),
        }
    }
}

/// What a writer put in place.
#[derive(Debug, Default)]
pub struct Written {
    /// What the cgroup held before and after, when the writer wrote it.
    pub applied: Option<Applied>,
    /// What systemd was told, when the cgroup is a systemd unit's.
    pub systemd: Option<Persistence>,
}

/// Puts decided limits in place: a container's cgroup ([`InCgroup`]: the
/// hook, `apply`, the wrapper's update and unit hook), the bundle's
/// `config.json` (the wrapper's create), the engine (`apply`, then the
/// cgroup).
pub trait Writer {
    fn write(&mut self, limits: &Limits) -> Result<Written, Failure>;
}

impl<F: FnMut(&Limits) -> Result<Written, Failure>> Writer for F {
    fn write(&mut self, limits: &Limits) -> Result<Written, Failure> {
        self(limits)
    }
}

/// The one enforcement step in a container's cgroup: the cgroup files, all
/// or nothing ([`crate::cgroup::apply`]), then, when the cgroup is a
/// systemd unit's, the unit's properties, so that systemd keeps them. Both
/// results go to the run, which records them.
pub struct InCgroup<'a> {
    pub dir: &'a crate::cgroup::CgroupDir,
    /// The cgroup's path as `/proc/PID/cgroup` gives it.
    pub path: &'a str,
    /// A process in it, which systemd is asked about (none: 0, and systemd
    /// is not asked).
    pub pid: i32,
}

impl InCgroup<'_> {
    pub fn put(&self, limits: &Limits) -> Result<Written, Failure> {
        let applied = crate::cgroup::apply(self.dir, limits)?;
        crate::sys::phase::mark("applied");
        let systemd = (self.pid > 0)
            .then(|| persist(self.dir, self.path, self.pid, limits, &applied))
            .flatten();
        Ok(Written {
            applied: Some(applied),
            systemd,
        })
    }
}

impl Writer for InCgroup<'_> {
    fn write(&mut self, limits: &Limits) -> Result<Written, Failure> {
        self.put(limits)
    }
}

/// One container's way through the sequence: what was known, decided and
/// done, or why not.
pub struct Run {
    pub source: Source,
    pub facts: Facts,
    pub decision: Option<Decision>,
    pub applied: Option<Applied>,
    pub failure: Option<Failure>,
    /// Appended to the log line of an applied decision (e.g. timings).
    pub detail: Option<String>,
    /// What systemd was told, when the cgroup is a systemd unit's.
    pub systemd: Option<Persistence>,
    /// The runtime the container started with, when it skipped cglimit.
    pub bypassed_runtime: Option<String>,
}

/// Makes `limits`, just written to `dir` (at `path`) as `applied` says,
/// the properties of the systemd unit whose cgroup that is, when it is
/// one; `None` for any other cgroup, which never reaches D-Bus. `pid` is a
/// process systemd must place in the unit.
fn persist(
    dir: &crate::cgroup::CgroupDir,
    path: &str,
    pid: i32,
    limits: &Limits,
    applied: &Applied,
) -> Option<Persistence> {
    use crate::sys::systemd;
    let unit = systemd::unit_of(path)?;
    let unified = dir.hierarchy == crate::cgroup::Hierarchy::V2;
    let props = systemd::properties(limits, unified, !applied.swap_unaccounted);
    let r = systemd::persist(unit, pid, props, systemd::TIMEOUT);
    Some(Persistence {
        unit: unit.to_string(),
        persisted: r.is_ok(),
        reason: r.err().map(|e| e.to_string()),
    })
}

/// How a run ended, for the entry point to act on.
pub struct Ending {
    pub outcome: Outcome,
    /// Why the container must not start or change, in the words the caller
    /// shows the user; `None` when it may.
    pub refusal: Option<String>,
}

impl Run {
    pub fn new(source: Source, facts: Facts) -> Run {
        Run {
            source,
            facts,
            decision: None,
            applied: None,
            failure: None,
            detail: None,
            systemd: None,
            bypassed_runtime: None,
        }
    }

    /// Records a failure that ends the run before anything was written.
    pub fn fail(&mut self, failure: impl Into<Failure>) {
        self.failure = Some(failure.into());
    }

    /// Chooses a policy and decides; unless the decision refuses the
    /// container, writes the limits with `writer`. The decision is kept even
    /// when the write fails, so the record says what was meant.
    pub fn enforce(&mut self, policies: &PolicySet, writer: impl Writer) {
        let decided = self.decide(policies).is_some();
        crate::sys::phase::mark("decided");
        if decided {
            self.write(writer);
        }
    }

    /// Marks the container's labels that its image set, where it matters:
    /// when the policy it would get is selected through a label that
    /// policy trusts. Docker merges an image's labels into its containers',
    /// so whoever publishes an image could otherwise pick a trusted
    /// policy. `image` returns the image's labels (asked only then); when
    /// it cannot, every trusted label is taken as the image's. Repeated
    /// while each choice leans on a newly marked label.
    pub fn mark_image_labels(
        &mut self,
        policies: &PolicySet,
        image: impl FnOnce() -> Option<std::collections::BTreeMap<String, String>>,
    ) {
        if self.facts.labels.is_empty() {
            return;
        }
        let mut image = Some(image);
        let mut known: Option<Option<std::collections::BTreeMap<String, String>>> = None;
        for _ in 0..4 {
            let Ok(Some(chosen)) = policies.choose(&self.facts) else {
                return;
            };
            let p = &chosen.policy;
            let leaning: Vec<String> = p
                .selector
                .labels
                .keys()
                .filter(|k| p.trust.contains(k) && !self.facts.image_labels.contains(*k))
                .cloned()
                .collect();
            if leaning.is_empty() {
                return;
            }
            let labels = known.get_or_insert_with(|| image.take().and_then(|f| f()));
            let mut marked = false;
            for k in leaning {
                let from_image = match labels {
                    Some(l) => l.get(&k) == self.facts.labels.get(&k),
                    None => true,
                };
                if from_image {
                    self.facts.image_labels.insert(k);
                    marked = true;
                }
            }
            if !marked {
                return;
            }
        }
    }

    /// Chooses a policy and decides, with no write (`apply` compares first).
    pub fn decide(&mut self, policies: &PolicySet) -> Option<&Decision> {
        match policies.choose(&self.facts) {
            Ok(chosen) => Some(
                self.decision
                    .insert(decision::decide_chosen(chosen, &self.facts)),
            ),
            Err(e) => {
                self.failure = Some(Failure::Policy(e));
                None
            }
        }
    }

    /// Writes what was decided with `writer`, unless the decision refuses
    /// the container.
    pub fn write(&mut self, mut writer: impl Writer) {
        let Some(d) = &self.decision else { return };
        if let Verdict::Deny { message } = &d.verdict {
            self.failure = Some(Failure::Denied {
                by: d.refused_by(),
                message: message.clone(),
            });
            return;
        }
        let limits = d.limits;
        match writer.write(&limits) {
            Ok(w) => {
                self.applied = w.applied;
                self.systemd = w.systemd;
            }
            Err(e) => self.failure = Some(e),
        }
    }

    /// What the run came to under `on_error`.
    pub fn outcome(&self, on_error: OnError) -> Outcome {
        match (&self.failure, on_error) {
            (None, _) => Outcome::Applied,
            (Some(Failure::Denied { .. }), _) => Outcome::Denied,
            (Some(_), OnError::Deny) => Outcome::Error,
            (Some(_), OnError::Allow) => Outcome::FailedOpen,
        }
    }

    /// Logs one line, appends one record to `state_dir/decisions.jsonl`
    /// when a state directory is given, and says how the run ended.
    pub fn finish(&self, on_error: OnError, state_dir: Option<&Path>) -> Ending {
        let outcome = self.outcome(on_error);
        let who = describe(&self.facts);
        let refusal = match (&self.failure, outcome) {
            (Some(Failure::Denied { by, message }), _) => {
                let m = format!("{who} refused by {by}: {message}");
                log::error!("{m}");
                Some(m)
            }
            (Some(e), Outcome::FailedOpen) => {
                log::warn!("{who}: {e}; starting it without enforced limits (--on-error allow)");
                None
            }
            (Some(e), _) => {
                let m = format!("{who}: {e}");
                log::error!("{m}");
                Some(m)
            }
            (None, _) => {
                if let Some(Persistence {
                    unit,
                    persisted: false,
                    reason,
                }) = &self.systemd
                {
                    log::warn!(
                        "{who}: limits written to its cgroup but not made {unit}'s properties ({}): the next systemctl daemon-reload or daemon-reexec resets them; `cglimit apply --all` sets them again",
                        reason.as_deref().unwrap_or("?")
                    );
                }
                if let Some(d) = &self.decision {
                    let mut line = format!("{who}: {}", summary(d, self.applied.as_ref()));
                    if let Some(Persistence {
                        unit,
                        persisted: true,
                        ..
                    }) = &self.systemd
                    {
                        line.push_str(&format!("; kept by systemd as {unit}'s properties"));
                    }
                    if let Some(detail) = &self.detail {
                        line.push_str("; ");
                        line.push_str(detail);
                    }
                    log::info!("{line}");
                }
                None
            }
        };
        if let Some(dir) = state_dir {
            self.record(dir, outcome);
        }
        Ending { outcome, refusal }
    }

    fn record(&self, state_dir: &Path, outcome: Outcome) {
        let error = match &self.failure {
            None | Some(Failure::Denied { .. }) => None,
            Some(e) => Some(e.to_string()),
        };
        let rec = DecisionRecord {
            time: crate::time::now_rfc3339(),
            source: self.source,
            outcome,
            container: &self.facts,
            decision: self.decision.as_ref(),
            applied: self.applied.as_ref(),
            systemd: self.systemd.as_ref(),
            bypassed_runtime: self.bypassed_runtime.as_deref(),
            error,
        };
        if let Err(e) = record::append(state_dir, record::DECISIONS, &rec) {
            // The limits are in place; a lost record must not stop the container.
            log::error!("{}: {e}", describe(&self.facts));
        }
    }
}

/// `container 3f2a… (web-1)`
pub fn describe(f: &Facts) -> String {
    let id = if f.id.is_empty() { "?" } else { &f.id };
    match &f.name {
        Some(n) => format!("container {id} ({n})"),
        None => format!("container {id}"),
    }
}

/// One line: policy, limits, and every departure from what was asked.
pub fn summary(d: &Decision, applied: Option<&Applied>) -> String {
    let l = &d.limits;
    let mut s = format!(
        "policy {:?}: memory {}, swap {} (memory+swap {}), high {}",
        d.policy.as_deref().unwrap_or("-"),
        l.memory,
        l.swap,
        l.memory_swap(),
        l.high.unwrap_or(Limit::Unlimited)
    );
    for f in &d.findings {
        s.push_str(&format!("; {f}"));
    }
    for n in &d.notes {
        s.push_str(&format!("; {n}"));
    }
    if let Some(a) = applied
        && a.swap_unaccounted
    {
        s.push_str("; no swap accounting in this kernel: swap not limited");
    }
    s
}

#[cfg(test)]
mod tests {
    //! Golden lines: what the sequence records, byte for byte but the time.
    //! The watcher, `events` and people's scripts read these lines.

    use super::*;
    use crate::cgroup::Snapshot;
    use crate::facts::Requested;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cglimit-golden-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("p")).unwrap();
        d
    }

    const POLICIES: &str = "name: default\nmemory: {default: 256M, max: 1G}\nswap: {max: 0}\nhigh: 90%\n---\nname: strict\npriority: 5\nmatch: {names: [strict-*]}\nmemory: {max: 64M}\nonViolation: deny\nmessage: ask for less\n";

    fn facts(name: &str, memory: Option<i64>) -> Facts {
        Facts {
            id: "c1".into(),
            name: Some(name.into()),
            image: Some("busybox:1".into()),
            labels: [("team".to_string(), "a".to_string())].into(),
            cgroup: Some("/x/c1".into()),
            requested: Requested::from_oci(memory, None),
            ..Default::default()
        }
    }

    /// Runs `run` to its end and returns its one record, time blanked.
    fn recorded(d: &Path, run: &Run, on_error: OnError) -> (Ending, String) {
        let state = d.join("state");
        let _ = std::fs::remove_dir_all(&state);
        let ending = run.finish(on_error, Some(&state));
        let text = std::fs::read_to_string(state.join(record::DECISIONS)).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let mut v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        v["time"] = "T".into();
        (ending, serde_json::to_string(&v).unwrap())
    }

    fn policies(d: &Path) -> PolicySet {
        std::fs::write(d.join("p/a.yaml"), POLICIES).unwrap();
        crate::policy::open(&d.join("p"), None, false).unwrap()
    }

    #[test]
    fn an_applied_decision_is_recorded_whole() {
        let d = dir("applied");
        let mut run = Run::new(Source::Hook, facts("web", Some(2 << 30)));
        run.enforce(&policies(&d), |l: &Limits| {
            let before = Snapshot {
                memory: Limit::Unlimited,
                swap_file: Some(Limit::Unlimited),
                high: Limit::Unlimited,
            };
            let after = Snapshot {
                memory: l.memory,
                swap_file: Some(l.memory_swap()),
                high: l.high.unwrap_or(Limit::Unlimited),
            };
            Ok(Written {
                applied: Some(Applied {
                    before,
                    after,
                    written: vec!["memory.limit_in_bytes"],
                    swap_unaccounted: false,
                    tcp: None,
                }),
                systemd: None,
            })
        });
        let (ending, line) = recorded(&d, &run, OnError::Deny);
        assert_eq!(ending.outcome, Outcome::Applied);
        assert!(ending.refusal.is_none());
        assert_eq!(
            line,
            r#"{"time":"T","source":"hook","outcome":"applied","container":{"id":"c1","name":"web","image":"busybox:1","labels":{"team":"a"},"cgroup":"/x/c1","requested":{"memory":2147483648,"memory_swap":null}},"decision":{"policy":"default","origin":"PATH:1","why":"the only matching policy","verdict":"apply","limits":{"memory":1073741824,"swap":0,"high":966365184},"findings":[{"field":"memory","asked":2147483648,"bound":"max 1G","action":"clamp","result":1073741824}],"notes":[]},"applied":{"before":{"memory":"max","swap_file":"max","high":"max"},"after":{"memory":1073741824,"swap_file":1073741824,"high":966365184},"written":["memory.limit_in_bytes"],"swap_unaccounted":false}}"#
                .replace("PATH", &d.join("p/a.yaml").display().to_string())
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_refusal_is_recorded_without_an_error() {
        let d = dir("denied");
        let mut run = Run::new(Source::Runtime, facts("strict-1", Some(128 << 20)));
        run.enforce(&policies(&d), |_: &Limits| -> Result<_, Failure> {
            panic!("a refused container is not written")
        });
        let (ending, line) = recorded(&d, &run, OnError::Allow);
        assert_eq!(ending.outcome, Outcome::Denied);
        let origin = format!("{}:6", d.join("p/a.yaml").display());
        assert_eq!(
            ending.refusal.as_deref(),
            Some(
                format!(
                    "container c1 (strict-1) refused by policy \"strict\" ({origin}): ask for less (memory 128M is above the policy's max 64M)"
                )
                .as_str()
            )
        );
        assert_eq!(
            line,
            r#"{"time":"T","source":"runtime","outcome":"denied","container":{"id":"c1","name":"strict-1","image":"busybox:1","labels":{"team":"a"},"cgroup":"/x/c1","requested":{"memory":134217728,"memory_swap":null}},"decision":{"policy":"strict","origin":"ORIGIN","why":"highest priority (5 over 0 of \"default\"); selected through name, set by the container's creator and not in its trust list, so bounded by \"default\"","verdict":"deny","message":"ask for less (memory 128M is above the policy's max 64M)","limits":{"memory":"max","swap":"max","high":null},"findings":[{"field":"memory","asked":134217728,"bound":"max 64M","action":"deny","result":134217728}],"notes":["swap max unlimited of \"strict\" is capped at 0, the max of \"default\": it was selected through facts the container's creator sets"]}}"#
                .replace("ORIGIN", &origin)
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failure_is_an_error_or_failed_open_by_on_error() {
        let d = dir("error");
        let mut run = Run::new(Source::Apply, Facts::default());
        run.fail(FactsError::NoPid);
        let (ending, line) = recorded(&d, &run, OnError::Deny);
        assert_eq!(ending.outcome, Outcome::Error);
        assert!(
            ending
                .refusal
                .unwrap()
                .starts_with("container ?: the container state has no \"pid\"")
        );
        assert_eq!(
            line,
            r#"{"time":"T","source":"apply","outcome":"error","container":{"id":"","requested":{"memory":null,"memory_swap":null}},"error":"the container state has no \"pid\": run cglimit as a createRuntime or prestart hook"}"#
        );
        let (ending, line) = recorded(&d, &run, OnError::Allow);
        assert_eq!(ending.outcome, Outcome::FailedOpen);
        assert!(ending.refusal.is_none());
        assert!(line.contains(r#""outcome":"failed-open""#), "{line}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
