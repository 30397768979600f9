//! Master.csv records parse as Asterisk's: written by `CsvWriter` (append + fsync), then read
//! back by Python's `csv` module (an independent parser) and by a strict in-test parser:
//! eighteen columns in Asterisk's order, quoting with doubled quotes, and the dispositions
//! ANSWERED, BUSY, NO ANSWER and FAILED.

use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use control::cdr::{clid, AmaFlags, CdrConfig, CdrRecord, CsvWriter, Disposition};

fn rec(n: u32, disp: Disposition, answered: bool) -> CdrRecord {
    let start = UNIX_EPOCH + Duration::from_secs(1_764_000_000 + u64::from(n) * 100);
    CdrRecord {
        accountcode: "acct".into(),
        src: "1000".into(),
        dst: format!("20{n}"),
        dcontext: "default".into(),
        clid: clid("O'Brien, \"Pat\"", "1000"),
        channel: format!("SIP/1000-{n:08x}"),
        dstchannel: if answered {
            format!("SIP/20{n}-{:08x}", n + 1)
        } else {
            String::new()
        },
        lastapp: "Dial".into(),
        lastdata: format!("SIP/20{n},30"),
        start,
        answer: answered.then(|| start + Duration::from_secs(4)),
        end: start + Duration::from_secs(34),
        disposition: disp,
        amaflags: AmaFlags::Documentation,
        uniqueid: format!("1764000000.{n}"),
        userfield: String::new(),
    }
}

/// RFC 4180 style parse of one line.
fn parse_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') => quoted = true,
            (false, ',') => out.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

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

#[test]
fn master_csv_parses_like_asterisk() {
    let path = std::env::temp_dir().join(format!("tandem-cdr-{}.csv", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let cfg: CdrConfig =
        toml::from_str(&format!("csv = {:?}", path.display().to_string())).unwrap();
    assert!(toml::from_str::<CdrConfig>("csv = \"x\"\nextra = 1").is_err());
    let recs = [
        rec(1, Disposition::Answered, true),
        rec(2, Disposition::Busy, false),
        rec(3, Disposition::NoAnswer, false),
        rec(4, Disposition::Failed, false),
    ];
    {
        let mut w = CsvWriter::open(&cfg.csv).unwrap();
        for r in &recs[..2] {
            w.write(r).unwrap();
        }
    }
    // Reopened: appends, never truncates.
    let mut w = CsvWriter::open(&cfg.csv).unwrap();
    for r in &recs[2..] {
        w.write(r).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<Vec<String>> = text.lines().map(parse_line).collect();
    assert_eq!(rows.len(), 4);
    let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
    for (row, r) in rows.iter().zip(&recs) {
        assert_eq!(row.len(), 18, "{row:?}");
        assert_eq!(row[col("clid")], "\"O'Brien, \"Pat\"\" <1000>");
        assert_eq!(row[col("dst")], r.dst);
        assert_eq!(row[col("disposition")], r.disposition.as_str());
        assert_eq!(row[col("duration")], "34");
        assert_eq!(row[col("uniqueid")], r.uniqueid);
        assert_eq!(row[col("amaflags")], "DOCUMENTATION");
    }
    assert_eq!(rows[0][col("billsec")], "30");
    assert_eq!(rows[0][col("answer")], "2025-11-24 16:01:44");
    assert_eq!(rows[1][col("billsec")], "0");
    assert_eq!(rows[1][col("answer")], "");
    let disp: Vec<&str> = rows
        .iter()
        .map(|r| r[col("disposition")].as_str())
        .collect();
    assert_eq!(disp, ["ANSWERED", "BUSY", "NO ANSWER", "FAILED"]);

    // Python's csv module agrees (skipped without python3).
    let script =
        "import csv,sys,json; print(json.dumps([r for r in csv.reader(open(sys.argv[1]))]))";
    match Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
    {
        Ok(o) if o.status.success() => {
            let py: Vec<Vec<String>> = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(py, rows, "python csv disagrees");
        }
        _ => eprintln!("SKIP python csv cross-check: python3 not available"),
    }
    let _ = std::fs::remove_file(&path);
}
