//! G.729 Annex A encoder (to be completed).

use super::{Params, L_FRAME};

/// State of one G.729A encoder channel.
#[derive(Clone, Default)]
pub struct Encoder {}

impl Encoder {
    /// An encoder in the Recommendation's initial state.
    pub fn new() -> Self {
        Encoder {}
    }

    /// Encode one 10 ms frame.
    pub fn encode_frame(&mut self, _pcm: &[i16; L_FRAME]) -> Params {
        Params::default()
    }
}
