//! The H.245 subset Tandem speaks: `OpenLogicalChannel` for fastStart (G.711
//! A-law/µ-law, G.729, G.729 Annex A over RTP), and the tunnelled
//! `MultimediaSystemControlMessage`s fastStart does not cover:
//! TerminalCapabilitySet(+Ack), MasterSlaveDetermination(+Ack) and
//! UserInputIndication (DTMF). Everything else decodes as
//! [`H245Message::Other`] with its raw bytes.
//!
//! fastStart conventions (H.323 section 8.1.7, as h323peer and common gateways
//! use them): the caller offers per codec one transmit proposal (forward
//! parameters, its RTCP address) and one receive proposal (reverse
//! parameters, its RTP and RTCP addresses). The callee answers with the
//! caller's proposals it accepts: the transmit one carrying the callee's RTP
//! address in `mediaChannel`, the receive one echoing the caller's address.

use std::net::SocketAddr;

use super::h225::NonStandardParameter;
use super::per::{encode, oid_from_arcs, Extensions, Reader, Result, Writer};

/// Audio codecs negotiated over fastStart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 A-law (`g711Alaw64k`), RTP PT 8.
    Pcma,
    /// G.711 µ-law (`g711Ulaw64k`), RTP PT 0.
    Pcmu,
    /// G.729 (`g729`), RTP PT 18.
    G729,
    /// G.729 Annex A (`g729AnnexA`), RTP PT 18.
    G729A,
}

impl Codec {
    /// AudioCapability root index.
    fn cap_index(self) -> u8 {
        match self {
            Codec::Pcma => 1,
            Codec::Pcmu => 3,
            Codec::G729 => 10,
            Codec::G729A => 11,
        }
    }

    /// Frames per packet Tandem proposes (20 ms: 20 G.711 frames of 1 ms,
    /// 2 G.729 frames of 10 ms).
    pub fn frames(self) -> u16 {
        match self {
            Codec::Pcma | Codec::Pcmu => 20,
            Codec::G729 | Codec::G729A => 2,
        }
    }

    /// Static RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcma => 8,
            Codec::Pcmu => 0,
            Codec::G729 | Codec::G729A => 18,
        }
    }

    /// Short name (as h323peer and SDP use it).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcma => "pcma",
            Codec::Pcmu => "pcmu",
            Codec::G729 => "g729",
            Codec::G729A => "g729a",
        }
    }
}

/// `AudioCapability` (modelled alternatives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioCapability {
    /// Root alternatives that are `INTEGER(1..256)` (frames per packet): G.711,
    /// G.722, G.728, G.729 ...
    Frames(u8, u16),
    /// `g7231` (frames, silence suppression).
    G7231(u16, bool),
    /// `nonStandard`.
    NonStandard(NonStandardParameter),
    /// Extension alternatives, raw.
    Ext(u8, Vec<u8>),
}

impl AudioCapability {
    /// The capability for `c` at its default packetisation.
    pub fn of(c: Codec) -> Self {
        AudioCapability::Frames(c.cap_index(), c.frames())
    }

    /// The codec, if Tandem knows it.
    pub fn codec(&self) -> Option<Codec> {
        match self {
            AudioCapability::Frames(1, _) => Some(Codec::Pcma),
            AudioCapability::Frames(3, _) => Some(Codec::Pcmu),
            AudioCapability::Frames(10, _) => Some(Codec::G729),
            AudioCapability::Frames(11, _) => Some(Codec::G729A),
            _ => None,
        }
    }

