//! Call detail records through a real `tandemd` and real baresip UAs: one Master.csv line per
//! call, answered, busy, no answer and failed, read back with Python's `csv` module (a parser
//! no one here wrote) and checked column by column against the calls made.
//!
//! Skips with a message where baresip is missing.

mod common;

use common::*;
use std::process::Command;

const PLAN: &str = "\
[default]
exten => _1XXX,1,NoOp(call to ${EXTEN})
 same => n,Dial(SIP/${EXTEN},3)
 same => n,Hangup()
";

/// Master.csv rows as Python's csv module reads them.
fn read_csv(path: &std::path::Path) -> Vec<Vec<String>> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline='')))))",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "csv parse failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("csv json")
}

/// Columns of Asterisk's Master.csv (cdr_csv with loguniqueid and loguserfield).
const COLUMNS: [&str; 18] = [
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
];

fn col<'a>(row: &'a [String], name: &str) -> &'a str {
    let i = COLUMNS.iter().position(|c| *c == name).unwrap();
    &row[i]
}

fn is_asterisk_time(s: &str) -> bool {
    // YYYY-MM-DD HH:MM:SS
    s.len() == 19
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        })
}

#[test]
fn master_csv_records_answered_busy_no_answer_and_failed_calls() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("cdr", Some(PLAN), "[cdr]\ncsv = \"cdr/Master.csv\"\n");
    let csv = d.dir.path("cdr/Master.csv");

    let mut answer = ua_args(&d, "answer", 1002);
    answer.extend([s("--seconds"), s("10"), s("--timeout"), s("60")]);
    let mut busy = ua_args(&d, "answer", 1003);
    busy.extend([s("--reject"), s("--timeout"), s("60")]);
    let mut late = ua_args(&d, "answer", 1004);
    late.extend([s("--answer-delay"), s("8"), s("--timeout"), s("60")]);
    let mut b = Ua::spawn(&d.dir, "b", &answer);
    let mut c = Ua::spawn(&d.dir, "c", &busy);
    let mut e = Ua::spawn(&d.dir, "e", &late);
    for ua in [&b, &c, &e] {
        ua.wait_event("waiting", 15);
    }

    // 1. answered: the caller hangs up after 2 s.
    let mut args = ua_args(&d, "call", 1001);
    args.extend([s("--dial"), s("1002"), s("--seconds"), s("2")]);
    let mut a = Ua::spawn(&d.dir, "a1", &args);
    assert_eq!(a.wait(30), 0, "answered call failed: {:?}", a.events());
    // 2. busy (baresip answers 486), 3. no answer within Dial's 3 s, 4. unregistered user.
    for (n, dst) in [(2, "1003"), (3, "1004"), (4, "1005")] {
        let mut args = ua_args(&d, "call", 1001);
        args.extend([s("--dial"), s(dst), s("--timeout"), s("20")]);
        let mut a = Ua::spawn(&d.dir, &format!("a{n}"), &args);
        a.wait(30);
        let closed = a.event("closed").expect("caller saw the call end");
        assert!(
            a.event("established").is_none(),
            "call to {dst} must not be answered: {:?}",
            a.events()
        );
        let want = match dst {
            "1003" => 486,
            _ => 480,
        };
        assert_eq!(closed["status"], want, "call to {dst}: {closed}");
    }
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
    for ua in [&mut b, &mut c, &mut e] {
        ua.wait(30);
    }

    let rows = read_csv(&csv);
    assert_eq!(rows.len(), 4, "one record per call: {rows:?}");
    for r in &rows {
        assert_eq!(r.len(), 18, "Master.csv has 18 columns: {r:?}");
        assert_eq!(col(r, "src"), "1001");
        assert_eq!(col(r, "dcontext"), "default");
        // ast_callerid_merge: `"Name" <num>`, or the bare number when there is no name.
        let clid = col(r, "clid");
        assert!(clid == "1001" || clid.ends_with("\" <1001>"), "{r:?}");
        assert!(col(r, "channel").starts_with("SIP/1001-"), "{r:?}");
        assert_eq!(col(r, "lastapp"), "Dial", "{r:?}");
        assert_eq!(col(r, "amaflags"), "DOCUMENTATION");
        assert!(is_asterisk_time(col(r, "start")), "{r:?}");
        assert!(is_asterisk_time(col(r, "end")), "{r:?}");
        let dur: u64 = col(r, "duration").parse().unwrap();
        let bill: u64 = col(r, "billsec").parse().unwrap();
        assert!(bill <= dur, "{r:?}");
    }
    let want = [
        ("1002", "ANSWERED"),
        ("1003", "BUSY"),
        ("1004", "NO ANSWER"),
        ("1005", "FAILED"),
    ];
    for (r, (dst, disp)) in rows.iter().zip(want) {
        assert_eq!(col(r, "dst"), dst, "{r:?}");
        assert_eq!(col(r, "disposition"), disp, "{r:?}");
        assert_eq!(col(r, "lastdata"), format!("SIP/{dst},3"), "{r:?}");
        let bill: u64 = col(r, "billsec").parse().unwrap();
        if disp == "ANSWERED" {
            assert!(is_asterisk_time(col(r, "answer")), "{r:?}");
            assert!((1..=4).contains(&bill), "2 s call billed {bill} s: {r:?}");
            assert!(col(r, "dstchannel").starts_with("SIP/1002-"), "{r:?}");
        } else {
            assert_eq!(col(r, "answer"), "", "{r:?}");
            assert_eq!(bill, 0, "{r:?}");
        }
    }
    let no_answer_dur: u64 = col(&rows[2], "duration").parse().unwrap();
    assert!(
        (2..=5).contains(&no_answer_dur),
        "no-answer call lasts the 3 s Dial timeout: {:?}",
        rows[2]
    );
    let mut ids: Vec<&str> = rows.iter().map(|r| col(r, "uniqueid")).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "uniqueids differ: {rows:?}");
}
