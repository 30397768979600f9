//! Which transport a SIP message travels on, and how the headers Tandem writes say so.
//!
//! Sans-IO helpers shared by the transaction layer, the registrar and the call engine:
//! - [`Transport`] names UDP, TCP or TLS, read from a Via (`SIP/2.0/TCP`) or a URI
//!   (`;transport=tcp`, `sips:`);
//! - [`Locals`] holds Tandem's own address per transport (its listeners), so a request sent
//!   over TCP carries `Via: SIP/2.0/TCP <tcp listener>` and `Contact: <sip:tandem@<tcp
//!   listener>;transport=tcp>` (RFC 3261 §18.1.1, §8.1.1.8);
//! - [`Transport::is_reliable`] drives RFC 3261 §17's timers: on TCP/TLS no request or
//!   non-2xx response is retransmitted (Timers A, E and G are not started) and the wait
//!   timers D, I, J and K are zero.
//!
//! The I/O edge ([`crate::net`]) reads the same Via to pick the socket: a request whose top
//! Via says TCP/TLS goes on a stream connection (opened if needed), never as a datagram.

use std::fmt;
use std::net::SocketAddr;

use super::text::push_addr;
use super::uri::{Uri, Via};

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The Via token (`UDP`, `TCP`, `TLS`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The URI `transport` parameter value (`udp`, `tcp`, `tls`).
    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// TCP and TLS: no retransmissions, zero wait timers (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        self != Transport::Udp
    }

    /// The transport a Via names; anything that is not TCP or TLS (SCTP, WS...) counts as
    /// UDP, the only other transport Tandem speaks.
    pub fn of_via(via: &Via) -> Transport {
        match via.transport.as_str() {
            "TCP" => Transport::Tcp,
            "TLS" => Transport::Tls,
            _ => Transport::Udp,
        }
    }

    /// The transport of the top Via value `value` (UDP when absent or unparsable).
    ///
    /// Reads only the first hop's sent-protocol (`SIP/2.0/TCP`): the rest of the value is
    /// not checked here (the message parser checks the top Via of what arrives).
    pub fn of_via_value(value: Option<&str>) -> Transport {
        let Some(v) = value else {
            return Transport::Udp;
        };
        let mut parts = v.splitn(3, '/');
        let (Some(name), Some(version), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Transport::Udp;
        };
        if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return Transport::Udp;
        }
        let rest = rest.trim_start();
        let t = &rest[..rest
            .bytes()
            .position(|c| !crate::sip::uri::is_token_char(c))
            .unwrap_or(rest.len())];
        if t.eq_ignore_ascii_case("TCP") {
            Transport::Tcp
        } else if t.eq_ignore_ascii_case("TLS") {
            Transport::Tls
        } else {
            Transport::Udp
        }
    }

    /// The transport a URI asks for: `;transport=tcp|tls`, or TLS for `sips:`; UDP otherwise.
    pub fn of_uri(uri: &Uri) -> Transport {
        match uri.param("transport").flatten() {
            Some(t) if t.eq_ignore_ascii_case("tcp") => {
                if uri.scheme == "sips" {
                    Transport::Tls
                } else {
                    Transport::Tcp
                }
            }
            Some(t) if t.eq_ignore_ascii_case("tls") => Transport::Tls,
            _ if uri.scheme == "sips" => Transport::Tls,
            _ => Transport::Udp,
        }
    }

    /// The default port of the transport (5060, or 5061 for TLS).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.param())
    }
}

/// Tandem's own signalling address per transport (its listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locals {
    udp: SocketAddr,
    tcp: Option<SocketAddr>,
    tls: Option<SocketAddr>,
}

impl Locals {
    /// Only a UDP listener.
    pub fn udp(addr: SocketAddr) -> Locals {
        Locals {
            udp: addr,
            tcp: None,
            tls: None,
        }
    }

    /// Add (or replace) the listener of a stream transport; UDP replaces the primary.
    pub fn set(&mut self, t: Transport, addr: SocketAddr) {
        match t {
            Transport::Udp => self.udp = addr,
            Transport::Tcp => self.tcp = Some(addr),
            Transport::Tls => self.tls = Some(addr),
        }
    }

    /// Our address on `t`: its listener, or the UDP address when there is none (a
    /// connection Tandem opened itself still needs a sent-by; RFC 3261 §18.1.1 lets
    /// responses come back on the same connection whatever the port says).
    pub fn addr(&self, t: Transport) -> SocketAddr {
        match t {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp.unwrap_or(self.udp),
            Transport::Tls => self.tls.unwrap_or(self.udp),
        }
    }

