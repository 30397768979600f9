//! UAS request checks that come before any method-specific processing (RFC 3261 §8.2).
//!
//! The message codec ([`super::message`]) decides whether a datagram is well formed; this layer
//! decides whether a well-formed request is one this user agent server can process at all, and
//! if not, which response RFC 3261 names for it, in the order §8.2 gives:
//!
//! 1. method inspection (§8.2.1): an unrecognised method gets 501 (405 is for methods we know
//!    but do not allow, which the call engine answers itself);
//! 2. header inspection (§8.2.2.1): a Request-URI scheme we do not serve gets 416;
//! 3. extensions (§8.2.2.3): option tags in `Require` we do not support get 420 with
//!    `Unsupported` (never for ACK or CANCEL);
//! 4. content processing (§8.2.3): an INVITE body of a type other than SDP gets 415 with
//!    `Accept`; an INVITE whose `Accept` excludes SDP (we would answer with SDP) gets 406.
//!
//! Pure functions of the request: no state, no clock.

use super::message::{new_tag, Method, Request, Response};
use super::uri::Uri;

/// Option tags we support (RFC 3261 §8.2.2.3); none yet.
const SUPPORTED: &[&str] = &[];

/// What §8.2 says about `req`: `None` to process it, or the response to send instead.
pub fn check_request(req: &Request, allow: &str) -> Option<Response> {
    let mut r = verdict(req, allow)?;
    if r.headers.get("To").is_some_and(|t| !t.contains("tag=")) {
        r.set_to_tag(&new_tag());
    }
    Some(r)
}

fn verdict(req: &Request, allow: &str) -> Option<Response> {
    // §8.2.1: method inspection. Every method the engine knows has its own variant (it answers
    // the ones it does not serve with 405).
    if let Method::Extension(_) = &req.method {
        let mut r = Response::for_request(req, 501);
        r.headers.set("Allow", allow);
        return Some(r);
    }
    if req.method == Method::Ack {
        // No response to an ACK, ever.
        return None;
    }
    // §8.2.2.1: Request-URI scheme.
    match Uri::parse(&req.uri) {
        Ok(u) if u.is_sip() || u.scheme == "tel" => {}
        _ => return Some(Response::for_request(req, 416)),
    }
    // §8.2.2.3: Require.
    if req.method != Method::Cancel {
        let unsupported: Vec<&str> = req
            .headers
            .get_all("Require")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            let mut r = Response::for_request(req, 420);
            r.headers.set("Unsupported", unsupported.join(", "));
            return Some(r);
        }
    }
    // §8.2.3: content processing (only INVITE bodies matter to us).
    if req.method == Method::Invite {
        if !req.body.is_empty() {
            let ctype = req.headers.get("Content-Type").map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
            if ctype.as_deref() != Some("application/sdp") {
                let mut r = Response::for_request(req, 415);
                r.headers.set("Accept", "application/sdp");
                return Some(r);
            }
        }
        let accepts: Vec<String> = req
            .headers
            .get_all("Accept")
            .flat_map(|v| v.split(','))
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|t| !t.is_empty())
            .collect();
        let sdp_ok = accepts.is_empty()
            || accepts
                .iter()
                .any(|t| t == "application/sdp" || t == "application/*" || t == "*/*");
        if !sdp_ok {
            let mut r = Response::for_request(req, 406);
            r.headers.set(
                "Warning",
                "399 tandem \"we answer with application/sdp only\"",
            );
            return Some(r);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Message;

    fn req(start: &str, extra: &str, body: &str) -> Request {
        let m = format!(
            "{start} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
             To: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            start.split(' ').next().unwrap_or(""),
            body.len()
        );
        match Message::parse(m.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn code(r: &Request) -> Option<u16> {
        check_request(r, "INVITE, ACK").map(|r| r.code)
    }

    #[test]
    fn verdicts() {
        assert_eq!(code(&req("OPTIONS sip:b@h", "", "")), None);
        assert_eq!(code(&req("FOO sip:b@h", "", "")), Some(501));
        assert_eq!(code(&req("SUBSCRIBE sip:b@h", "", "")), None);
        assert_eq!(code(&req("OPTIONS foo:opaque", "", "")), Some(416));
        assert_eq!(code(&req("OPTIONS tel:+123", "", "")), None);
        let r = req("OPTIONS sip:b@h", "Require: x, y\r\n", "");
        let resp = check_request(&r, "").unwrap();
        assert_eq!(resp.code, 420);
        assert_eq!(resp.headers.get("Unsupported"), Some("x, y"));
        assert_eq!(code(&req("CANCEL sip:b@h", "Require: x\r\n", "")), None);
        assert_eq!(
            code(&req("INVITE sip:b@h", "Content-Type: text/plain\r\n", "hi")),
            Some(415)
        );
        assert_eq!(
            code(&req(
                "INVITE sip:b@h",
                "Accept: text/x\r\nContent-Type: application/sdp\r\n",
                "v=0"
            )),
            Some(406)
        );
        assert_eq!(
            code(&req(
                "INVITE sip:b@h",
                "Accept: application/sdp;q=1\r\nContent-Type: Application/SDP\r\n",
                "v=0"
            )),
            None
        );
    }
}
