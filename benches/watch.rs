//! `cglimit watch` with 1,000 idle real v1 cgroups at one-second sampling:
//! CPU and RSS, against a shell loop that only reads each cgroup's usage
//! once a second (what a hand-made poller does), measured in the same run;
//! OOM kill to recorded line, p50 and p99; the same watcher while 1,000
//! containers come and go a minute (their series kept for `--retention`);
//! scrape latency with 50 concurrent scrapers and a client trickling its
//! request; and `cglimit top --once` against `docker stats --no-stream` on
//! 50 containers.
//!
//! Needs root (docker.io and busybox-static for the last part).
//! Run: `cargo bench --bench watch`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::Dockerd;
use common::{BIN, Lab};

/// utime+stime (+ reaped children) in seconds, and VmRSS in KiB.
fn cpu_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = f[11..15].iter().map(|v| v.parse::<f64>().unwrap()).sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, rss)
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    // CGROUPS=10000 for the dense-host case (raise `ulimit -n` first: the
    // watcher takes up to two descriptors per cgroup).
    let n: usize = match std::env::var("CGROUPS") {
        Ok(v) => v.parse().expect("CGROUPS is a number"),
        Err(_) if smoke => 20,
        Err(_) => 1000,
    };
    let measure = Duration::from_secs(if smoke { 3 } else { 30 });
    let ooms = if smoke { 3 } else { 40 };
    let lab = Lab::new("watchbench");
    let root = common::v1_memory_root().join(lab.cgroup_parent.trim_start_matches('/'));
    for i in 0..n {
        std::fs::create_dir_all(root.join(format!("c{i:04}"))).unwrap();
    }
    let oomc = root.join("oomc");
    std::fs::create_dir_all(&oomc).unwrap();
    std::fs::write(oomc.join("memory.limit_in_bytes"), "16777216").unwrap();
    let none = lab.dir.join("none");
    std::fs::create_dir_all(&none).unwrap();

    // The baseline: a shell reading every cgroup's usage once a second.
    let script = format!(
        "cd {}; while :; do cat c*/memory.usage_in_bytes > /dev/null; sleep 1; done",
        root.display()
    );
    let mut base = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (c0, _) = cpu_rss(base.id());
    std::thread::sleep(measure);
    let (c1, base_rss) = cpu_rss(base.id());
    let _ = base.kill();
    let _ = base.wait();
    let base_cpu = (c1 - c0) / measure.as_secs_f64() * 100.0;

    let state = lab.dir.join("state");
    let port = common::watch::free_port();
    let mut w = Command::new(BIN)
        .args(["watch", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--no-podman",
            "--no-docker",
            "--interval",
            "1s",
            "--cgroup-parent",
            &lab.cgroup_parent,
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--runc-root")
        .arg(&none)
        .arg("--crun-root")
        .arg(&none)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it find every cgroup (discovery runs every tenth tick) and settle.
    std::thread::sleep(Duration::from_secs(if smoke {
        2
    } else {
        8 + n as u64 / 1000
    }));
    let (c0, _) = cpu_rss(w.id());
    std::thread::sleep(measure);
    let (c1, rss) = cpu_rss(w.id());
    let fds = std::fs::read_dir(format!("/proc/{}/fd", w.id()))
        .map(|d| d.count())
        .unwrap_or(0);
    let cpu = (c1 - c0) / measure.as_secs_f64() * 100.0;

    println!(
        "### `cglimit watch`, {n} idle v1 cgroups, 1 s sampling ({}s measured)\n",
        measure.as_secs()
    );
    println!("| process | CPU, % of one core | RSS | descriptors |");
    println!("|---|---|---|---|");
    println!(
        "| shell loop reading usage only (baseline) | {base_cpu:.2} | {} KiB | - |",
        base_rss
    );
    println!(
        "| `cglimit watch` | {cpu:.2} ({:.2}× the baseline) | {rss} KiB ({:.1} MiB) | {fds} ({:.2} per cgroup) |",
        cpu / base_cpu.max(1e-9),
        rss as f64 / 1024.0,
        fds as f64 / n as f64
    );

    // OOM kill -> recorded line. The benchmark's own eventfd on the same
    // cgroup marks the OOM; the line is seen by polling the file's size.
    // One OOM can notify twice (the kernel 6.18 here does, now and then: the
    // watcher's `oom` event then counts 2), and a count left over from the
    // last kill would start the next clock before its OOM: what is left is
    // drained before each child starts.
    let efd = nix::sys::eventfd::EventFd::from_value_and_flags(
        0,
        nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
    )
    .unwrap();
    let wait_oom = |efd: &nix::sys::eventfd::EventFd| {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(efd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(5000u16));
        efd.read().is_ok()
    };
    let oc = std::fs::File::open(oomc.join("memory.oom_control")).unwrap();
    std::fs::write(
        oomc.join("cgroup.event_control"),
        format!("{} {}", efd.as_fd().as_raw_fd(), oc.as_raw_fd()),
    )
    .unwrap();
    let events = state.join("events.jsonl");
    let count = || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .matches("\"kind\":\"oom_kill\"")
            .count()
    };
    let mut lat = Vec::new();
    for _ in 0..ooms {
        while efd.read().is_ok() {}
        let before = count();
        let procs = oomc.join("cgroup.procs").display().to_string();
        let mut child = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "echo $$ > {procs}; exec sh -c 's=aaaaaaaaaaaaaaaa; while :; do s=$s$s; done'"
                ),
            ])
            .spawn()
            .unwrap();
        assert!(wait_oom(&efd), "no OOM notification within 5 s");
        let t0 = Instant::now();
        while count() == before && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(50));
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    println!("\n### OOM kill to recorded line ({ooms} OOM kills)\n");
    println!("| p50 | p90 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0)
    );

    // Scrapes: one at a time, then 50 at once while a client trickles its
    // request a byte a second.
    let scrape = move || {
        let t = Instant::now();
        let m = common::watch::metrics(port);
        assert!(m.contains("cglimit_build_info"));
        t.elapsed().as_secs_f64() * 1e3
    };
    // The watcher's CPU over the 20 (its render and its writes; the ticks
    // meanwhile are a small part of it).
    let (c0, _) = cpu_rss(w.id());
    let mut alone: Vec<f64> = (0..20).map(|_| scrape()).collect();
    let (c1, _) = cpu_rss(w.id());
    let per_scrape = (c1 - c0) / 20.0 * 1e3;
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"G").unwrap();
    let mut crowd: Vec<f64> = (0..50)
        .map(|_| std::thread::spawn(scrape))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    drop(slow);
    let pct = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    println!("\n### Scrapes of {n} containers' metrics\n");
    println!("| case | p50 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| one at a time (baseline), 20 | {:.1} ms | {:.1} ms | {:.1} ms |",
        pct(&mut alone, 0.5),
        pct(&mut alone, 0.99),
        pct(&mut alone, 1.0)
    );
    println!(
        "| 50 at once, one client trickling its request | {:.1} ms | {:.1} ms | {:.1} ms |",
        pct(&mut crowd, 0.5),
        pct(&mut crowd, 0.99),
        pct(&mut crowd, 1.0)
    );
    println!("\nThe watcher's CPU per scrape, one at a time: {per_scrape:.0} ms");

    // Churn: 1,000 containers a minute come and go (CHURN sets how many;
    // a cgroup made, and removed 20 s later: discovery by
    // `--cgroup-parent` runs every 10 s), on top of the idle ones; the gone
    // keep their series for the retention window, which a minute does not
    // reach.
    let churn = Duration::from_secs(if smoke { 3 } else { 60 });
    let per_minute: usize = match std::env::var("CHURN") {
        Ok(v) => v.parse().expect("CHURN is a number of containers a minute"),
        Err(_) if smoke => 60,
        Err(_) => 1000,
    };
    let gap = Duration::from_secs_f64(60.0 / per_minute as f64);
    // Runs the churn for `churn`, measuring `pid`'s CPU and RSS meanwhile.
    let run_churn = |pid: u32, tag: &str| {
        let (c0, _) = cpu_rss(pid);
        let t = Instant::now();
        let mut made = std::collections::VecDeque::new();
        let mut k = 0;
        while t.elapsed() < churn {
            let d = root.join(format!("churn{tag}{k:06}"));
            std::fs::create_dir(&d).unwrap();
            made.push_back(d);
            k += 1;
            if made.len() > per_minute / 3 {
                let _ = std::fs::remove_dir(made.pop_front().unwrap());
            }
            std::thread::sleep(gap);
        }
        let (c1, rss) = cpu_rss(pid);
        for d in made {
            let _ = std::fs::remove_dir(d);
        }
        ((c1 - c0) / churn.as_secs_f64() * 100.0, rss)
    };
    // The floor under the same churn: the shell loop, reading whatever
    // cgroups exist each second.
    let script = format!(
        "cd {}; while :; do cat c*/memory.usage_in_bytes > /dev/null 2>&1; sleep 1; done",
        root.display()
    );
    let mut base = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    let (base_churn_cpu, _) = run_churn(base.id(), "b");
    let _ = base.kill();
    let _ = base.wait();
    let (churn_cpu, churn_rss) = run_churn(w.id(), "w");
    let m = common::watch::metrics(port);
    let gone = m
        .lines()
        .filter(|l| l.starts_with("cglimit_container_gone_timestamp_seconds{"))
        .count();
    println!(
        "\n### The same watcher while {per_minute} containers a minute come and go ({}s; about {} of them alive at once, on top of the {n} idle ones)\n",
        churn.as_secs(),
        per_minute / 3
    );
    println!("| process | CPU, % of one core | RSS | gone containers still exported |");
    println!("|---|---|---|---|");
    println!("| shell loop reading usage only (baseline) | {base_churn_cpu:.2} | - | - |");
    println!(
        "| `cglimit watch` | {churn_cpu:.2} ({:.2}× the baseline) | {churn_rss} KiB ({:.1} MiB) | {gone} |",
        churn_cpu / base_churn_cpu.max(1e-9),
        churn_rss as f64 / 1024.0
    );
    let _ = w.kill();
    let _ = w.wait();
    // The cgroups go with the lab; the OOM cgroup's processes are gone.

    // top --once against docker stats --no-stream on 50 containers.
    let containers = if smoke { 3 } else { 50 };
    let d = Dockerd::start(&lab, &[]);
    for i in 0..containers {
        let name = format!("s{i}");
        let out = d.run_plain(&name, &[], &["sleep", "600"]);
        assert!(out.status.success());
    }
    let host = format!("unix://{}", d.sock.display());
    let runs = if smoke { 1 } else { 5 };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(BIN)
            .args(["top", "--once", "--no-podman", "--docker-host", &host])
            .arg("--runc-root")
            .arg(&none)
            .arg("--crun-root")
            .arg(&none)
            .output()
            .unwrap();
        a.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            containers + 1
        );
        let t = Instant::now();
        assert!(d.docker(&["stats", "--no-stream"]).status.success());
        b.push(t.elapsed().as_secs_f64() * 1e3);
    }
    a.sort_by(|x, y| x.partial_cmp(y).unwrap());
    b.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let (ma, mb) = (a[a.len() / 2], b[b.len() / 2]);
    println!(
        "\n### {containers} containers: `cglimit top --once` against `docker stats --no-stream` ({runs} runs, median)\n"
    );
    println!("| command | ms |");
    println!("|---|---|");
    println!("| `docker stats --no-stream` (baseline) | {mb:.0} |");
    println!(
        "| `cglimit top --once` (includes a 0.5 s pause to measure the trend) | {ma:.0} ({:.2}× the baseline) |",
        ma / mb
    );
}
