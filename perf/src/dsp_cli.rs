//! `tandem-codec` DSP subcommands: `echo-cancel`, `dtmf-detect`,
//! `dtmf-generate` and `tone`, on WAV or raw 8 kHz 16-bit files.
//!
//! `tandem-codec`'s `main` calls [`run`] first with its arguments after the
//! program name; `None` means "not a DSP subcommand".

use dataplane::dsp::dtmf::{generate_digits, DtmfDetector, DtmfEvent};
use dataplane::dsp::ec::{new_canceller, EcKind};
use dataplane::dsp::tones::{zone_tone, ToneGenerator, ToneKind, ZONES};
use std::path::Path;

use crate::wav::{read_pcm, write_pcm};

const USAGE: &str = "\
DSP subcommands (8 kHz 16-bit mono, .wav or raw):
  echo-cancel [--tail-ms 32..128] [--no-nlp] [--time-domain] FAR NEAR OUT
  dtmf-detect FILE
  dtmf-generate [--level DBM0] [--on MS] [--off MS] DIGITS OUT
  tone ZONE NAME SECONDS OUT     (zones: us uk eu de fr cn jp;
                                  names: dial ringback busy congestion callwaiting)";

/// Run a DSP subcommand; `None` if `args[0]` is not one of ours.
pub fn run(args: &[String]) -> Option<i32> {
    let cmd = args.first()?.as_str();
    let rest = &args[1..];
    let result = match cmd {
        "echo-cancel" => echo_cancel(rest),
        "dtmf-detect" => dtmf_detect(rest),
        "dtmf-generate" => dtmf_generate(rest),
        "tone" => tone(rest),
        _ => return None,
    };
    Some(match result {
        Ok(()) => 0,
        Err(CliError::Usage(msg)) => {
            eprintln!("{cmd}: {msg}\n{USAGE}");
            2
        }
        Err(CliError::Failed(msg)) => {
            eprintln!("{cmd}: {msg}");
            1
        }
    })
}

enum CliError {
    Usage(String),
    Failed(String),
}

fn usage<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError::Usage(msg.into()))
}

/// Options (`--flag` with its value, if it takes one) and positionals.
type Parsed<'a> = (Vec<(&'a str, Option<&'a str>)>, Vec<&'a str>);

/// Split `--flag value` options (and bare `--no-*` switches) from positionals.
fn parse<'a>(args: &'a [String], with_value: &[&str]) -> Result<Parsed<'a>, CliError> {
    let mut opts = Vec::new();
    let mut pos = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a.starts_with("--") && a.len() > 2 {
            if with_value.contains(&a) {
                let Some(v) = args.get(i + 1) else {
                    return usage(format!("{a} needs a value"));
                };
                opts.push((a, Some(v.as_str())));
                i += 2;
                continue;
            }
            opts.push((a, None));
        } else {
            pos.push(a);
        }
        i += 1;
    }
    Ok((opts, pos))
}

fn number(flag: &str, v: Option<&str>) -> Result<f32, CliError> {
    match v.and_then(|v| v.parse::<f32>().ok()) {
        Some(x) if x.is_finite() => Ok(x),
        _ => usage(format!("{flag} needs a number")),
    }
}

fn read8k(path: &str) -> Result<Vec<i16>, CliError> {
    let audio = read_pcm(Path::new(path)).map_err(|e| CliError::Failed(format!("{path}: {e}")))?;
    if audio.rate != 8000 {
        return Err(CliError::Failed(format!(
            "{path}: {} Hz, expected 8000",
            audio.rate
        )));
    }
    Ok(audio.samples)
}

fn write8k(path: &str, samples: &[i16]) -> Result<(), CliError> {
    write_pcm(Path::new(path), 8000, samples).map_err(|e| CliError::Failed(format!("{path}: {e}")))
}

