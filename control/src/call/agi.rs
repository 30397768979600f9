//! The `AGI()` application inside calls: FastAGI sessions driven by the engine.
//!
//! When a call's plan reaches `AGI(agi://...)` the engine creates an [`AgiSession`] (sans-IO,
//! [`crate::agi`]) with the channel's `agi_*` environment and asks the edge to connect
//! ([`AgiIo::Connect`] out of [`Engine::poll_agi`]); the edge writes what the session sends
//! ([`AgiIo::Send`]) and feeds back what the server says or why the connection ended
//! ([`Engine::handle_agi_input`]). The plan waits meanwhile (the hook at the top of
//! `run_dialplan`), and goes on when the script ends, with `${AGISTATUS}` set.
//!
//! Quick commands act on the call at once through [`AgiChannel`]: variables and the plan
//! position live in the call's [`Execution`], ANSWER answers the SIP A leg. Commands that take
//! time become an operation on the dataplane, as the plan's own media applications do:
//! - STREAM FILE, SAY DIGITS (`digits/N` sounds), EXEC Playback: play the sounds to the
//!   caller, digit detection on when escape digits are given;
//! - GET DATA: play the prompt (skipped if the sound is missing), collect digits until
//!   `max`, `#` or the timeout (Asterisk's 10 s for the first digit and 5 s between digits
//!   when no timeout is given);
//! - WAIT FOR DIGIT, EXEC Wait: timers on the call's `wake_at`;
//! - EXEC Dial: a B leg as the plan's Dial makes; the command returns when the Dial ends
//!   unanswered (`${DIALSTATUS}` set), or when the bridged call ends.
//!
//! A caller hangup sends `HANGUP` to the script; the session stays open, answering later
//! commands as on a dead channel, until the server closes it (or the edge's idle timeout).
//! An unreachable server fails the application: a log line, the failure counted in
//! [`AgiStats`], `${AGISTATUS}` FAILURE, and the plan goes on.
//!
//! Also here: joining a callee's answer to a caller the plan had already answered (a
//! `Dial` after ANSWER, Playback or an AGI script): no second 200 to the caller, the
//! dataplane is told each leg's codec.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{leg_codec, CallId, CallState, Engine, HangupWhy, Media};
use crate::agi::{
    AgiChannel, AgiEnv, AgiIo, AgiSession, AgiStatus, AgiTicket, AgiUrl, ChannelStatus,
    MediaOutcome, MediaRequest, PipeEvent,
};
use crate::dialplan::{DialStatus, Execution, Prompt};
use crate::sdp::{Negotiated, SessionDescription};
use crate::sip::Response;

/// GET DATA without a timeout: Asterisk's default response timeout (first digit).
const GET_DATA_FIRST: Duration = Duration::from_secs(10);
/// GET DATA without a timeout: Asterisk's default digit timeout (between digits).
const GET_DATA_NEXT: Duration = Duration::from_secs(5);
/// GET DATA without `max`: Asterisk's limit.
const GET_DATA_MAX: usize = 1024;

/// AGI counters (for logs and management).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgiStats {
    /// `AGI()` applications started.
    pub started: u64,
    /// Scripts that ran and ended (AGISTATUS=SUCCESS).
    pub succeeded: u64,
    /// Scripts that could not run: unreachable server, broken or silent connection.
    pub failed: u64,
    /// Scripts whose channel hung up while they ran.
    pub hung_up: u64,
    /// Commands served.
    pub commands: u64,
}

/// Every AGI session of the engine.
#[derive(Debug, Default)]
pub(super) struct AgiState {
    runs: HashMap<AgiTicket, AgiRun>,
    by_call: HashMap<CallId, AgiTicket>,
    out: VecDeque<AgiIo>,
    next: u64,
    stats: AgiStats,
}

#[derive(Debug)]
struct AgiRun {
    cid: CallId,
    url: AgiUrl,
    session: AgiSession,
    op: Option<Op>,
    /// The call is gone: commands are answered as on a dead channel.
    dead: bool,
}

