//! `tandem-dahdi-probe`: Tandem's PRI stack on a real DAHDI span.
//!
//! Two modes, both printing one JSON object per line on stdout:
//!
//! - `call`: opens a D-channel (`/dev/dahdi/channel` + DAHDI_SPECIFY, HDLC
//!   with FCS, 32 × 1024 buffers) through `drivers::dahdi::Channel`, runs
//!   `control::isdn::Pri` as the user (CPE) side over it, places one call,
//!   and once it is answered opens the B-channel the exchange assigned,
//!   writes an A-law chirp (300 → 3400 Hz) on it, listens for the far end's
//!   chirp (3400 → 300 Hz) coming back, clears the call with cause 16 and
//!   waits for the release.
//! - `listen`: opens clear channels (by default every B-channel of span 1),
//!   records them, reports on which channel the rising chirp arrived and
//!   whether it arrived octet for octet, and answers with the falling chirp
//!   on that channel.
//!
//! - `sipcall`: a minimal SIP UA (UDP, digest auth) that dials a number on
//!   tandemd, and with `--audio 1` sends the rising chirp as PCMA RTP (20 ms
//!   packets) and looks for the falling chirp in what comes back; it hangs
//!   up (`--hangup-after`) or waits for the far end's BYE (`--await-bye 1`).
//!
//! - `phone`: a telephone on an FXS-signalling (`fxsks=`) channel, the far
//!   side of a tandemd FXS port (`fxoks=`) across a channel bank (robbed-bit
//!   CAS: hook and ring cross the kernel's real signalling code). Answer
//!   flavour: counts rings (DAHDI_EVENT_RINGBEGIN / ring-end RINGOFFHOOK),
//!   decodes the Bell 202 caller ID received on hook (`--expect-cid`),
//!   goes off hook at ring `--rings`, sends the falling chirp and looks
//!   for the rising one (the SIP UA's) by correlation, then waits for the
//!   far end's disconnect (ONHOOK event or busy tone). `--originate 1`:
//!   off hook, dial tone checked by frequency (350+440 Hz, Goertzel),
//!   `--dial` digits as in-band DTMF, then the rising chirp must come back
//!   (an echo extension); we hang up. `sipcall --match corr` judges the
//!   chirp by correlation, for paths through analog lines.
//!
//! Exit status: 0 everything expected happened, 1 an expectation failed
//! (audio damaged, call rejected), 2 timeout, 3 usage or device error.
//! Used by `control/tests/dahdi_qemu.rs` inside the dahdi-qemu guest.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use control::isdn::lapd::{Frame, Kind};
use control::isdn::{CallId, Pri, PriEvent, SetupRequest, Side};
use control::q931::Message;
use dataplane::codec::g711::{alaw_to_linear, linear_to_alaw};
use drivers::dahdi::{abi, ioctl, Channel};
use serde_json::{json, Value};

/// Samples of each chirp (2 s).
const CHIRP_SAMPLES: usize = 16_000;
/// Octets that must match exactly to fix the alignment.
const SYNC: usize = 32;
/// Transmit buffers per B-channel.
const BUFS: i32 = 32;
/// Pause after link-up before SETUP: the far end may still be re-establishing
/// after a SABME lost before we opened the channel (see pri-peer's README).
const SETTLE: Duration = Duration::from_millis(1500);

#[expect(
    clippy::disallowed_methods,
    reason = "edge binary: it drives the sans-IO stack with the real clock"
)]
fn now() -> Instant {
    Instant::now()
}

/// When `octets` written from `started` on (the last block queued at
/// `done`, with up to [`BUFS`] blocks of `block` octets buffered) have
/// left the kernel's transmit buffers, with a margin.
fn drained_at(started: Instant, done: Instant, block: usize, octets: usize) -> Instant {
    let ms = |n: usize| Duration::from_millis(n as u64 / 8);
    let margin = Duration::from_millis(400);
    (started + ms(octets)).max(done + ms(block * BUFS as usize)) + margin
}

fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn event(ev: &str, mut extra: Value, t0: Instant) {
    if let Some(m) = extra.as_object_mut() {
        m.insert("ev".into(), ev.into());
        m.insert(
            "ts".into(),
            json!(((now() - t0).as_secs_f64() * 1000.0).round() / 1000.0),
        );
    }
    emit(extra);
}

/// A linear chirp from `f0` to `f1` Hz over `n` samples at 8 kHz, A-law.
/// Starts at a cosine peak so that its first octets are far from idle.
fn chirp(n: usize, f0: f64, f1: f64) -> Vec<u8> {
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let f = f0 + (f1 - f0) * i as f64 / n as f64;
            let x = 12_000.0 * phase.cos();
            phase += 2.0 * std::f64::consts::PI * f / 8000.0;
            linear_to_alaw(x as i16)
        })
        .collect()
}

/// Looks for a known pattern in a recorded stream: aligns on its first
/// [`SYNC`] octets, then compares the whole pattern.
#[derive(Debug)]
struct Detector {
    pattern: Vec<u8>,
    rec: Vec<u8>,
    start: Option<usize>,
    scanned: usize,
}

/// What a [`Detector`] found.
#[derive(Debug, Clone, PartialEq)]
struct Found {
    offset: usize,
    mismatches: usize,
    first_mismatch: Option<usize>,
    correlation: f64,
}

impl Detector {
    fn new(pattern: Vec<u8>) -> Self {
        Self {
            pattern,
            rec: Vec::new(),
            start: None,
            scanned: 0,
        }
    }

    /// Appends received octets; true once the pattern's start was seen.
    fn push(&mut self, data: &[u8]) -> bool {
        self.rec.extend_from_slice(data);
        if self.start.is_none() && self.rec.len() >= SYNC {
            let head = &self.pattern[..SYNC];
            let last = self.rec.len() - SYNC;
            self.start = (self.scanned..=last).find(|&i| &self.rec[i..i + SYNC] == head);
            self.scanned = last + 1;
        }
        self.start.is_some()
    }

    fn started(&self) -> bool {
        self.start.is_some()
    }

    /// How many of the pattern's whole `block`-octet pieces occur intact
    /// anywhere in the recording: robust to gaps between blocks (a path with
    /// RTP in it may insert idle between two packets), strict within them.
    fn blocks_found(&self, block: usize) -> (usize, usize) {
        let pieces: Vec<&[u8]> = self
            .pattern
            .chunks(block)
            .filter(|c| c.len() == block)
            .collect();
        let found = pieces
            .iter()
            .filter(|p| self.rec.windows(block).any(|w| w == **p))
            .count();
        (found, pieces.len())
    }

    /// The comparison, once the whole pattern length was recorded.
    fn result(&self) -> Option<Found> {
        let s = self.start?;
        let got = self.rec.get(s..s + self.pattern.len())?;
        let diff: Vec<usize> = got
            .iter()
            .zip(&self.pattern)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect();
        let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
        for (&a, &b) in got.iter().zip(&self.pattern) {
            let (x, y) = (f64::from(alaw_to_linear(a)), f64::from(alaw_to_linear(b)));
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        let correlation = if xx > 0.0 && yy > 0.0 {
            xy / (xx * yy).sqrt()
        } else {
            0.0
        };
        Some(Found {
            offset: s,
            mismatches: diff.len(),
            first_mismatch: diff.first().copied(),
            correlation,
        })
    }
}

fn found_json(f: &Found, octets: usize) -> Value {
    json!({
        "offset": f.offset,
        "octets": octets,
        "mismatches": f.mismatches,
        "first_mismatch": f.first_mismatch,
        "correlation": (f.correlation * 1e6).round() / 1e6,
        "intact": f.mismatches == 0,
    })
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::I { .. } => "I",
        Kind::Rr { .. } => "RR",
        Kind::Rnr { .. } => "RNR",
        Kind::Rej { .. } => "REJ",
        Kind::Sabme { .. } => "SABME",
        Kind::Ua { .. } => "UA",
        Kind::Disc { .. } => "DISC",
        Kind::Dm { .. } => "DM",
        Kind::Frmr { .. } => "FRMR",
        Kind::Ui { .. } => "UI",
        Kind::Xid { .. } => "XID",
        Kind::Other(_) => "other",
    }
}

