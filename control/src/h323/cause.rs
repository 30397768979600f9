//! Q.850 cause <-> SIP status mapping for H.323 legs (RFC 3398 section 8.2.6),
//! and the H.225.0 `ReleaseCompleteReason` -> Q.850 table (H.225.0 Table 5)
//! for peers that send a reason without a Cause IE.
//!
//! Q.850 -> SIP reuses the B2BUA's table ([`crate::call::q850_to_sip`]) so an
//! ISDN leg and an H.323 leg release a SIP leg with the same status.

/// SIP final status for a Q.850 cause received from an H.323 peer.
pub fn q850_to_sip(cause: u8) -> u16 {
    match cause {
        70 => 488, // only restricted digital information bearer available
        c => crate::call::q850_to_sip(u16::from(c)),
    }
}

/// Q.850 cause to send in Release Complete for a SIP final status
/// (RFC 3398 section 8.2.6.1).
pub fn sip_to_q850(status: u16) -> u8 {
    match status {
        400 => 41,
        401 | 402 | 403 | 407 => 21,
        404 | 485 | 604 => 1,
        405 => 63,
        406 | 415 | 501 => 79,
        408 | 504 => 102,
        410 => 22,
        480 => 18,
        484 => 28,
        486 | 600 => 17,
        487 => 16,
        488 | 606 => 65,
        500 | 503 => 41,
        502 => 38,
        603 => 21,
        _ => 127,
    }
}

/// Q.850 cause for a `ReleaseCompleteReason` root alternative index
/// (H.225.0 Table 5), for a Release Complete without a Cause IE.
pub fn reason_to_q850(reason: u8) -> u8 {
    match reason {
        0 => 34,  // noBandwidth
        1 => 47,  // gatekeeperResources
        2 => 3,   // unreachableDestination
        3 => 16,  // destinationRejection
        4 => 88,  // invalidRevision
        5 => 111, // noPermission
        6 => 38,  // unreachableGatekeeper
        7 => 42,  // gatewayResources
        8 => 28,  // badFormatAddress
        9 => 41,  // adaptiveBusy
        10 => 17, // inConf
        _ => 31,  // undefinedReason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_rejected_map_both_ways() {
        assert_eq!(q850_to_sip(17), 486);
        assert_eq!(sip_to_q850(486), 17);
        assert_eq!(q850_to_sip(1), 404);
        assert_eq!(sip_to_q850(404), 1);
        assert_eq!(q850_to_sip(21), 403);
        assert_eq!(sip_to_q850(603), 21);
        assert_eq!(q850_to_sip(19), 480);
        assert_eq!(q850_to_sip(88), 503);
        assert_eq!(q850_to_sip(70), 488);
        assert_eq!(sip_to_q850(408), 102);
        assert_eq!(reason_to_q850(10), 17);
    }
}
