//! Aligned PER (ITU-T X.691, BASIC-PER ALIGNED variant) primitives.
//!
//! [`Reader`] and [`Writer`] implement exactly the encodings H.225.0 and H.245
//! use: constrained whole numbers, normally small numbers, length
//! determinants, octet/character strings, object identifiers, open types and
//! the extension-addition bitmap. The typed codecs in [`super::h225`] and
//! [`super::h245`] are written on top of them by hand, one function per ASN.1
//! type they model.
//!
//! Extension additions of a SEQUENCE are kept as [`Extensions`]: the raw
//! open-type contents per addition index, decoded on demand by typed
//! accessors. This is what makes decode→encode byte exact for fields Tandem
//! does not model, and keeps the decoder small: only root components must be
//! understood, everything after the `...` marker can be carried through.

/// A decode or encode failure, naming the field and the bit offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PerError {
    /// The peer's encoding ended early.
    #[error("per: input ended while reading {what} at bit {at}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bit offset in the encoding.
        at: usize,
    },
    /// The peer's encoding holds a value outside its constraint.
    #[error("per: invalid {what} at bit {at}: {why}")]
    Invalid {
        /// The field being read.
        what: &'static str,
        /// Bit offset in the encoding.
        at: usize,
        /// What was wrong.
        why: &'static str,
    },
    /// A valid encoding of an alternative or component this codec does not model.
    #[error("per: {what} at bit {at} is not supported: {why}")]
    Unsupported {
        /// The field being read.
        what: &'static str,
        /// Bit offset in the encoding.
        at: usize,
        /// Which alternative.
        why: &'static str,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, PerError>;

/// Bits needed for a constrained whole number of `range` values (range <= 255).
fn bits_for(range: u64) -> u32 {
    if range <= 1 {
        0
    } else {
        64 - (range - 1).leading_zeros()
    }
}

/// Reads an aligned-PER encoding. Never panics: every read is bounds checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at bit 0 of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Current bit offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bits left.
    pub fn remaining(&self) -> usize {
        (self.buf.len() * 8).saturating_sub(self.pos)
    }

    /// An `Invalid` error at the current position.
    pub fn invalid(&self, what: &'static str, why: &'static str) -> PerError {
        PerError::Invalid {
            what,
            at: self.pos,
            why,
        }
    }

    /// An `Unsupported` error at the current position.
    pub fn unsupported(&self, what: &'static str, why: &'static str) -> PerError {
        PerError::Unsupported {
            what,
            at: self.pos,
            why,
        }
    }

    /// One bit.
    pub fn bit(&mut self, what: &'static str) -> Result<bool> {
        let byte = self
            .buf
            .get(self.pos / 8)
            .ok_or(PerError::Truncated { what, at: self.pos })?;
        let b = byte >> (7 - self.pos % 8) & 1 == 1;
        self.pos += 1;
        Ok(b)
    }

    /// `n` bits (n <= 64), most significant first.
    pub fn bits(&mut self, n: u32, what: &'static str) -> Result<u64> {
        if self.remaining() < n as usize {
            return Err(PerError::Truncated { what, at: self.pos });
        }
        let mut v = 0u64;
        for _ in 0..n {
            v = v << 1 | u64::from(self.bit(what)?);
        }
        Ok(v)
    }

    /// Skips to the next octet boundary.
    pub fn align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }

    /// `n` whole octets after aligning.
    pub fn octets(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        self.align();
        let start = self.pos / 8;
        let s = self
            .buf
            .get(start..start.saturating_add(n))
            .ok_or(PerError::Truncated { what, at: self.pos })?;
        self.pos += n * 8;
        Ok(s)
    }

    /// A constrained whole number in `lb..=ub` (X.691 11.5.7, aligned).
    pub fn constrained(&mut self, lb: u64, ub: u64, what: &'static str) -> Result<u64> {
        let range = ub - lb + 1;
        let v = if range <= 255 {
            self.bits(bits_for(range), what)?
        } else if range == 256 {
            self.align();
            self.bits(8, what)?
        } else if range <= 65536 {
            self.align();
            self.bits(16, what)?
        } else {
            let max_octets = (64 - (range - 1).leading_zeros()).div_ceil(8);
            let n = self.bits(bits_for(u64::from(max_octets)), what)? + 1;
            let o = self.octets(n as usize, what)?;
            o.iter().fold(0u64, |a, &b| a << 8 | u64::from(b))
        };
        let v = v.checked_add(lb).ok_or(self.invalid(what, "overflow"))?;
        if v > ub {
            return Err(self.invalid(what, "value above its upper bound"));
        }
        Ok(v)
    }

    /// A normally small non-negative whole number (X.691 11.6).
    pub fn small(&mut self, what: &'static str) -> Result<u64> {
        if !self.bit(what)? {
            return self.bits(6, what);
        }
        let n = self.length(None, what)?;
        let o = self.octets(n, what)?;
        if o.len() > 8 {
            return Err(self.invalid(what, "number too large"));
        }
        Ok(o.iter().fold(0u64, |a, &b| a << 8 | u64::from(b)))
    }

    /// A length determinant. `bounds` is the SIZE constraint `(lb, ub)` when
    /// the upper bound is below 64K; None for an unconstrained length.
    pub fn length(&mut self, bounds: Option<(usize, usize)>, what: &'static str) -> Result<usize> {
        match bounds {
            Some((lb, ub)) if ub < 65536 => {
                if lb == ub {
                    return Ok(lb);
                }
                Ok(self.constrained(lb as u64, ub as u64, what)? as usize)
            }
            _ => {
                self.align();
                let first = self.bits(8, what)? as usize;
                if first & 0x80 == 0 {
                    Ok(first)
                } else if first & 0xC0 == 0x80 {
                    Ok((first & 0x3F) << 8 | self.bits(8, what)? as usize)
                } else {
                    Err(self.unsupported(what, "fragmented length (16K or more)"))
                }
            }
        }
    }

    /// An OCTET STRING with optional SIZE(lb..ub).
    pub fn octet_string(
        &mut self,
        bounds: Option<(usize, usize)>,
        what: &'static str,
    ) -> Result<Vec<u8>> {
        let n = self.length(bounds, what)?;
        if let Some((lb, ub)) = bounds {
            if n < lb || n > ub {
                return Err(self.invalid(what, "size outside its constraint"));
            }
            if lb == ub && n <= 2 {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.bits(8, what)? as u8);
                }
                return Ok(v);
            }
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        Ok(self.octets(n, what)?.to_vec())
    }

    /// A fixed-size OCTET STRING of `N` > 2 octets.
    pub fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let o = self.octets(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(o);
        Ok(a)
    }

    /// An OBJECT IDENTIFIER: its BER contents octets.
    pub fn oid(&mut self, what: &'static str) -> Result<Vec<u8>> {
        let n = self.length(None, what)?;
        Ok(self.octets(n, what)?.to_vec())
    }

    /// An open type: the contents octets of the complete inner encoding.
    pub fn open_type(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let n = self.length(None, what)?;
        self.octets(n, what)
    }

    /// A known-multiplier character string of `b` bits per character
    /// (after the aligned rounding), with `alphabet` used as an index table
    /// when its largest value does not fit in `b` bits.
    pub fn char_string(
        &mut self,
        bounds: (usize, usize),
        b: u32,
        alphabet: Option<&[u8]>,
        what: &'static str,
    ) -> Result<Vec<u32>> {
        let n = self.length(Some(bounds), what)?;
        if n < bounds.0 || n > bounds.1 {
            return Err(self.invalid(what, "size outside its constraint"));
        }
        if bounds.1 * b as usize > 16 && n > 0 {
            self.align();
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let v = self.bits(b, what)? as u32;
            let c = match alphabet {
                Some(a) if a.last().is_some_and(|&m| u64::from(m) >= 1 << b) => u32::from(
                    *a.get(v as usize)
                        .ok_or(self.invalid(what, "bad char index"))?,
                ),
                _ => v,
            };
            out.push(c);
        }
        Ok(out)
    }

    /// The extension bitmap and open types that follow the root of an
    /// extensible SEQUENCE whose extension bit was set.
    pub fn extensions(&mut self, what: &'static str) -> Result<Extensions> {
        let n = self.small(what)? as usize + 1;
        let mut present = Vec::with_capacity(n);
        for _ in 0..n {
            present.push(self.bit(what)?);
        }
        let mut v = Vec::with_capacity(n);
        for p in present {
            v.push(if p {
                Some(self.open_type(what)?.to_vec())
            } else {
                None
            });
        }
        Ok(Extensions(v))
    }

    /// Reads `n` presence bits of a SEQUENCE preamble.
    pub fn preamble<const N: usize>(&mut self, what: &'static str) -> Result<[bool; N]> {
        let mut p = [false; N];
        for b in p.iter_mut() {
            *b = self.bit(what)?;
        }
        Ok(p)
    }

    /// A CHOICE index: `Ok((false, i))` for root alternative `i` of `root`,
    /// `Ok((true, i))` for extension alternative `i` (the caller then reads an
    /// open type). `extensible` says whether the type has `...`.
    pub fn choice(
        &mut self,
        root: u64,
        extensible: bool,
        what: &'static str,
    ) -> Result<(bool, u64)> {
        if extensible && self.bit(what)? {
            return Ok((true, self.small(what)?));
        }
        Ok((false, self.constrained(0, root - 1, what)?))
    }
}