fn frame_json(dir: &str, bytes: &[u8]) -> Value {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut v = json!({"dir": dir, "len": bytes.len(), "hex": hex});
    if let Ok(f) = Frame::parse(bytes) {
        v["kind"] = kind_name(&f.kind).into();
        v["cr"] = f.cr.into();
        if let Some(info) = f.info() {
            if let Ok(m) = Message::parse(info) {
                v["q931"] = format!("{:?}", m.msg_type).into();
            }
        }
    }
    v
}

#[derive(Debug)]
struct Args {
    mode: String,
    /// sipcall: tandemd's SIP address, account, number to dial.
    server: String,
    user: String,
    password: String,
    dial: String,
    /// sipcall: send the rising chirp as RTP and look for the falling one.
    audio: bool,
    /// sipcall: send BYE this long after the 200 (at the latest).
    hangup_after: Option<Duration>,
    /// sipcall: expect the far end to clear (BYE from tandemd).
    await_bye: bool,
    /// listen: judge the chirp by intact 160-octet blocks, not one run.
    match_blocks: bool,
    /// sipcall: judge the chirp by correlation (a path with analog audio
    /// and G.711 re-encoding in it), not by octets.
    match_corr: bool,
    /// phone: the fxsks channel.
    chan: i32,
    /// phone: answer at this ring.
    rings: u32,
    /// phone: the caller ID number that must arrive.
    expect_cid: Option<String>,
    /// phone: go off hook and dial `dial` instead of waiting for rings.
    originate: bool,
    dchan: i32,
    bchan_base: i32,
    chans: Vec<i32>,
    called: String,
    calling: String,
    timeout: Duration,
    block: usize,
}

fn parse_chans(s: &str) -> Result<Vec<i32>, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: i32 = a.trim().parse().map_err(|_| format!("bad channel {a:?}"))?;
        let b: i32 = b.trim().parse().map_err(|_| format!("bad channel {b:?}"))?;
        if a < 1 || b < a || b > 1024 {
            return Err(format!("bad channel range {part:?}"));
        }
        v.extend(a..=b);
    }
    Ok(v)
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("usage: tandem-dahdi-probe call|listen|sipcall|phone [options]")?;
    if !["call", "listen", "sipcall", "phone"].contains(&mode.as_str()) {
        return Err(format!(
            "unknown mode {mode:?} (call, listen, sipcall or phone)"
        ));
    }
    let mut a = Args {
        mode,
        server: "127.0.0.1:5060".into(),
        user: "1001".into(),
        password: "pw1001".into(),
        dial: "95551234".into(),
        audio: false,
        hangup_after: None,
        await_bye: false,
        match_blocks: false,
        match_corr: false,
        chan: 67,
        rings: 2,
        expect_cid: None,
        originate: false,
        dchan: 47,
        bchan_base: 31,
        chans: parse_chans("1-15,17-31")?,
        called: "5551234".into(),
        calling: "2000".into(),
        timeout: Duration::from_secs(40),
        block: 160,
    };
    while let Some(opt) = it.next() {
        let val = it.next().ok_or(format!("{opt} needs a value"))?;
        let num = |v: &str| {
            v.parse::<i32>()
                .map_err(|_| format!("{opt}: bad number {v:?}"))
        };
        match opt.as_str() {
            "--dchan" => a.dchan = num(&val)?,
            "--bchan-base" => a.bchan_base = num(&val)?,
            "--chans" => a.chans = parse_chans(&val)?,
            "--called" => a.called = val,
            "--calling" => a.calling = val,
            "--timeout" => a.timeout = Duration::from_secs(num(&val)?.max(1) as u64),
            "--block" => a.block = num(&val)?.max(8) as usize,
            "--server" => a.server = val,
            "--user" => a.user = val,
            "--password" => a.password = val,
            "--dial" => a.dial = val,
            "--audio" => a.audio = num(&val)? != 0,
            "--hangup-after" => {
                a.hangup_after = Some(Duration::from_millis(num(&val)?.max(0) as u64 * 1000))
            }
            "--await-bye" => a.await_bye = num(&val)? != 0,
            "--match" => {
                a.match_blocks = val == "blocks";
                a.match_corr = val == "corr";
            }
            "--chan" => a.chan = num(&val)?,
            "--rings" => a.rings = num(&val)?.max(1) as u32,
            "--expect-cid" => a.expect_cid = Some(val),
            "--originate" => a.originate = num(&val)? != 0,
            _ => return Err(format!("unknown option {opt}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            emit(json!({"ev": "error", "error": e}));
            return ExitCode::from(3);
        }
    };
    let r = match args.mode.as_str() {
        "call" => run_call(&args),
        "sipcall" => sipcall::run(&args),
        "phone" => phone::run(&args),
        _ => run_listen(&args),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            emit(json!({"ev": "error", "error": e}));
            ExitCode::from(3)
        }
    }
}

fn channel_json(ch: &Channel) -> Value {
    let p = ch.params();
    json!({"channel": p.channo, "span": p.spanno, "chanpos": p.chanpos,
           "sigtype": format!("{:#x}", p.sigtype)})
}

fn report_events(ch: &mut Channel, t0: Instant) {
    while let Some(e) = ch.poll_event() {
        let name = match e {
            abi::event::ABORT => "abort",
            abi::event::OVERRUN => "overrun",
            abi::event::BADFCS => "bad_fcs",
            abi::event::ALARM => "alarm",
            abi::event::NOALARM => "no_alarm",
            _ => "other",
        };
        event(
            "dahdi_event",
            json!({"channel": ch.channo(), "code": e, "name": name}),
            t0,
        );
    }
}

/// The call in progress on the user side.
#[derive(Debug, Default)]
struct CallRun {
    call: Option<CallId>,
    link_up_at: Option<Instant>,
    connected_at: Option<Instant>,
    bearer: Option<Channel>,
    tx_pos: usize,
    tx_started_at: Option<Instant>,
    tx_done_at: Option<Instant>,
    hangup_sent: bool,
    released: Option<(u8, Instant)>,
    rx: Option<Detector>,
    rx_reported: bool,
    rx_intact: bool,
    failed: Vec<String>,
}