    fn read(r: &mut Reader) -> Result<Self> {
        Ok(match r.choice(14, true, "AudioCapability")? {
            (false, 0) => AudioCapability::NonStandard(NonStandardParameter::read(r)?),
            (false, 8) => {
                let e = r.bit("g7231 ext")?;
                let _ = e;
                AudioCapability::G7231(
                    r.constrained(1, 256, "maxAl-sduAudioFrames")? as u16,
                    r.bit("silenceSuppression")?,
                )
            }
            (false, i @ (12 | 13)) => {
                let _ = i;
                return Err(r.unsupported("AudioCapability", "IS11172/IS13818 audio"));
            }
            (false, i) => AudioCapability::Frames(i as u8, r.constrained(1, 256, "frames")? as u16),
            (true, i) => AudioCapability::Ext(i as u8, r.open_type("AudioCapability")?.to_vec()),
        })
    }

    fn write(&self, w: &mut Writer) {
        match self {
            AudioCapability::NonStandard(n) => {
                w.choice_root(0, 14, true);
                n.write(w);
            }
            AudioCapability::G7231(f, s) => {
                w.choice_root(8, 14, true);
                w.constrained(u64::from(*f), 1, 256);
                w.bit(*s);
            }
            AudioCapability::Frames(i, f) => {
                w.choice_root(u64::from(*i), 14, true);
                w.constrained(u64::from(*f), 1, 256);
            }
            AudioCapability::Ext(i, d) => w.choice_ext(u64::from(*i), d),
        }
    }
}

/// `DataType` (modelled alternatives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataType {
    /// `nullData`.
    Null,
    /// `audioData`.
    Audio(AudioCapability),
}

impl DataType {
    fn read(r: &mut Reader) -> Result<Self> {
        match r.choice(6, true, "DataType")? {
            (false, 1) => Ok(DataType::Null),
            (false, 3) => Ok(DataType::Audio(AudioCapability::read(r)?)),
            _ => Err(r.unsupported("DataType", "only nullData and audioData are modelled")),
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            DataType::Null => w.choice_root(1, 6, true),
            DataType::Audio(a) => {
                w.choice_root(3, 6, true);
                a.write(w);
            }
        }
    }

    /// The codec of an audio data type.
    pub fn codec(&self) -> Option<Codec> {
        match self {
            DataType::Audio(a) => a.codec(),
            DataType::Null => None,
        }
    }
}

fn read_h245_address(r: &mut Reader) -> Result<SocketAddr> {
    match r.choice(2, true, "H.245 TransportAddress")? {
        (false, 0) => {}
        _ => return Err(r.unsupported("H.245 TransportAddress", "only unicastAddress")),
    }
    match r.choice(5, true, "UnicastAddress")? {
        (false, 0) => {
            let e = r.bit("iPAddress ext")?;
            let ip = r.fixed::<4>("iPAddress.network")?;
            let port = r.constrained(0, 65535, "tsapIdentifier")? as u16;
            if e {
                r.extensions("iPAddress")?;
            }
            Ok((ip, port).into())
        }
        (false, 2) => {
            let e = r.bit("iP6Address ext")?;
            let ip = r.fixed::<16>("iP6Address.network")?;
            let port = r.constrained(0, 65535, "tsapIdentifier")? as u16;
            if e {
                r.extensions("iP6Address")?;
            }
            Ok((ip, port).into())
        }
        _ => Err(r.unsupported("UnicastAddress", "only iPAddress and iP6Address")),
    }
}

fn write_h245_address(w: &mut Writer, a: SocketAddr) {
    w.choice_root(0, 2, true);
    match a {
        SocketAddr::V4(v) => {
            w.choice_root(0, 5, true);
            w.bit(false);
            w.octets(&v.ip().octets());
            w.constrained(u64::from(v.port()), 0, 65535);
        }
        SocketAddr::V6(v) => {
            w.choice_root(2, 5, true);
            w.bit(false);
            w.octets(&v.ip().octets());
            w.constrained(u64::from(v.port()), 0, 65535);
        }
    }
}

