//! Extension names and patterns, and the order in which they are tried.
//!
//! An extension name starting with `_` is a pattern: `X` is any digit, `Z` 1-9, `N` 2-9,
//! `[15-7a]` a set (ranges allowed), `.` one or more further characters of anything, `!` zero
//! or more; other characters match themselves and `-` is ignored (`_1-800-NXX-XXXX`). A name
//! without `_` must match exactly (dashes ignored too).
//!
//! Within a context, Asterisk tries exact names before patterns and patterns most specific
//! first: position by position, a position that matches fewer characters wins, a pattern that
//! ends wins over one that goes on, and `.` / `!` lose to everything. So `_12X` beats `_1XX`,
//! and `_1XXX` beats `_1.`, whatever their order in the file.

use std::cmp::Ordering;

/// A parsed extension name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// A plain name (`600`, `s`), dashes removed.
    Exact(String),
    /// A `_` pattern.
    Match(Vec<Elem>),
}

/// One position of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    /// One character out of a set (a literal is a set of one).
    Set(ByteSet),
    /// `.`: one or more characters; ends the pattern.
    OneOrMore,
    /// `!`: zero or more characters; ends the pattern.
    ZeroOrMore,
}

/// A set of bytes as a 256-bit mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    const EMPTY: ByteSet = ByteSet([0; 4]);

    fn range(lo: u8, hi: u8) -> ByteSet {
        let mut s = ByteSet::EMPTY;
        for b in lo..=hi {
            s.insert(b);
        }
        s
    }

    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    fn lowest(&self) -> u32 {
        (0..=255u8).find(|&b| self.contains(b)).map_or(0, u32::from)
    }
}

impl Pattern {
    /// Parses an extension name as written after `exten =>`.
    pub(crate) fn parse(name: &str) -> Result<Pattern, String> {
        if name.is_empty() {
            return Err("empty extension name".into());
        }
        if name.contains('/') {
            return Err(format!(
                "extension '{name}': caller-ID matching (exten/callerid) is not supported"
            ));
        }
        let Some(pat) = name.strip_prefix('_') else {
            return Ok(Pattern::Exact(strip_dashes(name)));
        };
        let bytes = pat.as_bytes();
        let mut elems = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            let elem = match b {
                b'X' | b'x' => Elem::Set(ByteSet::range(b'0', b'9')),
                b'Z' | b'z' => Elem::Set(ByteSet::range(b'1', b'9')),
                b'N' | b'n' => Elem::Set(ByteSet::range(b'2', b'9')),
                b'-' | b' ' => continue,
                b'.' => Elem::OneOrMore,
                b'!' => Elem::ZeroOrMore,
                b'[' => {
                    let close = bytes[i..].iter().position(|&c| c == b']').ok_or_else(|| {
                        format!("extension pattern '{name}': '[' without a closing ']'")
                    })?;
                    let set = parse_set(&bytes[i..i + close])
                        .map_err(|e| format!("extension pattern '{name}': {e}"))?;
                    i += close + 1;
                    Elem::Set(set)
                }
                other => {
                    let mut s = ByteSet::EMPTY;
                    s.insert(other);
                    Elem::Set(s)
                }
            };
            let wildcard = matches!(elem, Elem::OneOrMore | Elem::ZeroOrMore);
            elems.push(elem);
            // Asterisk stops matching at a wildcard; whatever follows it is never looked at.
            if wildcard {
                break;
            }
        }
        if elems.is_empty() {
            return Err(format!("extension pattern '{name}' is empty"));
        }
        Ok(Pattern::Match(elems))
    }

    /// Whether `exten` (the dialled string) matches completely.
    pub(crate) fn matches(&self, exten: &str) -> bool {
        match self {
            Pattern::Exact(name) => *name == strip_dashes(exten),
            Pattern::Match(elems) => {
                let data = exten.as_bytes();
                let mut pos = 0;
                for elem in elems {
                    match elem {
                        Elem::OneOrMore => return pos < data.len(),
                        Elem::ZeroOrMore => return true,
                        Elem::Set(set) => {
                            // Dashes in the dialled string are ignored, as in the pattern.
                            while data.get(pos) == Some(&b'-') {
                                pos += 1;
                            }
                            match data.get(pos) {
                                Some(&b) if set.contains(b) => pos += 1,
                                _ => return false,
                            }
                        }
                    }
                }
                data[pos..].iter().all(|&b| b == b'-')
            }
        }
    }

    /// Whether some string longer than `prefix` that starts with it could match (Asterisk's
    /// "match more"): digit collection waits for more digits while this holds.
    pub(crate) fn can_match_longer(&self, prefix: &str) -> bool {
        let prefix = strip_dashes(prefix);
        match self {
            Pattern::Exact(name) => name.len() > prefix.len() && name.starts_with(&prefix),
            Pattern::Match(elems) => {
                let data = prefix.as_bytes();
                let mut it = elems.iter();
                for &b in data {
                    match it.next() {
                        Some(Elem::Set(set)) if set.contains(b) => {}
                        Some(Elem::OneOrMore | Elem::ZeroOrMore) => return true,
                        _ => return false,
                    }
                }
                // Whatever element comes next can take at least one more character.
                it.next().is_some()
            }
        }
    }

    /// Asterisk's extension order: exact names first (by name), then patterns most specific
    /// first. `Less` means tried earlier.
    pub(crate) fn cmp_specificity(&self, other: &Pattern) -> Ordering {
        match (self, other) {
            (Pattern::Exact(a), Pattern::Exact(b)) => a.cmp(b),
            (Pattern::Exact(_), Pattern::Match(_)) => Ordering::Less,
            (Pattern::Match(_), Pattern::Exact(_)) => Ordering::Greater,
            (Pattern::Match(a), Pattern::Match(b)) => {
                let n = a.len().max(b.len());
                for i in 0..n {
                    let (wa, wb) = (weight(a.get(i)), weight(b.get(i)));
                    let ord = wa
                        .cmp(&wb)
                        .then_with(|| set_bits(a.get(i)).cmp(&set_bits(b.get(i))));
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                Ordering::Equal
            }
        }
    }
}

