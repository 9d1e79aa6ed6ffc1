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

struct Logger {
    sink: Mutex<Box<dyn Write + Send>>,
    level: LevelFilter,
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
        let line = format!(
            "{} cglimit[{}]: {level}: {}\n",
            crate::record::now_rfc3339(),
            std::process::id(),
            r.args()
        );
        if let Ok(mut s) = self.sink.lock() {
            let _ = s.write_all(line.as_bytes());
            let _ = s.flush();
        }
    }

    fn flush(&self) {}
}

/// Installs the logger: to `file` (appending) when given, else stderr.
pub fn init(file: Option<&Path>, level: LevelFilter) -> std::io::Result<()> {
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
    let logger = Logger {
        sink: Mutex::new(sink),
        level,
    };
    // A second init (tests) keeps the first logger.
    let _ = log::set_boxed_logger(Box::new(logger));
    log::set_max_level(level);
    Ok(())
}
