//! containerd: a CRI runtime handler whose shim runs `cglimit-runtime`
//! instead of runc, written into `config.toml` with every other key, value
//! and comment kept (toml_edit edits the document, it does not re-render
//! it).
//!
//! A Kubernetes pod reaches the handler through a RuntimeClass whose
//! `handler` is its name, or every pod does when it is the CRI's
//! `default_runtime_name`. containerd reads its configuration only when it
//! starts, so the handler exists after a restart (running containers,
//! which belong to their shims, keep running).

use super::plan::{Step, read_config};
use super::{ConfigProblem, DEFAULT_CONFIG, SetupError, wrapper_steps};
use crate::cli::SetupArgs;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, value};

/// The shim every runc-compatible handler uses; it runs `BinaryName`
/// with runc's command line.
pub const RUNC_SHIM: &str = "io.containerd.runc.v2";

/// What a merge produced: the new text (`None`: already wired) and what
/// the operator should know.
#[derive(Debug, PartialEq)]
pub struct Merged {
    pub text: Option<String>,
    pub warnings: Vec<String>,
}

/// The CRI plugin's table for a configuration version: version 2 (containerd
/// 1.x) keeps the runtimes under the gRPC plugin, version 3 (2.x) under the
/// runtime plugin.
fn cri_plugin(version: i64) -> Result<&'static str, ConfigProblem> {
    match version {
        2 => Ok("io.containerd.grpc.v1.cri"),
        3 => Ok("io.containerd.cri.v1.runtime"),
        v => Err(ConfigProblem::Layout(format!(
            "`version = {v}`: setup edits version 2 (containerd 1.x) and 3 (2.x) configurations"
        ))),
    }
}

fn parse(text: &str) -> Result<(DocumentMut, i64), ConfigProblem> {
    let doc: DocumentMut = text.parse().map_err(ConfigProblem::Toml)?;
    let version = match doc.get("version") {
        Some(v) => v
            .as_integer()
            .ok_or_else(|| ConfigProblem::Layout("`version` is not a number".into()))?,
        None if doc.is_empty() => 2,
        None => {
            return Err(ConfigProblem::Layout(
                "no `version` key: a version 1 configuration, which setup does not edit; \
                 convert it to version 2 (`containerd config default` shows the layout)"
                    .into(),
            ));
        }
    };
    cri_plugin(version)?;
    Ok((doc, version))
}

/// Whether `disabled_plugins` names the CRI plugin (by its short or full
/// name, either version's).
fn cri_disabled(doc: &DocumentMut) -> bool {
    doc.get("disabled_plugins")
        .and_then(Item::as_array)
        .is_some_and(|a| {
            a.iter().any(|v| {
                matches!(
                    v.as_str(),
                    Some("cri" | "io.containerd.grpc.v1.cri" | "io.containerd.cri.v1.runtime")
                )
            })
        })
}

/// The handler of pods without a RuntimeClass.
fn default_runtime(containerd: &Table) -> String {
    containerd
        .get("default_runtime_name")
        .and_then(Item::as_str)
        .unwrap_or("runc")
        .to_string()
}

/// `plugins.<CRI>.containerd`, created (as implicit tables, so no empty
/// headers appear) where missing.
fn containerd_table(doc: &mut DocumentMut, version: i64) -> Result<&mut Table, ConfigProblem> {
    let plugin = cri_plugin(version)?;
    let mut t = doc.as_table_mut();
    for key in ["plugins", plugin, "containerd"] {
        if !t.contains_key(key) {
            let mut new = Table::new();
            new.set_implicit(true);
            t.insert(key, Item::Table(new));
        }
        t = t[key]
            .as_table_mut()
            .ok_or_else(|| ConfigProblem::Layout(format!("`{key}` is not a table")))?;
    }
    Ok(t)
}

