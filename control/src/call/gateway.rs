//! Gateways: the other signalling worlds (H.323, ISDN PRI, analog lines) reach the call
//! engine as trusted SIP peers.
//!
//! Each interworking function (IWF) turns its protocol into SIP and talks to the engine over
//! a loopback SIP socket of its own, the way a Cisco or Huawei voice gateway talks SIP to a
//! PBX. The engine learns of it with [`Engine::add_gateway`]:
//!
//! - `Dial(TECH/resource)` with a technology served by a gateway sends an INVITE to the
//!   gateway, the resource (percent-encoded) as the Request-URI user part;
//! - an INVITE arriving from the gateway's address is not challenged (the gateway vouches
//!   for its own side) and runs the dialplan in the gateway's context.
//!
//! Media needs no special case: the gateway's SDP names the RTP endpoint (the H.323 peer's
//! own RTP address, or the IWF's B-channel RTP port) and the dataplane anchors it like any
//! other leg.
//!
//! Caller identity follows RFC 3323/3325: a gateway is inside the trust domain, so it
//! receives `P-Asserted-Identity` and `Privacy`; a SIP phone gets the anonymous From of
//! RFC 3323 §4.1.1.3 when the caller asked for privacy (`Privacy: id`), and never a
//! `P-Asserted-Identity`.

use std::net::SocketAddr;

use super::{Engine, Media};
use crate::sdp::Codec;
use crate::sip::transport::Transport;
use crate::sip::Request;

/// A trusted peer speaking SIP on behalf of another technology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The Dial technology it serves (`H323`, `DAHDI`), matched case-insensitively.
    pub tech: String,
    /// Its SIP address: INVITEs from here are trusted, ours go here.
    pub addr: SocketAddr,
    /// Dialplan context for the calls it sends in.
    pub context: String,
    /// Voice codecs it may be offered (empty: any transcodable codec).
    pub codecs: Vec<Codec>,
}

/// Where a B-leg INVITE goes and how it is addressed.
pub(super) struct DialTo {
    /// Label for logs, CDR `dstchannel` and `show calls` (`1002`, `H323/1234`).
    pub label: String,
    /// Channel technology for the CDR (`SIP`, `H323`).
    pub tech: String,
    pub request_uri: String,
    pub to_uri: String,
    pub dest: SocketAddr,
    /// The transport to reach it on (a gateway is always on loopback UDP).
    pub transport: Transport,
    pub codecs: Vec<Codec>,
    /// Inside the trust domain (RFC 3325): may see P-Asserted-Identity.
    pub trusted: bool,
}

impl<M: Media> Engine<M> {
    /// Route `Dial(tech/...)` to `gw`, and trust INVITEs from its address.
    pub fn add_gateway(&mut self, gw: Gateway) {
        self.note(format!(
            "gateway {} at {} (calls in to context {})",
            gw.tech, gw.addr, gw.context
        ));
        self.cfg
            .gateways
            .retain(|g| !g.tech.eq_ignore_ascii_case(&gw.tech));
        self.cfg.gateways.push(gw);
    }

    pub(super) fn gateway_at(&self, from: SocketAddr) -> Option<&Gateway> {
        self.cfg.gateways.iter().find(|g| g.addr == from)
    }

    /// The B-leg address for a Dial target served by a gateway.
    pub(super) fn gateway_target(&self, tech: &str, resource: &str) -> Option<DialTo> {
        // `DAHDI/<port>[/<number>]` is an analog port; `DAHDI/g<n>/...` a PRI group.
        let analog = tech.eq_ignore_ascii_case(crate::iwf::pstn::TECH)
            && crate::iwf::analog::is_port_resource(resource);
        let gw = self.cfg.gateways.iter().find(|g| {
            if analog {
                g.tech.starts_with(crate::iwf::analog::TECH)
            } else {
                g.tech.eq_ignore_ascii_case(tech)
            }
        })?;
        let user = percent_encode_user(resource);
        let uri = format!("sip:{user}@{}", gw.addr);
        let tech = if analog { tech } else { gw.tech.as_str() };
        Some(DialTo {
            label: format!("{tech}/{resource}"),
            tech: tech.to_string(),
            request_uri: uri.clone(),
            to_uri: uri,
            dest: gw.addr,
            transport: Transport::Udp,
            codecs: if gw.codecs.is_empty() {
                self.cfg.codecs_for("")
            } else {
                gw.codecs.clone()
            },
            trusted: true,
        })
    }
}

/// The caller asked for identity privacy (RFC 3323 `Privacy: id`, or `header`/`user`).
pub(super) fn wants_privacy(req: &Request) -> bool {
    req.headers.get_all("Privacy").any(|v| {
        v.split([';', ',']).map(str::trim).any(|t| {
            ["id", "header", "user"]
                .iter()
                .any(|p| t.eq_ignore_ascii_case(p))
        })
    })
}

/// The user part of the first `P-Asserted-Identity` (RFC 3325), if any.
pub(super) fn asserted_user(req: &Request) -> Option<String> {
    let v = req
        .headers
        .get("P-Asserted-Identity")
        .or_else(|| req.headers.get("Remote-Party-ID"))?;
    let first = v.split(',').next()?.trim();
    crate::sip::NameAddr::parse(first).ok()?.uri.user
}

/// Percent-encode a Dial resource for a SIP URI user part (RFC 3261 §25.1: unreserved and
/// user-unreserved characters stay).
pub(super) fn percent_encode_user(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_is_escaped_for_the_user_part() {
        assert_eq!(percent_encode_user("5551234"), "5551234");
        assert_eq!(
            percent_encode_user("1234@10.0.0.5:1720"),
            "1234%4010.0.0.5%3A1720"
        );
        assert_eq!(percent_encode_user("g1/5551234"), "g1/5551234");
    }

    #[test]
    fn privacy_tokens() {
        let mut r = Request::new(crate::sip::Method::Invite, "sip:1@x");
        assert!(!wants_privacy(&r));
        r.headers.push("Privacy", "none");
        assert!(!wants_privacy(&r));
        r.headers.push("Privacy", "critical; id");
        assert!(wants_privacy(&r));
    }

    #[test]
    fn asserted_identity_user() {
        let mut r = Request::new(crate::sip::Method::Invite, "sip:1@x");
        assert_eq!(asserted_user(&r), None);
        r.headers
            .push("P-Asserted-Identity", "\"Ann\" <sip:5551234@gw.example>");
        assert_eq!(asserted_user(&r).as_deref(), Some("5551234"));
    }
}