/// A command that takes time, in progress.
#[derive(Debug)]
enum Op {
    /// STREAM FILE / SAY DIGITS / EXEC Playback.
    Play {
        prompts: VecDeque<String>,
        escape: String,
        /// Samples played of the finished prompts, and of the one playing.
        played: u64,
        current: u64,
        /// EXEC Playback: the reply is the application's result.
        exec: bool,
    },
    GetData {
        digits: String,
        max: usize,
        first: Duration,
        next: Duration,
        playing: bool,
        deadline: Option<Instant>,
    },
    WaitDigit {
        deadline: Option<Instant>,
    },
    /// EXEC Wait.
    Wait {
        deadline: Instant,
    },
    /// EXEC Dial: a B leg is up or being set up.
    Dial,
}

impl Op {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Op::GetData { deadline, .. } | Op::WaitDigit { deadline } => *deadline,
            Op::Wait { deadline } => Some(*deadline),
            Op::Play { .. } | Op::Dial => None,
        }
    }
}

/// Call changes a command asked for, done once the session is not borrowed.
#[derive(Debug)]
enum Deferred {
    Answer,
    Hangup,
    Ringing,
    Progress,
    Note(String),
}

/// The live channel as the session sees it.
struct LiveChan<'a> {
    exec: &'a mut Execution,
    up: bool,
    can_answer: bool,
    deferred: Vec<Deferred>,
}

impl AgiChannel for LiveChan<'_> {
    fn answer(&mut self) -> bool {
        if !self.can_answer {
            return false;
        }
        if !self.up {
            self.up = true;
            self.exec.agi_answered();
            self.deferred.push(Deferred::Answer);
        }
        true
    }
    fn hangup(&mut self) {
        self.deferred.push(Deferred::Hangup);
    }
    fn variable(&self, name: &str) -> Option<String> {
        self.exec.agi_variable(name)
    }
    fn set_variable(&mut self, name: &str, value: &str) {
        self.exec.agi_set_variable(name, value);
    }
    fn set_callerid(&mut self, callerid: &str) {
        self.exec.agi_set_callerid(callerid);
    }
    fn status(&self) -> ChannelStatus {
        if self.up {
            ChannelStatus::Up
        } else {
            ChannelStatus::Ring
        }
    }
    fn exec(&mut self, app: &str, args: &str) -> i32 {
        match app.to_ascii_lowercase().as_str() {
            "answer" => {
                if self.answer() {
                    0
                } else {
                    -1
                }
            }
            "hangup" => {
                self.hangup();
                -1
            }
            "ringing" => {
                self.deferred.push(Deferred::Ringing);
                0
            }
            "progress" => {
                self.deferred.push(Deferred::Progress);
                0
            }
            _ => self.exec.agi_exec_internal(app, args).unwrap_or(-2),
        }
    }
    fn exec_takes_time(&self, app: &str) -> bool {
        ["dial", "playback", "wait"].contains(&app.to_ascii_lowercase().as_str())
    }
    fn verbose(&mut self, message: &str, _level: u8) {
        self.deferred
            .push(Deferred::Note(format!("AGI verbose: {message}")));
    }
    fn set_context(&mut self, context: &str) {
        self.exec.agi_set_context(context);
    }
    fn set_extension(&mut self, extension: &str) {
        self.exec.agi_set_extension(extension);
    }
    fn set_priority(&mut self, priority: &str) -> bool {
        self.exec.agi_set_priority(priority)
    }
}

/// The channel of a call that is gone.
struct DeadChan;

impl AgiChannel for DeadChan {
    fn answer(&mut self) -> bool {
        false
    }
    fn hangup(&mut self) {}
    fn variable(&self, _: &str) -> Option<String> {
        None
    }
    fn set_variable(&mut self, _: &str, _: &str) {}
    fn set_callerid(&mut self, _: &str) {}
    fn status(&self) -> ChannelStatus {
        ChannelStatus::Down
    }
    fn exec(&mut self, _: &str, _: &str) -> i32 {
        -1
    }
    fn verbose(&mut self, _: &str, _: u8) {}
    fn set_context(&mut self, _: &str) {}
    fn set_extension(&mut self, _: &str) {}
    fn set_priority(&mut self, _: &str) -> bool {
        false
    }
}

impl<M: Media> Engine<M> {
    /// The next socket request for the edge's AGI connections.
    pub fn poll_agi(&mut self) -> Option<AgiIo> {
        self.agi.out.pop_front()
    }

