//! Log lines to stderr or a file: never to stdout, which belongs to the
//! runtime protocol in hook and wrapper modes.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static TO_STDERR: AtomicBool = AtomicBool::new(true);

/// Whether log lines already reach stderr (no log file): then a message for
/// the runtime's error output need not be printed twice.
pub fn to_stderr() -> bool {
    TO_STDERR.load(Ordering::Relaxed)
}

use log::{Level, LevelFilter, Log, Metadata, Record};

/// How a line is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `TIME cglimit[PID]: LEVEL: MESSAGE`
    Plain,
    /// runc's `--log-format json`, which containerd reads back to explain a
    /// failed create: `{"level":"error","msg":"...","time":"..."}`.
    RuncJson,
    /// runc's default (logrus text): `time="..." level=error msg="..."`.
    RuncText,
}

struct Logger {
    sink: Mutex<Box<dyn Write + Send>>,
    level: LevelFilter,
    format: Format,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let time = crate::time::now_rfc3339();
        let line = match self.format {
            Format::Plain => format!(
                "{time} cglimit[{}]: {level}: {}\n",
                std::process::id(),
                plain(&r.args().to_string())
            ),
            Format::RuncJson => runc_line(true, level, &r.args().to_string()),
            Format::RuncText => runc_line(false, level, &r.args().to_string()),
        };
        if let Ok(mut s) = self.sink.lock() {
            let _ = s.write_all(line.as_bytes());
            let _ = s.flush();
        }
    }

    fn flush(&self) {}
}

/// A message as the plain format writes it: a message spanning lines (a
/// policy file's errors) continues on lines indented by four spaces, and
/// every other control character is escaped, so nothing a container's
/// creator put into a name or an annotation can forge a line of its own.
fn plain(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for c in msg.chars() {
        match c {
            '\n' => out.push_str("\n    "),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// One line in runc's log format (logrus JSON or text).
pub fn runc_line(json: bool, level: &str, msg: &str) -> String {
    let level = if level == "warning" { "warn" } else { level };
    let time = crate::time::now_rfc3339();
    let msg = format!("cglimit: {msg}");
    if json {
        let mut l = serde_json::json!({"level": level, "msg": msg, "time": time}).to_string();
        l.push('\n');
        l
    } else {
        format!("time={time:?} level={level} msg={msg:?}\n")
    }
}

static FILE: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

/// Whether the log already goes to `path`.
pub fn writes_to(path: &Path) -> bool {
    FILE.lock()
        .map(|f| f.as_deref() == Some(path))
        .unwrap_or(false)
}

/// Installs the logger: to `file` (appending) when given, else stderr.
pub fn init(file: Option<&Path>, level: LevelFilter) -> std::io::Result<()> {
    init_with(file, level, Format::Plain)
}

pub fn init_with(file: Option<&Path>, level: LevelFilter, format: Format) -> std::io::Result<()> {
    let sink: Box<dyn Write + Send> = match file {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => Box::new(std::io::stderr()),
    };
    TO_STDERR.store(file.is_none(), Ordering::Relaxed);
    if let Ok(mut f) = FILE.lock() {
        *f = file.map(Path::to_path_buf);
    }
    let logger = Logger {
        sink: Mutex::new(sink),
        level,
        format,
    };
    // A second init (tests) keeps the first logger.
    let _ = log::set_boxed_logger(Box::new(logger));
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_message_forges_a_line() {
        let forged = "web\n2026-11-30T00:00:00.000000000Z cglimit[1]: info: container ok\r\x1b[2K";
        let p = plain(forged);
        assert_eq!(p.lines().count(), 2);
        assert!(p.lines().skip(1).all(|l| l.starts_with("    ")), "{p}");
        assert!(!p.contains('\r') && !p.contains('\x1b'), "{p}");
        for json in [true, false] {
            let l = runc_line(json, "error", forged);
            assert_eq!(l.matches('\n').count(), 1, "{l}");
            assert!(l.ends_with('\n'));
        }
    }
}
