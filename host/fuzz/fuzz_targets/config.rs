#![no_main]
//! Any config text: loading reports an error or a config, never panics.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ember::config::Config::parse(text, std::path::Path::new("fuzz.yml"));
    }
});
