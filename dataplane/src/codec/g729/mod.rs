//! G.729 Annex A (to be written).
