//! `cglimit events`: the recorded events, filtered, once or as they come.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{EventsArgs, Output};
use crate::cmd::watch::journal::{self, Event};
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
    let mut seen = 0usize;
    let mut all: Vec<Event> = journal::read(&path.with_extension("jsonl.1"));
    all.extend(journal::read(&path));
    for e in all.iter().filter(|e| keep(e)) {
        print(args.output, e);
    }
    seen += journal::read(&path).len();
    if !args.follow {
        return ExitCode::SUCCESS;
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = journal::read(&path);
        if now.len() < seen {
            seen = 0; // rotated
        }
        for e in now.iter().skip(seen).filter(|e| keep(e)) {
            print(args.output, e);
        }
        seen = now.len();
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