/// `H2250LogicalChannelParameters`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct H2250Params {
    /// `nonStandard`.
    pub non_standard: Option<Vec<NonStandardParameter>>,
    /// `sessionID` (1 = audio).
    pub session_id: u8,
    /// `associatedSessionID`.
    pub associated_session_id: Option<u8>,
    /// `mediaChannel` (RTP).
    pub media_channel: Option<SocketAddr>,
    /// `mediaGuaranteedDelivery`.
    pub media_guaranteed_delivery: Option<bool>,
    /// `mediaControlChannel` (RTCP).
    pub media_control_channel: Option<SocketAddr>,
    /// `mediaControlGuaranteedDelivery`.
    pub media_control_guaranteed_delivery: Option<bool>,
    /// `silenceSuppression`.
    pub silence_suppression: Option<bool>,
    /// `destination` (mcuNumber, terminalNumber).
    pub destination: Option<(u8, u8)>,
    /// `dynamicRTPPayloadType`.
    pub dynamic_rtp_payload_type: Option<u8>,
    /// `mediaPacketization`: root h261a (None inside) or an extension, raw.
    pub media_packetization: Option<Option<(u8, Vec<u8>)>>,
    /// Extension additions.
    pub ext: Extensions,
}

impl H2250Params {
    /// Audio session 1 with the given RTP/RTCP addresses.
    pub fn audio(media: Option<SocketAddr>, control: Option<SocketAddr>) -> Self {
        Self {
            session_id: 1,
            media_channel: media,
            media_control_channel: control,
            ..Self::default()
        }
    }

