//! Fuzz target: the digest `Authorization` header parser and verifier.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = control::sip::digest::Credentials::parse(s) {
            let _ = control::sip::digest::verify(&c, "REGISTER", "secret");
        }
    }
});
