//! The client (UAC) side of digest authentication (RFC 3261 §22.2 and §22.3, RFC 2617,
//! RFC 7616 / RFC 8760): read a `WWW-Authenticate` / `Proxy-Authenticate` challenge from a
//! 401/407 and build the `Authorization` / `Proxy-Authorization` value that answers it.
//!
//! The server side (challenges we issue, credentials we check) is [`super::digest`]; both
//! share its parameter parser and hash. Pure: the caller supplies the client nonce and the
//! nonce count, so answers are reproducible in tests.

use super::digest::{self, Algorithm, DigestError};
use super::Response;

/// One parsed digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth` (then we answer with `nc` and `cnonce`).
    pub qop_auth: bool,
    /// `stale=true`: our last answer was right but its nonce aged out.
    pub stale: bool,
}

impl Challenge {
    /// Parses a `Digest ...` challenge value. An algorithm we cannot compute (`-sess`
    /// forms, unknown names) or a qop list without `auth` is refused, so the caller can try
    /// the next challenge of the response.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let t = value.trim();
        let (scheme, rest) = t.split_once([' ', '\t']).unwrap_or((t, ""));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest(scheme.chars().take(40).collect()));
        }
        let (mut realm, mut nonce, mut opaque) = (None, None, None);
        let mut algorithm = Algorithm::Md5;
        let mut qop: Option<String> = None;
        let mut stale = false;
        for (k, v) in digest::parse_auth_params(rest)? {
            match k.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "nonce" => nonce = Some(v),
                "opaque" => opaque = Some(v),
                "stale" => stale = v.eq_ignore_ascii_case("true"),
                "qop" => qop = Some(v),
                "algorithm" => {
                    algorithm = match v.to_ascii_uppercase().as_str() {
                        "MD5" => Algorithm::Md5,
                        "SHA-256" => Algorithm::Sha256,
                        _ => return Err(DigestError::Malformed("unsupported algorithm")),
                    }
                }
                _ => {}
            }
        }
        let qop_auth = match qop {
            None => false,
            Some(q) => {
                if !q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) {
                    return Err(DigestError::Malformed("qop offers no auth"));
                }
                true
            }
        };
        Ok(Challenge {
            realm: realm.ok_or(DigestError::Missing("realm"))?,
            nonce: nonce.ok_or(DigestError::Missing("nonce"))?,
            opaque,
            algorithm,
            qop_auth,
            stale,
        })
    }

    /// The first usable challenge of a 401 (`WWW-Authenticate`) or 407
    /// (`Proxy-Authenticate`) response, for `realm` when given, with the header name the
    /// answer goes in (`Authorization` / `Proxy-Authorization`).
    pub fn from_response(
        resp: &Response,
        realm: Option<&str>,
    ) -> Option<(&'static str, Challenge)> {
        let (ask, answer) = match resp.code {
            401 => ("WWW-Authenticate", "Authorization"),
            407 => ("Proxy-Authenticate", "Proxy-Authorization"),
            _ => return None,
        };
        let mut found: Vec<Challenge> = resp
            .headers
            .get_all(ask)
            .filter_map(|v| Challenge::parse(v).ok())
            .filter(|c| realm.is_none_or(|r| c.realm == r))
            .collect();
        // MD5 first: it is what every carrier accepts; SHA-256 when it is the only offer.
        found.sort_by_key(|c| c.algorithm != Algorithm::Md5);
        found.into_iter().next().map(|c| (answer, c))
    }

    /// The credentials value answering this challenge for `method` on `uri`. `nc` counts
    /// the uses of this nonce (from 1); `cnonce` is the client nonce (random per answer).
    pub fn answer(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let nc_text = format!("{nc:08x}");
        let qop = self.qop_auth.then_some((nc_text.as_str(), cnonce));
        let response = digest::response(
            self.algorithm,
            username,
            &self.realm,
            password,
            method,
            uri,
            &self.nonce,
            qop,
        );
        let mut s = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            response,
            self.algorithm.as_str()
        );
        if self.qop_auth {
            s.push_str(&format!(
                ", qop=auth, nc={nc_text}, cnonce=\"{}\"",
                quote(cnonce)
            ));
        }
        if let Some(o) = &self.opaque {
            s.push_str(&format!(", opaque=\"{}\"", quote(o)));
        }
        s
    }
}

/// A fresh client nonce.
pub fn new_cnonce() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest::{challenge, verify, Credentials};
    use crate::sip::{Method, Request};

    #[test]
    fn answer_verifies_with_the_server_side() {
        let ch = Challenge::parse(&challenge("tandem", "abc123", Algorithm::Md5, false)).unwrap();
        assert!(ch.qop_auth);
        let v = ch.answer(
            "trunk1",
            "s3cret",
            "INVITE",
            "sip:2001@10.0.0.1",
            1,
            "c0ffee",
        );
        let c = Credentials::parse(&v).unwrap();
        assert_eq!(c.username, "trunk1");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert!(verify(&c, "INVITE", "s3cret"));
        assert!(!verify(&c, "INVITE", "wrong"));
        assert!(!verify(&c, "REGISTER", "s3cret"));
    }

    #[test]
    fn rfc2617_example_without_qop() {
        // RFC 2617 §3.5 (without qop): the legacy response form.
        let ch = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(!ch.qop_auth);
        let v = ch.answer("Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1, "x");
        let c = Credentials::parse(&v).unwrap();
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert!(verify(&c, "GET", "Circle Of Life"));
    }

    #[test]
    fn picks_the_header_by_status_and_realm() {
        let req = Request::new(Method::Invite, "sip:1@x");
        let mut r = Response::for_request(&req, 407);
        r.headers.push(
            "Proxy-Authenticate",
            "Digest realm=\"other\", nonce=\"n1\", algorithm=MD5-sess",
        );
        r.headers.push(
            "Proxy-Authenticate",
            challenge("carrier", "n2", Algorithm::Md5, false),
        );
        let (h, c) = Challenge::from_response(&r, None).unwrap();
        assert_eq!(h, "Proxy-Authorization");
        assert_eq!(c.nonce, "n2");
        assert!(Challenge::from_response(&r, Some("nope")).is_none());
        r.code = 401;
        assert!(
            Challenge::from_response(&r, None).is_none(),
            "401 reads WWW-Authenticate"
        );
        assert!(Challenge::parse("Basic realm=\"x\"").is_err());
        assert!(Challenge::parse("Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"").is_err());
        assert!(Challenge::parse("Digest nonce=\"n\"").is_err());
    }
}