fn echo_cancel(args: &[String]) -> Result<(), CliError> {
    let (opts, pos) = parse(args, &["--tail-ms"])?;
    let mut tail_ms = 128.0;
    let mut nlp = true;
    let mut kind = EcKind::default();
    for (k, v) in opts {
        match k {
            "--tail-ms" => tail_ms = number(k, v)?,
            "--no-nlp" => nlp = false,
            "--time-domain" => kind = EcKind::TimeDomain,
            _ => return usage(format!("unknown option {k}")),
        }
    }
    if !(32.0..=128.0).contains(&tail_ms) {
        return usage("--tail-ms must be 32 to 128");
    }
    let [far, near, out] = pos[..] else {
        return usage("needs FAR NEAR OUT");
    };
    let far = read8k(far)?;
    let near = read8k(near)?;
    let n = far.len().min(near.len());
    if far.len() != near.len() {
        eprintln!("echo-cancel: FAR and NEAR differ in length; using the first {n} samples");
    }
    let mut ec = new_canceller(kind, (tail_ms * 8.0) as usize);
    ec.set_nlp(nlp);
    let mut result = vec![0i16; n];
    for ((f, d), o) in far[..n]
        .chunks(160)
        .zip(near[..n].chunks(160))
        .zip(result.chunks_mut(160))
    {
        ec.process(f, d, o);
    }
    write8k(out, &result)?;
    let p = |v: &[i16]| {
        v.iter()
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            .max(1.0)
    };
    let s = ec.stats();
    println!(
        "{} taps, {:.1} s: output {:.1} dB below input; double talk {:.1} s, NLP {:.1} s",
        ec.taps(),
        n as f64 / 8000.0,
        10.0 * (p(&near[..n]) / p(&result)).log10(),
        s.dt_samples as f64 / 8000.0,
        s.nlp_samples as f64 / 8000.0
    );
    Ok(())
}

fn dtmf_detect(args: &[String]) -> Result<(), CliError> {
    let [file] = args else {
        return usage("needs FILE");
    };
    let x = read8k(file)?;
    let mut det = DtmfDetector::default();
    let mut found = 0;
    let mut report = |e: DtmfEvent| {
        if let DtmfEvent::End {
            digit,
            at,
            duration,
        } = e
        {
            found += 1;
            println!(
                "{}  start {:.3} s  duration {:.0} ms",
                digit.to_char(),
                (at - duration) as f64 / 8000.0,
                duration as f64 / 8.0
            );
        }
    };
    det.process(&x, &mut report);
    // Close a digit still held at the end of the file.
    det.process(&[0i16; 512], &mut report);
    println!("{found} digit(s)");
    Ok(())
}

fn dtmf_generate(args: &[String]) -> Result<(), CliError> {
    let (opts, pos) = parse(args, &["--level", "--on", "--off"])?;
    let (mut level, mut on, mut off) = (-10.0f32, 100.0f32, 100.0f32);
    for (k, v) in opts {
        match k {
            "--level" => level = number(k, v)?,
            "--on" => on = number(k, v)?,
            "--off" => off = number(k, v)?,
            _ => return usage(format!("unknown option {k}")),
        }
    }
    let [digits, out] = pos[..] else {
        return usage("needs DIGITS OUT");
    };
    if let Some(bad) = digits
        .chars()
        .find(|&c| dataplane::dsp::dtmf::Digit::from_char(c).is_none())
    {
        return usage(format!("'{bad}' is not a DTMF digit (0-9 * # A-D)"));
    }
    if !(-60.0..=0.0).contains(&level)
        || !(10.0..=10_000.0).contains(&on)
        || !(0.0..=10_000.0).contains(&off)
    {
        return usage("--level -60..0 dBm0, --on 10..10000 ms, --off 0..10000 ms");
    }
    let mut x = Vec::new();
    generate_digits(digits, level, on as u32, off as u32, &mut x);
    write8k(out, &x)?;
    println!(
        "{} digit(s), {:.2} s",
        digits.len(),
        x.len() as f64 / 8000.0
    );
    Ok(())
}

fn tone(args: &[String]) -> Result<(), CliError> {
    let [zone, name, seconds, out] = args else {
        return usage("needs ZONE NAME SECONDS OUT");
    };
    let Some(kind) = ToneKind::from_name(name) else {
        return usage(format!("unknown tone '{name}'"));
    };
    let Some(cadence) = zone_tone(zone, kind) else {
        return usage(format!("unknown zone '{zone}' (have {})", ZONES.join(" ")));
    };
    let secs: f32 = match seconds.parse() {
        Ok(s) if (0.0..=3600.0).contains(&s) => s,
        _ => return usage("SECONDS must be 0 to 3600"),
    };
    let mut x = vec![0i16; (secs * 8000.0) as usize];
    let mut g = ToneGenerator::new(cadence);
    for block in x.chunks_mut(160) {
        g.fill(block);
    }
    write8k(out, &x)?;
    Ok(())
}
