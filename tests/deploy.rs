//! The Kubernetes manifests of deploy/kubernetes, checked against the
//! binary they deploy: they parse; every volume a container mounts exists;
//! the paths the DaemonSet hands cglimit are the paths the hook, wrapper
//! and setup use on the node; every flag it passes exists; the RuntimeClass
//! names setup's handler; the PrometheusRule holds deploy/cglimit-alerts.yml's
//! rules; the ConfigMap's policies are the shipped ones, and validate when
//! laid out as kubelet lays out a ConfigMap volume.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use common::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(DIR).join(file)).unwrap();
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn help(sub: &str) -> String {
    let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
    assert!(out.status.success(), "cglimit {sub} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every `--flag` of a cglimit command line exists in its subcommand.
fn flags_exist(argv: &[String]) {
    let sub = &argv[1];
    let h = help(sub);
    for a in &argv[2..] {
        if a.starts_with("--") && !a.starts_with("--$") {
            assert!(h.contains(a.as_str()), "cglimit {sub} has no {a}");
        }
    }
}

/// The host path a container path is, through the container's mounts.
fn host_path(path: &str, mounts: &BTreeMap<String, String>, volumes: &Value) -> Option<PathBuf> {
    let (name, at) = mounts
        .iter()
        .filter(|(_, at)| Path::new(path).starts_with(at.as_str()))
        .max_by_key(|(_, at)| at.len())?;
    let vol = volumes
        .as_array()?
        .iter()
        .find(|v| v["name"] == name.as_str())?;
    let host = vol["hostPath"]["path"].as_str()?;
    let rest = Path::new(path).strip_prefix(at).ok()?;
    Some(Path::new(host).join(rest))
}

#[test]
fn the_daemonset_hands_cglimit_the_nodes_paths() {
    let ds = docs("daemonset.yaml").remove(0);
    assert_eq!(ds["kind"], "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    let volumes = &spec["volumes"];
    let names: Vec<&str> = volumes
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let policies_cm = volumes
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .unwrap();
    let kustomization = docs("kustomization.yaml").remove(0);
    assert_eq!(
        kustomization["configMapGenerator"][0]["name"], policies_cm,
        "the DaemonSet mounts a ConfigMap the kustomization does not make"
    );
    let setup_help = help("setup");
    let mut seen = BTreeMap::new();
    for c in spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(spec["containers"].as_array().unwrap())
    {
        let cname = c["name"].as_str().unwrap();
        let mut mounts = BTreeMap::new();
        for m in c["volumeMounts"].as_array().unwrap() {
            let n = m["name"].as_str().unwrap();
            assert!(names.contains(&n), "{cname} mounts {n}, which is no volume");
            mounts.insert(n.to_string(), m["mountPath"].as_str().unwrap().to_string());
        }
        // Command lines: the container's own, or those of its script.
        let cmd: Vec<String> = c["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let lines: Vec<Vec<String>> = if cmd[0] == "/bin/sh" {
            cmd[2]
                .lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    // Run directly, or in the host's namespaces after `nsenter … --`.
                    let at = l.find("/usr/local/bin/cglimit ")?;
                    (at == 0 || l[..at].ends_with("-- "))
                        .then(|| l[at..].split_whitespace().map(String::from).collect())
                })
                .collect()
        } else {
            vec![cmd]
        };
        for argv in lines {
            assert!(argv[0].ends_with("/cglimit"), "{argv:?}");
            flags_exist(&argv);
            let sub = argv[1].as_str();
            let positional: Vec<&String> = argv[2..]
                .iter()
                .enumerate()
                .filter(|(i, a)| {
                    !a.starts_with("--") && (*i == 0 || !argv[2 + i - 1].starts_with("--interval"))
                })
                .map(|(_, a)| a)
                .collect();
            let value_of = |flag: &str| {
                argv.iter()
                    .position(|a| a == flag)
                    .map(|i| argv[i + 1].clone())
            };
            match sub {
                "sync-policies" => {
                    let from = positional[0];
                    let to = positional[1];
                    assert!(
                        Path::new(from).starts_with(&mounts["policies"]),
                        "{cname}: sync-policies reads {from}, not the ConfigMap"
                    );
                    assert_eq!(
                        host_path(to, &mounts, volumes).as_deref(),
                        Some(Path::new("/etc/cglimit/policies")),
                        "{cname}: policies published where the hook does not read them"
                    );
                }
                "watch" => {
                    for (flag, host) in [
                        ("--state-dir", "/var/lib/cglimit"),
                        ("--runc-root", "/run/containerd/runc/k8s.io"),
                    ] {
                        let p = value_of(flag).unwrap();
                        assert_eq!(
                            host_path(&p, &mounts, volumes).as_deref(),
                            Some(Path::new(host)),
                            "watch {flag}"
                        );
                    }
                    assert!(mounts.values().any(|m| m == "/sys/fs/cgroup"));
                }
                "setup" => {
                    // Run in the host's mount namespace: its defaults are the
                    // node's paths the other containers use.
                    assert_eq!(argv[2], "containerd");
                    assert!(setup_help.contains("[default: /etc/cglimit/policies]"));
                    assert!(setup_help.contains("[default: /var/lib/cglimit]"));
                    assert!(setup_help.contains("[default: cglimit]"), "handler");
                }
                other => panic!("{cname}: unexpected cglimit {other}"),
            }
            seen.insert(sub.to_string(), cname.to_string());
        }
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["setup", "sync-policies", "watch"]
    );
    // The binary lands beside the wrapper's symlink that setup makes and
    // BinaryName names: /usr/local/bin on the node.
    let install = &spec["initContainers"][0];
    let script = install["command"][2].as_str().unwrap();
    assert!(script.contains("/host/usr/local/bin/cglimit"));
    assert!(
        volumes
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["hostPath"]["path"] == "/usr/local/bin")
    );
    // The metrics port is the one the scrape annotations name.
    let port = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "watch")
        .unwrap()["ports"][0]["containerPort"]
        .as_u64()
        .unwrap();
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
        port.to_string()
    );
}

