//! Mutated SDP never panics the parser or the offer/answer code (a seeded, bounded stand-in
//! for a fuzz target: fixed seed, a few thousand cases, well under a second).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use control::sdp::{answer, derive_answer, derive_offer, Codec, SessionDescription};

const SEED_SDP: &str = "v=0\r\no=- 1 2 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 18234 RTP/AVP 18 0 8 101\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendonly\r\n\
m=video 0 RTP/AVP 96\r\nm=image 6000 udptl t38\r\nc=IN IP6 ::\r\n";

const TOKENS: &[&str] = &[
    "\r\n",
    "\n",
    "=",
    " ",
    "/",
    ":",
    "m=audio 0 RTP/AVP 0\r\n",
    "c=IN IP4 0.0.0.0\r\n",
    "a=rtpmap:",
    "a=fmtp:",
    "a=ptime:",
    "a=rtcp:",
    "65535",
    "65536",
    "127",
    "128",
    "-1",
    "\u{e9}",
    "\0",
    "a=inactive\r\n",
    "IP6",
    "::1",
    "4294967296",
    "18446744073709551616",
];

pub fn mutate(rng: &mut StdRng, seed: &str) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..rng.gen_range(1..6) {
        let at = rng.gen_range(0..=s.len());
        match rng.gen_range(0..4) {
            0 if at < s.len() => {
                s.remove(at);
            }
            1 => s.insert(at, char::from(rng.gen_range(0x20u8..0x7f))),
            2 => {
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                for (i, c) in t.chars().enumerate() {
                    s.insert(at + i, c);
                }
            }
            _ => s.truncate(at),
        }
    }
    s.into_iter().collect()
}

#[test]
fn mutated_sdp_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x5d9);
    let local = "203.0.113.5:40000".parse().unwrap();
    let callee = SessionDescription::parse(
        "v=0\no=- 1 1 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nm=audio 30000 RTP/AVP 0 101\n\
         a=rtpmap:101 telephone-event/8000\nm=video 0 RTP/AVP 96\nm=image 0 udptl t38\n",
    )
    .unwrap();
    let mut ok = 0;
    for _ in 0..5000 {
        let text = mutate(&mut rng, SEED_SDP);
        let Ok(sdp) = SessionDescription::parse(&text) else {
            continue;
        };
        ok += 1;
        let again = SessionDescription::parse(&sdp.to_string());
        assert!(
            again.is_ok(),
            "printed SDP must parse: {text:?} -> {again:?}"
        );
        let _ = sdp.audio_addr();
        let _ = answer(&sdp, local, &Codec::ALL, 1);
        if let Ok(offer) = derive_offer(&sdp, local, &[Codec::Pcmu, Codec::Pcma], 1) {
            let _ = derive_answer(&sdp, &callee, local, 1);
            let _ = derive_answer(&sdp, &offer, local, 1);
        }
    }
    assert!(
        ok > 500,
        "the mutations should keep many bodies valid; {ok} were"
    );
}
