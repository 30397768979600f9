//! The rtpengine "ng" control protocol: Kamailio's and OpenSIPS's rtpengine
//! modules (and rtpengine's own test harness) drive Tandem's dataplane with
//! it as a drop-in media relay.
//!
//! Wire: one UDP datagram per message, `<cookie> <bencoded dictionary>`; the
//! reply carries the same cookie. Commands: `ping`, `offer`, `answer`,
//! `delete`, `query`, `list`. A call (by `call-id`) is one dataplane session:
//! leg A is the side that sent the first offer (its `from-tag`), leg B the
//! other. `offer` takes A's SDP, points the session's A leg at it, and
//! returns the SDP rewritten to leg B's local address (for B); `answer` does
//! the converse. A re-offer from either side updates that side.
//!
//! Sans-IO: [`Ng::handle`] takes a datagram, the media handle and `now`, and
//! returns the reply datagram. Replies are cached by cookie for
//! [`CACHE_TTL`], so a retransmitted command is answered again without being
//! executed twice (the rtpengine semantics clients rely on). Bad input never
//! panics: bencode errors, missing keys and bad SDP each produce an error
//! reply naming what is wrong, and are counted in [`NgStats`]. A datagram
//! without a cookie cannot be answered; it is counted and dropped.
//!
//! Layers: [`bencode`] (the codec), this module (commands and call table),
//! SDP through [`crate::sdp`], media through [`crate::call::Media`]; the UDP
//! socket lives in `control::net`.

pub mod bencode;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bencode::{dict, Value};
use serde::Serialize;

use crate::call::Media;
use crate::sdp::SessionDescription;

/// How long a reply is kept for a retransmitted cookie.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most replies cached at once (the oldest go first).
pub const CACHE_MAX: usize = 16_384;
/// Longest cookie accepted.
pub const MAX_COOKIE: usize = 256;
/// `list` answers at most this many call ids unless `limit` says otherwise.
pub const LIST_DEFAULT: usize = 32;

/// Counters of the ng interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NgStats {
    pub ping: u64,
    pub offer: u64,
    pub answer: u64,
    pub delete: u64,
    pub query: u64,
    pub list: u64,
    /// Commands answered with `result: error` (any reason).
    pub errors: u64,
    /// Of those: the message was not valid bencode (or not a dictionary).
    pub bad_bencode: u64,
    /// Of those: unknown command.
    pub unknown_command: u64,
    /// Datagrams without a cookie (dropped: no reply possible).
    pub no_cookie: u64,
    /// Retransmitted commands answered from the cache.
    pub cached: u64,
    /// Calls now in the table.
    pub calls: u64,
}

