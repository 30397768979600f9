//! Q.931 (ETSI EN 300 403 "EuroISDN") message and information element codec.
//!
//! [`Message`] is the `Repr`: protocol discriminator, call reference, message
//! type and a list of [`Ie`]s. [`Message::parse`] never panics: every length
//! is checked, and malformed input is a [`Q931Error`] naming what and where.
//! Unknown IEs are kept as [`Ie::Unknown`] so a message survives a round trip.
//! Shared later with H.225.0 (which carries Q.931 over TCP).

use std::fmt;

/// Q.931 protocol discriminator.
pub const PD_Q931: u8 = 0x08;

/// User-user IE identifier (carries the H.225.0 UUIE in H.323).
pub const IE_USER_USER: u8 = 0x7E;

/// Codec errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Q931Error {
    /// The message ended early.
    #[error("q931: truncated {what} at offset {at}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Offset in the message.
        at: usize,
    },
    /// Call reference length above 2 (the upper nibble must be 0).
    #[error("q931: bad call reference length octet {0:#04x}")]
    BadCallRefLen(u8),
    /// An IE whose content does not follow its coding rules.
    #[error("q931: malformed {ie} IE at offset {at}: {why}")]
    BadIe {
        /// IE name.
        ie: &'static str,
        /// Offset of the IE identifier.
        at: usize,
        /// What was wrong.
        why: &'static str,
    },
}

/// A call reference: value, its length (0, 1 or 2 octets) and the flag
/// (false from the side that allocated it, true from the other side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallRef {
    /// Value without the flag bit.
    pub value: u16,
    /// True in messages sent by the side that did not allocate the reference.
    pub flag: bool,
    /// Length in octets (2 on PRI, 1 on BRI, 0 = dummy).
    pub len: u8,
}

impl CallRef {
    /// The global call reference (value 0), used by RESTART.
    pub const fn global(len: u8) -> Self {
        Self {
            value: 0,
            flag: false,
            len,
        }
    }
}

/// Q.931 message types used by EuroISDN basic call control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum MsgType {
    Alerting,
    CallProceeding,
    Progress,
    Setup,
    Connect,
    SetupAck,
    ConnectAck,
    Disconnect,
    Release,
    ReleaseComplete,
    Restart,
    RestartAck,
    Information,
    Notify,
    Status,
    StatusEnquiry,
    /// Any other value.
    Other(u8),
}

impl MsgType {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            MsgType::Alerting => 0x01,
            MsgType::CallProceeding => 0x02,
            MsgType::Progress => 0x03,
            MsgType::Setup => 0x05,
            MsgType::Connect => 0x07,
            MsgType::SetupAck => 0x0D,
            MsgType::ConnectAck => 0x0F,
            MsgType::Disconnect => 0x45,
            MsgType::Release => 0x4D,
            MsgType::ReleaseComplete => 0x5A,
            MsgType::Restart => 0x46,
            MsgType::RestartAck => 0x4E,
            MsgType::Information => 0x7B,
            MsgType::Notify => 0x6E,
            MsgType::Status => 0x7D,
            MsgType::StatusEnquiry => 0x75,
            MsgType::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0x01 => MsgType::Alerting,
            0x02 => MsgType::CallProceeding,
            0x03 => MsgType::Progress,
            0x05 => MsgType::Setup,
            0x07 => MsgType::Connect,
            0x0D => MsgType::SetupAck,
            0x0F => MsgType::ConnectAck,
            0x45 => MsgType::Disconnect,
            0x4D => MsgType::Release,
            0x5A => MsgType::ReleaseComplete,
            0x46 => MsgType::Restart,
            0x4E => MsgType::RestartAck,
            0x7B => MsgType::Information,
            0x6E => MsgType::Notify,
            0x7D => MsgType::Status,
            0x75 => MsgType::StatusEnquiry,
            o => MsgType::Other(o),
        }
    }
}

/// Presentation indicator (octet 3a bits 7-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presentation {
    /// Presentation allowed (0).
    Allowed,
    /// Presentation restricted (1).
    Restricted,
    /// Number not available due to interworking (2).
    NotAvailable,
    /// Reserved (3).
    Reserved,
}

