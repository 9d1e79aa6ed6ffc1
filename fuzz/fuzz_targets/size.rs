//! Sizes as policies and Docker write them: never a panic, and a parsed
//! size reads back as the same number of bytes.
#![no_main]

use cglimit::size::{self, Limit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(b) = size::parse_bytes(text) {
        assert!(b <= i64::MAX as u64, "{text:?} parsed to {b}, above 2^63");
        assert_eq!(size::parse_bytes(&b.to_string()).ok(), Some(b));
        let _ = size::human(b);
    }
    match size::parse_limit(text) {
        Ok(Limit::Bytes(b)) => {
            assert_eq!(Limit::from_oci(Limit::Bytes(b).to_oci()), Limit::Bytes(b))
        }
        Ok(Limit::Unlimited) => assert_eq!(Limit::Unlimited.to_oci(), -1),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
