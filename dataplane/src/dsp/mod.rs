//! Voice DSP (to be written).
