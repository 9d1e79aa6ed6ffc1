//! Records: one JSON line per decision in `STATE_DIR/decisions.jsonl`, read
//! later by the watcher and by people.
//!
//! Each line is built whole in memory and appended under an exclusive
//! `flock` (see [`append_lines`]), so concurrent hooks never interleave
//! lines and no fault leaves a partial one behind.

pub mod history;
pub mod journal;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub const DECISIONS: &str = "decisions.jsonl";

/// Appends one record as a JSON line.
pub fn append<T: Serialize>(state_dir: &Path, file: &str, record: &T) -> Result<(), RecordError> {
    let path = state_dir.join(file);
    let err = |e: std::io::Error| RecordError {
        path: path.clone(),
        source: e,
    };
    std::fs::create_dir_all(state_dir).map_err(err)?;
    let mut line = serde_json::to_vec(record).map_err(|e| err(e.into()))?;
    line.push(b'\n');
    append_lines(&path, &line, false).map_err(err)
}

/// Appends whole lines to a JSON-lines file that several processes write
/// (hooks, wrappers, `apply`, the watcher), so that after any fault every
/// line still parses:
/// - writers take an exclusive `flock` for the append, so their lines never
///   interleave and each knows where its own line starts;
/// - a write that fails part-way (disk full, quota) is cut back off, so no
///   partial line stays behind;
/// - a writer killed mid-write (SIGKILL cannot be caught) can leave a torn
///   last line; the next writer finds the file not ending in a newline
///   while it holds the lock, and cuts the torn line off before appending.
///
/// With `sync`, returns once the data is on disk (`fdatasync`).
pub fn append_lines(path: &Path, lines: &[u8], sync: bool) -> std::io::Result<()> {
    use nix::fcntl::{Flock, FlockArg};
    let f = std::fs::OpenOptions::new()
        .append(true)
        .read(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::fcntl::OFlag::O_CLOEXEC.bits())
        .open(path)?;
    let mut f =
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
    let start = cut_torn_tail(&f)?;
    if let Err(e) = f
        .write_all(lines)
        .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
    {
        let _ = f.set_len(start);
        return Err(e);
    }
    Ok(())
}

/// Cuts off a last line without its newline; returns the file's length.
fn cut_torn_tail(f: &std::fs::File) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    f.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    // Look back for the end of the last whole line, a block at a time.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let from = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - from) as usize];
        f.read_exact_at(chunk, from)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            let keep = from + i as u64 + 1;
            f.set_len(keep)?;
            return Ok(keep);
        }
        end = from;
    }
    f.set_len(0)?;
    Ok(0)
}

#[derive(Debug, thiserror::Error)]
#[error("cannot append to {}: {source}", path.display())]
pub struct RecordError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_off_by_the_next_writer() {
        let dir = std::env::temp_dir().join(format!("cglimit-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.jsonl");
        // A writer killed mid-line; then one killed before writing any newline at all.
        for (before, kept) in [("{\"a\":1}\n{\"b\":", "{\"a\":1}\n"), ("{\"b\":", "")] {
            std::fs::write(&p, before).unwrap();
            append_lines(&p, b"{\"c\":3}\n", true).unwrap();
            assert_eq!(
                std::fs::read_to_string(&p).unwrap(),
                format!("{kept}{{\"c\":3}}\n")
            );
        }
        // A long torn line: the search for the last newline spans blocks.
        let long = format!("{{\"a\":1}}\n{}", "x".repeat(200_000));
        std::fs::write(&p, long).unwrap();
        append_lines(&p, b"{}\n", false).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":1}\n{}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn appends_whole_lines() {
        let dir = std::env::temp_dir().join(format!("cglimit-rec-{}", std::process::id()));
        for i in 0..3 {
            append(&dir, DECISIONS, &serde_json::json!({"n": i})).unwrap();
        }
        let text = std::fs::read_to_string(dir.join(DECISIONS)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["n"], 2);
    }
}

/// The entry point that made a decision.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Hook,
    /// The runtime wrapper, on `create` or `run`.
    Runtime,
    /// The runtime wrapper, on `update` (`docker update`).
    Update,
    Apply,
    /// A container that started through a runtime other than cglimit's,
    /// brought under policy as the engine reported its start.
    Watch,
}

/// What became of a decision.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The limits are in place.
    Applied,
    /// The policy refused the container.
    Denied,
    /// Nothing could be enforced, and the container was refused.
    Error,
    /// Nothing could be enforced, and the container ran anyway
    /// (`--on-error allow`).
    FailedOpen,
}

/// One decision as recorded: what was known, what was decided, what the
/// cgroup held before and after, or why nothing was applied.
#[derive(Serialize)]
pub struct DecisionRecord<'a> {
    pub time: String,
    pub source: Source,
    pub outcome: Outcome,
    pub container: &'a crate::facts::Facts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'a crate::decision::Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<&'a crate::cgroup::Applied>,
    /// For a cgroup that is a systemd unit's: whether the limits became
    /// the unit's properties, which a daemon-reload keeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemd: Option<&'a crate::sys::systemd::Persistence>,
    /// The runtime the container was started with, when that skipped
    /// cglimit (`docker run --runtime runc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypassed_runtime: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A line of `decisions.jsonl` as its readers (the watcher) take it back:
/// the fields they use, each optional, so that a record of another
/// version, or of a refusal or an error, still reads.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct DecisionEntry {
    pub source: Option<String>,
    pub outcome: Option<String>,
    pub container: EntryContainer,
    pub decision: Option<EntryDecision>,
    pub applied: Option<EntryApplied>,
    pub bypassed_runtime: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct EntryContainer {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub cgroup: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct EntryDecision {
    pub policy: Option<String>,
    /// Why this policy and not another.
    pub why: Option<String>,
    pub limits: Option<EntryLimits>,
}

/// Decided limits as [`crate::size::Limits`] writes them (swap on top of
/// memory).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct EntryLimits {
    pub memory: Option<Written>,
    pub swap: Option<Written>,
    pub high: Option<Written>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct EntryApplied {
    pub after: Option<EntryAfter>,
}

/// What the cgroup held after the write, read back, in its own terms.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct EntryAfter {
    pub memory: Option<Written>,
    pub swap_file: Option<Written>,
    pub high: Option<Written>,
}

/// A limit as records write it: bytes, or `"max"`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum Written {
    Bytes(u64),
    Word(String),
    /// Anything else (a record of another version): not a limit.
    Other(serde::de::IgnoredAny),
}

impl Written {
    /// `Some(Some(bytes))`, `Some(None)` for no limit, `None` for a value
    /// that is neither.
    pub fn limit(&self) -> Option<Option<u64>> {
        match self {
            Written::Bytes(b) => Some(Some(*b)),
            Written::Word(w) if w == "max" => Some(None),
            Written::Word(_) | Written::Other(_) => None,
        }
    }
}

impl DecisionEntry {
    /// Reads one line; `None` for one that is not a record.
    pub fn parse(line: &str) -> Option<DecisionEntry> {
        serde_json::from_str(line).ok()
    }
}
