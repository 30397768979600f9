//! Tandem's performance tools: `tandem-codec` (codecs and DSP on files),
//! criterion benches (`cargo bench -p perf`) and, later, `tandem-bench`.

pub mod dsp_cli;
pub mod wav;
