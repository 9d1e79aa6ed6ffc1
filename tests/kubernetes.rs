//! A Kubernetes node's path, for real: containerd (its own configuration,
//! socket, root and state) with the handler `cglimit setup containerd`
//! writes, driven through its CRI gRPC API as the kubelet drives it
//! (tests/cri/cri.py): pods in namespaces `batch` and `default`, their
//! sandboxes, an in-place resize above the policy, and pods that claim
//! another namespace through annotations.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::containerd::{Containerd, PAUSE_IMAGE};
use common::*;

const IMAGE: &str = "localhost/cglimit-test/busybox:1";
const PYTHON_DEPS: &str = "/var/cache/cglimit-test/python";

const POLICIES: &str = "name: batch
priority: 5
match: {namespaces: [batch], containerTypes: [container]}
memory: {default: 512M, max: 1G}
swap: {max: 0}
high: 90%
onViolation: clamp
";

/// grpcio and grpcio-tools for the client, installed once from PyPI.
fn python_deps() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let ok = Command::new("python3")
            .args(["-c", "import grpc, grpc_tools"])
            .env("PYTHONPATH", PYTHON_DEPS)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let st = Command::new("python3")
                .args(["-m", "pip", "install", "-q", "--target", PYTHON_DEPS])
                .args(["grpcio", "grpcio-tools"])
                .status()
                .unwrap();
            assert!(st.success(), "pip install grpcio grpcio-tools failed");
        }
    });
}

struct Node {
    lab: Lab,
    c: Containerd,
    stubs: PathBuf,
}

