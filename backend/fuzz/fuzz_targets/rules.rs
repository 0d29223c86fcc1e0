//! The routing rules parser on arbitrary bytes (see `checks.rs`).
#![no_main]

#[allow(dead_code)] // each target uses one half of the shared checks
#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = checks::check_rules(data);
});
