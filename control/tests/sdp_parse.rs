//! SDP parsing: errors name the line, print/parse round trips, and the SDP bodies of the
//! RFC 4475 / RFC 5118 torture corpus in `../shared`.

use std::net::{IpAddr, Ipv4Addr};

use control::sdp::{Direction, SessionDescription};

#[test]
fn parse_errors_name_the_line() {
    // (body, line, substring of the message)
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "empty"),
        ("o=- 1 1 IN IP4 1.2.3.4\nv=0\n", 1, "first line must be 'v=0'"),
        ("v=1\n", 1, "unsupported SDP version"),
        ("v=0\ns=-\n", 0, "missing 'o='"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\n", 0, "missing 's='"),
        ("v=0\no=- 1 IN IP4 1.2.3.4\ns=-\n", 2, "expected 'o=<username>"),
        ("v=0\no=- x 1 IN IP4 1.2.3.4\ns=-\n", 2, "sess-id 'x'"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 999.1.1.1\n", 4, "not an IP address"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP6 1.2.3.4\n", 4, "does not match type IP6"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=ATM NSAP x\n", 4, "network type 'ATM'"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio 4000 RTP/AVP 0\n", 4, "no 'c=' line"),
        (
            "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nm=audio 70000 RTP/AVP 0\n",
            5,
            "port '70000'",
        ),
        (
            "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 0 abc\n",
            5,
            "payload type 'abc'",
        ),
        (
            "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 200\n",
            5,
            "payload type '200'",
        ),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nm=audio\n", 5, "expected 'm=<media>"),
        (
            "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 0\na=ptime:0\n",
            6,
            "a=ptime",
        ),
        (
            "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 0\na=rtcp:x\n",
            6,
            "a=rtcp port",
        ),
        (
            "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 0\no=- 1 1 IN IP4 1.2.3.4\n",
            6,
            "after the first m= line",
        ),
        ("v=0\nthis is not sdp\n", 2, "expected '<letter>=<value>'"),
        ("v=0\nv=0\n", 2, "second 'v='"),
    ];
    for &(text, line, needle) in cases {
        let err = SessionDescription::parse(text).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(err.msg.contains(needle), "{text:?}: {err}");
        assert!(err.to_string().starts_with(&format!("SDP line {line}: ")));
    }
}

