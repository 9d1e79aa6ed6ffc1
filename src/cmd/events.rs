//! `cglimit events`: the recorded events, filtered, once or as they come.

use std::process::ExitCode;

use crate::cli::{EventsArgs, Output};
use crate::record::journal::{self, Event};
use crate::size::Limit;

pub fn run(args: &EventsArgs) -> ExitCode {
    let (since, until) = (&args.since, &args.until);
    let path = args.state_dir.join(journal::FILE);
    let keep = |e: &Event| {
        // RFC 3339 UTC with fixed width sorts as time does.
        since.as_ref().is_none_or(|s| e.time.as_str() >= s.as_str())
            && until.as_ref().is_none_or(|u| e.time.as_str() < u.as_str())
            && args.container.as_ref().is_none_or(|c| {
                e.container.name.as_deref() == Some(c) || e.container.id.starts_with(c.as_str())
            })
    };
    let show = |line: &str| {
        if let Ok(e) = serde_json::from_str::<Event>(line)
            && keep(&e)
        {
            print(args.output, &e);
        }
    };
    // Watch the directory before the first read: a line or a rotation
    // after it wakes the loop below.
    let inotify = if args.follow {
        match watch_dir(&args.state_dir) {
            Ok(i) => Some(i),
            Err(e) => {
                eprintln!("cglimit events: {}: {e}", args.state_dir.display());
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    for e in journal::read(&path.with_extension("jsonl.1"))
        .iter()
        .filter(|e| keep(e))
    {
        print(args.output, e);
    }
    let mut tail = Tail::open(&path);
    tail.lines(&show);
    let Some(inotify) = inotify else {
        return ExitCode::SUCCESS;
    };
    loop {
        let fds = &mut [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&inotify),
            nix::poll::PollFlags::POLLIN,
        )];
        // The timeout only guards against a missed wake; inotify says when.
        let _ = nix::poll::poll(fds, nix::poll::PollTimeout::from(5000u16));
        let _ = inotify.read_events();
        tail.lines(&show);
        // Rotated: what the old file got before the rename (perhaps after
        // the read above) is read through the descriptor kept, then the
        // new file from its start.
        if tail.replaced(&path) {
            tail.lines(&show);
            tail = Tail::open(&path);
            tail.lines(&show);
        }
    }
}

fn watch_dir(dir: &std::path::Path) -> nix::Result<nix::sys::inotify::Inotify> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let i = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    i.add_watch(
        dir,
        AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
    )?;
    Ok(i)
}

/// The events file, read through one descriptor from where the last read
/// stopped; a line is handed on only when whole.
struct Tail {
    file: Option<std::fs::File>,
    partial: Vec<u8>,
}

impl Tail {
    fn open(path: &std::path::Path) -> Tail {
        Tail {
            file: std::fs::File::open(path).ok(),
            partial: Vec::new(),
        }
    }

    /// Every whole line added since the last call.
    fn lines(&mut self, each: &dyn Fn(&str)) {
        use std::io::Read;
        let Some(f) = &mut self.file else { return };
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let whole: Vec<u8> = self.partial.drain(..=end).collect();
        for line in String::from_utf8_lossy(&whole).lines() {
            each(line);
        }
    }

    /// Whether `path` is now another file than the one being read (or the
    /// one being read did not exist yet and now does).
    fn replaced(&self, path: &std::path::Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(now) = std::fs::metadata(path) else {
            return false;
        };
        match &self.file {
            None => true,
            Some(f) => f
                .metadata()
                .is_ok_and(|m| (m.dev(), m.ino()) != (now.dev(), now.ino())),
        }
    }
}

fn print(output: Output, e: &Event) {
    if output == Output::Json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
        return;
    }
    let who = e
        .container
        .name
        .clone()
        .unwrap_or_else(|| e.container.id.chars().take(12).collect());
    let change = match (e.old, e.new) {
        (Some(o), Some(n)) => format!(" {} {o} -> {n}", e.counter.as_deref().unwrap_or("")),
        _ => String::new(),
    };
    let limit = e.limit.map(Limit::Bytes).unwrap_or(Limit::Unlimited);
    let mut line = format!(
        "{} {:<15} {:<20}{change} usage {} / {limit}",
        e.time,
        e.kind,
        who,
        Limit::Bytes(e.usage)
    );
    if let Some(r) = e.rate {
        line.push_str(&format!(", growing {}/s", Limit::Bytes(r as u64)));
    }
    if let Some(t) = e.time_to_limit {
        line.push_str(&format!(", limit in {t:.0}s"));
    }
    println!("{line}");
}