impl Presentation {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Self::Allowed,
            1 => Self::Restricted,
            2 => Self::NotAvailable,
            _ => Self::Reserved,
        }
    }
    fn bits(self) -> u8 {
        match self {
            Self::Allowed => 0,
            Self::Restricted => 1,
            Self::NotAvailable => 2,
            Self::Reserved => 3,
        }
    }
}

/// Screening indicator (octet 3a bits 2-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Screening {
    /// User-provided, not screened (0).
    UserNotScreened,
    /// User-provided, verified and passed (1).
    UserPassed,
    /// User-provided, verified and failed (2).
    UserFailed,
    /// Network provided (3).
    Network,
}

impl Screening {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Self::UserNotScreened,
            1 => Self::UserPassed,
            2 => Self::UserFailed,
            _ => Self::Network,
        }
    }
    fn bits(self) -> u8 {
        match self {
            Self::UserNotScreened => 0,
            Self::UserPassed => 1,
            Self::UserFailed => 2,
            Self::Network => 3,
        }
    }
}

/// A party number (calling or called).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartyNumber {
    /// Type of number (0 unknown, 1 international, 2 national, 4 subscriber ...).
    pub ton: u8,
    /// Numbering plan (0 unknown, 1 ISDN/E.164, 9 private ...).
    pub npi: u8,
    /// Presentation and screening (calling party only; octet 3a).
    pub pres: Option<(Presentation, Screening)>,
    /// The digits (IA5).
    pub digits: String,
}

/// Channel identification (PRI or BRI).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelId {
    /// Interface type: true = primary rate (bit 6 of octet 3).
    pub pri: bool,
    /// True = exclusive, false = preferred.
    pub exclusive: bool,
    /// D-channel indicator.
    pub dchan: bool,
    /// Information channel selection (octet 3 bits 2-1): 0 none, 1 as
    /// indicated (PRI) / B1 (BRI), 2 B2, 3 any.
    pub sel: u8,
    /// PRI: the B-channel number (E1 timeslot), when given.
    pub channel: Option<u8>,
}

impl ChannelId {
    /// A PRI channel id for one B-channel.
    pub fn pri(channel: u8, exclusive: bool) -> Self {
        Self {
            pri: true,
            exclusive,
            dchan: false,
            sel: 1,
            channel: Some(channel),
        }
    }
}

/// Cause (Q.850).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cause {
    /// Coding standard (0 = ITU-T).
    pub coding: u8,
    /// Location (0 user, 1 private local, 2 public local, ...).
    pub location: u8,
    /// Cause value (16 normal clearing, 17 user busy ...).
    pub value: u8,
}

impl Cause {
    /// ITU-T cause at a location.
    pub fn new(value: u8, location: u8) -> Self {
        Self {
            coding: 0,
            location,
            value,
        }
    }
}

/// Bearer capability.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BearerCap {
    /// Coding standard (octet 3 bits 7-6).
    pub coding: u8,
    /// Information transfer capability (0 speech, 8 unrestricted digital, 16 3.1 kHz audio).
    pub itc: u8,
    /// Transfer mode (0 circuit) and rate (0x10 = 64 kbit/s) as octet 4 bits 7-1.
    pub mode_rate: u8,
    /// Layer 1 protocol (2 = G.711 mu-law, 3 = G.711 A-law), if present.
    pub layer1: Option<u8>,
    /// Octets after octet 5 (kept verbatim).
    pub rest: Vec<u8>,
}

impl BearerCap {
    /// Speech, 64 kbit/s circuit mode, G.711 A-law.
    pub fn speech_alaw() -> Self {
        Self {
            coding: 0,
            itc: 0,
            mode_rate: 0x10,
            layer1: Some(3),
            rest: Vec::new(),
        }
    }
}

/// Progress indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Progress {
    /// Coding standard.
    pub coding: u8,
    /// Location.
    pub location: u8,
    /// Description (1 not end-to-end ISDN, 2 destination non-ISDN, 8 in-band info).
    pub description: u8,
}

