//! Dialplan media applications through a real `tandemd`: the plan plays a
//! tone to the caller, then `Read` collects the digits the caller (baresip)
//! sends as RFC 4733 events, detected in the dataplane, and `GotoIf` branches
//! on them to a busy or a congestion tone. The branch taken shows in the
//! call's Master.csv record (lastapp/lastdata: the last tone played), which a
//! second call with wrong digits contrasts.
//!
//! Skips with a message when baresip is missing.

mod common;

use common::*;

const PLAN: &str = "\
[default]
exten => 700,1,Answer()
 same => n,Playback(tone:ringback/1)
 same => n,Read(num,,4,,1,8)
 same => n,GotoIf($[\"${num}\" = \"1002\"]?ok)
 same => n,Playback(tone:congestion/1)
 same => n,Hangup(21)
 same => n(ok),Playback(tone:busy/1)
 same => n,Hangup(16)
";

fn call_700(d: &Daemon, name: &str, digits: &str) {
    let mut caller = ua_args(d, "call", 1001);
    caller.extend([s("--dial"), s("700"), s("--dtmf"), s(digits)]);
    caller.extend([s("--dtmf-delay"), s("2.0"), s("--seconds"), s("12")]);
    caller.push(s("--no-media-check"));
    let mut a = Ua::spawn(&d.dir, name, &caller);
    a.wait_event("established", 20);
    let sent = a.wait_event("dtmf_sent", 10);
    assert_eq!(sent["ok"], true, "{sent}");
    // The plan hangs up once Read has the four digits.
    let closed = a.wait_event("closed", 15);
    assert_ne!(closed["by_us"], true, "the plan should hang up: {closed}");
    a.wait(20);
}

#[test]
fn read_collects_rfc4733_digits_after_a_tone() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start(
        "dialplan-media",
        Some(PLAN),
        "[cdr]\ncsv = \"Master.csv\"\n",
    );
    call_700(&d, "a", "1002");
    call_700(&d, "b", "1003");
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
    let csv = std::fs::read_to_string(d.dir.path("Master.csv")).expect("Master.csv");
    let rows: Vec<Vec<String>> = csv
        .lines()
        .map(|l| {
            l.split(',')
                .map(|f| f.trim_matches('"').to_string())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    // Columns 7 and 8: lastapp, lastdata.
    assert_eq!(
        (
            rows[0][2].as_str(),
            rows[0][7].as_str(),
            rows[0][8].as_str()
        ),
        ("700", "Playtones", "busy"),
        "digits 1002 take the ok branch: {csv}"
    );
    assert_eq!(
        (rows[1][7].as_str(), rows[1][8].as_str()),
        ("Playtones", "congestion"),
        "digits 1003 fall through: {csv}"
    );
}
