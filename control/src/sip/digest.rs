//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616 / RFC 8760):
//! challenges, credential parsing, response computation and verification, MD5 and SHA-256,
//! `qop=auth` and the legacy no-qop form.
//!
//! Nonces are stateless: [`NonceMint`] packs the mint time and a random salt with a truncated
//! SHA-256 MAC keyed by a server secret, so any nonce we issued can be checked (and aged) without
//! remembering it. Replay (a repeated `nc` for one nonce) is refused by the registrar, which
//! keeps the per-nonce counts.

use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256};

/// Digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The `algorithm=` token.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn hash(self, data: &str) -> String {
        let mut out = Hex::default();
        self.hash_parts(&[data], &mut out).to_string()
    }

    /// The lower-case hex digest of `parts` joined by `:`, written into `out` (no allocation:
    /// verification runs on every authenticated request).
    fn hash_parts<'a>(self, parts: &[&str], out: &'a mut Hex) -> &'a str {
        fn feed<D: Digest>(mut d: D, parts: &[&str]) -> D {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            d
        }
        match self {
            Algorithm::Md5 => out.set(&feed(Md5::new(), parts).finalize()),
            Algorithm::Sha256 => out.set(&feed(Sha256::new(), parts).finalize()),
        }
    }

    /// Parses an `algorithm=` value: `(algorithm, is_session_variant)`; absent means MD5.
    fn from_param(p: Option<&str>) -> Option<(Algorithm, bool)> {
        let p = p.unwrap_or("MD5").trim_matches('"');
        let is = |name: &str| p.eq_ignore_ascii_case(name);
        match () {
            _ if is("MD5") => Some((Algorithm::Md5, false)),
            _ if is("MD5-SESS") => Some((Algorithm::Md5, true)),
            _ if is("SHA-256") => Some((Algorithm::Sha256, false)),
            _ if is("SHA-256-SESS") => Some((Algorithm::Sha256, true)),
            _ => None,
        }
    }
}

/// A hex digest on the stack: up to 32 bytes (SHA-256) as 64 lower-case hex digits.
struct Hex {
    buf: [u8; 64],
    len: usize,
}

