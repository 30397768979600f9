//! RFC 3264 offer/answer as a B2BUA does it.
//!
//! Tandem sits between caller and callee and terminates RTP on its own address. The audio
//! stream is the one it relays; any other stream (video, T.38 on the initial INVITE, ...) is
//! rejected with port 0. Rules applied:
//! - an answer has the offer's m-lines, same count, same order (RFC 3264 §6);
//! - a rejected stream has port 0 and keeps the offered formats;
//! - payload types of the offerer are kept, including the dynamic one of telephone-event;
//!   when the callee picks different numbers, the caller still sees its own;
//! - directions are mirrored (sendonly <-> recvonly) and intersected along the way, so a hold
//!   from either side reaches the other;
//! - the old hold form, `c=0.0.0.0`, is read as "do not send to me" (sendonly, or inactive if
//!   the offerer only wanted to receive); we always write our real address with a direction;
//! - rtpmap encoding names compare case-insensitively; an rtpmap at another clock rate is
//!   another codec.
//!
//! Transcoding ([`derive_offer_transcoding`], [`derive_answer_transcoding`]): the offer to
//! the callee carries the caller's codecs that both legs may use (caller's payload types and
//! order) with the other transcodable codecs appended at their static payload types. If the
//! callee picks a codec the caller offered, the call is relayed as before; otherwise Tandem
//! answers the caller with the caller's first usable codec and transcodes between the two.
//! G.729 is always written with `a=fmtp:18 annexb=no` when Tandem terminates it (our codec
//! has no VAD/CNG); a peer's `annexb=yes` is accepted (SID frames decode as comfort noise).

use std::net::SocketAddr;

use super::{Codec, Direction, Media, Origin, RtpMap, SessionDescription};

/// What was agreed for the audio stream, for programming the dataplane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The voice codec.
    pub codec: Codec,
    /// Its payload type on this leg.
    pub pt: u8,
    /// telephone-event payload type on this leg, if agreed.
    pub dtmf_pt: Option<u8>,
    /// Packetisation time the peer asked for (ms).
    pub ptime: Option<u32>,
    /// Where to send RTP; `None` on hold (`c=0.0.0.0`) or when the stream is rejected.
    pub remote: Option<SocketAddr>,
}

/// Offer/answer failed; the call layer answers SIP 488 Not Acceptable Here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The peer offered no codec Tandem supports (or the callee rejected all we offered).
    #[error("no codec in common")]
    NoCommonCodec,
    /// The offer has no audio stream with a non-zero port.
    #[error("no active audio stream")]
    NoAudio,
    /// The callee's answer does not match our offer (fewer m-lines than offered).
    #[error("answer has {answered} m-lines, the offer had {offered}")]
    AnswerMismatch {
        /// m-lines in the offer.
        offered: usize,
        /// m-lines in the answer.
        answered: usize,
    },
}

impl NegotiationError {
    /// The SIP status for the peer whose SDP failed: 488.
    pub fn sip_status(&self) -> u16 {
        488
    }
}

/// B2BUA: given the caller's offer, build the offer Tandem sends to the callee: same codec
/// order and payload types, only codecs in `supported` (telephone-event kept if offered), our
/// address/port, a fresh origin (`sess_version == sess_id`; see
/// [`SessionDescription::bump_version`] for re-offers). Non-audio streams are offered
/// disabled (port 0) so the callee's answer lines up with the caller's offer.
pub fn derive_offer(
    caller_offer: &SessionDescription,
    local: SocketAddr,
    supported: &[Codec],
    sess_id: u64,
) -> Result<SessionDescription, NegotiationError> {
    let audio = active_audio(caller_offer)?;
    let mut media = Vec::with_capacity(caller_offer.media.len());
    for (i, m) in caller_offer.media.iter().enumerate() {
        if i != audio {
            media.push(rejected(m));
            continue;
        }
        let keep = |pt: &u8| match m.codec(*pt) {
            Some(Codec::TelephoneEvent) => true,
            Some(c) => supported.contains(&c),
            None => false,
        };
        let formats: Vec<u8> = m.formats.iter().copied().filter(keep).collect();
        if !formats
            .iter()
            .any(|&pt| m.codec(pt) != Some(Codec::TelephoneEvent))
        {
            return Err(NegotiationError::NoCommonCodec);
        }
        media.push(active(
            m,
            &formats,
            local,
            formats
                .iter()
                .filter_map(|&pt| m.fmtp(pt).map(|f| (pt, f.to_string())))
                .collect(),
            m.ptime,
            offered_direction(caller_offer, m),
        ));
    }
    Ok(ours(local, sess_id, media))
}