    fn read(r: &mut Reader) -> Result<Self> {
        let e = r.bit("H2250LogicalChannelParameters ext")?;
        let p = r.preamble::<10>("H2250LogicalChannelParameters")?;
        let non_standard = if p[0] {
            let n = r.length(None, "nonStandard")?;
            Some(
                (0..n)
                    .map(|_| NonStandardParameter::read(r))
                    .collect::<Result<_>>()?,
            )
        } else {
            None
        };
        let session_id = r.constrained(0, 255, "sessionID")? as u8;
        let associated_session_id = p[1]
            .then(|| {
                r.constrained(1, 255, "associatedSessionID")
                    .map(|v| v as u8)
            })
            .transpose()?;
        let media_channel = p[2].then(|| read_h245_address(r)).transpose()?;
        let media_guaranteed_delivery =
            p[3].then(|| r.bit("mediaGuaranteedDelivery")).transpose()?;
        let media_control_channel = p[4].then(|| read_h245_address(r)).transpose()?;
        let media_control_guaranteed_delivery = p[5]
            .then(|| r.bit("mediaControlGuaranteedDelivery"))
            .transpose()?;
        let silence_suppression = p[6].then(|| r.bit("silenceSuppression")).transpose()?;
        let destination = if p[7] {
            let te = r.bit("TerminalLabel ext")?;
            let m = r.constrained(0, 192, "mcuNumber")? as u8;
            let t = r.constrained(0, 192, "terminalNumber")? as u8;
            if te {
                r.extensions("TerminalLabel")?;
            }
            Some((m, t))
        } else {
            None
        };
        let dynamic_rtp_payload_type = p[8]
            .then(|| {
                r.constrained(96, 127, "dynamicRTPPayloadType")
                    .map(|v| v as u8)
            })
            .transpose()?;
        let media_packetization = if p[9] {
            Some(match r.choice(1, true, "mediaPacketization")? {
                (false, _) => None,
                (true, i) => Some((i as u8, r.open_type("mediaPacketization")?.to_vec())),
            })
        } else {
            None
        };
        let ext = if e {
            r.extensions("H2250LogicalChannelParameters")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            non_standard,
            session_id,
            associated_session_id,
            media_channel,
            media_guaranteed_delivery,
            media_control_channel,
            media_control_guaranteed_delivery,
            silence_suppression,
            destination,
            dynamic_rtp_payload_type,
            media_packetization,
            ext,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.bit(self.ext.any());
        for b in [
            self.non_standard.is_some(),
            self.associated_session_id.is_some(),
            self.media_channel.is_some(),
            self.media_guaranteed_delivery.is_some(),
            self.media_control_channel.is_some(),
            self.media_control_guaranteed_delivery.is_some(),
            self.silence_suppression.is_some(),
            self.destination.is_some(),
            self.dynamic_rtp_payload_type.is_some(),
            self.media_packetization.is_some(),
        ] {
            w.bit(b);
        }
        if let Some(n) = &self.non_standard {
            w.length(n.len(), None);
            for x in n {
                x.write(w);
            }
        }
        w.constrained(u64::from(self.session_id), 0, 255);
        if let Some(v) = self.associated_session_id {
            w.constrained(u64::from(v), 1, 255);
        }
        if let Some(a) = self.media_channel {
            write_h245_address(w, a);
        }
        if let Some(b) = self.media_guaranteed_delivery {
            w.bit(b);
        }
        if let Some(a) = self.media_control_channel {
            write_h245_address(w, a);
        }
        if let Some(b) = self.media_control_guaranteed_delivery {
            w.bit(b);
        }
        if let Some(b) = self.silence_suppression {
            w.bit(b);
        }
        if let Some((m, t)) = self.destination {
            w.bit(false);
            w.constrained(u64::from(m), 0, 192);
            w.constrained(u64::from(t), 0, 192);
        }
        if let Some(v) = self.dynamic_rtp_payload_type {
            w.constrained(u64::from(v), 96, 127);
        }
        match &self.media_packetization {
            Some(None) => w.choice_root(0, 1, true),
            Some(Some((i, d))) => w.choice_ext(u64::from(*i), d),
            None => {}
        }
        w.extensions(&self.ext);
    }
}

/// Read an optional multiplexParameters CHOICE whose only modelled
/// alternative is extension 0 (h2250LogicalChannelParameters); `none`
/// (forward extension 1) is `Ok(None)`.
fn read_mux(r: &mut Reader, root: u64) -> Result<Option<H2250Params>> {
    match r.choice(root, true, "multiplexParameters")? {
        (true, 0) => {
            let inner = r.open_type("h2250LogicalChannelParameters")?;
            Ok(Some(H2250Params::read(&mut Reader::new(inner))?))
        }
        (true, 1) if root == 3 => {
            r.open_type("none")?;
            Ok(None)
        }
        _ => Err(r.unsupported("multiplexParameters", "only h2250 and none")),
    }
}

/// `OpenLogicalChannel` (modelled subset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLogicalChannel {
    /// `forwardLogicalChannelNumber`.
    pub forward_lcn: u16,
    /// `forwardLogicalChannelParameters.portNumber`.
    pub port_number: Option<u16>,
    /// Forward data type.
    pub forward_type: DataType,
    /// Forward H.225.0 parameters (None: multiplexParameters `none`).
    pub forward_mux: Option<H2250Params>,
    /// Forward parameter extensions.
    pub forward_ext: Extensions,
    /// Reverse data type and H.225.0 parameters, when present.
    pub reverse: Option<(DataType, Option<H2250Params>, Extensions)>,
    /// Extension additions.
    pub ext: Extensions,
}

