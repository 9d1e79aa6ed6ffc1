//! `cglimit top`: like `docker stats` for memory: usage / limit, swap,
//! failcnt, OOM kills and the trend of anonymous memory, straight from the
//! cgroups. Usage is the working set (usage less inactive page cache), as
//! `docker stats`, podman and the kubelet show it; the page cache a
//! container has touched is in the last column.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cgroup::stats;
use crate::cli::TopArgs;
use crate::size::Limit;

pub fn run(args: &TopArgs) -> ExitCode {
    loop {
        let mut problems = Vec::new();
        let targets = crate::facts::discover::all(&args.sources, &mut problems);
        let mut rows = Vec::new();
        let first: Vec<Option<stats::Sample>> =
            targets.iter().map(|t| stats::read(&t.dir).ok()).collect();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        for (t, a) in targets.iter().zip(first) {
            let (Some(a), Ok(b)) = (a, stats::read(&t.dir)) else {
                continue;
            };
            let dt = t0.elapsed().as_secs_f64();
            let trend = (b.anon as f64 - a.anon as f64) / dt;
            let name = crate::facts::discover::display(&t.facts.id, t.facts.name.as_deref());
            let limit = b.limit.map(Limit::Bytes).unwrap_or(Limit::Unlimited);
            let ws = b.working_set();
            let pct = b
                .limit
                .map(|l| format!("{:.1}%", ws as f64 * 100.0 / l as f64))
                .unwrap_or_else(|| "-".into());
            let swap = b
                .swap_usage
                .map(|s| Limit::Bytes(s).to_string())
                .unwrap_or_else(|| "-".into());
            let failcnt = b
                .counters
                .get("failcnt")
                .or(b.counters.get("max"))
                .copied()
                .unwrap_or(0);
            let kills = b.counters.get("oom_kill").copied().unwrap_or(0);
            let trend = if trend.abs() < 1024.0 {
                "flat".to_string()
            } else if trend > 0.0 {
                format!("+{}/s", Limit::Bytes(trend as u64))
            } else {
                format!("-{}/s", Limit::Bytes((-trend) as u64))
            };
            let m = &b.memory;
            let kinds =
                [m.anon, m.file, m.shmem, m.kernel, m.sock].map(|v| Limit::Bytes(v).to_string());
            let mut row = vec![name, format!("{} / {limit}", Limit::Bytes(ws)), pct];
            if args.wide {
                row.extend(kinds);
            }
            row.extend([
                swap,
                failcnt.to_string(),
                kills.to_string(),
                trend,
                ws.to_string(),
                b.usage.to_string(),
            ]);
            rows.push(row);
        }
        if !args.once {
            print!("\x1b[2J\x1b[H");
        }
        let mut header = vec!["CONTAINER", "MEM USAGE / LIMIT", "MEM %"];
        if args.wide {
            header.extend(["ANON", "FILE", "SHMEM", "KERNEL", "SOCK"]);
        }
        header.extend([
            "SWAP",
            "FAILCNT",
            "OOM KILLS",
            "TREND",
            "WORKING SET BYTES",
            "USAGE BYTES (WITH CACHE)",
        ]);
        let mut table = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
        table.extend(rows);
        crate::cmd::print_table(&table);
        for p in &problems {
            eprintln!("{}: {}", p.container, p.message);
        }
        if args.once {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
}