/// B2BUA: given the caller's offer and the callee's answer to our derived offer, build our
/// answer to the caller: the codecs the callee chose (with the caller's payload types and the
/// callee's fmtp), our address/port, the caller's ptime mirrored (else the callee's).
pub fn derive_answer(
    caller_offer: &SessionDescription,
    callee_answer: &SessionDescription,
    local: SocketAddr,
    sess_id: u64,
) -> Result<SessionDescription, NegotiationError> {
    let audio = active_audio(caller_offer)?;
    let offered = &caller_offer.media[audio];
    let Some(callee) = callee_answer.media.get(audio) else {
        return Err(NegotiationError::AnswerMismatch {
            offered: caller_offer.media.len(),
            answered: callee_answer.media.len(),
        });
    };
    if callee.port == 0 {
        return Err(NegotiationError::NoCommonCodec);
    }
    let mut formats = Vec::new();
    let mut fmtps = Vec::new();
    for &pt in &callee.formats {
        // Map by codec so a callee that renumbered a dynamic payload type still works.
        let Some(caller_pt) = callee.codec(pt).and_then(|c| offered.pt_of(c)) else {
            continue;
        };
        if formats.contains(&caller_pt) {
            continue;
        }
        formats.push(caller_pt);
        if let Some(f) = callee.fmtp(pt) {
            fmtps.push((caller_pt, f.to_string()));
        }
    }
    if !formats
        .iter()
        .any(|&pt| offered.codec(pt) != Some(Codec::TelephoneEvent))
    {
        return Err(NegotiationError::NoCommonCodec);
    }
    let direction = offered_direction(caller_offer, offered)
        .mirrored()
        .intersect(offered_direction(callee_answer, callee));
    let mut media = Vec::with_capacity(caller_offer.media.len());
    for (i, m) in caller_offer.media.iter().enumerate() {
        media.push(if i == audio {
            active(
                m,
                &formats,
                local,
                fmtps.clone(),
                m.ptime.or(callee.ptime),
                direction,
            )
        } else {
            rejected(m)
        });
    }
    Ok(ours(local, sess_id, media))
}

/// Plain answerer (Echo, Playback, ...): pick the first offered codec in `supported`, plus
/// telephone-event if offered. Returns the answer and what was agreed.
pub fn answer(
    offer: &SessionDescription,
    local: SocketAddr,
    supported: &[Codec],
    sess_id: u64,
) -> Result<(SessionDescription, Negotiated), NegotiationError> {
    let audio = active_audio(offer)?;
    let m = &offer.media[audio];
    let (pt, codec) = m
        .formats
        .iter()
        .find_map(|&pt| {
            m.codec(pt)
                .filter(|c| *c != Codec::TelephoneEvent && supported.contains(c))
                .map(|c| (pt, c))
        })
        .ok_or(NegotiationError::NoCommonCodec)?;
    let dtmf_pt = m.pt_of(Codec::TelephoneEvent);
    let mut formats = vec![pt];
    let mut fmtps = Vec::new();
    if codec == Codec::G729 {
        // Tandem's G.729 has no Annex B (VAD/CNG): say so, whatever the offer said.
        fmtps.push((pt, "annexb=no".to_string()));
    }
    if let Some(te) = dtmf_pt {
        formats.push(te);
        fmtps.push((te, m.fmtp(te).unwrap_or("0-15").to_string()));
    }
    let direction = offered_direction(offer, m).mirrored();
    let media = offer
        .media
        .iter()
        .enumerate()
        .map(|(i, om)| {
            if i == audio {
                active(om, &formats, local, fmtps.clone(), om.ptime, direction)
            } else {
                rejected(om)
            }
        })
        .collect();
    let negotiated = Negotiated {
        codec,
        pt,
        dtmf_pt,
        ptime: m.ptime,
        remote: offer.media_addr(m),
    };
    Ok((ours(local, sess_id, media), negotiated))
}

