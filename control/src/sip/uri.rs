//! Typed views of the structured SIP header values: [`Uri`], [`NameAddr`] (From, To, Contact,
//! Route...), [`Via`] and [`CSeq`].
//!
//! These are the `Repr` side of the message codec: [`super::message`] keeps header values as text
//! (cheap, round-trips byte for byte) and callers parse the few values they need with the
//! `parse` constructors here. Every parser is total: bad input gives a [`ValueError`] naming what
//! was wrong, never a panic.

use std::fmt;

use super::message::Method;
use super::text::{find_byte, fmt_u64, has_byte, push_u64, split_byte, Trim};

/// A header value or URI that does not follow the RFC 3261 grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason} in {input:?}")]
pub struct ValueError {
    /// Which kind of value was being parsed ("URI", "Via", ...).
    pub what: &'static str,
    /// What was wrong.
    pub reason: &'static str,
    /// The offending text (truncated to 80 bytes).
    pub input: String,
}

fn err(what: &'static str, reason: &'static str, input: &str) -> ValueError {
    let mut end = input.len().min(80);
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    ValueError {
        what,
        reason,
        input: input[..end].to_string(),
    }
}

/// A `;name[=value]` parameter list, in order.
pub type Params = Vec<(String, Option<String>)>;

/// RFC 3261 `token` characters (§25.1), by definition.
const fn token_char_def(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Bytes a URI may not contain (whitespace and controls, `<`, `>`, `"`, DEL and non-ASCII),
/// by definition.
const fn uri_bad_def(c: u8) -> bool {
    c <= b' ' || c == b'<' || c == b'>' || c == b'"' || c >= 0x7f
}

/// A byte class as a 256-entry table (one load per byte on the scanning paths).
macro_rules! byte_table {
    ($def:ident) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = $def(i as u8);
            i += 1;
        }
        t
    }};
}

static TOKEN_CHAR: [bool; 256] = byte_table!(token_char_def);
static URI_BAD: [bool; 256] = byte_table!(uri_bad_def);

/// RFC 3261 `token` characters (§25.1).
pub(crate) fn is_token_char(c: u8) -> bool {
    TOKEN_CHAR[usize::from(c)]
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Finds `param` (case-insensitive name) in a parameter list.
fn find_param<'a>(params: &'a Params, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

fn set_param_in(params: &mut Params, name: &str, value: Option<String>) {
    if let Some(slot) = params
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        slot.1 = value;
    } else {
        params.push((name.to_string(), value));
    }
}

/// Parses `;a=b;c;d="x;y"` (the text after the first `;`), quotes kept in the value.
fn parse_params(what: &'static str, s: &str) -> Result<Params, ValueError> {
    let mut out = Vec::new();
    scan_params(what, s, &mut |n, v| {
        out.push((n.to_string(), v.map(str::to_string)))
    })?;
    Ok(out)
}

/// Checks a parameter list as [`parse_params`] does, same errors, without building it.
fn check_params(what: &'static str, s: &str) -> Result<(), ValueError> {
    scan_params(what, s, &mut |_, _| {})
}

/// The one parameter-list grammar: `each` sees every `name[=value]` (trimmed, quotes kept) in
/// order; the first bad item stops the scan with its error.
fn scan_params<'a>(
    what: &'static str,
    s: &'a str,
    each: &mut dyn FnMut(&'a str, Option<&'a str>),
) -> Result<(), ValueError> {
    for item in split_outside_quotes(s, b';') {
        let item = item.trim_ws();
        if item.is_empty() {
            return Err(err(what, "empty parameter", s));
        }
        match split_byte(item, b'=') {
            Some((n, v)) => {
                let (n, v) = (n.trim_ws(), v.trim_ws());
                if !is_token(n) {
                    return Err(err(what, "bad parameter name", s));
                }
                if v.is_empty() {
                    return Err(err(what, "empty parameter value", s));
                }
                if v.starts_with('"') && (v.len() < 2 || !v.ends_with('"')) {
                    return Err(err(what, "unterminated quoted parameter", s));
                }
                each(n, Some(v));
            }
            None => {
                if !is_token(item) {
                    return Err(err(what, "bad parameter name", s));
                }
                each(item, None);
            }
        }
    }
    Ok(())
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &Params) -> fmt::Result {
    for (n, v) in params {
        f.write_str(";")?;
        f.write_str(n)?;
        if let Some(v) = v {
            f.write_str("=")?;
            f.write_str(v)?;
        }
    }
    Ok(())
}

