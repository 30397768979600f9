//! RADIUS through the real daemon: `tandemd` with `[radius]` and `[cdr]`, baresip phones
//! whose credentials exist only in a real FreeRADIUS 3 (Debian `freeradius`, started by the
//! test on loopback with a config it writes), and FreeRADIUS's `detail` file as the witness.
//!
//! Shows: a RADIUS-only user registers and calls; a wrong password is refused (403); a call to
//! a number the server rejects never leaves Tandem (403, the callee never rings); an answered
//! call produces Accounting Start and Stop with the right session time and the Cisco h323-*
//! attributes, matching its Master.csv record; and an outage: FreeRADIUS stops while calls
//! are up, the calls end, tandemd restarts, FreeRADIUS comes back, and every Stop arrives
//! exactly once.
//!
//! Skips with a message when `freeradius` or baresip is missing.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const USERS: &str = "\
DEFAULT Called-Station-Id == \"0900666\", Auth-Type := Reject
	Reply-Message = \"barred number\"

DEFAULT Called-Station-Id =~ \"^[0-9]+$\", Auth-Type := Accept

2001	Cleartext-Password := \"rad2001\"

2002	Cleartext-Password := \"rad2002\"

2003	Cleartext-Password := \"rad2003\"

2004	Cleartext-Password := \"rad2004\"
";

const PLAN: &str = "\
[default]
exten => _2XXX,1,Dial(SIP/${EXTEN},5)
 same => n,Hangup()
exten => 0900666,1,Dial(SIP/2002,5)
 same => n,Hangup()
";

#[path = "common/radiusd.rs"]
mod radiusd;
use radiusd::*;

/// The detail file as a list of records (attribute -> value, quotes stripped).
fn detail_records(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split("\n\n")
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            r.lines()
                .filter_map(|l| l.trim().split_once(" = "))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect()
        })
        .collect()
}

/// One Master.csv line split into fields (quoted strings with doubled quotes, bare numbers).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}

fn count(recs: &[HashMap<String, String>], session: &str, status: &str) -> usize {
    recs.iter()
        .filter(|r| {
            r.get("Acct-Session-Id").map(String::as_str) == Some(session)
                && r.get("Acct-Status-Type").map(String::as_str) == Some(status)
        })
        .count()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn rad_args(d: &Daemon, mode: &str, user: u32, password: &str) -> Vec<String> {
    vec![
        s(mode),
        s("--registrar"),
        d.registrar(),
        s("--user"),
        user.to_string(),
        s("--password"),
        s(password),
    ]
}

fn registered(d: &Daemon, user: &str) -> bool {
    d.ctl_json(&["show", "registrations"])
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x["user"] == user))
}