impl OpenLogicalChannel {
    /// Decodes one from its PER bytes (a fastStart element).
    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b);
        let e = r.bit("OpenLogicalChannel ext")?;
        let [rev] = r.preamble::<1>("OpenLogicalChannel")?;
        let forward_lcn = r.constrained(1, 65535, "forwardLogicalChannelNumber")? as u16;
        let fe = r.bit("forwardLogicalChannelParameters ext")?;
        let [pn] = r.preamble::<1>("forwardLogicalChannelParameters")?;
        let port_number = pn
            .then(|| r.constrained(0, 65535, "portNumber").map(|v| v as u16))
            .transpose()?;
        let forward_type = DataType::read(&mut r)?;
        let forward_mux = read_mux(&mut r, 3)?;
        let forward_ext = if fe {
            r.extensions("forwardLogicalChannelParameters")?
        } else {
            Extensions::default()
        };
        let reverse = if rev {
            let re = r.bit("reverseLogicalChannelParameters ext")?;
            let [mp] = r.preamble::<1>("reverseLogicalChannelParameters")?;
            let dt = DataType::read(&mut r)?;
            let mux = if mp { read_mux(&mut r, 2)? } else { None };
            let ext = if re {
                r.extensions("reverseLogicalChannelParameters")?
            } else {
                Extensions::default()
            };
            Some((dt, mux, ext))
        } else {
            None
        };
        let ext = if e {
            r.extensions("OpenLogicalChannel")?
        } else {
            Extensions::default()
        };
        Ok(Self {
            forward_lcn,
            port_number,
            forward_type,
            forward_mux,
            forward_ext,
            reverse,
            ext,
        })
    }

    /// Encodes to PER bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(|w| {
            w.bit(self.ext.any());
            w.bit(self.reverse.is_some());
            w.constrained(u64::from(self.forward_lcn), 1, 65535);
            w.bit(self.forward_ext.any());
            w.bit(self.port_number.is_some());
            if let Some(p) = self.port_number {
                w.constrained(u64::from(p), 0, 65535);
            }
            self.forward_type.write(w);
            match &self.forward_mux {
                Some(p) => w.choice_ext(0, &encode(|w| p.write(w))),
                None => w.choice_ext(1, &encode(|_| {})),
            }
            w.extensions(&self.forward_ext);
            if let Some((dt, mux, ext)) = &self.reverse {
                w.bit(ext.any());
                w.bit(mux.is_some());
                dt.write(w);
                if let Some(p) = mux {
                    w.choice_ext(0, &encode(|w| p.write(w)));
                }
                w.extensions(ext);
            }
            w.extensions(&self.ext);
        })
    }

    /// Direction, codec and addresses as seen by the OLC's author: a
    /// receive proposal when the reverse parameters carry audio.
    pub fn summary(&self) -> Proposal {
        match &self.reverse {
            Some((dt, mux, _)) if dt.codec().is_some() => Proposal {
                receive: true,
                codec: dt.codec(),
                lcn: self.forward_lcn,
                rtp: mux.as_ref().and_then(|m| m.media_channel),
                rtcp: mux.as_ref().and_then(|m| m.media_control_channel),
            },
            _ => Proposal {
                receive: false,
                codec: self.forward_type.codec(),
                lcn: self.forward_lcn,
                rtp: self.forward_mux.as_ref().and_then(|m| m.media_channel),
                rtcp: self
                    .forward_mux
                    .as_ref()
                    .and_then(|m| m.media_control_channel),
            },
        }
    }
}

/// One fastStart OLC, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// True for a receive (reverse) channel of the offerer.
    pub receive: bool,
    /// The codec, when known.
    pub codec: Option<Codec>,
    /// The forward logical channel number.
    pub lcn: u16,
    /// RTP address (`mediaChannel`).
    pub rtp: Option<SocketAddr>,
    /// RTCP address (`mediaControlChannel`).
    pub rtcp: Option<SocketAddr>,
}

fn rtcp_of(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
}

/// A caller's fastStart offer: per codec a transmit and a receive proposal
/// (logical channels 1,2 / 3,4 / ...), receiving RTP at `rtp`.
pub fn fast_start_offer(codecs: &[Codec], rtp: SocketAddr) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (k, &c) in codecs.iter().enumerate() {
        let lcn = 1 + 2 * k as u16;
        out.push(
            OpenLogicalChannel {
                forward_lcn: lcn,
                port_number: None,
                forward_type: DataType::Audio(AudioCapability::of(c)),
                forward_mux: Some(H2250Params::audio(None, Some(rtcp_of(rtp)))),
                forward_ext: Extensions::default(),
                reverse: None,
                ext: Extensions::default(),
            }
            .encode(),
        );
        out.push(
            OpenLogicalChannel {
                forward_lcn: lcn + 1,
                port_number: None,
                forward_type: DataType::Null,
                forward_mux: None,
                forward_ext: Extensions::default(),
                reverse: Some((
                    DataType::Audio(AudioCapability::of(c)),
                    Some(H2250Params::audio(Some(rtp), Some(rtcp_of(rtp)))),
                    Extensions::default(),
                )),
                ext: Extensions::default(),
            }
            .encode(),
        );
    }
    out
}

