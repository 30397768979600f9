//! A call out through a SIP trunk between two real `tandemd`s: the gateway registers at
//! the provider (digest), its phone dials `9<number>`, the provider challenges the INVITE
//! (407) and the gateway retries with the trunk's credentials; the provider's phone answers
//! and audio flows both ways. Caller ID arrives as the caller's number, and a
//! `presentation = "restricted"` user arrives anonymous at the callee while the provider
//! (trusting the trunk account's P-Asserted-Identity) still knows the number. Then a call
//! the other way, from the provider down the registered trunk to a gateway phone.
//!
//! Real baresip UAs via `sipua.py`; skips with a message where baresip is missing.

mod common;

use common::*;

const PROVIDER_PLAN: &str = "\
[default]
exten => _7X.,1,Dial(SIP/trunk1,20)
 same => n,Hangup()
[from-gw]
exten => _2XXX,1,Dial(SIP/${EXTEN},20)
 same => n,Hangup()
";

const GATEWAY_PLAN: &str = "\
[default]
exten => _9X.,1,Dial(SIP/provider/${EXTEN:1},20)
 same => n,Hangup()
[from-provider]
exten => trunk1,1,Dial(SIP/1002,20)
 same => n,Hangup()
";

fn assert_audio(reference: &std::path::Path, rec: &std::path::Path, what: &str) {
    let v = analyze(reference, rec);
    let med = v["block_corr_median"].as_f64().unwrap_or(0.0);
    assert!(
        v["ok"] == true && med >= 0.8,
        "{what}: audio does not match its source: {v}"
    );
}

fn count(ua: &Ua, event: &str) -> usize {
    ua.events().iter().filter(|e| e["event"] == event).count()
}