/// Why a command failed; the text goes into `error-reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NgError {
    /// Client: not bencode, or not a dictionary.
    #[error("{0}")]
    Bencode(#[from] bencode::DecodeError),
    /// Client: the message is not a dictionary.
    #[error("message is not a bencode dictionary")]
    NotDict,
    /// Client: a required key is missing or has the wrong type.
    #[error("missing or invalid key \"{0}\"")]
    Key(&'static str),
    /// Client: the command is not one we know.
    #[error("Unrecognized command \"{0}\"")]
    UnknownCommand(String),
    /// Client: the SDP does not parse.
    #[error("bad SDP: {0}")]
    Sdp(String),
    /// Client: the SDP has no audio stream to relay.
    #[error("SDP has no audio stream")]
    NoAudio,
    /// Client: the call is not known.
    #[error("Unknown call-id")]
    UnknownCall,
    /// Client: the from-tag is not one of the call's parties.
    #[error("Unknown from-tag \"{0}\" for this call")]
    UnknownTag(String),
    /// Host: the dataplane refused (no ports, no slots, queue full...).
    #[error("media: {0}")]
    Media(String),
}

/// One relayed call.
#[derive(Debug, Clone)]
struct NgCall {
    session: dataplane::SessionId,
    worker: usize,
    /// Tags of legs A and B (B known from the answer's to-tag).
    tags: [Option<String>; 2],
    local: [SocketAddr; 2],
    remote: [Option<SocketAddr>; 2],
    created: Instant,
}

/// The ng protocol core: call table, reply cache and counters.
#[derive(Debug, Default)]
pub struct Ng {
    calls: HashMap<String, NgCall>,
    cache: HashMap<Vec<u8>, (Instant, Vec<u8>)>,
    cache_order: VecDeque<(Instant, Vec<u8>)>,
    stats: NgStats,
}

const SIDES: [dataplane::Side; 2] = [dataplane::Side::A, dataplane::Side::B];

impl Ng {
    pub fn new() -> Ng {
        Ng::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> NgStats {
        let mut s = self.stats;
        s.calls = self.calls.len() as u64;
        s
    }

    /// Handle one datagram; returns the reply to send back to its source,
    /// if one can be formed.
    pub fn handle<M: Media>(
        &mut self,
        datagram: &[u8],
        media: &mut M,
        now: Instant,
    ) -> Option<Vec<u8>> {
        self.expire(now);
        let Some(sp) = datagram.iter().position(|&b| b == b' ') else {
            self.stats.no_cookie += 1;
            return None;
        };
        let (cookie, body) = (&datagram[..sp], &datagram[sp + 1..]);
        if cookie.is_empty() || cookie.len() > MAX_COOKIE {
            self.stats.no_cookie += 1;
            return None;
        }
        if let Some((_, reply)) = self.cache.get(cookie) {
            self.stats.cached += 1;
            return Some(reply.clone());
        }
        let value = match bencode::decode(body) {
            Ok(v) => self.execute(&v, media, now),
            Err(e) => {
                self.stats.bad_bencode += 1;
                Err(NgError::Bencode(e))
            }
        };
        let value = value.unwrap_or_else(|e| {
            self.stats.errors += 1;
            dict([
                ("result", Value::str("error")),
                ("error-reason", Value::str(&e.to_string())),
            ])
        });
        let mut reply = cookie.to_vec();
        reply.push(b' ');
        value.encode_into(&mut reply);
        if self.cache_order.len() >= CACHE_MAX {
            if let Some((_, k)) = self.cache_order.pop_front() {
                self.cache.remove(&k);
            }
        }
        self.cache.insert(cookie.to_vec(), (now, reply.clone()));
        self.cache_order.push_back((now, cookie.to_vec()));
        Some(reply)
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, _)) = self.cache_order.front() {
            if now.saturating_duration_since(*t) < CACHE_TTL {
                break;
            }
            if let Some((_, k)) = self.cache_order.pop_front() {
                self.cache.remove(&k);
            }
        }
    }

    fn execute<M: Media>(
        &mut self,
        msg: &Value,
        media: &mut M,
        now: Instant,
    ) -> Result<Value, NgError> {
        if msg.as_dict().is_none() {
            self.stats.bad_bencode += 1;
            return Err(NgError::NotDict);
        }
        let command = text(msg, "command")?;
        match command.to_ascii_lowercase().as_str() {
            "ping" => {
                self.stats.ping += 1;
                Ok(dict([("result", Value::str("pong"))]))
            }
            "offer" => {
                self.stats.offer += 1;
                self.offer(msg, media, now)
            }
            "answer" => {
                self.stats.answer += 1;
                self.answer(msg, media)
            }
            "delete" => {
                self.stats.delete += 1;
                self.delete(msg, media)
            }
            "query" => {
                self.stats.query += 1;
                self.query(msg, now)
            }
            "list" => {
                self.stats.list += 1;
                Ok(self.list(msg))
            }
            other => {
                self.stats.unknown_command += 1;
                Err(NgError::UnknownCommand(other.chars().take(64).collect()))
            }
        }
    }

    fn offer<M: Media>(
        &mut self,
        msg: &Value,
        media: &mut M,
        now: Instant,
    ) -> Result<Value, NgError> {
        let call_id = text(msg, "call-id")?;
        let from_tag = text(msg, "from-tag")?;
        let sdp = parse_sdp(msg)?;
        let remote = audio_remote(&sdp)?;
        let call = match self.calls.get_mut(call_id) {
            Some(c) => c,
            None => {
                let a = media
                    .create_session(dataplane::Mode::Relay)
                    .map_err(|e| NgError::Media(e.to_string()))?;
                self.calls.entry(call_id.to_owned()).or_insert(NgCall {
                    session: a.id,
                    worker: a.worker,
                    tags: [Some(from_tag.to_owned()), None],
                    local: [a.a, a.b],
                    remote: [None, None],
                    created: now,
                })
            }
        };
        // The offerer: the side whose tag this is (a re-offer from B is the
        // converse of the first offer); an unknown tag with B still
        // unnamed is B.
        let from = match call
            .tags
            .iter()
            .position(|t| t.as_deref() == Some(from_tag))
        {
            Some(i) => i,
            None if call.tags[1].is_none() => {
                call.tags[1] = Some(from_tag.to_owned());
                1
            }
            None => return Err(NgError::UnknownTag(from_tag.to_owned())),
        };
        set_remote(media, call, from, remote)?;
        let out = rewrite(&sdp, call.local[1 - from], replace_origin(msg));
        Ok(ok_with_sdp(out))
    }

    fn answer<M: Media>(&mut self, msg: &Value, media: &mut M) -> Result<Value, NgError> {
        let call_id = text(msg, "call-id")?;
        let from_tag = text(msg, "from-tag")?;
        let to_tag = msg.get("to-tag").and_then(Value::as_str);
        let sdp = parse_sdp(msg)?;
        let remote = audio_remote(&sdp)?;
        let call = self.calls.get_mut(call_id).ok_or(NgError::UnknownCall)?;
        let offerer = call
            .tags
            .iter()
            .position(|t| t.as_deref() == Some(from_tag))
            .ok_or_else(|| NgError::UnknownTag(from_tag.to_owned()))?;
        let answerer = 1 - offerer;
        if let (None, Some(t)) = (&call.tags[answerer], to_tag) {
            call.tags[answerer] = Some(t.to_owned());
        }
        set_remote(media, call, answerer, remote)?;
        let out = rewrite(&sdp, call.local[offerer], replace_origin(msg));
        Ok(ok_with_sdp(out))
    }

    fn delete<M: Media>(&mut self, msg: &Value, media: &mut M) -> Result<Value, NgError> {
        let call_id = text(msg, "call-id")?;
        let call = self.calls.remove(call_id).ok_or(NgError::UnknownCall)?;
        if let Err(e) = media.destroy(call.session) {
            // The call is gone from our table either way; report the cause.
            return Err(NgError::Media(e.to_string()));
        }
        Ok(dict([("result", Value::str("ok"))]))
    }

    fn query(&self, msg: &Value, now: Instant) -> Result<Value, NgError> {
        let call_id = text(msg, "call-id")?;
        let call = self.calls.get(call_id).ok_or(NgError::UnknownCall)?;
        let mut tags = BTreeMap::new();
        for (i, side) in SIDES.iter().enumerate() {
            let Some(tag) = &call.tags[i] else { continue };
            let remote = call.remote[i].map_or(String::new(), |r| r.to_string());
            tags.insert(
                tag.as_bytes().to_vec(),
                dict([
                    ("tag", Value::str(tag)),
                    (
                        "leg",
                        Value::str(if *side == dataplane::Side::A {
                            "A"
                        } else {
                            "B"
                        }),
                    ),
                    ("local", Value::str(&call.local[i].to_string())),
                    ("remote", Value::str(&remote)),
                ]),
            );
        }
        let age = now.saturating_duration_since(call.created).as_secs();
        Ok(dict([
            ("result", Value::str("ok")),
            (
                "duration",
                Value::Int(i64::try_from(age).unwrap_or(i64::MAX)),
            ),
            ("media-session", Value::Int(i64::from(call.session.0))),
            (
                "worker",
                Value::Int(i64::try_from(call.worker).unwrap_or(i64::MAX)),
            ),
            ("tags", Value::Dict(tags)),
        ]))
    }

    fn list(&self, msg: &Value) -> Value {
        let limit = msg
            .get("limit")
            .and_then(Value::as_int)
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(LIST_DEFAULT);
        let mut ids: Vec<&String> = self.calls.keys().collect();
        ids.sort();
        dict([
            ("result", Value::str("ok")),
            (
                "calls",
                Value::List(ids.into_iter().take(limit).map(|c| Value::str(c)).collect()),
            ),
        ])
    }
}

