//! SIP message codec (RFC 3261 §7, §20, §25): [`Message::parse`] turns one datagram into an
//! owned [`Request`] or [`Response`], `encode` turns it back into bytes.
//!
//! The parser is liberal where RFC 3261 / RFC 4475 allow it (bare LF line ends, folded header
//! lines, compact and mixed-case header names, LWS around the header colon) and strict where a
//! lenient reading would be dangerous: a bad request line, a Content-Length longer than the
//! datagram, an unparseable CSeq or top Via, a CSeq method that differs from the request method,
//! out-of-range status codes. A request that fails after its start line parsed is still handed
//! back in [`ParseError::partial`] so the caller can answer `400` when it has enough headers.
//!
//! Header values stay text. Names are stored in their canonical long form, and list headers
//! (Via, Contact, Route, ...) are split into one entry per value at parse time, so
//! `headers.get_all("Via")` yields one hop each. Typed views live in [`super::uri`].

use std::borrow::Cow;
use std::fmt;

use rand::Rng;

use super::text::{digits, has_byte, split_byte, split_lf, Trim};
use super::uri::{is_token, split_outside_quotes};
pub use super::uri::{CSeq, NameAddr, Params, Uri, ValueError, Via};

/// A SIP method. Method names are case-sensitive (RFC 3261 §7.1); anything else that is a
/// `token` is an [`Method::Extension`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Extension(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }

    /// Same as `str::parse`.
    pub fn parse(s: &str) -> Result<Method, ValueError> {
        s.parse()
    }
}

impl std::str::FromStr for Method {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            s if is_token(s) => Method::Extension(s.to_string()),
            s => {
                return Err(ValueError {
                    what: "method",
                    reason: "not a token",
                    input: s.chars().take(80).collect(),
                })
            }
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that could not be parsed.
#[derive(Debug, Clone)]
pub struct ParseError {
    /// What was wrong and where.
    pub reason: String,
    /// The request as far as it parsed, when the start line was a request line. Answer it with
    /// `400` (or [`ParseError::status_code`]) if it carries Via, From, To, Call-ID and CSeq.
    pub partial: Option<Request>,
}

impl ParseError {
    fn new(reason: impl Into<String>) -> ParseError {
        ParseError {
            reason: reason.into(),
            partial: None,
        }
    }

    /// The status code to answer a partial request with: 505 for a bad SIP version, else 400.
    pub fn status_code(&self) -> u16 {
        if self.reason.starts_with(VERSION_ERR) {
            505
        } else {
            400
        }
    }

