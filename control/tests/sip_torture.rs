//! RFC 4475 / RFC 5118 torture messages through `Message::parse`: nothing may panic, the valid
//! ones must parse, and the invalid ones we choose to reject must be rejected (with a partial
//! request where a 400 is the right answer).

use std::path::{Path, PathBuf};

use control::sip::{Message, Method, NameAddr, Uri};

fn corpus() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/sip-torture"
    ));
    if p.join("MANIFEST.md").exists() {
        Some(p)
    } else {
        eprintln!("skipping: SIP torture corpus not found at {}", p.display());
        None
    }
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// RFC 5118 files are archived with bare LF and sometimes wrong Content-Length: convert to wire
/// form (CRLF, terminating empty line, Content-Length fixed) as the manifest says.
fn rfc5118_wire(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw).replace('\n', "\r\n");
    let (head, body) = match text.split_once("\r\n\r\n") {
        Some((h, b)) => (h.to_string(), b.to_string()),
        None => (text.trim_end_matches("\r\n").to_string(), String::new()),
    };
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length") {
                format!("Content-Length: {}", body.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("{}\r\n\r\n{}", head.join("\r\n"), body).into_bytes()
}

const VALID_4475: &[&str] = &[
    "esc02",
    "lwsdisp",
    "longreq",
    "transports",
    "noreason",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
    "badbranch",
    "baddate",
];

/// Invalid messages we reject, and whether a partial request (for a 400/505) must come back.
const REJECTED_4475: &[(&str, bool)] = &[
    ("scalarlg", false), // response: discard
    ("bigcode", false),  // response: discard
    ("ltgtruri", true),
    ("lwsstart", true),
    ("trws", true),
    ("escruri", true),
    ("regbadct", true),
    ("badaspec", true),
    ("badvers", true),
    ("mismatch01", true),
    ("mismatch02", true),
    ("insuf", true),
    ("test", true),
];

#[test]
fn rfc4475_every_message() {
    let Some(dir) = corpus() else { return };
    let dir = dir.join("rfc4475");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("read rfc4475 dir")
        .filter_map(|e| e.ok())
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".dat")
                .to_string()
        })
        .collect();
    names.sort();
    assert!(names.len() >= 30, "corpus too small: {names:?}");
    let mut report = Vec::new();
    for name in &names {
        let bytes = read(&dir, &format!("{name}.dat"));
        let res = Message::parse(&bytes);
        report.push(format!(
            "{name:12} {}",
            match &res {
                Ok(_) => "accepted".to_string(),
                Err(e) => format!("rejected ({})", e.reason),
            }
        ));
        if VALID_4475.contains(&name.as_str()) {
            assert!(res.is_ok(), "{name} must parse: {:?}", res.err());
            // valid messages survive a serialise/parse round trip
            let again = Message::parse(&res.as_ref().unwrap().to_bytes());
            assert!(again.is_ok(), "{name} round trip: {:?}", again.err());
        } else if let Some((_, partial)) = REJECTED_4475.iter().find(|(n, _)| n == name) {
            let e = res
                .as_ref()
                .err()
                .unwrap_or_else(|| panic!("{name} must be rejected"));
            assert_eq!(
                e.partial.is_some(),
                *partial,
                "{name}: partial request ({})",
                e.reason
            );
        }
    }
    eprintln!("RFC 4475 verdicts:\n{}", report.join("\n"));
}