fn text<'a>(msg: &'a Value, key: &'static str) -> Result<&'a str, NgError> {
    msg.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(NgError::Key(key))
}

fn parse_sdp(msg: &Value) -> Result<SessionDescription, NgError> {
    let sdp = text(msg, "sdp")?;
    SessionDescription::parse(sdp).map_err(|e| NgError::Sdp(e.to_string()))
}

/// Where the SDP's sender receives audio (`None`: on hold / not given).
fn audio_remote(sdp: &SessionDescription) -> Result<Option<SocketAddr>, NgError> {
    if sdp.audio().is_none() {
        return Err(NgError::NoAudio);
    }
    Ok(sdp.audio_addr())
}

fn set_remote<M: Media>(
    media: &mut M,
    call: &mut NgCall,
    side: usize,
    remote: Option<SocketAddr>,
) -> Result<(), NgError> {
    let Some(r) = remote else { return Ok(()) };
    media
        .set_remote(call.session, SIDES[side], r)
        .map_err(|e| NgError::Media(e.to_string()))?;
    call.remote[side] = Some(r);
    Ok(())
}

/// `replace: ["origin", ...]` asks for the `o=` address to be ours.
fn replace_origin(msg: &Value) -> bool {
    matches!(msg.get("replace"), Some(Value::List(l))
        if l.iter().any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("origin"))))
}

