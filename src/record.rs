//! Records: one JSON line per decision in `STATE_DIR/decisions.jsonl`, read
//! later by the watcher and by people.
//!
//! Each line is built whole in memory and written with a single `write(2)`
//! on an `O_APPEND` descriptor, so concurrent hooks never interleave lines.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc_o_cloexec())
        .open(&path)
        .map_err(err)?;
    let n = f.write(&line).map_err(err)?;
    if n != line.len() {
        // A short append (disk full) leaves a partial line; end it so the
        // next record still starts on its own line, and report the failure.
        let _ = f.write(b"\n");
        return Err(err(std::io::Error::from_raw_os_error(28)));
    }
    Ok(())
}

fn libc_o_cloexec() -> i32 {
    nix::fcntl::OFlag::O_CLOEXEC.bits()
}

#[derive(Debug)]
pub struct RecordError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot append to {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for RecordError {}

/// The current time as RFC 3339 UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Formats a Unix time (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            rfc3339(1_795_392_000, 123),
            "2026-11-23T00:00:00.000000123Z"
        );
        assert_eq!(rfc3339(4_107_542_399, 0), "2100-02-28T23:59:59.000000000Z");
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

/// One decision as recorded: what was known, what was decided, what the
/// cgroup held before and after, or why nothing was applied.
#[derive(Serialize)]
pub struct DecisionRecord<'a> {
    pub time: String,
    /// The entry point: `hook`, `runtime`, `apply`.
    pub source: &'static str,
    /// `applied`, `denied`, `error` or `failed-open`.
    pub outcome: &'static str,
    pub container: &'a crate::facts::Facts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'a crate::decision::Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<&'a crate::cgroup::Applied>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