impl Default for Hex {
    fn default() -> Hex {
        Hex {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl Hex {
    /// Writes `bytes` (at most 32) as hex and returns the text.
    fn set(&mut self, bytes: &[u8]) -> &str {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let n = bytes.len().min(32);
        for (i, b) in bytes[..n].iter().enumerate() {
            self.buf[2 * i] = DIGITS[usize::from(b >> 4)];
            self.buf[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        self.len = 2 * n;
        self.as_str()
    }

    fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written to `buf[..len]`.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Whether a nonce is one of ours and still fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    Valid,
    /// Ours, but older than the lifetime: challenge again with `stale=true`.
    Stale,
    /// Not minted by us (bad MAC, bad format, from the future).
    Invalid,
}

/// Mints and checks self-validating nonces.
#[derive(Clone)]
pub struct NonceMint {
    secret: [u8; 32],
    lifetime: Duration,
}

impl std::fmt::Debug for NonceMint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceMint")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Clock skew tolerated for nonces "from the future" (several processes, one secret).
const FUTURE_SKEW_SECS: u64 = 5;

impl NonceMint {
    pub fn new(secret: [u8; 32], lifetime: Duration) -> NonceMint {
        NonceMint { secret, lifetime }
    }

    /// The nonce MAC, 32 hex digits, into `out`.
    fn mac<'a>(&self, ts: u64, salt: u64, out: &'a mut Hex) -> &'a str {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(ts.to_be_bytes());
        h.update(salt.to_be_bytes());
        out.set(&h.finalize()[..16])
    }

    /// A new nonce: 64 hex digits (mint time, salt, MAC).
    pub fn mint(&self, now_secs: u64) -> String {
        let salt: u64 = rand::random();
        let mut mac = Hex::default();
        format!(
            "{now_secs:016x}{salt:016x}{}",
            self.mac(now_secs, salt, &mut mac)
        )
    }

    pub fn check(&self, nonce: &str, now_secs: u64) -> NonceState {
        if nonce.len() != 64 || !nonce.bytes().all(|c| c.is_ascii_hexdigit()) {
            return NonceState::Invalid;
        }
        let (Ok(ts), Ok(salt)) = (
            u64::from_str_radix(&nonce[..16], 16),
            u64::from_str_radix(&nonce[16..32], 16),
        ) else {
            return NonceState::Invalid;
        };
        let mut mac = Hex::default();
        let mac = self.mac(ts, salt, &mut mac).as_bytes();
        if !ct_eq_hex(mac, &nonce.as_bytes()[32..]) {
            return NonceState::Invalid;
        }
        if ts > now_secs + FUTURE_SKEW_SECS {
            return NonceState::Invalid;
        }
        if now_secs.saturating_sub(ts) > self.lifetime.as_secs() {
            return NonceState::Stale;
        }
        NonceState::Valid
    }
}

/// Constant-time comparison (length is not secret) of our lower-case hex `ours` with a peer's hex `theirs`, which may
/// be upper case (the same as comparing with `theirs.to_ascii_lowercase()`, without the copy).
fn ct_eq_hex(ours: &[u8], theirs: &[u8]) -> bool {
    ours.len() == theirs.len()
        && ours
            .iter()
            .zip(theirs)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y.to_ascii_lowercase()))
            == 0
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` header value.
pub fn challenge(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> String {
    let mut s = format!(
        "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
        escape(realm),
        escape(nonce),
        alg.as_str()
    );
    if stale {
        s.push_str(", stale=true");
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Malformed `Authorization` / `Proxy-Authorization` values. Caused by the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// Another scheme (Basic, Bearer, an unknown one).
    #[error("not a Digest credential: {0:?}")]
    NotDigest(String),
    /// Broken parameter syntax.
    #[error("malformed digest credential: {0}")]
    Malformed(&'static str),
    /// A required parameter is absent.
    #[error("digest credential lacks {0}")]
    Missing(&'static str),
}

/// Parsed digest credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub nc: Option<String>,
    pub qop: Option<String>,
    pub opaque: Option<String>,
}

impl Credentials {
    pub fn parse(header_value: &str) -> Result<Credentials, DigestError> {
        let t = header_value.trim();
        let (scheme, rest) = t.split_once([' ', '\t']).unwrap_or((t, ""));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest(scheme.chars().take(40).collect()));
        }
        let mut c = Credentials::default();
        let (mut user, mut realm, mut nonce, mut uri, mut resp) = (None, None, None, None, None);
        for (k, v) in parse_auth_params(rest)? {
            let is = |name: &str| k.eq_ignore_ascii_case(name);
            if is("username") {
                user = Some(v);
            } else if is("realm") {
                realm = Some(v);
            } else if is("nonce") {
                nonce = Some(v);
            } else if is("uri") {
                uri = Some(v);
            } else if is("response") {
                resp = Some(v);
            } else if is("algorithm") {
                c.algorithm = Some(v);
            } else if is("cnonce") {
                c.cnonce = Some(v);
            } else if is("nc") {
                c.nc = Some(v);
            } else if is("qop") {
                c.qop = Some(v);
            } else if is("opaque") {
                c.opaque = Some(v);
            }
        }
        c.username = user.ok_or(DigestError::Missing("username"))?;
        c.realm = realm.ok_or(DigestError::Missing("realm"))?;
        c.nonce = nonce.ok_or(DigestError::Missing("nonce"))?;
        c.uri = uri.ok_or(DigestError::Missing("uri"))?;
        c.response = resp.ok_or(DigestError::Missing("response"))?;
        Ok(c)
    }
}

/// `name=token` / `name="quoted"` pairs separated by commas; quotes removed, escapes resolved.
pub(crate) fn parse_auth_params(s: &str) -> Result<Vec<(String, String)>, DigestError> {
    // One pass over `s` by byte index, values sliced out (a quoted value is copied in runs
    // between escapes); the grammar and errors of the `char`-by-`char` form it replaced.
    let ch = |i: usize| s.get(i..).and_then(|r| r.chars().next());
    let skip_ws = |mut i: usize| {
        while let Some(c) = ch(i).filter(|c| c.is_whitespace()) {
            i += c.len_utf8();
        }
        i
    };
    let mut out = Vec::with_capacity(10);
    let mut i = 0;
    loop {
        while let Some(c) = ch(i).filter(|&c| c.is_whitespace() || c == ',') {
            i += c.len_utf8();
        }
        if i >= s.len() {
            return Ok(out);
        }
        let start = i;
        while let Some(c) = ch(i).filter(|&c| c != '=' && !c.is_whitespace()) {
            i += c.len_utf8();
        }
        let name = &s[start..i];
        i = skip_ws(i);
        if ch(i) != Some('=') || name.is_empty() {
            return Err(DigestError::Malformed("expected name=value"));
        }
        i = skip_ws(i + 1);
        let value = if ch(i) == Some('"') {
            i += 1;
            let mut value = String::new();
            loop {
                let Some(p) = s.as_bytes()[i..]
                    .iter()
                    .position(|&b| b == b'\\' || b == b'"')
                else {
                    return Err(DigestError::Malformed("unterminated quoted value"));
                };
                value.push_str(&s[i..i + p]);
                i += p + 1;
                if s.as_bytes()[i - 1] == b'"' {
                    break;
                }
                // an escape: the next character as it is
                let Some(c) = ch(i) else {
                    return Err(DigestError::Malformed("unterminated quoted value"));
                };
                value.push(c);
                i += c.len_utf8();
            }
            i = skip_ws(i);
            if ch(i).is_some_and(|c| c != ',') {
                return Err(DigestError::Malformed("junk after quoted value"));
            }
            value
        } else {
            let start = i;
            while let Some(c) = ch(i).filter(|&c| c != ',') {
                i += c.len_utf8();
            }
            s[start..i].trim().to_string()
        };
        out.push((name.to_string(), value));
    }
}

/// The `response=` value (RFC 2617 §3.2.2.1). `qop` is `Some((nc, cnonce))` for `qop=auth`.
#[allow(clippy::too_many_arguments)]
pub fn response(
    alg: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha1 = alg.hash(&format!("{username}:{realm}:{password}"));
    compute(alg, &ha1, method, uri, nonce, qop)
}

fn compute(
    alg: Algorithm,
    ha1: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let mut out = Hex::default();
    compute_into(alg, ha1, method, uri, nonce, qop, &mut out).to_string()
}

/// [`compute`] into a stack buffer.
fn compute_into<'a>(
    alg: Algorithm,
    ha1: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
    out: &'a mut Hex,
) -> &'a str {
    let mut ha2 = Hex::default();
    let ha2 = alg.hash_parts(&[method, uri], &mut ha2);
    match qop {
        Some((nc, cnonce)) => alg.hash_parts(&[ha1, nonce, nc, cnonce, "auth", ha2], out),
        None => alg.hash_parts(&[ha1, nonce, ha2], out),
    }
}

/// Checks `c.response` for `method` and `password` (nonce freshness is the caller's job, see
/// [`NonceMint::check`]). Supports MD5, SHA-256 and their `-sess` forms, `qop=auth` and no qop;
/// `auth-int` is refused.
pub fn verify(c: &Credentials, method: &str, password: &str) -> bool {
    let Some((alg, sess)) = Algorithm::from_param(c.algorithm.as_deref()) else {
        return false;
    };
    let qop = match c.qop.as_deref().map(|q| q.trim_matches('"')) {
        None => None,
        Some(q) if q.eq_ignore_ascii_case("auth") => match (&c.nc, &c.cnonce) {
            (Some(nc), Some(cn)) => Some((nc.as_str(), cn.as_str())),
            _ => return false,
        },
        Some(_) => return false,
    };
    let (mut h1, mut h1s, mut expected) = (Hex::default(), Hex::default(), Hex::default());
    let mut ha1 = alg.hash_parts(&[&c.username, &c.realm, password], &mut h1);
    if sess {
        let Some(cnonce) = &c.cnonce else {
            return false;
        };
        ha1 = alg.hash_parts(&[ha1, &c.nonce, cnonce], &mut h1s);
    }
    let expected = compute_into(alg, ha1, method, &c.uri, &c.nonce, qop, &mut expected);
    ct_eq_hex(expected.as_bytes(), c.response.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example() {
        // RFC 2617 §3.5
        let r = response(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
        let hdr = "Digest username=\"Mufasa\",\n realm=\"testrealm@host.com\",\n \
                   nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\n uri=\"/dir/index.html\",\n qop=auth,\n \
                   nc=00000001,\n cnonce=\"0a4f113b\",\n response=\"6629fae49393a05397450978507c4ef1\",\n \
                   opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let c = Credentials::parse(hdr).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert!(verify(&c, "GET", "Circle Of Life"));
        assert!(!verify(&c, "GET", "Circle of Life"));
        assert!(!verify(&c, "POST", "Circle Of Life"));

        // Upper-case hex, a lower-case algorithm token and a quoted, upper-case qop all pass
        // (the comparison and the token matches ignore case); a truncated response does not.
        let mut up = c.clone();
        up.response = c.response.to_ascii_uppercase();
        up.algorithm = Some("md5".into());
        up.qop = Some("\"AUTH\"".into());
        assert!(verify(&up, "GET", "Circle Of Life"));
        up.response.pop();
        assert!(!verify(&up, "GET", "Circle Of Life"));
        let mut other = c.clone();
        other.algorithm = Some("md6".into());
        assert!(!verify(&other, "GET", "Circle Of Life"));
    }

    #[test]
    fn hex_digest_on_the_stack() {
        let mut h = Hex::default();
        assert_eq!(h.set(&[0x00, 0x9f, 0xa0, 0xff]), "009fa0ff");
        assert_eq!(
            Algorithm::Md5.hash("a:b:c"),
            "02cc8f08398a4f3113b554e8105ebe4c"
        );
        let mut j = Hex::default();
        assert_eq!(
            Algorithm::Sha256.hash_parts(&["a", "b", "c"], &mut j),
            Algorithm::Sha256.hash("a:b:c")
        );
        assert_eq!(j.as_str().len(), 64);
    }

    #[test]
    fn rfc7616_examples() {
        // RFC 7616 §3.9.1, both algorithms
        let args = (
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        );
        let qop = Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"));
        let md5 = response(
            Algorithm::Md5,
            args.0,
            args.1,
            args.2,
            args.3,
            args.4,
            args.5,
            qop,
        );
        assert_eq!(md5, "8ca523f5e9506fed4657c9700eebdbec");
        let sha = response(
            Algorithm::Sha256,
            args.0,
            args.1,
            args.2,
            args.3,
            args.4,
            args.5,
            qop,
        );
        assert_eq!(
            sha,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let c = Credentials {
            username: args.0.into(),
            realm: args.1.into(),
            nonce: args.5.into(),
            uri: args.4.into(),
            response: sha.to_uppercase(),
            algorithm: Some("SHA-256".into()),
            cnonce: qop.map(|q| q.1.into()),
            nc: Some("00000001".into()),
            qop: Some("auth".into()),
            opaque: None,
        };
        assert!(verify(&c, "GET", "Circle of Life"));
        let mut wrong_alg = c.clone();
        wrong_alg.algorithm = Some("MD5".into());
        assert!(!verify(&wrong_alg, "GET", "Circle of Life"));
        let mut unknown = c;
        unknown.algorithm = Some("SHA-512-256".into());
        assert!(!verify(&unknown, "GET", "Circle of Life"));
    }

    #[test]
    fn no_qop_and_sess() {
        let r = response(
            Algorithm::Md5,
            "bob",
            "tandem",
            "pw",
            "REGISTER",
            "sip:tandem",
            "n1",
            None,
        );
        let c = Credentials {
            username: "bob".into(),
            realm: "tandem".into(),
            nonce: "n1".into(),
            uri: "sip:tandem".into(),
            response: r,
            ..Default::default()
        };
        assert!(verify(&c, "REGISTER", "pw"));
        let mut int = c.clone();
        int.qop = Some("auth-int".into());
        int.nc = Some("1".into());
        int.cnonce = Some("x".into());
        assert!(!verify(&int, "REGISTER", "pw"));
        let mut missing_nc = c.clone();
        missing_nc.qop = Some("auth".into());
        assert!(!verify(&missing_nc, "REGISTER", "pw"));
        // MD5-sess: HA1 = H(H(u:r:p):nonce:cnonce)
        let ha1 = Algorithm::Md5.hash(&format!("{}:n1:cn", Algorithm::Md5.hash("bob:tandem:pw")));
        let resp = compute(
            Algorithm::Md5,
            &ha1,
            "REGISTER",
            "sip:tandem",
            "n1",
            Some(("00000001", "cn")),
        );
        let sess = Credentials {
            response: resp,
            algorithm: Some("MD5-sess".into()),
            cnonce: Some("cn".into()),
            nc: Some("00000001".into()),
            qop: Some("auth".into()),
            ..c
        };
        assert!(verify(&sess, "REGISTER", "pw"));
    }

    #[test]
    fn credential_parse_errors() {
        assert!(matches!(
            Credentials::parse("Basic dXNlcjpwYXNz"),
            Err(DigestError::NotDigest(_))
        ));
        assert!(matches!(
            Credentials::parse("NoOneKnowsThisScheme opaque-data=here"),
            Err(DigestError::NotDigest(_))
        ));
        assert_eq!(
            Credentials::parse("Digest username=\"a\""),
            Err(DigestError::Missing("realm"))
        );
        assert!(matches!(
            Credentials::parse("Digest username=\"a"),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            Credentials::parse("Digest username"),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            Credentials::parse("Digest username=\"a\" x, realm=r"),
            Err(DigestError::Malformed(_))
        ));
        let c = Credentials::parse(
            "digest USERNAME=\"a\\\"b\", realm=r, nonce=\"n\", uri=\"sip:x\", response=\"00\", algorithm=MD5",
        )
        .unwrap();
        assert_eq!(c.username, "a\"b");
        assert_eq!(c.realm, "r");
        assert_eq!(c.algorithm.as_deref(), Some("MD5"));
    }

    #[test]
    fn nonce_lifecycle() {
        let mint = NonceMint::new([7; 32], Duration::from_secs(300));
        let n = mint.mint(1_000_000);
        assert_eq!(n.len(), 64);
        assert_ne!(n, mint.mint(1_000_000), "salted");
        assert_eq!(mint.check(&n, 1_000_000), NonceState::Valid);
        assert_eq!(mint.check(&n, 1_000_300), NonceState::Valid);
        assert_eq!(mint.check(&n, 1_000_301), NonceState::Stale);
        assert_eq!(
            mint.check(&n, 999_000),
            NonceState::Invalid,
            "from the future"
        );
        let other = NonceMint::new([8; 32], Duration::from_secs(300));
        assert_eq!(other.check(&n, 1_000_000), NonceState::Invalid);
        let mut forged = n.clone().into_bytes();
        forged[15] = if forged[15] == b'0' { b'1' } else { b'0' }; // change the time
        assert_eq!(
            mint.check(std::str::from_utf8(&forged).unwrap(), 1_000_000),
            NonceState::Invalid
        );
        for bad in ["", "xyz", &n[..63], &format!("{}g", &n[..63])] {
            assert_eq!(mint.check(bad, 1_000_000), NonceState::Invalid);
        }
    }

    #[test]
    fn challenge_format() {
        assert_eq!(
            challenge("tandem", "abc", Algorithm::Md5, false),
            "Digest realm=\"tandem\", nonce=\"abc\", algorithm=MD5, qop=\"auth\""
        );
        assert_eq!(
            challenge("t", "n", Algorithm::Sha256, true),
            "Digest realm=\"t\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\", stale=true"
        );
    }
}
