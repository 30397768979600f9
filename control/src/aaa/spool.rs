//! Durable accounting spool: every Accounting-Request is appended (and fsynced) before it is
//! sent, and marked done only when acknowledged, so records survive a RADIUS outage and a
//! restart and are resent in their original order.
//!
//! File format, one line per entry: `A <seq> <hex attributes>` adds a record, `D <seq>`
//! acknowledges one. A torn last line (crash mid-write) is ignored. [`Spool::open`] compacts
//! the log when acknowledgements dominate (write a temporary file, fsync, rename, fsync dir).
//! This is blocking file I/O at the edge; the call rate makes an fsync per record cheap.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::packet::Attribute;

/// A spool record's sequence number (its place in the send order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpoolSeq(pub u64);

/// Spool I/O failed. Caused by the local system (disk full, permissions).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    #[error("accounting spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An accounting record was given to a RADIUS edge started without a spool (config).
    #[error("no accounting spool configured ([radius] spool)")]
    NoSpool,
}

/// The spool log.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    live: BTreeMap<SpoolSeq, Vec<Attribute>>,
    next: u64,
    dead: usize,
}

impl Spool {
    /// Opens (or creates) the spool at `path`, loading unacknowledged records.
    pub fn open(path: impl AsRef<Path>) -> Result<Spool, SpoolError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| SpoolError::Io {
            path: path.clone(),
            source,
        };
        let mut live = BTreeMap::new();
        let mut next = 0;
        let mut dead = 0;
        if path.exists() {
            let f = File::open(&path).map_err(io)?;
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                let mut it = line.split(' ');
                let (op, seq) = (it.next(), it.next().and_then(|s| s.parse::<u64>().ok()));
                let Some(seq) = seq else { continue };
                next = next.max(seq + 1);
                match (op, it.next()) {
                    (Some("A"), Some(hex)) => {
                        if let Some(attrs) = decode(hex) {
                            live.insert(SpoolSeq(seq), attrs);
                        }
                    }
                    (Some("D"), None) => {
                        live.remove(&SpoolSeq(seq));
                        dead += 1;
                    }
                    _ => {}
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut s = Spool {
            path,
            file,
            live,
            next,
            dead,
        };
        if s.dead > 0 {
            s.compact()?;
        }
        Ok(s)
    }

    /// Appends a record durably (fsync) and returns its sequence number.
    pub fn append(&mut self, attributes: &[Attribute]) -> Result<SpoolSeq, SpoolError> {
        let seq = SpoolSeq(self.next);
        self.next += 1;
        self.write(&format!("A {} {}\n", seq.0, encode(attributes)))?;
        self.live.insert(seq, attributes.to_vec());
        Ok(seq)
    }

    /// Marks a record acknowledged (durably). Unknown sequence numbers are ignored.
    pub fn ack(&mut self, seq: SpoolSeq) -> Result<(), SpoolError> {
        if self.live.remove(&seq).is_none() {
            return Ok(());
        }
        self.write(&format!("D {}\n", seq.0))?;
        self.dead += 1;
        if self.dead > 1024 && self.dead > 4 * self.live.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// Unacknowledged records in send order.
    pub fn pending(&self) -> impl Iterator<Item = (SpoolSeq, &[Attribute])> {
        self.live.iter().map(|(s, a)| (*s, a.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Rewrites the log with only live records.
    pub fn compact(&mut self) -> Result<(), SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("compact");
        {
            let mut f = File::create(&tmp).map_err(io)?;
            let mut text = String::new();
            for (seq, attrs) in &self.live {
                text.push_str(&format!("A {} {}\n", seq.0, encode(attrs)));
            }
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        self.dead = 0;
        Ok(())
    }

    fn write(&mut self, line: &str) -> Result<(), SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

/// Attributes as hex of their wire encoding (VSAs with a 0 marker and vendor id).
fn encode(attrs: &[Attribute]) -> String {
    let mut out = String::new();
    let mut push = |b: &[u8]| {
        for x in b {
            out.push_str(&format!("{x:02x}"));
        }
    };
    for a in attrs {
        match a {
            Attribute::Standard { ty, value } => {
                push(&[*ty, value.len() as u8]);
                push(value);
            }
            Attribute::Vendor { vendor, ty, value } => {
                push(&[0, value.len() as u8]);
                push(&vendor.to_be_bytes());
                push(&[*ty]);
                push(value);
            }
        }
    }
    out
}

fn decode(hex: &str) -> Option<Vec<Attribute>> {
    if hex.len() & 1 == 1 {
        return None;
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let ty = *bytes.get(i)?;
        let len = *bytes.get(i + 1)? as usize;
        if ty == 0 {
            let vendor = u32::from_be_bytes(bytes.get(i + 2..i + 6)?.try_into().ok()?);
            let vty = *bytes.get(i + 6)?;
            let value = bytes.get(i + 7..i + 7 + len)?.to_vec();
            out.push(Attribute::Vendor {
                vendor,
                ty: vty,
                value,
            });
            i += 7 + len;
        } else {
            out.push(Attribute::Standard {
                ty,
                value: bytes.get(i + 2..i + 2 + len)?.to_vec(),
            });
            i += 2 + len;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("tandem-spool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn survives_reopen_in_order_and_compacts() {
        let p = tmp("reopen");
        let recs: Vec<Vec<Attribute>> = (0..5)
            .map(|i| {
                vec![
                    Attribute::int(40, i),
                    Attribute::cisco(25, "h323-setup-time", "x y"),
                ]
            })
            .collect();
        {
            let mut s = Spool::open(&p).unwrap();
            for r in &recs {
                s.append(r).unwrap();
            }
            s.ack(SpoolSeq(1)).unwrap();
            s.ack(SpoolSeq(3)).unwrap();
        }
        // A torn last line from a crash.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"A 9 0102")
            .unwrap();
        let mut s = Spool::open(&p).unwrap();
        let got: Vec<_> = s.pending().map(|(q, a)| (q.0, a.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (0, recs[0].clone()),
                (2, recs[2].clone()),
                (4, recs[4].clone())
            ]
        );
        // Compacted on open: no D lines left.
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        // New records continue after the highest sequence seen.
        assert_eq!(s.append(&recs[0]).unwrap(), SpoolSeq(10));
        let _ = std::fs::remove_file(&p);
    }
}