fn run_call(a: &Args) -> Result<u8, String> {
    let t0 = now();
    let deadline = t0 + a.timeout;
    let mut d = Channel::open_dchannel(a.dchan).map_err(|e| e.to_string())?;
    event("dahdi_channel", channel_json(&d), t0);
    let mut pri = Pri::new(Side::User);
    pri.start(now());
    let mut run = CallRun::default();
    let up = chirp(CHIRP_SAMPLES, 300.0, 3400.0);
    let down = chirp(CHIRP_SAMPLES, 3400.0, 300.0);
    let mut pending: Option<Vec<u8>> = None;
    let mut buf = vec![0u8; a.block.max(8192)];
    loop {
        // D-channel: send what the stack has queued.
        while let Some(f) = pending.take().or_else(|| pri.poll_transmit()) {
            if d.write_frame(&f).map_err(|e| e.to_string())? {
                event("frame", frame_json("tx", &f), t0);
            } else {
                pending = Some(f);
                break;
            }
        }
        report_events(&mut d, t0);
        while let Some(ev) = pri.poll_event() {
            on_pri_event(&ev, &mut pri, &mut run, a, t0)?;
        }
        let t = now();
        if t >= deadline {
            event("timeout", json!({"after_s": a.timeout.as_secs()}), t0);
            return Ok(2);
        }
        // Place the call once the link has settled.
        if run.call.is_none() && run.link_up_at.is_some_and(|u| t >= u + SETTLE) {
            let req = SetupRequest::new(&a.called, Some(&a.calling));
            let call = pri.setup(&req, t).map_err(|e| e.to_string())?;
            run.call = Some(call);
            event(
                "setup",
                json!({"dir": "tx", "called": a.called, "calling": a.calling}),
                t0,
            );
            continue;
        }
        // B-channel: write the rising chirp, look for the falling one.
        if let Some(b) = run.bearer.as_mut() {
            while run.tx_pos < up.len() {
                let end = (run.tx_pos + a.block).min(up.len());
                let mut blk = up[run.tx_pos..end].to_vec();
                blk.resize(a.block, 0xD5);
                if !b.write_block(&blk).map_err(|e| e.to_string())? {
                    break;
                }
                run.tx_pos = end;
                run.tx_started_at.get_or_insert(t);
                if run.tx_pos == up.len() {
                    run.tx_done_at = Some(t);
                    event(
                        "audio_tx",
                        json!({"channel": b.channo(), "octets": up.len(),
                        "pattern": "chirp 300-3400 Hz"}),
                        t0,
                    );
                }
            }
            while let Some(n) = b.read_block(&mut buf).map_err(|e| e.to_string())? {
                if let Some(det) = run.rx.as_mut() {
                    det.push(&buf[..n]);
                }
            }
            report_events(b, t0);
            if let (Some(det), false) = (run.rx.as_ref(), run.rx_reported) {
                if let Some(f) = det.result() {
                    run.rx_reported = true;
                    run.rx_intact = f.mismatches == 0;
                    let mut v = found_json(&f, down.len());
                    v["channel"] = b.channo().into();
                    v["pattern"] = "chirp 3400-300 Hz".into();
                    event("audio_rx", v, t0);
                }
            }
        }
        // Clear once both chirps are through (or the return one is late),
        // leaving the transmit buffers time to drain.
        if let (Some(call), Some(conn), false) = (run.call, run.connected_at, run.hangup_sent) {
            let tx_drained = match (run.tx_started_at, run.tx_done_at) {
                (Some(s), Some(d)) => t >= drained_at(s, d, a.block, up.len()),
                _ => false,
            };
            let rx_over = run.rx_reported || t >= conn + Duration::from_secs(12);
            if tx_drained && rx_over {
                if !run.rx_reported {
                    run.failed.push("the far end's chirp never arrived".into());
                    event(
                        "audio_rx",
                        json!({"intact": false, "error": "not received"}),
                        t0,
                    );
                }
                pri.hangup(call, 16, t).map_err(|e| e.to_string())?;
                run.hangup_sent = true;
                event("disconnect", json!({"dir": "tx", "cause": 16}), t0);
                continue;
            }
        }
        // Done: release seen and a moment for the last frames.
        if let Some((_, at)) = run.released {
            run.bearer = None;
            if t >= at + Duration::from_millis(500) {
                break;
            }
        }
        // Wait for the D-channel, the B-channel or the next timer.
        let mut wait = pri.poll_timeout().map_or(Duration::from_millis(100), |x| {
            x.saturating_duration_since(t)
        });
        wait = wait.min(Duration::from_millis(100));
        if run.link_up_at.is_some() && run.call.is_none() {
            wait = wait.min(Duration::from_millis(20));
        }
        let mut fds = vec![(
            d.as_fd(),
            ioctl::POLLIN | ioctl::POLLPRI | if pending.is_some() { ioctl::POLLOUT } else { 0 },
        )];
        if let Some(b) = run.bearer.as_ref() {
            let out = if run.tx_pos < up.len() {
                ioctl::POLLOUT
            } else {
                0
            };
            fds.push((b.as_fd(), ioctl::POLLIN | ioctl::POLLPRI | out));
        }
        let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(100).max(1);
        let rev = ioctl::poll(&fds, wait_ms).map_err(|e| format!("poll: {e}"))?;
        drop(fds);
        if rev.first().is_some_and(|r| r & ioctl::POLLPRI != 0) {
            d.fetch_events().map_err(|e| e.to_string())?;
        }
        loop {
            match d.read_frame() {
                Ok(Some(f)) => {
                    event("frame", frame_json("rx", &f), t0);
                    pri.handle_frame(&f, now());
                }
                Ok(None) => break,
                Err(e) => event("dchan_error", json!({"error": e.to_string()}), t0),
            }
        }
        let t = now();
        if pri.poll_timeout().is_some_and(|x| x <= t) {
            pri.handle_timeout(t);
        }
    }
    let st = d.stats();
    let ok = run.failed.is_empty() && run.rx_intact && run.released.is_some_and(|(c, _)| c == 16);
    event(
        "done",
        json!({"ok": ok, "failures": run.failed, "dchan_rx_frames": st.rx,
               "dchan_tx_frames": st.tx, "dchan_events": st.events}),
        t0,
    );
    Ok(if ok { 0 } else { 1 })
}

fn on_pri_event(
    ev: &PriEvent,
    pri: &mut Pri,
    run: &mut CallRun,
    a: &Args,
    t0: Instant,
) -> Result<(), String> {
    match ev {
        PriEvent::LinkUp => {
            run.link_up_at.get_or_insert_with(now);
            event("dchan_up", json!({}), t0);
        }
        PriEvent::LinkDown => event("dchan_down", json!({}), t0),
        PriEvent::Proceeding { channel, .. } => {
            event("proceeding", json!({"channel": channel}), t0)
        }
        PriEvent::Alerting { .. } => event("alerting", json!({}), t0),
        PriEvent::Answer { call } if Some(*call) == run.call => {
            let ts = pri.channel(*call).ok_or("CONNECT without a B-channel")?;
            let channo = a.bchan_base + i32::from(ts);
            let b = Channel::open_bearer(channo, a.block, BUFS).map_err(|e| e.to_string())?;
            let mut v = channel_json(&b);
            v["timeslot"] = ts.into();
            event("connect", v, t0);
            run.bearer = Some(b);
            run.connected_at = Some(now());
            run.rx = Some(Detector::new(chirp(CHIRP_SAMPLES, 3400.0, 300.0)));
        }
        PriEvent::Release { call, cause } if Some(*call) == run.call => {
            if !run.hangup_sent {
                run.failed
                    .push(format!("the network cleared the call, cause {cause}"));
            }
            run.released = Some((*cause, now()));
            event("release", json!({"cause": cause}), t0);
        }
        PriEvent::ProtocolError(e) => event("protocol_error", json!({"error": e}), t0),
        other => event("pri_event", json!({"event": format!("{other:?}")}), t0),
    }
    Ok(())
}

/// One listened channel.
#[derive(Debug)]
struct Listened {
    ch: Channel,
    det: Detector,
}

