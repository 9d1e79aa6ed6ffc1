//! Editing `config.json` as the runtime wrapper does: never a panic, the
//! output parses, carries the limits, and keeps every other field, its
//! value and its key order.
#![no_main]

mod common;

use cglimit::facts::oci;
use cglimit::enforce::spec;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Keys the wrapper writes, by the object that holds them.
fn written(path: &[&str], key: &str) -> bool {
    matches!(
        (path, key),
        (
            ["linux", "resources", "memory"],
            "limit" | "swap" | "reservation"
        ) | (["linux", "resources", "unified"], "memory.high")
    )
}

/// Objects the wrapper creates on the way (replacing a `null`).
fn on_the_way(path: &[&str], key: &str) -> bool {
    matches!(
        (path, key),
        ([], "linux") | (["linux"], "resources") | (["linux", "resources"], "memory" | "unified")
    )
}

fn kept(before: &Value, after: &Value, path: &mut Vec<String>) {
    let (Value::Object(b), Value::Object(a)) = (before, after) else {
        assert_eq!(before, after, "changed at {path:?}");
        return;
    };
    let here = path.clone();
    let p: Vec<&str> = here.iter().map(String::as_str).collect();
    let mut order = Vec::new();
    for (k, v) in b {
        if written(&p, k) {
            continue;
        }
        if v.is_null() && on_the_way(&p, k) {
            continue;
        }
        let w = a.get(k).unwrap_or_else(|| panic!("{k:?} lost at {path:?}"));
        order.push(k.as_str());
        path.push(k.clone());
        kept(v, w, path);
        path.pop();
    }
    let after_order: Vec<&str> = a
        .keys()
        .map(String::as_str)
        .filter(|k| order.contains(k))
        .collect();
    assert_eq!(order, after_order, "key order changed at {path:?}");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (head, json) = data.split_at(3);
    let Ok(before) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    // The wrapper only edits a config whose memory fields it could read.
    if <oci::Config as serde::Deserialize>::deserialize(&before).is_err() {
        return;
    }
    let limits = common::limits(head);
    let host = spec::Host {
        unified: head[2] & 0x80 != 0,
        swap: head[2] & 0x40 == 0,
    };
    let mut tree = before.clone();
    if spec::set_limits(&mut tree, &limits, host).is_err() {
        // Refused: a field on the way is not an object. Nothing changed.
        assert_eq!(tree, before);
        return;
    }
    let out = serde_json::to_vec(&tree).expect("serialises");
    let after: Value = serde_json::from_slice(&out).expect("output parses");
    let cfg = <oci::Config as serde::Deserialize>::deserialize(&after).expect("output is a config");
    let m = cfg.memory();
    assert_eq!(m.limit, Some(limits.memory.to_oci()));
    assert_eq!(
        m.swap,
        host.swap.then(|| limits.memory_swap().to_oci())
    );
    if before.is_object() {
        kept(&before, &after, &mut Vec::new());
    }
});
