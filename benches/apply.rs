//! `cglimit apply --all` over many real containers, against baselines from
//! the same run:
//! - 100 and 1,000 real v1 memory cgroups (below this process's own memory
//!   cgroup, no engine), already compliant: time per container, and whether
//!   it grows linearly; baseline: the same command over an empty parent;
//! - 50 Docker containers (private dockerd): `apply --all` against one
//!   `docker inspect` of the same 50 containers.
//!
//! Needs root (and docker.io, busybox-static for the Docker part).
//! Run: `cargo bench --bench apply`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::docker::Dockerd;
use common::{BIN, Lab};

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let runs = if smoke { 2 } else { 15 };
    let sizes: &[usize] = if smoke { &[10, 100] } else { &[100, 1000] };
    let containers = if smoke { 3 } else { 50 };
    let lab = Lab::new("applybench");
    let root = common::v1_memory_root().join(lab.cgroup_parent.trim_start_matches('/'));
    // Runtime state dirs with nothing in them: no runc or crun containers
    // of the host are counted.
    let none = lab.dir.join("no-runtime");
    std::fs::create_dir_all(&none).unwrap();
    let none = none.display().to_string();

    let time_apply = |parent: &str, extra: &[&str]| -> f64 {
        let mut v = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let out = Command::new(BIN)
                .arg("apply")
                .arg("--policy-dir")
                .arg(&lab.policy_dir)
                .args([
                    "--all",
                    "--no-podman",
                    "--runc-root",
                    &none,
                    "--crun-root",
                    &none,
                ])
                .args(["--cgroup-parent", parent])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .unwrap();
            v.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        median(&mut v)
    };

    println!(
        "### `apply --all` over real v1 cgroups, already compliant ({runs} runs each, median)\n"
    );
    println!("| cgroups | total ms | minus empty-parent baseline | per cgroup |");
    println!("|---|---|---|---|");
    let empty = format!("{}/empty", lab.cgroup_parent);
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let base = time_apply(&empty, &["--no-docker"]);
    println!("| 0 (baseline) | {base:.2} | - | - |");
    let mut per = Vec::new();
    for &n in sizes {
        let parent = format!("{}/n{n}", lab.cgroup_parent);
        let dir = root.join(format!("n{n}"));
        for i in 0..n {
            std::fs::create_dir_all(dir.join(format!("c{i:04}"))).unwrap();
        }
        // First pass brings them under policy; the timed passes find them compliant.
        let st = Command::new(BIN)
            .arg("apply")
            .arg("--policy-dir")
            .arg(&lab.policy_dir)
            .args([
                "--all",
                "--no-docker",
                "--no-podman",
                "--cgroup-parent",
                &parent,
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let t = time_apply(&parent, &["--no-docker"]);
        let each = (t - base) / n as f64;
        per.push(each);
        println!("| {n} | {t:.2} | {:.2} | {:.1} µs |", t - base, each * 1e3);
    }
    println!(
        "\nGrowth from {} to {}: {:.2}× the per-cgroup time (1.00 is linear).",
        sizes[0],
        sizes[1],
        per[1] / per[0]
    );

    // Docker.
    let d = Dockerd::start(&lab, &[]);
    let mut ids = Vec::new();
    for i in 0..containers {
        let name = format!("b{i}");
        let out = d.run_plain(&name, &[], &["sleep", "600"]);
        assert!(out.status.success());
        ids.push(name);
    }
    let host = format!("unix://{}", d.sock.display());
    let apply_docker = || {
        Command::new(BIN)
            .arg("apply")
            .arg("--policy-dir")
            .arg(&lab.policy_dir)
            .args([
                "--all",
                "--no-podman",
                "--docker-host",
                &host,
                "--runc-root",
                &none,
                "--crun-root",
                &none,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    let t = Instant::now();
    assert!(apply_docker().success());
    let first = t.elapsed().as_secs_f64() * 1e3;
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        assert!(apply_docker().success());
        a.push(t.elapsed().as_secs_f64() * 1e3);
        let mut args = vec!["inspect"];
        args.extend(ids.iter().map(String::as_str));
        let t = Instant::now();
        assert!(d.docker(&args).status.success());
        b.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (ma, mb) = (median(&mut a), median(&mut b));
    println!(
        "\n### `apply --all` over {containers} Docker containers ({runs} runs, interleaved, median)\n"
    );
    println!("| case | total ms | per container |");
    println!("|---|---|---|");
    println!(
        "| `docker inspect` of the {containers} (baseline) | {mb:.1} | {:.2} ms |",
        mb / containers as f64
    );
    println!(
        "| `apply --all`, first pass (fixes every container) | {first:.1} | {:.2} ms |",
        first / containers as f64
    );
    println!(
        "| `apply --all`, compliant | {ma:.1} | {:.2} ms ({:.2}× the baseline) |",
        ma / containers as f64,
        ma / mb
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