/// Splits `s` at `sep` bytes that are outside double quotes (with `\` escapes) and `<...>`.
pub(crate) fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut done = false;
    // Without a quote or a '<' nothing can hide a separator: split at each `sep` found by
    // `memchr` instead of walking every byte through the quote/angle state.
    let plain = memchr::memchr2(b'"', b'<', bytes).is_none();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        if plain {
            return Some(match memchr::memchr(sep, &bytes[start..]) {
                Some(off) => {
                    let piece = &s[start..start + off];
                    start += off + 1;
                    piece
                }
                None => {
                    done = true;
                    &s[start..]
                }
            });
        }
        let mut in_quote = false;
        let mut angle = 0u32;
        while i < bytes.len() {
            let c = bytes[i];
            if in_quote {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    in_quote = false;
                }
            } else if c == b'"' {
                in_quote = true;
            } else if c == b'<' {
                angle += 1;
            } else if c == b'>' {
                angle = angle.saturating_sub(1);
            } else if c == sep && angle == 0 {
                let piece = &s[start..i];
                i += 1;
                start = i;
                return Some(piece);
            }
            i += 1;
        }
        done = true;
        // `i` may have run one past the end after a trailing backslash.
        Some(&s[start.min(s.len())..])
    })
}

/// Host part: a name, an IPv4 address or an IPv6 reference (stored without brackets).
fn parse_hostport(what: &'static str, s: &str) -> Result<(String, Option<u16>), ValueError> {
    scan_hostport(what, s).map(|(h, p)| (h.to_string(), p))
}

/// [`parse_hostport`] with the host borrowed from `s`.
fn scan_hostport<'a>(what: &'static str, s: &'a str) -> Result<(&'a str, Option<u16>), ValueError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let close =
            find_byte(rest, b']').ok_or_else(|| err(what, "unterminated IPv6 reference", s))?;
        let host = &rest[..close];
        if host.is_empty()
            || !host
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err(err(what, "bad IPv6 reference", s));
        }
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(err(what, "junk after IPv6 reference", s)),
        };
        (host, port)
    } else {
        match split_byte(s, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(err(what, "empty host", s));
    }
    if !s.starts_with('[')
        && !host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
    {
        return Err(err(what, "bad character in host", s));
    }
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err(what, "bad port", s));
            }
            Some(
                p.parse::<u16>()
                    .map_err(|_| err(what, "port out of range", s))?,
            )
        }
    };
    Ok((host, port))
}

fn write_host(f: &mut fmt::Formatter<'_>, host: &str, port: Option<u16>) -> fmt::Result {
    if has_byte(host, b':') {
        f.write_str("[")?;
        f.write_str(host)?;
        f.write_str("]")?;
    } else {
        f.write_str(host)?;
    }
    if let Some(p) = port {
        f.write_str(":")?;
        fmt_u64(f, u64::from(p))?;
    }
    Ok(())
}

/// A URI. `sip:` and `sips:` URIs are parsed into their parts (RFC 3261 §19.1); any other scheme
/// (`tel:`, `http:`, ...) keeps everything after the colon in `host`, opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Scheme in lower case.
    pub scheme: String,
    /// `userinfo` without the `@` (user, and `:password` if one was given), still escaped.
    pub user: Option<String>,
    /// Host name or address; IPv6 without brackets. Opaque rest for non-SIP schemes.
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters (`;transport=udp;lr`).
    pub params: Params,
    /// The escaped `?headers` part, without the `?`.
    pub headers: Option<String>,
}