/// Transcoding-aware B2BUA offer to the callee.
///
/// `caller_codecs`: voice codecs allowed on the caller's leg; `callee_codecs`: voice codecs
/// allowed on the callee's leg (in Tandem's preference order). The offer lists the caller's
/// offered codecs allowed on both legs (caller's payload types, caller's order), then the
/// other `callee_codecs` at their static payload types (skipped if the caller used that
/// number for something else), then telephone-event if the caller offered it. Fails with
/// [`NegotiationError::NoCommonCodec`] when the caller offered nothing in `caller_codecs` or
/// nothing can be offered to the callee.
pub fn derive_offer_transcoding(
    caller_offer: &SessionDescription,
    local: SocketAddr,
    caller_codecs: &[Codec],
    callee_codecs: &[Codec],
    sess_id: u64,
) -> Result<SessionDescription, NegotiationError> {
    let audio = active_audio(caller_offer)?;
    let m = &caller_offer.media[audio];
    let voice = |c: Option<Codec>| c.filter(|c| *c != Codec::TelephoneEvent);
    if !m
        .formats
        .iter()
        .any(|&pt| voice(m.codec(pt)).is_some_and(|c| caller_codecs.contains(&c)))
    {
        return Err(NegotiationError::NoCommonCodec);
    }
    // The caller's own formats that can be relayed end to end.
    let mut formats: Vec<u8> = m
        .formats
        .iter()
        .copied()
        .filter(|&pt| {
            voice(m.codec(pt))
                .is_some_and(|c| caller_codecs.contains(&c) && callee_codecs.contains(&c))
        })
        .collect();
    let mut stream = active(
        m,
        &[],
        local,
        Vec::new(),
        m.ptime,
        offered_direction(caller_offer, m),
    );
    for &c in callee_codecs {
        let Some(pt) = c.static_pt() else { continue };
        if c == Codec::TelephoneEvent || formats.iter().any(|&f| m.codec(f) == Some(c)) {
            continue;
        }
        if m.formats.contains(&pt) && m.codec(pt) != Some(c) {
            continue; // the caller uses this number for another format
        }
        formats.push(pt);
    }
    if formats.is_empty() {
        return Err(NegotiationError::NoCommonCodec);
    }
    if let Some(te) = m.pt_of(Codec::TelephoneEvent) {
        if !formats.contains(&te) {
            formats.push(te);
        }
    }
    let mut fmtps = Vec::new();
    for &pt in &formats {
        match m.codec(pt).or_else(|| static_codec(pt)) {
            Some(Codec::G729) => fmtps.push((pt, "annexb=no".to_string())),
            Some(_) if m.formats.contains(&pt) => {
                if let Some(f) = m.fmtp(pt) {
                    fmtps.push((pt, f.to_string()));
                }
            }
            _ => {}
        }
    }
    stream.rtpmaps = formats
        .iter()
        .filter_map(|&pt| {
            if m.formats.contains(&pt) {
                m.rtpmap(pt)
            } else {
                super::static_rtpmap(pt)
            }
        })
        .collect();
    stream.formats = formats;
    stream.fmtps = fmtps;
    let media = caller_offer
        .media
        .iter()
        .enumerate()
        .map(|(i, om)| {
            if i == audio {
                stream.clone()
            } else {
                rejected(om)
            }
        })
        .collect();
    Ok(ours(local, sess_id, media))
}

fn static_codec(pt: u8) -> Option<Codec> {
    Codec::from_rtpmap(&super::static_rtpmap(pt)?)
}

/// How the two legs of a B2BUA call are joined once the callee answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bridge {
    /// The callee picked a codec the caller offered: our answer to the caller; media is
    /// relayed unchanged.
    Relay(SessionDescription),
    /// The callee picked a codec the caller did not offer: our answer to the caller (with the
    /// caller's first usable codec) and what each leg speaks.
    Transcode {
        /// Our answer to the caller.
        answer: SessionDescription,
        /// The caller's leg.
        caller: Negotiated,
        /// The callee's leg.
        callee: Negotiated,
    },
}