/// Decodes every OLC of a fastStart list; elements outside the modelled
/// subset (video, data) are skipped.
pub fn decode_fast_start(fs: &[Vec<u8>]) -> Vec<OpenLogicalChannel> {
    fs.iter()
        .filter_map(|b| OpenLogicalChannel::decode(b).ok())
        .collect()
}

/// The callee's choice: the first offered transmit proposal whose codec is in
/// `allowed` and has a matching receive proposal. Returns the codec, the
/// caller's RTP address and the answer OLCs (Tandem receives at `rtp`).
pub fn fast_start_answer(
    offer: &[OpenLogicalChannel],
    allowed: &[Codec],
    rtp: SocketAddr,
) -> Option<(Codec, Option<SocketAddr>, Vec<Vec<u8>>)> {
    for tx in offer {
        let p = tx.summary();
        let Some(c) = p.codec.filter(|c| !p.receive && allowed.contains(c)) else {
            continue;
        };
        let Some(rx) = offer
            .iter()
            .find(|o| o.summary().receive && o.summary().codec == Some(c))
        else {
            continue;
        };
        let caller_rtp = rx.summary().rtp;
        let mut a = tx.clone();
        a.forward_mux = Some(H2250Params::audio(Some(rtp), Some(rtcp_of(rtp))));
        let mut b = rx.clone();
        if let Some((_, mux, _)) = &mut b.reverse {
            *mux = Some(H2250Params::audio(caller_rtp, Some(rtcp_of(rtp))));
        }
        return Some((c, caller_rtp, vec![a.encode(), b.encode()]));
    }
    None
}

/// The caller's reading of a fastStart answer: the codec and where to send RTP.
pub fn fast_start_accepted(answer: &[OpenLogicalChannel]) -> Option<(Codec, SocketAddr)> {
    let fwd = answer
        .iter()
        .map(|o| o.summary())
        .find(|p| !p.receive && p.codec.is_some())?;
    Some((fwd.codec?, fwd.rtp?))
}

/// A tunnelled (or separate-channel) H.245 message, modelled subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H245Message {
    /// TerminalCapabilitySet: sequence number and the audio capabilities
    /// (empty when decoded from a peer: only the number is read).
    TerminalCapabilitySet {
        /// sequenceNumber.
        seq: u8,
        /// receiveAudioCapability entries, in preference order.
        audio: Vec<Codec>,
    },
    /// TerminalCapabilitySetAck.
    TerminalCapabilitySetAck {
        /// sequenceNumber being acknowledged.
        seq: u8,
    },
    /// MasterSlaveDetermination.
    MasterSlaveDetermination {
        /// terminalType (gateways use 60).
        terminal_type: u8,
        /// statusDeterminationNumber (24 bits).
        number: u32,
    },
    /// MasterSlaveDeterminationAck: the decision for the receiver.
    MasterSlaveDeterminationAck {
        /// True: the receiver of this Ack is master.
        master: bool,
    },
    /// UserInputIndication `signal` (DTMF with optional duration in ms).
    UserInputSignal {
        /// One of 0-9 # * A-D !.
        signal: char,
        /// Duration in ms.
        duration: Option<u16>,
    },
    /// UserInputIndication `alphanumeric`.
    UserInputAlphanumeric(String),
    /// Anything else, raw.
    Other(Vec<u8>),
}

