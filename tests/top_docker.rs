//! `cglimit top --once` against `docker stats --no-stream` for the same
//! containers, read in the same run: the working set (usage less inactive
//! page cache) is what both show, to the page. One container holds 30 MB of
//! page cache, which the raw usage counts and neither shows.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::docker::Dockerd;
use common::*;

/// What `docker stats` computes for a container on cgroup v1: the engine's
/// `memory_stats.usage` less `total_inactive_file`.
fn docker_stats_bytes(d: &Dockerd, name: &str) -> (u64, u64) {
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    write!(
        s,
        "GET /containers/{name}/stats?stream=false HTTP/1.0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let usage = v["memory_stats"]["usage"].as_u64().unwrap();
    let inactive = v["memory_stats"]["stats"]["total_inactive_file"]
        .as_u64()
        .unwrap();
    (usage - inactive, usage)
}

/// `docker stats`' own `MemUsage` column, in bytes (it prints three
/// significant digits), for the log: it samples a second or so later than
/// the engine's API read above, and a shell's memory moves by a page or a
/// hundred meanwhile, so it is shown, not compared.
fn docker_cli_bytes(d: &Dockerd, name: &str) -> f64 {
    let out = d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        name,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let used = text.split_whitespace().nth(1).unwrap().to_string();
    let (num, unit) = used.split_at(used.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let mult = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        "GiB" => 1073741824.0,
        u => panic!("unit {u}"),
    };
    num.parse::<f64>().unwrap() * mult
}

#[test]
fn top_shows_what_docker_stats_shows() {
    let lab = Lab::new("topdocker");
    let d = Dockerd::start(&lab, &[]);
    for (name, cmd) in [
        ("cache", "head -c 30000000 /dev/zero > /f; sleep 600"),
        ("idle", "sleep 600"),
    ] {
        let out = d.run_plain(name, &[], &["sh", "-c", cmd]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let none = lab.dir.join("none");
    std::fs::create_dir_all(&none).unwrap();
    // The engine's numbers just before and just after top reads: a shell's
    // memory may move by a page meanwhile.
    let before: Vec<(u64, u64)> = ["cache", "idle"]
        .iter()
        .map(|n| docker_stats_bytes(&d, n))
        .collect();
    // `cglimit top --no-stream` against this dockerd only, with `extra` flags.
    let top = |extra: &[&str]| {
        Command::new(BIN)
            .args(["top", "--no-stream", "--no-podman"])
            .args(extra)
            .arg("--docker-host")
            .arg(format!("unix://{}", d.sock.display()))
            .arg("--runc-root")
            .arg(&none)
            .arg("--crun-root")
            .arg(&none)
            .output()
            .unwrap()
    };
    let out = top(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for (i, name) in ["cache", "idle"].into_iter().enumerate() {
        let row = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        let top_ws: u64 = cols[cols.len() - 2].parse().unwrap();
        let top_usage: u64 = cols[cols.len() - 1].parse().unwrap();
        // The engine's own numbers, read right after top's, computed as
        // the docker CLI computes its MEM USAGE.
        let (docker_ws, docker_usage) = docker_stats_bytes(&d, name);
        let cli = docker_cli_bytes(&d, name);
        eprintln!(
            "{name}: top {top_ws} B (usage with cache {top_usage}), docker stats {docker_ws} B (API), {cli:.0} B (CLI, 3 digits)"
        );
        let (lo, hi) = (
            before[i].0.min(docker_ws).saturating_sub(4096),
            before[i].0.max(docker_ws) + 4096,
        );
        assert!(
            (lo..=hi).contains(&top_ws),
            "{name}: top {top_ws}, docker stats {} before and {docker_ws} after",
            before[i].0
        );
        if name == "cache" {
            assert!(
                top_usage > top_ws + 20_000_000 && docker_usage > docker_ws + 20_000_000,
                "the page cache is not there to leave out: {row}"
            );
        }
    }
    // --wide: what the memory is; the written file is page cache.
    let out = top(&["--wide"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().next().is_some_and(|h| h.contains("ANON")
            && h.contains("FILE")
            && h.contains("SHMEM")
            && h.contains("KERNEL")),
        "{text}"
    );
    let row = text.lines().find(|l| l.starts_with("cache")).unwrap();
    // CONTAINER, USAGE, "/", LIMIT, MEM %, ANON, FILE…
    let file = row.split_whitespace().nth(6).unwrap();
    let bytes = |s: &str| -> u64 {
        let (n, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
        let n: f64 = n.parse().unwrap_or(0.0);
        (n * match unit {
            "K" => 1024.0,
            "M" => 1048576.0,
            "G" => 1073741824.0,
            _ => 1.0,
        }) as u64
    };
    assert!(bytes(file) > 20_000_000, "FILE {file}: {row}");
}
