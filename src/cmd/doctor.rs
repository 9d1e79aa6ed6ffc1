//! `cglimit doctor`: whether every engine on this host enforces its
//! policy, proven the way a user would see it: a short probe container
//! started through the engine, with no `-m`, must get the limits the
//! policy decides for it.
//!
//! The probe image holds nothing but this static binary, imported by the
//! engine itself (`cglimit-probe:VERSION`); inside, `cglimit probe` prints
//! the limits of its own cgroup.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use serde::Serialize;

use crate::cli::{DoctorArgs, Engine};
use crate::facts::Facts;
use crate::size::Limit;

#[derive(Serialize)]
struct Report {
    engine: &'static str,
    wired: bool,
    /// What was found, in a sentence.
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<Seen>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seen: Option<Seen>,
}

/// Memory limits as a container sees them (`None`: no limit).
#[derive(Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub memory: Option<u64>,
    pub high: Option<u64>,
}

/// `cglimit probe`: the limits of this process's memory cgroup, as JSON on
/// stdout (v2 `memory.max`/`memory.high`; v1 the limit and soft limit).
pub fn probe() -> ExitCode {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let num = |s: Option<String>| -> Option<u64> {
        s.and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v < (1 << 62))
    };
    let seen = if let Some(max) = read("/sys/fs/cgroup/memory.max") {
        Seen {
            memory: num(Some(max)),
            high: num(read("/sys/fs/cgroup/memory.high")),
        }
    } else {
        Seen {
            memory: num(read("/sys/fs/cgroup/memory/memory.limit_in_bytes")),
            high: num(read("/sys/fs/cgroup/memory/memory.soft_limit_in_bytes")),
        }
    };
    println!("{}", serde_json::to_string(&seen).unwrap_or_default());
    ExitCode::SUCCESS
}

pub fn run(args: &DoctorArgs) -> ExitCode {
    let engines: Vec<Engine> = if args.engines.is_empty() {
        let mut e = Vec::new();
        if crate::sys::engine::socket_path(args.docker_host.as_deref()).is_ok_and(|s| s.exists()) {
            e.push(Engine::Docker);
        }
        if which("podman").is_some() {
            e.push(Engine::Podman);
        }
        e
    } else {
        args.engines.clone()
    };
    let reports: Vec<Report> = engines.iter().map(|e| check(args, *e)).collect();
    if args.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
    } else {
        if reports.is_empty() {
            println!("no engine found (neither a Docker socket nor podman)");
        }
        for r in &reports {
            println!(
                "{}: {}: {}",
                r.engine,
                if r.wired { "wired" } else { "NOT wired" },
                r.detail
            );
        }
    }
    if !reports.is_empty() && reports.iter().all(|r| r.wired) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn check(args: &DoctorArgs, engine: Engine) -> Report {
    let name = match engine {
        Engine::Docker => "docker",
        Engine::Podman => "podman",
    };
    let mut report = Report {
        engine: name,
        wired: false,
        detail: String::new(),
        expected: None,
        seen: None,
    };
    // What the policy decides for the probe.
    let image = format!("cglimit-probe:{}", env!("CARGO_PKG_VERSION"));
    let container = format!("cglimit-probe-{}", std::process::id());
    let facts = Facts {
        id: container.clone(),
        name: Some(container.clone()),
        image: Some(image.clone()),
        ..Default::default()
    };
    let expected = match crate::policy::load_path(&args.policy_dir) {
        Ok(p) => {
            let d = crate::decision::decide(&p, &facts);
            if d.is_denied() {
                report.detail = format!("the policy refuses the probe container ({})", d.why);
                return report;
            }
            let b = |l: Limit| match l {
                Limit::Bytes(b) => Some(b),
                Limit::Unlimited => None,
            };
            Seen {
                memory: b(d.limits.memory),
                high: d.limits.high.and_then(b),
            }
        }
        Err(e) => {
            report.detail = format!("cannot read the policies: {e}");
            return report;
        }
    };
    report.expected = Some(expected);
    // Why it might not be wired, named before the probe says whether it is.
    let wiring = match engine {
        Engine::Docker => docker_wiring(args),
        Engine::Podman => podman_wiring(args),
    };
    let seen = match run_probe(engine, args, &image, &container) {
        Ok(s) => s,
        Err(e) => {
            report.detail = format!("the probe container did not run: {e}{}", hint(&wiring));
            return report;
        }
    };
    report.seen = Some(seen);
    let show = |s: &Seen| {
        format!(
            "memory {}, high {}",
            s.memory
                .map(|b| Limit::Bytes(b).to_string())
                .unwrap_or("none".into()),
            s.high
                .map(|b| Limit::Bytes(b).to_string())
                .unwrap_or("none".into())
        )
    };
    if seen == expected {
        report.wired = true;
        report.detail = format!(
            "a container started without -m got {}, as the policy decides",
            show(&seen)
        );
    } else {
        report.detail = format!(
            "a container started without -m got {}; the policy decides {}{}",
            show(&seen),
            show(&expected),
            hint(&wiring)
        );
    }
    report
}

