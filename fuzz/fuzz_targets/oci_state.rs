//! The state JSON a runtime writes to a hook's stdin: never a panic, and an
//! accepted state has an id and a bundle.
#![no_main]

use cglimit::facts::oci;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = oci::read_state(data) {
        assert!(!state.id().is_empty());
        assert!(!state.bundle().as_os_str().is_empty());
        let facts = oci::facts(&state, &oci::Config::default(), true);
        assert_eq!(&facts.id, state.id());
    }
});
