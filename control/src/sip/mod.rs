//! SIP (to be written).
