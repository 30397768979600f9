//! SDP (RFC 4566) session descriptions and RFC 3264 offer/answer for a B2BUA.
//!
//! Sans-IO and allocation-light enough for signalling rates: [`SessionDescription::parse`]
//! turns a body into a typed description (errors name the SDP line), `Display` writes it back
//! with CRLF line ends, and the `negotiate` functions build the SDP Tandem sends:
//! - [`derive_offer`]: caller's offer -> our offer to the callee (same codec order and payload
//!   types, filtered to what we support, our address);
//! - [`derive_answer`]: caller's offer + callee's answer -> our answer to the caller;
//! - [`derive_offer_transcoding`] / [`derive_answer_transcoding`]: the same with transcoding
//!   between legs that share no codec;
//! - [`answer`]: Tandem itself answers (Echo, Playback...) and picks one codec.
//!
//! Only what the media path needs is typed: connection address, port, payload types, rtpmap,
//! fmtp, ptime, direction and rtcp port. Other `a=` lines are kept verbatim. Bandwidth,
//! timing (`t=`, always written as `t=0 0`), `i= u= e= p= z= k= r=` lines are dropped.
//!
//! For transports whose formats are not RTP payload type numbers (`m=image 0 udptl t38`),
//! `formats` stays empty and the format tokens are kept after the transport in `proto`
//! (`"udptl t38"`), so the m-line is written back unchanged.

mod negotiate;
mod parse;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use negotiate::{
    answer, derive_answer, derive_answer_transcoding, derive_offer, derive_offer_transcoding,
    Bridge, Negotiated, NegotiationError,
};

/// A parsed session description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=`.
    pub origin: Origin,
    /// `s=` (may be empty or `-`).
    pub session_name: String,
    /// Session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// `m=` sections in order.
    pub media: Vec<Media>,
    /// Session-level `a=` lines, verbatim without `a=` (a session-level direction is moved to
    /// each media's `direction` instead).
    pub attributes: Vec<String>,
}

/// `o=username sess-id sess-version IN IP4|IP6 address`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Username, `-` when none.
    pub username: String,
    /// Session id.
    pub sess_id: u64,
    /// Version, increased by the sender whenever the description changes.
    pub sess_version: u64,
    /// Address. A host name in a received `o=` (legal, and never used for media) reads as the
    /// unspecified address of its family.
    pub addr: IpAddr,
}

/// One `m=` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `image`, `application`...
    pub kind: String,
    /// RTP port; 0 means the stream is rejected/disabled.
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`... (for non-RTP transports, followed by the format tokens).
    pub proto: String,
    /// Payload types in preference order.
    pub formats: Vec<u8>,
    /// Media-level `c=` address.
    pub connection: Option<IpAddr>,
    /// `a=rtpmap` lines as received (static payload types may have none: see
    /// [`Media::rtpmap`]).
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:<pt> <params>`.
    pub fmtps: Vec<(u8, String)>,
    /// `a=ptime` in milliseconds.
    pub ptime: Option<u32>,
    /// `a=sendrecv|sendonly|recvonly|inactive` (media level, else session level, else
    /// sendrecv).
    pub direction: Direction,
    /// `a=rtcp:<port>` (RFC 3605).
    pub rtcp_port: Option<u16>,
    /// Other `a=` lines, verbatim without `a=`.
    pub attributes: Vec<String>,
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub pt: u8,
    /// Encoding name as written (compare case-insensitively).
    pub encoding: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels if given.
    pub channels: Option<u8>,
}

/// Media direction, from the point of view of the description's sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    /// Send and receive.
    #[default]
    SendRecv,
    /// The sender only sends (it puts the other side on hold).
    SendOnly,
    /// The sender only receives.
    RecvOnly,
    /// No media either way.
    Inactive,
}

/// An SDP body could not be parsed: which line (1-based) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {msg}")]
pub struct SdpError {
    /// 1-based line number (0 when the problem is the body as a whole).
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

/// The codecs Tandem's dataplane can handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.729 / G.729A.
    G729,
    /// RFC 4733 DTMF events.
    TelephoneEvent,
}

