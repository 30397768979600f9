//! Fuzz target: the SDP parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(sd) = control::sdp::SessionDescription::parse(s) {
            let _ = format!("{sd:?}");
        }
    }
});
