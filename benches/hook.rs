//! The hook's cost on the container start path, measured in one run against
//! baselines from the same run:
//! - the hook process alone (1 and 1,000 policies, cache warm and cold)
//!   against `/bin/true` fed the same stdin;
//! - `runc run` of a trivial container without and with the hook.
//!
//! Needs root, runc and busybox-static. Run: `cargo bench --bench hook`.
//! Prints a Markdown report (the source of BENCHMARKS.md).
//!
//! `BASELINE_BIN=/path/to/an/older/cglimit` adds that build's hook to the
//! same interleaved rounds, so a change is measured against the build
//! before it and the floors in one run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;
use common::{
    BIN, Libc, OWN_LIBC, busybox, own_memory_cgroup, static_program, static_program_with,
};
use support::{interval, median, pct};

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then a few
    // rounds only, as a check that the benchmark still works.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let var = |name: &str, full: usize| -> usize {
        let v = std::env::var(name).ok().and_then(|v| v.parse().ok());
        v.unwrap_or(if smoke { 3 } else { full })
    };
    let rounds = var("ROUNDS", 400);
    let pairs = var("PAIRS", 1000);
    let work = std::env::temp_dir().join(format!("cglimit-bench-{}", std::process::id()));
    let _cleanup = Cleanup(work.clone());
    std::fs::create_dir_all(&work).unwrap();

    // Policy sets: the shipped examples (4 policies) and 1,000 generated ones.
    let p1 = work.join("p1");
    std::fs::create_dir_all(&p1).unwrap();
    std::fs::write(
        p1.join("default.yaml"),
        include_str!("../policies/00-default.yaml"),
    )
    .unwrap();
    let p1000 = work.join("p1000");
    std::fs::create_dir_all(&p1000).unwrap();
    let mut text = String::new();
    for i in 0..999 {
        text.push_str(&format!(
            "name: team-{i}\npriority: {}\nmatch:\n  labels: {{team: t{i}}}\n  names: [svc-{i}-*]\nmemory: {{default: 512M, min: 16M, max: 8G}}\nswap: {{default: 0, max: 1G}}\nhigh: 90%\nonViolation: clamp\n---\n",
            i % 7
        ));
    }
    text.push_str(include_str!("../policies/00-default.yaml"));
    std::fs::write(p1000.join("teams.yaml"), text).unwrap();
    // Files younger than 2 s are never cached (racy timestamps).
    std::thread::sleep(Duration::from_millis(2100));
    let cache = work.join("cache");

    // A real memory cgroup with a process, and its state as a runtime sends it.
    let own = own_memory_cgroup();
    let cg = PathBuf::from("/sys/fs/cgroup/memory")
        .join(own.trim_start_matches('/'))
        .join(format!("cglimit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&cg).unwrap();
    let _cg = Cleanup(cg.clone());
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    std::fs::write(cg.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    let bundle = work.join("hookbundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(
        bundle.join("config.json"),
        r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":17179869184,"swap":17179869184}}}}"#,
    )
    .unwrap();
    let state = work.join("state.json");
    std::fs::write(
        &state,
        format!(
            r#"{{"ociVersion":"1.0.2","id":"bench","status":"creating","pid":{},"bundle":"{}"}}"#,
            sleeper.id(),
            bundle.display()
        ),
    )
    .unwrap();

    // The baseline build keeps its cache apart: another cache format would
    // make each build rewrite the other's, and both parse YAML every run.
    let baseline_cache = work.join("cache-baseline");
    let hook_in = |dir: &Path, cached: bool, cache: &Path| -> Vec<String> {
        let mut a = vec![
            "hook".into(),
            "--policy-dir".into(),
            dir.display().to_string(),
            "--cache-dir".into(),
            cache.display().to_string(),
        ];
        if !cached {
            a.push("--no-cache".into());
        }
        a
    };
    let hook = |dir: &Path, cached: bool| hook_in(dir, cached, &cache);
    let mut cases: Vec<(&str, String, Vec<String>)> = vec![
        ("/bin/true (baseline)", "/bin/true".into(), vec![]),
        ("hook, 1 policy", BIN.into(), hook(&p1, true)),
        ("hook, 1,000 policies", BIN.into(), hook(&p1000, true)),
        (
            "hook, 1,000 policies, no cache (YAML)",
            BIN.into(),
            hook(&p1000, false),
        ),
    ];
    // The baseline build alone too, so that its instructions stand beside
    // this build's.
    if let Ok(old) = std::env::var("BASELINE_BIN") {
        cases.push((
            "the baseline build's hook, 1 policy",
            old.clone(),
            hook_in(&p1, true, &baseline_cache),
        ));
        cases.push((
            "the baseline build's hook, 1,000 policies",
            old,
            hook_in(&p1000, true, &baseline_cache),
        ));
    }
    // Warm the cache and check the hook succeeds before timing it.
    for (_, prog, args) in &cases[1..] {
        let st = Command::new(prog)
            .args(args)
            .stdin(std::fs::File::open(&state).unwrap())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{args:?}");
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for r in 0..rounds {
        for (i, (_, prog, args)) in cases.iter().enumerate() {
            // The YAML case is slow; fewer samples keep the run short.
            if i == 3 && r % 8 != 0 {
                continue;
            }
            let stdin = std::fs::File::open(&state).unwrap();
            let t = Instant::now();
            let st = Command::new(prog)
                .args(args)
                .stdin(stdin)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            samples[i].push(t.elapsed().as_secs_f64() * 1e3);
            assert!(st.success());
        }
    }
    // Instructions, counted by callgrind: the same for the same binary and
    // input whatever else the machine does, so small changes show.
    let instructions: Vec<Option<u64>> = cases
        .iter()
        .map(|(_, prog, args)| instructions(prog, args, &state))
        .collect();
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    println!("### Hook process alone ({rounds} rounds, interleaved)\n");
    println!("| case | median ms | p90 ms | added to baseline (median) |");
    println!("|---|---|---|---|");
    let base = median(&mut samples[0].clone());
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let mut s = samples[i].clone();
        let m = median(&mut s);
        let p90 = pct(&mut s, 0.9);
        let added = if i == 0 {
            "-".to_string()
        } else {
            format!("{:+.3} ms", m - base)
        };
        println!("| {name} | {m:.3} | {p90:.3} | {added} |");
    }
    if instructions.iter().all(Option::is_some) {
        println!("\n### Instructions per run (callgrind, user space, whole process)\n");
        println!("| case | instructions | vs /bin/true |");
        println!("|---|---|---|");
        let base = instructions[0].unwrap_or(1) as f64;
        for ((name, _, _), n) in cases.iter().zip(&instructions) {
            let n = n.unwrap_or(0);
            println!("| {name} | {n} | {:.2}x |", n as f64 / base);
        }
    }

    // runc run of a trivial container, without and with the hook.
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).unwrap();
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let parent = format!(
        "{}/cglimit-bench-runc-{}",
        own.trim_end_matches('/'),
        std::process::id()
    );
    let _runc_cg = CgCleanup(parent.clone());
    let make_bundle = |name: &str, hook: Option<(&str, Vec<String>)>| -> PathBuf {
        let b = work.join(name);
        std::fs::create_dir_all(&b).unwrap();
        let mut c = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"], "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": true},
            "root": {"path": rootfs, "readonly": true},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"cgroupsPath": format!("{parent}/{name}"), "resources": {"memory": {"limit": 1073741824}},
                      "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}]}
        });
        if let Some((path, mut a)) = hook {
            a.insert(0, path.into());
            c["hooks"] = serde_json::json!({"createRuntime": [{"path": path, "args": a}]});
        }
        std::fs::write(b.join("config.json"), c.to_string()).unwrap();
        b
    };
    // The cheapest hook there can be, which reads the state as every hook
    // must: what runc spends running it is the floor under any hook.
    let floor_src = "use std::io::Read;\nfn main() {\n    let _ = std::io::stdin().read_to_end(&mut Vec::new());\n}\n";
    let noop = static_program(&work, "noop", floor_src);
    // The same no-op on glibc: what glibc's start-up costs here (see
    // .cargo/config.toml).
    let noop_glibc = static_program_with(Libc::Glibc, &work, "noop-glibc", floor_src);
    let floor =
        format!("runc run, a static no-op as the hook (the floor; {OWN_LIBC:?}, as cglimit)");
    let runs = [
        ("runc run, no hook".to_string(), make_bundle("plain", None)),
        (
            floor,
            make_bundle("hnoop", Some((noop.to_str().unwrap(), vec![]))),
        ),
        (
            "runc run, the same no-op on glibc as the hook".into(),
            make_bundle("hnoopg", Some((noop_glibc.to_str().unwrap(), vec![]))),
        ),
        (
            "runc run, /bin/true as the hook".into(),
            make_bundle("htrue", Some(("/bin/true", vec![]))),
        ),
        (
            "runc run, `cglimit --version` as the hook".into(),
            make_bundle("hver", Some((BIN, vec!["--version".into()]))),
        ),
        (
            "runc run, cglimit hook, 1 policy".into(),
            make_bundle("h1", Some((BIN, hook(&p1, true)))),
        ),
        (
            "runc run, cglimit hook, 1,000 policies".into(),
            make_bundle("h1000", Some((BIN, hook(&p1000, true)))),
        ),
    ];
    let mut runs = runs.to_vec();
    let baseline = std::env::var("BASELINE_BIN").ok();
    if let Some(old) = &baseline {
        runs.push((
            "runc run, the baseline build's hook, 1 policy".into(),
            make_bundle(
                "b1",
                Some((old.as_str(), hook_in(&p1, true, &baseline_cache))),
            ),
        ));
        runs.push((
            "runc run, the baseline build's hook, 1,000 policies".into(),
            make_bundle(
                "b1000",
                Some((old.as_str(), hook_in(&p1000, true, &baseline_cache))),
            ),
        ));
    }
    let mut rs: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    for n in 0..pairs {
        for (i, (_, b)) in runs.iter().enumerate() {
            let id = format!("cglbench-{}-{i}-{n}", std::process::id());
            let t = Instant::now();
            let out = Command::new("runc")
                .args(["run", "--bundle"])
                .arg(b)
                .arg(&id)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            rs[i].push(t.elapsed().as_secs_f64() * 1e3);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    println!("\n### `runc run` of a trivial container ({pairs} rounds, interleaved)\n");
    println!("Each difference of medians with its 95% interval in brackets.\n");
    println!("| case | median ms | p90 ms | vs no hook | vs the no-op hook |");
    println!("|---|---|---|---|---|");
    let base = median(&mut rs[0].clone());
    let noop_hook = median(&mut rs[1].clone());
    let vs = |m: f64, b: f64| format!("{:+.3} ms ({:+.2}%)", m - b, (m / b - 1.0) * 100.0);
    for (i, (name, _)) in runs.iter().enumerate() {
        let mut s = rs[i].clone();
        let m = median(&mut s);
        let p90 = pct(&mut s, 0.9);
        let within = |b: usize| {
            let (lo, hi) = interval(&rs[i], &rs[b]);
            format!("[{lo:+.2} .. {hi:+.2}]")
        };
        let a = if i == 0 {
            "-".to_string()
        } else {
            format!("{} {}", vs(m, base), within(0))
        };
        let b = if i < 2 {
            "-".to_string()
        } else {
            format!("{} {}", vs(m, noop_hook), within(1))
        };
        println!("| {name} | {m:.2} | {p90:.2} | {a} | {b} |");
    }
    if baseline.is_some() {
        println!("\nThis build's hook against the baseline build's, same rounds:\n");
        for (this, old, what) in [(5, 7, "1 policy"), (6, 8, "1,000 policies")] {
            let (m, b) = (median(&mut rs[this].clone()), median(&mut rs[old].clone()));
            let (lo, hi) = interval(&rs[this], &rs[old]);
            println!("- {what}: {} [{lo:+.2} .. {hi:+.2}]", vs(m, b));
        }
    }
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.0.starts_with("/sys/fs/cgroup") {
            let _ = std::fs::remove_dir(&self.0);
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Removes the runc containers' parent cgroup from every hierarchy.
struct CgCleanup(String);

impl Drop for CgCleanup {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in rd.flatten() {
                let p = h.path().join(self.0.trim_start_matches('/'));
                if let Ok(children) = std::fs::read_dir(&p) {
                    for c in children.flatten() {
                        if c.path().is_dir() {
                            let _ = std::fs::remove_dir(c.path());
                        }
                    }
                }
                let _ = std::fs::remove_dir(&p);
            }
        }
    }
}

/// Instructions one run of `prog` executes, counted by callgrind; `None`
/// without valgrind.
fn instructions(prog: &str, args: &[String], stdin: &Path) -> Option<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null", prog])
        .args(args)
        .stdin(std::fs::File::open(stdin).ok()?)
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Collected :"))?;
    line.rsplit(':').next()?.trim().parse().ok()
}