/// config.toml (`before`; `None` or empty: none yet) with a handler named
/// `handler` running `binary` through runc's shim; the CRI's default when
/// `make_default`. The handler takes `SystemdCgroup` from the default
/// runtime, since the kubelet's cgroup driver must match it. A key already
/// set to something else is refused unless `force`.
pub fn merge_config(
    before: Option<&str>,
    handler: &str,
    binary: &Path,
    make_default: bool,
    force: bool,
) -> Result<Merged, ConfigProblem> {
    let text = before.unwrap_or("");
    let (mut doc, version) = parse(text)?;
    let mut changed = false;
    if doc.get("version").is_none() {
        doc.insert("version", value(2));
        changed = true;
    }
    let mut warnings = Vec::new();
    if cri_disabled(&doc) {
        warnings.push(
            "the CRI plugin is in `disabled_plugins`: Kubernetes cannot use the handler until it is enabled"
                .into(),
        );
    }
    let ctd = containerd_table(&mut doc, version)?;
    let default_name = default_runtime(ctd);
    let systemd_cgroup = ctd
        .get("runtimes")
        .and_then(|r| r.get(&default_name))
        .and_then(|r| r.get("options"))
        .and_then(|o| o.get("SystemdCgroup"))
        .and_then(Item::as_bool);

    if !ctd.contains_key("runtimes") {
        let mut t = Table::new();
        t.set_implicit(true);
        ctd.insert("runtimes", Item::Table(t));
    }
    let runtimes = ctd["runtimes"]
        .as_table_mut()
        .ok_or_else(|| ConfigProblem::Layout("`runtimes` is not a table".into()))?;
    let binary_str = binary.display().to_string();
    let current = runtimes.get(handler).map(|h| {
        (
            h.get("runtime_type")
                .and_then(Item::as_str)
                .map(str::to_string),
            h.get("options")
                .and_then(|o| o.get("BinaryName"))
                .and_then(Item::as_str)
                .map(str::to_string),
            h.get("options")
                .and_then(|o| o.get("SystemdCgroup"))
                .and_then(Item::as_bool),
        )
    });
    let wanted = (
        Some(RUNC_SHIM.to_string()),
        Some(binary_str.clone()),
        systemd_cgroup,
    );
    match current {
        Some(c) if c == wanted => {}
        Some((_, bin, _)) if !force => {
            return Err(ConfigProblem::Layout(format!(
                "runtime handler {handler:?} already exists (BinaryName {}); --force replaces it",
                bin.as_deref().unwrap_or("unset")
            )));
        }
        _ => {
            let mut h = Table::new();
            h.insert("runtime_type", value(RUNC_SHIM));
            let mut options = Table::new();
            options.insert("BinaryName", value(binary_str));
            if let Some(s) = systemd_cgroup {
                options.insert("SystemdCgroup", value(s));
            }
            h.insert("options", Item::Table(options));
            runtimes.insert(handler, Item::Table(h));
            changed = true;
        }
    }
    if make_default && default_name != handler {
        let explicit = ctd.get("default_runtime_name").is_some();
        if explicit && default_name != "runc" && !force {
            return Err(ConfigProblem::Layout(format!(
                "`default_runtime_name` is already {default_name:?} (--force makes it {handler:?})"
            )));
        }
        ctd.insert("default_runtime_name", value(handler));
        changed = true;
    }
    Ok(Merged {
        text: changed.then(|| doc.to_string()),
        warnings,
    })
}

/// How a configuration wires cglimit: the handlers whose `BinaryName` is a
/// cglimit wrapper, and whether one is the CRI's default.
#[derive(Debug, PartialEq, Default)]
pub struct Wiring {
    pub handlers: Vec<(String, PathBuf)>,
    /// Those of them on the systemd cgroup driver (`SystemdCgroup = true`).
    pub systemd_cgroup: Vec<String>,
    pub default: Option<String>,
    pub cri_disabled: bool,
}

pub fn wiring(text: &str) -> Result<Wiring, ConfigProblem> {
    let (mut doc, version) = parse(text)?;
    let mut w = Wiring {
        cri_disabled: cri_disabled(&doc),
        ..Default::default()
    };
    let ctd = containerd_table(&mut doc, version)?;
    let default_name = default_runtime(ctd);
    if let Some(runtimes) = ctd.get("runtimes").and_then(Item::as_table) {
        for (name, h) in runtimes.iter() {
            let Some(bin) = h
                .get("options")
                .and_then(|o| o.get("BinaryName"))
                .and_then(Item::as_str)
            else {
                continue;
            };
            let p = PathBuf::from(bin);
            let is_cglimit = p
                .file_name()
                .is_some_and(|n| n == "cglimit-runtime" || n == "cglimit");
            if is_cglimit {
                if name == default_name {
                    w.default = Some(name.to_string());
                }
                if h.get("options")
                    .and_then(|o| o.get("SystemdCgroup"))
                    .and_then(Item::as_bool)
                    == Some(true)
                {
                    w.systemd_cgroup.push(name.to_string());
                }
                w.handlers.push((name.to_string(), p));
            }
        }
    }
    Ok(w)
}

/// containerd reads its configuration only when it starts.
pub(super) fn restart_containerd(restart: bool) -> Result<(), SetupError> {
    if !restart {
        println!(
            "restart containerd to load the handler (running containers keep running): systemctl restart containerd"
        );
        return Ok(());
    }
    let st = std::process::Command::new("systemctl")
        .args(["restart", "containerd"])
        .status()
        .map_err(|source| SetupError::Spawn {
            command: "systemctl restart containerd",
            source,
        })?;
    if !st.success() {
        return Err(SetupError::Failed {
            command: "systemctl restart containerd",
            status: st,
            hint: "see journalctl -u containerd",
        });
    }
    println!("containerd restarted");
    Ok(())
}

