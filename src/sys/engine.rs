//! A small client of the Docker engine API (also served by podman's
//! compatible socket) over its unix socket: names, labels and images, which
//! Docker does not put into `config.json`; and for `apply`, the running
//! containers, their settings, and updates of their limits.
//!
//! While a container is being created, `GET /containers/{id}/json` (inspect)
//! blocks until the create finishes: the very call the wrapper is part of.
//! The list endpoint with an id filter answers at once, so that is what is
//! asked, with a short timeout: a slow or absent engine must not stall
//! container starts, and the decision then goes ahead on what is known.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Why the engine could not be asked, or what it answered instead.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `DOCKER_HOST` names something other than a unix socket.
    #[error("DOCKER_HOST {0:?} is not a unix:// socket")]
    NotUnix(String),
    #[error("cannot connect to {}: {source}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing the request or reading the answer failed.
    #[error("cannot {doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// No whole answer within the timeout.
    #[error("the engine did not answer within {0:?}")]
    Late(Duration),
    /// The engine answered with an HTTP error.
    #[error("the engine answered {status}: {body}")]
    Status { status: u16, body: String },
    /// The answer is not HTTP.
    #[error("{0}")]
    Malformed(String),
    /// The answer is not the JSON expected.
    #[error("unexpected answer from the engine: {0}")]
    Unexpected(#[source] serde_json::Error),
}

fn unexpected(e: serde_json::Error) -> EngineError {
    EngineError::Unexpected(e)
}

/// What the engine knows of a container.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EngineFacts {
    pub name: Option<String>,
    pub image: Option<String>,
    /// The image's id, to ask which labels are the image's own.
    pub image_id: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl ListEntry {
    /// Docker lists names with a leading `/` (podman without).
    pub fn facts(self) -> EngineFacts {
        EngineFacts {
            name: self
                .names
                .first()
                .map(|n| n.trim_start_matches('/').to_string()),
            image: self.image,
            image_id: self.image_id,
            labels: self.labels.unwrap_or_default(),
        }
    }
}

/// A container as the engine's list endpoint (and `podman ps --format
/// json`) describes it.
#[derive(Deserialize, Clone)]
pub struct ListEntry {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Names", default)]
    names: Vec<String>,
    #[serde(rename = "Image", default)]
    image: Option<String>,
    #[serde(rename = "ImageID", default)]
    image_id: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct ImageInspect {
    #[serde(rename = "Config", default)]
    config: Option<ImageConfig>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// The labels an image's configuration carries (`LABEL` in a Dockerfile,
/// `docker import --change LABEL`), which Docker copies into every
/// container made from it.
pub fn image_labels(
    socket: &std::path::Path,
    image: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, String>, EngineError> {
    let body = get(
        socket,
        &format!("/images/{}/json", percent_encode(image)),
        timeout,
    )?;
    let i: ImageInspect = serde_json::from_slice(&body).map_err(unexpected)?;
    Ok(i.config.and_then(|c| c.labels).unwrap_or_default())
}

/// The engine's unix socket: `docker_host` if given, else `$DOCKER_HOST`
/// (`unix://` only), else the default.
pub fn socket_path(docker_host: Option<&str>) -> Result<PathBuf, EngineError> {
    let env = std::env::var("DOCKER_HOST").ok();
    match docker_host.or(env.as_deref()) {
        None | Some("") => Ok("/var/run/docker.sock".into()),
        Some(h) => h
            .strip_prefix("unix://")
            .map(PathBuf::from)
            .ok_or_else(|| EngineError::NotUnix(h.to_string())),
    }
}

/// A lookup sent and not yet answered: the engine works on it while the
/// caller does something else.
pub struct Question {
    id: String,
    sent: Sent,
}

/// Sends the lookup of a container by id (through the list endpoint,
/// which answers during a create; inspect blocks until it ends).
pub fn ask(socket: &std::path::Path, id: &str, timeout: Duration) -> Result<Question, EngineError> {
    let filters = format!("{{\"id\":[\"{id}\"]}}");
    let path = format!(
        "/containers/json?all=1&filters={}",
        percent_encode(&filters)
    );
    Ok(Question {
        id: id.to_string(),
        sent: send(socket, "GET", &path, None, timeout)?,
    })
}

impl Question {
    /// Waits for the answer, within the timeout counted from the question.
    pub fn answer(self) -> Result<Option<EngineFacts>, EngineError> {
        let body = self.sent.receive()?;
        let list: Vec<ListEntry> = serde_json::from_slice(&body).map_err(unexpected)?;
        // The id filter matches prefixes; take the exact container.
        let id = &self.id;
        Ok(list
            .into_iter()
            .find(|e| e.id == *id || e.id.starts_with(id.as_str()))
            .map(ListEntry::facts))
    }
}

/// The runtimes the engine offers (`docker info`: name → path) and its
/// default.
pub fn runtimes(
    socket: &std::path::Path,
    timeout: Duration,
) -> Result<(BTreeMap<String, String>, String), EngineError> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(rename = "Runtimes", default)]
        runtimes: BTreeMap<String, RuntimeEntry>,
        #[serde(rename = "DefaultRuntime", default)]
        default_runtime: String,
    }
    #[derive(Deserialize)]
    struct RuntimeEntry {
        #[serde(default)]
        path: String,
    }
    let body = get(socket, "/info", timeout)?;
    let i: Info = serde_json::from_slice(&body).map_err(unexpected)?;
    Ok((
        i.runtimes.into_iter().map(|(k, v)| (k, v.path)).collect(),
        i.default_runtime,
    ))
}