/// Transcoding-aware answer to the caller, given the callee's answer to the offer built by
/// [`derive_offer_transcoding`]. The callee's codec is the first voice format of its answer
/// (the one it will send). `caller_codecs` as for the offer.
pub fn derive_answer_transcoding(
    caller_offer: &SessionDescription,
    callee_answer: &SessionDescription,
    local: SocketAddr,
    caller_codecs: &[Codec],
    sess_id: u64,
) -> Result<Bridge, NegotiationError> {
    let callee = Negotiated::from_answer(callee_answer, callee_answer)?;
    let audio = active_audio(caller_offer)?;
    let offered = &caller_offer.media[audio];
    if offered.pt_of(callee.codec).is_some() && caller_codecs.contains(&callee.codec) {
        return derive_answer(caller_offer, callee_answer, local, sess_id).map(Bridge::Relay);
    }
    let mut usable: Vec<Codec> = caller_codecs
        .iter()
        .copied()
        .filter(|c| *c != Codec::TelephoneEvent)
        .collect();
    usable.push(Codec::TelephoneEvent);
    let (answer, caller) = answer(caller_offer, local, &usable, sess_id)?;
    Ok(Bridge::Transcode {
        answer,
        caller,
        callee,
    })
}

impl Negotiated {
    /// What an exchange agreed, read from the answer and the SDP of the peer we send to.
    ///
    /// B2BUA use: caller leg `from_answer(&our_answer, &caller_offer)`, callee leg
    /// `from_answer(&callee_answer, &callee_answer)`. The codec is the first format of the
    /// answer's audio stream that Tandem knows; ptime is the peer's, else the answer's.
    pub fn from_answer(
        answer: &SessionDescription,
        peer: &SessionDescription,
    ) -> Result<Negotiated, NegotiationError> {
        let a = answer
            .audio()
            .filter(|m| m.port != 0)
            .ok_or(NegotiationError::NoAudio)?;
        let (pt, codec) = a
            .formats
            .iter()
            .find_map(|&pt| {
                a.codec(pt)
                    .filter(|c| *c != Codec::TelephoneEvent)
                    .map(|c| (pt, c))
            })
            .ok_or(NegotiationError::NoCommonCodec)?;
        let p = peer.audio();
        Ok(Negotiated {
            codec,
            pt,
            dtmf_pt: a.pt_of(Codec::TelephoneEvent),
            ptime: p.and_then(|m| m.ptime).or(a.ptime),
            remote: peer.audio_addr(),
        })
    }
}

/// Index of the stream we relay: the first audio stream with a non-zero port.
fn active_audio(sdp: &SessionDescription) -> Result<usize, NegotiationError> {
    sdp.media
        .iter()
        .position(|m| m.kind.eq_ignore_ascii_case("audio") && m.port != 0)
        .ok_or(NegotiationError::NoAudio)
}

/// The sender's direction with the `c=0.0.0.0` hold folded in.
fn offered_direction(sdp: &SessionDescription, m: &Media) -> Direction {
    let held = m
        .connection
        .or(sdp.connection)
        .is_some_and(|ip| ip.is_unspecified());
    if held {
        // "Do not send to me": whatever it wanted to receive, it gets nothing.
        m.direction.intersect(Direction::SendOnly)
    } else {
        m.direction
    }
}

/// Our stream for offered media `m`, restricted to `formats` (which all come from `m`).
fn active(
    m: &Media,
    formats: &[u8],
    local: SocketAddr,
    fmtps: Vec<(u8, String)>,
    ptime: Option<u32>,
    direction: Direction,
) -> Media {
    let rtpmaps: Vec<RtpMap> = formats.iter().filter_map(|&pt| m.rtpmap(pt)).collect();
    Media {
        kind: m.kind.clone(),
        port: local.port(),
        proto: m.proto.clone(),
        formats: formats.to_vec(),
        connection: None,
        rtpmaps,
        fmtps,
        ptime,
        direction,
        rtcp_port: None,
        // maxptime still binds our packetiser; everything else (ICE, crypto, ssrc...) belongs
        // to the peer's media session, which Tandem terminates.
        attributes: m
            .attributes
            .iter()
            .filter(|a| a.starts_with("maxptime:"))
            .cloned()
            .collect(),
    }
}

/// The rejected form of offered stream `m`.
fn rejected(m: &Media) -> Media {
    Media {
        kind: m.kind.clone(),
        port: 0,
        proto: m.proto.clone(),
        formats: m.formats.clone(),
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        // Not written for a port-0 stream (see `Display`); the default keeps print/parse stable.
        direction: Direction::default(),
        rtcp_port: None,
        attributes: Vec::new(),
    }
}