fn run_listen(a: &Args) -> Result<u8, String> {
    let t0 = now();
    let deadline = t0 + a.timeout;
    let mut chans = Vec::new();
    for &c in &a.chans {
        let ch = Channel::open_bearer(c, a.block, BUFS).map_err(|e| e.to_string())?;
        chans.push(Listened {
            ch,
            det: Detector::new(chirp(CHIRP_SAMPLES, 300.0, 3400.0)),
        });
    }
    event(
        "listening",
        json!({"channels": a.chans, "block": a.block}),
        t0,
    );
    let back = chirp(CHIRP_SAMPLES, 3400.0, 300.0);
    let mut answer: Option<usize> = None; // index into chans
    let mut tx_pos = 0usize;
    let mut tx_started_at: Option<Instant> = None;
    let mut tx_done_at: Option<Instant> = None;
    let mut result: Option<Found> = None;
    let mut blocks = (0usize, 0usize);
    let mut buf = vec![0u8; a.block];
    loop {
        let t = now();
        if t >= deadline {
            event("timeout", json!({"after_s": a.timeout.as_secs()}), t0);
            return Ok(2);
        }
        let drained = match (tx_started_at, tx_done_at) {
            (Some(s), Some(d)) => t >= drained_at(s, d, a.block, back.len()),
            _ => false,
        };
        if result.is_some() && drained {
            break;
        }
        let fds: Vec<_> = chans
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let out = if answer == Some(i) && tx_pos < back.len() {
                    ioctl::POLLOUT
                } else {
                    0
                };
                (l.ch.as_fd(), ioctl::POLLIN | ioctl::POLLPRI | out)
            })
            .collect();
        let rev = ioctl::poll(&fds, 100).map_err(|e| format!("poll: {e}"))?;
        drop(fds);
        for (i, r) in rev.iter().enumerate() {
            if *r == 0 {
                continue;
            }
            let l = &mut chans[i];
            while let Some(n) = l.ch.read_block(&mut buf).map_err(|e| e.to_string())? {
                l.det.push(&buf[..n]);
            }
            report_events(&mut l.ch, t0);
            if answer.is_none() && l.det.started() {
                answer = Some(i);
                event("audio_start", json!({"channel": l.ch.channo()}), t0);
            }
        }
        if let Some(i) = answer {
            let l = &mut chans[i];
            // Through RTP, gaps may stretch the chirp: give it a second more.
            let slack = if a.match_blocks { 8000 } else { 0 };
            let complete = l
                .det
                .start
                .is_some_and(|s| l.det.rec.len() >= s + CHIRP_SAMPLES + slack);
            if result.is_none() && complete {
                if let Some(f) = l.det.result() {
                    let mut v = found_json(&f, CHIRP_SAMPLES);
                    v["channel"] = l.ch.channo().into();
                    v["pattern"] = "chirp 300-3400 Hz".into();
                    let (found, total) = l.det.blocks_found(160);
                    v["blocks_found"] = found.into();
                    v["blocks"] = total.into();
                    event("audio_rx", v, t0);
                    result = Some(f);
                    blocks = (found, total);
                }
            }
            while tx_pos < back.len() {
                let end = (tx_pos + a.block).min(back.len());
                let mut blk = back[tx_pos..end].to_vec();
                blk.resize(a.block, 0xD5);
                if !l.ch.write_block(&blk).map_err(|e| e.to_string())? {
                    break;
                }
                tx_pos = end;
                tx_started_at.get_or_insert(t);
                if tx_pos == back.len() {
                    tx_done_at = Some(now());
                    event(
                        "audio_tx",
                        json!({"channel": l.ch.channo(), "octets": back.len(),
                        "pattern": "chirp 3400-300 Hz"}),
                        t0,
                    );
                }
            }
        }
    }
    let others: Vec<i32> = chans
        .iter()
        .enumerate()
        .filter(|(i, l)| Some(*i) != answer && l.det.started())
        .map(|(_, l)| l.ch.channo())
        .collect();
    let audio_ok = if a.match_blocks {
        blocks.1 > 0 && blocks.0 * 10 >= blocks.1 * 9
    } else {
        result.as_ref().is_some_and(|f| f.mismatches == 0)
    };
    let ok = audio_ok && others.is_empty();
    event("done", json!({"ok": ok, "chirp_also_on": others}), t0);
    Ok(if ok { 0 } else { 1 })
}

/// `sipcall`: a minimal UDP SIP UA for the full-path test (SIP UA ->
/// tandemd -> DAHDI span -> libpri), with digest authentication, PCMA RTP
/// of a known signal and both ways of clearing.
mod sipcall {
    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    use control::sip::client_auth::{new_cnonce, Challenge};
    use control::sip::{Message, Method, Request, Response};
    use serde_json::json;

    use super::{chirp, event, found_json, now, Args, Detector, CHIRP_SAMPLES};

    /// Idle (A-law 0xD5) sent before the chirp, so that the far end is
    /// listening when it starts.
    const LEAD_PACKETS: usize = 15;
    const PT_PCMA: u8 = 8;

    struct Dialog {
        sock: UdpSocket,
        server: SocketAddr,
        local: SocketAddr,
        call_id: String,
        from: String,
        to: String,
        uri: String,
        target: String,
        cseq: u32,
        invite: Request,
    }

    impl Dialog {
        fn send(&self, m: impl Into<Message>) {
            let _ = self.sock.send_to(&m.into().to_bytes(), self.server);
        }

        fn via(&self) -> String {
            format!(
                "SIP/2.0/UDP {};branch={};rport",
                self.local,
                control::sip::new_branch()
            )
        }

        fn invite(&mut self, rtp_port: u16, auth: Option<(&str, String)>) {
            self.cseq += 1;
            let mut r = Request::new(Method::Invite, self.uri.clone());
            r.headers.push("Via", self.via());
            r.headers.push("Max-Forwards", "70");
            r.headers.push("From", self.from.clone());
            r.headers.push("To", self.to.clone());
            r.headers.push("Call-ID", self.call_id.clone());
            r.headers.push("CSeq", format!("{} INVITE", self.cseq));
            r.headers.push(
                "Contact",
                format!("<sip:{}@{}>", user_of(&self.from), self.local),
            );
            if let Some((h, v)) = auth {
                r.headers.push(h, v);
            }
            r.headers.push("Content-Type", "application/sdp");
            r.body = format!(
                "v=0\r\no=probe 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
                 m=audio {rtp_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n\
                 a=sendrecv\r\n",
                ip = self.local.ip()
            )
            .into_bytes();
            self.invite = r.clone();
            self.send(r);
        }

        /// ACK: for a 2xx a new transaction to the target, else the
        /// INVITE's own Via.
        fn ack(&self, resp: &Response) {
            let ok = resp.is_success();
            let mut r = Request::new(
                Method::Ack,
                if ok {
                    self.target.clone()
                } else {
                    self.uri.clone()
                },
            );
            let via = if ok {
                self.via()
            } else {
                self.invite
                    .headers
                    .get("Via")
                    .unwrap_or_default()
                    .to_string()
            };
            r.headers.push("Via", via);
            r.headers.push("Max-Forwards", "70");
            r.headers.push("From", self.from.clone());
            r.headers
                .push("To", resp.headers.get("To").unwrap_or(&self.to).to_string());
            r.headers.push("Call-ID", self.call_id.clone());
            r.headers.push("CSeq", format!("{} ACK", self.cseq));
            self.send(r);
        }

        fn bye(&mut self) {
            self.cseq += 1;
            let mut r = Request::new(Method::Bye, self.target.clone());
            r.headers.push("Via", self.via());
            r.headers.push("Max-Forwards", "70");
            r.headers.push("From", self.from.clone());
            r.headers.push("To", self.to.clone());
            r.headers.push("Call-ID", self.call_id.clone());
            r.headers.push("CSeq", format!("{} BYE", self.cseq));
            self.send(r);
        }
    }