#[test]
fn lenient_where_it_costs_nothing() {
    let text = "v=0\n\
                o=bob 280744730 28977631 IN IP4 host.example.com\n\
                s=\n\
                x=unknown line type\n\
                t=0 0\n\
                \n\
                m=audio 22334/2 RTP/AVP 0 0 8\n\
                c=IN IP4 224.2.1.1/127/3\n\
                a=ptime:20.0\n\
                a=SENDONLY\n\
                m=audio 0 RTP/AVP 0\n";
    let s = SessionDescription::parse(text).unwrap();
    assert_eq!(s.origin.addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(s.session_name, "");
    let m = &s.media[0];
    assert_eq!((m.port, m.formats.as_slice()), (22334, &[0, 8][..]));
    assert_eq!(m.connection, Some("224.2.1.1".parse().unwrap()));
    assert_eq!(m.ptime, Some(20));
    assert_eq!(m.direction, Direction::SendOnly);
    assert_eq!(s.media[1].port, 0, "a disabled stream needs no c=");

    // An rtpmap without a clock rate (as in RFC 4475's messages) is dropped, not fatal.
    let s = SessionDescription::parse(
        "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nm=video 3227 RTP/AVP 31 96\n\
         a=rtpmap:31 LPC\na=rtpmap:96 PCMA\n",
    )
    .unwrap();
    let m = &s.media[0];
    assert!(m.rtpmaps.is_empty() && m.attributes.is_empty());
    assert_eq!(m.rtpmap(31).unwrap().encoding, "H261");
    assert_eq!(m.rtpmap(96), None);
    assert!(!s.to_string().contains("LPC"));
}

#[test]
fn print_then_parse_is_identity() {
    let text = "v=0\r\n\
                o=alice 2890844526 2890844527 IN IP4 198.51.100.7\r\n\
                s=call\r\n\
                c=IN IP4 198.51.100.7\r\n\
                t=0 0\r\n\
                a=group:BUNDLE 0\r\n\
                m=audio 49170 RTP/AVP 0 8 97 101\r\n\
                a=rtpmap:0 PCMU/8000\r\n\
                a=rtpmap:8 PCMA/8000\r\n\
                a=rtpmap:97 iLBC/8000\r\n\
                a=fmtp:97 mode=30\r\n\
                a=rtpmap:101 telephone-event/8000\r\n\
                a=fmtp:101 0-16\r\n\
                a=ptime:20\r\n\
                a=rtcp:49171\r\n\
                a=label:1\r\n\
                a=recvonly\r\n\
                m=video 51372 RTP/AVP 31\r\n\
                c=IN IP6 2001:db8::7\r\n\
                a=rtpmap:31 H261/90000\r\n\
                a=sendrecv\r\n\
                m=image 0 udptl t38\r\n";
    let s = SessionDescription::parse(text).unwrap();
    assert_eq!(
        s.to_string(),
        text,
        "already canonical text prints back byte for byte"
    );
    assert_eq!(SessionDescription::parse(&s.to_string()).unwrap(), s);
    assert_eq!(s.audio_addr(), Some("198.51.100.7:49170".parse().unwrap()));
    assert_eq!(s.media[1].connection, Some("2001:db8::7".parse().unwrap()));
    assert_eq!(s.media[2].proto, "udptl t38");
    assert_eq!(s.attributes, ["group:BUNDLE 0"]);
}

#[test]
fn static_payload_types_get_an_rtpmap_when_printed() {
    let s = SessionDescription::parse(
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 18 8 0 13\n",
    )
    .unwrap();
    let out = s.to_string();
    for line in [
        "a=rtpmap:18 G729/8000\r\n",
        "a=rtpmap:8 PCMA/8000\r\n",
        "a=rtpmap:0 PCMU/8000\r\n",
        "a=rtpmap:13 CN/8000\r\n",
    ] {
        assert!(out.contains(line), "{line:?} missing in {out}");
    }
    assert!(!out.contains("\n\n") && out.ends_with("\r\n") && !out.contains("\r\r"));
    let mut s2 = s.clone();
    s2.bump_version();
    assert_eq!(s2.origin.sess_version, s.origin.sess_version + 1);
}

/// The SDP body of a raw SIP message from the shared torture corpus.
fn body_of(path: &str) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
    let (_, body) = text.split_once("\n\n")?;
    Some(body.to_string())
}

#[test]
fn shared_corpus_sdp_bodies() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/sip-torture"
    );
    if !std::path::Path::new(dir).exists() {
        eprintln!("skipping: {dir} not present");
        return;
    }
    // RFC 5118 4.9: IPv6 in SDP.
    let s = SessionDescription::parse(&body_of(&format!("{dir}/rfc5118/ipv6-in-sdp")).unwrap())
        .unwrap();
    assert_eq!(s.audio_addr(), Some("[2001:db8::20]:6000".parse().unwrap()));
    assert_eq!(s.audio().unwrap().rtpmap(2).unwrap().encoding, "G726-32");
    assert_eq!(s.media[1].kind, "video");
    // RFC 5118 4.10: one IPv4 and one IPv6 stream, host name in o=.
    let s = SessionDescription::parse(&body_of(&format!("{dir}/rfc5118/mult-ip-in-sdp")).unwrap())
        .unwrap();
    assert_eq!(s.audio_addr(), Some("192.0.2.1:22334".parse().unwrap()));
    assert_eq!(s.media[1].connection, Some("2001:db8::1".parse().unwrap()));

    // Every body in the corpus that claims to be SDP parses or fails with a line number;
    // nothing panics. `test.dat` ("v=0 / testing=123") has no o= and must fail.
    let mut parsed = 0;
    for sub in ["rfc4475", "rfc5118"] {
        let Ok(entries) = std::fs::read_dir(format!("{dir}/{sub}")) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Some(body) = body_of(&path.to_string_lossy()) else {
                continue;
            };
            if !body.starts_with("v=0") {
                continue;
            }
            match SessionDescription::parse(&body) {
                Ok(_) => parsed += 1,
                // mismatch02.dat has no s= line; test.dat is not SDP at all.
                Err(err) => match path.file_name().and_then(|n| n.to_str()) {
                    Some("test.dat") => assert_eq!(err.line, 2, "{err}"),
                    Some("mismatch02.dat") => assert!(err.msg.contains("missing 's='"), "{err}"),
                    _ => panic!("{}: {err}", path.display()),
                },
            }
        }
    }
    assert!(parsed >= 5, "only {parsed} SDP bodies parsed");
}
