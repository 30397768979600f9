//! Call detail records, Asterisk `Master.csv` compatible (cdr_csv with `loguniqueid` and
//! `loguserfield`): one line per call, eighteen columns in Asterisk's order, strings in double
//! quotes with embedded quotes doubled, `duration`/`billsec` as bare integers, times as
//! `YYYY-MM-DD HH:MM:SS` (UTC, like `usegmtime=yes`).
//!
//! [`CsvWriter`] appends and fsyncs each record, so a record written is a record kept.
//! Times are given by the caller (the edge's clock); nothing here reads the clock.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// `[cdr]` in `tandem.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrConfig {
    /// Path of the Master.csv file; records are appended.
    pub csv: PathBuf,
}

/// The call's outcome, as Asterisk names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Answered,
    NoAnswer,
    Busy,
    Failed,
    Congestion,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "ANSWERED",
            Disposition::NoAnswer => "NO ANSWER",
            Disposition::Busy => "BUSY",
            Disposition::Failed => "FAILED",
            Disposition::Congestion => "CONGESTION",
        }
    }

    /// The disposition of an unanswered call released with Q.850 `cause`.
    pub fn from_q850(cause: u16) -> Disposition {
        match cause {
            17 => Disposition::Busy,
            18 | 19 | 16 | 21 => Disposition::NoAnswer,
            34 | 42 | 44 | 47 => Disposition::Congestion,
            _ => Disposition::Failed,
        }
    }
}

/// AMA flags column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AmaFlags {
    Omit,
    Billing,
    #[default]
    Documentation,
}

impl AmaFlags {
    pub fn as_str(self) -> &'static str {
        match self {
            AmaFlags::Omit => "OMIT",
            AmaFlags::Billing => "BILLING",
            AmaFlags::Documentation => "DOCUMENTATION",
        }
    }
}

/// One call's record. `channel`/`dstchannel` use Asterisk's shape (`SIP/1000-00000001`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrRecord {
    pub accountcode: String,
    pub src: String,
    pub dst: String,
    pub dcontext: String,
    /// `"Name" <number>`
    pub clid: String,
    pub channel: String,
    pub dstchannel: String,
    pub lastapp: String,
    pub lastdata: String,
    pub start: SystemTime,
    pub answer: Option<SystemTime>,
    pub end: SystemTime,
    pub disposition: Disposition,
    pub amaflags: AmaFlags,
    pub uniqueid: String,
    pub userfield: String,
}

impl CdrRecord {
    /// Seconds from start to end.
    pub fn duration(&self) -> u64 {
        secs(self.end).saturating_sub(secs(self.start))
    }

    /// Seconds from answer to end (0 when unanswered).
    pub fn billsec(&self) -> u64 {
        self.answer
            .map(|a| secs(self.end).saturating_sub(secs(a)))
            .unwrap_or(0)
    }

    /// The CSV line, with its trailing newline.
    pub fn to_csv_line(&self) -> String {
        let mut out = String::with_capacity(256);
        for s in [
            &self.accountcode,
            &self.src,
            &self.dst,
            &self.dcontext,
            &self.clid,
            &self.channel,
            &self.dstchannel,
            &self.lastapp,
            &self.lastdata,
        ] {
            quoted(&mut out, s);
        }
        quoted(&mut out, &date(Some(self.start)));
        quoted(&mut out, &date(self.answer));
        quoted(&mut out, &date(Some(self.end)));
        out.push_str(&format!("{},{},", self.duration(), self.billsec()));
        quoted(&mut out, self.disposition.as_str());
        quoted(&mut out, self.amaflags.as_str());
        quoted(&mut out, &self.uniqueid);
        quoted(&mut out, &self.userfield);
        out.pop(); // last comma
        out.push('\n');
        out
    }
}

/// `clid` as Asterisk writes it: `"Name" <number>`, or just `<number>`-less forms.
pub fn clid(name: &str, number: &str) -> String {
    match (name.is_empty(), number.is_empty()) {
        (true, true) => String::new(),
        (true, false) => number.to_string(),
        (false, true) => format!("\"{name}\""),
        (false, false) => format!("\"{name}\" <{number}>"),
    }
}

fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push_str("\",");
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn date(t: Option<SystemTime>) -> String {
    let Some(t) = t else { return String::new() };
    let s = secs(t);
    let (y, m, d) = crate::aaa::civil_from_days((s / 86_400) as i64);
    let sod = s % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// CDR file write failed. Caused by the local system.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CdrError {
    #[error("CDR file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Appends records to Master.csv, one `write` + fsync per record.
#[derive(Debug)]
pub struct CsvWriter {
    path: PathBuf,
    file: File,
}

impl CsvWriter {
    pub fn open(path: impl AsRef<Path>) -> Result<CsvWriter, CdrError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| CdrError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(CsvWriter { path, file })
    }

    /// Appends one record durably.
    pub fn write(&mut self, rec: &CdrRecord) -> Result<(), CdrError> {
        let io = |source| CdrError::Io {
            path: self.path.clone(),
            source,
        };
        self.file
            .write_all(rec.to_csv_line().as_bytes())
            .map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn asterisk_line_shape() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_081_130);
        let r = CdrRecord {
            accountcode: String::new(),
            src: "1000".into(),
            dst: "200".into(),
            dcontext: "default".into(),
            clid: clid("Al \"B\"", "1000"),
            channel: "SIP/1000-00000001".into(),
            dstchannel: "SIP/200-00000002".into(),
            lastapp: "Dial".into(),
            lastdata: "SIP/200,30".into(),
            start: t,
            answer: Some(t + Duration::from_secs(5)),
            end: t + Duration::from_secs(65),
            disposition: Disposition::Answered,
            amaflags: AmaFlags::Documentation,
            uniqueid: "1764081130.1".into(),
            userfield: String::new(),
        };
        assert_eq!(
            r.to_csv_line(),
            "\"\",\"1000\",\"200\",\"default\",\"\"\"Al \"\"B\"\"\"\" <1000>\",\"SIP/1000-00000001\",\
             \"SIP/200-00000002\",\"Dial\",\"SIP/200,30\",\"2025-11-25 14:32:10\",\
             \"2025-11-25 14:32:15\",\"2025-11-25 14:33:15\",65,60,\"ANSWERED\",\"DOCUMENTATION\",\
             \"1764081130.1\",\"\"\n"
        );
        assert_eq!(Disposition::from_q850(17), Disposition::Busy);
    }
}