#[test]
fn rfc4475_details() {
    let Some(dir) = corpus() else { return };
    let dir = dir.join("rfc4475");
    let get = |n: &str| Message::parse(&read(&dir, n)).unwrap();

    // esc02: extension method with '%', two Contacts (C%6Fntact is another header)
    let Message::Request(r) = get("esc02.dat") else {
        panic!()
    };
    assert_eq!(r.method, Method::Extension("RE%47IST%45R".into()));
    assert_eq!(r.headers.get_all("Contact").count(), 2);
    assert_eq!(
        r.headers.get("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );

    // transports: five Via hops with their transports
    let Message::Request(r) = get("transports.dat") else {
        panic!()
    };
    let t: Vec<String> = r
        .headers
        .get_all("Via")
        .map(|v| control::sip::Via::parse(v).unwrap().transport)
        .collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);

    // badbranch parses; the branch is just the cookie
    let Message::Request(r) = get("badbranch.dat") else {
        panic!()
    };
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK"));

    // cparam01: unknown contact-param outside <> is a header param, not a URI param
    let Message::Request(r) = get("cparam01.dat") else {
        panic!()
    };
    let c = r.contact().unwrap();
    assert!(c.param("unknownparam").is_some(), "{c:?}");
    assert!(c.uri.param("unknownparam").is_none());
    // cparam02: inside <> it is a URI param
    let Message::Request(r) = get("cparam02.dat") else {
        panic!()
    };
    assert!(r.contact().unwrap().uri.param("unknownparam").is_some());

    // unksm2: non-SIP schemes in To/From/Contact
    let Message::Request(r) = get("unksm2.dat") else {
        panic!()
    };
    assert_ne!(r.to().unwrap().uri.scheme, "sip");
    // unkscm: unknown scheme Request-URI parses as an opaque URI
    let Message::Request(r) = get("unkscm.dat") else {
        panic!()
    };
    assert!(!Uri::parse(&r.uri).unwrap().is_sip());

    // lwsdisp: display name token directly before '<'
    let Message::Request(r) = get("lwsdisp.dat") else {
        panic!()
    };
    assert_eq!(r.from().unwrap().display.as_deref(), Some("caller"));

    // noreason: empty reason phrase
    let Message::Response(r) = get("noreason.dat") else {
        panic!()
    };
    assert_eq!((r.code, r.reason.as_str()), (100, ""));

    // badvers: 505 with a partial request
    let e = Message::parse(&read(&dir, "badvers.dat")).unwrap_err();
    assert_eq!(e.status_code(), 505);
    assert!(e.can_respond());
    // insuf: no Call-ID/From/To: cannot respond
    let e = Message::parse(&read(&dir, "insuf.dat")).unwrap_err();
    assert!(!e.can_respond());
    let _ = NameAddr::parse("<sip:a@b>").unwrap();
}

#[test]
fn rfc5118_every_message() {
    let Some(dir) = corpus() else { return };
    let dir = dir.join("rfc5118");
    let valid = [
        "ipv6-good",
        "port-unambiguous",
        "via-received-param-no-delim",
        "ipv6-in-sdp",
        "mult-ip-in-header",
        "mult-ip-in-sdp",
        "ipv6-correct-abnf-2-colons",
    ];
    for entry in std::fs::read_dir(&dir)
        .expect("read rfc5118 dir")
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().to_string_lossy().to_string();
        let raw = read(&dir, &name);
        let _ = Message::parse(&raw); // raw archive bytes: must not panic
        let res = Message::parse(&rfc5118_wire(&raw));
        if valid.contains(&name.as_str()) {
            assert!(res.is_ok(), "{name} must parse: {:?}", res.err());
        } else if name == "ipv6-bad" {
            let e = res.expect_err("ipv6-bad must be rejected");
            assert!(e.can_respond(), "ipv6-bad should get a 400: {}", e.reason);
        }
    }
    let wire = rfc5118_wire(&read(&dir, "port-unambiguous"));
    let Message::Request(r) = Message::parse(&wire).unwrap() else {
        panic!()
    };
    let u = Uri::parse(&r.uri).unwrap();
    assert_eq!((u.host.as_str(), u.port), ("2001:db8::10", Some(5070)));
    let wire = rfc5118_wire(&read(&dir, "mult-ip-in-header"));
    let Message::Request(r) = Message::parse(&wire).unwrap() else {
        panic!()
    };
    let vias: Vec<_> = r
        .headers
        .get_all("Via")
        .map(|v| control::sip::Via::parse(v).unwrap())
        .collect();
    assert_eq!(vias.len(), 3);
    assert!(vias[0].host.contains(':'));
}
