//! Small text helpers for the SIP hot paths: byte searches and number/address writers.
//!
//! SIP fields are short and their separators are ASCII. `str::split_once(char)` and
//! `str::find(char)` go through the `char` searcher and a generic `memchr`, whose set-up costs
//! more than the few bytes it scans here (callgrind: ~170 instructions a call, ~12 % of the
//! control thread at the call-setup rate bench); a plain byte loop costs a few instructions a
//! byte. Likewise `format!`/`write!` of integers and socket addresses run the `fmt` machinery
//! per piece; the writers below append the same text directly. Results are identical to the
//! `str`/`fmt` versions (see the tests at the bottom).

use std::net::SocketAddr;

/// Index of the first `b` (an ASCII byte) in `s`.
#[inline]
pub(crate) fn find_byte(s: &str, b: u8) -> Option<usize> {
    debug_assert!(b.is_ascii());
    // `memchr`'s vector set-up costs more than a byte loop over a short field.
    if s.len() < 32 {
        s.as_bytes().iter().position(|&c| c == b)
    } else {
        memchr::memchr(b, s.as_bytes())
    }
}

/// `s.split('\n')`, the search done by `memchr`.
pub(crate) fn split_lf(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r.as_bytes()) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// `s.split_once(b as char)` for an ASCII byte `b`.
#[inline]
pub(crate) fn split_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = find_byte(s, b)?;
    // `b` is ASCII, so `i` and `i + 1` are char boundaries.
    Some((&s[..i], &s[i + 1..]))
}

/// Whether `s` contains the ASCII byte `b`.
#[inline]
pub(crate) fn has_byte(s: &str, b: u8) -> bool {
    s.as_bytes().contains(&b)
}

/// The decimal form of `n` written into `buf` (as `n.to_string()` writes it).
pub(crate) fn digits(buf: &mut [u8; 20], mut n: u64) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` is below 10: the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// Appends the decimal form of `n` (as `n.to_string()` writes it).
pub(crate) fn push_u64(out: &mut String, n: u64) {
    out.push_str(digits(&mut [0u8; 20], n));
}

/// Appends `addr` as its `Display` writes it (`1.2.3.4:5060`, `[::1]:5060`).
pub(crate) fn push_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            for (i, o) in a.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(*o));
            }
            out.push(':');
            push_u64(out, u64::from(a.port()));
        }
        SocketAddr::V6(_) => {
            use std::fmt::Write;
            let _ = write!(out, "{addr}");
        }
    }
}

/// Appends the IP of `addr` as its `Display` writes it (`1.2.3.4`, `::1`).
pub(crate) fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(a) => {
            for (i, o) in a.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(*o));
            }
        }
        std::net::IpAddr::V6(_) => {
            use std::fmt::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

/// Writes the decimal form of `n` to a formatter (for `Display` impls), ignoring its flags
/// as `write!(f, "{n}")` does.
pub(crate) fn fmt_u64(f: &mut std::fmt::Formatter<'_>, n: u64) -> std::fmt::Result {
    f.write_str(digits(&mut [0u8; 20], n))
}

/// `str::trim`, `trim_start` and `trim_end` with an ASCII fast path: the same result (the
/// `char::is_whitespace` set), but a byte test per ASCII end byte instead of decoding `char`s;
/// a non-ASCII byte at an end falls back to `str`'s own.
pub(crate) trait Trim {
    fn trim_ws(&self) -> &str;
    fn trim_ws_start(&self) -> &str;
    fn trim_ws_end(&self) -> &str;
}

/// ASCII bytes `char::is_whitespace` accepts: TAB, LF, VT, FF, CR and SP.
#[inline]
fn ascii_ws(c: u8) -> bool {
    matches!(c, b'\t'..=b'\r' | b' ')
}

impl Trim for str {
    #[inline]
    fn trim_ws(&self) -> &str {
        self.trim_ws_start().trim_ws_end()
    }

    #[inline]
    fn trim_ws_start(&self) -> &str {
        let b = self.as_bytes();
        let mut i = 0;
        while i < b.len() && ascii_ws(b[i]) {
            i += 1;
        }
        if b.get(i).is_some_and(|&c| c >= 0x80) {
            return self[i..].trim_start();
        }
        &self[i..]
    }

    #[inline]
    fn trim_ws_end(&self) -> &str {
        let b = self.as_bytes();
        let mut j = b.len();
        while j > 0 && ascii_ws(b[j - 1]) {
            j -= 1;
        }
        if j > 0 && b[j - 1] >= 0x80 {
            return self[..j].trim_end();
        }
        &self[..j]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_search_agrees_with_str() {
        for s in [
            "",
            "a",
            ":",
            "a:b",
            "ab:",
            ":ab",
            "a:b:c",
            "héllo:wörld",
            "no colon",
        ] {
            assert_eq!(split_byte(s, b':'), s.split_once(':'), "{s:?}");
            assert_eq!(find_byte(s, b':'), s.find(':'), "{s:?}");
            assert_eq!(has_byte(s, b':'), s.contains(':'), "{s:?}");
        }
    }

    #[test]
    fn split_lf_agrees_with_str() {
        for s in ["", "\n", "a", "a\n", "\na", "a\r\nb\n\nc", "é\nü\n"] {
            assert_eq!(
                split_lf(s).collect::<Vec<_>>(),
                s.split('\n').collect::<Vec<_>>(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn trim_agrees_with_str() {
        for s in [
            "",
            " ",
            "a",
            " a ",
            "\t a b \r\n",
            "\u{b}x\u{c}",
            "\u{a0}x\u{a0}",
            " \u{2003}x ",
            "x\u{85}",
            "é ",
            " é",
            "\r\n",
        ] {
            assert_eq!(s.trim_ws(), s.trim(), "{s:?}");
            assert_eq!(s.trim_ws_start(), s.trim_start(), "{s:?}");
            assert_eq!(s.trim_ws_end(), s.trim_end(), "{s:?}");
        }
    }

    #[test]
    fn numbers_and_addresses_agree_with_display() {
        for n in [0u64, 7, 10, 99, 100, 65535, 4_294_967_295, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        for a in [
            "127.0.0.1:5060",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.4:9",
            "[::1]:5060",
            "[2001:db8::7]:5061",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let mut s = String::new();
            push_addr(&mut s, a);
            assert_eq!(s, a.to_string());
            let mut s = String::new();
            push_ip(&mut s, a.ip());
            assert_eq!(s, a.ip().to_string());
        }
    }
}
