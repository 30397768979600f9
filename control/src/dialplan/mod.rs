//! Dialplan (to be written).
