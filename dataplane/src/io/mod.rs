//! I/O backends (to be written).