/// The runtime a container was created with (`HostConfig.Runtime`).
pub fn runtime_of(
    socket: &std::path::Path,
    id: &str,
    timeout: Duration,
) -> Result<String, EngineError> {
    let body = get(
        socket,
        &format!("/containers/{}/json", percent_encode(id)),
        timeout,
    )?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(unexpected)?;
    Ok(v["HostConfig"]["Runtime"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// A running container as the engine lists and inspects it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    pub id: String,
    pub facts: EngineFacts,
    pub pid: i32,
    /// `HostConfig.Memory` and `MemorySwap` (0: not set, -1: unlimited swap).
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
}

#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "State")]
    state: InspectState,
    #[serde(rename = "HostConfig")]
    host_config: InspectHost,
}

#[derive(Deserialize)]
struct InspectState {
    #[serde(rename = "Pid", default)]
    pid: i32,
    #[serde(rename = "Running", default)]
    running: bool,
}

#[derive(Deserialize)]
struct InspectHost {
    #[serde(rename = "Memory", default)]
    memory: i64,
    #[serde(rename = "MemorySwap", default)]
    memory_swap: i64,
    #[serde(rename = "MemoryReservation", default)]
    memory_reservation: i64,
}

/// Every running container with its pid and memory settings. One list
/// call, then one inspect per container (inspect does not block once a
/// container runs).
pub fn running(socket: &std::path::Path, timeout: Duration) -> Result<Vec<Running>, EngineError> {
    let body = get(socket, "/containers/json", timeout)?;
    let list: Vec<ListEntry> = serde_json::from_slice(&body).map_err(unexpected)?;
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        let Some(r) = inspect(socket, &e.id, timeout)? else {
            continue;
        };
        out.push(Running {
            facts: e.facts(),
            ..r
        });
    }
    Ok(out)
}

/// A container's pid and settings; `None` when it is not running.
pub fn inspect(
    socket: &std::path::Path,
    id: &str,
    timeout: Duration,
) -> Result<Option<Running>, EngineError> {
    let body = get(
        socket,
        &format!("/containers/{}/json", percent_encode(id)),
        timeout,
    )?;
    let i: Inspect = serde_json::from_slice(&body).map_err(unexpected)?;
    if !i.state.running || i.state.pid <= 0 {
        return Ok(None);
    }
    Ok(Some(Running {
        id: id.to_string(),
        facts: EngineFacts::default(),
        pid: i.state.pid,
        memory: i.host_config.memory,
        memory_swap: i.host_config.memory_swap,
        memory_reservation: i.host_config.memory_reservation,
    }))
}

/// Changes a container's limits through the engine, so that `docker
/// inspect`, a later restart and `docker stats` agree with the cgroup.
pub fn update(
    socket: &std::path::Path,
    id: &str,
    memory: i64,
    memory_swap: i64,
    reservation: Option<i64>,
    timeout: Duration,
) -> Result<(), EngineError> {
    let mut body = serde_json::json!({"Memory": memory, "MemorySwap": memory_swap});
    if let Some(r) = reservation {
        body["MemoryReservation"] = r.into();
    }
    request(
        socket,
        "POST",
        &format!("/containers/{}/update", percent_encode(id)),
        Some(body.to_string().as_bytes()),
        timeout,
    )
    .map(|_| ())
}

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A GET over the engine's socket.
pub fn get(
    socket: &std::path::Path,
    path: &str,
    timeout: Duration,
) -> Result<Vec<u8>, EngineError> {
    request(socket, "GET", path, None, timeout)
}

