//! `cglimit diagnose` on a container of 100 processes (a real v1 memory
//! cgroup holding 100 sleeping processes, found as a bare cgroup), against
//! a shell that reads only what it must (the cgroup's `memory.stat` and
//! every process's `/proc/PID/status`), interleaved round by round.
//!
//! Needs root. Run: `cargo bench --bench diagnose`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{BIN, Lab};

struct Sleepers(Vec<Child>);

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn p90(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() * 9 / 10]
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds = if smoke { 5 } else { 200 };
    let lab = Lab::new("diagbench");
    let parent = common::v1_memory_root().join(lab.cgroup_parent.trim_start_matches('/'));
    let cg = parent.join("app");
    std::fs::create_dir_all(&cg).unwrap();
    let mut sleepers = Sleepers(Vec::new());
    for _ in 0..100 {
        let c = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        std::fs::write(cg.join("cgroup.procs"), c.id().to_string()).unwrap();
        sleepers.0.push(c);
    }
    let none = lab.dir.join("none");
    std::fs::create_dir_all(&none).unwrap();
    let diagnose = || {
        let out = Command::new(BIN)
            .args([
                "diagnose",
                "app",
                "--no-docker",
                "--no-podman",
                "-o",
                "json",
            ])
            .arg("--cgroup-parent")
            .arg(&lab.cgroup_parent)
            .arg("--runc-root")
            .arg(&none)
            .arg("--crun-root")
            .arg(&none)
            .arg("--state-dir")
            .arg(&lab.state_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let first: serde_json::Value = serde_json::from_slice(&diagnose()).unwrap();
    assert_eq!(first["processes"].as_array().map(Vec::len), Some(100));
    let floor_script = format!(
        "cat {0}/memory.stat > /dev/null; for p in $(cat {0}/cgroup.procs); do cat /proc/$p/status; done > /dev/null",
        cg.display()
    );
    let floor = || {
        let st = Command::new("sh")
            .args(["-c", &floor_script])
            .status()
            .unwrap();
        assert!(st.success());
    };
    let (mut d, mut f) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        diagnose();
        d.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        floor();
        f.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "### `cglimit diagnose` on a container of 100 processes ({rounds} rounds, interleaved)\n"
    );
    println!("| case | median ms | p90 ms |");
    println!("|---|---|---|");
    let (dm, dp) = (median(&mut d), p90(&mut d));
    let (fm, fp) = (median(&mut f), p90(&mut f));
    println!(
        "| shell reading memory.stat and 100 /proc/PID/status (the floor) | {fm:.2} | {fp:.2} |"
    );
    println!("| cglimit diagnose -o json | {dm:.2} | {dp:.2} |");
    println!(
        "\ntarget: under 50 ms — median {dm:.2} ms, p90 {dp:.2} ms ({:.2}x the floor)",
        dm / fm
    );
    drop(sleepers);
    let _ = std::fs::remove_dir(&cg);
}
