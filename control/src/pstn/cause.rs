//! Release cause interworking: Q.850 cause values <-> SIP status codes, as
//! RFC 3398 (ISUP-SIP mapping) sections 7.2.4.1 and 8.2.6.1 tabulate them.
//!
//! Both directions are tables; values the RFC does not list fall back by
//! class (Q.850 cause class, SIP status class). A Q.850 "normal clearing"
//! (16) has no SIP final response: it ends an established dialog with BYE,
//! so [`q850_to_sip`] returns `None` for it and the call layer sends BYE
//! (or, before answer, CANCEL).

/// Q.850 cause -> SIP final response status (RFC 3398 7.2.4.1). `None` for
/// 16 normal clearing (BYE/CANCEL, not a response).
pub fn q850_to_sip(cause: u8) -> Option<u16> {
    let status = match cause {
        16 => return None,
        1..=3 => 404,
        17 => 486,
        18 => 408,
        19 | 20 => 480,
        21 => 403,
        22 | 23 => 410,
        26 => 404,
        27 => 502,
        28 => 484,
        29 => 501,
        31 => 480,
        34 | 38 | 41 | 42 | 47 => 503,
        55 | 57 | 87 => 403,
        58 => 503,
        65 | 70 => 488,
        79 => 501,
        88 => 503,
        102 => 504,
        111 | 127 => 500,
        // Class defaults: normal events, resource unavailable, service not
        // available/implemented, invalid message, protocol error.
        c if c < 32 => 480,
        c if c < 64 => 503,
        c if c < 80 => 501,
        _ => 500,
    };
    Some(status)
}

/// SIP final response status -> Q.850 cause (RFC 3398 8.2.6.1).
pub fn sip_to_q850(status: u16) -> u8 {
    match status {
        400 => 41,
        401 | 402 | 403 | 407 => 21,
        404 | 485 | 604 => 1,
        405 => 63,
        406 | 415 | 501 => 79,
        408 | 504 => 102,
        410 => 22,
        413 | 414 | 416 | 420 | 488 | 505 => 127,
        480 => 18,
        481 | 500 | 503 => 41,
        482 | 483 => 25,
        484 => 28,
        486 | 600 => 17,
        487 => 16,
        502 => 38,
        603 => 21,
        606 => 58,
        // Class defaults.
        s if s / 100 == 5 => 41,
        s if s / 100 == 6 => 21,
        _ => 127,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (Q.850, SIP) pairs the issue names, both ways where RFC 3398 maps
    /// them symmetrically.
    #[test]
    fn the_common_causes() {
        assert_eq!(q850_to_sip(17), Some(486));
        assert_eq!(sip_to_q850(486), 17);
        assert_eq!(q850_to_sip(1), Some(404));
        assert_eq!(sip_to_q850(404), 1);
        assert_eq!(q850_to_sip(19), Some(480));
        assert_eq!(q850_to_sip(34), Some(503));
        assert_eq!(q850_to_sip(38), Some(503));
        assert_eq!(q850_to_sip(28), Some(484));
        assert_eq!(sip_to_q850(484), 28);
        assert_eq!(q850_to_sip(102), Some(504));
        assert_eq!(sip_to_q850(504), 102);
        assert_eq!(q850_to_sip(16), None);
        // RFC 3398 is not symmetric here: 480 -> 18, 503 -> 41.
        assert_eq!(sip_to_q850(480), 18);
        assert_eq!(sip_to_q850(503), 41);
    }

    #[test]
    fn every_value_maps_and_stays_in_range() {
        for c in 0..=127u8 {
            if let Some(s) = q850_to_sip(c) {
                assert!((400..700).contains(&s), "{c} -> {s}");
            }
        }
        for s in 400..700u16 {
            let c = sip_to_q850(s);
            assert!(c <= 127, "{s} -> {c}");
        }
        assert_eq!(q850_to_sip(4), Some(480), "class default, normal event");
        assert_eq!(q850_to_sip(44), Some(503), "class default, resource");
        assert_eq!(q850_to_sip(99), Some(500));
        assert_eq!(sip_to_q850(499), 127);
        assert_eq!(sip_to_q850(599), 41);
        assert_eq!(sip_to_q850(699), 21);
    }
}