    /// `SIP/2.0/<T> <addr>;branch=<branch>;rport`, the Via of a request we send on `t`.
    pub fn via(&self, t: Transport, branch: &str) -> String {
        let mut v = String::with_capacity(48 + branch.len());
        v.push_str("SIP/2.0/");
        v.push_str(t.via_token());
        v.push(' ');
        push_addr(&mut v, self.addr(t));
        v.push_str(";branch=");
        v.push_str(branch);
        v.push_str(";rport");
        v
    }

    /// `sip:tandem@<addr>` with `;transport=tcp|tls` on stream transports: our Contact URI.
    pub fn contact_uri(&self, t: Transport) -> String {
        let mut u = String::with_capacity(48);
        u.push_str("sip:tandem@");
        push_addr(&mut u, self.addr(t));
        if t != Transport::Udp {
            u.push_str(";transport=");
            u.push_str(t.param());
        }
        u
    }
}

/// Where to open a connection for a request to `uri` when none is open to its next hop:
/// the URI's host and port (the transport's default port when absent), if the host is an IP
/// address. Tandem does no DNS here; a name gives `None`.
pub fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let u = Uri::parse(uri).ok()?;
    let ip: std::net::IpAddr = u.host.parse().ok()?;
    let port = u
        .port
        .unwrap_or_else(|| Transport::of_uri(&u).default_port());
    Some(SocketAddr::new(ip, port))
}

/// How the edge sends a request: `Some((transport, fallback))` when its top Via names TCP or
/// TLS (`fallback`: the Request-URI's address, where a new connection goes when none is open
/// to the next hop, unless a Route header names another hop); `None` for UDP requests and for
/// responses (those follow their Via, RFC 3261 §18.2.2).
pub fn stream_request(msg: &super::Message) -> Option<(Transport, Option<SocketAddr>)> {
    let super::Message::Request(req) = msg else {
        return None;
    };
    let t = Transport::of_via_value(req.headers.get("Via"));
    if !t.is_reliable() {
        return None;
    }
    let fallback = if req.headers.get("Route").is_some() {
        None
    } else {
        uri_addr(&req.uri)
    };
    Some((t, fallback))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_from_via_and_uri() {
        let v = Via::parse("SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1").unwrap();
        assert_eq!(Transport::of_via(&v), Transport::Tcp);
        assert_eq!(
            Transport::of_via_value(Some("SIP/2.0/TLS h;branch=z9hG4bK1, SIP/2.0/UDP g")),
            Transport::Tls
        );
        assert_eq!(Transport::of_via_value(Some("garbage")), Transport::Udp);
        assert_eq!(Transport::of_via_value(None), Transport::Udp);
        let u = |s: &str| Transport::of_uri(&Uri::parse(s).unwrap());
        assert_eq!(u("sip:a@h;transport=TCP"), Transport::Tcp);
        assert_eq!(u("sip:a@h;transport=tls"), Transport::Tls);
        assert_eq!(u("sips:a@h"), Transport::Tls);
        assert_eq!(u("sips:a@h;transport=tcp"), Transport::Tls);
        assert_eq!(u("sip:a@h"), Transport::Udp);
        assert!(Transport::Tcp.is_reliable() && !Transport::Udp.is_reliable());
    }

    #[test]
    fn via_and_contact_name_the_transport_and_its_listener() {
        let mut l = Locals::udp("127.0.0.1:5060".parse().unwrap());
        assert_eq!(
            l.via(Transport::Tcp, "z9hG4bKx"),
            "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKx;rport"
        );
        l.set(Transport::Tcp, "127.0.0.1:5062".parse().unwrap());
        l.set(Transport::Tls, "127.0.0.1:5061".parse().unwrap());
        assert_eq!(
            l.via(Transport::Tcp, "z9hG4bKx"),
            "SIP/2.0/TCP 127.0.0.1:5062;branch=z9hG4bKx;rport"
        );
        assert_eq!(
            l.contact_uri(Transport::Tls),
            "sip:tandem@127.0.0.1:5061;transport=tls"
        );
        assert_eq!(l.contact_uri(Transport::Udp), "sip:tandem@127.0.0.1:5060");
        assert_eq!(
            uri_addr("sip:1002@127.0.0.1:5070;transport=tcp"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
        assert_eq!(
            uri_addr("sips:1002@127.0.0.1"),
            Some("127.0.0.1:5061".parse().unwrap())
        );
        assert_eq!(uri_addr("sip:1002@phone.example"), None);
        assert_eq!(uri_addr("not a uri"), None);
    }
}
