//! Fuzz target: the SIP message parser. Any byte string must either parse or return a
//! `ParseError`; a parsed message must serialise and parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match control::sip::Message::parse(data) {
        Ok(m) => {
            let again = control::sip::Message::parse(&m.to_bytes());
            assert!(again.is_ok(), "round trip failed: {:?}", again.err());
            // the typed header views must not panic either
            let h = m.headers();
            let _ = h.get("Via").map(control::sip::Via::parse);
            let _ = h.get("From").map(control::sip::NameAddr::parse);
            let _ = h.get("Contact").map(control::sip::NameAddr::parse);
            let _ = h.get("CSeq").map(control::sip::CSeq::parse);
            if let control::sip::Message::Request(r) = &m {
                let _ = control::sip::Uri::parse(&r.uri);
            }
        }
        Err(e) => {
            let _ = e.status_code();
            let _ = e.can_respond();
        }
    }
});
