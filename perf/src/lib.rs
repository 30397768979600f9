//! Tandem's performance tools: `tandem-codec` (codecs and DSP on files),
//! criterion benches (`cargo bench -p perf`) and `tandem-bench`, the SIP + RTP
//! call load generator ([`bench`]).

pub mod bench;
pub mod dsp_cli;
pub mod wav;
pub mod xdpgen;