/// A checked URI's parts, borrowed from the text (see [`Uri::scan`]).
struct UriView<'a> {
    /// As written (not lower-cased).
    scheme: &'a str,
    user: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
    headers: Option<&'a str>,
}

impl Uri {
    /// Parses a URI; no surrounding whitespace or angle brackets allowed.
    pub fn parse(s: &str) -> Result<Uri, ValueError> {
        let mut params = Vec::new();
        let v = Uri::scan(s, &mut |n, v| {
            params.push((n.to_string(), v.map(str::to_string)))
        })?;
        Ok(Uri {
            scheme: v.scheme.to_ascii_lowercase(),
            user: v.user.map(str::to_string),
            host: v.host.to_string(),
            port: v.port,
            params,
            headers: v.headers.map(str::to_string),
        })
    }

    /// Checks `s` exactly as [`Uri::parse`] does (same errors) without building the value.
    pub fn check(s: &str) -> Result<(), ValueError> {
        Uri::scan(s, &mut |_, _| {}).map(|_| ())
    }

    /// The URI grammar once, for [`Uri::parse`] and [`Uri::check`]: the parts borrowed from
    /// `s`, each URI parameter handed to `param` in order.
    fn scan<'a>(
        s: &'a str,
        param: &mut dyn FnMut(&'a str, Option<&'a str>),
    ) -> Result<UriView<'a>, ValueError> {
        const W: &str = "URI";
        if s.bytes().any(|c| URI_BAD[usize::from(c)]) {
            return Err(err(
                W,
                "whitespace, quote, bracket or non-ASCII character",
                s,
            ));
        }
        let (scheme, rest) = split_byte(s, b':').ok_or_else(|| err(W, "missing scheme", s))?;
        let sb = scheme.as_bytes();
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(err(W, "bad scheme", s));
        }
        if rest.is_empty() {
            return Err(err(W, "empty after scheme", s));
        }
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return Ok(UriView {
                scheme,
                user: None,
                host: rest,
                port: None,
                headers: None,
            });
        }
        let (main, headers) = match split_byte(rest, b'?') {
            Some((m, h)) => (m, Some(h)),
            None => (rest, None),
        };
        let (user, hostpart) = match split_byte(main, b'@') {
            Some((u, h)) => {
                if u.is_empty() {
                    return Err(err(W, "empty user", s));
                }
                (Some(u), h)
            }
            None => (None, main),
        };
        let hostport = match split_byte(hostpart, b';') {
            Some((h, p)) => {
                scan_params(W, p, param)?;
                h
            }
            None => hostpart,
        };
        let (host, port) = scan_hostport(W, hostport)?;
        Ok(UriView {
            scheme,
            user,
            host,
            port,
            headers,
        })
    }

    /// `Some(None)` for a flag parameter (`;lr`), `Some(Some(v))` for `;name=v`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        set_param_in(&mut self.params, name, value)
    }

    /// True for `sip:` and `sips:`.
    pub fn is_sip(&self) -> bool {
        self.scheme == "sip" || self.scheme == "sips"
    }

    /// The user part without a `:password`.
    pub fn user_name(&self) -> Option<&str> {
        self.user
            .as_deref()
            .map(|u| u.split_once(':').map_or(u, |(n, _)| n))
    }
}

impl std::str::FromStr for Uri {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uri::parse(s)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        f.write_str(":")?;
        if !self.is_sip() {
            return f.write_str(&self.host);
        }
        if let Some(u) = &self.user {
            f.write_str(u)?;
            f.write_str("@")?;
        }
        write_host(f, &self.host, self.port)?;
        write_params(f, &self.params)?;
        if let Some(h) = &self.headers {
            f.write_str("?")?;
            f.write_str(h)?;
        }
        Ok(())
    }
}