impl Codec {
    /// All codecs, in Tandem's default preference order.
    pub const ALL: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G729, Codec::TelephoneEvent];

    /// The rtpmap encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G729 => "G729",
            Codec::TelephoneEvent => "telephone-event",
        }
    }

    /// RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        8000
    }

    /// The RFC 3551 static payload type, `None` for dynamic ones.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G729 => Some(18),
            Codec::TelephoneEvent => None,
        }
    }

    /// The codec an rtpmap names (case-insensitive), if Tandem has it at that clock rate.
    pub fn from_rtpmap(map: &RtpMap) -> Option<Codec> {
        if map.clock_rate != 8000 || map.channels.is_some_and(|c| c != 1) {
            return None;
        }
        let e = map.encoding.as_str();
        Codec::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(e))
            .or_else(|| e.eq_ignore_ascii_case("G729A").then_some(Codec::G729))
    }
}

impl Direction {
    /// The direction an answerer mirrors: sendonly <-> recvonly.
    pub fn mirrored(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Media that both directions allow (sendrecv ∩ recvonly = recvonly).
    pub fn intersect(self, other: Direction) -> Direction {
        Direction::from_bits(self.bits() & other.bits())
    }

    fn bits(self) -> u8 {
        match self {
            Direction::SendRecv => 0b11,
            Direction::SendOnly => 0b01,
            Direction::RecvOnly => 0b10,
            Direction::Inactive => 0b00,
        }
    }

    fn from_bits(b: u8) -> Direction {
        match b & 0b11 {
            0b11 => Direction::SendRecv,
            0b01 => Direction::SendOnly,
            0b10 => Direction::RecvOnly,
            _ => Direction::Inactive,
        }
    }

    fn from_attr(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.as_str().eq_ignore_ascii_case(name))
    }
}

impl SessionDescription {
    /// Parses an SDP body (CRLF or LF line ends). Requires `v=0` first, `o=` and `s=`, and a
    /// `c=` (session or media level) for every media with a non-zero port.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        parse::parse(text)
    }

    /// The first audio stream with a non-zero port, else the first audio stream.
    pub fn audio(&self) -> Option<&Media> {
        self.audio_index().map(|i| &self.media[i])
    }

    /// Where to send the audio: media `c=` (else session `c=`) and port. `None` if there is no
    /// audio, the port is 0, or the address is unspecified (`0.0.0.0`, the old hold).
    pub fn audio_addr(&self) -> Option<SocketAddr> {
        self.media_addr(self.audio()?)
    }

    /// [`audio_addr`](Self::audio_addr) for any media of this description.
    pub fn media_addr(&self, m: &Media) -> Option<SocketAddr> {
        let ip = m.connection.or(self.connection)?;
        (m.port != 0 && !ip.is_unspecified()).then(|| SocketAddr::new(ip, m.port))
    }

    /// Increments `o=` sess-version, as a re-offer with changed media must.
    pub fn bump_version(&mut self) {
        self.origin.sess_version = self.origin.sess_version.wrapping_add(1);
    }

    fn audio_index(&self) -> Option<usize> {
        let audio = |m: &&Media| m.kind.eq_ignore_ascii_case("audio");
        let active = self.media.iter().position(|m| audio(&m) && m.port != 0);
        active.or_else(|| self.media.iter().position(|m| audio(&m)))
    }
}

impl Media {
    /// The rtpmap of payload type `pt`: the `a=rtpmap` line, else the RFC 3551 static
    /// assignment.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        self.rtpmaps
            .iter()
            .find(|r| r.pt == pt)
            .cloned()
            .or_else(|| static_rtpmap(pt))
    }

    /// The Tandem codec payload type `pt` carries, if any.
    pub fn codec(&self, pt: u8) -> Option<Codec> {
        Codec::from_rtpmap(&self.rtpmap(pt)?)
    }

    /// The first payload type in `formats` that carries `codec`.
    pub fn pt_of(&self, codec: Codec) -> Option<u8> {
        self.formats
            .iter()
            .copied()
            .find(|&pt| self.codec(pt) == Some(codec))
    }

    /// The fmtp parameters of `pt`.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, f)| f.as_str())
    }
}