#[test]
fn runtimeclass_alerts_and_policies_match_what_ships() {
    let rc = docs("runtimeclass.yaml").remove(0);
    assert_eq!(rc["handler"], "cglimit");
    let rule = docs("prometheusrule.yaml").remove(0);
    let alerts: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/cglimit-alerts.yml"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"]["groups"], alerts["groups"]);
    // The ConfigMap's files are the shipped policies, unchanged.
    let k = docs("kustomization.yaml").remove(0);
    let files = k["configMapGenerator"][0]["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for f in files {
        let f = f.as_str().unwrap();
        let name = Path::new(f).file_name().unwrap();
        assert_eq!(
            std::fs::read(Path::new(DIR).join(f)).unwrap(),
            std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("policies")
                    .join(name)
            )
            .unwrap(),
            "{f} differs from the shipped policy"
        );
    }
}

/// The ConfigMap as kubectl renders it, laid out as kubelet mounts it,
/// published by sync-policies and read by the hook's loader.
#[test]
fn the_rendered_configmap_validates_as_a_volume() {
    let lab = Lab::new("deploycm");
    let out = match Command::new("kubectl").args(["kustomize", DIR]).output() {
        Ok(o) if o.status.success() => o,
        _ => {
            eprintln!("kubectl not installed: the kustomization is not rendered");
            return;
        }
    };
    let rendered: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let cm = rendered
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    assert_eq!(cm["metadata"]["name"], "cglimit-policies");
    assert_eq!(cm["metadata"]["namespace"], "cglimit");
    let volume = lab.dir.join("volume");
    let version = volume.join("..2026_11_30_22_30_00.1");
    std::fs::create_dir_all(&version).unwrap();
    for (name, text) in cm["data"].as_object().unwrap() {
        write_private(&version.join(name), text.as_str().unwrap());
        std::os::unix::fs::symlink(format!("..data/{name}"), volume.join(name)).unwrap();
    }
    std::os::unix::fs::symlink("..2026_11_30_22_30_00.1", volume.join("..data")).unwrap();
    let node = lab.dir.join("node-policies");
    let out = Command::new(BIN)
        .args(["sync-policies", "--once"])
        .arg(&volume)
        .arg(&node)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new(BIN)
        .args(["explain", "--policy-dir"])
        .arg(&node)
        .args(["--container-type", "sandbox", "--namespace", "kube-system"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("* 1 \"pod-sandboxes\""), "{text}");
    assert!(text.contains("memory 32M"), "{text}");
}

/// The dashboard: a host variable (one watcher per host), one unit per
/// panel, and only metrics the watcher exports.
#[test]
fn the_dashboard_uses_what_the_watcher_exports() {
    let d: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(vars.contains(&"host"), "{vars:?}");
    let exported = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/cmd/watch/metrics.rs"
    ))
    .unwrap();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(
            p["fieldConfig"]["defaults"]["unit"].is_string(),
            "{title}: no unit"
        );
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert!(expr.contains("instance=~\"$host\""), "{title}: {expr}");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("cglimit_"))
            {
                assert!(
                    exported.contains(&format!("\"{name}\"")),
                    "{title}: {name} is not exported"
                );
            }
        }
    }
}
