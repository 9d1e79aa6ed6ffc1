//! The Docker engine's event stream (`GET /events`), followed as it comes:
//! a container that starts is known within the engine's own latency, not
//! at the next poll.
//!
//! The answer is one HTTP response that never ends: chunked, each event a
//! JSON object on its own line, a line possibly split across chunks.

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;

use super::engine::{self, EngineError};

/// A container event, as much of it as is needed.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// `start`, `die`, …
    #[serde(rename = "Action", default)]
    pub action: String,
    #[serde(rename = "id", default)]
    pub id: String,
    /// When it happened, in nanoseconds since the epoch.
    #[serde(rename = "timeNano", default)]
    pub time_nano: i64,
}

/// Follows container `start` events from `socket` until `on_event` says
/// stop (`false`) or the connection fails (then the error; the caller
/// reconnects). `since` (seconds since the epoch) replays what the engine
/// saw from then on, so a start between two connections is not missed.
/// Waits without a timeout: events come when they come.
pub fn follow_starts(
    socket: &std::path::Path,
    since: i64,
    mut on_event: impl FnMut(ContainerEvent) -> bool,
) -> Result<(), EngineError> {
    let filters = r#"{"type":["container"],"event":["start"]}"#;
    let path = format!(
        "/events?since={since}&filters={}",
        engine::percent_encode(filters)
    );
    let sent = engine::send(socket, "GET", &path, None, Duration::from_secs(10))?;
    let mut stream = sent.stream;
    let io = |source| EngineError::Io {
        doing: "read the engine's events",
        source,
    };
    stream.set_read_timeout(None).map_err(io)?;
    let mut decoder = Chunks::default();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Err(EngineError::Malformed(
                "the engine ended its event stream".into(),
            ));
        }
        for line in decoder.feed(&buf[..n])? {
            let Ok(e) = serde_json::from_slice::<ContainerEvent>(&line) else {
                continue;
            };
            if !on_event(e) {
                return Ok(());
            }
        }
    }
}

/// Decodes a chunked HTTP response as it arrives into whole lines.
#[derive(Default)]
struct Chunks {
    /// Bytes not decoded yet (headers, a chunk's size line or data).
    raw: Vec<u8>,
    headers_done: bool,
    /// Data of the current chunk still to come.
    left: usize,
    /// Decoded data not yet ended by a newline.
    line: Vec<u8>,
}

impl Chunks {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, EngineError> {
        self.raw.extend_from_slice(bytes);
        let mut out = Vec::new();
        if !self.headers_done {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(out);
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).to_string();
            let status = head.split_whitespace().nth(1).unwrap_or_default();
            if status != "200" {
                return Err(EngineError::Malformed(format!(
                    "the engine refused its event stream: {}",
                    head.lines().next().unwrap_or_default()
                )));
            }
            self.raw.drain(..end + 4);
            self.headers_done = true;
        }
        loop {
            if self.left > 0 {
                let take = self.left.min(self.raw.len());
                let data: Vec<u8> = self.raw.drain(..take).collect();
                self.left -= take;
                for b in data {
                    if b == b'\n' {
                        out.push(std::mem::take(&mut self.line));
                    } else {
                        self.line.push(b);
                    }
                }
                if self.left > 0 {
                    return Ok(out);
                }
            }
            // The CRLF that ends a chunk, then the next size line.
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return Ok(out);
            };
            let size_line = String::from_utf8_lossy(&self.raw[..eol]).to_string();
            self.raw.drain(..eol + 2);
            if size_line.is_empty() {
                continue;
            }
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| EngineError::Malformed(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                return Err(EngineError::Malformed(
                    "the engine ended its event stream".into(),
                ));
            }
            self.left = size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_and_reads() {
        let mut c = Chunks::default();
        let mut got = Vec::new();
        for part in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"c\r\n{\"id\":\"a\",\"A",
            b"\r\n",
            b"19\r\nction\":\"start\"}\n{\"id\":\"b\"\r\n",
            b"2\r\n}\n\r\n",
        ] {
            got.extend(c.feed(part).unwrap());
        }
        let lines: Vec<String> = got
            .iter()
            .map(|l| String::from_utf8_lossy(l).into())
            .collect();
        assert_eq!(lines, [r#"{"id":"a","Action":"start"}"#, r#"{"id":"b"}"#]);
    }

    #[test]
    fn a_refusal_is_an_error() {
        let mut c = Chunks::default();
        assert!(c.feed(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
    }
}
