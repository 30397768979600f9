//! Digits across a TDM leg: a real baresip UA (`sipua.py`) sends RFC 4733
//! telephone-events into tandemd; the call leaves through the PSTN
//! interworking function over a simulated E1 to the exchange simulator's
//! loop-around line. The IWF plays each event as in-band DTMF on the
//! B-channel, the exchange loops the B-channel back, the IWF's Q.24 detector
//! reads the tones on the returning B-channel and sends them to the caller as
//! telephone-events again. So each digit crosses the TDM leg in-band twice
//! (RFC 4733 -> tones, tones -> RFC 4733), and the caller must receive exactly
//! the digits it sent, in order, once each.
//!
//! Skips with a message when baresip is missing.

mod common;

use common::*;

const PLAN: &str = "\
[default]
exten => _9X.,1,Dial(DAHDI/g1/${EXTEN:1},20)
 same => n,Hangup()
[from-pstn]
exten => _1XXX,1,Dial(SIP/${EXTEN},20)
 same => n,Hangup()
";

const PSTN: &str = "\
[[pstn.span]]\nspan = 1\ngroup = 1\ncontext = \"from-pstn\"\n\
[pstn.exchange]\ntone_ms = 400\n\
[[pstn.exchange.number]]\nmatch = \"*\"\naction = \"loopback\"\n";

#[test]
fn rfc4733_digits_cross_the_b_channel_in_band_and_come_back() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("digits-tdm", Some(PLAN), PSTN);
    d.wait_for("PRI span 1 D-channel up", 15, |d| {
        d.ctl_json(&["show", "spans"])
            .as_array()
            .and_then(|a| a.first().cloned())
            .is_some_and(|s| s["dchannel_up"] == true)
    });
    let digits = "159#*0D";
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("95551234"),
        s("--dtmf"),
        s(digits),
        s("--expect-dtmf"),
        s(digits),
        s("--seconds"),
        s("6"),
    ]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    let code = a.wait(40);
    let got: String = a
        .events()
        .iter()
        .filter(|e| e["event"] == "dtmf")
        .filter_map(|e| e["digit"].as_str().map(str::to_string))
        .collect();
    eprintln!("sent {digits:?}, received back {got:?}");
    assert_eq!(code, 0, "caller flow failed: {:?}", a.events());
    assert_eq!(got, digits, "digits back through the B-channel");
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
    // Both conversions happened in the IWF, once per digit.
    let log = d.log_text();
    let played = log.matches("from RTP played in-band").count();
    let heard = log.matches("heard in-band, sent as RFC 4733").count();
    assert_eq!((played, heard), (digits.len(), digits.len()), "{log}");
}