#[test]
fn call_through_a_registered_trunk_with_digest_caller_id_and_privacy() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let provider = Daemon::start_full(
        "trunk-provider",
        Some(PROVIDER_PLAN),
        "[[sip.user]]\nname = \"trunk1\"\npassword = \"trunkpw\"\ncontext = \"from-gw\"\n\
         trust_id_inbound = true\n\
         [[sip.user]]\nname = \"2001\"\npassword = \"pw2001\"\n",
        &|_| String::new(),
        "",
    );
    let gateway = Daemon::start_full(
        "trunk-gateway",
        Some(GATEWAY_PLAN),
        &format!(
            "[[sip.trunk]]\nname = \"provider\"\nhost = \"127.0.0.1:{}\"\nusername = \"trunk1\"\n\
             password = \"trunkpw\"\nregister = true\nregister_expiry = 120\ntrust = true\n\
             context = \"from-provider\"\n",
            provider.sip_port
        ),
        &|u| {
            if u == 1003 {
                "presentation = \"restricted\"\n".into()
            } else {
                String::new()
            }
        },
        "",
    );

    // The gateway registers at the provider (401 answered with digest).
    gateway.wait_for("trunk registered", 15, |d| {
        d.ctl_json(&["show", "trunks"])
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x["state"] == "registered"))
    });
    let trunks = gateway.ctl_json(&["show", "trunks"]);
    assert_eq!(trunks[0]["last_status"], 200, "{trunks}");
    assert!(
        trunks[0]["next_register_s"].as_u64().unwrap() <= 60,
        "{trunks}"
    );
    let regs = provider.ctl_json(&["show", "registrations"]);
    let reg = regs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user"] == "trunk1")
        .unwrap_or_else(|| panic!("trunk1 not registered at the provider: {regs}"));
    assert!(
        reg["contact"]
            .as_str()
            .unwrap()
            .contains(&format!("trunk1@127.0.0.1:{}", gateway.sip_port)),
        "{reg}"
    );
    let (code, table) = gateway.ctl(&["show", "trunks"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("provider") && table.contains("registered"),
        "{table}"
    );

    // 2001 at the provider answers two calls.
    let dir = &provider.dir;
    let chirp = dir.path("chirp.wav");
    let noise = dir.path("noise.wav");
    gen(&chirp, "chirp", 3.0, 1);
    gen(&noise, "noise", 3.0, 7);
    let rec_callee = dir.path("rec_2001.wav");
    let rec_caller = dir.path("rec_1001.wav");
    let mut callee = ua_args(&provider, "answer", 2001);
    callee.extend([
        s("--play"),
        noise.display().to_string(),
        s("--record"),
        rec_callee.display().to_string(),
        s("--calls"),
        s("2"),
        s("--timeout"),
        s("60"),
    ]);
    let mut b = Ua::spawn(dir, "2001", &callee);
    b.wait_event("waiting", 15);

    // 1001 at the gateway dials 92001.
    let mut caller = ua_args(&gateway, "call", 1001);
    caller.extend([
        s("--dial"),
        s("92001"),
        s("--play"),
        chirp.display().to_string(),
        s("--record"),
        rec_caller.display().to_string(),
        s("--seconds"),
        s("5"),
    ]);
    let mut a = Ua::spawn(&gateway.dir, "1001", &caller);
    a.wait_event("established", 20);
    let calls = provider.ctl_json(&["show", "calls"]);
    assert_eq!(
        calls[0]["caller"], "1001",
        "caller number at the provider: {calls}"
    );
    assert_eq!(calls[0]["context"], "from-gw", "{calls}");
    assert_eq!(a.wait(30), 0, "caller flow failed: {:?}", a.events());
    let incoming = b.event("incoming").expect("2001 saw the call");
    let peer = incoming["peer"].as_str().unwrap_or_default();
    assert!(peer.contains("sip:1001@"), "caller ID at 2001: {incoming}");
    let glog = gateway.log_text();
    assert!(
        glog.contains("challenged (407), retrying with credentials"),
        "the provider's 407 was answered: {glog}"
    );
    provider.wait_for("first call closed at 2001", 15, |_| {
        count(&b, "closed") >= 1
    });
    assert_audio(&chirp, &rec_callee, "gateway caller -> provider callee");
    assert_audio(&noise, &rec_caller, "provider callee -> gateway caller");

    // 1003 is presentation restricted: anonymous at 2001, the number known to the provider.
    let mut caller = ua_args(&gateway, "call", 1003);
    caller.extend([
        s("--dial"),
        s("92001"),
        s("--seconds"),
        s("2"),
        s("--no-media-check"),
    ]);
    let mut a3 = Ua::spawn(&gateway.dir, "1003", &caller);
    a3.wait_event("established", 20);
    let calls = provider.ctl_json(&["show", "calls"]);
    assert_eq!(
        calls[0]["caller"], "1003",
        "the trusted PAI gives the provider the number: {calls}"
    );
    assert_eq!(
        a3.wait(30),
        0,
        "restricted caller failed: {:?}",
        a3.events()
    );
    assert_eq!(b.wait(20), 0, "2001 failed: {:?}", b.events());
    let incoming: Vec<_> = b
        .events()
        .into_iter()
        .filter(|e| e["event"] == "incoming")
        .collect();
    assert_eq!(incoming.len(), 2, "{incoming:?}");
    let peer = incoming[1]["peer"].as_str().unwrap_or_default();
    assert!(
        peer.contains("anonymous@anonymous.invalid") && !peer.contains("1003"),
        "2001 sees an anonymous caller: {peer}"
    );

    // The other way: 2001 dials 7..., the provider sends it down the registered trunk,
    // the gateway takes it without a challenge into from-provider and rings 1002.
    let mut g1002 = ua_args(&gateway, "answer", 1002);
    g1002.extend([s("--timeout"), s("30"), s("--no-media-check")]);
    let mut c = Ua::spawn(&gateway.dir, "1002", &g1002);
    c.wait_event("waiting", 15);
    let mut p2001 = ua_args(&provider, "call", 2001);
    p2001.extend([
        s("--dial"),
        s("71002"),
        s("--seconds"),
        s("2"),
        s("--no-media-check"),
    ]);
    let mut d = Ua::spawn(&provider.dir, "2001-out", &p2001);
    d.wait_event("established", 20);
    let calls = gateway.ctl_json(&["show", "calls"]);
    assert_eq!(calls[0]["context"], "from-provider", "{calls}");
    assert_eq!(calls[0]["caller"], "2001", "{calls}");
    assert_eq!(d.wait(30), 0, "provider caller failed: {:?}", d.events());
    assert_eq!(c.wait(20), 0, "gateway callee failed: {:?}", c.events());
    let trunks = gateway.ctl_json(&["show", "trunks"]);
    assert_eq!(trunks[0]["calls_out"], 2, "{trunks}");
    assert_eq!(trunks[0]["calls_in"], 1, "{trunks}");
}