/// Writes an aligned-PER encoding.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    buf: Vec<u8>,
    pos: usize,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The complete encoding: padded to an octet, and at least one octet (an
    /// empty complete encoding is a single zero octet, X.691 10.1.3).
    pub fn finish(mut self) -> Vec<u8> {
        if self.buf.is_empty() {
            self.buf.push(0);
        }
        self.buf
    }

    /// One bit.
    pub fn bit(&mut self, b: bool) {
        if self.pos.is_multiple_of(8) {
            self.buf.push(0);
        }
        if b {
            if let Some(last) = self.buf.last_mut() {
                *last |= 0x80 >> (self.pos % 8);
            }
        }
        self.pos += 1;
    }

    /// The low `n` bits of `v`, most significant first.
    pub fn bits(&mut self, v: u64, n: u32) {
        for i in (0..n).rev() {
            self.bit(v >> i & 1 == 1);
        }
    }

    /// Pads to the next octet boundary with zero bits.
    pub fn align(&mut self) {
        while !self.pos.is_multiple_of(8) {
            self.bit(false);
        }
    }

    /// Octets after aligning.
    pub fn octets(&mut self, o: &[u8]) {
        self.align();
        self.buf.extend_from_slice(o);
        self.pos += o.len() * 8;
    }

    /// A constrained whole number in `lb..=ub`; `v` is clamped into range.
    pub fn constrained(&mut self, v: u64, lb: u64, ub: u64) {
        let v = v.clamp(lb, ub) - lb;
        let range = ub - lb + 1;
        if range <= 255 {
            self.bits(v, bits_for(range));
        } else if range == 256 {
            self.align();
            self.bits(v, 8);
        } else if range <= 65536 {
            self.align();
            self.bits(v, 16);
        } else {
            let max_octets = (64 - (range - 1).leading_zeros()).div_ceil(8);
            let n = (64 - v.leading_zeros()).div_ceil(8).max(1);
            self.bits(u64::from(n - 1), bits_for(u64::from(max_octets)));
            let be = v.to_be_bytes();
            self.octets(&be[8 - n as usize..]);
        }
    }

    /// A normally small non-negative whole number.
    pub fn small(&mut self, v: u64) {
        if v < 64 {
            self.bit(false);
            self.bits(v, 6);
        } else {
            self.bit(true);
            let n = (64 - v.leading_zeros()).div_ceil(8).max(1) as usize;
            self.length(n, None);
            self.octets(&v.to_be_bytes()[8 - n..]);
        }
    }

    /// A length determinant (see [`Reader::length`]). Lengths of 16K or more
    /// are not produced by this codec's callers.
    pub fn length(&mut self, n: usize, bounds: Option<(usize, usize)>) {
        match bounds {
            Some((lb, ub)) if ub < 65536 => {
                if lb != ub {
                    self.constrained(n as u64, lb as u64, ub as u64);
                }
            }
            _ => {
                self.align();
                if n < 128 {
                    self.bits(n as u64, 8);
                } else {
                    self.bits(0x8000 | (n as u64 & 0x3FFF), 16);
                }
            }
        }
    }

    /// An OCTET STRING with optional SIZE(lb..ub).
    pub fn octet_string(&mut self, o: &[u8], bounds: Option<(usize, usize)>) {
        self.length(o.len(), bounds);
        if let Some((lb, ub)) = bounds {
            if lb == ub && o.len() <= 2 {
                for &b in o {
                    self.bits(u64::from(b), 8);
                }
                return;
            }
        }
        if !o.is_empty() {
            self.octets(o);
        }
    }

    /// An OBJECT IDENTIFIER from its BER contents octets.
    pub fn oid(&mut self, ber: &[u8]) {
        self.length(ber.len(), None);
        self.octets(ber);
    }

    /// An open type holding `inner`, a complete encoding.
    pub fn open_type(&mut self, inner: &[u8]) {
        self.length(inner.len(), None);
        self.octets(inner);
    }

    /// A known-multiplier character string (see [`Reader::char_string`]).
    pub fn char_string(
        &mut self,
        s: &[u32],
        bounds: (usize, usize),
        b: u32,
        alphabet: Option<&[u8]>,
    ) {
        self.length(s.len(), Some(bounds));
        if bounds.1 * b as usize > 16 && !s.is_empty() {
            self.align();
        }
        for &c in s {
            let v = match alphabet {
                Some(a) if a.last().is_some_and(|&m| u64::from(m) >= 1 << b) => {
                    a.iter().position(|&x| u32::from(x) == c).unwrap_or(0) as u64
                }
                _ => u64::from(c),
            };
            self.bits(v, b);
        }
    }

    /// The extension bitmap and open types of `ext` (only when it has any
    /// present addition; the caller wrote the extension bit from
    /// [`Extensions::any`]).
    pub fn extensions(&mut self, ext: &Extensions) {
        if !ext.any() {
            return;
        }
        let n = ext.0.len();
        self.small(n as u64 - 1);
        for e in &ext.0 {
            self.bit(e.is_some());
        }
        for e in ext.0.iter().flatten() {
            self.open_type(e);
        }
    }

    /// A CHOICE index for a root alternative.
    pub fn choice_root(&mut self, i: u64, root: u64, extensible: bool) {
        if extensible {
            self.bit(false);
        }
        self.constrained(i, 0, root - 1);
    }

    /// A CHOICE extension alternative `i` holding the complete encoding `inner`.
    pub fn choice_ext(&mut self, i: u64, inner: &[u8]) {
        self.bit(true);
        self.small(i);
        self.open_type(inner);
    }
}