/// A description from Tandem at `local` with `media`.
fn ours(local: SocketAddr, sess_id: u64, media: Vec<Media>) -> SessionDescription {
    SessionDescription {
        origin: Origin {
            username: "tandem".into(),
            sess_id,
            sess_version: sess_id,
            addr: local.ip(),
        },
        session_name: "Tandem".into(),
        connection: Some(local.ip()),
        media,
        attributes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(text: &str) -> SessionDescription {
        SessionDescription::parse(text).unwrap()
    }

    const LOCAL: &str = "198.51.100.1:20000";

    #[test]
    fn transcoding_offer_appends_and_answer_picks_bridge() {
        let local: SocketAddr = LOCAL.parse().unwrap();
        let all = [Codec::Pcmu, Codec::Pcma, Codec::G729];
        let caller = sdp("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\na=ptime:20\n");
        // Callee restricted to G.729: only G.729 offered (plus telephone-event).
        let o = derive_offer_transcoding(&caller, local, &all, &[Codec::G729], 9).unwrap();
        let m = o.audio().unwrap();
        assert_eq!(m.formats, vec![18, 101]);
        assert_eq!(m.fmtp(18), Some("annexb=no"));
        assert!(o.to_string().contains("a=rtpmap:18 G729/8000"));
        // Unrestricted callee: caller's PCMU first, then PCMA and G.729 appended.
        let o = derive_offer_transcoding(&caller, local, &all, &all, 9).unwrap();
        assert_eq!(o.audio().unwrap().formats, vec![0, 8, 18, 101]);
        // The callee answers G.729 (annexb=yes accepted): transcode, caller gets PCMU.
        let callee = sdp("v=0\no=- 2 2 IN IP4 192.0.2.2\ns=-\nc=IN IP4 192.0.2.2\nm=audio 6000 RTP/AVP 18 96\na=fmtp:18 annexb=yes\na=rtpmap:96 telephone-event/8000\n");
        match derive_answer_transcoding(&caller, &callee, local, &all, 9).unwrap() {
            Bridge::Transcode {
                answer,
                caller,
                callee,
            } => {
                assert_eq!(answer.audio().unwrap().formats, vec![0, 101]);
                assert_eq!(
                    (caller.codec, caller.pt, caller.dtmf_pt),
                    (Codec::Pcmu, 0, Some(101))
                );
                assert_eq!(
                    (callee.codec, callee.pt, callee.dtmf_pt),
                    (Codec::G729, 18, Some(96))
                );
                assert_eq!(callee.remote, Some("192.0.2.2:6000".parse().unwrap()));
            }
            b => panic!("expected transcoding, got {b:?}"),
        }
        // The callee answers PCMU: plain relay.
        let callee =
            sdp("v=0\no=- 2 2 IN IP4 192.0.2.2\ns=-\nc=IN IP4 192.0.2.2\nm=audio 6000 RTP/AVP 0\n");
        assert!(matches!(
            derive_answer_transcoding(&caller, &callee, local, &all, 9).unwrap(),
            Bridge::Relay(_)
        ));
        // A caller with nothing usable on its own leg is refused.
        assert_eq!(
            derive_offer_transcoding(&caller, local, &[Codec::G729], &all, 9).err(),
            Some(NegotiationError::NoCommonCodec)
        );
    }

    #[test]
    fn hold_by_zero_address() {
        let s = sdp("v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nc=IN IP4 0.0.0.0\nm=audio 4000 RTP/AVP 0\n");
        assert_eq!(offered_direction(&s, &s.media[0]), Direction::SendOnly);
        assert_eq!(s.audio_addr(), None);
        let s = sdp("v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nc=IN IP4 0.0.0.0\nm=audio 4000 RTP/AVP 0\na=recvonly\n");
        assert_eq!(offered_direction(&s, &s.media[0]), Direction::Inactive);
    }

    #[test]
    fn from_answer_reads_both_legs() {
        let offer = sdp("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 8 0 96\na=rtpmap:96 telephone-event/8000\na=ptime:30\n");
        let local: SocketAddr = "198.51.100.1:20000".parse().unwrap();
        let (ans, n) = answer(&offer, local, &[Codec::Pcmu, Codec::Pcma], 7).unwrap();
        assert_eq!(Negotiated::from_answer(&ans, &offer).unwrap(), n);
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.dtmf_pt, Some(96));
        assert_eq!(n.ptime, Some(30));
    }
}
