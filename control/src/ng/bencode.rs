//! Bencode (the BitTorrent encoding the rtpengine "ng" protocol carries):
//! integers `i42e`, byte strings `4:spam`, lists `l...e`, dictionaries
//! `d...e` with byte-string keys in sorted order.
//!
//! [`decode`] takes untrusted bytes: it never panics, bounds nesting depth
//! and string lengths by the input, and every error names the byte offset
//! and what was expected there. [`Value::encode`] writes canonical bencode
//! (dictionary keys sorted, as `BTreeMap` keeps them).

use std::collections::BTreeMap;

/// Deepest nesting [`decode`] accepts (ng messages nest 3-4 levels).
pub const MAX_DEPTH: usize = 32;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why a message is not valid bencode: where and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bencode: {what} at byte {at}")]
pub struct DecodeError {
    /// Byte offset in the bencoded text.
    pub at: usize,
    /// What was wrong there.
    pub what: &'static str,
}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A string value as UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    /// An integer value (or a string of digits, as some clients send).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    /// The entries of a dictionary.
    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.get(key.as_bytes())
    }

    /// Append the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => bytes_into(b, out),
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    bytes_into(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

fn bytes_into(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// A dictionary from `(key, value)` pairs.
pub fn dict<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

/// Decode exactly one value filling all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    let mut d = Decoder { b: input, at: 0 };
    let v = d.value(0)?;
    if d.at != input.len() {
        return Err(d.err("trailing bytes after the value"));
    }
    Ok(v)
}

struct Decoder<'a> {
    b: &'a [u8],
    at: usize,
}

impl Decoder<'_> {
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError { at: self.at, what }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting deeper than 32"));
        }
        match self.peek() {
            None => Err(self.err("unexpected end (expected a value)")),
            Some(b'i') => {
                self.at += 1;
                self.int(b'e').map(Value::Int)
            }
            Some(b'l') => {
                self.at += 1;
                let mut l = Vec::new();
                loop {
                    match self.peek() {
                        Some(b'e') => {
                            self.at += 1;
                            return Ok(Value::List(l));
                        }
                        None => return Err(self.err("unexpected end of list")),
                        Some(_) => l.push(self.value(depth + 1)?),
                    }
                }
            }
            Some(b'd') => {
                self.at += 1;
                let mut d = BTreeMap::new();
                loop {
                    match self.peek() {
                        Some(b'e') => {
                            self.at += 1;
                            return Ok(Value::Dict(d));
                        }
                        None => return Err(self.err("unexpected end of dictionary")),
                        Some(c) if c.is_ascii_digit() => {
                            let k = self.bytes()?;
                            let v = self.value(depth + 1)?;
                            d.insert(k, v);
                        }
                        Some(_) => return Err(self.err("dictionary key is not a string")),
                    }
                }
            }
            Some(c) if c.is_ascii_digit() => self.bytes().map(Value::Bytes),
            Some(_) => Err(self.err("unknown value type (expected i, l, d or a length)")),
        }
    }

    /// Digits (optionally negative) up to `end`, which is consumed.
    fn int(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.at;
        let rest = &self.b[start..];
        let Some(len) = rest.iter().position(|&c| c == end) else {
            return Err(self.err(if end == b'e' {
                "unterminated integer"
            } else {
                "unterminated string length"
            }));
        };
        let text = &rest[..len];
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(self.err("not a number"));
        }
        if (digits.len() > 1 && digits[0] == b'0') || text == b"-0" {
            return Err(self.err("number with a leading zero"));
        }
        let n = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| self.err("number out of range"))?;
        self.at = start + len + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.int(b':')?;
        let n = usize::try_from(n).map_err(|_| self.err("negative string length"))?;
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| self.err("string longer than the message"))?;
        let v = self.b[self.at..end].to_vec();
        self.at = end;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_ng_message() {
        let text =
            b"d7:call-id3:abc7:command5:offer8:from-tag2:ft7:replaceli1e6:origine3:sdp4:v=0\ne";
        let v = decode(text).unwrap();
        assert_eq!(v.get("command").and_then(Value::as_str), Some("offer"));
        assert_eq!(v.get("sdp").and_then(Value::as_bytes), Some(&b"v=0\n"[..]));
        assert_eq!(v.encode(), text.to_vec());
        let d = dict([("result", Value::str("pong"))]);
        assert_eq!(d.encode(), b"d6:result4:ponge".to_vec());
        assert_eq!(decode(b"i-42e").unwrap(), Value::Int(-42));
        assert_eq!(Value::str("17").as_int(), Some(17));
    }

    #[test]
    fn errors_name_offset_and_what() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"", 0, "unexpected end"),
            (b"d3:abc", 6, "unexpected end"),
            (b"di1ei2ee", 1, "key is not a string"),
            (b"i12", 1, "unterminated integer"),
            (b"i1x2e", 1, "not a number"),
            (b"i03e", 1, "leading zero"),
            (b"i-0e", 1, "leading zero"),
            (b"i99999999999999999999e", 1, "out of range"),
            (b"5:ab", 2, "longer than the message"),
            (b"x", 0, "unknown value type"),
            (b"i1ei2e", 3, "trailing bytes"),
            (b"l", 1, "end of list"),
        ];
        for (input, at, what) in cases {
            let e = decode(input).unwrap_err();
            assert_eq!(e.at, *at, "{:?}: {e}", String::from_utf8_lossy(input));
            assert!(e.to_string().contains(what), "{e}");
        }
        let deep = [vec![b'l'; 100], vec![b'e'; 100]].concat();
        assert!(decode(&deep).unwrap_err().what.contains("nesting"));
    }

    #[test]
    fn never_panics_on_mutations() {
        // Every truncation and every single-byte change of a real message.
        let msg = b"d7:call-id3:abc7:command5:offer5:flagsl5:trusteei-1e3:sdp3:v=0e".to_vec();
        for n in 0..msg.len() {
            let _ = decode(&msg[..n]);
        }
        for i in 0..msg.len() {
            for b in [0u8, b'0', b'9', b':', b'e', b'i', b'l', b'd', b'-', 0xff] {
                let mut m = msg.clone();
                m[i] = b;
                if let Ok(v) = decode(&m) {
                    assert_eq!(decode(&v.encode()).unwrap(), v);
                }
            }
        }
        // A pseudo-random byte soup.
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let len = (x % 40) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    b"ild0123456789e:-x"[(x % 17) as usize]
                })
                .collect();
            let _ = decode(&buf);
        }
    }
}
