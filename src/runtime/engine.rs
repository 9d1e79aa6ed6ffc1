//! Names, labels and images from the Docker engine, which does not put them
//! into `config.json`.
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

/// What the engine knows of a container.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EngineFacts {
    pub name: Option<String>,
    pub image: Option<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ListEntry {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default)]
    names: Vec<String>,
    #[serde(rename = "Image", default)]
    image: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// The engine's unix socket: `DOCKER_HOST` (`unix://` only), else the default.
pub fn socket_path(docker_host: Option<&str>) -> Result<PathBuf, String> {
    match docker_host {
        None | Some("") => Ok("/var/run/docker.sock".into()),
        Some(h) => h
            .strip_prefix("unix://")
            .map(PathBuf::from)
            .ok_or_else(|| format!("DOCKER_HOST {h:?} is not a unix:// socket")),
    }
}

/// Looks a container up by id through the list endpoint.
pub fn lookup(
    socket: &std::path::Path,
    id: &str,
    timeout: Duration,
) -> Result<Option<EngineFacts>, String> {
    let filters = format!("{{\"id\":[\"{id}\"]}}");
    let path = format!(
        "/containers/json?all=1&filters={}",
        percent_encode(&filters)
    );
    let body = get(socket, &path, timeout)?;
    let list: Vec<ListEntry> = serde_json::from_slice(&body)
        .map_err(|e| format!("unexpected answer from the engine: {e}"))?;
    // The id filter matches prefixes; take the exact container.
    Ok(list
        .into_iter()
        .find(|e| e.id == id || e.id.starts_with(id))
        .map(|e| EngineFacts {
            name: e
                .names
                .first()
                .map(|n| n.trim_start_matches('/').to_string()),
            image: e.image,
            labels: e.labels.unwrap_or_default(),
        }))
}

fn percent_encode(s: &str) -> String {
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

/// A minimal HTTP/1.1 GET over a unix socket: enough for the engine API,
/// which answers JSON with a `Content-Length` or chunked encoding.
pub fn get(socket: &std::path::Path, path: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: cglimit\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("cannot ask the engine: {e}"))?;
    let deadline = std::time::Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if std::time::Instant::now() > deadline {
            return Err(format!("the engine did not answer within {timeout:?}"));
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if let Some(body) = complete_body(&raw)? {
                    return Ok(body);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("the engine did not answer within {timeout:?}"));
            }
            Err(e) => return Err(format!("cannot read the engine's answer: {e}")),
        }
    }
    complete_body(&raw)?.ok_or_else(|| "the engine closed the connection mid-answer".into())
}

/// The body once the whole response is in `raw`, or `None` if more is needed.
fn complete_body(raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed HTTP answer from the engine")?;
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
    } else {
        return Ok(None);
    };
    if status != 200 {
        return Err(format!(
            "the engine answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
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
        assert_eq!(complete_body(r).unwrap(), Some(b"[]".to_vec()));
        let r =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\n1\r\n]\r\n0\r\n\r\n";
        assert_eq!(complete_body(r).unwrap(), Some(b"[{}]".to_vec()));
        let partial = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\n";
        assert_eq!(complete_body(partial).unwrap(), None);
        let r = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops";
        assert!(complete_body(r).unwrap_err().contains("500"));
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
        let e = lookup(&sock, "abc", Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("did not answer"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