/// `["display"] <uri>;params` or a bare `uri;params` (From, To, Contact, Route, Refer-To...).
/// In the bare form the parameters after the URI belong to the header, not the URI (§20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted and unescaped.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`...).
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    pub fn parse(s: &str) -> Result<NameAddr, ValueError> {
        let mut quoted = String::new();
        let (display, uri_str, rest) = NameAddr::split(s, Some(&mut quoted))?;
        let uri = Uri::parse(uri_str)?;
        let params = match rest {
            Some(p) => parse_params("name-addr", p)?,
            None => Vec::new(),
        };
        Ok(NameAddr {
            display: display.map(|d| match d {
                DisplayName::Quoted => quoted,
                DisplayName::Token(t) => t.to_string(),
            }),
            uri,
            params,
        })
    }

    /// Checks `s` exactly as [`NameAddr::parse`] does (same errors) without building the
    /// value: no display name, URI part or parameter is copied.
    pub fn check(s: &str) -> Result<(), ValueError> {
        let (_, uri_str, rest) = NameAddr::split(s, None)?;
        Uri::check(uri_str)?;
        match rest {
            Some(p) => check_params("name-addr", p),
            None => Ok(()),
        }
    }

    /// The name-addr grammar up to the URI: the display name (a quoted one unescaped into
    /// `quoted` when given), the URI text, and the header parameter text after its `;`.
    fn split<'a>(
        s: &'a str,
        mut quoted: Option<&mut String>,
    ) -> Result<(Option<DisplayName<'a>>, &'a str, Option<&'a str>), ValueError> {
        const W: &str = "name-addr";
        let t = s.trim_ws();
        let (display, uri_str, rest) = if let Some(q) = t.strip_prefix('"') {
            // quoted-string display name
            let mut push = |c: char| {
                if let Some(d) = quoted.as_deref_mut() {
                    d.push(c);
                }
            };
            let mut it = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = it.next() {
                match c {
                    '\\' => match it.next() {
                        Some((_, e)) => push(e),
                        None => break,
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => push(c),
                }
            }
            let end = end.ok_or_else(|| err(W, "unterminated display name", s))?;
            let after = q[end + 1..].trim_ws_start();
            let inner = after
                .strip_prefix('<')
                .ok_or_else(|| err(W, "missing '<' after display name", s))?;
            let close = find_byte(inner, b'>').ok_or_else(|| err(W, "missing '>'", s))?;
            (
                Some(DisplayName::Quoted),
                &inner[..close],
                &inner[close + 1..],
            )
        } else if let Some(lt) = find_byte(t, b'<').filter(|&lt| {
            t[..lt]
                .bytes()
                .all(|c| is_token_char(c) || c == b' ' || c == b'\t')
        }) {
            // token display name (possibly empty, possibly without LWS before '<')
            let disp = t[..lt].trim_ws();
            let inner = &t[lt + 1..];
            let close = find_byte(inner, b'>').ok_or_else(|| err(W, "missing '>'", s))?;
            let d = if disp.is_empty() {
                None
            } else {
                Some(DisplayName::Token(disp))
            };
            (d, &inner[..close], &inner[close + 1..])
        } else {
            // bare addr-spec: may not contain ',', '?' or ';' inside the URI (§20)
            let (u, r) = match find_byte(t, b';') {
                Some(i) => (&t[..i], &t[i..]),
                None => (t, ""),
            };
            if has_byte(u, b'?') || has_byte(u, b',') {
                return Err(err(W, "URI with headers or comma must be in <>", s));
            }
            (None, u, r)
        };
        let rest = rest.trim_ws();
        if rest.is_empty() {
            return Ok((display, uri_str, None));
        }
        // The URI's own errors come before "junk after URI" (as `parse` reported them).
        if !rest.starts_with(';') {
            Uri::check(uri_str)?;
            return Err(err(W, "junk after URI", s));
        }
        Ok((display, uri_str, Some(&rest[1..])))
    }

    /// Whether `s` has a `tag` parameter with a value, without building the name-addr:
    /// `Ok(NameAddr::parse(s)?.tag().is_some())`, same errors.
    pub fn has_tag(s: &str) -> Result<bool, ValueError> {
        NameAddr::scan_tag(s).map(|t| t.is_some())
    }

    /// The `tag` of the name-addr `s`, borrowed, without building the name-addr:
    /// `NameAddr::parse(s)?.tag()`, same errors.
    pub fn scan_tag(s: &str) -> Result<Option<&str>, ValueError> {
        let (_, uri_str, rest) = NameAddr::split(s, None)?;
        Uri::check(uri_str)?;
        // `tag()` reads the first `tag` parameter only.
        let mut first: Option<Option<&str>> = None;
        if let Some(p) = rest {
            scan_params("name-addr", p, &mut |n, v| {
                if first.is_none() && n.eq_ignore_ascii_case("tag") {
                    first = Some(v);
                }
            })?;
        }
        Ok(first.flatten())
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        set_param_in(&mut self.params, name, value)
    }
}