/// Encodes `f` as a complete encoding (for open types).
pub fn encode(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    f(&mut w);
    w.finish()
}

/// The extension additions of one SEQUENCE value: for each addition index the
/// open-type contents, or None when absent. The vector's length is the count
/// of additions the sender knew (the bitmap length on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extensions(pub Vec<Option<Vec<u8>>>);

impl Extensions {
    /// Room for `n` additions, none present.
    pub fn with_len(n: usize) -> Self {
        Self(vec![None; n])
    }

    /// True if any addition is present (the extension bit).
    pub fn any(&self) -> bool {
        self.0.iter().any(Option::is_some)
    }

    /// Raw contents of addition `i`.
    pub fn raw(&self, i: usize) -> Option<&[u8]> {
        self.0.get(i).and_then(|o| o.as_deref())
    }

    /// Decodes addition `i` with `f`, if present.
    pub fn get<T>(&self, i: usize, f: impl FnOnce(&mut Reader) -> Result<T>) -> Result<Option<T>> {
        match self.raw(i) {
            Some(b) => f(&mut Reader::new(b)).map(Some),
            None => Ok(None),
        }
    }

    /// Sets addition `i` to the encoding made by `f`, growing the bitmap to
    /// at least `min_len` entries.
    pub fn set(&mut self, i: usize, min_len: usize, f: impl FnOnce(&mut Writer)) {
        let n = min_len.max(i + 1);
        if self.0.len() < n {
            self.0.resize(n, None);
        }
        self.0[i] = Some(encode(f));
    }