    /// True when [`Self::partial`] has every header needed to build a response with
    /// [`Response::for_request`] (Via, From, To, Call-ID present; CSeq parseable). Send it to
    /// the datagram's source address.
    pub fn can_respond(&self) -> bool {
        self.partial.as_ref().is_some_and(|r| {
            ["Via", "From", "To", "Call-ID"]
                .iter()
                .all(|h| r.headers.contains(h))
                && r.cseq().is_some()
        })
    }
}

const VERSION_ERR: &str = "unsupported SIP version";

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad SIP message: {}", self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Canonical header names with their compact forms (RFC 3261 §7.3.3 and extensions). The
/// `canonical` match is generated from this table; a test keeps the two in step.
#[cfg(test)]
const KNOWN: &[(&str, Option<&str>)] = &[
    ("Accept", None),
    ("Accept-Contact", Some("a")),
    ("Accept-Encoding", None),
    ("Accept-Language", None),
    ("Alert-Info", None),
    ("Allow", None),
    ("Allow-Events", Some("u")),
    ("Authentication-Info", None),
    ("Authorization", None),
    ("Call-ID", Some("i")),
    ("Call-Info", None),
    ("Contact", Some("m")),
    ("Content-Disposition", None),
    ("Content-Encoding", Some("e")),
    ("Content-Language", None),
    ("Content-Length", Some("l")),
    ("Content-Type", Some("c")),
    ("CSeq", None),
    ("Date", None),
    ("Error-Info", None),
    ("Event", Some("o")),
    ("Expires", None),
    ("From", Some("f")),
    ("History-Info", None),
    ("Identity", Some("y")),
    ("In-Reply-To", None),
    ("Max-Forwards", None),
    ("Min-Expires", None),
    ("Min-SE", None),
    ("MIME-Version", None),
    ("Organization", None),
    ("P-Asserted-Identity", None),
    ("P-Preferred-Identity", None),
    ("Path", None),
    ("Priority", None),
    ("Privacy", None),
    ("Proxy-Authenticate", None),
    ("Proxy-Authorization", None),
    ("Proxy-Require", None),
    ("RAck", None),
    ("Reason", None),
    ("Record-Route", None),
    ("Refer-To", Some("r")),
    ("Referred-By", Some("b")),
    ("Reject-Contact", Some("j")),
    ("Remote-Party-ID", None),
    ("Reply-To", None),
    ("Request-Disposition", Some("d")),
    ("Require", None),
    ("Retry-After", None),
    ("Route", None),
    ("RSeq", None),
    ("Server", None),
    ("Service-Route", None),
    ("Session-Expires", Some("x")),
    ("Subject", Some("s")),
    ("Subscription-State", None),
    ("Supported", Some("k")),
    ("Timestamp", None),
    ("To", Some("t")),
    ("Unsupported", None),
    ("User-Agent", None),
    ("Via", Some("v")),
    ("Warning", None),
    ("WWW-Authenticate", None),
];

/// Headers whose comma-separated values are split into separate entries.
const LIST_HEADERS: &[&str] = &[
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Call-Info",
    "Contact",
    "Content-Encoding",
    "Content-Language",
    "Error-Info",
    "History-Info",
    "In-Reply-To",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Proxy-Require",
    "Record-Route",
    "Reject-Contact",
    "Request-Disposition",
    "Require",
    "Route",
    "Service-Route",
    "Supported",
    "Unsupported",
    "Via",
    "Warning",
];

/// Maps any spelling of a known header name (any case, compact form) to its canonical form.
fn canonical(name: &str) -> Option<&'static str> {
    let mut buf = [0u8; 24];
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name.bytes()) {
        *d = s.to_ascii_lowercase();
    }
    Some(match &buf[..name.len()] {
        b"accept" => "Accept",
        b"accept-contact" | b"a" => "Accept-Contact",
        b"accept-encoding" => "Accept-Encoding",
        b"accept-language" => "Accept-Language",
        b"alert-info" => "Alert-Info",
        b"allow" => "Allow",
        b"allow-events" | b"u" => "Allow-Events",
        b"authentication-info" => "Authentication-Info",
        b"authorization" => "Authorization",
        b"call-id" | b"i" => "Call-ID",
        b"call-info" => "Call-Info",
        b"contact" | b"m" => "Contact",
        b"content-disposition" => "Content-Disposition",
        b"content-encoding" | b"e" => "Content-Encoding",
        b"content-language" => "Content-Language",
        b"content-length" | b"l" => "Content-Length",
        b"content-type" | b"c" => "Content-Type",
        b"cseq" => "CSeq",
        b"date" => "Date",
        b"error-info" => "Error-Info",
        b"event" | b"o" => "Event",
        b"expires" => "Expires",
        b"from" | b"f" => "From",
        b"history-info" => "History-Info",
        b"identity" | b"y" => "Identity",
        b"in-reply-to" => "In-Reply-To",
        b"max-forwards" => "Max-Forwards",
        b"min-expires" => "Min-Expires",
        b"min-se" => "Min-SE",
        b"mime-version" => "MIME-Version",
        b"organization" => "Organization",
        b"p-asserted-identity" => "P-Asserted-Identity",
        b"p-preferred-identity" => "P-Preferred-Identity",
        b"path" => "Path",
        b"priority" => "Priority",
        b"privacy" => "Privacy",
        b"proxy-authenticate" => "Proxy-Authenticate",
        b"proxy-authorization" => "Proxy-Authorization",
        b"proxy-require" => "Proxy-Require",
        b"rack" => "RAck",
        b"reason" => "Reason",
        b"record-route" => "Record-Route",
        b"refer-to" | b"r" => "Refer-To",
        b"referred-by" | b"b" => "Referred-By",
        b"reject-contact" | b"j" => "Reject-Contact",
        b"remote-party-id" => "Remote-Party-ID",
        b"reply-to" => "Reply-To",
        b"request-disposition" | b"d" => "Request-Disposition",
        b"require" => "Require",
        b"retry-after" => "Retry-After",
        b"route" => "Route",
        b"rseq" => "RSeq",
        b"server" => "Server",
        b"service-route" => "Service-Route",
        b"session-expires" | b"x" => "Session-Expires",
        b"subject" | b"s" => "Subject",
        b"subscription-state" => "Subscription-State",
        b"supported" | b"k" => "Supported",
        b"timestamp" => "Timestamp",
        b"to" | b"t" => "To",
        b"unsupported" => "Unsupported",
        b"user-agent" => "User-Agent",
        b"via" | b"v" => "Via",
        b"warning" => "Warning",
        b"www-authenticate" => "WWW-Authenticate",
        _ => return None,
    })
}

fn is_list_header(canonical: &str) -> bool {
    LIST_HEADERS
        .iter()
        .any(|h| h.len() == canonical.len() && *h == canonical)
}

fn name_key(name: &str) -> Cow<'static, str> {
    match canonical(name) {
        Some(c) => Cow::Borrowed(c),
        None => Cow::Owned(name.to_string()),
    }
}

/// Compares a stored (canonical) name with a query that may be compact or differently cased.
fn name_matches(stored: &str, query: &str, query_canon: Option<&str>) -> bool {
    match query_canon {
        // canonical names are interned: compare pointers first, then text
        Some(c) => std::ptr::eq(stored, c) || stored == c,
        None => stored.eq_ignore_ascii_case(query),
    }
}

