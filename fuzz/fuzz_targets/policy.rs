//! Policy files as an operator (or a typo) writes them: never a panic, and
//! every error names a line and column of the file.
#![no_main]

use std::path::Path;

use cglimit::policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match policy::parse_file(Path::new("fuzz.yaml"), text) {
        Ok(policies) => {
            let _ = policy::check_names(&policies);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                let shown = e.to_string();
                assert!(shown.starts_with("fuzz.yaml"), "{shown}");
            }
        }
    }
});
