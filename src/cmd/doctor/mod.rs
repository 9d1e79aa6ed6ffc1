//! `cglimit doctor`: whether every engine on this host enforces its
//! policy, proven the way a user would see it: a short probe container
//! started through the engine, with no `-m`, must get the limits the
//! policy decides for it.
//!
//! The probe image holds nothing but this static binary, imported by the
//! engine itself (`cglimit-probe:VERSION`); inside, `cglimit probe` prints
//! the limits of its own cgroup. containerd's probe runs a root filesystem
//! holding the binary through the runc shim with the `BinaryName` of the
//! handler setup wrote, as the CRI runs a pod of that handler. CRI-O runs
//! containers only for the kubelet: its hooks file is checked, no probe
//! is started.

mod containerd;
mod error;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use serde::Serialize;

use containerd::{containerd_user, containerd_wiring, ctr_probe};
use error::DoctorError;

use crate::cli::{DoctorArgs, Engine};
use crate::facts::Facts;
use crate::size::Limit;

#[derive(Serialize)]
struct Report {
    engine: &'static str,
    wired: bool,
    /// Whether anything runs containers through this engine itself: one
    /// that is not used (containerd serving only dockerd) is reported but
    /// fails the run only with `--strict`.
    used: bool,
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
    // The mount shows the container's own cgroup (a cgroup namespace, or
    // runc's bind of it), or the whole hierarchy (cgroup v2 without a
    // namespace, as `ctr run` makes it): then the own cgroup is the path
    // /proc/self/cgroup names.
    let own = read("/proc/self/cgroup").unwrap_or_default();
    let path_of = |v1: bool| {
        own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            let wanted = if v1 {
                ctrls.split(',').any(|c| c == "memory")
            } else {
                ctrls.is_empty()
            };
            wanted.then(|| path.trim_start_matches('/').to_string())
        })
    };
    let dir = |root: &str, v1: bool, file: &str| {
        let nested = path_of(v1).map(|p| format!("{root}/{p}"));
        [nested, Some(root.to_string())]
            .into_iter()
            .flatten()
            .find(|d| std::path::Path::new(&format!("{d}/{file}")).exists())
    };
    let seen = if let Some(d) = dir("/sys/fs/cgroup", false, "memory.max") {
        Seen {
            memory: num(read(&format!("{d}/memory.max"))),
            high: num(read(&format!("{d}/memory.high"))),
        }
    } else {
        let d = dir("/sys/fs/cgroup/memory", true, "memory.limit_in_bytes")
            .unwrap_or_else(|| "/sys/fs/cgroup/memory".into());
        Seen {
            memory: num(read(&format!("{d}/memory.limit_in_bytes"))),
            high: num(read(&format!("{d}/memory.soft_limit_in_bytes"))),
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
        if args.containerd_address.exists() && which("ctr").is_some() {
            e.push(Engine::Containerd);
        }
        if which("crio").is_some() {
            e.push(Engine::Crio);
        }
        e
    } else {
        args.engines.clone()
    };
    let mut reports: Vec<Report> = engines.iter().map(|e| check(args, *e)).collect();
    // containerd found on the host, not named: dockerd runs it as its
    // backend on Debian and Ubuntu. Unwired and used by nothing else, it
    // is no gap (Docker's containers go through Docker's wiring).
    if args.engines.is_empty() {
        for r in reports
            .iter_mut()
            .filter(|r| !r.wired && r.engine == Engine::Containerd.name())
        {
            if let Ok(None) = containerd_user(args) {
                r.used = false;
                r.detail = format!(
                    "present, used by nothing but Docker (no containers outside its \"moby\" namespace), so not required; `cglimit doctor --strict` fails on it ({})",
                    r.detail
                );
            }
        }
    }
    if args.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
    } else {
        if reports.is_empty() {
            println!("no engine found (no Docker or containerd socket, no podman or crio)");
        }
        for r in &reports {
            println!(
                "{}: {}: {}",
                r.engine,
                match (r.wired, r.used) {
                    (true, _) => "wired",
                    (false, true) => "NOT wired",
                    (false, false) => "not used",
                },
                r.detail
            );
        }
    }
    if !reports.is_empty() && reports.iter().all(|r| r.wired || (!r.used && !args.strict)) {
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
    let mut report = Report {
        engine: engine.name(),
        wired: false,
        used: true,
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
        Engine::Podman => hooks_wiring(args, Engine::Podman),
        Engine::Crio => {
            match hooks_wiring(args, Engine::Crio) {
                Ok(()) => {
                    report.wired = true;
                    report.detail = "hooks file in the directory CRI-O reads (not probed: CRI-O starts containers only for the kubelet)".into();
                }
                Err(why) => report.detail = why.to_string(),
            }
            return report;
        }
        Engine::Containerd => match containerd_wiring(args) {
            Ok(w) => {
                let seen = match ctr_probe(args, &w, &container) {
                    Ok(s) => s,
                    Err(e) => {
                        report.detail = format!("the probe container did not run: {e}");
                        return report;
                    }
                };
                return judge(report, seen, expected, &Ok(()), &w.note);
            }
            Err(why) => {
                report.detail = why.to_string();
                return report;
            }
        },
    };
    let records = args.state_dir.join("decisions.jsonl");
    let mark = std::fs::metadata(&records).map(|m| m.len()).unwrap_or(0);
    let seen = match run_probe(engine, args, &image, &container) {
        Ok(s) => s,
        Err(e) => {
            report.detail = format!("the probe container did not run: {e}{}", hint(&wiring));
            return report;
        }
    };
    let report = judge(report, seen, expected, &wiring, "");
    match (report.wired, not_persisted(&records, mark)) {
        (true, Some(why)) => Report {
            wired: false,
            detail: format!(
                "the probe got its limits, but systemd persistence is off: {why}; the next systemctl daemon-reload resets them"
            ),
            ..report
        },
        _ => report,
    }
}