fn ok_with_sdp(sdp: String) -> Value {
    dict([
        ("result", Value::str("ok")),
        ("sdp", Value::Bytes(sdp.into_bytes())),
    ])
}

/// `sdp` rewritten to send the audio to `local`: connection addresses ours,
/// the audio port ours (RTCP on port + 1), other streams disabled (only one
/// audio stream is relayed), ICE attributes dropped (we are not an ICE
/// agent).
pub fn rewrite(sdp: &SessionDescription, local: SocketAddr, replace_origin: bool) -> String {
    let mut out = sdp.clone();
    let audio = sdp
        .audio()
        .and_then(|a| sdp.media.iter().position(|m| std::ptr::eq(m, a)));
    out.connection = Some(local.ip());
    if replace_origin {
        out.origin.addr = local.ip();
    }
    for (i, m) in out.media.iter_mut().enumerate() {
        m.connection = None;
        m.attributes.retain(|a| !is_ice(a));
        if Some(i) == audio {
            m.port = local.port();
            m.rtcp_port = None;
        } else {
            m.port = 0;
        }
    }
    out.attributes.retain(|a| !is_ice(a));
    out.to_string()
}

fn is_ice(attr: &str) -> bool {
    let name = attr.split(':').next().unwrap_or("");
    name.eq_ignore_ascii_case("candidate")
        || name.eq_ignore_ascii_case("end-of-candidates")
        || name.to_ascii_lowercase().starts_with("ice-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// A media double: sessions with two local addresses, remotes recorded.
    #[derive(Default)]
    struct FakeMedia {
        next: u32,
        remotes: Vec<(dataplane::SessionId, dataplane::Side, SocketAddr)>,
        destroyed: Vec<dataplane::SessionId>,
        fail: bool,
    }

    impl Media for FakeMedia {
        fn create_session(
            &mut self,
            _mode: dataplane::Mode,
        ) -> Result<dataplane::Allocated, dataplane::Error> {
            if self.fail {
                return Err(dataplane::Error::NoPorts);
            }
            self.next += 1;
            let p = 30_000 + 4 * self.next as u16;
            Ok(dataplane::Allocated {
                id: dataplane::SessionId(self.next),
                worker: 0,
                a: SocketAddr::from(([192, 0, 2, 1], p)),
                b: SocketAddr::from(([192, 0, 2, 1], p + 2)),
            })
        }
        fn set_remote(
            &mut self,
            id: dataplane::SessionId,
            side: dataplane::Side,
            rtp: SocketAddr,
        ) -> Result<(), dataplane::Error> {
            self.remotes.push((id, side, rtp));
            Ok(())
        }
        fn set_mode(
            &mut self,
            _id: dataplane::SessionId,
            _mode: dataplane::Mode,
        ) -> Result<(), dataplane::Error> {
            Ok(())
        }
        fn arm_timeout(&mut self, _id: dataplane::SessionId) -> Result<(), dataplane::Error> {
            Ok(())
        }
        fn destroy(&mut self, id: dataplane::SessionId) -> Result<(), dataplane::Error> {
            self.destroyed.push(id);
            Ok(())
        }
        fn poll_event(&mut self) -> Option<dataplane::Event> {
            None
        }
        fn stats(&self) -> Vec<dataplane::WorkerStats> {
            Vec::new()
        }
    }

    fn sdp(ip: &str, port: u16) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=x\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtcp-mux\r\n\
             a=candidate:1 1 udp 1 {ip} {port} typ host\r\n"
        )
    }

    fn send(ng: &mut Ng, m: &mut FakeMedia, cookie: &str, v: Value) -> Value {
        let mut d = format!("{cookie} ").into_bytes();
        v.encode_into(&mut d);
        let r = ng.handle(&d, m, Instant::now()).expect("a reply");
        let (ck, body) = r.split_at(cookie.len() + 1);
        assert_eq!(ck, format!("{cookie} ").as_bytes());
        bencode::decode(body).unwrap()
    }

    fn result(v: &Value) -> &str {
        v.get("result").and_then(Value::as_str).unwrap_or("")
    }

    #[test]
    fn offer_answer_delete() {
        let (mut ng, mut m) = (Ng::new(), FakeMedia::default());
        let r = send(
            &mut ng,
            &mut m,
            "c1",
            dict([("command", Value::str("ping"))]),
        );
        assert_eq!(result(&r), "pong");
        let offer = dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("call1")),
            ("from-tag", Value::str("ft")),
            ("sdp", Value::str(&sdp("10.0.0.1", 5000))),
            ("replace", Value::List(vec![Value::str("origin")])),
        ]);
        let r = send(&mut ng, &mut m, "c2", offer.clone());
        assert_eq!(result(&r), "ok", "{r:?}");
        let out = SessionDescription::parse(r.get("sdp").unwrap().as_str().unwrap()).unwrap();
        // The offer goes to B: it carries leg B's local address.
        assert_eq!(out.audio_addr(), Some("192.0.2.1:30006".parse().unwrap()));
        assert_eq!(out.origin.addr, "192.0.2.1".parse::<IpAddr>().unwrap());
        let text = r.get("sdp").unwrap().as_str().unwrap();
        assert!(!text.contains("candidate"), "{text}");
        assert!(text.contains("a=rtcp-mux"), "{text}");
        assert_eq!(
            m.remotes,
            vec![(
                dataplane::SessionId(1),
                dataplane::Side::A,
                "10.0.0.1:5000".parse().unwrap()
            )]
        );
        // Retransmission (same cookie): the cached reply, no second session.
        let again = send(&mut ng, &mut m, "c2", offer);
        assert_eq!(again, r);
        assert_eq!((m.next, ng.stats().cached), (1, 1));

        let answer = dict([
            ("command", Value::str("answer")),
            ("call-id", Value::str("call1")),
            ("from-tag", Value::str("ft")),
            ("to-tag", Value::str("tt")),
            ("sdp", Value::str(&sdp("10.0.0.2", 6000))),
        ]);
        let r = send(&mut ng, &mut m, "c3", answer);
        assert_eq!(result(&r), "ok", "{r:?}");
        let out = SessionDescription::parse(r.get("sdp").unwrap().as_str().unwrap()).unwrap();
        assert_eq!(out.audio_addr(), Some("192.0.2.1:30004".parse().unwrap()));
        assert_eq!(m.remotes[1].1, dataplane::Side::B);

        let q = send(
            &mut ng,
            &mut m,
            "c4",
            dict([
                ("command", Value::str("query")),
                ("call-id", Value::str("call1")),
            ]),
        );
        let tt = q.get("tags").and_then(|t| t.get("tt")).unwrap();
        assert_eq!(tt.get("remote").unwrap().as_str(), Some("10.0.0.2:6000"));
        let l = send(
            &mut ng,
            &mut m,
            "c5",
            dict([("command", Value::str("list"))]),
        );
        assert_eq!(
            l.get("calls"),
            Some(&Value::List(vec![Value::str("call1")]))
        );
        let del = dict([
            ("command", Value::str("delete")),
            ("call-id", Value::str("call1")),
        ]);
        assert_eq!(result(&send(&mut ng, &mut m, "c6", del.clone())), "ok");
        assert_eq!(m.destroyed, vec![dataplane::SessionId(1)]);
        let r = send(&mut ng, &mut m, "c7", del);
        assert_eq!(result(&r), "error");
        assert_eq!(
            r.get("error-reason").unwrap().as_str(),
            Some("Unknown call-id")
        );
        let s = ng.stats();
        assert_eq!(
            (s.ping, s.offer, s.answer, s.query, s.list, s.delete, s.errors, s.calls),
            (1, 1, 1, 1, 1, 2, 1, 0)
        );
    }

    #[test]
    fn bad_input_gets_an_error_reply_naming_it() {
        let (mut ng, mut m) = (Ng::new(), FakeMedia::default());
        let reply = |ng: &mut Ng, m: &mut FakeMedia, d: &[u8]| {
            let r = ng.handle(d, m, Instant::now()).expect("reply");
            let sp = r.iter().position(|&b| b == b' ').unwrap();
            let v = bencode::decode(&r[sp + 1..]).unwrap();
            assert_eq!(result(&v), "error");
            v.get("error-reason").unwrap().as_str().unwrap().to_owned()
        };
        let e = reply(&mut ng, &mut m, b"k1 d7:command4:ping");
        assert!(e.contains("bencode") && e.contains("byte 16"), "{e}");
        let e = reply(&mut ng, &mut m, b"k2 i5e");
        assert!(e.contains("not a bencode dictionary"), "{e}");
        let e = reply(&mut ng, &mut m, b"k3 d7:command6:reboote");
        assert!(e.contains("Unrecognized command \"reboot\""), "{e}");
        let e = reply(&mut ng, &mut m, b"k4 d7:command5:offere");
        assert!(e.contains("\"call-id\""), "{e}");
        let e = reply(
            &mut ng,
            &mut m,
            b"k5 d7:call-id1:x7:command5:offer8:from-tag1:f3:sdp3:v=1e",
        );
        assert!(e.starts_with("bad SDP"), "{e}");
        m.fail = true;
        let mut d = b"k6 ".to_vec();
        dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("x")),
            ("from-tag", Value::str("f")),
            ("sdp", Value::str(&sdp("10.0.0.1", 5000))),
        ])
        .encode_into(&mut d);
        let e = reply(&mut ng, &mut m, &d);
        assert!(e.starts_with("media: no free RTP ports"), "{e}");
        assert_eq!(ng.handle(b"no-cookie", &mut m, Instant::now()), None);
        let s = ng.stats();
        assert_eq!(
            (
                s.errors,
                s.bad_bencode,
                s.unknown_command,
                s.no_cookie,
                s.calls
            ),
            (6, 2, 1, 1, 0)
        );
    }

    #[test]
    fn fuzzed_datagrams_never_panic() {
        let (mut ng, mut m) = (Ng::new(), FakeMedia::default());
        let base = {
            let mut d = b"ck ".to_vec();
            dict([
                ("command", Value::str("offer")),
                ("call-id", Value::str("x")),
                ("from-tag", Value::str("f")),
                ("sdp", Value::str(&sdp("10.0.0.1", 5000))),
            ])
            .encode_into(&mut d);
            d
        };
        let mut x = 0x9e37_79b9u32;
        for n in 0..3000u32 {
            let mut d = base.clone();
            for _ in 0..1 + n % 4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = (x as usize) % d.len();
                d[i] = (x >> 8) as u8;
            }
            d.truncate(d.len() - (x as usize >> 3) % 8);
            // A fresh cookie each time so nothing comes from the cache.
            let mut msg = format!("f{n}").into_bytes();
            msg.extend_from_slice(&d[2..]);
            let _ = ng.handle(&msg, &mut m, Instant::now());
        }
    }
}