    /// Removes addition `i`.
    pub fn clear(&mut self, i: usize) {
        if let Some(e) = self.0.get_mut(i) {
            *e = None;
        }
    }
}

/// BER contents octets of an OBJECT IDENTIFIER given as arcs.
pub fn oid_from_arcs(arcs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |mut v: u64| {
        let mut tmp = vec![(v & 0x7F) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7F) as u8);
            v >>= 7;
        }
        out.extend(tmp.iter().rev());
    };
    match arcs {
        [a, b, rest @ ..] => {
            push(a * 40 + b);
            for &r in rest {
                push(r);
            }
        }
        [a] => push(a * 40),
        [] => {}
    }
    out
}

/// The arcs of an OBJECT IDENTIFIER from its BER contents octets.
pub fn oid_arcs(ber: &[u8]) -> Vec<u64> {
    let mut arcs = Vec::new();
    let mut v = 0u64;
    for &b in ber {
        v = v << 7 | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constrained_numbers_follow_x691_aligned_rules() {
        let mut w = Writer::new();
        w.bit(true);
        w.constrained(5, 0, 7); // 3 bits, unaligned
        w.constrained(200, 0, 255); // aligned octet
        w.constrained(0x1234, 0, 65535); // aligned 2 octets
        w.constrained(70000, 0, 4_294_967_295); // 2-bit length + 3 octets
        let b = w.finish();
        assert_eq!(b, vec![0xD0, 200, 0x12, 0x34, 0x80, 0x01, 0x11, 0x70]);
        let mut r = Reader::new(&b);
        assert!(r.bit("x").unwrap());
        assert_eq!(r.constrained(0, 7, "a").unwrap(), 5);
        assert_eq!(r.constrained(0, 255, "b").unwrap(), 200);
        assert_eq!(r.constrained(0, 65535, "c").unwrap(), 0x1234);
        assert_eq!(r.constrained(0, 4_294_967_295, "d").unwrap(), 70000);
    }

    #[test]
    fn lengths_small_numbers_and_strings_round_trip() {
        let mut w = Writer::new();
        w.small(5);
        w.small(300);
        w.length(200, None);
        w.octet_string(b"abc", Some((1, 256)));
        w.char_string(&[0x31, 0x23], (1, 128), 4, Some(b"#*,0123456789"));
        let b = w.finish();
        let mut r = Reader::new(&b);
        assert_eq!(r.small("a").unwrap(), 5);
        assert_eq!(r.small("b").unwrap(), 300);
        assert_eq!(r.length(None, "c").unwrap(), 200);
        assert_eq!(r.octet_string(Some((1, 256)), "d").unwrap(), b"abc");
        assert_eq!(
            r.char_string((1, 128), 4, Some(b"#*,0123456789"), "e")
                .unwrap(),
            vec![0x31, 0x23]
        );
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[0x80]);
        assert!(matches!(
            r.constrained(0, 65535, "port"),
            Err(PerError::Truncated { what: "port", .. })
        ));
        let mut r = Reader::new(&[0x05, 1, 2]);
        assert!(r.open_type("ot").is_err());
    }

    #[test]
    fn oid_arcs_round_trip() {
        let ber = oid_from_arcs(&[0, 0, 8, 2250, 0, 4]);
        assert_eq!(ber, vec![0x00, 0x08, 0x91, 0x4A, 0x00, 0x04]);
        assert_eq!(oid_arcs(&ber), vec![0, 0, 8, 2250, 0, 4]);
    }
}
