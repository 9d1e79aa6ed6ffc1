//! A `cglimit watch` for tests: started on a free port with its log in the
//! lab, killed on drop.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, Lab};

pub struct Watcher(pub Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A watcher on a free port, seeing only the hook's containers, with
/// `extra` flags (`--interval` among them replaces the default 1s).
pub fn start_watch_with(lab: &Lab, extra: &[&str]) -> (Watcher, u16) {
    let mut args = hook_only(lab);
    args.extend(extra.iter().map(|a| a.to_string()));
    start_watch_in(lab, None, &args)
}

/// Starts the watcher on `port`, or on a free port when `None`; returns it
/// and its port. Another test may take a free port between the look-up and
/// the bind: then the watcher exits and another port is tried.
pub fn start_watch(lab: &Lab, port: Option<u16>) -> (Watcher, u16) {
    start_watch_in(lab, port, &hook_only(lab))
}

/// Source flags that leave the watcher the hook's containers only.
fn hook_only(lab: &Lab) -> Vec<String> {
    let none = lab.dir.join("no-runc");
    std::fs::create_dir_all(&none).unwrap();
    let none = none.display().to_string();
    [
        "--no-docker",
        "--no-podman",
        "--runc-root",
        &none,
        "--crun-root",
        &none,
    ]
    .map(String::from)
    .to_vec()
}

/// The same, watching the containers `scope` names (source flags).
pub fn start_watch_in(lab: &Lab, port: Option<u16>, scope: &[String]) -> (Watcher, u16) {
    for _ in 0..5 {
        let p = port.unwrap_or_else(free_port);
        let mut child = Command::new(BIN)
            .arg("--log-file")
            .arg(lab.dir.join("watch.log"))
            .arg("watch")
            .arg("--state-dir")
            .arg(&lab.state_dir)
            .args(["--listen", &format!("127.0.0.1:{p}")])
            .args(if scope.iter().any(|a| a == "--interval") {
                &[][..]
            } else {
                &["--interval", "1s"][..]
            })
            .args(scope)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        let mut up = false;
        while t.elapsed() < Duration::from_secs(10) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", p)).is_ok() {
                // Ours, and not another test's watcher on the same port?
                std::thread::sleep(Duration::from_millis(100));
                up = child.try_wait().unwrap().is_none();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if up {
            return (Watcher(child), p);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            port.is_none(),
            "watch did not start on port {p}: {}",
            std::fs::read_to_string(lab.dir.join("watch.log")).unwrap_or_default()
        );
    }
    panic!("watch did not start");
}

pub fn metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The events the watcher recorded in the lab's state directory.
pub fn events(lab: &Lab) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lab.state_dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every event line is JSON"))
        .collect()
}

/// A GET of Prometheus's HTTP API on `port`: the JSON answer, or null.
pub fn prom_get(port: u16, path: &str) -> serde_json::Value {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return serde_json::Value::Null;
    };
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Prometheus with the configuration `cfg` and its data in the lab, on a
/// free port; killed with the returned guard.
pub fn start_prometheus(lab: &Lab, cfg: &std::path::Path) -> (Watcher, u16) {
    let web = free_port();
    let prom = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            lab.dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (tests/all.sh installs it)");
    (Watcher(prom), web)
}

/// The value of the series `name` of container `id` in the exposition `m`.
pub fn series(m: &str, name: &str, id: &str) -> Option<f64> {
    m.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("id=\"{id}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
