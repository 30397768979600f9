//! `tandem-codec` DSP subcommands (echo-cancel, dtmf-detect, dtmf-generate, tone).
//! (to be written)

/// Run a DSP subcommand; `None` if `args[0]` is not one of ours.
pub fn run(_args: &[String]) -> Option<i32> {
    None
}