impl std::str::FromStr for NameAddr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NameAddr::parse(s)
    }
}

impl fmt::Display for NameAddr {
    /// Always uses the `<uri>` form, so URI parameters and header parameters stay apart.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_str("\"")?;
            for c in d.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// A name-addr's display name as [`NameAddr::split`] found it.
enum DisplayName<'a> {
    /// A quoted string, unescaped into the caller's buffer.
    Quoted,
    /// A token sequence, as written (trimmed).
    Token(&'a str),
}

/// One Via hop: `SIP/2.0/UDP host:port;branch=z9hG4bK...;received=..;rport=..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport in upper case (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`...).
    pub transport: String,
    /// sent-by host; IPv6 without brackets.
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Via {
        Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            params: vec![("branch".into(), Some(branch.into()))],
        }
    }

    pub fn parse(s: &str) -> Result<Via, ValueError> {
        let mut params = Vec::new();
        let (transport, host, port) = Via::scan(s, &mut |n, v| {
            params.push((n.to_string(), v.map(str::to_string)))
        })?;
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host: host.into_owned(),
            port,
            params,
        })
    }

    /// Checks `s` exactly as [`Via::parse`] does (same errors) without building the value.
    pub fn check(s: &str) -> Result<(), ValueError> {
        Via::scan(s, &mut |_, _| {}).map(|_| ())
    }

    /// The Via grammar once: transport as written, sent-by host (borrowed unless LWS had to
    /// be removed around the port colon) and port; each parameter handed to `param`.
    fn scan<'a>(
        s: &'a str,
        param: &mut dyn FnMut(&'a str, Option<&'a str>),
    ) -> Result<(&'a str, std::borrow::Cow<'a, str>, Option<u16>), ValueError> {
        use std::borrow::Cow;
        const W: &str = "Via";
        let t = s.trim_ws();
        // sent-protocol: name SLASH version SLASH transport, LWS allowed around the slashes
        // (`splitn(3, '/')` with byte searches)
        let (name, after) = match split_byte(t, b'/') {
            Some((n, a)) => (n, Some(a)),
            None => (t, None),
        };
        let name = name.trim_ws();
        let after = after.ok_or_else(|| err(W, "missing protocol version", s))?;
        let (version, rest) = match split_byte(after, b'/') {
            Some((v, r)) => (v, Some(r)),
            None => (after, None),
        };
        let version = version.trim_ws();
        let rest = rest
            .ok_or_else(|| err(W, "missing transport", s))?
            .trim_ws_start();
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(err(W, "protocol is not SIP/2.0", s));
        }
        let tlen = rest.bytes().take_while(|&c| is_token_char(c)).count();
        if tlen == 0 {
            return Err(err(W, "missing transport", s));
        }
        let transport = &rest[..tlen];
        let rest = &rest[tlen..];
        if !rest.starts_with([' ', '\t']) {
            return Err(err(W, "missing space before sent-by", s));
        }
        let rest = rest.trim_ws_start();
        let sent_by = match find_byte(rest, b';') {
            Some(i) => {
                scan_params(W, &rest[i + 1..], param)?;
                rest[..i].trim_ws()
            }
            None => rest.trim_ws(),
        };
        // LWS is allowed around the port colon
        if sent_by.chars().any(char::is_whitespace) {
            let sent_by: String = sent_by.chars().filter(|c| !c.is_whitespace()).collect();
            let (host, port) = parse_hostport(W, &sent_by)?;
            return Ok((transport, Cow::Owned(host), port));
        }
        let (host, port) = scan_hostport(W, sent_by)?;
        Ok((transport, Cow::Borrowed(host), port))
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        set_param_in(&mut self.params, name, value)
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// `None`: no rport; `Some(None)`: `;rport` requested; `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// Appends the value as `Display` writes it, without the formatter.
    pub fn push_text(&self, out: &mut String) {
        out.push_str("SIP/2.0/");
        out.push_str(&self.transport);
        out.push(' ');
        out.push_str(&self.sent_by());
        for (n, v) in &self.params {
            out.push(';');
            out.push_str(n);
            if let Some(v) = v {
                out.push('=');
                out.push_str(v);
            }
        }
    }

    /// `host[:port]` as it appears in the header (IPv6 bracketed).
    pub fn sent_by(&self) -> String {
        // (what `write_host` writes, without the formatter)
        let mut s = String::with_capacity(self.host.len() + 8);
        if has_byte(&self.host, b':') {
            s.push('[');
            s.push_str(&self.host);
            s.push(']');
        } else {
            s.push_str(&self.host);
        }
        if let Some(p) = self.port {
            s.push(':');
            push_u64(&mut s, u64::from(p));
        }
        s
    }
}