pub(super) fn containerd_steps(
    args: &SetupArgs,
    exe: &Path,
    steps: &mut Vec<Step>,
) -> Result<(), SetupError> {
    let link = wrapper_steps(args, exe, steps)?;
    if args.config != Path::new(DEFAULT_CONFIG) {
        eprintln!(
            "note: containerd passes the wrapper no arguments: it reads {DEFAULT_CONFIG}, or the file {} names in containerd's environment, not {}",
            crate::cmd::runtime::config::ENV,
            args.config.display()
        );
    }
    let path = &args.containerd_config;
    let before = read_config(path)?;
    let text = match &before {
        Some(b) => Some(
            std::str::from_utf8(b).map_err(|_| SetupError::config(path)(ConfigProblem::Utf8))?,
        ),
        None => None,
    };
    let merged = merge_config(text, &args.handler, &link, args.default, args.force)
        .map_err(SetupError::config(path))?;
    for w in &merged.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    if let Some(after) = merged.text {
        steps.push(Step::Edit {
            path: path.clone(),
            before,
            after,
            then: if args.restart {
                "restart containerd"
            } else {
                "containerd needs a restart"
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";

    #[test]
    fn a_handler_is_added_and_nothing_else_changes() {
        let bin = Path::new("/usr/local/bin/cglimit-runtime");
        let m = merge_config(Some(DEBIAN), "cglimit", bin, false, false).unwrap();
        let after = m.text.unwrap();
        // Every line that was there is there, in order.
        let mut lines = after.lines();
        for l in DEBIAN.lines() {
            assert!(lines.any(|a| a == l), "{l:?} lost:\n{after}");
        }
        let w = wiring(&after).unwrap();
        assert_eq!(w.handlers, [("cglimit".to_string(), bin.to_path_buf())]);
        assert_eq!(w.default, None);
        let doc: DocumentMut = after.parse().unwrap();
        let h = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["cglimit"];
        assert_eq!(h["runtime_type"].as_str(), Some(RUNC_SHIM));
        // Again: nothing to change.
        let again = merge_config(Some(&after), "cglimit", bin, false, false).unwrap();
        assert_eq!(again.text, None);
        // As the default.
        let d = merge_config(Some(&after), "cglimit", bin, true, false)
            .unwrap()
            .text
            .unwrap();
        assert_eq!(wiring(&d).unwrap().default.as_deref(), Some("cglimit"));
    }

    #[test]
    fn the_handler_follows_the_default_runtimes_cgroup_driver() {
        let conf = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"runc\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n    runtime_type = \"io.containerd.runc.v2\"\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n      SystemdCgroup = true # the kubelet uses systemd\n";
        let m = merge_config(Some(conf), "cglimit", Path::new("/b"), true, false).unwrap();
        let after = m.text.unwrap();
        assert!(after.contains("SystemdCgroup = true # the kubelet uses systemd"));
        let doc: DocumentMut = after.parse().unwrap();
        let ctd = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"];
        assert_eq!(
            ctd["runtimes"]["cglimit"]["options"]["SystemdCgroup"].as_bool(),
            Some(true)
        );
        assert_eq!(ctd["default_runtime_name"].as_str(), Some("cglimit"));
    }

    #[test]
    fn conflicts_and_bad_files_are_refused() {
        let theirs = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.cglimit.options]\n  BinaryName = \"/opt/other\"\n";
        let e = merge_config(Some(theirs), "cglimit", Path::new("/b"), false, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already exists (BinaryName /opt/other)"), "{e}");
        assert!(
            merge_config(Some(theirs), "cglimit", Path::new("/b"), false, true)
                .unwrap()
                .text
                .is_some()
        );
        let nvidia = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"nvidia\"\n";
        let e = merge_config(Some(nvidia), "cglimit", Path::new("/b"), true, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`default_runtime_name` is already \"nvidia\""),
            "{e}"
        );
        let e = merge_config(Some("root = \"/x\"\n"), "c", Path::new("/b"), false, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 1"), "{e}");
        let e = merge_config(
            Some("version = 2\n[plugins\n"),
            "c",
            Path::new("/b"),
            false,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("not TOML") && e.contains("line 2"), "{e}");
        let w = merge_config(
            Some("version = 2\ndisabled_plugins = [\"cri\"]\n"),
            "c",
            Path::new("/b"),
            false,
            false,
        )
        .unwrap();
        assert_eq!(w.warnings.len(), 1);
    }

    #[test]
    fn no_file_and_version_3() {
        let m = merge_config(None, "cglimit", Path::new("/b"), false, false).unwrap();
        let t = m.text.unwrap();
        assert!(t.starts_with("version = 2\n"), "{t}");
        assert!(
            !t.contains("[plugins]\n"),
            "implicit tables get no header: {t}"
        );
        let v3 = merge_config(
            Some("version = 3\n"),
            "cglimit",
            Path::new("/usr/bin/cglimit-runtime"),
            false,
            false,
        )
        .unwrap()
        .text
        .unwrap();
        assert!(v3.contains("io.containerd.cri.v1.runtime"), "{v3}");
        assert_eq!(wiring(&v3).unwrap().handlers.len(), 1);
    }
}