    fn user_of(name_addr: &str) -> &str {
        name_addr
            .split_once("sip:")
            .map(|(_, r)| r.split(['@', '>', ';']).next().unwrap_or(""))
            .unwrap_or("")
    }

    /// `<sip:x@y>;params` or `sip:x@y` -> `sip:x@y`.
    fn uri_of(v: &str) -> String {
        match (v.find('<'), v.find('>')) {
            (Some(a), Some(b)) if a < b => v[a + 1..b].to_string(),
            _ => v.split(';').next().unwrap_or(v).trim().to_string(),
        }
    }

    fn rtp_packet(seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80);
        p.push(PT_PCMA | if marker { 0x80 } else { 0 });
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    pub(super) fn run(a: &Args) -> Result<u8, String> {
        let t0 = now();
        let deadline = t0 + a.timeout;
        let server: SocketAddr = a
            .server
            .parse()
            .map_err(|e| format!("--server {}: {e}", a.server))?;
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("SIP socket: {e}"))?;
        let rtp = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("RTP socket: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .map_err(|e| e.to_string())?;
        rtp.set_nonblocking(true).map_err(|e| e.to_string())?;
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        let rtp_port = rtp.local_addr().map_err(|e| e.to_string())?.port();
        let host = server.to_string();
        let mut d = Dialog {
            sock,
            server,
            local,
            call_id: format!("{}@probe", control::sip::new_call_id()),
            from: format!("<sip:{}@{host}>;tag={}", a.user, control::sip::new_tag()),
            to: format!("<sip:{}@{host}>", a.dial),
            uri: format!("sip:{}@{host}", a.dial),
            target: format!("sip:{}@{host}", a.dial),
            cseq: 0,
            invite: Request::new(Method::Invite, ""),
        };
        d.invite(rtp_port, None);
        event("invite_tx", json!({"dial": a.dial, "user": a.user}), t0);
        let up = chirp(CHIRP_SAMPLES, 300.0, 3400.0);
        let mut det = Detector::new(chirp(CHIRP_SAMPLES, 3400.0, 300.0));
        let mut lin = super::phone::LinDetector::new(&chirp(CHIRP_SAMPLES, 3400.0, 300.0));
        let mut authed = false;
        let mut connected_at: Option<Instant> = None;
        let mut media: Option<SocketAddr> = None;
        let mut final_code: Option<u16> = None;
        let mut bye_sent: Option<Instant> = None;
        let mut bye_tries = 0;
        let mut bye_ok = false;
        let mut bye_rx: Option<Value> = None;
        let mut rx_reported = false;
        let mut rx_ok = !a.audio;
        let (mut seq, mut ts, ssrc) = (0x1234u16, 0x0100_0000u32, 0x7A4D_0001u32);
        let mut sent_packets = 0usize;
        let mut next_rtp: Option<Instant> = None;
        let mut rtp_rx = 0u64;
        let mut buf = vec![0u8; 65_535];
        use serde_json::Value;
        'main: loop {
            let t = now();
            if t >= deadline {
                event("timeout", json!({"after_s": a.timeout.as_secs()}), t0);
                return Ok(2);
            }
            // SIP in.
            while let Ok((n, _)) = d.sock.recv_from(&mut buf) {
                let Ok(m) = Message::parse(&buf[..n]) else {
                    continue;
                };
                match m {
                    Message::Response(r) => {
                        let Some(cs) = r.cseq() else { continue };
                        if cs.method == Method::Bye {
                            if r.code >= 200 && !bye_ok {
                                bye_ok = true;
                                event("bye_ok", json!({"code": r.code}), t0);
                            }
                            continue;
                        }
                        if cs.method != Method::Invite || cs.seq != d.cseq {
                            continue;
                        }
                        if r.code < 200 {
                            event("provisional", json!({"code": r.code}), t0);
                            continue;
                        }
                        d.ack(&r);
                        if (r.code == 401 || r.code == 407) && !authed {
                            let Some((h, ch)) = Challenge::from_response(&r, None) else {
                                return Err(format!("{} without a usable challenge", r.code));
                            };
                            let v =
                                ch.answer(&a.user, &a.password, "INVITE", &d.uri, 1, &new_cnonce());
                            authed = true;
                            event("auth", json!({"code": r.code}), t0);
                            d.invite(rtp_port, Some((h, v)));
                            continue;
                        }
                        if final_code.is_some() {
                            continue; // a retransmission, ACKed again above
                        }
                        final_code = Some(r.code);
                        if !r.is_success() {
                            event(
                                "rejected",
                                json!({"code": r.code, "reason": r.headers.get("Reason")}),
                                t0,
                            );
                            break 'main;
                        }
                        if let Some(to) = r.headers.get("To") {
                            d.to = to.to_string();
                        }
                        if let Some(c) = r.headers.get("Contact") {
                            d.target = uri_of(c);
                        }
                        // Re-send the ACK now that the target is known.
                        d.ack(&r);
                        media = std::str::from_utf8(&r.body)
                            .ok()
                            .and_then(|t| control::sdp::SessionDescription::parse(t).ok())
                            .and_then(|s| s.audio_addr());
                        connected_at = Some(t);
                        next_rtp = Some(t);
                        event(
                            "connected",
                            json!({"code": r.code, "media": media.map(|m| m.to_string())}),
                            t0,
                        );
                    }
                    Message::Request(req) => {
                        let mut resp = Response::for_request(&req, 200);
                        if req.method == Method::Bye {
                            bye_rx = Some(json!({"reason": req.headers.get("Reason")}));
                            event("bye_rx", json!({"reason": req.headers.get("Reason")}), t0);
                        } else if req.method == Method::Invite {
                            resp.headers.push("Content-Type", "application/sdp");
                            resp.body = d.invite.body.clone();
                        }
                        if !resp.headers.contains("Contact") {
                            resp.headers
                                .push("Contact", format!("<sip:{}@{}>", a.user, d.local));
                        }
                        d.send(resp);
                    }
                }
            }
            // RTP out: idle lead, the chirp, then idle, every 20 ms.
            if let (Some(m), Some(at)) = (media, next_rtp) {
                if a.audio && t >= at && bye_sent.is_none() && bye_rx.is_none() {
                    let k = sent_packets;
                    let payload: Vec<u8> =
                        if k >= LEAD_PACKETS && (k - LEAD_PACKETS) * 160 < up.len() {
                            let s = (k - LEAD_PACKETS) * 160;
                            up[s..(s + 160).min(up.len())].to_vec()
                        } else {
                            vec![0xD5; 160]
                        };
                    let _ = rtp.send_to(&rtp_packet(seq, ts, ssrc, k == 0, &payload), m);
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(160);
                    sent_packets += 1;
                    next_rtp = Some(at + Duration::from_millis(20));
                }
            }
            // RTP in (bounded: SIP must not starve behind a burst).
            let mut budget = 50;
            while budget > 0 {
                let Ok(n) = rtp.recv(&mut buf) else { break };
                budget -= 1;
                if let Ok(p) = dataplane::wire::rtp::Packet::new_checked(&buf[..n]) {
                    rtp_rx += 1;
                    if p.payload_type().get() == PT_PCMA {
                        det.push(p.payload());
                        let pcm: Vec<i16> = p
                            .payload()
                            .iter()
                            .map(|&o| dataplane::codec::g711::alaw_to_linear(o))
                            .collect();
                        lin.push(&pcm);
                    }
                }
            }
            let tx_done = sent_packets >= LEAD_PACKETS + up.len() / 160 + 10;
            if a.audio && !rx_reported && a.match_corr {
                let late = connected_at
                    .is_some_and(|c| t >= c + a.hangup_after.unwrap_or(Duration::from_secs(10)));
                if let Some((off, found, total)) = lin.pieces(late) {
                    let whole = lin.result().map_or(0.0, |r| r.1);
                    event(
                        "audio_rx",
                        json!({"offset": off, "pieces_found": found, "pieces": total,
                               "correlation": (whole * 1e4).round() / 1e4,
                               "pattern": "chirp 3400-300 Hz", "match": "corr"}),
                        t0,
                    );
                    rx_reported = true;
                    rx_ok = found * 10 >= total * 8;
                } else if late {
                    event(
                        "audio_rx",
                        json!({"ok": false, "started": lin.started(), "match": "corr"}),
                        t0,
                    );
                    rx_reported = true;
                }
            }
            if a.audio && !rx_reported {
                let complete = det
                    .start
                    .is_some_and(|s| det.rec.len() >= s + CHIRP_SAMPLES + 4000);
                let late = connected_at
                    .is_some_and(|c| t >= c + a.hangup_after.unwrap_or(Duration::from_secs(10)));
                if complete || (late && det.start.is_some()) {
                    let (found, total) = det.blocks_found(160);
                    let mut v = det.result().map_or_else(
                        || json!({"intact": false}),
                        |f| found_json(&f, CHIRP_SAMPLES),
                    );
                    v["blocks_found"] = found.into();
                    v["blocks"] = total.into();
                    v["pattern"] = "chirp 3400-300 Hz".into();
                    event("audio_rx", v, t0);
                    rx_reported = true;
                    rx_ok = total > 0 && found * 10 >= total * 9;
                }
            }
            // Our hangup: audio through (or the limit reached).
            if let (Some(c), None, None) = (connected_at, bye_sent, &bye_rx) {
                if let Some(h) = a.hangup_after {
                    let audio_over = !a.audio || (tx_done && rx_reported);
                    if (audio_over && !a.await_bye) || t >= c + h {
                        d.bye();
                        bye_sent = Some(t);
                        bye_tries = 1;
                        event("bye_tx", json!({}), t0);
                    }
                }
            }
            if let Some(b) = bye_sent {
                if !bye_ok && bye_tries < 5 && t >= b + Duration::from_millis(500 * bye_tries) {
                    d.bye();
                    bye_tries += 1;
                }
                if bye_ok {
                    break;
                }
            }
            if bye_rx.is_some() {
                // Answered above; a moment for retransmissions.
                std::thread::sleep(Duration::from_millis(200));
                while let Ok((n, _)) = d.sock.recv_from(&mut buf) {
                    if let Ok(Message::Request(req)) = Message::parse(&buf[..n]) {
                        d.send(Response::for_request(&req, 200));
                    }
                }
                break;
            }
        }
        if a.audio && !rx_reported {
            event(
                "audio_rx",
                json!({"intact": false, "error": "not received"}),
                t0,
            );
        }
        let cleared_ok = if a.await_bye {
            bye_rx.is_some() && bye_sent.is_none()
        } else {
            bye_ok
        };
        let ok = final_code.is_some_and(|c| c == 200) && rx_ok && cleared_ok;
        event(
            "done",
            json!({"ok": ok, "final": final_code, "rtp_rx": rtp_rx,
                   "rtp_tx": sent_packets, "cleared_by": if bye_rx.is_some() { "far" } else { "us" }}),
            t0,
        );
        Ok(if ok { 0 } else { 1 })
    }
}