impl std::str::FromStr for Via {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Via::parse(s)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SIP/2.0/")?;
        f.write_str(&self.transport)?;
        f.write_str(" ")?;
        write_host(f, &self.host, self.port)?;
        write_params(f, &self.params)
    }
}

/// `CSeq: 4711 INVITE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn new(seq: u32, method: Method) -> CSeq {
        CSeq { seq, method }
    }

    pub fn parse(s: &str) -> Result<CSeq, ValueError> {
        const W: &str = "CSeq";
        let t = s.trim_ws();
        let sp = t
            .bytes()
            .position(|c| c == b' ' || c == b'\t')
            .ok_or_else(|| err(W, "missing method", s))?;
        let (num, method) = (&t[..sp], &t[sp + 1..]);
        if num.is_empty() || num.len() > 10 || !num.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err(W, "bad sequence number", s));
        }
        let seq = num
            .parse::<u32>()
            .map_err(|_| err(W, "sequence number above 2^32-1", s))?;
        let method = method
            .trim_ws()
            .parse::<Method>()
            .map_err(|_| err(W, "bad method", s))?;
        Ok(CSeq { seq, method })
    }
}

impl std::str::FromStr for CSeq {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CSeq::parse(s)
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_u64(f, u64::from(self.seq))?;
        f.write_str(" ")?;
        f.write_str(self.method.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tables_match_their_definitions() {
        for c in 0..=255u8 {
            assert_eq!(is_token_char(c), token_char_def(c), "{c}");
            assert_eq!(URI_BAD[usize::from(c)], uri_bad_def(c), "{c}");
        }
    }

    #[test]
    fn via_push_text_agrees_with_display() {
        for s in [
            "SIP/2.0/UDP 127.0.0.1:5062;rport=5062;branch=z9hG4bKx;received=127.0.0.1",
            "SIP/2.0/tcp [2001:db8::1]:5060;branch=z9hG4bKy;lr",
            "SIP/2.0/TLS host.example;branch=z9hG4bKz;x=\"a;b\"",
        ] {
            let v = Via::parse(s).unwrap();
            let mut t = String::new();
            v.push_text(&mut t);
            assert_eq!(t, v.to_string());
        }
    }

    #[test]
    fn split_outside_quotes_plain_and_quoted() {
        for s in ["", ";", "a", "a;b", "a;;b;", "rport;branch=z9hG4bKx", "é;ü"] {
            assert_eq!(
                split_outside_quotes(s, b';').collect::<Vec<_>>(),
                s.split(';').collect::<Vec<_>>(),
                "{s:?}"
            );
        }
        let q: Vec<_> = split_outside_quotes(r#"a="x;y";b=<c;d>;e"#, b';').collect();
        assert_eq!(q, [r#"a="x;y""#, "b=<c;d>", "e"]);
    }

    #[test]
    fn sip_uri_full() {
        let u =
            Uri::parse("sips:alice:secret@Example.com:5061;transport=tcp;lr?subject=x").unwrap();
        assert_eq!(u.scheme, "sips");
        assert_eq!(u.user.as_deref(), Some("alice:secret"));
        assert_eq!(u.user_name(), Some("alice"));
        assert_eq!(u.host, "Example.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("transport"), Some(Some("tcp")));
        assert_eq!(u.param("LR"), Some(None));
        assert_eq!(u.param("maddr"), None);
        assert_eq!(u.headers.as_deref(), Some("subject=x"));
        assert_eq!(
            u.to_string(),
            "sips:alice:secret@Example.com:5061;transport=tcp;lr?subject=x"
        );
    }

    #[test]
    fn ipv6_uris() {
        let u = Uri::parse("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host, "2001:db8::10");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.to_string(), "sip:[2001:db8::10]:5070");
        let u = Uri::parse("sip:user@[2001:db8::192.0.2.1]").unwrap();
        assert_eq!(u.host, "2001:db8::192.0.2.1");
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(Uri::parse("sip:[2001:db8::10").is_err());
    }

    #[test]
    fn bad_uris() {
        for bad in [
            "",
            "sip:",
            "nocolon",
            "sip:a@",
            "sip:@host",
            "sip:host:99999",
            "sip:ho st",
            "sip:host:",
            "1x:abc",
            "sip:host;",
            "sip:h\u{e9}",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn other_schemes_are_opaque() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=x").unwrap();
        assert_eq!(u.scheme, "tel");
        assert_eq!(u.host, "+1-201-555-0123;phone-context=x");
        assert_eq!(u.to_string(), "tel:+1-201-555-0123;phone-context=x");
        assert!(Uri::parse("soap.beep://192.0.2.103:3002").is_ok());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"Bob \\\"B\\\" Smith\" <sip:bob@b.com;transport=udp>;tag=x1")
            .unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob \"B\" Smith"));
        assert_eq!(n.uri.param("transport"), Some(Some("udp")));
        assert_eq!(n.tag(), Some("x1"));
        assert_eq!(
            n.to_string(),
            "\"Bob \\\"B\\\" Smith\" <sip:bob@b.com;transport=udp>;tag=x1"
        );

        // bare addr-spec: params belong to the header
        let n = NameAddr::parse("sip:a@b;tag=x").unwrap();
        assert_eq!(n.tag(), Some("x"));
        assert!(n.uri.params.is_empty());

        // token display name without LWS before '<' (RFC 4475 lwsdisp)
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        let n = NameAddr::parse("Bob  Smith <sip:b@c>").unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob  Smith"));
        let n = NameAddr::parse("<sip:b@c>;expires=60;+sip.instance=\"<urn:x>\"").unwrap();
        assert_eq!(n.display, None);
        assert_eq!(n.param("expires"), Some(Some("60")));
        assert_eq!(n.param("+sip.instance"), Some(Some("\"<urn:x>\"")));
    }

    #[test]
    fn name_addr_rejects() {
        for bad in [
            "\"unterminated <sip:a@b>",
            "<sip:a@b",
            "sip:a@b?Route=x",
            "< sip:a@b >",
            "<sip:a@b> junk",
            "\"x\" sip:a@b",
            "<sip:a@b>;",
            "<sip:a@b>;=x",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?} accepted");
        }
        let n = NameAddr::parse("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>").unwrap();
        assert_eq!(
            n.uri.headers.as_deref(),
            Some("Route=%3Csip:sip.example.com%3E")
        );
    }

    #[test]
    fn via_parse_and_params() {
        let mut v = Via::parse("SIP / 2.0 / udp  host.example.com : 5070 ;branch=z9hG4bK776;rport")
            .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "host.example.com");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bK776"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), None);
        v.set_param("rport", Some("6000".into()));
        v.set_param("received", Some("192.0.2.1".into()));
        assert_eq!(v.rport(), Some(Some(6000)));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP host.example.com:5070;branch=z9hG4bK776;rport=6000;received=192.0.2.1"
        );
        let v = Via::parse(
            "SIP/2.0/UDP [2001:db8::9:1]:5060;received=2001:db8::9:255;branch=z9hG4bKas3-111",
        )
        .unwrap();
        assert_eq!(v.host, "2001:db8::9:1");
        assert_eq!(v.received(), Some("2001:db8::9:255"));
        assert_eq!(v.sent_by(), "[2001:db8::9:1]:5060");
        for bad in [
            "SIP/2.0",
            "SIP/3.0/UDP h",
            "SIP/2.0/UDP",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP h:x",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// `check` must accept and reject exactly what `parse` does, with the same error, for
    /// every value (good and bad) these tests use, and for every prefix of them.
    #[test]
    fn check_agrees_with_parse() {
        let names = [
            "\"Bob \\\"B\\\" Smith\" <sip:bob@b.com;transport=udp>;tag=x1",
            "sip:a@b;tag=x",
            "caller<sip:caller@example.com>;tag=323",
            "Bob  Smith <sip:b@c>",
            "<sip:b@c>;expires=60;+sip.instance=\"<urn:x>\"",
            "\"unterminated <sip:a@b>",
            "<sip:a@b",
            "sip:a@b?Route=x",
            "< sip:a@b >",
            "<sip:a@b> junk",
            "<sip:a b> junk",
            "\"x\" sip:a@b",
            "<sip:a@b>;",
            "<sip:a@b>;=x",
            "<sip:a@b;=x>;tag=1",
            "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
            "<tel:+1-201-555-0123;phone-context=x>;tag=9",
            "<sip:[2001:db8::10]:5070;lr>",
            "\"\\",
        ];
        for full in names {
            for end in (0..=full.len()).filter(|&e| full.is_char_boundary(e)) {
                let v = &full[..end];
                assert_eq!(NameAddr::check(v), NameAddr::parse(v).map(|_| ()), "{v:?}");
                let u = v.trim_start_matches(['<', '"']);
                assert_eq!(Uri::check(u), Uri::parse(u).map(|_| ()), "{u:?}");
            }
        }
        let vias = [
            "SIP / 2.0 / udp  host.example.com : 5070 ;branch=z9hG4bK776;rport",
            "SIP/2.0/UDP [2001:db8::9:1]:5060;received=2001:db8::9:255;branch=z9hG4bKas3-111",
            "SIP/2.0/TCP h:x;branch=1",
            "SIP/2.0/UDP h;=x",
            "SIP/3.0/UDP h",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP h : 99999;branch=z",
        ];
        for full in vias {
            for end in (0..=full.len()).filter(|&e| full.is_char_boundary(e)) {
                let v = &full[..end];
                assert_eq!(Via::check(v), Via::parse(v).map(|_| ()), "{v:?}");
            }
        }
    }

    #[test]
    fn cseq_parse() {
        let c = CSeq::parse(" 4711   INVITE ").unwrap();
        assert_eq!(c, CSeq::new(4711, Method::Invite));
        assert_eq!(c.to_string(), "4711 INVITE");
        assert_eq!(CSeq::parse("4294967295 BYE").unwrap().seq, u32::MAX);
        assert!(CSeq::parse("4294967296 BYE").is_err());
        assert!(CSeq::parse("36893488147419103232 INVITE").is_err());
        assert!(CSeq::parse("12").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("1 IN VITE").is_err());
    }
}
