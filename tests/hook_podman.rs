//! podman with the shipped oci-hooks(5) JSON from `hooks/`, via --hooks-dir.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn podman(lab: &Lab) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(lab.dir.join("root"))
        .arg("--runroot")
        .arg(lab.dir.join("runroot"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--runtime",
            "runc",
        ])
        .arg("--hooks-dir")
        .arg(lab.dir.join("hooks.d"))
        .stdin(Stdio::null());
    c
}

#[test]
fn podman_runs_the_shipped_hook() {
    let mut lab = Lab::new("podman");
    // The shipped JSON, with only the install paths pointed at this build.
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/cglimit.json"))
            .unwrap();
    let mut hook: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    assert_eq!(hook["version"], "1.0.0");
    assert_eq!(hook["when"]["always"], true);
    assert_eq!(hook["stages"][0], "createRuntime");
    hook["hook"]["path"] = BIN.into();
    let args = hook["hook"]["args"].as_array_mut().unwrap();
    for a in args.iter_mut() {
        if a == "/etc/cglimit/policies" {
            *a = lab.policy_dir.display().to_string().into();
        } else if a == "/var/lib/cglimit" {
            *a = lab.state_dir.display().to_string().into();
        }
    }
    std::fs::create_dir_all(lab.dir.join("hooks.d")).unwrap();
    std::fs::write(lab.dir.join("hooks.d/cglimit.json"), hook.to_string()).unwrap();

    let rootfs = lab.dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
    for c in ["sh", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(c)).unwrap();
    }
    let image = format!("localhost/{}", lab.name.to_lowercase());
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let st = podman(&lab)
        .args(["import", "-", &image])
        .stdin(tar.stdout.take().unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(tar.wait().unwrap().success());
    assert!(st.success());
    let (root, runroot) = (lab.dir.join("root"), lab.dir.join("runroot"));
    lab.on_drop(move || {
        let _ = Command::new("podman")
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(["--storage-driver", "vfs", "rm", "-af"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });

    let run = |extra: &[&str]| {
        podman(&lab)
            .args(["run", "--rm", "--net", "none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(["--cgroup-parent", &lab.cgroup_parent])
            .args(extra)
            .args([&image, "cat"])
            .args([
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
                "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
            ])
            .output()
            .unwrap()
    };
    // No -m: the default.
    let out = run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (64 * M, 64 * M, 32 * M));
    // -m 1g (podman adds swap = 2 x memory): clamped to 256M + 32M swap.
    let out = run(&["-m", "1g"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (256 * M, 288 * M, 128 * M));
    // Kubernetes' CRI keys through podman: the namespace policy (4G) is
    // not reachable, since only the CRI's own entry point reads them.
    lab.set_policy(
        "batch.yaml",
        "name: batch\npriority: 5\nmatch: {namespaces: [batch]}\nmemory: {max: 4G}\nswap: {max: 0}\n",
    );
    let out = run(&[
        "--annotation",
        "io.kubernetes.cri.sandbox-namespace=batch",
        "--annotation",
        "io.kubernetes.cri.container-type=container",
        "-m",
        "3g",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out).0, 256 * M, "{}", stderr(&out));
    std::fs::remove_file(lab.policy_dir.join("batch.yaml")).unwrap();
    // A deny policy refuses the start.
    lab.set_policy(
        "default.yaml",
        "name: d\nmemory: {max: 256M}\nonViolation: deny\n",
    );
    let out = run(&["-m", "1g"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("memory 1G is above the policy's max 256M"),
        "{}",
        stderr(&out)
    );
    let d = lab.decisions();
    assert_eq!(d.len(), 4);
    assert_eq!(d[2]["decision"]["policy"], "default", "{}", d[2]);
    assert_eq!(d[3]["outcome"], "denied");
}
