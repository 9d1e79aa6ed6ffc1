//! An `update` in any of its forms (flags, a resources file, resources on
//! stdin), rewritten with any decided limits: never a panic, and what
//! reaches the runtime is the decision, in the form that was asked, with
//! the same container id.
//!
//! Input: the runtime's argv (NUL-separated) up to the first newline, the
//! resources document after it; three bytes of decided limits first.
#![no_main]

mod common;

use std::ffi::OsString;

use cglimit::cmd::runtime::{argv, update};
use cglimit::enforce::spec::Host;
use libfuzzer_sys::fuzz_target;

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
    let Ok(Some(request)) = update::request(u, Some(body.as_bytes())) else {
        return;
    };
    let limits = common::limits(head);
    let raw: Vec<OsString> = args.iter().map(OsString::from).collect();
    for (unified, swap) in [(false, true), (true, true), (false, false), (true, false)] {
        let rw = update::rewrite(u, &request, &raw, &limits, Host { unified, swap });
        let back: Vec<String> = rw
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let r2 = argv::parse(&back);
        assert_eq!(r2.verb.as_deref(), Some("update"), "{back:?}");
        assert_eq!(r2.id, r.id, "{back:?}");
        let u2 = r2.update.expect("still an update");
        match rw.stdin {
            Some(bytes) => {
                assert_eq!(u2.resources.as_deref(), Some("-"), "{back:?}");
                let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON out");
                assert_eq!(v["memory"]["limit"].as_i64(), Some(limits.memory.to_oci()));
                let want = swap.then(|| limits.memory_swap().to_oci());
                assert_eq!(v["memory"]["swap"].as_i64(), want);
            }
            None => {
                assert_eq!(u2.resources, None, "{back:?}");
                let m = limits.memory.to_oci().to_string();
                assert_eq!(u2.memory.as_deref(), Some(m.as_str()), "{back:?}");
                let want = swap.then(|| limits.memory_swap().to_oci().to_string());
                assert_eq!(u2.memory_swap, want, "{back:?}");
            }
        }
    }
});
