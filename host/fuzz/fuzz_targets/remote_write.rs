#![no_main]
//! Any request body: decoding a remote-write request fails cleanly or succeeds.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ember::remote::write_receiver::decode(data);
});