/// A minimal HTTP/1.1 request over a unix socket: enough for the engine
/// API, which answers JSON with a `Content-Length` or chunked encoding.
pub fn request(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Vec<u8>, EngineError> {
    send(socket, method, path, body, timeout)?.receive()
}

/// A request written to the engine, its answer still to be read.
pub(crate) struct Sent {
    pub(crate) stream: UnixStream,
    timeout: Duration,
    deadline: std::time::Instant,
}

pub(crate) fn send(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Sent, EngineError> {
    let deadline = std::time::Instant::now() + timeout;
    let mut s = UnixStream::connect(socket).map_err(|source| EngineError::Connect {
        socket: socket.to_path_buf(),
        source,
    })?;
    let io = |doing| move |source| EngineError::Io { doing, source };
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(io("set a timeout on the engine's socket"))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: cglimit\r\nConnection: close\r\n"
    );
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    s.write_all(&bytes).map_err(io("ask the engine"))?;
    Ok(Sent {
        stream: s,
        timeout,
        deadline,
    })
}

impl Sent {
    fn receive(mut self) -> Result<Vec<u8>, EngineError> {
        let timeout = self.timeout;
        let late = || EngineError::Late(timeout);
        let io = |source| EngineError::Io {
            doing: "read the engine's answer",
            source,
        };
        let mut raw = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            let left = self
                .deadline
                .checked_duration_since(std::time::Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(late)?;
            self.stream.set_read_timeout(Some(left)).map_err(io)?;
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if let Some(body) = complete_body(&raw, false)? {
                        return Ok(body);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(late());
                }
                Err(e) => return Err(io(e)),
            }
        }
        complete_body(&raw, true)?.ok_or_else(|| {
            EngineError::Malformed("the engine closed the connection mid-answer".into())
        })
    }
}

/// The body once the whole response is in `raw`, or `None` if more is
/// needed. At `eof`, a response without a length ends with the connection.
fn complete_body(raw: &[u8], eof: bool) -> Result<Option<Vec<u8>>, EngineError> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| EngineError::Malformed("malformed HTTP answer from the engine".into()))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let body = if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        match dechunk(body) {
            Some(b) => b,
            None => return Ok(None),
        }
    } else if let Some(len) = header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        if body.len() < len {
            return Ok(None);
        }
        body[..len].to_vec()
    } else if eof || status == 204 || status == 304 {
        body.to_vec()
    } else {
        return Ok(None);
    };
    if !(200..300).contains(&status) {
        return Err(EngineError::Status {
            status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    Ok(Some(body))
}

/// Joins a chunked body; `None` until the final zero-length chunk is in.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_hex = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_hex.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]";
        assert_eq!(complete_body(r, false).unwrap(), Some(b"[]".to_vec()));
        let r =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\n1\r\n]\r\n0\r\n\r\n";
        assert_eq!(complete_body(r, false).unwrap(), Some(b"[{}]".to_vec()));
        let partial = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\n";
        assert_eq!(complete_body(partial, false).unwrap(), None);
        let r = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops";
        assert!(matches!(
            complete_body(r, false).unwrap_err(),
            EngineError::Status { status: 500, .. }
        ));
        let r = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(complete_body(r, false).unwrap(), Some(vec![]));
    }

    #[test]
    fn docker_host() {
        assert_eq!(
            socket_path(None).unwrap(),
            PathBuf::from("/var/run/docker.sock")
        );
        assert_eq!(
            socket_path(Some("unix:///x/d.sock")).unwrap(),
            PathBuf::from("/x/d.sock")
        );
        assert!(socket_path(Some("tcp://1.2.3.4:2375")).is_err());
    }

    #[test]
    fn filters_are_encoded() {
        assert_eq!(
            percent_encode("{\"id\":[\"ab\"]}"),
            "%7B%22id%22%3A%5B%22ab%22%5D%7D"
        );
    }

    #[test]
    fn a_silent_engine_times_out() {
        let dir = std::env::temp_dir().join(format!("cglimit-eng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("d.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let t = std::time::Instant::now();
        let e = ask(&sock, "abc", Duration::from_millis(100))
            .and_then(Question::answer)
            .unwrap_err();
        assert!(e.to_string().contains("did not answer"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
