//! RTP/RTCP wire formats (to be written).