/// An information element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ie {
    /// 0x04.
    BearerCapability(BearerCap),
    /// 0x08.
    Cause(Cause),
    /// 0x18.
    ChannelId(ChannelId),
    /// 0x1E.
    Progress(Progress),
    /// 0x28 (IA5 text).
    Display(String),
    /// 0x6C.
    CallingParty(PartyNumber),
    /// 0x70.
    CalledParty(PartyNumber),
    /// 0x79: restart class (0 indicated channels, 6 single interface, 7 all).
    RestartIndicator(u8),
    /// 0xA1 (single octet).
    SendingComplete,
    /// Anything else: identifier (with codeset in the high byte) and contents.
    Unknown {
        /// Codeset << 8 | identifier.
        id: u16,
        /// Contents (empty for single-octet IEs).
        data: Vec<u8>,
    },
}

/// A Q.931 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Protocol discriminator (0x08).
    pub pd: u8,
    /// Call reference.
    pub cref: CallRef,
    /// Message type.
    pub msg_type: MsgType,
    /// Information elements in order.
    pub ies: Vec<Ie>,
}

fn need<'a>(b: &'a [u8], at: usize, n: usize, what: &'static str) -> Result<&'a [u8], Q931Error> {
    b.get(at..at.saturating_add(n))
        .ok_or(Q931Error::Truncated { what, at })
}

