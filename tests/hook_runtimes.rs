//! The hook under real runc and crun, with real cgroups: the container's own
//! view of its memory cgroup shows the policy's limits before its first
//! instruction.

mod common;

use common::*;

fn default_limits(runtime: &str, stage: &str) {
    if runtime == "crun" {
        prepare_crun();
    }
    let mut lab = Lab::new(&format!("{runtime}-default"));
    let bundle = lab.bundle("c", None, stage);
    let out = lab.run(runtime, &format!("{}-c", lab.name), &bundle);
    assert!(out.status.success(), "{runtime}: {}", stderr(&out));
    // default 64M, swap default 0 (memsw = memory), high 50%.
    assert_eq!(limits_seen(&out), (64 * M, 64 * M, 32 * M));
    let d = lab.decisions();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["outcome"], "applied");
    assert_eq!(d[0]["decision"]["policy"], "default");
    assert_eq!(d[0]["container"]["id"], format!("{}-c", lab.name));
    assert!(
        d[0]["container"]["cgroup"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{}/c", lab.name))
    );
}

#[test]
fn runc_default_limits_create_runtime() {
    default_limits("runc", "createRuntime");
}

#[test]
fn runc_default_limits_prestart() {
    default_limits("runc", "prestart");
}

#[test]
fn crun_default_limits() {
    default_limits("crun", "createRuntime");
}

fn clamps(runtime: &str) {
    if runtime == "crun" {
        prepare_crun();
    }
    let mut lab = Lab::new(&format!("{runtime}-clamp"));
    // -m 1g --memory-swap 1g: above max 256M, asks for no swap.
    let b1 = lab.bundle("over", Some((1 << 30, Some(1 << 30))), "createRuntime");
    let out = lab.run(runtime, &format!("{}-over", lab.name), &b1);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (256 * M, 256 * M, 128 * M));
    // Unlimited memory (-1) is clamped to max, swap to its default.
    let b2 = lab.bundle("unl", Some((-1, None)), "createRuntime");
    let out = lab.run(runtime, &format!("{}-unl", lab.name), &b2);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (256 * M, 256 * M, 128 * M));
    // Within bounds is kept: 128M with 16M swap (memory+swap 144M).
    let b3 = lab.bundle("ok", Some((128 << 20, Some(144 << 20))), "createRuntime");
    let out = lab.run(runtime, &format!("{}-ok", lab.name), &b3);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(limits_seen(&out), (128 * M, 144 * M, 64 * M));
    // Below min is raised to min.
    let b4 = lab.bundle("low", Some((8 << 20, None)), "createRuntime");
    let out = lab.run(runtime, &format!("{}-low", lab.name), &b4);
    assert_eq!(limits_seen(&out), (16 * M, 16 * M, 8 * M));
    let d = lab.decisions();
    assert_eq!(d.len(), 4);
    assert_eq!(d[0]["decision"]["findings"][0]["bound"], "max 256M");
    assert_eq!(d[0]["decision"]["findings"][0]["asked"], 1u64 << 30);
    assert_eq!(d[2]["decision"]["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn runc_clamps_and_keeps() {
    clamps("runc");
}

#[test]
fn crun_clamps_and_keeps() {
    clamps("crun");
}

fn denies(runtime: &str) {
    if runtime == "crun" {
        prepare_crun();
    }
    let mut lab = Lab::new(&format!("{runtime}-deny"));
    lab.set_policy(
        "default.yaml",
        "name: strict\nmemory: {default: 64M, max: 256M}\nonViolation: deny\nmessage: ask the platform team for more than 256M\n",
    );
    let log = lab.dir.join("hook.log");
    let mut args = lab.hook_args();
    args.extend(["--log-file".into(), log.display().to_string()]);
    let b = lab.bundle_with("big", Some((1 << 30, None)), "createRuntime", args, "");
    let id = format!("{}-big", lab.name);
    let out = lab.run(runtime, &id, &b);
    assert!(!out.status.success(), "a denied container must not start");
    assert!(
        out.stdout.is_empty(),
        "the container ran: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    // runc shows the hook's stderr in its error; crun discards hook output
    // (unless the run.oci.hooks.stderr annotation names a file), so the
    // log file is where the reason is always found.
    let mut seen = std::fs::read_to_string(&log).unwrap();
    if runtime == "runc" {
        seen = stderr(&out);
    }
    assert!(
        seen.contains("ask the platform team for more than 256M"),
        "{seen}"
    );
    assert!(
        seen.contains("memory 1G is above the policy's max 256M"),
        "{seen}"
    );
    let d = lab.decisions();
    assert_eq!(d[0]["outcome"], "denied");
    assert_eq!(d[0]["decision"]["verdict"], "deny");
}

#[test]
fn runc_deny_refuses_the_start() {
    denies("runc");
}

#[test]
fn crun_deny_refuses_the_start() {
    denies("crun");
}

#[test]
fn runc_broken_policy_refuses_the_start_naming_file_and_line() {
    let mut lab = Lab::new("broken");
    lab.set_policy(
        "default.yaml",
        "name: default\nmemory:\n  default: 64M\n  max: 256X\n",
    );
    let b = lab.bundle("c", None, "createRuntime");
    let out = lab.run("runc", &format!("{}-c", lab.name), &b);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    let want = format!(
        "{}:4:8: memory.max",
        lab.policy_dir.join("default.yaml").display()
    );
    assert!(err.contains(&want), "want {want:?} in {err}");
    assert_eq!(lab.decisions()[0]["outcome"], "error");
}

#[test]
fn runc_fail_open_is_a_choice_and_is_logged() {
    let mut lab = Lab::new("failopen");
    lab.set_policy("default.yaml", "name: [not a string\n");
    let mut args = lab.hook_args();
    args.extend(["--on-error".into(), "allow".into()]);
    let b = lab.bundle_with(
        "c",
        Some((96 << 20, Some(96 << 20))),
        "createRuntime",
        args,
        "",
    );
    let out = lab.run("runc", &format!("{}-c", lab.name), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    // runc's own limits stay: nothing half-applied by the hook.
    assert_eq!(limits_seen(&out).0, 96 * M);
    assert_eq!(lab.decisions()[0]["outcome"], "failed-open");
}

#[test]
fn twenty_containers_at_once_all_get_their_limits() {
    let mut lab = Lab::new("twenty");
    let mut bundles = Vec::new();
    for i in 0..20 {
        // Half ask for too much, half for nothing.
        let mem = if i % 2 == 0 {
            Some((4 << 30, Some(4 << 30)))
        } else {
            None
        };
        bundles.push((
            format!("{}-n{i}", lab.name),
            lab.bundle(&format!("n{i}"), mem, "createRuntime"),
            i,
        ));
    }
    for (id, _, _) in &bundles {
        lab.track("runc", id);
    }
    let handles: Vec<_> = bundles
        .into_iter()
        .map(|(id, b, i)| {
            std::thread::spawn(move || {
                let out = std::process::Command::new("runc")
                    .args(["run", "--bundle"])
                    .arg(&b)
                    .arg(&id)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap();
                (i, out)
            })
        })
        .collect();
    for h in handles {
        let (i, out) = h.join().unwrap();
        assert!(out.status.success(), "n{i}: {}", stderr(&out));
        let want = if i % 2 == 0 { 256 * M } else { 64 * M };
        assert_eq!(limits_seen(&out), (want, want, want / 2), "n{i}");
    }
    let d = lab.decisions();
    assert_eq!(d.len(), 20, "one decision per start");
    assert!(d.iter().all(|r| r["outcome"] == "applied"));
}
