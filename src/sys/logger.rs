//! Log lines to stderr or a file: never to stdout, which belongs to the
//! runtime protocol in hook and wrapper modes.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static TO_STDERR: AtomicBool = AtomicBool::new(true);

/// The descriptor the log goes to, for [`write_raw`].
static SINK_FD: AtomicI32 = AtomicI32::new(2);

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
        let level = level_name(r.level());
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

/// Writes one plain-format line from a signal handler: no allocation, no
/// lock (the logger's own may be held by the code the signal interrupted),
/// one `write(2)` to the log's descriptor. `msg` is cglimit's own text,
/// written as it is. Lines longer than 512 bytes are cut.
pub fn write_raw(level: Level, msg: &str) {
    if level > log::max_level() {
        return;
    }
    let mut buf = [0u8; 512];
    let mut w = StackLine {
        buf: &mut buf,
        len: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = crate::time::write_rfc3339(&mut w, now.as_secs() as i64, now.subsec_nanos());
    let _ = std::fmt::Write::write_fmt(
        &mut w,
        format_args!(
            " cglimit[{}]: {}: {msg}",
            std::process::id(),
            level_name(level)
        ),
    );
    let len = w.len.min(w.buf.len() - 1);
    buf[len] = b'\n';
    // SAFETY: write(2) of a buffer that lives across the call.
    unsafe {
        nix::libc::write(
            SINK_FD.load(Ordering::Relaxed),
            buf.as_ptr().cast(),
            len + 1,
        )
    };
}

/// A line being formatted on the stack; what does not fit is dropped.
struct StackLine<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl std::fmt::Write for StackLine<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
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
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            SINK_FD.store(f.as_raw_fd(), Ordering::Relaxed);
            Box::new(f)
        }
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