/// RFC 3551 static payload types (audio and video).
pub(crate) fn static_rtpmap(pt: u8) -> Option<RtpMap> {
    let (encoding, clock_rate, channels) = match pt {
        0 => ("PCMU", 8000, None),
        3 => ("GSM", 8000, None),
        4 => ("G723", 8000, None),
        5 => ("DVI4", 8000, None),
        6 => ("DVI4", 16000, None),
        7 => ("LPC", 8000, None),
        8 => ("PCMA", 8000, None),
        9 => ("G722", 8000, None),
        10 => ("L16", 44100, Some(2)),
        11 => ("L16", 44100, None),
        12 => ("QCELP", 8000, None),
        13 => ("CN", 8000, None),
        14 => ("MPA", 90000, None),
        15 => ("G728", 8000, None),
        16 => ("DVI4", 11025, None),
        17 => ("DVI4", 22050, None),
        18 => ("G729", 8000, None),
        25 => ("CelB", 90000, None),
        26 => ("JPEG", 90000, None),
        28 => ("nv", 90000, None),
        31 => ("H261", 90000, None),
        32 => ("MPV", 90000, None),
        33 => ("MP2T", 90000, None),
        34 => ("H263", 90000, None),
        _ => return None,
    };
    Some(RtpMap {
        pt,
        encoding: encoding.into(),
        clock_rate,
        channels,
    })
}

fn addr_type(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

/// Writes the description with CRLF line ends. Every format of an active stream gets an
/// rtpmap (static ones too, which some peers insist on); a rejected stream (port 0) is
/// written as its m-line alone.
impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(f, "v=0\r\n")?;
        write!(
            f,
            "o={} {} {} IN {} {}\r\n",
            o.username,
            o.sess_id,
            o.sess_version,
            addr_type(o.addr),
            o.addr
        )?;
        let name = if self.session_name.is_empty() {
            "-"
        } else {
            &self.session_name
        };
        write!(f, "s={name}\r\n")?;
        if let Some(c) = self.connection {
            write!(f, "c=IN {} {c}\r\n", addr_type(c))?;
        }
        write!(f, "t=0 0\r\n")?;
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        for m in &self.media {
            write!(f, "m={} {} {}", m.kind, m.port, m.proto)?;
            for pt in &m.formats {
                write!(f, " {pt}")?;
            }
            write!(f, "\r\n")?;
            if let Some(c) = m.connection {
                write!(f, "c=IN {} {c}\r\n", addr_type(c))?;
            }
            if m.port == 0 {
                continue;
            }
            for &pt in &m.formats {
                if let Some(r) = m.rtpmap(pt) {
                    write!(f, "a=rtpmap:{pt} {}/{}", r.encoding, r.clock_rate)?;
                    if let Some(ch) = r.channels {
                        write!(f, "/{ch}")?;
                    }
                    write!(f, "\r\n")?;
                }
                if let Some(p) = m.fmtp(pt) {
                    write!(f, "a=fmtp:{pt} {p}\r\n")?;
                }
            }
            if let Some(p) = m.ptime {
                write!(f, "a=ptime:{p}\r\n")?;
            }
            if let Some(p) = m.rtcp_port {
                write!(f, "a=rtcp:{p}\r\n")?;
            }
            for a in &m.attributes {
                write!(f, "a={a}\r\n")?;
            }
            write!(f, "a={}\r\n", m.direction.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_lookup_is_case_insensitive_and_rate_checked() {
        let map = |enc: &str, rate, ch| RtpMap {
            pt: 96,
            encoding: enc.into(),
            clock_rate: rate,
            channels: ch,
        };
        assert_eq!(
            Codec::from_rtpmap(&map("pcmu", 8000, None)),
            Some(Codec::Pcmu)
        );
        assert_eq!(
            Codec::from_rtpmap(&map("TELEPHONE-EVENT", 8000, None)),
            Some(Codec::TelephoneEvent)
        );
        assert_eq!(
            Codec::from_rtpmap(&map("telephone-event", 48000, None)),
            None
        );
        assert_eq!(Codec::from_rtpmap(&map("PCMA", 8000, Some(2))), None);
        assert_eq!(
            Codec::from_rtpmap(&map("g729a", 8000, Some(1))),
            Some(Codec::G729)
        );
        assert_eq!(Codec::from_rtpmap(&map("opus", 48000, Some(2))), None);
        for c in Codec::ALL {
            assert_eq!(c.clock_rate(), 8000);
            if let Some(pt) = c.static_pt() {
                assert_eq!(
                    static_rtpmap(pt).and_then(|m| Codec::from_rtpmap(&m)),
                    Some(c)
                );
            }
        }
    }

    #[test]
    fn direction_algebra() {
        use Direction::*;
        assert_eq!(SendOnly.mirrored(), RecvOnly);
        assert_eq!(Inactive.mirrored(), Inactive);
        assert_eq!(SendRecv.intersect(RecvOnly), RecvOnly);
        assert_eq!(SendOnly.intersect(RecvOnly), Inactive);
        assert_eq!(SendRecv.intersect(SendRecv), SendRecv);
    }
}