/// `phone`: a telephone on an FXS-signalling (`fxsks=`) DAHDI channel, the
/// far side of a tandemd FXS port on a channel bank (see the module doc).
mod phone {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use dataplane::codec::g711;
    use dataplane::dsp::dtmf;
    use dataplane::dsp::fsk::{CallerIdDetector, FskStandard};
    use drivers::analog::dahdi::AnalogChannel;
    use drivers::analog::{abi, Command, PortKind};
    use serde_json::json;

    use super::{chirp, event, now, Args, CHIRP_SAMPLES};

    const BLOCK: usize = 160;
    /// Silence blocks before our chirp (the far end's path settles).
    const LEAD_BLOCKS: usize = 10;
    /// Samples of the pattern's head used to find it (20 ms).
    const HEAD: usize = 160;

    /// Finds a known linear pattern in received audio by normalised
    /// correlation (robust to G.711 re-encoding and to any alignment).
    pub(super) struct LinDetector {
        pattern: Vec<f32>,
        rec: Vec<f32>,
        scanned: usize,
        start: Option<usize>,
    }

    impl LinDetector {
        pub(super) fn new(alaw: &[u8]) -> Self {
            LinDetector {
                pattern: alaw
                    .iter()
                    .map(|&a| f32::from(g711::alaw_to_linear(a)))
                    .collect(),
                rec: Vec::new(),
                scanned: 0,
                start: None,
            }
        }

        fn corr(a: &[f32], b: &[f32]) -> f64 {
            let (mut xy, mut xx, mut yy) = (0f32, 0f32, 0f32);
            for (&x, &y) in a.iter().zip(b) {
                xy += x * y;
                xx += x * x;
                yy += y * y;
            }
            let (xy, xx, yy) = (f64::from(xy), f64::from(xx), f64::from(yy));
            if xx > 0.0 && yy > 0.0 {
                xy / (xx * yy).sqrt()
            } else {
                0.0
            }
        }

        pub(super) fn push(&mut self, pcm: &[i16]) {
            self.rec.extend(pcm.iter().map(|&s| f32::from(s)));
            if self.start.is_some() || self.rec.len() < HEAD {
                return;
            }
            // Only windows about as loud as the pattern's head are
            // correlated (silence and call-progress tones cost nothing):
            // the scan must keep up with real time in a slow guest.
            let head = &self.pattern[..HEAD];
            let want: f64 = head.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            let last = self.rec.len() - HEAD;
            let mut e: f64 = self.rec[self.scanned..self.scanned + HEAD]
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum();
            let mut lag = self.scanned;
            while lag <= last {
                if e > want / 4.0 && e < want * 4.0 {
                    let c = Self::corr(head, &self.rec[lag..lag + HEAD]);
                    if c > 0.9 {
                        // The peak is at most a few samples on.
                        let mut best = (c, lag);
                        for l in lag + 1..=(lag + 8).min(last) {
                            let c = Self::corr(head, &self.rec[l..l + HEAD]);
                            if c > best.0 {
                                best = (c, l);
                            }
                        }
                        self.start = Some(best.1);
                        return;
                    }
                }
                if lag == last {
                    break;
                }
                let (out, inn) = (self.rec[lag], self.rec[lag + HEAD]);
                e += f64::from(inn) * f64::from(inn) - f64::from(out) * f64::from(out);
                lag += 1;
            }
            self.scanned = last + 1;
        }

        pub(super) fn started(&self) -> bool {
            self.start.is_some()
        }

        /// (offset, correlation over the whole pattern) once it was all received.
        pub(super) fn result(&self) -> Option<(usize, f64)> {
            let s = self.start?;
            let got = self.rec.get(s..s + self.pattern.len())?;
            Some((s, Self::corr(&self.pattern, got)))
        }