fn ia5(d: &[u8]) -> String {
    d.iter()
        .map(|&c| {
            if (0x20..0x7F).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

impl Message {
    /// A message with no IEs.
    pub fn new(cref: CallRef, msg_type: MsgType) -> Self {
        Self {
            pd: PD_Q931,
            cref,
            msg_type,
            ies: Vec::new(),
        }
    }

    /// Adds an IE (builder style).
    pub fn with(mut self, ie: Ie) -> Self {
        self.ies.push(ie);
        self
    }

    /// Parses a message. Never panics.
    pub fn parse(b: &[u8]) -> Result<Message, Q931Error> {
        Self::parse_variant(b, false)
    }

    /// Parses an H.225.0 message: as [`Message::parse`], except that the
    /// User-user IE (0x7E) has a two-octet length (H.225.0 section 7.2.2).
    pub fn parse_h225(b: &[u8]) -> Result<Message, Q931Error> {
        Self::parse_variant(b, true)
    }

    fn parse_variant(b: &[u8], h225: bool) -> Result<Message, Q931Error> {
        let pd = need(b, 0, 1, "protocol discriminator")?[0];
        let crl = need(b, 1, 1, "call reference length")?[0];
        if crl > 2 {
            return Err(Q931Error::BadCallRefLen(crl));
        }
        let cr = need(b, 2, usize::from(crl), "call reference")?;
        let (flag, value) = match cr {
            [] => (false, 0),
            [a] => (a & 0x80 != 0, u16::from(a & 0x7F)),
            [a, c, ..] => (a & 0x80 != 0, u16::from(a & 0x7F) << 8 | u16::from(*c)),
        };
        let mut i = 2 + usize::from(crl);
        let mt = need(b, i, 1, "message type")?[0];
        i += 1;
        let mut ies = Vec::new();
        let mut locked: u16 = 0;
        while i < b.len() {
            let id = b[i];
            let at = i;
            if id & 0x80 != 0 {
                // Single-octet IE.
                i += 1;
                match id & 0xF0 {
                    0x90 => {
                        // Shift: non-locking if bit 4 set (applies to next IE only).
                        let cs = u16::from(id & 0x07);
                        if id & 0x08 == 0 {
                            locked = cs;
                        } else if let Some(&nid) = b.get(i) {
                            let (ie, n) = Self::parse_one(b, i, cs, nid, h225)?;
                            ies.push(ie);
                            i = n;
                        }
                        continue;
                    }
                    _ if id == 0xA1 && locked == 0 => ies.push(Ie::SendingComplete),
                    _ => ies.push(Ie::Unknown {
                        id: locked << 8 | u16::from(id),
                        data: Vec::new(),
                    }),
                }
                continue;
            }
            let (ie, n) = Self::parse_one(b, at, locked, id, h225)?;
            ies.push(ie);
            i = n;
        }
        Ok(Message {
            pd,
            cref: CallRef {
                value,
                flag,
                len: crl,
            },
            msg_type: MsgType::from_u8(mt),
            ies,
        })
    }

    fn parse_one(
        b: &[u8],
        at: usize,
        codeset: u16,
        id: u8,
        h225: bool,
    ) -> Result<(Ie, usize), Q931Error> {
        if h225 && codeset == 0 && id == IE_USER_USER {
            let l = need(b, at + 1, 2, "User-user IE length")?;
            let len = usize::from(l[0]) << 8 | usize::from(l[1]);
            let d = need(b, at + 3, len, "User-user IE contents")?;
            return Ok((
                Ie::Unknown {
                    id: u16::from(id),
                    data: d.to_vec(),
                },
                at + 3 + len,
            ));
        }
        if id & 0x80 != 0 {
            return Ok((
                Ie::Unknown {
                    id: codeset << 8 | u16::from(id),
                    data: Vec::new(),
                },
                at + 1,
            ));
        }
        let len = usize::from(need(b, at + 1, 1, "IE length")?[0]);
        let d = need(b, at + 2, len, "IE contents")?;
        let next = at + 2 + len;
        let ie = if codeset != 0
            || (h225 && id == 0x28 && d.iter().any(|c| !(0x20..0x7F).contains(c)))
        {
            // H.225.0: a Display with non-IA5 octets (endpoints add a NUL or
            // Latin-1) is kept raw so the message re-encodes exactly.
            Ie::Unknown {
                id: codeset << 8 | u16::from(id),
                data: d.to_vec(),
            }
        } else {
            Self::decode_ie(id, d, at)?
        };
        Ok((ie, next))
    }

    fn decode_ie(id: u8, d: &[u8], at: usize) -> Result<Ie, Q931Error> {
        let bad = |ie, why| Q931Error::BadIe { ie, at, why };
        Ok(match id {
            0x04 => {
                let o3 = *d.first().ok_or(bad("bearer capability", "empty"))?;
                let o4 = *d.get(1).ok_or(bad("bearer capability", "no octet 4"))?;
                let mut k = 2;
                // Octet 4.1 (rate multiplier) when rate is multirate (0x18).
                if o4 & 0x1F == 0x18 {
                    k += 1;
                }
                let layer1 = match d.get(k) {
                    Some(&o5) if o5 & 0x60 == 0x20 => {
                        k += 1;
                        Some(o5 & 0x1F)
                    }
                    _ => None,
                };
                Ie::BearerCapability(BearerCap {
                    coding: o3 >> 5 & 3,
                    itc: o3 & 0x1F,
                    mode_rate: o4 & 0x7F,
                    layer1,
                    rest: d.get(k..).unwrap_or(&[]).to_vec(),
                })
            }
            0x08 => {
                let o3 = *d.first().ok_or(bad("cause", "empty"))?;
                let mut k = 1;
                if o3 & 0x80 == 0 {
                    k += 1; // octet 3a: recommendation
                }
                let v = *d.get(k).ok_or(bad("cause", "no cause value"))?;
                Ie::Cause(Cause {
                    coding: o3 >> 5 & 3,
                    location: o3 & 0x0F,
                    value: v & 0x7F,
                })
            }
            0x18 => {
                let o3 = *d.first().ok_or(bad("channel identification", "empty"))?;
                let pri = o3 & 0x20 != 0;
                let mut channel = None;
                if pri && o3 & 0x03 == 1 && o3 & 0x40 == 0 {
                    // Octet 3.2 (coding, number/map, type) then 3.3 channel number.
                    if let (Some(&o32), Some(&o33)) = (d.get(1), d.get(2)) {
                        if o32 & 0x10 == 0 {
                            channel = Some(o33 & 0x7F);
                        }
                    }
                }
                Ie::ChannelId(ChannelId {
                    pri,
                    exclusive: o3 & 0x08 != 0,
                    dchan: o3 & 0x04 != 0,
                    sel: o3 & 0x03,
                    channel,
                })
            }
            0x1E => {
                let o3 = *d.first().ok_or(bad("progress indicator", "empty"))?;
                let o4 = *d
                    .get(1)
                    .ok_or(bad("progress indicator", "no description"))?;
                Ie::Progress(Progress {
                    coding: o3 >> 5 & 3,
                    location: o3 & 0x0F,
                    description: o4 & 0x7F,
                })
            }
            0x28 => Ie::Display(ia5(d)),
            0x6C | 0x70 => {
                let o3 = *d.first().ok_or(bad("party number", "empty"))?;
                let mut k = 1;
                let mut pres = None;
                if o3 & 0x80 == 0 {
                    let o3a = *d.get(1).ok_or(bad("calling party number", "no octet 3a"))?;
                    pres = Some((Presentation::from_bits(o3a >> 5), Screening::from_bits(o3a)));
                    k = 2;
                }
                let pn = PartyNumber {
                    ton: o3 >> 4 & 7,
                    npi: o3 & 0x0F,
                    pres,
                    digits: ia5(d.get(k..).unwrap_or(&[])),
                };
                if id == 0x6C {
                    Ie::CallingParty(pn)
                } else {
                    Ie::CalledParty(pn)
                }
            }
            0x79 => {
                Ie::RestartIndicator(d.first().ok_or(bad("restart indicator", "empty"))? & 0x07)
            }
            _ => Ie::Unknown {
                id: u16::from(id),
                data: d.to_vec(),
            },
        })
    }

    /// Encodes the message, appending to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.pd);
        out.push(self.cref.len);
        let f = if self.cref.flag { 0x80 } else { 0 };
        match self.cref.len {
            0 => {}
            1 => out.push(f | (self.cref.value & 0x7F) as u8),
            _ => {
                out.push(f | (self.cref.value >> 8 & 0x7F) as u8);
                out.push(self.cref.value as u8);
            }
        }
        out.push(self.msg_type.to_u8());
        for ie in &self.ies {
            emit_ie(ie, out);
        }
    }

    /// Encodes an H.225.0 message (two-octet User-user IE length), appending to `out`.
    pub fn emit_h225(&self, out: &mut Vec<u8>) {
        // The header encodes as in Q.931; so does every IE but User-user.
        Message {
            pd: self.pd,
            cref: self.cref,
            msg_type: self.msg_type,
            ies: Vec::new(),
        }
        .emit(out);
        for ie in &self.ies {
            match ie {
                Ie::Unknown { id, data } if *id == u16::from(IE_USER_USER) => {
                    let n = data.len().min(0xFFFF);
                    out.push(IE_USER_USER);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                    out.extend_from_slice(&data[..n]);
                }
                other => emit_ie(other, out),
            }
        }
    }

    /// The User-user IE contents, if any.
    pub fn user_user(&self) -> Option<&[u8]> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::Unknown { id, data } if *id == u16::from(IE_USER_USER) => Some(data.as_slice()),
            _ => None,
        })
    }

    /// Encodes into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.emit(&mut v);
        v
    }

    /// First IE matching `f`.
    pub fn find<T>(&self, f: impl Fn(&Ie) -> Option<T>) -> Option<T> {
        self.ies.iter().find_map(f)
    }

    /// The cause, if any.
    pub fn cause(&self) -> Option<Cause> {
        self.find(|i| if let Ie::Cause(c) = i { Some(*c) } else { None })
    }

    /// The channel identification, if any.
    pub fn channel_id(&self) -> Option<ChannelId> {
        self.find(|i| {
            if let Ie::ChannelId(c) = i {
                Some(c.clone())
            } else {
                None
            }
        })
    }

    /// The calling party number, if any.
    pub fn calling(&self) -> Option<PartyNumber> {
        self.find(|i| {
            if let Ie::CallingParty(c) = i {
                Some(c.clone())
            } else {
                None
            }
        })
    }

    /// The called party number, if any.
    pub fn called(&self) -> Option<PartyNumber> {
        self.find(|i| {
            if let Ie::CalledParty(c) = i {
                Some(c.clone())
            } else {
                None
            }
        })
    }

    /// True if Sending complete is present.
    pub fn sending_complete(&self) -> bool {
        self.ies.iter().any(|i| matches!(i, Ie::SendingComplete))
    }
}

