//! SDP text to [`SessionDescription`].
//!
//! Strict where a mistake would misroute media (addresses, ports, payload types, rtpmap
//! syntax), lenient where peers commonly deviate and nothing depends on it (LF line ends,
//! blank lines, unknown line types, a host name in `o=`, an empty `s=`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Direction, Media, Origin, RtpMap, SdpError, SessionDescription};

/// Upper bound on `m=` sections; real calls have a handful.
const MAX_MEDIA: usize = 64;

pub(super) fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    let err = |line: usize, msg: String| SdpError { line, msg };
    let mut origin = None;
    let mut session_name = None;
    let mut connection = None;
    let mut session_direction = None;
    let mut attributes = Vec::new();
    // Each media with its m= line number and explicit direction, if any.
    let mut media: Vec<(Media, usize, Option<Direction>)> = Vec::new();
    let mut seen_version = false;

    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
            return Err(err(
                line_no,
                format!("expected '<letter>=<value>', found '{line}'"),
            ));
        }
        let (kind, value) = (bytes[0], &line[2..]);
        if !seen_version {
            if kind != b'v' {
                return Err(err(line_no, "the first line must be 'v=0'".into()));
            }
            if value.trim() != "0" {
                return Err(err(line_no, format!("unsupported SDP version '{value}'")));
            }
            seen_version = true;
            continue;
        }
        match (kind, media.last_mut()) {
            (b'v', _) => return Err(err(line_no, "second 'v=' line".into())),
            (b'o', None) => origin = Some(parse_origin(value).map_err(|m| err(line_no, m))?),
            (b's', None) => session_name = Some(value.to_string()),
            (b'c', None) => {
                connection = Some(parse_connection(value).map_err(|m| err(line_no, m))?)
            }
            (b'c', Some((m, _, _))) => {
                m.connection = Some(parse_connection(value).map_err(|m| err(line_no, m))?)
            }
            (b'a', None) => match Direction::from_attr(value.trim()) {
                Some(d) => session_direction = Some(d),
                None => attributes.push(value.to_string()),
            },
            (b'a', Some((m, _, dir))) => {
                media_attribute(m, dir, value).map_err(|m| err(line_no, m))?
            }
            (b'm', _) => {
                if media.len() >= MAX_MEDIA {
                    return Err(err(line_no, format!("more than {MAX_MEDIA} m= sections")));
                }
                let m = parse_media(value).map_err(|m| err(line_no, m))?;
                media.push((m, line_no, None));
            }
            (b'o' | b's', Some(_)) => {
                return Err(err(
                    line_no,
                    format!("'{}=' after the first m= line", kind as char),
                ))
            }
            // t= b= i= u= e= p= z= k= r= and unknown types: not needed (RFC 4566 says ignore
            // unknown types).
            _ => {}
        }
    }
    if !seen_version {
        return Err(err(0, "empty SDP body".into()));
    }
    let origin = origin.ok_or_else(|| err(0, "missing 'o=' line".into()))?;
    let session_name = session_name.ok_or_else(|| err(0, "missing 's=' line".into()))?;
    let mut out = Vec::with_capacity(media.len());
    for (mut m, line_no, dir) in media {
        if m.port != 0 && m.connection.is_none() && connection.is_none() {
            return Err(err(
                line_no,
                format!("no 'c=' line for active {} stream", m.kind),
            ));
        }
        m.direction = dir.or(session_direction).unwrap_or_default();
        out.push(m);
    }
    Ok(SessionDescription {
        origin,
        session_name,
        connection,
        media: out,
        attributes,
    })
}