/// How much a position matches: the set size in the high bits, its lowest byte below; the
/// end of the pattern is 0 (most specific); `.` and `!` weigh more than any set.
fn weight(elem: Option<&Elem>) -> u32 {
    match elem {
        None => 0,
        Some(Elem::Set(s)) => (s.len() << 8) | s.lowest(),
        Some(Elem::OneOrMore) => 0x3_0000,
        Some(Elem::ZeroOrMore) => 0x4_0000,
    }
}

/// Tie-break between equally weighted positions, so the order never depends on file order.
fn set_bits(elem: Option<&Elem>) -> [u64; 4] {
    match elem {
        Some(Elem::Set(s)) => s.0,
        _ => [0; 4],
    }
}

/// Parses the inside of `[...]`: single characters and `a-b` ranges.
fn parse_set(inner: &[u8]) -> Result<ByteSet, String> {
    if inner.is_empty() {
        return Err("empty character set '[]'".into());
    }
    let mut set = ByteSet::EMPTY;
    let mut i = 0;
    while i < inner.len() {
        let lo = inner[i];
        if i + 2 < inner.len() && inner[i + 1] == b'-' {
            let hi = inner[i + 2];
            if hi < lo {
                return Err(format!(
                    "range '{}-{}' runs backwards",
                    lo as char, hi as char
                ));
            }
            for b in lo..=hi {
                set.insert(b);
            }
            i += 3;
        } else {
            set.insert(lo);
            i += 1;
        }
    }
    Ok(set)
}

fn strip_dashes(s: &str) -> String {
    s.chars().filter(|&c| c != '-').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn table_of_matches() {
        // (pattern, dialled, matches)
        let cases = [
            ("600", "600", true),
            ("600", "6000", false),
            ("s", "s", true),
            ("1-800", "1800", true),
            ("_1XXX", "1002", true),
            ("_1XXX", "100", false),
            ("_1XXX", "10022", false),
            ("_1XXX", "2002", false),
            ("_NXX", "200", true),
            ("_NXX", "100", false),
            ("_ZX", "10", true),
            ("_ZX", "01", false),
            ("_nxx", "299", true),
            ("_[1-3]X", "35", true),
            ("_[1-3]X", "45", false),
            ("_[13]X", "25", false),
            ("_[a-c]1", "b1", true),
            ("_[a-c]1", "d1", false),
            ("_9.", "9", false),
            ("_9.", "91", true),
            ("_9.", "9555123", true),
            ("_9!", "9", true),
            ("_9!", "95", true),
            ("_1-800-NXX-XXXX", "18002223333", true),
            ("_0X.", "0", false),
            ("_0X.", "01", false),
            ("_0X.", "012", true),
            ("_+X.", "+4930", true),
        ];
        for (pat, dialled, want) in cases {
            assert_eq!(p(pat).matches(dialled), want, "{pat} vs {dialled}");
        }
    }

    #[test]
    fn match_more() {
        assert!(p("_1XX").can_match_longer("1"));
        assert!(p("_1XX").can_match_longer("12"));
        assert!(!p("_1XX").can_match_longer("123"));
        assert!(!p("_1XX").can_match_longer("2"));
        assert!(p("_9.").can_match_longer("9"));
        assert!(p("_9.").can_match_longer("9555"));
        assert!(p("_9!").can_match_longer("9"));
        assert!(p("100").can_match_longer("1"));
        assert!(!p("100").can_match_longer("100"));
        assert!(!p("100").can_match_longer("2"));
    }

    #[test]
    fn bad_patterns() {
        for (pat, needle) in [
            ("_1[23", "closing ']'"),
            ("_1[]", "empty character set"),
            ("_[9-1]", "backwards"),
            ("_", "empty"),
            ("100/555", "caller-ID"),
        ] {
            let err = Pattern::parse(pat).unwrap_err();
            assert!(err.contains(needle), "{pat}: {err}");
        }
    }

    #[test]
    fn order_most_specific_first() {
        let mut pats = vec![
            "_X.",
            "_1XXX",
            "_1.",
            "_12XX",
            "_1!",
            "1000",
            "_NXXX",
            "_1[0-5]XX",
        ];
        pats.sort_by(|a, b| p(a).cmp_specificity(&p(b)));
        assert_eq!(
            pats,
            [
                "1000",
                "_12XX",
                "_1[0-5]XX",
                "_1XXX",
                "_1.",
                "_1!",
                "_NXXX",
                "_X."
            ]
        );
    }

    #[test]
    fn shorter_pattern_beats_longer_with_same_prefix() {
        assert_eq!(p("_1XX").cmp_specificity(&p("_1XXX")), Ordering::Less);
        assert_eq!(p("_1XX").cmp_specificity(&p("_1XX.")), Ordering::Less);
    }
}
