//! runc's argv as dockerd passes it to the wrapper: never a panic, and the
//! bundle and id found are arguments that were there.
#![no_main]

use cglimit::cmd::runtime::argv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<String> = text.split('\0').map(String::from).collect();
    let r = argv::parse(&args);
    let from_args = |v: &str| {
        args.iter()
            .any(|a| a == v || a.strip_suffix(v).is_some_and(|p| p.ends_with('=')))
    };
    for v in [&r.bundle, &r.id, &r.verb, &r.log, &r.log_format]
        .into_iter()
        .flatten()
    {
        assert!(from_args(v), "{v:?} is not among {args:?}");
    }
    if let Some(verb) = &r.verb {
        assert!(
            !verb.starts_with('-') || verb == "-" || verb == "--",
            "flag {verb:?} taken for the verb"
        );
    }
});