fn parse_origin(value: &str) -> Result<Origin, String> {
    let f: Vec<&str> = value.split_whitespace().collect();
    let [username, id, version, nettype, addrtype, addr] = f.as_slice() else {
        return Err(format!(
            "'o={value}': expected 'o=<username> <sess-id> <sess-version> IN IP4|IP6 <address>'"
        ));
    };
    let sess_id = id
        .parse()
        .map_err(|_| format!("o= sess-id '{id}' is not a number"))?;
    let sess_version = version
        .parse()
        .map_err(|_| format!("o= sess-version '{version}' is not a number"))?;
    let addr = match parse_address(nettype, addrtype, addr) {
        Ok(a) => a,
        // A host name is legal in o= and never used to send media.
        Err(_) if *addrtype == "IP6" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        Err(_) if *addrtype == "IP4" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Err(e) => return Err(e),
    };
    Ok(Origin {
        username: (*username).to_string(),
        sess_id,
        sess_version,
        addr,
    })
}

fn parse_connection(value: &str) -> Result<IpAddr, String> {
    let f: Vec<&str> = value.split_whitespace().collect();
    let [nettype, addrtype, addr] = f.as_slice() else {
        return Err(format!("'c={value}': expected 'c=IN IP4|IP6 <address>'"));
    };
    // Multicast TTL / count suffixes (`224.2.1.1/127/3`) are not part of the address.
    let addr = addr.split('/').next().unwrap_or(addr);
    parse_address(nettype, addrtype, addr)
}

fn parse_address(nettype: &str, addrtype: &str, addr: &str) -> Result<IpAddr, String> {
    if nettype != "IN" {
        return Err(format!("network type '{nettype}' is not 'IN'"));
    }
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{addr}' is not an IP address"))?;
    match (addrtype, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        ("IP4" | "IP6", _) => Err(format!("address '{addr}' does not match type {addrtype}")),
        _ => Err(format!("address type '{addrtype}' is not IP4 or IP6")),
    }
}

fn parse_media(value: &str) -> Result<Media, String> {
    let mut f = value.split_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
        return Err(format!(
            "'m={value}': expected 'm=<media> <port> <proto> <formats>'"
        ));
    };
    // `port/count` (RFC 4566 hierarchical encoding): the count is not used here.
    let port_text = port.split('/').next().unwrap_or(port);
    let port = port_text
        .parse::<u16>()
        .map_err(|_| format!("m= port '{port}' is not a port"))?;
    let mut proto = proto.to_string();
    let mut formats = Vec::new();
    if proto.to_ascii_uppercase().contains("RTP") {
        for fmt in f {
            let pt = fmt
                .parse::<u8>()
                .ok()
                .filter(|&pt| pt <= 127)
                .ok_or_else(|| format!("m= payload type '{fmt}' is not a number 0-127"))?;
            // A repeated payload type carries no extra meaning; keep the first.
            if !formats.contains(&pt) {
                formats.push(pt);
            }
        }
    } else {
        for fmt in f {
            proto.push(' ');
            proto.push_str(fmt);
        }
    }
    Ok(Media {
        kind: kind.to_string(),
        port,
        proto,
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        direction: Direction::SendRecv,
        rtcp_port: None,
        attributes: Vec::new(),
    })
}