    /// AGI counters.
    pub fn agi_stats(&self) -> AgiStats {
        self.agi.stats
    }

    /// What the edge learnt about an AGI connection.
    pub fn handle_agi_input(&mut self, ticket: AgiTicket, input: PipeEvent, now: Instant) {
        match input {
            PipeEvent::Data(bytes) => {
                self.agi_feed(ticket, now, |s, chan| s.handle_bytes(&bytes, chan));
            }
            PipeEvent::Closed(err) => self.agi_closed(ticket, err, now),
        }
    }

    /// The plan reached `AGI()`: start the session (hook from `run_dialplan`).
    pub(super) fn agi_start(&mut self, cid: CallId, url: AgiUrl, args: Vec<String>, now: Instant) {
        let _ = now;
        let Some(call) = self.calls.get(&cid) else {
            return;
        };
        self.agi.next += 1;
        let ticket = AgiTicket(self.agi.next);
        let exec = &call.exec;
        let env = AgiEnv {
            channel: call.bill.channel.clone(),
            language: "en".into(),
            channel_type: "SIP".into(),
            uniqueid: call.bill.uniqueid.clone(),
            version: concat!("tandem-", env!("CARGO_PKG_VERSION")).into(),
            callerid: exec.caller_num().to_string(),
            calleridname: exec.caller_name().to_string(),
            dnid: call.exten.clone(),
            context: exec.context().to_string(),
            extension: exec.exten().to_string(),
            // `next_action` has moved past the AGI priority.
            priority: exec.priority().saturating_sub(1),
            threadid: ticket.0,
            args,
            ..AgiEnv::default()
        };
        let session = AgiSession::new(&url, &env);
        self.note(format!("call {cid}: AGI {} ({ticket})", url.request));
        self.agi.stats.started += 1;
        self.agi.out.push_back(AgiIo::Connect {
            ticket,
            url: url.clone(),
        });
        self.agi.by_call.insert(cid, ticket);
        self.agi.runs.insert(
            ticket,
            AgiRun {
                cid,
                url,
                session,
                op: None,
                dead: false,
            },
        );
        self.agi_flush(ticket);
    }

    /// Hook at the top of `run_dialplan`: while a script drives the call the plan waits.
    /// Timers and Dial outcomes of the running command arrive here.
    pub(super) fn agi_holds(&mut self, cid: CallId, now: Instant) -> bool {
        let Some(&ticket) = self.agi.by_call.get(&cid) else {
            return false;
        };
        let state = self.calls.get(&cid).map(|c| c.state);
        let Some(run) = self.agi.runs.get_mut(&ticket) else {
            return true;
        };
        let outcome = match &run.op {
            Some(Op::Dial) if !matches!(state, Some(CallState::Dialing | CallState::Bridged)) => {
                Some(MediaOutcome::Exec(0))
            }
            Some(op) => match op.deadline() {
                Some(d) if d <= now => Some(match op {
                    Op::GetData { digits, .. } => MediaOutcome::Digits {
                        digits: digits.clone(),
                        timed_out: true,
                    },
                    Op::Wait { .. } => MediaOutcome::Exec(0),
                    _ => MediaOutcome::Digit {
                        digit: None,
                        endpos: 0,
                    },
                }),
                Some(d) => {
                    if let Some(c) = self.calls.get_mut(&cid) {
                        c.wake_at = Some(d);
                    }
                    None
                }
                None => None,
            },
            None => None,
        };
        if let Some(o) = outcome {
            self.agi_complete(ticket, o, now);
        }
        true
    }

    /// Hook in `handle_media_events`: the caller's digits and prompt ends go to the running
    /// command while a script drives the call. True if the event was taken.
    pub(super) fn agi_media_event(
        &mut self,
        cid: CallId,
        ev: &dataplane::MediaEvent,
        now: Instant,
    ) -> bool {
        let Some(&ticket) = self.agi.by_call.get(&cid) else {
            return false;
        };
        match *ev {
            dataplane::MediaEvent::Digit {
                side: dataplane::Side::A,
                digit,
                ..
            } => self.agi_digit(ticket, cid, digit, now),
            dataplane::MediaEvent::PlaybackDone {
                side: dataplane::Side::A,
                completed: true,
                ..
            } => self.agi_prompt_done(ticket, cid, now),
            _ => {}
        }
        true
    }