        /// Gap-tolerant comparison, once the pattern's length (plus room
        /// for gaps) was received: how many of the pattern's 20 ms pieces
        /// occur, in order, with correlation >= 0.9, each searched from
        /// where the previous one ended up to 100 ms later (a path with RTP
        /// in it may insert silence between two packets).
        pub(super) fn pieces(&self, done: bool) -> Option<(usize, usize, usize)> {
            let s = self.start?;
            if !done && self.rec.len() < s + self.pattern.len() + 8000 {
                return None;
            }
            let total = self.pattern.len() / BLOCK;
            let (mut found, mut at) = (0, s);
            for k in 0..total {
                let piece = &self.pattern[k * BLOCK..(k + 1) * BLOCK];
                let mut best = (0.0, at);
                for lag in at.saturating_sub(16)..=at + 800 {
                    let Some(w) = self.rec.get(lag..lag + BLOCK) else {
                        break;
                    };
                    let c = Self::corr(piece, w);
                    if c > best.0 {
                        best = (c, lag);
                    }
                }
                if best.0 >= 0.9 {
                    found += 1;
                    at = best.1 + BLOCK;
                } else {
                    at += BLOCK;
                }
            }
            Some((s, found, total))
        }

        /// The correlation over what was received of the pattern so far.
        pub(super) fn partial(&self) -> Option<(usize, f64, usize)> {
            let s = self.start?;
            let got = self.rec.get(s..)?;
            let n = got.len().min(self.pattern.len());
            Some((s, Self::corr(&self.pattern[..n], &got[..n]), n))
        }
    }

