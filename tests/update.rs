//! `update` through the wrapper: an update of other fields keeps the
//! container's memory (through dockerd and directly), and no spelling of a
//! memory update — flags after the id, abbreviated options, JSON keys in
//! another case, a key given twice — reaches the runtime other than as the
//! policy decided and the record says.
//!
//! The policy (`common::POLICY`): 64M by default, at most 256M, swap up to
//! 32M, high 50%.

mod common;

use std::process::Command;

use common::docker::{Dockerd, IMAGE, runtime_args};
use common::*;

fn v1_file(cgroup: &str, file: &str) -> u64 {
    let p = v1_memory_root()
        .join(cgroup.trim_start_matches('/'))
        .join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

fn limit(cgroup: &str) -> u64 {
    v1_file(cgroup, "memory.limit_in_bytes")
}

/// `cglimit runtime` with the lab's policies in front of `runtime`.
fn wrapper_for(lab: &Lab, runtime: &str) -> Command {
    let mut c = wrapper(lab);
    c.args(["--runtime", runtime]);
    c
}

fn ok(out: std::process::Output) {
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Docker 20.10 sends only the fields an update changes: `docker update
/// --cpus 2` reaches the runtime with an empty memory object. It once
/// set the policy's default (64M) on a container started with `-m
/// 200m`, and failed, while recording "applied", on one using more than
/// that. Memory is now kept as the container has it.
#[test]
fn docker_update_of_other_fields_keeps_memory() {
    let lab = Lab::new("updother");
    let d = Dockerd::start(&lab, &runtime_args(&lab));
    let run = |name: &str, flags: &[&str], cmd: &[&str]| {
        let mut a = vec!["run", "-d", "--runtime", "cglimit", "--net", "none"];
        a.extend_from_slice(&["--name", name]);
        a.extend_from_slice(flags);
        a.push(IMAGE);
        a.extend_from_slice(cmd);
        ok(d.docker(&a));
    };
    let read = |name: &str| d.v1_limits(name);
    run(
        "idle",
        &["-m", "200m", "--memory-swap", "200m"],
        &["sleep", "600"],
    );
    // 120 MB in a tmpfs: more than the default, less than its limit.
    run(
        "busy",
        &[
            "-m",
            "200m",
            "--memory-swap",
            "200m",
            "--tmpfs",
            "/t:size=150m",
        ],
        &[
            "sh",
            "-c",
            "head -c 125829120 /dev/zero > /t/f; echo filled; sleep 600",
        ],
    );
    run("plain", &[], &["sleep", "600"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !String::from_utf8_lossy(&d.docker(&["logs", "busy"]).stdout).contains("filled") {
        assert!(std::time::Instant::now() < deadline, "busy never filled");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(read("idle"), (200 * M, 200 * M));
    let records = lab.decisions().len();
    for update in [
        &["--cpus", "1"][..],
        &["--pids-limit", "50"],
        &["--restart", "always"],
        &["--cpu-shares", "512"],
    ] {
        for name in ["idle", "busy", "plain"] {
            let mut a = vec!["update"];
            a.extend_from_slice(update);
            a.push(name);
            ok(d.docker(&a));
        }
        assert_eq!(read("idle"), (200 * M, 200 * M), "after {update:?}");
        assert_eq!(read("busy"), (200 * M, 200 * M), "after {update:?}");
        assert_eq!(read("plain"), (64 * M, 64 * M), "after {update:?}");
    }
    assert_eq!(
        lab.decisions().len(),
        records,
        "an update that changes no memory records nothing"
    );
    let pids = d.docker(&["exec", "idle", "cat", "/sys/fs/cgroup/pids/pids.max"]);
    assert_eq!(String::from_utf8_lossy(&pids.stdout).trim(), "50");
    // A memory update still decides.
    ok(d.docker(&["update", "-m", "1g", "--memory-swap", "1g", "idle"]));
    assert_eq!(read("idle"), (256 * M, 256 * M));
    let _ = d.docker(&["rm", "-f", "idle", "busy", "plain"]);
}

/// Directly, with runc: a container whose limit was raised within the
/// policy (200M) keeps it through an update of pids or CPU, in each form.
#[test]
fn runc_update_of_other_fields_keeps_memory() {
    let mut lab = Lab::new("updotherrunc");
    let id = lab.detached(
        "k1",
        Some((200 * M as i64, Some(200 * M as i64))),
        "sleep 600",
    );
    let cgroup = format!("{}/k1", lab.cgroup_parent);
    assert_eq!(limit(&cgroup), 200 * M);
    ok(wrapper_for(&lab, "runc")
        .args(["update", "--pids-limit", "40", &id])
        .output()
        .unwrap());
    let mut c = wrapper_for(&lab, "runc");
    c.args(["update", "-r", "-", &id]);
    ok(with_stdin(
        c,
        br#"{"memory":{},"cpu":{"shares":512},"pids":{"limit":41}}"#,
    ));
    assert_eq!(limit(&cgroup), 200 * M);
    assert_eq!(v1_file(&cgroup, "memory.memsw.limit_in_bytes"), 200 * M);
    let pids = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{cgroup}/pids.max")).unwrap();
    assert_eq!(pids.trim(), "41");
}

/// Each spelling that runc or crun reads as a 1G memory update, and that
/// the wrapper once passed on or misread: held at the policy's 256M, and
/// what the cgroup holds is what the record says.
#[test]
fn no_spelling_of_an_update_escapes_the_policy() {
    let mut lab = Lab::new("updspell");
    let id = lab.detached("s1", None, "sleep 600");
    let cgroup = format!("{}/s1", lab.cgroup_parent);
    let reset = |lab: &Lab| {
        ok(wrapper_for(lab, "runc")
            .args(["update", "--memory", "32m", "--memory-swap", "32m", &id])
            .output()
            .unwrap());
        assert_eq!(limit(&cgroup), 32 * M);
    };
    let check = |lab: &Lab, what: &str| {
        assert_eq!(limit(&cgroup), 256 * M, "{what}");
        let last = lab.decisions().pop().unwrap();
        assert_eq!(last["source"], "update", "{what}");
        assert_eq!(last["outcome"], "applied", "{what}");
        assert_eq!(last["decision"]["limits"]["memory"], 256 * M, "{what}");
        assert_eq!(
            last["container"]["requested"]["memory"],
            1u64 << 30,
            "{what}: the request as the runtime reads it"
        );
    };

    // Flags after the container id: runc reorders them.
    reset(&lab);
    ok(wrapper_for(&lab, "runc")
        .args(["update", &id, "--memory", "1g", "--memory-swap", "1g"])
        .output()
        .unwrap());
    check(&lab, "flags after the id");

    // Go's JSON matches keys whatever their case.
    reset(&lab);
    let mut c = wrapper_for(&lab, "runc");
    c.args(["update", "-r", "-", &id]);
    ok(with_stdin(
        c,
        br#"{"Memory":{"Limit":1073741824,"Swap":1073741824}}"#,
    ));
    check(&lab, "keys in another case");

    // One key twice, in two spellings: Go takes the last.
    reset(&lab);
    let mut c = wrapper_for(&lab, "runc");
    c.args(["update", "--resources", "-", &id]);
    ok(with_stdin(
        c,
        br#"{"memory":{"limit":33554432,"swap":33554432,"LIMIT":1073741824,"SWAP":1073741824}}"#,
    ));
    check(&lab, "a duplicate key");

    // crun's getopt takes a unique prefix of an option.
    prepare_crun();
    let bundle = lab.bundle_with("s2", None, "createRuntime", lab.hook_args(), "sleep 600");
    let cid = format!("{}-s2", lab.name);
    lab.start_detached_on("crun", None, &bundle, &cid);
    let file = lab.dir.join("res.json");
    std::fs::write(
        &file,
        r#"{"memory":{"limit":1073741824,"swap":1073741824}}"#,
    )
    .unwrap();
    ok(wrapper_for(&lab, "crun")
        .args(["update", "--reso"])
        .arg(&file)
        .arg(&cid)
        .output()
        .unwrap());
    assert_eq!(limit(&format!("{}/s2", lab.cgroup_parent)), 256 * M);

    // What the runtime would refuse, the wrapper refuses, naming it.
    let out = wrapper_for(&lab, "runc")
        .args(["update", "--mem", "1g", &id])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ambiguous"), "{}", stderr(&out));
}