impl Node {
    fn cri(&self, args: &[&str]) -> Output {
        Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cri/cri.py"))
            .arg(&self.c.sock)
            .args(args)
            .env("PYTHONPATH", PYTHON_DEPS)
            .env("CRI_STUBS", &self.stubs)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn cri_ok(&self, args: &[&str]) -> String {
        let out = self.cri(args);
        assert!(
            out.status.success(),
            "cri.py {args:?}: {}\n--- containerd log (tail) ---\n{}",
            stderr(&out),
            tail(&self.c.log(), 3000)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn run_pod(&self, name: &str, ns: &str, extra: &[&str]) -> String {
        let mut args = vec!["run-pod", name, ns, &self.lab.cgroup_parent];
        args.extend_from_slice(extra);
        self.cri_ok(&args)
    }

    fn create(&self, sandbox: &str, pod: &str, ns: &str, name: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "create",
            sandbox,
            pod,
            ns,
            &self.lab.cgroup_parent,
            name,
            IMAGE,
        ];
        args.extend_from_slice(extra);
        let id = self.cri_ok(&args);
        self.cri_ok(&["start", &id]);
        id
    }

    /// The bundle containerd's shim wrote for a container or sandbox.
    fn bundle(&self, id: &str) -> PathBuf {
        self.c
            .dir
            .join("state/io.containerd.runtime.v2.task/k8s.io")
            .join(id)
    }

    /// `memory.limit_in_bytes` of a container's cgroup, found through the
    /// `cgroupsPath` of its bundle.
    fn limit(&self, id: &str) -> u64 {
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.bundle(id).join("config.json")).unwrap())
                .unwrap();
        let path = spec["linux"]["cgroupsPath"].as_str().unwrap().to_string();
        let file = v1_memory_root()
            .join(path.trim_start_matches('/'))
            .join("memory.limit_in_bytes");
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .trim()
            .parse()
            .unwrap()
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn node(test: &str) -> Node {
    python_deps();
    let lab = Lab::new(test);
    lab.set_policy("kubernetes.yaml", POLICIES);
    // Sandboxes: the shipped policy, as setup installs it.
    lab.set_policy(
        "05-pod-sandboxes.yaml",
        include_str!("../policies/05-pod-sandboxes.yaml"),
    );
    let wrapper = lab.dir.join("config.yaml");
    write_private(
        &wrapper,
        &format!(
            "policyDir: {}\nstateDir: {}\ncacheDir: {}\nruntime: runc\ndockerHost: unix:///nonexistent/docker.sock\n",
            lab.policy_dir.display(),
            lab.state_dir.display(),
            lab.dir.join("cache").display()
        ),
    );
    let mut c = Containerd::new();
    let out = Command::new(BIN)
        .args(["setup", "containerd", "--default", "--containerd-config"])
        .arg(&c.config)
        .arg("--policy-dir")
        .arg(&lab.policy_dir)
        .arg("--config")
        .arg(&wrapper)
        .arg("--state-dir")
        .arg(lab.dir.join("setup-state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "setup containerd: {}", stderr(&out));
    // A second handler, running the same wrapper, that passes every pod
    // and container annotation through to config.json: the most a
    // cluster's configuration can let a pod's author write there.
    let binary = c.binary_of("cglimit").unwrap();
    let mut text = std::fs::read_to_string(&c.config).unwrap();
    text.push_str(&format!(
        "\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.passthrough]\nruntime_type = \"io.containerd.runc.v2\"\npod_annotations = [\"*\", \"*/*\"]\ncontainer_annotations = [\"*\", \"*/*\"]\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.passthrough.options]\nBinaryName = \"{}\"\n",
        binary.display()
    ));
    std::fs::write(&c.config, text).unwrap();
    c.cglimit_config = Some(wrapper);
    c.start();
    c.import_busybox("k8s.io", PAUSE_IMAGE);
    c.import_busybox("k8s.io", IMAGE);
    let stubs = lab.dir.join("stubs");
    Node { lab, c, stubs }
}

#[test]
fn pods_get_their_namespaces_policy_through_the_cri() {
    let n = node("cri");
    let pods: std::cell::RefCell<Vec<String>> = std::cell::RefCell::new(Vec::new());
    let cleanup = |n: &Node| {
        for p in pods.borrow().iter() {
            let _ = n.cri(&["stop-pod", p]);
            let _ = n.cri(&["remove-pod", p]);
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // A pod in `batch`: its sandbox gets the shipped sandbox policy, its
        // container, asking nothing, the namespace's default.
        let job = n.run_pod("job", "batch", &[]);
        pods.borrow_mut().push(job.clone());
        assert_eq!(n.limit(&job), 32 * M, "the sandbox of a batch pod");
        let app = n.create(&job, "job", "batch", "app", &[]);
        assert_eq!(n.limit(&app), 512 * M, "a batch container asking nothing");

        // A pod in `default` (through the RuntimeClass handler, by name)
        // that claims `batch` in its own and its container's annotations:
        // the CRI's keys win, and the catch-all applies.
        let claim = "io.kubernetes.cri.sandbox-namespace=batch";
        let web = n.run_pod(
            "web",
            "default",
            &["--handler", "cglimit", "--annotation", claim],
        );
        pods.borrow_mut().push(web.clone());
        let front = n.create(
            &web,
            "web",
            "default",
            "front",
            &["--annotation", claim, "--pod-annotation", claim],
        );
        assert_eq!(
            n.limit(&front),
            64 * M,
            "a default container claiming batch"
        );
        // Even where the handler passes every annotation through, the
        // CRI's own keys are written last and win.
        let open = n.run_pod(
            "open",
            "default",
            &[
                "--handler",
                "passthrough",
                "--annotation",
                claim,
                "--annotation",
                "cglimit.test/pod=yes",
            ],
        );
        pods.borrow_mut().push(open.clone());
        let sneaky = n.create(
            &open,
            "open",
            "default",
            "sneaky",
            &[
                "--annotation",
                claim,
                "--pod-annotation",
                claim,
                "--pod-annotation",
                "cglimit.test/pod=yes",
                "--annotation",
                "cglimit.test/container=yes",
            ],
        );
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(n.bundle(&sneaky).join("config.json")).unwrap())
                .unwrap();
        let a = &spec["annotations"];
        assert_eq!(
            a["cglimit.test/pod"], "yes",
            "no pod annotation passed: {a}"
        );
        assert_eq!(
            a["cglimit.test/container"], "yes",
            "no container annotation: {a}"
        );
        assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], "default", "{a}");
        assert_eq!(
            n.limit(&sneaky),
            64 * M,
            "annotations passed through claimed batch"
        );
        assert_eq!(n.limit(&open), 32 * M, "the passthrough pod's sandbox");
        // Asking above the catch-all's maximum: clamped to it.
        let big = n.create(
            &web,
            "web",
            "default",
            "big",
            &["--memory", &(2 * G).to_string()],
        );
        assert_eq!(n.limit(&big), 256 * M);

        // In-place resize above the namespace's maximum arrives as the
        // runtime's update: clamped to 1G.
        n.cri_ok(&["update", &app, &(4 * G).to_string()]);
        assert_eq!(n.limit(&app), G, "resized to 4G through the CRI");
        n.cri_ok(&["update", &app, &(768 * M).to_string()]);
        assert_eq!(n.limit(&app), 768 * M, "a resize within the policy stands");

        // What was recorded, and what explain says of the CRI's bundle.
        let d = n.lab.decisions();
        let rec = d
            .iter()
            .rev()
            .find(|r| r["container"]["id"] == app.as_str() && r["decision"].is_object())
            .unwrap_or_else(|| panic!("no decision for {app}: {d:?}"));
        assert_eq!(rec["container"]["namespace"], "batch");
        assert_eq!(rec["container"]["pod"], "job");
        assert_eq!(rec["container"]["name"], "app");
        assert_eq!(rec["container"]["container_type"], "container");
        let out = Command::new(BIN)
            .args(["explain", "--bundle"])
            .arg(n.bundle(&app))
            .arg("--policy-dir")
            .arg(&n.lab.policy_dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", stderr(&out));
        for want in [
            "namespace   batch: written by the CRI runtime",
            "pod         job: the pod's name, chosen by its author",
            "type        container: written by the CRI runtime",
            "name        app: the container's name in the pod spec",
            "* 1 \"batch\"",
        ] {
            assert!(text.contains(want), "explain lacks {want:?}:\n{text}");
        }
    }));
    cleanup(&n);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    // Stopped and removed: their bundles are gone.
    for p in pods.borrow().iter() {
        assert!(!n.bundle(p).exists(), "sandbox {p} left behind");
    }
    let _: &Path = &n.lab.dir;
}