fn tlv(id: u8, d: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    out.push(d.len().min(255) as u8);
    out.extend_from_slice(&d[..d.len().min(255)]);
}

fn emit_ie(ie: &Ie, out: &mut Vec<u8>) {
    match ie {
        Ie::BearerCapability(b) => {
            let mut d = vec![
                0x80 | (b.coding & 3) << 5 | (b.itc & 0x1F),
                0x80 | (b.mode_rate & 0x7F),
            ];
            if let Some(l1) = b.layer1 {
                d.push(0x80 | 0x20 | (l1 & 0x1F));
            }
            d.extend_from_slice(&b.rest);
            tlv(0x04, &d, out);
        }
        Ie::Cause(c) => tlv(
            0x08,
            &[
                0x80 | (c.coding & 3) << 5 | (c.location & 0x0F),
                0x80 | (c.value & 0x7F),
            ],
            out,
        ),
        Ie::ChannelId(c) => {
            let o3 = 0x80
                | if c.pri { 0x20 } else { 0 }
                | if c.exclusive { 0x08 } else { 0 }
                | if c.dchan { 0x04 } else { 0 }
                | (c.sel & 3);
            let mut d = vec![o3];
            if let (true, Some(ch)) = (c.pri, c.channel) {
                d.push(0x83); // ITU-T, number follows, B-channel units
                d.push(0x80 | (ch & 0x7F));
            }
            tlv(0x18, &d, out);
        }
        Ie::Progress(p) => tlv(
            0x1E,
            &[
                0x80 | (p.coding & 3) << 5 | (p.location & 0x0F),
                0x80 | (p.description & 0x7F),
            ],
            out,
        ),
        Ie::Display(s) => tlv(0x28, s.as_bytes(), out),
        Ie::CallingParty(p) | Ie::CalledParty(p) => {
            let id = if matches!(ie, Ie::CallingParty(_)) {
                0x6C
            } else {
                0x70
            };
            let mut d = Vec::new();
            let o3 = (p.ton & 7) << 4 | (p.npi & 0x0F);
            match p.pres {
                Some((pr, sc)) => {
                    d.push(o3);
                    d.push(0x80 | pr.bits() << 5 | sc.bits());
                }
                None => d.push(0x80 | o3),
            }
            d.extend(p.digits.bytes().filter(|c| c.is_ascii()));
            tlv(id, &d, out);
        }
        Ie::RestartIndicator(c) => tlv(0x79, &[0x80 | (c & 7)], out),
        Ie::SendingComplete => out.push(0xA1),
        Ie::Unknown { id, data } => {
            let cs = (id >> 8) as u8;
            if cs != 0 {
                out.push(0x98 | (cs & 7)); // non-locking shift
            }
            let ident = *id as u8;
            if ident & 0x80 != 0 {
                out.push(ident);
            } else {
                tlv(ident, data, out);
            }
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn libpri_setup_from_pri_peer_readme() {
        // The SETUP the libpri NET side sends (pri-peer examples), Q.931 part.
        let b =
            hex("080200010504038090a31803a183816c0c21833032313535353031303070088135353531323334a1");
        let m = Message::parse(&b).unwrap();
        assert_eq!(
            m.cref,
            CallRef {
                value: 1,
                flag: false,
                len: 2
            }
        );
        assert_eq!(m.msg_type, MsgType::Setup);
        assert_eq!(m.ies[0], Ie::BearerCapability(BearerCap::speech_alaw()));
        let ch = m.channel_id().unwrap();
        assert_eq!((ch.pri, ch.exclusive, ch.channel), (true, false, Some(1)));
        let cg = m.calling().unwrap();
        assert_eq!(cg.digits, "0215550100");
        assert_eq!((cg.ton, cg.npi), (2, 1));
        assert_eq!(cg.pres, Some((Presentation::Allowed, Screening::Network)));
        let cd = m.called().unwrap();
        assert_eq!(
            (cd.digits.as_str(), cd.ton, cd.npi, cd.pres),
            ("5551234", 0, 1, None)
        );
        assert!(m.sending_complete());
        assert_eq!(m.to_bytes(), b, "round trip is byte exact");
    }

    #[test]
    fn release_messages_with_cause() {
        let m = Message::parse(&hex("080200014508028190")).unwrap();
        assert_eq!(m.msg_type, MsgType::Disconnect);
        assert_eq!(
            m.cause(),
            Some(Cause {
                coding: 0,
                location: 1,
                value: 16
            })
        );
        let m = Message::parse(&hex("0802800102 1803a98381".replace(' ', "").as_str())).unwrap();
        assert!(m.cref.flag);
        assert_eq!(m.channel_id(), Some(ChannelId::pri(1, true)));
        // Progress indicator in ALERTING: location private net local user, in-band (8)? 0x88 -> 8.
        let m = Message::parse(&hex("0802800101 1e028188".replace(' ', "").as_str())).unwrap();
        assert_eq!(
            m.ies,
            vec![Ie::Progress(Progress {
                coding: 0,
                location: 1,
                description: 8
            })]
        );
    }

    #[test]
    fn encode_then_parse_all_ies() {
        let m = Message::new(
            CallRef {
                value: 0x1234,
                flag: true,
                len: 2,
            },
            MsgType::Setup,
        )
        .with(Ie::SendingComplete)
        .with(Ie::BearerCapability(BearerCap::speech_alaw()))
        .with(Ie::ChannelId(ChannelId::pri(17, true)))
        .with(Ie::Progress(Progress {
            coding: 0,
            location: 2,
            description: 8,
        }))
        .with(Ie::Display("Alice".into()))
        .with(Ie::CallingParty(PartyNumber {
            ton: 1,
            npi: 1,
            pres: Some((Presentation::Restricted, Screening::UserPassed)),
            digits: "4930123".into(),
        }))
        .with(Ie::CalledParty(PartyNumber {
            ton: 0,
            npi: 1,
            pres: None,
            digits: "5551234".into(),
        }))
        .with(Ie::Cause(Cause::new(17, 0)))
        .with(Ie::RestartIndicator(7))
        .with(Ie::Unknown {
            id: 0x7E,
            data: vec![1, 2],
        })
        .with(Ie::Unknown {
            id: 0x0528,
            data: vec![b'x'],
        });
        let b = m.to_bytes();
        assert_eq!(Message::parse(&b).unwrap(), m);
        assert_eq!(&b[..5], &[0x08, 0x02, 0x92, 0x34, 0x05]);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            Message::parse(&[]),
            Err(Q931Error::Truncated {
                what: "protocol discriminator",
                at: 0
            })
        );
        assert_eq!(
            Message::parse(&[8, 3, 0, 0, 0, 5]),
            Err(Q931Error::BadCallRefLen(3))
        );
        assert_eq!(
            Message::parse(&[8, 2, 0]),
            Err(Q931Error::Truncated {
                what: "call reference",
                at: 2
            })
        );
        assert_eq!(
            Message::parse(&[8, 2, 0, 1, 5, 0x6C, 9, 0x81]),
            Err(Q931Error::Truncated {
                what: "IE contents",
                at: 7
            })
        );
        assert!(matches!(
            Message::parse(&[8, 2, 0, 1, 0x45, 0x08, 1, 0x81]),
            Err(Q931Error::BadIe { ie: "cause", .. })
        ));
    }

    #[test]
    fn fuzz_never_panics() {
        let seed =
            hex("080200010504038090a31803a183816c0c21833032313535353031303070088135353531323334a1");
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut ok = 0;
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = seed.clone();
            let n = (x % 4) as usize + 1;
            for k in 0..n {
                let pos = ((x >> (8 * k + 8)) as usize) % b.len();
                b[pos] = (x >> (8 * k + 16)) as u8;
            }
            b.truncate(((x >> 40) as usize) % (b.len() + 1));
            if let Ok(m) = Message::parse(&b) {
                ok += 1;
                let _ = Message::parse(&m.to_bytes());
            }
        }
        assert!(ok > 0);
    }
}
