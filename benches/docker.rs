//! `docker run --rm` of a trivial container through plain runc and through
//! `cglimit runtime`, alternated in one run against a private dockerd.
//! A third runtime asks no engine (its socket does not exist), so the
//! difference to it is the engine lookup's share.
//!
//! Needs root, docker.io and busybox-static. Run: `cargo bench --bench docker`.
//! `BASELINE_BIN=/path/to/an/older/cglimit` adds that build's symlink
//! registration to the same interleaved rounds.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use common::Lab;
use common::docker::{Dockerd, IMAGE};
use common::{Libc, static_program, static_program_with};
use support::{interval, median, pct};

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let pairs: usize = std::env::var("PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 2 } else { 30 });
    let lab = Lab::new("dockerbench");
    let log = lab.dir.join("cglimit.log");
    let args = vec![
        "--policy-dir".to_string(),
        lab.policy_dir.display().to_string(),
        "--log-file".into(),
        log.display().to_string(),
    ];
    std::fs::write(
        lab.dir.join("config.yaml"),
        format!("policyDir: {}\n", lab.policy_dir.display()),
    )
    .unwrap();
    // Policy files younger than 2 s are not cached; let them age.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let d = Dockerd::start(&lab, &args);
    let mut no_engine = args.clone();
    no_engine.extend(["--docker-host".into(), "unix:///nonexistent/d.sock".into()]);
    d.add_runtime("cglimit-noengine", &no_engine);
    // The symlink registration: no runtimeArgs, so dockerd runs the binary
    // itself instead of a generated `sh` script; settings from the file.
    let link = lab.dir.join("cglimit-runtime");
    std::os::unix::fs::symlink(common::BIN, &link).unwrap();
    d.add_runtime_path("cglimit-symlink", &link);
    // The floor of any exec wrapper, in place: a static program that only
    // execs runc with its argv, on cglimit's C library and on glibc.
    let exec_runc = "use std::os::unix::process::CommandExt;\nfn main() {\n    let e = std::process::Command::new(\"runc\").args(std::env::args_os().skip(1)).exec();\n    eprintln!(\"{e}\");\n    std::process::exit(127);\n}\n";
    let floor = static_program(&lab.dir, "exec-floor", exec_runc);
    d.add_runtime_path("exec-floor", &floor);
    let floor_glibc = static_program_with(Libc::Glibc, &lab.dir, "exec-floor-glibc", exec_runc);
    d.add_runtime_path("exec-floor-glibc", &floor_glibc);
    // The floor of a registration with runtimeArgs: the same program given
    // one argument it drops, behind the script dockerd generates for it.
    let floor_args = static_program(
        &lab.dir,
        "exec-floor-args",
        &exec_runc.replace("skip(1)", "skip(2)"),
    );
    d.add_runtime_path_args("exec-floor-args", &floor_args, &["runtime"]);
    // That runtime asks the engine at its default socket: point it here.
    std::fs::write(
        lab.dir.join("config.yaml"),
        format!(
            "policyDir: {}\ndockerHost: unix://{}\n",
            lab.policy_dir.display(),
            d.sock.display()
        ),
    )
    .unwrap();
    let baseline = std::env::var("BASELINE_BIN").ok();
    if let Some(old) = &baseline {
        let link = lab.dir.join("baseline").join("cglimit-runtime");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(old, &link).unwrap();
        d.add_runtime_path("cglimit-baseline", &link);
    }
    let mut cases = vec![
        ("runc", "--runtime runc"),
        (
            "runc+limits",
            "--runtime runc, with the limits the policy gives",
        ),
        ("cglimit", "--runtime cglimit"),
        ("cglimit-noengine", "--runtime cglimit, engine not asked"),
        (
            "cglimit-symlink",
            "`cglimit-runtime` symlink, no runtimeArgs",
        ),
        (
            "exec-floor",
            "a static program that only execs runc (the floor; same C library as cglimit)",
        ),
        ("exec-floor-glibc", "the same program on glibc"),
        (
            "exec-floor-args",
            "the same program with runtimeArgs (the floor of `--runtime cglimit`)",
        ),
    ];
    if baseline.is_some() {
        cases.push((
            "cglimit-baseline",
            "the baseline build's `cglimit-runtime` symlink",
        ));
    }
    // The lab's default policy gives 64M, no swap, high 50%: the same
    // limits asked of plain runc isolate what the wrapper itself adds.
    let run = |rt: &str| {
        let mut a = vec!["run", "--rm", "--net", "none"];
        if rt == "runc+limits" {
            a.extend(["--runtime", "runc", "-m", "64m", "--memory-swap", "64m"]);
            a.extend(["--memory-reservation", "32m"]);
        } else {
            a.extend(["--runtime", rt]);
        }
        a.extend([IMAGE, "true"]);
        d.docker(&a)
    };
    // Warm up: image layers, the policy cache.
    for (rt, _) in &cases {
        let out = run(rt);
        assert!(
            out.status.success(),
            "{rt}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut samples = vec![Vec::new(); cases.len()];
    for _ in 0..pairs {
        for (i, (rt, _)) in cases.iter().enumerate() {
            let t = Instant::now();
            let out = run(rt);
            samples[i].push(t.elapsed().as_secs_f64() * 1e3);
            assert!(out.status.success());
        }
    }
    println!("### `docker run --rm` of a trivial container ({pairs} rounds, interleaved)\n");
    println!(
        "| runtime | median ms | p90 ms | vs runc: difference of medians | its 95% interval | vs runc with the same limits |"
    );
    println!("|---|---|---|---|---|---|");
    let med = |v: &mut Vec<f64>, p: f64| pct(v, p);
    let base = median(&mut samples[0].clone());
    let limited = med(&mut samples[1].clone(), 0.5);
    let vs = |m: f64, b: f64| format!("{:+.2} ms ({:+.2}%)", m - b, (m / b - 1.0) * 100.0);
    for (i, (_, name)) in cases.iter().enumerate() {
        let m = med(&mut samples[i].clone(), 0.5);
        let p90 = med(&mut samples[i].clone(), 0.9);
        let (a, ci) = if i == 0 {
            ("-".into(), "-".into())
        } else {
            let (lo, hi) = interval(&samples[i], &samples[0]);
            (vs(m, base), format!("{lo:+.2} .. {hi:+.2} ms"))
        };
        let b = if i < 2 { "-".into() } else { vs(m, limited) };
        println!("| {name} | {m:.1} | {p90:.1} | {a} | {ci} | {b} |");
    }
    if baseline.is_some() {
        let (this, old) = (4, cases.len() - 1);
        let (m, b) = (
            med(&mut samples[this].clone(), 0.5),
            med(&mut samples[old].clone(), 0.5),
        );
        let (lo, hi) = interval(&samples[this], &samples[old]);
        println!(
            "\nThis build's symlink against the baseline build's, same rounds: {} [{lo:+.2} .. {hi:+.2} ms]",
            vs(m, b)
        );
    }
    // The wrapper logs its own time on each create: the engine's share.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut total = Vec::new();
    let mut engine = Vec::new();
    for l in text.lines() {
        let Some(i) = l.find("decided in ") else {
            continue;
        };
        let nums: Vec<f64> = l[i..]
            .split_whitespace()
            .filter_map(|w| w.parse::<f64>().ok())
            .collect();
        if nums.len() == 2 && nums[1] > 0.0 {
            total.push(nums[0] / 1e3);
            engine.push(nums[1] / 1e3);
        }
    }
    if !total.is_empty() {
        let (t, e) = (med(&mut total, 0.5), med(&mut engine, 0.5));
        println!(
            "\nInside the wrapper, per create (median of {}): decision and config.json edit {t:.2} ms, of which waiting for the engine's answer {e:.2} ms ({:.0}%; the question is sent first, the bundle and policies read meanwhile).",
            total.len(),
            e / t * 100.0
        );
    }
}