fn media_attribute(m: &mut Media, dir: &mut Option<Direction>, value: &str) -> Result<(), String> {
    let (name, arg) = match value.split_once(':') {
        Some((n, a)) => (n.trim(), Some(a.trim())),
        None => (value.trim(), None),
    };
    let is_rtp = !m.formats.is_empty();
    match (name.to_ascii_lowercase().as_str(), arg) {
        ("rtpmap", Some(a)) if is_rtp => match parse_rtpmap(a) {
            Ok(map) => {
                if !m.rtpmaps.iter().any(|r| r.pt == map.pt) {
                    m.rtpmaps.push(map);
                }
            }
            // `a=rtpmap:31 LPC` (no clock rate) is common enough in the wild (RFC 4475's
            // messages carry it) to not reject the call: drop it, so the payload type is read
            // by its static assignment or as unknown, and never written back malformed.
            Err(e) => tracing::debug!("SDP: ignoring {e}"),
        },
        ("fmtp", Some(a)) if is_rtp => {
            let (pt, params) = a.split_once(' ').unwrap_or((a, ""));
            let pt = pt
                .parse::<u8>()
                .map_err(|_| format!("a=fmtp payload type '{pt}' is not a number"))?;
            m.fmtps.push((pt, params.trim().to_string()));
        }
        ("ptime", Some(a)) => {
            // Some peers write `20.0`; a fraction of a millisecond means nothing here.
            let ms = a.split('.').next().unwrap_or(a);
            let ms = ms.parse::<u32>().ok().filter(|&p| p > 0 && p <= 1000);
            m.ptime = Some(ms.ok_or_else(|| format!("a=ptime '{a}' is not 1-1000 ms"))?);
        }
        ("rtcp", Some(a)) => {
            let port = a.split_whitespace().next().unwrap_or(a);
            m.rtcp_port = Some(
                port.parse()
                    .map_err(|_| format!("a=rtcp port '{port}' is not a port"))?,
            );
        }
        (n, None) if Direction::from_attr(n).is_some() => *dir = Direction::from_attr(n),
        _ => m.attributes.push(value.to_string()),
    }
    Ok(())
}

/// `<pt> <encoding>/<clock rate>[/<channels>]`.
fn parse_rtpmap(a: &str) -> Result<RtpMap, String> {
    let bad = || format!("a=rtpmap:{a}: expected '<pt> <encoding>/<clock rate>[/<channels>]'");
    let (pt, rest) = a.split_once(' ').ok_or_else(bad)?;
    let pt = pt
        .parse::<u8>()
        .ok()
        .filter(|&p| p <= 127)
        .ok_or_else(bad)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next().filter(|e| !e.is_empty()).ok_or_else(bad)?;
    let clock_rate = parts
        .next()
        .and_then(|r| r.parse::<u32>().ok())
        .ok_or_else(bad)?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse::<u8>().map_err(|_| bad())?),
        None => None,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(RtpMap {
        pt,
        encoding: encoding.to_string(),
        clock_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=rtcp:4001 IN IP4 192.0.2.1\r\na=label:1\r\n";

    #[test]
    fn minimal() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.origin.sess_id, 1);
        assert_eq!(s.origin.sess_version, 2);
        let m = &s.media[0];
        assert_eq!((m.port, m.formats.as_slice()), (4000, &[0, 101][..]));
        assert_eq!(m.rtpmaps.len(), 1);
        assert_eq!(m.fmtp(101), Some("0-16"));
        assert_eq!(m.ptime, Some(20));
        assert_eq!(m.rtcp_port, Some(4001));
        assert_eq!(m.attributes, ["label:1"]);
        assert_eq!(s.audio_addr(), Some("192.0.2.1:4000".parse().unwrap()));
    }

    #[test]
    fn session_direction_is_the_media_default() {
        let text = "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=x\nc=IN IP4 192.0.2.1\na=sendonly\nm=audio 1 RTP/AVP 0\nm=audio 2 RTP/AVP 0\na=inactive\n";
        let s = parse(text).unwrap();
        assert!(s.attributes.is_empty());
        assert_eq!(s.media[0].direction, Direction::SendOnly);
        assert_eq!(s.media[1].direction, Direction::Inactive);
    }

    #[test]
    fn rtpmap_forms() {
        assert_eq!(parse_rtpmap("8 PCMA/8000").unwrap().channels, None);
        assert_eq!(parse_rtpmap("111 opus/48000/2").unwrap().channels, Some(2));
        for bad in [
            "8",
            "8 PCMA",
            "x PCMA/8000",
            "200 X/8000",
            "8 /8000",
            "8 PCMA/8000/2/1",
            "8 PCMA/abc",
        ] {
            assert!(parse_rtpmap(bad).is_err(), "{bad}");
        }
    }
}
