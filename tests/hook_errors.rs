//! Bad input and failures: every one gives a clear error, nothing on stdout,
//! and no half-applied limits.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

fn state(id: &str, pid: u32, bundle: &Path) -> String {
    serde_json::json!({
        "ociVersion": "1.0.2", "id": id, "status": "creating", "pid": pid, "bundle": bundle
    })
    .to_string()
}

fn empty_bundle(lab: &Lab) -> PathBuf {
    let b = lab.dir.join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join("config.json"),
        r#"{"ociVersion":"1.0.2","linux":{}}"#,
    )
    .unwrap();
    b
}

fn assert_error(out: &std::process::Output, want: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(
        out.stdout.is_empty(),
        "stdout must stay empty: {:?}",
        out.stdout
    );
    assert!(
        stderr(out).contains(want),
        "want {want:?} in: {}",
        stderr(out)
    );
}

#[test]
fn malformed_state_on_stdin() {
    let lab = Lab::new("badstate");
    for (input, want) in [
        ("", "empty input"),
        ("{\"ociVersion\": ", "malformed container state on stdin"),
        ("[1,2,3]", "malformed container state on stdin"),
        (
            r#"{"ociVersion":"1.0.2","id":"x","status":"creating","bundle":"/b"}"#,
            "no \"pid\"",
        ),
    ] {
        let out = hook(&lab.hook_args(), input);
        assert_error(&out, want);
    }
    let d = lab.decisions();
    assert_eq!(d.len(), 4);
    assert!(d.iter().all(|r| r["outcome"] == "error"));
}

#[test]
fn missing_bundle() {
    let lab = Lab::new("nobundle");
    let v = Victim::new(&lab, "v");
    let out = hook(
        &lab.hook_args(),
        &state("x", v.pid(), Path::new("/nonexistent/bundle")),
    );
    assert_error(&out, "/nonexistent/bundle/config.json: cannot open");
}

#[test]
fn container_that_already_exited() {
    let lab = Lab::new("exited");
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let out = hook(&lab.hook_args(), &state("x", pid, &empty_bundle(&lab)));
    assert_error(&out, &format!("container process {pid} has exited"));
}

#[test]
fn unwritable_cgroup_file_restores_everything() {
    let lab = Lab::new("unwritable");
    let v = Victim::new(&lab, "v");
    // The kernel keeps limit <= memsw: lower the limit first.
    v.write("memory.limit_in_bytes", 200 * M);
    v.write("memory.memsw.limit_in_bytes", 200 * M);
    // The third write of the plan fails: the first two must be undone.
    let soft = v.dir.join("memory.soft_limit_in_bytes");
    std::fs::set_permissions(&soft, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    let mut args = vec![
        "setpriv".to_string(),
        "--inh-caps=-dac_override".into(),
        "--bounding-set=-dac_override".into(),
        BIN.into(),
    ];
    args.extend(lab.hook_args().into_iter().skip(1));
    use std::io::Write;
    let mut child = Command::new("setpriv")
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(state("x", v.pid(), &empty_bundle(&lab)).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_error(
        &out,
        "memory.soft_limit_in_bytes: Permission denied (EACCES)",
    );
    assert!(
        stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(v.read("memory.limit_in_bytes"), 200 * M);
    assert_eq!(v.read("memory.memsw.limit_in_bytes"), 200 * M);
    assert_eq!(v.read("memory.soft_limit_in_bytes"), V1_UNLIMITED);
    assert_eq!(lab.decisions()[0]["outcome"], "error");
}

/// Stuck where only a fatal signal reaches it (the policy file's open is
/// held by a fanotify permission check until after the limit, as a hung
/// file server would hold it), the hook is killed just after its limit and
/// the runtime refuses the container; nothing was written.
#[test]
fn hook_gives_up_after_its_timeout() {
    use std::os::unix::process::ExitStatusExt;
    let lab = Lab::new("timeout");
    let v = Victim::new(&lab, "v");
    let held = HeldOpens::new(&lab.policy_dir.join("default.yaml"));
    let mut args = lab.hook_args();
    args.extend(["--timeout".into(), "300ms".into()]);
    let t = std::time::Instant::now();
    let out = hook(&args, &state("x", v.pid(), &empty_bundle(&lab)));
    drop(held);
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert!(out.stdout.is_empty());
    assert_eq!(v.read("memory.limit_in_bytes"), V1_UNLIMITED);
}

/// Stuck where a signal reaches it (a runtime that never closes the hook's
/// stdin), the hook says why and ends as `--on-error` says: refused, or
/// started without limits under `allow`.
#[test]
fn a_hook_left_waiting_says_why_and_ends_as_on_error_says() {
    let lab = Lab::new("timeoutmsg");
    for (on_error, code, level) in [("deny", 1, "error"), ("allow", 0, "warning")] {
        let mut args = lab.hook_args();
        args.extend(["--timeout", "300ms", "--on-error", on_error].map(String::from));
        let t = std::time::Instant::now();
        let mut child = Command::new(BIN)
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Half a state, and stdin kept open.
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, br#"{"ociVersion":"1.0.2","#).unwrap();
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{on_error}: {}",
            stderr(&out)
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert!(out.stdout.is_empty());
        let want = format!("{level}: timed out after 300ms before the limits were applied");
        assert!(
            stderr(&out).contains(&want),
            "{on_error}: want {want:?} in {}",
            stderr(&out)
        );
    }
}

#[test]
fn validate_points_at_file_line_and_field() {
    let lab = Lab::new("validate");
    lab.set_policy(
        "bad.yaml",
        "name: ok\n---\nname: typo\nmemory: {default: 512x}\n---\nname: order\nswap:\n  min: 2g\n  max: 1g\n",
    );
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&lab.policy_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let f = lab.policy_dir.join("bad.yaml").display().to_string();
    assert!(
        err.contains(&format!("{f}:4:19: memory.default: invalid size \"512x\"")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f}:8:8: swap.min: min 2G is greater than max 1G")),
        "{err}"
    );
    std::fs::remove_file(lab.policy_dir.join("bad.yaml")).unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&lab.policy_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 policies in 1 files: ok"));
    // The shipped policies are valid.
    let out = Command::new(BIN)
        .arg("validate")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn explain_writes_nothing_and_says_why() {
    let lab = Lab::new("explain");
    lab.set_policy("web.yaml", "name: web\npriority: 5\nmatch: {labels: {tier: web}}\nmemory: {default: 128M, max: 512M}\n");
    let out = Command::new(BIN)
        .arg("explain")
        .arg("--policy-dir")
        .arg(&lab.policy_dir)
        .args([
            "--id",
            "c1",
            "--label",
            "tier=web",
            "--memory",
            "1g",
            "--memory-swap",
            "1g",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("highest priority (5 over 0 of \"default\")"),
        "{text}"
    );
    // The label is the container creator's to set: "web" cannot give more
    // than the default's max.
    assert!(
        text.contains("selected through label/annotation \"tier\", set by the container's creator"),
        "{text}"
    );
    assert!(
        text.contains("memory 256M, swap 0 (memory+swap 256M)"),
        "{text}"
    );
    assert!(
        text.contains("memory max 512M of \"web\" is capped at 256M, the max of \"default\""),
        "{text}"
    );
    assert!(
        text.contains("memory 1G crosses max 256M: clamped to 256M"),
        "{text}"
    );
    assert!(!lab.state_dir.exists());
}