    /// Hook at the top of `hangup`: the script hears `HANGUP`; `${AGISTATUS}` is HANGUP for
    /// the `h` extension.
    pub(super) fn agi_hangup(&mut self, cid: CallId) {
        let Some(ticket) = self.agi.by_call.remove(&cid) else {
            return;
        };
        if let Some(run) = self.agi.runs.get_mut(&ticket) {
            run.op = None;
            run.dead = true;
            run.session.handle_hangup();
            self.agi.stats.hung_up += 1;
        }
        if let Some(call) = self.calls.get_mut(&cid) {
            call.exec.agi_done(&AgiStatus::Hangup);
        }
        self.note(format!(
            "call {cid}: caller gone during AGI ({ticket}), HANGUP sent"
        ));
        self.agi_flush(ticket);
    }

    /// The callee answered a Dial of a caller the plan already answered: join them without
    /// a second final response. Hook from `on_b_answer` (after the ACK); false when the
    /// caller was not answered (the usual path goes on).
    pub(super) fn join_answered_caller(
        &mut self,
        cid: CallId,
        resp: &Response,
        now: Instant,
    ) -> bool {
        let Some(call) = self.calls.get_mut(&cid) else {
            return false;
        };
        if !call.a.answered || call.state == CallState::Ending {
            return false;
        }
        let answer = std::str::from_utf8(&resp.body)
            .ok()
            .and_then(|s| SessionDescription::parse(s).ok());
        let ours = call
            .a
            .local_sdp
            .as_deref()
            .and_then(|s| SessionDescription::parse(s).ok());
        let legs = match (&answer, &ours, &call.caller_offer, call.media) {
            (Some(ans), Some(ours), Some(offer), Some(m)) => {
                match (
                    Negotiated::from_answer(ours, offer),
                    Negotiated::from_answer(ans, ans),
                ) {
                    (Ok(a), Ok(b)) => Some((a, b, m, ans.audio_addr())),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((a, b, m, b_addr)) = legs else {
            self.note(format!(
                "call {cid}: callee answered without usable SDP, hanging up"
            ));
            self.hangup(cid, HangupWhy::Internal(488), now);
            return true;
        };
        if let Some(addr) = b_addr {
            call.b_remote_media = Some(addr);
            let _ = self.media.set_remote(m.id, dataplane::Side::B, addr);
        }
        if a.codec != b.codec || a.pt != b.pt || a.dtmf_pt != b.dtmf_pt {
            if let (Some(ca), Some(cb)) = (leg_codec(&a), leg_codec(&b)) {
                let r = self
                    .media
                    .set_codec(m.id, dataplane::Side::A, ca)
                    .and_then(|_| self.media.set_codec(m.id, dataplane::Side::B, cb));
                match r {
                    Ok(_) if a.codec != b.codec => {
                        call.transcoding = Some((a.codec, b.codec));
                        self.log.push(format!(
                            "call {cid}: transcoding {} <-> {}",
                            a.codec.name(),
                            b.codec.name()
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => self
                        .log
                        .push(format!("call {cid}: cannot bridge codecs: {e}")),
                }
            }
        }
        call.state = CallState::Bridged;
        call.wake_at = None;
        call.exec.dial_result(DialStatus::Answer);
        let _ = self
            .media
            .detect_digits(m.id, dataplane::Side::A, dataplane::DigitMode::Off);
        let _ = self.media.arm_timeout(m.id);
        self.note(format!(
            "call {cid}: answered, media bridged to the answered caller"
        ));
        true
    }

    // ------------------------------------------------------------------ inner

    /// Runs `f` on the session with the call's channel, then does what the commands asked
    /// and starts the next command that takes time.
    fn agi_feed(
        &mut self,
        ticket: AgiTicket,
        now: Instant,
        f: impl FnOnce(&mut AgiSession, &mut dyn AgiChannel),
    ) {
        let Some(run) = self.agi.runs.get_mut(&ticket) else {
            return;
        };
        let cid = run.cid;
        let before = run.session.commands;
        let live = if run.dead {
            None
        } else {
            self.calls.get_mut(&cid)
        };
        let deferred = match live {
            Some(call) => {
                let mut chan = LiveChan {
                    up: call.a.answered,
                    can_answer: call.a.answered || !call.a.final_sent,
                    exec: &mut call.exec,
                    deferred: Vec::new(),
                };
                f(&mut run.session, &mut chan);
                chan.deferred
            }
            None => {
                f(&mut run.session, &mut DeadChan);
                Vec::new()
            }
        };
        self.agi.stats.commands += run.session.commands - before;
        self.agi_flush(ticket);
        for d in deferred {
            match d {
                Deferred::Answer => self.answer_a(cid, now),
                Deferred::Ringing => self.provisional_a(cid, 180, now),
                Deferred::Progress => self.provisional_a(cid, 183, now),
                Deferred::Hangup => self.hangup(cid, HangupWhy::Dialplan(None), now),
                Deferred::Note(n) => self.note(format!("call {cid}: {n}")),
            }
        }
        self.agi_service(ticket, now);
    }

    /// Queues what the session has to send.
    fn agi_flush(&mut self, ticket: AgiTicket) {
        if let Some(run) = self.agi.runs.get_mut(&ticket) {
            while let Some(bytes) = run.session.poll_transmit() {
                self.agi.out.push_back(AgiIo::Send { ticket, bytes });
            }
        }
    }

    /// Starts the command that takes time the session has asked for, if any.
    fn agi_service(&mut self, ticket: AgiTicket, now: Instant) {
        let Some(run) = self.agi.runs.get_mut(&ticket) else {
            return;
        };
        if run.op.is_some() || run.dead {
            return;
        }
        let Some(req) = run.session.poll_media() else {
            return;
        };
        let cid = run.cid;
        let Some(m) = self.calls.get(&cid).and_then(|c| c.media) else {
            self.agi_complete(ticket, MediaOutcome::Failed, now);
            return;
        };
        let detect = |me: &mut Self, on: bool| {
            let mode = if on {
                dataplane::DigitMode::Auto
            } else {
                dataplane::DigitMode::Off
            };
            let _ = me.media.detect_digits(m.id, dataplane::Side::A, mode);
        };
        let op = match req {
            MediaRequest::StreamFile {
                file,
                escape_digits,
            } => {
                detect(self, !escape_digits.is_empty());
                Op::Play {
                    prompts: VecDeque::from([file]),
                    escape: escape_digits,
                    played: 0,
                    current: 0,
                    exec: false,
                }
            }
            MediaRequest::SayDigits {
                digits,
                escape_digits,
            } => {
                detect(self, !escape_digits.is_empty());
                Op::Play {
                    prompts: digits.chars().map(|c| format!("digits/{c}")).collect(),
                    escape: escape_digits,
                    played: 0,
                    current: 0,
                    exec: false,
                }
            }
            MediaRequest::GetData {
                file,
                timeout_ms,
                max_digits,
            } => {
                detect(self, true);
                let (first, next) = match timeout_ms {
                    Some(t) if t > 0 => (Duration::from_millis(t), Duration::from_millis(t)),
                    _ => (GET_DATA_FIRST, GET_DATA_NEXT),
                };
                let max = match max_digits {
                    Some(n) if n > 0 => (n as usize).min(GET_DATA_MAX),
                    _ => GET_DATA_MAX,
                };
                let playing = !file.is_empty() && self.agi_play(cid, &file).is_some();
                Op::GetData {
                    digits: String::new(),
                    max,
                    first,
                    next,
                    playing,
                    deadline: (!playing).then(|| now + first),
                }
            }
            MediaRequest::WaitForDigit { timeout_ms } => {
                if timeout_ms == 0 {
                    let done = MediaOutcome::Digit {
                        digit: None,
                        endpos: 0,
                    };
                    return self.agi_complete(ticket, done, now);
                }
                detect(self, true);
                Op::WaitDigit {
                    deadline: u64::try_from(timeout_ms)
                        .ok()
                        .map(|t| now + Duration::from_millis(t)),
                }
            }
            MediaRequest::Exec { app, args } => match app.to_ascii_lowercase().as_str() {
                "dial" => {
                    let dial = self
                        .calls
                        .get_mut(&cid)
                        .and_then(|c| c.exec.agi_dial(&args));
                    let started = match dial {
                        Some((targets, timeout)) => self.start_dial(cid, &targets, timeout, now),
                        None => false,
                    };
                    if !started {
                        if let Some(c) = self.calls.get_mut(&cid) {
                            c.exec.dial_result(DialStatus::ChanUnavail);
                        }
                        return self.agi_complete(ticket, MediaOutcome::Exec(0), now);
                    }
                    Op::Dial
                }
                "wait" => {
                    let secs: f64 = args.trim().parse().unwrap_or(0.0);
                    let d = Duration::try_from_secs_f64(secs).unwrap_or_default();
                    Op::Wait { deadline: now + d }
                }
                _ => {
                    let files = args.split(',').next().unwrap_or_default();
                    Op::Play {
                        prompts: files.split('&').map(|f| f.trim().to_string()).collect(),
                        escape: String::new(),
                        played: 0,
                        current: 0,
                        exec: true,
                    }
                }
            },
        };
        let deadline = op.deadline();
        if let Some(run) = self.agi.runs.get_mut(&ticket) {
            run.op = Some(op);
        }
        if let Some(d) = deadline {
            if let Some(c) = self.calls.get_mut(&cid) {
                c.wake_at = Some(d);
            }
        }
        if matches!(
            self.agi.runs.get(&ticket).and_then(|r| r.op.as_ref()),
            Some(Op::Play { .. })
        ) {
            self.agi_next_prompt(ticket, cid, now);
        }
    }

    /// Plays `file` to the caller; its length in samples, or `None` if it cannot be played.
    fn agi_play(&mut self, cid: CallId, file: &str) -> Option<u64> {
        let key = file.rsplit('/').next().unwrap_or(file);
        let len = self.cfg.sounds.get(key).map(|s| s.len() as u64);
        if self.start_prompt(cid, &Prompt::File(file.to_string())) {
            len
        } else {
            None
        }
    }

    /// Starts the next prompt of a `Play`, or finishes it.
    fn agi_next_prompt(&mut self, ticket: AgiTicket, cid: CallId, now: Instant) {
        let next = match self.agi.runs.get_mut(&ticket).and_then(|r| r.op.as_mut()) {
            Some(Op::Play {
                prompts,
                played,
                current,
                ..
            }) => {
                *played += std::mem::take(current);
                prompts.pop_front()
            }
            _ => return,
        };
        let Some(file) = next else {
            let (endpos, exec) = match self.agi.runs.get(&ticket).and_then(|r| r.op.as_ref()) {
                Some(Op::Play { played, exec, .. }) => (*played, *exec),
                _ => (0, false),
            };
            let done = if exec {
                MediaOutcome::Exec(0)
            } else {
                MediaOutcome::Digit {
                    digit: None,
                    endpos,
                }
            };
            return self.agi_complete(ticket, done, now);
        };
        match self.agi_play(cid, &file) {
            Some(len) => {
                if let Some(Op::Play { current, .. }) =
                    self.agi.runs.get_mut(&ticket).and_then(|r| r.op.as_mut())
                {
                    *current = len;
                }
            }
            None => {
                let exec = matches!(
                    self.agi.runs.get(&ticket).and_then(|r| r.op.as_ref()),
                    Some(Op::Play { exec: true, .. })
                );
                let failed = if exec {
                    MediaOutcome::Exec(-1)
                } else {
                    MediaOutcome::Failed
                };
                self.agi_complete(ticket, failed, now);
            }
        }
    }

    fn agi_prompt_done(&mut self, ticket: AgiTicket, cid: CallId, now: Instant) {
        let Some(run) = self.agi.runs.get_mut(&ticket) else {
            return;
        };
        match &mut run.op {
            Some(Op::Play { .. }) => self.agi_next_prompt(ticket, cid, now),
            Some(Op::GetData {
                playing,
                first,
                deadline,
                ..
            }) if *playing => {
                *playing = false;
                let d = now + *first;
                *deadline = Some(d);
                if let Some(c) = self.calls.get_mut(&cid) {
                    c.wake_at = Some(d);
                }
            }
            _ => {}
        }
    }

    fn agi_digit(&mut self, ticket: AgiTicket, cid: CallId, digit: char, now: Instant) {
        let Some(run) = self.agi.runs.get_mut(&ticket) else {
            return;
        };
        let m = self.calls.get(&cid).and_then(|c| c.media);
        let mut stop = false;
        let outcome = match &mut run.op {
            Some(Op::Play {
                escape,
                played,
                exec: false,
                ..
            }) if escape.contains(digit) => {
                stop = true;
                Some(MediaOutcome::Digit {
                    digit: Some(digit),
                    endpos: *played,
                })
            }
            Some(Op::GetData {
                digits,
                max,
                next,
                playing,
                deadline,
                ..
            }) => {
                stop = std::mem::take(playing);
                if digit == '#' {
                    Some(MediaOutcome::Digits {
                        digits: std::mem::take(digits),
                        timed_out: false,
                    })
                } else {
                    digits.push(digit);
                    if digits.len() >= *max {
                        Some(MediaOutcome::Digits {
                            digits: std::mem::take(digits),
                            timed_out: false,
                        })
                    } else {
                        let d = now + *next;
                        *deadline = Some(d);
                        if let Some(c) = self.calls.get_mut(&cid) {
                            c.wake_at = Some(d);
                        }
                        None
                    }
                }
            }
            Some(Op::WaitDigit { .. }) => Some(MediaOutcome::Digit {
                digit: Some(digit),
                endpos: 0,
            }),
            _ => None,
        };
        if stop {
            if let Some(m) = m {
                let _ = self.media.stop_play(m.id, dataplane::Side::A);
            }
        }
        if let Some(o) = outcome {
            self.agi_complete(ticket, o, now);
        }
    }

    /// The running command finished: media back to rest, the reply to the script, and on
    /// with its next commands.
    fn agi_complete(&mut self, ticket: AgiTicket, outcome: MediaOutcome, now: Instant) {
        let Some(run) = self.agi.runs.get_mut(&ticket) else {
            return;
        };
        let cid = run.cid;
        if run.op.take().is_some() {
            if let Some(call) = self.calls.get_mut(&cid) {
                if call.state == CallState::Routing {
                    call.wake_at = None;
                }
                if let Some(m) = call.media {
                    let _ = self.media.detect_digits(
                        m.id,
                        dataplane::Side::A,
                        dataplane::DigitMode::Off,
                    );
                }
            }
        }
        self.agi_feed(ticket, now, |s, chan| s.complete_media(outcome, chan));
    }

    /// The connection ended: the plan goes on with `${AGISTATUS}`.
    fn agi_closed(&mut self, ticket: AgiTicket, err: Option<crate::agi::AgiError>, now: Instant) {
        self.agi.out.push_back(AgiIo::Close { ticket });
        let Some(run) = self.agi.runs.remove(&ticket) else {
            return;
        };
        let cid = run.cid;
        if run.dead || self.agi.by_call.get(&cid) != Some(&ticket) {
            return;
        }
        self.agi.by_call.remove(&cid);
        let status = match err {
            Some(e) => {
                self.agi.stats.failed += 1;
                self.note(format!(
                    "call {cid}: AGI {} failed: {e}; AGISTATUS=FAILURE, dialplan goes on",
                    run.url.request
                ));
                AgiStatus::Failure(e)
            }
            None => {
                self.agi.stats.succeeded += 1;
                self.note(format!(
                    "call {cid}: AGI {} ended after {} commands",
                    run.url.request, run.session.commands
                ));
                AgiStatus::Success
            }
        };
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        if run.op.is_some() {
            if let Some(m) = call.media {
                let _ = self.media.stop_play(m.id, dataplane::Side::A);
                let _ =
                    self.media
                        .detect_digits(m.id, dataplane::Side::A, dataplane::DigitMode::Off);
            }
            if call.state == CallState::Routing {
                call.wake_at = None;
            }
        }
        call.exec.agi_done(&status);
        // A script that left during its EXEC Dial: the Dial goes on as the plan's own would.
        if !matches!(call.state, CallState::Dialing | CallState::Bridged) {
            self.run_dialplan(cid, now);
        }
    }
}
