//! Policies delivered as a Kubernetes ConfigMap: `sync-policies` reads the
//! volume's symlink farm as kubelet lays it out, publishes it to the
//! node's policy directory in the same layout, and the hook (with its
//! cache) decides on the new version after an update, on one whole version
//! mid-update, and on the last valid one when an update is broken.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// A ConfigMap volume at version `v`, as kubelet's atomic writer leaves it:
/// `..vN/` with the files, `..data -> ..vN`, `NAME -> ..data/NAME`.
fn configmap(dir: &Path, v: u32, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let version = format!("..2026_11_30_22_00_0{v}.{v}");
    let vd = dir.join(&version);
    std::fs::create_dir(&vd).unwrap();
    std::fs::set_permissions(&vd, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, text) in files {
        write_private(&vd.join(name), text);
        let _ = std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name));
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

const V1: &str = "name: default\nmemory: {default: 64M, max: 256M}\nswap: {max: 0}\nhigh: 50%\n";
const V2: &str = "name: default\nmemory: {default: 96M, max: 256M}\nswap: {max: 0}\nhigh: 50%\n";

fn sync(from: &Path, to: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["sync-policies", "--once"])
        .arg(from)
        .arg(to)
        .output()
        .unwrap()
}

#[test]
fn a_configmap_reaches_the_hook_whole_and_only_when_valid() {
    let mut lab = Lab::new("cmsync");
    let from = lab.dir.join("configmap");
    let to = lab.dir.join("node-policies");
    let cache = lab.dir.join("cache");
    configmap(&from, 1, &[("00-default.yaml", V1)]);
    let out = sync(&from, &to);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut n = 0;
    let mut hook_memory = |lab: &mut Lab| {
        n += 1;
        let id = format!("{}-{n}", lab.name);
        let args = vec![
            "cglimit".into(),
            "hook".into(),
            "--policy-dir".into(),
            to.display().to_string(),
            "--cache-dir".into(),
            cache.display().to_string(),
            "--state-dir".into(),
            lab.state_dir.display().to_string(),
        ];
        let bundle = lab.bundle_with(&format!("c{n}"), None, "createRuntime", args, "");
        let out = lab.run("runc", &id, &bundle);
        assert!(out.status.success(), "{}", stderr(&out));
        limits_seen(&out).0
    };
    assert_eq!(hook_memory(&mut lab), 64 * M);

    // An update that adds a broken file: not published, the node keeps v1.
    configmap(
        &from,
        2,
        &[
            ("00-default.yaml", V2),
            ("10-broken.yaml", "name: b\nmemory: {max: lots}\n"),
        ],
    );
    let out = sync(&from, &to);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("10-broken.yaml:2") && err.contains("not published"),
        "{err}"
    );
    assert_eq!(
        hook_memory(&mut lab),
        64 * M,
        "a broken update reached the node"
    );

    // Fixed: published, and the hook's cache sees the new version.
    configmap(&from, 3, &[("00-default.yaml", V2)]);
    std::fs::remove_file(from.join("10-broken.yaml")).unwrap();
    let out = sync(&from, &to);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        hook_memory(&mut lab),
        96 * M,
        "the update did not reach the hook"
    );
    // Published as a farm: one version directory, the links, no leftovers.
    let mut names: Vec<String> = std::fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "00-default.yaml");
    assert_eq!(names[1], "..data");

    // Mid-publication, as a reader may catch it: a link to a file the
    // current version lacks is not read; the version is read whole.
    std::os::unix::fs::symlink("..data/20-next.yaml", to.join("20-next.yaml")).unwrap();
    assert_eq!(hook_memory(&mut lab), 96 * M);
}