/// Why systemd did not take the limits of a decision recorded after byte
/// `mark` of `records` (the probe's, started after it), if one says so.
fn not_persisted(records: &Path, mark: u64) -> Option<String> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(records).ok()?;
    f.seek(std::io::SeekFrom::Start(mark)).ok()?;
    let mut text = String::new();
    f.take(16 << 20).read_to_string(&mut text).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["systemd"]["persisted"] == false)
        .map(|r| {
            format!(
                "{} ({})",
                r["systemd"]["unit"].as_str().unwrap_or("its unit"),
                r["systemd"]["reason"]
                    .as_str()
                    .unwrap_or("no reason recorded")
            )
        })
}

/// Whether what the probe saw is what the policy decides.
fn judge(
    mut report: Report,
    seen: Seen,
    expected: Seen,
    wiring: &Result<(), DoctorError>,
    note: &str,
) -> Report {
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
            "a container started without -m got {}, as the policy decides{note}",
            show(&seen)
        );
    } else {
        report.detail = format!(
            "a container started without -m got {}; the policy decides {}{}{note}",
            show(&seen),
            show(&expected),
            hint(wiring)
        );
    }
    report
}

fn hint(wiring: &Result<(), DoctorError>) -> String {
    match wiring {
        Ok(()) => String::new(),
        Err(why) => format!(" ({why})"),
    }
}

fn docker_wiring(args: &DoctorArgs) -> Result<(), DoctorError> {
    let socket = crate::sys::engine::socket_path(args.docker_host.as_deref())?;
    match super::setup::docker_runtime(&socket)? {
        (true, true) => Ok(()),
        (true, false) => Err(DoctorError::Unwired("the cglimit runtime is registered but not the default: `cglimit setup docker`".into())),
        (false, _) => Err(DoctorError::Unwired("dockerd lists no cglimit runtime (not in daemon.json, or dockerd not reloaded): `cglimit setup docker`".into())),
    }
}

fn hooks_wiring(args: &DoctorArgs, engine: Engine) -> Result<(), DoctorError> {
    let name = engine.name();
    let dir = args.hooks_dir.clone().unwrap_or_else(|| match engine {
        Engine::Crio => super::setup::crio_hooks_dir(),
        _ => super::setup::podman_hooks_dir(),
    });
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
    Err(DoctorError::Unwired(match elsewhere {
        Some(p) => format!(
            "{} is in a directory {name} does not read; it reads {}: `cglimit setup {name}`",
            p.display(),
            dir.display()
        ),
        None => format!(
            "no cglimit hook in {}: `cglimit setup {name}`",
            dir.display()
        ),
    }))
}

/// Imports the probe image when missing and runs it once, as a user would.
fn run_probe(
    engine: Engine,
    args: &DoctorArgs,
    image: &str,
    container: &str,
) -> Result<Seen, DoctorError> {
    let cli = engine.name();
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
        .map_err(DoctorError::spawn(cli))?;
    if !out.status.success() {
        return Err(DoctorError::said(&out.stderr));
    }
    DoctorError::probe(&out.stdout)
}

/// An image holding only this binary, as `/cglimit`.
fn import(cli: &'static str, base: &dyn Fn(&mut Command), image: &str) -> Result<(), DoctorError> {
    let dir = std::env::temp_dir().join(format!("cglimit-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(DoctorError::file(&dir))?;
    let result = (|| {
        let copy = dir.join("cglimit");
        std::fs::copy("/proc/self/exe", &copy).map_err(DoctorError::file(&copy))?;
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .args(["-c", "cglimit"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(DoctorError::spawn("tar"))?;
        let mut c = Command::new(cli);
        base(&mut c);
        let st = c
            .args(["import", "-", image])
            .stdin(
                tar.stdout
                    .ok_or(DoctorError::Said("no tar output".into()))?,
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(DoctorError::spawn(cli))?;
        if st.success() {
            Ok(())
        } else {
            Err(DoctorError::Said(format!(
                "{cli} import of the probe image failed"
            )))
        }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_whose_unit_did_not_take_its_limits_is_found() {
        let dir = std::env::temp_dir().join(format!("cglimit-doctor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("decisions.jsonl");
        let old =
            "{\"systemd\":{\"unit\":\"docker-a.scope\",\"persisted\":false,\"reason\":\"old\"}}\n";
        std::fs::write(&f, old).unwrap();
        let mark = old.len() as u64;
        assert_eq!(not_persisted(&f, mark), None, "only what follows the mark");
        let mut text = old.to_string();
        text.push_str("{\"outcome\":\"applied\"}\n");
        text.push_str("{\"systemd\":{\"unit\":\"docker-b.scope\",\"persisted\":true}}\n");
        std::fs::write(&f, &text).unwrap();
        assert_eq!(not_persisted(&f, mark), None);
        text.push_str("{\"systemd\":{\"unit\":\"docker-c.scope\",\"persisted\":false,\"reason\":\"no system bus\"}}\n");
        std::fs::write(&f, &text).unwrap();
        assert_eq!(
            not_persisted(&f, mark).as_deref(),
            Some("docker-c.scope (no system bus)")
        );
        assert_eq!(not_persisted(&dir.join("none"), 0), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