#[test]
fn radius_users_authorisation_accounting_and_outage() {
    let Some(bin) = freeradius() else {
        eprintln!("SKIP: freeradius not installed (apt-get install freeradius)");
        return;
    };
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let rdir = std::env::temp_dir().join(format!("tandem-billing-fr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rdir);
    let port = free_udp_pair();
    write_config(&rdir, port, USERS);
    let radiusd = start_radiusd(&bin, &rdir);
    let detail = rdir.join("acct/detail");

    let extra = format!(
        "[radius]\n\
         auth_servers = [{{ address = \"127.0.0.1:{port}\", secret = \"{SECRET}\" }}]\n\
         acct_servers = [{{ address = \"127.0.0.1:{acct}\", secret = \"{SECRET}\" }}]\n\
         spool = \"acct.spool\"\n\
         timeout_ms = 300\n\
         retries = 1\n\
         authorize_pstn = true\n\
         nas_ip = \"127.0.0.1\"\n\
         [cdr]\n\
         csv = \"Master.csv\"\n",
        acct = port + 1
    );
    let mut d = Daemon::start_no_users("billing-radius", Some(PLAN), &extra);

    // A wrong password: FreeRADIUS rejects the digest, Tandem answers 403.
    let mut bad = Ua::spawn(&d.dir, "bad", &rad_args(&d, "register", 2001, "guess"));
    let failed = bad.wait_event("registration_failed", 20);
    assert_eq!(failed["status"], 403, "{failed}");
    bad.wait(20);
    assert!(!registered(&d, "2001"));

    // RADIUS-only users register.
    let mut callee = rad_args(&d, "answer", 2002, "rad2002");
    callee.extend([s("--seconds"), s("3"), s("--timeout"), s("60")]);
    let mut b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 20);
    assert!(registered(&d, "2002"));

    // A number the server bars: 403, and the callee (its Dial target) never rings.
    let mut args = rad_args(&d, "call", 2001, "rad2001");
    args.extend([s("--dial"), s("0900666"), s("--timeout"), s("20")]);
    let mut a = Ua::spawn(&d.dir, "barred", &args);
    a.wait(30);
    let closed = a.event("closed").expect("barred call ends");
    assert_eq!(closed["status"], 403, "{closed}");
    assert!(b.event("incoming").is_none(), "barred call left Tandem");

    // An answered call: the callee hangs up after 3 s.
    let mut args = rad_args(&d, "call", 2001, "rad2001");
    args.extend([
        s("--dial"),
        s("2002"),
        s("--seconds"),
        s("20"),
        s("--allow-remote-hangup"),
    ]);
    let mut a = Ua::spawn(&d.dir, "a", &args);
    a.wait_event("established", 20);
    a.wait(40);
    assert_eq!(b.wait(30), 0, "callee: {:?}", b.events());
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);

    let cdr = std::fs::read_to_string(d.dir.path("Master.csv")).unwrap();
    let line = cdr
        .lines()
        .find(|l| l.contains("\"ANSWERED\""))
        .unwrap_or_else(|| panic!("no answered CDR: {cdr}"));
    let cols = csv_fields(line);
    assert_eq!(cols.len(), 18, "{line}");
    let uniqueid = cols[16].clone();
    wait_until("Start and Stop in the detail file", 10, || {
        count(&detail_records(&detail), &uniqueid, "Stop") == 1
    });
    let recs = detail_records(&detail);
    assert_eq!(count(&recs, &uniqueid, "Start"), 1, "{recs:?}");
    let stop = recs
        .iter()
        .find(|r| {
            r.get("Acct-Session-Id") == Some(&uniqueid)
                && r.get("Acct-Status-Type").map(String::as_str) == Some("Stop")
        })
        .unwrap();
    let secs: u64 = stop["Acct-Session-Time"].parse().unwrap();
    assert!(
        (2..=5).contains(&secs),
        "3 s call, session time {secs}: {stop:?}"
    );
    let billsec: u64 = cols[13].parse().unwrap();
    assert!(
        billsec.abs_diff(secs) <= 1,
        "CDR billsec {billsec} vs {secs}"
    );
    for (k, v) in [
        ("Calling-Station-Id", "2001"),
        ("Called-Station-Id", "2002"),
        ("NAS-IP-Address", "127.0.0.1"),
        ("Acct-Terminate-Cause", "User-Request"),
        ("h323-disconnect-cause", "h323-disconnect-cause=10"),
        ("h323-call-origin", "h323-call-origin=answer"),
        ("h323-call-type", "h323-call-type=VoIP"),
        ("h323-remote-address", "h323-remote-address=127.0.0.1"),
    ] {
        assert_eq!(stop.get(k).map(String::as_str), Some(v), "{k}: {stop:?}");
    }
    for k in [
        "h323-setup-time",
        "h323-connect-time",
        "h323-disconnect-time",
    ] {
        let v = stop
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing: {stop:?}"));
        assert!(
            v.starts_with(&format!("{k}=")) && v.contains(" UTC "),
            "{k}: {v}"
        );
    }
    let conf = &stop["h323-conf-id"];
    assert_eq!(conf.len(), "h323-conf-id=".len() + 35, "{conf}");

    // Outage: two calls up, FreeRADIUS stops, the calls end, tandemd restarts, FreeRADIUS
    // comes back: both Stops arrive, once each.
    let mut callees = Vec::new();
    for (user, pw) in [(2002, "rad2002"), (2004, "rad2004")] {
        let mut args = rad_args(&d, "answer", user, pw);
        args.extend([s("--seconds"), s("4"), s("--timeout"), s("60")]);
        let ua = Ua::spawn(&d.dir, &format!("ob{user}"), &args);
        ua.wait_event("waiting", 20);
        callees.push(ua);
    }
    let mut callers = Vec::new();
    for (user, pw, dst) in [(2001, "rad2001", "2002"), (2003, "rad2003", "2004")] {
        let mut args = rad_args(&d, "call", user, pw);
        args.extend([
            s("--dial"),
            s(dst),
            s("--seconds"),
            s("20"),
            s("--allow-remote-hangup"),
        ]);
        let ua = Ua::spawn(&d.dir, &format!("oa{user}"), &args);
        ua.wait_event("established", 20);
        callers.push(ua);
    }
    wait_until("both Starts acknowledged", 10, || {
        detail_records(&detail)
            .iter()
            .filter(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Start"))
            .count()
            >= 3
    });
    drop(radiusd);
    for ua in callers.iter_mut().chain(callees.iter_mut()) {
        ua.wait(30);
    }
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
    let stops_down = detail_records(&detail)
        .iter()
        .filter(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Stop"))
        .count();
    assert_eq!(stops_down, 1, "no Stop can arrive while FreeRADIUS is down");
    let spool = std::fs::read_to_string(d.dir.path("acct.spool")).unwrap();
    let added = spool.lines().filter(|l| l.starts_with("A ")).count();
    let acked = spool.lines().filter(|l| l.starts_with("D ")).count();
    assert_eq!(added, acked + 2, "the two Stops wait in the spool: {spool}");
    d.restart();
    let _radiusd = start_radiusd(&bin, &rdir);
    let sessions = || {
        let recs = detail_records(&detail);
        let mut ids: Vec<String> = recs
            .iter()
            .filter(|r| r.get("Acct-Status-Type").map(String::as_str) == Some("Stop"))
            .filter_map(|r| r.get("Acct-Session-Id").cloned())
            .collect();
        ids.sort();
        ids
    };
    wait_until("the spooled Stops after the outage", 20, || {
        sessions().len() >= 3
    });
    std::thread::sleep(Duration::from_secs(2)); // room for a duplicate to show up
    let ids = sessions();
    assert_eq!(ids.len(), 3, "every Stop exactly once: {ids:?}");
    let mut uniq = ids.clone();
    uniq.dedup();
    assert_eq!(uniq, ids, "a Stop arrived twice: {ids:?}");
    let recs = detail_records(&detail);
    for id in &ids {
        assert_eq!(count(&recs, id, "Start"), 1, "Start of {id} once");
    }
    // The CDR file has the three answered calls, with the same ids as the accounting.
    let cdr = std::fs::read_to_string(d.dir.path("Master.csv")).unwrap();
    for id in &ids {
        assert!(cdr.contains(&format!("\"{id}\"")), "CDR lacks {id}: {cdr}");
    }
    d.wait_for("spool drained", 10, |_| {
        std::fs::read_to_string(d.dir.path("acct.spool"))
            .map(|t| {
                let a = t.lines().filter(|l| l.starts_with("A ")).count();
                let dd = t.lines().filter(|l| l.starts_with("D ")).count();
                a == dd
            })
            .unwrap_or(false)
    });
    let _ = std::fs::remove_dir_all(&rdir);
}
