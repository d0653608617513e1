#![no_main]
//! Any input: the text-format parser returns entries or an error, never panics,
//! and every sample it accepts yields labels or an error.

use ember::model::exposition::{Entry, Format, Parser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for entry in Parser::new(text, Format::Text) {
            if let Ok(Entry::Sample(s)) = entry {
                let _ = s.labels();
            }
        }
    }
});