const H245_PROTOCOL: &[u64] = &[0, 0, 8, 245, 0, 7];

impl H245Message {
    /// Decodes a `MultimediaSystemControlMessage`. Never panics; unknown
    /// messages become `Other`.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b);
        let other = || Ok(H245Message::Other(b.to_vec()));
        match r.choice(4, true, "MultimediaSystemControlMessage")? {
            (false, 0) => match r.choice(11, true, "RequestMessage")? {
                (false, 1) => {
                    r.bit("MasterSlaveDetermination ext")?;
                    Ok(H245Message::MasterSlaveDetermination {
                        terminal_type: r.constrained(0, 255, "terminalType")? as u8,
                        number: r.constrained(0, 16_777_215, "statusDeterminationNumber")? as u32,
                    })
                }
                (false, 2) => {
                    r.bit("TerminalCapabilitySet ext")?;
                    r.preamble::<3>("TerminalCapabilitySet")?;
                    Ok(H245Message::TerminalCapabilitySet {
                        seq: r.constrained(0, 255, "sequenceNumber")? as u8,
                        audio: Vec::new(),
                    })
                }
                _ => other(),
            },
            (false, 1) => match r.choice(19, true, "ResponseMessage")? {
                (false, 1) => {
                    r.bit("MasterSlaveDeterminationAck ext")?;
                    Ok(H245Message::MasterSlaveDeterminationAck {
                        master: r.constrained(0, 1, "decision")? == 0,
                    })
                }
                (false, 3) => {
                    r.bit("TerminalCapabilitySetAck ext")?;
                    Ok(H245Message::TerminalCapabilitySetAck {
                        seq: r.constrained(0, 255, "sequenceNumber")? as u8,
                    })
                }
                _ => other(),
            },
            (false, 3) => match r.choice(14, true, "IndicationMessage")? {
                (false, 13) => match r.choice(2, true, "UserInputIndication")? {
                    (false, 1) => {
                        let s = r.octet_string(None, "alphanumeric")?;
                        Ok(H245Message::UserInputAlphanumeric(
                            String::from_utf8_lossy(&s).into_owned(),
                        ))
                    }
                    (true, 1) => {
                        let inner = r.open_type("signal")?;
                        let mut s = Reader::new(inner);
                        let _e = s.bit("signal ext")?;
                        let [d, _rtp] = s.preamble::<2>("signal")?;
                        let c = s.bits(8, "signalType")? as u8 as char;
                        let duration = d
                            .then(|| s.constrained(1, 65535, "duration").map(|v| v as u16))
                            .transpose()?;
                        Ok(H245Message::UserInputSignal {
                            signal: c,
                            duration,
                        })
                    }
                    _ => other(),
                },
                _ => other(),
            },
            _ => other(),
        }
    }

    /// Encodes to PER bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            H245Message::TerminalCapabilitySet { seq, audio } => encode(|w| {
                w.choice_root(0, 4, true);
                w.choice_root(2, 11, true);
                w.bit(false);
                w.bit(false); // multiplexCapability
                w.bit(!audio.is_empty()); // capabilityTable
                w.bit(!audio.is_empty()); // capabilityDescriptors
                w.constrained(u64::from(*seq), 0, 255);
                w.oid(&oid_from_arcs(H245_PROTOCOL));
                if !audio.is_empty() {
                    let n = audio.len().min(256);
                    w.length(n, Some((1, 256)));
                    for (k, &c) in audio.iter().take(n).enumerate() {
                        w.bit(true); // capability present
                        w.constrained(k as u64 + 1, 1, 65535);
                        w.choice_root(4, 12, true); // receiveAudioCapability
                        AudioCapability::of(c).write(w);
                    }
                    // One descriptor: one simultaneous set of alternatives 1..n.
                    w.length(1, Some((1, 256)));
                    w.bit(true);
                    w.constrained(0, 0, 255);
                    w.length(1, Some((1, 256)));
                    w.length(n, Some((1, 256)));
                    for k in 0..n {
                        w.constrained(k as u64 + 1, 1, 65535);
                    }
                }
            }),
            H245Message::TerminalCapabilitySetAck { seq } => encode(|w| {
                w.choice_root(1, 4, true);
                w.choice_root(3, 19, true);
                w.bit(false);
                w.constrained(u64::from(*seq), 0, 255);
            }),
            H245Message::MasterSlaveDetermination {
                terminal_type,
                number,
            } => encode(|w| {
                w.choice_root(0, 4, true);
                w.choice_root(1, 11, true);
                w.bit(false);
                w.constrained(u64::from(*terminal_type), 0, 255);
                w.constrained(u64::from(*number), 0, 16_777_215);
            }),
            H245Message::MasterSlaveDeterminationAck { master } => encode(|w| {
                w.choice_root(1, 4, true);
                w.choice_root(1, 19, true);
                w.bit(false);
                w.constrained(u64::from(!*master), 0, 1);
            }),
            H245Message::UserInputSignal { signal, duration } => encode(|w| {
                w.choice_root(3, 4, true);
                w.choice_root(13, 14, true);
                let inner = encode(|s| {
                    s.bit(false);
                    s.bit(duration.is_some());
                    s.bit(false);
                    s.bits(u64::from(*signal as u32 & 0xFF), 8);
                    if let Some(d) = duration {
                        s.constrained(u64::from(*d), 1, 65535);
                    }
                });
                w.choice_ext(1, &inner);
            }),
            H245Message::UserInputAlphanumeric(s) => encode(|w| {
                w.choice_root(3, 4, true);
                w.choice_root(13, 14, true);
                w.choice_root(1, 2, true);
                w.octet_string(s.as_bytes(), None);
            }),
            H245Message::Other(b) => b.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_answer_round_trip() {
        let caller: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let callee: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let offer = fast_start_offer(&[Codec::Pcma, Codec::Pcmu, Codec::G729], caller);
        assert_eq!(offer.len(), 6);
        let olcs = decode_fast_start(&offer);
        assert_eq!(olcs.len(), 6);
        for (o, b) in olcs.iter().zip(&offer) {
            assert_eq!(&o.encode(), b, "OLC re-encodes exactly");
        }
        let (c, caller_rtp, ans) =
            fast_start_answer(&olcs, &[Codec::Pcmu, Codec::G729], callee).unwrap();
        assert_eq!(c, Codec::Pcmu);
        assert_eq!(caller_rtp, Some(caller));
        let got = fast_start_accepted(&decode_fast_start(&ans)).unwrap();
        assert_eq!(got, (Codec::Pcmu, callee));
        assert!(fast_start_answer(&olcs, &[Codec::G729A], callee).is_none());
    }

    #[test]
    fn h245_messages_round_trip() {
        for m in [
            H245Message::TerminalCapabilitySet {
                seq: 1,
                audio: vec![Codec::Pcma, Codec::G729],
            },
            H245Message::TerminalCapabilitySetAck { seq: 9 },
            H245Message::MasterSlaveDetermination {
                terminal_type: 60,
                number: 0x12_3456,
            },
            H245Message::MasterSlaveDeterminationAck { master: true },
            H245Message::MasterSlaveDeterminationAck { master: false },
            H245Message::UserInputSignal {
                signal: '5',
                duration: Some(100),
            },
            H245Message::UserInputAlphanumeric("#".into()),
        ] {
            let d = H245Message::decode(&m.encode()).unwrap();
            match (&m, &d) {
                (
                    H245Message::TerminalCapabilitySet { seq, .. },
                    H245Message::TerminalCapabilitySet { seq: s2, .. },
                ) => assert_eq!(seq, s2),
                _ => assert_eq!(d, m),
            }
        }
    }
}