fn hint(wiring: &Result<(), String>) -> String {
    match wiring {
        Ok(()) => String::new(),
        Err(why) => format!(" ({why})"),
    }
}

fn docker_wiring(args: &DoctorArgs) -> Result<(), String> {
    let socket =
        crate::sys::engine::socket_path(args.docker_host.as_deref()).map_err(|e| e.to_string())?;
    match super::setup::docker_runtime(&socket)? {
        (true, true) => Ok(()),
        (true, false) => Err("the cglimit runtime is registered but not the default: `cglimit setup docker`".into()),
        (false, _) => Err("dockerd lists no cglimit runtime (not in daemon.json, or dockerd not reloaded): `cglimit setup docker`".into()),
    }
}

fn podman_wiring(args: &DoctorArgs) -> Result<(), String> {
    let dir = args
        .hooks_dir
        .clone()
        .unwrap_or_else(super::setup::podman_hooks_dir);
    let file = dir.join("cglimit.json");
    if file.exists() {
        return Ok(());
    }
    let elsewhere = [
        "/etc/containers/oci/hooks.d",
        super::setup::PODMAN_HOOKS_DIR,
    ]
    .iter()
    .map(|d| Path::new(d).join("cglimit.json"))
    .find(|p| p.exists() && *p != file);
    Err(match elsewhere {
        Some(p) => format!(
            "{} is in a directory podman does not read; it reads {}: `cglimit setup podman`",
            p.display(),
            dir.display()
        ),
        None => format!(
            "no cglimit hook in {}: `cglimit setup podman`",
            dir.display()
        ),
    })
}

/// Imports the probe image when missing and runs it once, as a user would.
fn run_probe(
    engine: Engine,
    args: &DoctorArgs,
    image: &str,
    container: &str,
) -> Result<Seen, String> {
    let cli = match engine {
        Engine::Docker => "docker",
        Engine::Podman => "podman",
    };
    let base = |c: &mut Command| {
        if engine == Engine::Docker
            && let Some(h) = &args.docker_host
        {
            c.args(["-H", h]);
        }
        if engine == Engine::Podman
            && let Some(d) = &args.hooks_dir
        {
            c.arg("--hooks-dir").arg(d);
        }
    };
    let mut c = Command::new(cli);
    base(&mut c);
    let present = c
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        import(cli, &base, image)?;
    }
    let mut c = Command::new(cli);
    base(&mut c);
    let out = c
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--name",
            container,
            image,
            "/cglimit",
            "probe",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cli}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).map_err(|e| format!("the probe said {text:?}: {e}"))
}

/// An image holding only this binary, as `/cglimit`.
fn import(cli: &str, base: &dyn Fn(&mut Command), image: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("cglimit-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        std::fs::copy("/proc/self/exe", dir.join("cglimit")).map_err(|e| e.to_string())?;
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .args(["-c", "cglimit"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run tar: {e}"))?;
        let mut c = Command::new(cli);
        base(&mut c);
        let st = c
            .args(["import", "-", image])
            .stdin(tar.stdout.ok_or("no tar output")?)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {cli} import: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("{cli} import of the probe image failed"))
        }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
