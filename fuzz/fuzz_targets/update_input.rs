//! An `update` in any of its forms (flags, a resources file, resources on
//! stdin), rewritten with any decided limits: never a panic; what reaches
//! the runtime is one canonical document on stdin with the decision as its
//! memory, the same container id after `--`, and nothing of the caller's
//! spelling; and the memory the wrapper read is what Go's decoder reads.
//!
//! The last is checked against a second, naive model of Go's
//! `encoding/json` for the memory fields: walk the document's keys in
//! order, fold their case as Go does, let a later key overwrite an earlier
//! one and `null` clear it, and decode repeated `memory` objects into the
//! same struct.
//!
//! Input: the runtime's argv (NUL-separated) up to the first newline, the
//! resources document after it; three bytes of decided limits first.
#![no_main]

mod common;

use std::ffi::OsString;

use cglimit::cmd::runtime::resources::Raw;
use cglimit::cmd::runtime::{argv, update};
use cglimit::enforce::spec::Host;
use libfuzzer_sys::fuzz_target;

/// Go's folding of a key, ASCII names only (what the fields are).
fn folds_to(key: &str, field: &str) -> bool {
    let k: String = key
        .chars()
        .map(|c| match c {
            '\u{212a}' => 'K',
            '\u{17f}' => 'S',
            c if c.is_ascii() => c.to_ascii_uppercase(),
            c => c,
        })
        .collect();
    k == field.to_ascii_uppercase()
}

/// The naive model: memory's `limit` and `swap` as Go leaves them.
fn model(doc: &Raw) -> (Option<i64>, Option<i64>) {
    let (mut limit, mut swap) = (None, None);
    let Raw::Object(top) = doc else {
        return (None, None);
    };
    for (k, v) in top {
        if !folds_to(k, "memory") {
            continue;
        }
        match v {
            Raw::Null => (limit, swap) = (None, None),
            Raw::Object(inner) => {
                for (k, v) in inner {
                    let slot = if folds_to(k, "limit") {
                        &mut limit
                    } else if folds_to(k, "swap") {
                        &mut swap
                    } else {
                        continue;
                    };
                    *slot = match v {
                        Raw::Number(n) => n.as_i64(),
                        _ => None,
                    };
                }
            }
            _ => {}
        }
    }
    (limit, swap)
}

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (line, body) = text.split_once('\n').unwrap_or((text, ""));
    let args: Vec<String> = line.split('\0').map(String::from).collect();
    let r = argv::parse(&args);
    let Some(u) = &r.update else { return };
    if u.error.is_some() || u.help || r.id.is_none() {
        return;
    }
    let Ok(request) = update::request(u, Some(body.as_bytes())) else {
        return;
    };
    if u.get("resources").is_some() {
        // Only documents Go decodes whole get here: compare the memory.
        let raw: Raw = serde_json::Deserializer::from_str(body)
            .into_iter()
            .next()
            .expect("decoded once")
            .expect("decoded once");
        let (limit, mut swap) = model(&raw);
        if limit == Some(-1) && swap.is_none() {
            swap = Some(-1);
        }
        let want = cglimit::facts::Requested::from_oci(limit, swap);
        assert_eq!(request.requested, want, "{body}");
    }
    let limits = common::limits(head);
    let raw: Vec<OsString> = args.iter().map(OsString::from).collect();
    for (unified, swap) in [(false, true), (true, true), (false, false), (true, false)] {
        let host = Host { unified, swap };
        for decided in [Some(&limits), None] {
            let rw = update::rewrite(&r, u, &request, &raw, decided, host);
            let back: Vec<String> = rw
                .argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let r2 = argv::parse(&back);
            assert_eq!(r2.verb.as_deref(), Some("update"), "{back:?}");
            assert_eq!(r2.id, r.id, "{back:?}");
            let u2 = r2.update.expect("still an update");
            assert_eq!(u2.error, None, "{back:?}");
            assert_eq!(u2.get("resources"), Some("-"), "{back:?}");
            assert!(
                u2.flags
                    .iter()
                    .all(|(n, _)| ["resources", "l3-cache-schema", "mem-bw-schema"].contains(n)),
                "{back:?}"
            );
            let bytes = rw.stdin.expect("a document on stdin");
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON out");
            // Canonical: reading it again as the runtime does changes nothing.
            let again = cglimit::cmd::runtime::resources::decode(&bytes).expect("decodes");
            assert_eq!(again, v);
            let m = &v["memory"];
            match decided {
                Some(l) => {
                    assert_eq!(m["limit"].as_i64(), Some(l.memory.to_oci()));
                    let want = swap.then(|| l.memory_swap().to_oci());
                    assert_eq!(m["swap"].as_i64(), want);
                }
                None => {
                    assert!(m.get("limit").is_none() && m.get("swap").is_none());
                }
            }
            assert!(m.get("kernel").is_none() && m.get("kernelTCP").is_none());
        }
    }
});