    /// Goertzel: the share of the block's energy at `f` Hz (1.0 = a pure tone).
    fn share(pcm: &[i16], f: f64) -> f64 {
        let n = pcm.len() as f64;
        let coeff = 2.0 * (2.0 * std::f64::consts::PI * f / 8000.0).cos();
        let (mut s1, mut s2) = (0f64, 0f64);
        let mut e = 0f64;
        for &x in pcm {
            let x = f64::from(x);
            e += x * x;
            let s0 = x + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let m = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        if e < 1e3 * n {
            return 0.0; // below about -50 dBm0: silence
        }
        m / (e * n / 2.0)
    }

    /// A two-frequency tone (dial 350+440, busy 480+620) in this block.
    fn dual_tone(pcm: &[i16], f1: f64, f2: f64) -> bool {
        let (a, b) = (share(pcm, f1), share(pcm, f2));
        a > 0.2 && b > 0.2 && a + b > 0.7
    }

    pub(super) fn run(a: &Args) -> Result<u8, String> {
        let t0 = now();
        let deadline = t0 + a.timeout;
        let chan = u16::try_from(a.chan).map_err(|_| format!("--chan {}", a.chan))?;
        let mut ch = AnalogChannel::open_at(
            Path::new(drivers::dahdi::chan::CHANNEL_DEVICE),
            chan,
            PortKind::Fxo,
            BLOCK,
            8,
        )
        .map_err(|e| e.to_string())?;
        let alaw = ch.is_alaw();
        event(
            "start",
            json!({"chan": chan, "signalling": ch.port().signalling().conf_key(),
                   "law": if alaw { "alaw" } else { "ulaw" },
                   "flavour": if a.originate { "originate" } else { "answer" }}),
            t0,
        );
        ch.flush().map_err(|e| e.to_string())?;
        // Answer flavour: we send the falling chirp and expect the rising
        // one (the SIP UA's); originate (echo): our rising chirp comes back.
        let (tx, rx) = if a.originate {
            (
                chirp(CHIRP_SAMPLES, 300.0, 3400.0),
                chirp(CHIRP_SAMPLES, 300.0, 3400.0),
            )
        } else {
            (
                chirp(CHIRP_SAMPLES, 3400.0, 300.0),
                chirp(CHIRP_SAMPLES, 300.0, 3400.0),
            )
        };
        let tx: Vec<i16> = tx.iter().map(|&o| g711::alaw_to_linear(o)).collect();
        let mut det = LinDetector::new(&rx);
        let mut cid = CallerIdDetector::new(FskStandard::Bell202);
        let mut cid_got: Option<(Option<String>, Option<String>)> = None;
        let mut cid_new: Option<(Option<String>, Option<String>)> = None;
        let (mut begins, mut ends) = (0u32, 0u32);
        let mut off_hook_at: Option<Instant> = None;
        let mut dial_tone_blocks = 0u32;
        let mut dial_tone_at: Option<Instant> = None;
        let mut out: Vec<i16> = Vec::new(); // queued samples to send
        let mut out_pos = 0usize;
        let mut chirp_queued = false;
        let mut audio: Option<(usize, f64)> = None;
        let mut disconnect: Option<&str> = None;
        let mut busy_blocks = 0u32;
        let mut blocks_since_answer = 0usize;
        let mut law = [0u8; BLOCK];
        let mut pcm = [0i16; BLOCK];
        let hook =
            |ch: &mut AnalogChannel, cmd: Command| ch.command(&cmd).map_err(|e| e.to_string());
        // Write a little ahead so the kernel never runs dry.
        for _ in 0..2 {
            let _ = ch.write_block(&[if alaw { 0xD5 } else { 0xFF }; BLOCK]);
        }
        if a.originate {
            hook(&mut ch, Command::OffHook)?;
            off_hook_at = Some(now());
            event("offhook", json!({}), t0);
        }
        let mut timed_out = false;
        loop {
            let t = now();
            if t >= deadline {
                timed_out = true;
                event("timeout", json!({"after_s": a.timeout.as_secs()}), t0);
                break;
            }
            // Events: ring begin / ring end, far end's disconnect.
            while let Some((code, _)) = ch.poll_event().map_err(|e| e.to_string())? {
                match code {
                    abi::event::RINGBEGIN => {
                        begins += 1;
                        event("ring", json!({"n": begins}), t0);
                    }
                    abi::event::RINGOFFHOOK if off_hook_at.is_none() => {
                        ends += 1;
                        event("ring_end", json!({"n": ends}), t0);
                    }
                    abi::event::ONHOOK if off_hook_at.is_some() => {
                        disconnect = Some("onhook");
                        event("disconnect", json!({"how": "onhook"}), t0);
                    }
                    c => event("dahdi_event", json!({"code": c}), t0),
                }
            }
            if off_hook_at.is_none() && !a.originate && begins.max(ends) >= a.rings {
                hook(&mut ch, Command::OffHook)?;
                off_hook_at = Some(t);
                event("answer", json!({"rings": begins.max(ends)}), t0);
            }
            // Audio: every received block, one block back.
            let mut got_any = false;
            for _ in 0..8 {
                match ch.read_block(&mut law).map_err(|e| e.to_string())? {
                    Some(n) if n == BLOCK => {}
                    Some(_) => continue,
                    None => break,
                }
                got_any = true;
                if alaw {
                    g711::decode_alaw(&law, &mut pcm);
                } else {
                    g711::decode_ulaw(&law, &mut pcm);
                }
                if off_hook_at.is_none() {
                    cid.process(&pcm, |r| {
                        if let Ok(c) = r {
                            cid_new = Some((c.number.clone(), c.name.clone()));
                        }
                    });
                    if let Some((num, name)) = cid_new.take() {
                        event("cid", json!({"number": num, "name": name}), t0);
                        if a.expect_cid
                            .as_deref()
                            .is_some_and(|e| Some(e) != num.as_deref())
                        {
                            event("cid_mismatch", json!({"want": a.expect_cid}), t0);
                        } else if cid_got.is_none() {
                            cid_got = Some((num, name));
                        }
                    }
                } else {
                    blocks_since_answer += 1;
                    if a.originate && dial_tone_at.is_none() {
                        if dual_tone(&pcm, 350.0, 440.0) {
                            dial_tone_blocks += 1;
                        } else {
                            dial_tone_blocks = 0;
                        }
                        if dial_tone_blocks >= 15 {
                            dial_tone_at = Some(t);
                            event("dial_tone", json!({"hz": [350, 440], "ms": 300}), t0);
                            dtmf::generate_digits(&a.dial, -8.0, 100, 100, &mut out);
                            event("dialled", json!({"digits": a.dial}), t0);
                        }
                    }
                    let may_chirp = if a.originate {
                        dial_tone_at.is_some_and(|d| t >= d + Duration::from_millis(1500))
                    } else {
                        blocks_since_answer >= LEAD_BLOCKS
                    };
                    if a.audio && may_chirp && !chirp_queued && out_pos >= out.len() {
                        chirp_queued = true;
                        if a.originate {
                            // Only what arrives from now on (not our digits).
                            det = LinDetector::new(&rx);
                        }
                        out.extend_from_slice(&tx);
                        out.extend(std::iter::repeat_n(0i16, 4000));
                        event("audio_tx", json!({"samples": tx.len()}), t0);
                    }
                    if chirp_queued || !a.originate {
                        det.push(&pcm);
                    }
                    if dual_tone(&pcm, 480.0, 620.0) {
                        busy_blocks += 1;
                        if busy_blocks == 10 && disconnect.is_none() {
                            disconnect = Some("busy");
                            event("disconnect", json!({"how": "busy tone"}), t0);
                        }
                    }
                }
                let mut blk = [0i16; BLOCK];
                if out_pos < out.len() {
                    let n = (out.len() - out_pos).min(BLOCK);
                    blk[..n].copy_from_slice(&out[out_pos..out_pos + n]);
                    out_pos += n;
                }
                let mut o = [0u8; BLOCK];
                if alaw {
                    g711::encode_alaw(&blk, &mut o);
                } else {
                    g711::encode_ulaw(&blk, &mut o);
                }
                let _ = ch.write_block(&o).map_err(|e| e.to_string())?;
            }
            if audio.is_none() {
                let late = off_hook_at.is_some_and(|o| t >= o + Duration::from_secs(12));
                if let Some((off, found, total)) = det.pieces(late) {
                    let whole = det.result().map_or(0.0, |r| r.1);
                    let ok = found * 10 >= total * 8;
                    audio = Some((found, if ok { 1.0 } else { 0.0 }));
                    event(
                        "audio_rx",
                        json!({"offset": off, "pieces_found": found, "pieces": total,
                               "correlation": (whole * 1e4).round() / 1e4, "ok": ok}),
                        t0,
                    );
                }
            }
            let audio_done = !a.audio || audio.is_some();
            if a.originate && audio_done && dial_tone_at.is_some() {
                break; // we hang up
            }
            if !a.originate && disconnect.is_some() {
                break;
            }
            if !got_any {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if a.audio && audio.is_none() {
            // The far end may hang up right after its chirp: judge what came.
            if let Some((off, found, total)) = det.pieces(true) {
                let ok = found * 10 >= total * 8;
                audio = Some((found, if ok { 1.0 } else { 0.0 }));
                event(
                    "audio_rx",
                    json!({"offset": off, "pieces_found": found, "pieces": total, "ok": ok}),
                    t0,
                );
            }
        }
        if a.audio && audio.is_none() {
            let p = det.partial();
            event(
                "audio_rx",
                json!({"ok": false, "started": det.started(),
                       "partial": p.map(|(s, c, n)| json!({"offset": s, "correlation": c, "samples": n}))}),
                t0,
            );
        }
        if off_hook_at.is_some() {
            hook(&mut ch, Command::OnHook)?;
            event("onhook", json!({}), t0);
        }
        let cid_ok = a.expect_cid.is_none() || cid_got.is_some();
        let audio_ok = !a.audio || audio.is_some_and(|r| r.1 >= 0.9);
        let ok = if a.originate {
            dial_tone_at.is_some() && audio_ok
        } else {
            begins.max(ends) >= a.rings && cid_ok && audio_ok && disconnect.is_some()
        };
        event(
            "done",
            json!({"ok": ok, "rings": begins.max(ends), "ring_begins": begins,
                   "ring_ends": ends, "cid": cid_got.map(|c| json!({"number": c.0, "name": c.1})),
                   "disconnect": disconnect}),
            t0,
        );
        Ok(if ok {
            0
        } else if timed_out {
            2
        } else {
            1
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lin_detector_finds_a_reencoded_chirp() {
            let p = chirp(4000, 300.0, 3400.0);
            let mut d = LinDetector::new(&p);
            d.push(&[0i16; 777]);
            // Through μ-law: not the same octets, the same sound.
            let lin: Vec<i16> = p
                .iter()
                .map(|&a| g711::ulaw_to_linear(g711::linear_to_ulaw(g711::alaw_to_linear(a))))
                .collect();
            for c in lin.chunks(160) {
                d.push(c);
            }
            let (off, c) = d.result().unwrap();
            assert_eq!(off, 777);
            assert!(c > 0.99, "{c}");
            // 30 ms of silence inserted mid-way: the whole-run correlation
            // drops, the pieces are still found in order.
            let mut gap = lin[..2000].to_vec();
            gap.extend([0i16; 240]);
            gap.extend_from_slice(&lin[2000..]);
            let mut d = LinDetector::new(&p);
            d.push(&[0i16; 100]);
            d.push(&gap);
            d.push(&[0i16; 8000]);
            let (_, found, total) = d.pieces(true).unwrap();
            assert_eq!(total, 25);
            assert!(found >= 23, "{found}");
            assert!(d.result().unwrap().1 < 0.9);
            let mut d = LinDetector::new(&p);
            d.push(&vec![0i16; 8000]);
            assert!(!d.started());
        }

        #[test]
        fn goertzel_tells_dial_tone_from_busy() {
            let tone = |f1: f64, f2: f64| -> Vec<i16> {
                (0..160)
                    .map(|i| {
                        let t = i as f64 / 8000.0;
                        (4000.0
                            * ((2.0 * std::f64::consts::PI * f1 * t).sin()
                                + (2.0 * std::f64::consts::PI * f2 * t).sin()))
                            as i16
                    })
                    .collect()
            };
            assert!(dual_tone(&tone(350.0, 440.0), 350.0, 440.0));
            assert!(!dual_tone(&tone(480.0, 620.0), 350.0, 440.0));
            assert!(dual_tone(&tone(480.0, 620.0), 480.0, 620.0));
            assert!(!dual_tone(&[0i16; 160], 480.0, 620.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_aligns_and_counts_damage() {
        let p = chirp(4000, 300.0, 3400.0);
        let mut d = Detector::new(p.clone());
        d.push(&[0xD5; 1234]);
        assert!(!d.started());
        for c in p.chunks(160) {
            d.push(c);
        }
        let f = d.result().unwrap();
        assert_eq!((f.offset, f.mismatches), (1234, 0));
        assert!((f.correlation - 1.0).abs() < 1e-9);
        let mut q = vec![0x55; 77];
        q.extend_from_slice(&p);
        q[77 + 1000] ^= 0x80;
        let mut d = Detector::new(p);
        d.push(&q[..50]);
        d.push(&q[50..]);
        let f = d.result().unwrap();
        assert_eq!(
            (f.offset, f.mismatches, f.first_mismatch),
            (77, 1, Some(1000))
        );
        assert!(f.correlation < 0.9999);
    }

    #[test]
    fn chirps_do_not_start_like_idle_and_differ() {
        let up = chirp(CHIRP_SAMPLES, 300.0, 3400.0);
        let down = chirp(CHIRP_SAMPLES, 3400.0, 300.0);
        assert!(up[..SYNC].iter().all(|&b| b != 0xD5 && b != 0x55));
        assert_ne!(up[..SYNC], down[..SYNC]);
        assert!(parse_chans("1-15,17-31").unwrap().len() == 30);
        assert!(parse_chans("3-1").is_err());
    }
}
