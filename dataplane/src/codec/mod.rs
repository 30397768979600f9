//! Voice codecs (to be written).
