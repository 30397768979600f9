//! The analog lines of DAHDI `system.conf`: `fxoks=`, `fxols=`, `fxogs=`
//! (FXS ports) and `fxsks=`, `fxsls=`, `fxsgs=` (FXO ports), each with a
//! channel list such as `1-4,7`. Other keys (spans, `loadzone=`,
//! `echocanceller=` ...) belong to other parsers and are skipped here;
//! `#` and `;` start comments.

use super::Signalling;
use crate::ChanId;

/// One analog channel from `system.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConf {
    /// Global DAHDI channel number.
    pub chan: ChanId,
    /// Its signalling (which also says the module: see [`Signalling::port_kind`]).
    pub signalling: Signalling,
}

/// A `system.conf` error, naming the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// The file's author wrote a channel list we cannot read.
    #[error("system.conf line {line}: bad channel list {text:?} for {key}= (want e.g. 1-4,7)")]
    BadChannels {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: String,
        /// The offending text.
        text: String,
    },
    /// The file's author gave one channel two signalling types.
    #[error("system.conf line {line}: channel {chan} already configured as {first}=")]
    Duplicate {
        /// 1-based line number.
        line: usize,
        /// The channel.
        chan: u16,
        /// The earlier key.
        first: &'static str,
    },
}

/// Parse the analog channels of a `system.conf` text, in channel order.
pub fn parse(text: &str) -> Result<Vec<PortConf>, ConfError> {
    let mut out: Vec<PortConf> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.split(['#', ';']).next().unwrap_or("").trim();
        let Some((key, val)) = l.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let Some(sig) = Signalling::from_conf_key(&key) else {
            continue;
        };
        let bad = || ConfError::BadChannels {
            line,
            key: key.clone(),
            text: val.trim().to_string(),
        };
        for part in val.split(',') {
            let part = part.trim();
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let (a, b): (u16, u16) = match (a.parse(), b.parse()) {
                (Ok(a), Ok(b)) if a >= 1 && a <= b && b - a < 1024 => (a, b),
                _ => return Err(bad()),
            };
            for c in a..=b {
                if let Some(p) = out.iter().find(|p| p.chan.0 == c) {
                    return Err(ConfError::Duplicate {
                        line,
                        chan: c,
                        first: p.signalling.conf_key(),
                    });
                }
                out.push(PortConf {
                    chan: ChanId(c),
                    signalling: sig,
                });
            }
        }
    }
    out.sort_by_key(|p| p.chan);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analog::PortKind;

    #[test]
    fn tdm400p_sample() {
        let text = "# TDM400P\nfxoks=1,3-4   ; FXS modules\nfxsks = 2\n\
                    echocanceller=mg2,1-4\nloadzone=de\ndefaultzone=de\n";
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].signalling, Signalling::FxoKs);
        assert_eq!(p[0].signalling.port_kind(), PortKind::Fxs);
        assert_eq!(p[1].chan, ChanId(2));
        assert_eq!(p[1].signalling.port_kind(), PortKind::Fxo);
        assert_eq!(p[3].chan, ChanId(4));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("fxoks=1\n\nfxsks=x-2\n").unwrap_err();
        assert!(matches!(e, ConfError::BadChannels { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("line 3"));
        let e = parse("fxoks=1-2\nfxols=2\n").unwrap_err();
        assert!(matches!(
            e,
            ConfError::Duplicate {
                line: 2,
                chan: 2,
                first: "fxoks"
            }
        ));
        assert!(parse("fxoks=3-1").is_err());
        assert!(parse("fxoks=0").is_err());
    }
}
