//! Golden offer/answer cases: SDP in, SDP out, as data tables.
//!
//! `answer` (Tandem answers itself) and the B2BUA chain `derive_offer` -> callee answer ->
//! `derive_answer`, with baresip-like and Asterisk-like peers, holds, renumbered payload
//! types, extra streams and the failures that become SIP 488. Texts are written with LF and
//! compared after converting to CRLF, the form `Display` produces.

use std::net::SocketAddr;

use control::sdp::{
    answer, derive_answer, derive_offer, Codec, Negotiated, NegotiationError, SessionDescription,
};

const SESS: u64 = 4242;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn sdp(text: &str) -> SessionDescription {
    SessionDescription::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

/// baresip 3.x style: opus first, G.722, G.711, DTMF; rtcp-mux and ssrc lines.
const BARESIP_OFFER: &str = "\
v=0
o=- 1403112520 2872474393 IN IP4 192.168.1.20
s=-
c=IN IP4 192.168.1.20
t=0 0
m=audio 10000 RTP/AVP 111 9 0 8 101
b=AS:64
a=rtpmap:111 opus/48000/2
a=fmtp:111 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-mux
a=ssrc:1234567 cname:abcd
a=sendrecv
a=label:1
a=ptime:20
";

/// Asterisk chan_pjsip style: G.729 first with annexb=no, G.711, DTMF 0-16, maxptime.
const ASTERISK_OFFER: &str = "\
v=0
o=- 1669914066 1669914066 IN IP4 10.0.0.5
s=Asterisk
c=IN IP4 10.0.0.5
t=0 0
m=audio 18234 RTP/AVP 18 0 8 101
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
";

struct AnswerCase {
    name: &'static str,
    offer: &'static str,
    local: &'static str,
    supported: &'static [Codec],
    want: Result<&'static str, NegotiationError>,
}

const G711: &[Codec] = &[Codec::Pcma, Codec::Pcmu];
const ALL: &[Codec] = &[Codec::Pcma, Codec::Pcmu, Codec::G729];

fn answer_cases() -> Vec<AnswerCase> {
    vec![
        AnswerCase {
            name: "baresip: first offered supported codec (PCMU), DTMF kept, extras dropped",
            offer: BARESIP_OFFER,
            local: "203.0.113.5:40000",
            supported: G711,
            want: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"),
        },
        AnswerCase {
            name: "asterisk: G.729 first, annexb=no, DTMF 0-16 mirrored, maxptime kept",
            offer: ASTERISK_OFFER,
            local: "203.0.113.5:40000",
            supported: ALL,
            want: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 18 101
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
"),
        },
        AnswerCase {
            name: "hold with a=sendonly is answered recvonly",
            offer: "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\n\
                    m=audio 18234 RTP/AVP 8\na=sendonly\n",
            local: "203.0.113.5:40000",
            supported: G711,
            want: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 8
a=rtpmap:8 PCMA/8000
a=recvonly
"),
        },
        AnswerCase {
            name: "RFC 2543 hold (c=0.0.0.0) is answered recvonly",
            offer: "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\n\
                    m=audio 18234 RTP/AVP 0\n",
            local: "203.0.113.5:40000",
            supported: G711,
            want: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=recvonly
"),
        },
        AnswerCase {
            name: "recvonly -> sendonly, inactive -> inactive (second audio stream rejected)",
            offer: "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\n\
                    m=audio 5000 RTP/AVP 0\na=recvonly\nm=audio 5002 RTP/AVP 0\na=inactive\n",
            local: "203.0.113.5:40000",
            supported: G711,
            want: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendonly
m=audio 0 RTP/AVP 0
"),
        },
        AnswerCase {
            name: "video and T.38 streams rejected with port 0, in place",
            offer: "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\n\
                    m=video 6000 RTP/AVP 96\na=rtpmap:96 H264/90000\n\
                    m=audio 5000 RTP/AVP 8 0\n\
                    m=image 6002 udptl t38\na=T38FaxVersion:0\n",
            local: "203.0.113.5:40000",
            supported: &[Codec::Pcmu],
            want: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=video 0 RTP/AVP 96
m=audio 40000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendrecv
m=image 0 udptl t38
"),
        },
        AnswerCase {
            name: "dynamic PT with lower-case rtpmap; DTMF without fmtp gets 0-15",
            offer: "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nt=0 0\n\
                    m=audio 5000 RTP/AVP 96 97\nc=IN IP4 10.0.0.6\n\
                    a=rtpmap:96 pcma/8000\na=rtpmap:97 Telephone-Event/8000\na=ptime:30\n",
            local: "203.0.113.5:40000",
            supported: G711,
            want: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 96 97
a=rtpmap:96 pcma/8000
a=rtpmap:97 Telephone-Event/8000
a=fmtp:97 0-15
a=ptime:30
a=sendrecv
"),
        },
        AnswerCase {
            name: "IPv6",
            offer: "v=0\no=- 1 2 IN IP6 2001:db8::20\ns=-\nc=IN IP6 2001:db8::20\nt=0 0\n\
                    m=audio 6000 RTP/AVP 0\n",
            local: "[2001:db8::1]:40000",
            supported: G711,
            want: Ok("\
v=0
o=tandem 4242 4242 IN IP6 2001:db8::1
s=Tandem
c=IN IP6 2001:db8::1
t=0 0
m=audio 40000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendrecv
"),
        },
        AnswerCase {
            name: "no common codec (opus and G.722 only)",
            offer: "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\n\
                    m=audio 5000 RTP/AVP 111 9 101\na=rtpmap:111 opus/48000/2\n\
                    a=rtpmap:101 telephone-event/8000\n",
            local: "203.0.113.5:40000",
            supported: ALL,
            want: Err(NegotiationError::NoCommonCodec),
        },
        AnswerCase {
            name: "G.729 offered but not supported",
            offer: "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\n\
                    m=audio 5000 RTP/AVP 18\n",
            local: "203.0.113.5:40000",
            supported: G711,
            want: Err(NegotiationError::NoCommonCodec),
        },
        AnswerCase {
            name: "telephone-event alone is not a codec",
            offer: "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\n\
                    m=audio 5000 RTP/AVP 101\na=rtpmap:101 telephone-event/8000\n",
            local: "203.0.113.5:40000",
            supported: ALL,
            want: Err(NegotiationError::NoCommonCodec),
        },
        AnswerCase {
            name: "video only",
            offer: "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\n\
                    m=video 5000 RTP/AVP 96\n",
            local: "203.0.113.5:40000",
            supported: ALL,
            want: Err(NegotiationError::NoAudio),
        },
        AnswerCase {
            name: "audio disabled (port 0)",
            offer: "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nt=0 0\nm=audio 0 RTP/AVP 0\n",
            local: "203.0.113.5:40000",
            supported: ALL,
            want: Err(NegotiationError::NoAudio),
        },
    ]
}

#[test]
fn answer_golden() {
    for case in answer_cases() {
        let offer = sdp(case.offer);
        let got = answer(&offer, addr(case.local), case.supported, SESS);
        match (&got, &case.want) {
            (Ok((ans, neg)), Ok(want)) => {
                assert_eq!(ans.to_string(), crlf(want), "{}", case.name);
                // The answer we produce parses back to itself.
                assert_eq!(&sdp(&ans.to_string()), ans, "{}", case.name);
                assert_eq!(
                    &Negotiated::from_answer(ans, &offer).unwrap(),
                    neg,
                    "{}",
                    case.name
                );
            }
            (Err(e), Err(want)) => {
                assert_eq!(e, want, "{}", case.name);
                assert_eq!(e.sip_status(), 488);
            }
            _ => panic!("{}: got {got:?}, want {:?}", case.name, case.want),
        }
    }
}

#[test]
fn answer_negotiated_values() {
    let (_, n) = answer(&sdp(BARESIP_OFFER), addr("203.0.113.5:40000"), G711, SESS).unwrap();
    assert_eq!(
        n,
        Negotiated {
            codec: Codec::Pcmu,
            pt: 0,
            dtmf_pt: Some(101),
            ptime: Some(20),
            remote: Some(addr("192.168.1.20:10000")),
        }
    );
    let held = "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 0.0.0.0\nm=audio 18234 RTP/AVP 0\n";
    let (_, n) = answer(&sdp(held), addr("203.0.113.5:40000"), G711, SESS).unwrap();
    assert_eq!(n.remote, None, "on hold there is nowhere to send");
    assert_eq!(n.dtmf_pt, None);
}

struct B2buaCase {
    name: &'static str,
    caller_offer: &'static str,
    supported: &'static [Codec],
    /// Our offer to the callee (from 203.0.113.5:40002).
    want_offer: Result<&'static str, NegotiationError>,
    callee_answer: &'static str,
    /// Our answer to the caller (from 203.0.113.5:40000).
    want_answer: Result<&'static str, NegotiationError>,
}

/// A baresip callee answering our G.711 offer with PCMA and DTMF.
const BARESIP_ANSWER_PCMA: &str = "\
v=0
o=- 99 100 IN IP4 192.168.1.30
s=-
c=IN IP4 192.168.1.30
t=0 0
m=audio 30000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
";

const OFFER_TO_CALLEE_G711: &str = "\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40002 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
";

fn b2bua_cases() -> Vec<B2buaCase> {
    vec![
        B2buaCase {
            name: "asterisk caller, G.711-only Tandem, baresip callee picks PCMA",
            caller_offer: ASTERISK_OFFER,
            supported: G711,
            want_offer: Ok(OFFER_TO_CALLEE_G711),
            callee_answer: BARESIP_ANSWER_PCMA,
            want_answer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=maxptime:150
a=sendrecv
"),
        },
        B2buaCase {
            name: "callee renumbers telephone-event to 96: the caller keeps its 101",
            caller_offer: ASTERISK_OFFER,
            supported: G711,
            want_offer: Ok(OFFER_TO_CALLEE_G711),
            callee_answer: "v=0\no=- 1 1 IN IP4 192.168.1.30\ns=-\nc=IN IP4 192.168.1.30\n\
                            m=audio 30000 RTP/AVP 0 96\na=rtpmap:96 TELEPHONE-EVENT/8000\n\
                            a=fmtp:96 0-11\n",
            want_answer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-11
a=ptime:20
a=maxptime:150
a=sendrecv
"),
        },
        B2buaCase {
            name: "caller puts callee on hold (sendonly); callee wrongly answers sendrecv",
            caller_offer: "v=0\no=- 5 6 IN IP4 192.168.1.20\ns=-\nc=IN IP4 192.168.1.20\nt=0 0\n\
                           m=audio 10000 RTP/AVP 8\na=sendonly\n",
            supported: G711,
            want_offer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40002 RTP/AVP 8
a=rtpmap:8 PCMA/8000
a=sendonly
"),
            callee_answer: "v=0\no=- 1 1 IN IP4 192.168.1.30\ns=-\nc=IN IP4 192.168.1.30\n\
                            m=audio 30000 RTP/AVP 8\n",
            want_answer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 8
a=rtpmap:8 PCMA/8000
a=recvonly
"),
        },
        B2buaCase {
            name: "RFC 2543 hold from the caller becomes an explicit sendonly towards the callee",
            caller_offer: "v=0\no=- 5 6 IN IP4 192.168.1.20\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\n\
                           m=audio 10000 RTP/AVP 0\n",
            supported: G711,
            want_offer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40002 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendonly
"),
            callee_answer: "v=0\no=- 1 1 IN IP4 192.168.1.30\ns=-\nc=IN IP4 192.168.1.30\n\
                            m=audio 30000 RTP/AVP 0\na=recvonly\n",
            want_answer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=recvonly
"),
        },
        B2buaCase {
            name: "video offered disabled to the callee and rejected to the caller",
            caller_offer: "v=0\no=- 5 6 IN IP4 192.168.1.20\ns=-\nc=IN IP4 192.168.1.20\nt=0 0\n\
                           m=audio 10000 RTP/AVP 0 8\nm=video 10002 RTP/AVP 96\n\
                           a=rtpmap:96 VP8/90000\n",
            supported: &[Codec::Pcma],
            want_offer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40002 RTP/AVP 8
a=rtpmap:8 PCMA/8000
a=sendrecv
m=video 0 RTP/AVP 96
"),
            callee_answer: "v=0\no=- 1 1 IN IP4 192.168.1.30\ns=-\nc=IN IP4 192.168.1.30\n\
                            m=audio 30000 RTP/AVP 8\nm=video 0 RTP/AVP 96\n",
            want_answer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 8
a=rtpmap:8 PCMA/8000
a=sendrecv
m=video 0 RTP/AVP 96
"),
        },
        B2buaCase {
            name: "callee rejects the audio stream",
            caller_offer: BARESIP_OFFER,
            supported: G711,
            want_offer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40002 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"),
            callee_answer: "v=0\no=- 1 1 IN IP4 192.168.1.30\ns=-\nm=audio 0 RTP/AVP 0\n",
            want_answer: Err(NegotiationError::NoCommonCodec),
        },
        B2buaCase {
            name: "callee answers with a codec we never offered",
            caller_offer: BARESIP_OFFER,
            supported: &[Codec::Pcmu],
            want_offer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=audio 40002 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"),
            callee_answer: "v=0\no=- 1 1 IN IP4 192.168.1.30\ns=-\nc=IN IP4 192.168.1.30\n\
                            m=audio 30000 RTP/AVP 9 101\na=rtpmap:101 telephone-event/8000\n",
            want_answer: Err(NegotiationError::NoCommonCodec),
        },
        B2buaCase {
            name: "callee answer has fewer m-lines than the offer",
            caller_offer: "v=0\no=- 5 6 IN IP4 192.168.1.20\ns=-\nc=IN IP4 192.168.1.20\nt=0 0\n\
                           m=video 10002 RTP/AVP 96\nm=audio 10000 RTP/AVP 0\n",
            supported: G711,
            want_offer: Ok("\
v=0
o=tandem 4242 4242 IN IP4 203.0.113.5
s=Tandem
c=IN IP4 203.0.113.5
t=0 0
m=video 0 RTP/AVP 96
m=audio 40002 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendrecv
"),
            callee_answer: "v=0\no=- 1 1 IN IP4 192.168.1.30\ns=-\nc=IN IP4 192.168.1.30\n\
                            m=audio 30000 RTP/AVP 0\n",
            want_answer: Err(NegotiationError::AnswerMismatch {
                offered: 2,
                answered: 1,
            }),
        },
        B2buaCase {
            name: "caller offers only G.729 to a G.711-only Tandem",
            caller_offer: "v=0\no=- 5 6 IN IP4 192.168.1.20\ns=-\nc=IN IP4 192.168.1.20\nt=0 0\n\
                           m=audio 10000 RTP/AVP 18 101\na=rtpmap:101 telephone-event/8000\n",
            supported: G711,
            want_offer: Err(NegotiationError::NoCommonCodec),
            callee_answer: "",
            want_answer: Err(NegotiationError::NoCommonCodec),
        },
    ]
}

#[test]
fn b2bua_golden() {
    let local_a = addr("203.0.113.5:40000");
    let local_b = addr("203.0.113.5:40002");
    for case in b2bua_cases() {
        let caller = sdp(case.caller_offer);
        let offer = derive_offer(&caller, local_b, case.supported, SESS);
        match (&offer, &case.want_offer) {
            (Ok(o), Ok(want)) => {
                assert_eq!(o.to_string(), crlf(want), "{}: offer", case.name);
                assert_eq!(&sdp(&o.to_string()), o, "{}: offer reparses", case.name);
            }
            (Err(e), Err(want)) => {
                assert_eq!(e, want, "{}: offer", case.name);
                continue;
            }
            _ => panic!("{}: offer {offer:?}, want {:?}", case.name, case.want_offer),
        }
        let callee = sdp(case.callee_answer);
        let got = derive_answer(&caller, &callee, local_a, SESS);
        match (&got, &case.want_answer) {
            (Ok(a), Ok(want)) => {
                assert_eq!(a.to_string(), crlf(want), "{}: answer", case.name);
                // Both legs agree on the codec; payload types are each leg's own.
                let leg_a = Negotiated::from_answer(a, &caller).unwrap();
                let leg_b = Negotiated::from_answer(&callee, &callee).unwrap();
                assert_eq!(leg_a.codec, leg_b.codec, "{}", case.name);
                assert_eq!(leg_a.remote, caller.audio_addr(), "{}", case.name);
                assert_eq!(leg_b.remote, callee.audio_addr(), "{}", case.name);
            }
            (Err(e), Err(want)) => assert_eq!(e, want, "{}: answer", case.name),
            _ => panic!("{}: answer {got:?}, want {:?}", case.name, case.want_answer),
        }
    }
}