/// An ordered list of header fields. Names are kept in canonical long form; lookups accept any
/// case and compact forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    list: Vec<(Cow<'static, str>, String)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        // Most lookups name a known header in its canonical form, which is how known names
        // are stored (borrowed): the first such entry is the answer, no mapping of `name`.
        for (n, v) in &self.list {
            if let Cow::Borrowed(c) = n {
                if c.len() == name.len() && *c == name {
                    return Some(v);
                }
            }
        }
        let c = canonical(name);
        self.list
            .iter()
            .find(|(n, _)| name_matches(n, name, c))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let c = canonical(name);
        self.list
            .iter()
            .filter(move |(n, _)| name_matches(n, name, c))
            .map(|(_, v)| v.as_str())
    }

    /// Appends a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.list.push((name_key(name), value.into()));
    }

    /// Inserts before the first header of that name, or at the top if there is none.
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        let c = canonical(name);
        let at = self
            .list
            .iter()
            .position(|(n, _)| name_matches(n, name, c))
            .unwrap_or(0);
        self.list.insert(at, (name_key(name), value.into()));
    }

    /// Replaces every header of that name with one value (in the position of the first).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let c = canonical(name);
        match self.list.iter().position(|(n, _)| name_matches(n, name, c)) {
            Some(at) => {
                self.list[at].1 = value.into();
                let mut i = 0;
                self.list.retain(|(n, _)| {
                    i += 1;
                    i - 1 == at || !name_matches(n, name, c)
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every header of that name.
    pub fn remove(&mut self, name: &str) {
        let c = canonical(name);
        self.list.retain(|(n, _)| !name_matches(n, name, c));
    }

    /// Removes and returns the first header of that name (e.g. the top Via).
    pub fn remove_first(&mut self, name: &str) -> Option<String> {
        let c = canonical(name);
        let at = self
            .list
            .iter()
            .position(|(n, _)| name_matches(n, name, c))?;
        Some(self.list.remove(at).1)
    }

    /// Replaces the value of the first header of that name in place; false if there is none.
    pub fn replace_first(&mut self, name: &str, value: impl Into<String>) -> bool {
        let c = canonical(name);
        match self.list.iter_mut().find(|(n, _)| name_matches(n, name, c)) {
            Some(slot) => {
                slot.1 = value.into();
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.list.iter().map(|(n, v)| (n.as_ref(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn encode(&self, out: &mut Vec<u8>, body_len: usize) {
        for (n, v) in &self.list {
            if n.as_ref() == "Content-Length" {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(digits(&mut [0u8; 20], body_len as u64).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// Typed accessors shared by requests and responses.
macro_rules! common_accessors {
    () => {
        pub fn call_id(&self) -> Option<&str> {
            self.headers.get("Call-ID")
        }
        pub fn cseq(&self) -> Option<CSeq> {
            self.headers.get("CSeq").and_then(|v| CSeq::parse(v).ok())
        }
        pub fn from(&self) -> Option<NameAddr> {
            self.headers
                .get("From")
                .and_then(|v| NameAddr::parse(v).ok())
        }
        pub fn to(&self) -> Option<NameAddr> {
            self.headers.get("To").and_then(|v| NameAddr::parse(v).ok())
        }
        /// `self.to()?.tag()` without building the name-addr.
        pub fn to_tag(&self) -> Option<&str> {
            self.headers
                .get("To")
                .and_then(|v| NameAddr::scan_tag(v).ok().flatten())
        }
        pub fn top_via(&self) -> Option<Via> {
            self.headers.get("Via").and_then(|v| Via::parse(v).ok())
        }
        pub fn contact(&self) -> Option<NameAddr> {
            self.headers
                .get("Contact")
                .and_then(|v| NameAddr::parse(v).ok())
        }
        /// Serialises into `out` with canonical names and a correct Content-Length.
        pub fn encode(&self, out: &mut Vec<u8>) {
            self.encode_start(out);
            self.headers.encode(out, self.body.len());
            out.extend_from_slice(&self.body);
        }
        pub fn to_bytes(&self) -> Vec<u8> {
            let mut out = Vec::with_capacity(512 + self.body.len());
            self.encode(&mut out);
            out
        }
    };
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The Request-URI as text (parse it with [`Uri::parse`]).
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: Method, uri: impl Into<String>) -> Request {
        Request {
            method,
            uri: uri.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    common_accessors!();

    fn encode_start(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
    }
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with the default reason phrase and no headers.
    pub fn new(code: u16) -> Response {
        Response {
            code,
            reason: reason_phrase(code).to_string(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A response to `req` (RFC 3261 §8.2.6.2): copies every Via, From, To, Call-ID and CSeq,
    /// and Record-Route for 101..=299 (dialog-creating responses).
    pub fn for_request(req: &Request, code: u16) -> Response {
        let mut r = Response::new(code);
        r.headers.list.reserve(8);
        for (k, v) in &req.headers.list {
            let n: &str = k;
            let copy = matches!(n, "Via" | "From" | "To" | "Call-ID" | "CSeq")
                || (n == "Record-Route" && (101..=299).contains(&code));
            if copy {
                // (the stored name is already the canonical key)
                r.headers.list.push((k.clone(), v.clone()));
            }
        }
        r
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Response {
        self.reason = reason.into();
        self
    }

    /// Adds `;tag=` to the To header if it has none.
    pub fn set_to_tag(&mut self, tag: &str) {
        if let Some(to) = self.headers.get("To") {
            let has_tag = match NameAddr::has_tag(to) {
                Ok(t) => t,
                Err(_) => to.to_ascii_lowercase().contains(";tag="),
            };
            if !has_tag {
                let mut v = String::with_capacity(to.len() + 5 + tag.len());
                v.push_str(to);
                v.push_str(";tag=");
                v.push_str(tag);
                self.headers.set("To", v);
            }
        }
    }

    pub fn is_provisional(&self) -> bool {
        self.code < 200
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    common_accessors!();

    fn encode_start(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(digits(&mut [0u8; 20], u64::from(self.code)).as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl From<Request> for Message {
    fn from(r: Request) -> Message {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Message {
        Message::Response(r)
    }
}

impl Message {
    /// Parses one complete message (a UDP datagram, or one framed TCP message).
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        parse(buf)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Request(r) => r.encode(out),
            Message::Response(r) => r.encode(out),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

/// The few facts the edge needs about a message it sends, read from the bytes without
/// parsing them: the start line, Call-ID, CSeq and the top Via. Meant for messages our own
/// encoder wrote (one header per line, no folding); header names match in any case and in
/// compact form. No allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek<'a> {
    /// Status code of a response; `None` for a request.
    pub code: Option<u16>,
    /// Method of a request, as written on its start line.
    pub method: Option<&'a str>,
    /// The first Call-ID value.
    pub call_id: Option<&'a str>,
    /// The first CSeq value.
    pub cseq: Option<&'a str>,
    /// The first Via header line's value (it may hold more than one hop).
    pub via: Option<&'a str>,
}

impl<'a> Peek<'a> {
    /// `None` when the start line is neither a status line nor a request line, or a header
    /// line it reads is not UTF-8. Reading stops at the end of the header block or as soon as
    /// Call-ID, CSeq and Via are all found (our encoder writes them near the top), so the
    /// rest of the message is not scanned.
    pub fn new(buf: &'a [u8]) -> Option<Peek<'a>> {
        let mut lines = HeadLines { buf, at: 0 };
        let start = std::str::from_utf8(lines.next()?).ok()?;
        let mut p = Peek {
            code: None,
            method: None,
            call_id: None,
            cseq: None,
            via: None,
        };
        if let Some(rest) = start.strip_prefix("SIP/2.0 ") {
            let code = rest.get(..3)?;
            if !code.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            p.code = Some(code.parse().ok()?);
        } else {
            let (m, _) = start.split_once(' ')?;
            if !is_token(m) {
                return None;
            }
            p.method = Some(m);
        }
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = line[..colon].trim_ascii_end();
            // Only Call-ID (i), CSeq and Via (v) matter: skip other names without mapping them.
            if !matches!(name.len(), 1 | 3 | 4 | 7) {
                continue;
            }
            let slot = match canonical(std::str::from_utf8(name).ok()?) {
                Some("Call-ID") => &mut p.call_id,
                Some("CSeq") => &mut p.cseq,
                Some("Via") => &mut p.via,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(std::str::from_utf8(&line[colon + 1..]).ok()?.trim_ws());
                if p.call_id.is_some() && p.cseq.is_some() && p.via.is_some() {
                    break;
                }
            }
        }
        Some(p)
    }
}

/// The lines of a message's start line and header block (without their CR LF), ending at the
/// empty line or the end of the buffer.
struct HeadLines<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Iterator for HeadLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.buf.get(self.at..)?;
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(n) => (&rest[..n], self.at + n + 1),
            None => (rest, self.buf.len() + 1),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // The empty line ends the header block (the start line itself may be empty).
        if line.is_empty() && self.at > 0 {
            self.at = self.buf.len() + 1;
            return None;
        }
        self.at = next;
        Some(line)
    }
}

/// Where the header block ends: `(end of last header line, start of body)`.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'\n', &buf[i..]) {
        let p = i + off;
        match buf.get(p + 1) {
            Some(b'\n') => return Some((p + 1, p + 2)),
            Some(b'\r') if buf.get(p + 2) == Some(&b'\n') => return Some((p + 1, p + 3)),
            _ => {}
        }
        i = p + 1;
    }
    None
}

enum Start {
    Request(Method, String),
    Response(u16, String),
}

/// Parses the request line strictly; on failure returns a best-effort method and URI so the
/// caller can still answer 400.
fn parse_start(line: &str) -> Result<Start, (String, Option<(Method, String)>)> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (ver, rest) = rest
            .split_once(' ')
            .ok_or(("bad status line".to_string(), None))?;
        if ver != "2.0" {
            return Err((format!("{VERSION_ERR} in status line"), None));
        }
        let (code, reason) = match rest.split_once(' ') {
            Some((c, r)) => (c, r),
            None => (rest, ""),
        };
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err((format!("bad status code {code:?}"), None));
        }
        let code: u16 = code
            .parse()
            .map_err(|_| ("bad status code".to_string(), None))?;
        if !(100..=699).contains(&code) {
            return Err((format!("status code {code} out of range 100..699"), None));
        }
        if reason.bytes().any(|c| c < b' ' && c != b'\t') {
            return Err(("control character in reason phrase".to_string(), None));
        }
        return Ok(Start::Response(code, reason.to_string()));
    }
    let mut parts = line.split(' ');
    let (m, u, v) = (parts.next(), parts.next(), parts.next());
    let rest = parts.next();
    let best_effort = || {
        let mut w = line.split_whitespace();
        let m = w.next()?.parse::<Method>().ok()?;
        let u = w.next()?.to_string();
        Some((m, u))
    };
    let (Some(m), Some(u), Some(v), None) = (m, u, v, rest) else {
        return Err((
            "bad request line (want METHOD SP URI SP SIP/2.0)".into(),
            best_effort(),
        ));
    };
    let Ok(method) = m.parse::<Method>() else {
        return Err(("bad method in request line".into(), None));
    };
    if v != "SIP/2.0" {
        let reason = if v.starts_with("SIP/") {
            format!("{VERSION_ERR} {v:?}")
        } else {
            format!("bad SIP version {v:?} in request line")
        };
        return Err((reason, Some((method, u.to_string()))));
    }
    if let Err(e) = check_request_uri(u) {
        return Err((e, Some((method, u.to_string()))));
    }
    Ok(Start::Request(method, u.to_string()))
}

fn check_request_uri(u: &str) -> Result<(), String> {
    let scheme_ok = u.split_once(':').is_some_and(|(s, rest)| {
        !rest.is_empty()
            && s.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    });
    if !scheme_ok
        || u.bytes()
            .any(|c| c <= b' ' || c >= 0x7f || c == b'<' || c == b'>')
    {
        return Err(format!("bad Request-URI {u:?}"));
    }
    let scheme = u.split_once(':').map_or("", |(s, _)| s);
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let parsed = Uri::parse(u).map_err(|e| format!("bad Request-URI: {e}"))?;
        if parsed.headers.is_some() {
            return Err(format!("headers not allowed in Request-URI {u:?}"));
        }
    }
    Ok(())
}

fn parse(buf: &[u8]) -> Result<Message, ParseError> {
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let buf = &buf[lead..];
    if buf.is_empty() {
        return Err(ParseError::new("empty message"));
    }
    let (head_end, body_start) = match find_header_end(buf) {
        Some(x) => x,
        None => (buf.len(), usize::MAX),
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| {
        ParseError::new(format!(
            "header section is not UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })?;
    let mut lines = split_lf(head).map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or("");

    let mut error: Option<String> = None;
    let start = match parse_start(start_line) {
        Ok(s) => s,
        Err((reason, Some((m, u)))) => {
            error = Some(reason);
            Start::Request(m, u)
        }
        Err((reason, None)) => return Err(ParseError::new(reason)),
    };
    if body_start == usize::MAX {
        error.get_or_insert_with(|| "truncated: no empty line after the headers".into());
    }

    // Header lines, with folding.
    let mut headers = Headers::new();
    let mut cur: Option<(&str, String)> = None;
    let flush = |cur: Option<(&str, String)>, headers: &mut Headers, error: &mut Option<String>| {
        if let Some((name, value)) = cur {
            if let Err(e) = add_header(headers, name, value) {
                error.get_or_insert(e);
            }
        }
    };
    for (lineno, line) in lines.enumerate() {
        if line.is_empty() {
            continue; // only possible as the final line of a truncated block
        }
        if line.starts_with([' ', '\t']) {
            match cur.as_mut() {
                Some((_, v)) => {
                    let t = line.trim_ws();
                    if !t.is_empty() {
                        if !v.is_empty() {
                            v.push(' ');
                        }
                        v.push_str(t);
                    }
                }
                None => {
                    error.get_or_insert_with(|| "continuation line before any header".into());
                }
            }
            continue;
        }
        flush(cur.take(), &mut headers, &mut error);
        match split_byte(line, b':') {
            Some((name, value)) => {
                let name = name.trim_end_matches([' ', '\t']);
                if !is_token(name) {
                    error.get_or_insert_with(|| {
                        format!("bad header name {name:?} (line {})", lineno + 2)
                    });
                    continue;
                }
                cur = Some((name, value.trim_ws().to_string()));
            }
            None => {
                error.get_or_insert_with(|| format!("header line {} has no ':'", lineno + 2));
            }
        }
    }
    flush(cur.take(), &mut headers, &mut error);

    // Body framing.
    let rest = if body_start == usize::MAX {
        &[][..]
    } else {
        &buf[body_start..]
    };
    let body = match headers.get("Content-Length") {
        Some(v) => match v.trim_ws().parse::<usize>() {
            Ok(n) if n <= rest.len() => rest[..n].to_vec(),
            Ok(n) => {
                error.get_or_insert_with(|| {
                    format!("bad Content-Length: {n} but only {} body bytes", rest.len())
                });
                rest.to_vec()
            }
            Err(_) => {
                error.get_or_insert_with(|| format!("bad Content-Length {v:?}"));
                rest.to_vec()
            }
        },
        None => rest.to_vec(),
    };

    // Mandatory headers and their syntax.
    let mut missing = Vec::new();
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if headers.get(h).is_none() {
            missing.push(h);
        }
    }
    if !missing.is_empty() {
        error.get_or_insert_with(|| format!("missing mandatory header(s): {}", missing.join(", ")));
    }
    let check = |name: &str, f: &dyn Fn(&str) -> Result<(), ValueError>| -> Option<String> {
        headers
            .get(name)
            .and_then(|v| f(v).err())
            .map(|e| format!("bad {name} header: {e}"))
    };
    let cseq = headers.get("CSeq").and_then(|v| CSeq::parse(v).ok());
    if error.is_none() {
        // `check`: the same grammar and errors as `parse`, without building the values.
        error = check("Via", &Via::check)
            .or_else(|| check("CSeq", &|v| CSeq::parse(v).map(|_| ())))
            .or_else(|| check("From", &NameAddr::check))
            .or_else(|| check("To", &NameAddr::check));
    }
    if error.is_none() {
        if let Some(mf) = headers.get("Max-Forwards") {
            if mf.is_empty() || mf.len() > 3 || !mf.bytes().all(|c| c.is_ascii_digit()) {
                error = Some(format!("bad Max-Forwards {mf:?}"));
            }
        }
    }

    match start {
        Start::Request(method, uri) => {
            if error.is_none() {
                if let Some(c) = &cseq {
                    if c.method != method {
                        error = Some(format!(
                            "CSeq method {} does not match request method {method}",
                            c.method
                        ));
                    }
                }
            }
            if error.is_none() {
                for c in headers.get_all("Contact") {
                    if c != "*" {
                        if let Err(e) = NameAddr::check(c) {
                            error = Some(format!("bad Contact header: {e}"));
                            break;
                        }
                    }
                }
            }
            let req = Request {
                method,
                uri,
                headers,
                body,
            };
            match error {
                None => Ok(Message::Request(req)),
                Some(reason) => Err(ParseError {
                    reason,
                    partial: Some(req),
                }),
            }
        }
        Start::Response(code, reason) => match error {
            None => Ok(Message::Response(Response {
                code,
                reason,
                headers,
                body,
            })),
            Some(reason) => Err(ParseError::new(reason)),
        },
    }
}

fn add_header(headers: &mut Headers, name: &str, value: String) -> Result<(), String> {
    let key = name_key(name);
    if has_byte(&value, b',') && is_list_header(&key) {
        for part in split_outside_quotes(&value, b',') {
            let part = part.trim_ws();
            if !part.is_empty() {
                headers.list.push((key.clone(), part.to_string()));
            }
        }
        return Ok(());
    }
    headers.list.push((key, value));
    Ok(())
}

/// A new RFC 3261 branch: the magic cookie `z9hG4bK` and 16 random characters.
pub fn new_branch() -> String {
    let mut s = String::with_capacity(23);
    s.push_str("z9hG4bK");
    push_random(&mut s, 16);
    s
}

/// A new random From/To tag.
pub fn new_tag() -> String {
    let mut s = String::with_capacity(12);
    push_random(&mut s, 12);
    s
}

/// A new random Call-ID local part (add `@host` if wanted).
pub fn new_call_id() -> String {
    let mut s = String::with_capacity(24);
    push_random(&mut s, 24);
    s
}

fn push_random(s: &mut String, n: usize) {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    for _ in 0..n {
        s.push(CHARS[rng.gen_range(0..CHARS.len())] as char);
    }
}

/// The default reason phrase for a status code (RFC 3261 §21 and extensions).
pub fn reason_phrase(code: u16) -> &'static str {
    specific_reason(code).unwrap_or(match code {
        100..=199 => "Provisional",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Global Failure",
    })
}

fn specific_reason(code: u16) -> Option<&'static str> {
    Some(match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn req(buf: &[u8]) -> Request {
        match Message::parse(buf) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn parse_err(buf: &[u8]) -> ParseError {
        match Message::parse(buf) {
            Err(e) => e,
            Ok(m) => panic!("accepted: {m:?}"),
        }
    }

    #[test]
    fn parse_invite() {
        let r = req(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri, "sip:bob@biloxi.example.com");
        assert_eq!(r.call_id(), Some("a84b4c76e66710@pc33.atlanta.example.com"));
        assert_eq!(r.cseq(), Some(CSeq::new(314159, Method::Invite)));
        assert_eq!(r.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(r.to().unwrap().tag(), None);
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(r.contact().unwrap().uri.host, "pc33.atlanta.example.com");
        assert_eq!(r.body, b"v=0\n");
        assert_eq!(r.headers.get("max-forwards"), Some("70"));
    }

    #[test]
    fn round_trip() {
        let r = req(INVITE);
        let bytes = r.to_bytes();
        assert_eq!(bytes, INVITE, "{}", String::from_utf8_lossy(&bytes));
        let again = Message::parse(&bytes).unwrap();
        assert_eq!(again, Message::Request(r));
    }

    #[test]
    fn bare_lf_folding_compact_forms() {
        let msg = b"OPTIONS sip:x@y SIP/2.0\n\
v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\n\
f: <sip:a@b>;tag=1\n\
t: <sip:x@y>\n\
i: abc\n\
CSeq:\n   7\n\tOPTIONS\n\
SUBJECT   :   hello\n  world\n\
k: 100rel, timer\n\
m: \"A, B\" <sip:a@h1>, <sip:b@h2;x=1,2>\n\
l: 0\n\
\n";
        let r = req(msg);
        assert_eq!(r.cseq(), Some(CSeq::new(7, Method::Options)));
        assert_eq!(r.headers.get("Subject"), Some("hello world"));
        assert_eq!(r.headers.get("s"), Some("hello world"));
        assert_eq!(r.headers.get("Call-ID"), Some("abc"));
        assert_eq!(
            r.headers.get_all("Supported").collect::<Vec<_>>(),
            ["100rel", "timer"]
        );
        let contacts: Vec<_> = r.headers.get_all("m").collect();
        assert_eq!(contacts, ["\"A, B\" <sip:a@h1>", "<sip:b@h2;x=1,2>"]);
        // canonical names on output
        let out = String::from_utf8(r.to_bytes()).unwrap();
        assert!(out.contains("\r\nVia: SIP/2.0/UDP"), "{out}");
        assert!(out.contains("\r\nSupported: timer\r\n"), "{out}");
        assert!(out.ends_with("Content-Length: 0\r\n\r\n"), "{out}");
    }

    #[test]
    fn auth_headers_not_split() {
        let msg = b"REGISTER sip:reg SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2, SIP/2.0/TCP g;branch=z9hG4bK3\r\n\
From: <sip:a@reg>;tag=1\r\nTo: <sip:a@reg>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
Authorization: Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:reg\", response=\"x\"\r\n\
Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n\r\n";
        let r = req(msg);
        assert_eq!(r.headers.get_all("Via").count(), 2);
        assert_eq!(r.headers.get_all("Authorization").count(), 1);
        assert_eq!(r.headers.get("Date"), Some("Sat, 13 Nov 2010 23:29:00 GMT"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn content_length_rules() {
        let base = "OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n";
        let longer = format!("{base}Content-Length: 10\r\n\r\nabc");
        let e = parse_err(longer.as_bytes());
        assert!(e.reason.contains("bad Content-Length"), "{e}");
        assert!(e.can_respond());
        let shorter = format!("{base}Content-Length: 2\r\n\r\nabcdef");
        assert_eq!(req(shorter.as_bytes()).body, b"ab");
        let absent = format!("{base}\r\nabcdef");
        assert_eq!(req(absent.as_bytes()).body, b"abcdef");
        let garbage = format!("{base}Content-Length: x1\r\n\r\n");
        assert!(parse_err(garbage.as_bytes())
            .reason
            .contains("Content-Length"));
    }

    #[test]
    fn missing_headers_give_partial() {
        let e = parse_err(b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\n\r\n");
        assert!(e.reason.contains("From, To, Call-ID"), "{e}");
        let p = e.partial.as_ref().unwrap();
        assert_eq!(p.method, Method::Options);
        assert!(p.top_via().is_some());
        assert!(!e.can_respond());
        assert_eq!(e.status_code(), 400);
    }

    #[test]
    fn version_and_start_line_errors() {
        let e = parse_err(b"OPTIONS sip:x@y SIP/7.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
        assert_eq!(e.status_code(), 505);
        assert!(e.can_respond());
        assert!(parse_err(b"SIP/2.0 700 Big\r\n\r\n").partial.is_none());
        assert!(parse_err(b"SIP/2.0 20 OK\r\n\r\n")
            .reason
            .contains("status code"));
        assert!(parse_err(b"INVITE  sip:x@y SIP/2.0\r\n\r\n")
            .partial
            .is_some());
        assert!(parse_err(b"INVITE <sip:x@y> SIP/2.0\r\n\r\n")
            .reason
            .contains("Request-URI"));
    }

    #[test]
    fn garbage_and_truncation_never_panic() {
        let samples: &[&[u8]] = &[
            b"",
            b"\r\n\r\n",
            b"\xff\xfe\x00",
            b"INVITE",
            b"SIP/2.0",
            b"SIP/2.0 ",
            b"INVITE sip:a@b SIP/2.0\r\n",
            b"INVITE sip:a@b SIP/2.0\r\n v: x\r\n\r\n",
            b"\x00\x01\x02 \r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: \xc3\x28\r\n\r\n",
        ];
        for s in samples {
            assert!(
                Message::parse(s).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(s)
            );
        }
        for cut in 0..INVITE.len() {
            let _ = Message::parse(&INVITE[..cut]);
        }
        // truncated inside the headers: error, with partial
        let e = parse_err(&INVITE[..100]);
        assert!(e.partial.is_some());
        // every single-byte corruption: no panic
        let mut buf = INVITE.to_vec();
        for i in 0..buf.len() {
            let old = buf[i];
            for b in [0u8, b'\n', b':', b'<', b'"', b';', 0xff] {
                buf[i] = b;
                let _ = Message::parse(&buf);
            }
            buf[i] = old;
        }
    }

    #[test]
    fn response_parse_and_build() {
        let r = req(INVITE);
        let mut resp = Response::for_request(&r, 180);
        resp.set_to_tag("abc");
        resp.set_to_tag("def"); // no second tag
        assert_eq!(resp.to().unwrap().tag(), Some("abc"));
        assert_eq!(resp.reason, "Ringing");
        let bytes = resp.to_bytes();
        let Message::Response(mut p) = Message::parse(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(p.headers.get("Content-Length"), Some("0"));
        p.headers.remove("l");
        assert_eq!(p.code, 180);
        assert_eq!(p.call_id(), r.call_id());
        assert_eq!(p.cseq(), r.cseq());
        assert_eq!(p, resp);
        let noreason =
            b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let Message::Response(p) = Message::parse(noreason).unwrap() else {
            panic!()
        };
        assert_eq!(p.reason, "");
        assert_eq!(reason_phrase(486), "Busy Here");
        assert_eq!(reason_phrase(499), "Client Error");
    }

    #[test]
    fn record_route_only_for_dialog_responses() {
        let mut r = req(INVITE);
        r.headers.push("Record-Route", "<sip:p1;lr>");
        assert!(Response::for_request(&r, 200)
            .headers
            .get("Record-Route")
            .is_some());
        assert!(Response::for_request(&r, 183)
            .headers
            .get("Record-Route")
            .is_some());
        assert!(Response::for_request(&r, 100)
            .headers
            .get("Record-Route")
            .is_none());
        assert!(Response::for_request(&r, 486)
            .headers
            .get("Record-Route")
            .is_none());
    }

    #[test]
    fn headers_ops() {
        let mut h = Headers::new();
        h.push("Via", "v2");
        h.push("x-custom", "1");
        h.push_front("v", "v1");
        h.push_front("Route", "r1");
        assert_eq!(
            h.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["Route", "Via", "Via", "x-custom"]
        );
        assert_eq!(h.get_all("VIA").collect::<Vec<_>>(), ["v1", "v2"]);
        assert_eq!(h.get("X-Custom"), Some("1"));
        assert_eq!(h.remove_first("Via").as_deref(), Some("v1"));
        h.push("Via", "v3");
        h.set("Via", "only");
        assert_eq!(h.get_all("Via").collect::<Vec<_>>(), ["only"]);
        h.remove("route");
        assert_eq!(h.len(), 2);
        assert_eq!(h.remove_first("Route"), None);
    }

    #[test]
    fn peek_reads_what_parse_reads() {
        let req = b"INVITE sip:1002@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1, SIP/2.0/UDP b\r\nVia: SIP/2.0/UDP c\r\nf: <sip:1001@h>;tag=1\r\nt: <sip:1002@h>\r\nMax-Forwards: 70\r\ni: abc@h\r\nCSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n";
        let p = Peek::new(req).unwrap();
        assert_eq!(p.code, None);
        assert_eq!(p.method, Some("INVITE"));
        assert_eq!(p.call_id, Some("abc@h"));
        assert_eq!(p.cseq, Some("2 INVITE"));
        assert_eq!(
            p.via,
            Some("SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1, SIP/2.0/UDP b")
        );
        let Ok(Message::Request(r)) = Message::parse(req) else {
            panic!("parse")
        };
        assert_eq!(r.call_id(), p.call_id);
        let resp = b"SIP/2.0 401 Unauthorized\r\nCall-ID: x\r\nCSeq : 1 REGISTER\r\n\r\n";
        let p = Peek::new(resp).unwrap();
        assert_eq!((p.code, p.method), (Some(401), None));
        assert_eq!(
            (p.call_id, p.cseq, p.via),
            (Some("x"), Some("1 REGISTER"), None)
        );
        assert!(Peek::new(b"SIP/2.0 4x1 Bad\r\n\r\n").is_none());
        assert!(Peek::new(b"garbage").is_none());
        assert!(Peek::new(b"").is_none());
        assert!(Peek::new(&[0xff, b' ', b'x']).is_none());
    }

    #[test]
    fn canonical_table_consistent() {
        for (long, short) in KNOWN {
            assert_eq!(canonical(long), Some(*long));
            assert_eq!(canonical(&long.to_ascii_uppercase()), Some(*long));
            if let Some(s) = short {
                assert_eq!(canonical(s), Some(*long));
                assert_eq!(canonical(&s.to_ascii_uppercase()), Some(*long));
            }
        }
        for l in LIST_HEADERS {
            assert_eq!(canonical(l), Some(*l), "list header {l} not canonical");
        }
        assert_eq!(canonical("X-Unknown"), None);
        assert_eq!(canonical("q"), None);
        assert_eq!(canonical(&"a".repeat(100)), None);
    }

    #[test]
    fn methods() {
        assert_eq!("INVITE".parse::<Method>().unwrap(), Method::Invite);
        assert_eq!(
            "invite".parse::<Method>().unwrap(),
            Method::Extension("invite".into())
        );
        assert!("".parse::<Method>().is_err());
        assert!("IN VITE".parse::<Method>().is_err());
        assert_eq!(Method::Extension("FOO".into()).to_string(), "FOO");
        assert!(new_branch().starts_with("z9hG4bK"));
        assert_ne!(new_tag(), new_tag());
    }
}
