//! The media applications of the dialplan: Playback, Background, Read and WaitExten.
//!
//! They need the channel's inputs, so they run as a small state machine inside
//! [`Execution`]: the call layer performs the [`Action`]s they return (answer, play a prompt,
//! turn digit detection on, stop a prompt) and feeds back the caller's digits
//! ([`Execution::digit`]) and the end of each prompt ([`Execution::playback_done`]). Time is
//! virtual: every input carries `now`, and an idle application says until when it waits.
//!
//! Behaviour follows Asterisk:
//! - `Playback(file1&file2[,noanswer|skip])` answers first (unless `noanswer`; `skip` does
//!   nothing on an unanswered channel), plays each file, and sets `${PLAYBACKSTATUS}` to
//!   SUCCESS or FAILED (stopping at the first file that cannot be played). A `tone:NAME` or
//!   `tone:NAME/SECONDS` file plays a call-progress tone of the configured zone (5 s default).
//! - `Background(files[,options[,lang[,context]]])` answers (unless `n`; `s` skips on an
//!   unanswered channel) and plays the files while listening for digits. The first digit
//!   stops the prompt and starts collecting an extension in `context` (default the current
//!   one): an exact match that cannot grow goes to it at once; otherwise each further digit
//!   waits `${TIMEOUT(digit)}` (5 s); `#` ends the entry; no possible match goes to the `i`
//!   extension (with `${INVALID_EXTEN}`), or hangs up without one. If the prompts end with no
//!   digit, the plan goes on and detection stays on, so a following WaitExten sees digits
//!   typed meanwhile.
//! - `WaitExten([seconds])` collects an extension the same way, waiting `seconds` (default
//!   `${TIMEOUT(response)}`, 10 s) for the first digit; with none it goes to `t`, or hangs up.
//! - `Read(var[,files[,maxdigits[,options[,attempts[,timeout]]]]])` answers (unless `n`;
//!   `s` skips), plays the prompts (interrupted by the first digit), then collects up to
//!   `maxdigits` (0 or none: 255) digits ended by `#`, waiting `timeout` seconds (default 10)
//!   for each; with no digit it replays the prompts `attempts` times. `${var}` gets the
//!   digits and `${READSTATUS}` is OK or TIMEOUT. Option `i` plays the files as tones.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::exec::{seconds, split_args, State};
use super::{Action, App, Execution, Prompt};

/// `${TIMEOUT(digit)}` default: wait for the next digit of an extension.
pub const DIGIT_TIMEOUT: Duration = Duration::from_secs(5);
/// `${TIMEOUT(response)}` default: wait for the first digit.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// A `tone:NAME` prompt without a length plays this long.
pub const TONE_PROMPT: Duration = Duration::from_secs(5);
/// Digits kept between collectors (typed ahead).
const TYPEAHEAD_MAX: usize = 32;
/// Read's default and largest `maxdigits`.
const READ_MAX_DIGITS: usize = 255;

/// A running media application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MediaApp {
    kind: Kind,
    /// Prompts still to play.
    prompts: VecDeque<Prompt>,
    /// A `Play` is out and its end not reported yet.
    playing: bool,
    /// A digit stops the prompts and starts collecting.
    interruptible: bool,
    /// Collecting digits (after the prompts, or after the first digit).
    collect: Option<Collect>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Playback {
        failed: bool,
    },
    /// Background or WaitExten: collect an extension of `context`.
    Exten {
        context: String,
        /// Background: the prompts ending without a digit ends the application.
        background: bool,
        /// WaitExten: how long to wait for the first digit.
        response: Duration,
    },
    Read {
        var: String,
        max: usize,
        attempts: u32,
        timeout: Duration,
        all: Vec<Prompt>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Collect {
    digits: String,
    deadline: Instant,
}

/// What a digit or a timeout led to.
enum Outcome {
    /// Keep collecting until the new deadline.
    Wait,
    /// The application finished; the plan goes on (state already set).
    Finished,
}

/// A prompt as written: `tone:NAME[/SECONDS]` or a file name.
fn prompt(text: &str, as_tone: bool) -> Option<Prompt> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let tone = text.strip_prefix("tone:").or(as_tone.then_some(text));
    Some(match tone {
        Some(t) => {
            let (name, secs) = t.split_once('/').unwrap_or((t, ""));
            Prompt::Tone {
                name: name.trim().to_string(),
                duration: Some(seconds(secs).unwrap_or(TONE_PROMPT)),
            }
        }
        None => Prompt::File(text.to_string()),
    })
}

fn prompts(files: &str, as_tone: bool) -> VecDeque<Prompt> {
    files
        .split('&')
        .filter_map(|f| prompt(f, as_tone))
        .collect()
}

impl Execution {
    /// Reports a digit the caller sent (`0-9 * # A-D`). Call `next_action` afterwards.
    pub fn digit(&mut self, digit: char, now: Instant) {
        let digit = digit.to_ascii_uppercase();
        if !matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D') {
            return;
        }
        let State::Media(app) = &mut self.state else {
            if self.detecting && self.typeahead.len() < TYPEAHEAD_MAX {
                self.typeahead.push(digit);
            }
            return;
        };
        if app.collect.is_none() {
            if !app.interruptible {
                return;
            }
            if app.playing {
                self.queued.push_back(Action::StopPlay);
                app.playing = false;
            }
            app.prompts.clear();
            app.collect = Some(Collect {
                digits: String::new(),
                deadline: now,
            });
        }
        self.feed(digit, now);
    }

    /// Reports the end of the prompt started by the last `Play`: `true` if it played to its
    /// end, `false` if it could not be played. Call `next_action` afterwards.
    pub fn playback_done(&mut self, ok: bool, _now: Instant) {
        let State::Media(app) = &mut self.state else {
            return;
        };
        if !std::mem::take(&mut app.playing) {
            return;
        }
        if !ok {
            if let Kind::Playback { failed } = &mut app.kind {
                // Asterisk stops at the first file it cannot play.
                *failed = true;
                app.prompts.clear();
            }
        }
    }

    /// The channel's `${TIMEOUT(response)}`, or WaitExten's own seconds.
    pub(super) fn response_timeout(&self, args: &str) -> Duration {
        let first = split_args(args).into_iter().next().unwrap_or_default();
        seconds(&first)
            .filter(|d| !d.is_zero())
            .or_else(|| self.timeout_var("response"))
            .unwrap_or(RESPONSE_TIMEOUT)
    }

    fn timeout_var(&self, which: &str) -> Option<Duration> {
        self.vars
            .get(&format!("TIMEOUT({which})"))
            .and_then(|v| seconds(v))
            .filter(|d| !d.is_zero())
    }

    fn digit_timeout(&self) -> Duration {
        self.timeout_var("digit").unwrap_or(DIGIT_TIMEOUT)
    }

    /// Answer first unless told not to; `None` when the application is skipped.
    fn maybe_answer(&mut self, no_answer: bool, skip: bool) -> Option<()> {
        if !self.answered {
            if skip {
                return None;
            }
            if !no_answer {
                self.answered = true;
                self.queued.push_back(Action::Answer);
            }
        }
        Some(())
    }

    fn detect(&mut self, on: bool) {
        if self.detecting != on {
            self.detecting = on;
            if !on {
                self.typeahead.clear();
            }
            self.queued.push_back(Action::DetectDigits(on));
        }
    }

    /// Starts a media application; returns its first action (`None`: it finished at once).
    pub(super) fn start_media(&mut self, app: App, args: &str, now: Instant) -> Option<Action> {
        let parts = split_args(args);
        let arg = |i: usize| parts.get(i).map(|s| s.trim()).unwrap_or("");
        let media = match app {
            App::Playback => {
                let opts = arg(1);
                self.maybe_answer(opts.contains("noanswer"), opts.contains("skip"))?;
                MediaApp {
                    kind: Kind::Playback { failed: false },
                    prompts: prompts(arg(0), false),
                    playing: false,
                    interruptible: false,
                    collect: None,
                }
            }
            App::Background => {
                let opts = arg(1);
                self.maybe_answer(opts.contains('n'), opts.contains('s'))?;
                self.detect(true);
                let context = match arg(3) {
                    "" => self.context.clone(),
                    c => c.to_string(),
                };
                MediaApp {
                    kind: Kind::Exten {
                        context,
                        background: true,
                        response: Duration::ZERO,
                    },
                    prompts: prompts(arg(0), false),
                    playing: false,
                    interruptible: true,
                    collect: None,
                }
            }
            App::WaitExten => {
                self.detect(true);
                let response = self.response_timeout(args);
                MediaApp {
                    kind: Kind::Exten {
                        context: self.context.clone(),
                        background: false,
                        response,
                    },
                    prompts: VecDeque::new(),
                    playing: false,
                    interruptible: true,
                    collect: Some(Collect {
                        digits: String::new(),
                        deadline: now + response,
                    }),
                }
            }
            App::Read => {
                let var = arg(0).to_string();
                if var.is_empty() {
                    tracing::warn!(args, "dialplan: Read needs a variable name");
                    return None;
                }
                let opts = arg(3);
                self.maybe_answer(opts.contains('n'), opts.contains('s'))?;
                self.detect(true);
                let max = match arg(2).parse::<usize>() {
                    Ok(n) if n > 0 => n.min(READ_MAX_DIGITS),
                    _ => READ_MAX_DIGITS,
                };
                let attempts = arg(4).parse::<u32>().unwrap_or(1).max(1);
                let timeout = seconds(arg(5))
                    .filter(|d| !d.is_zero())
                    .unwrap_or(RESPONSE_TIMEOUT);
                let all = prompts(arg(1), opts.contains('i'));
                MediaApp {
                    kind: Kind::Read {
                        var,
                        max,
                        attempts,
                        timeout,
                        all: all.iter().cloned().collect(),
                    },
                    prompts: all,
                    playing: false,
                    interruptible: true,
                    collect: None,
                }
            }
            _ => return None,
        };
        self.state = State::Media(media);
        // Digits typed ahead go to the new collector as if pressed now.
        if !matches!(app, App::Playback) {
            for d in std::mem::take(&mut self.typeahead).chars() {
                if !matches!(self.state, State::Media(_)) {
                    break;
                }
                self.digit(d, now);
            }
        }
        if let Some(a) = self.queued.pop_front() {
            return Some(a);
        }
        self.media_step(now)
    }

    /// The running application's next action; `None` when it has finished.
    pub(super) fn media_step(&mut self, now: Instant) -> Option<Action> {
        loop {
            if let Some(a) = self.queued.pop_front() {
                return Some(a);
            }
            let State::Media(app) = &mut self.state else {
                return None;
            };
            if app.playing {
                return Some(Action::Idle { until: None });
            }
            if let Some(c) = &app.collect {
                if now < c.deadline {
                    return Some(Action::Idle {
                        until: Some(c.deadline),
                    });
                }
                match self.collect_timeout(now) {
                    Outcome::Wait => continue,
                    Outcome::Finished => continue,
                }
            }
            if let Some(p) = app.prompts.pop_front() {
                app.playing = true;
                return Some(Action::Play(p));
            }
            // Prompts done.
            match &app.kind {
                Kind::Playback { failed } => {
                    let status = if *failed { "FAILED" } else { "SUCCESS" };
                    self.set_var("PLAYBACKSTATUS", status);
                    self.state = State::Running;
                }
                Kind::Exten {
                    background: true, ..
                } => self.state = State::Running,
                Kind::Exten { response, .. } => {
                    let deadline = now + *response;
                    app.collect = Some(Collect {
                        digits: String::new(),
                        deadline,
                    });
                }
                Kind::Read { timeout, .. } => {
                    let deadline = now + *timeout;
                    app.collect = Some(Collect {
                        digits: String::new(),
                        deadline,
                    });
                }
            }
        }
    }

    /// One digit into the collector.
    fn feed(&mut self, digit: char, now: Instant) {
        let digit_timeout = self.digit_timeout();
        let State::Media(app) = &mut self.state else {
            return;
        };
        let Some(c) = app.collect.as_mut() else {
            return;
        };
        match &app.kind {
            Kind::Read { max, timeout, .. } => {
                if digit == '#' {
                    let digits = std::mem::take(&mut c.digits);
                    self.read_done(&digits, "OK");
                    return;
                }
                c.digits.push(digit);
                c.deadline = now + *timeout;
                if c.digits.chars().count() >= *max {
                    let digits = std::mem::take(&mut c.digits);
                    self.read_done(&digits, "OK");
                }
            }
            Kind::Exten { context, .. } => {
                let context = context.clone();
                let mut with = c.digits.clone();
                with.push(digit);
                let exact = self.plan.exists(&context, &with, 1);
                let more = self.plan.can_match_longer(&context, &with);
                if digit == '#' && !exact && !more {
                    // `#` ends the entry.
                    let digits = c.digits.clone();
                    self.exten_done(&context, &digits);
                    return;
                }
                c.digits = with.clone();
                c.deadline = now + digit_timeout;
                if !more {
                    self.exten_done(&context, &with);
                }
            }
            Kind::Playback { .. } => {}
        }
    }

    fn collect_timeout(&mut self, _now: Instant) -> Outcome {
        let State::Media(app) = &mut self.state else {
            return Outcome::Finished;
        };
        let digits = app.collect.take().map(|c| c.digits).unwrap_or_default();
        match &mut app.kind {
            Kind::Read { attempts, all, .. } => {
                if !digits.is_empty() {
                    self.read_done(&digits, "OK");
                    return Outcome::Finished;
                }
                *attempts = attempts.saturating_sub(1);
                if *attempts > 0 && !all.is_empty() {
                    app.prompts = all.iter().cloned().collect();
                    return Outcome::Wait;
                }
                self.read_done("", "TIMEOUT");
                Outcome::Finished
            }
            Kind::Exten { context, .. } => {
                let context = context.clone();
                if digits.is_empty() {
                    self.state = State::Running;
                    self.detect(false);
                    if !self.goto_special("t") {
                        tracing::debug!("dialplan: no digits and no 't' extension; hanging up");
                        self.finish(None);
                    }
                } else {
                    self.exten_done(&context, &digits);
                }
                Outcome::Finished
            }
            Kind::Playback { .. } => {
                self.state = State::Running;
                Outcome::Finished
            }
        }
    }

    fn read_done(&mut self, digits: &str, status: &str) {
        if let State::Media(MediaApp {
            kind: Kind::Read { var, .. },
            ..
        }) = &self.state
        {
            let var = var.clone();
            self.set(&format!("{var}={digits}"));
        }
        self.set_var("READSTATUS", status);
        self.state = State::Running;
        self.detect(false);
    }

    /// An extension was entered: go to it, or to `i`, or hang up.
    fn exten_done(&mut self, context: &str, digits: &str) {
        self.state = State::Running;
        self.detect(false);
        if !digits.is_empty() && self.plan.exists(context, digits, 1) {
            self.context = context.to_string();
            self.exten = digits.to_string();
            self.priority = 1;
            return;
        }
        self.set_var("INVALID_EXTEN", digits);
        self.context = context.to_string();
        if !self.goto_special("i") {
            tracing::debug!(digits, "dialplan: invalid extension and no 'i'; hanging up");
            self.finish(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialplan::{Channel, DialStatus, Dialplan, Step};
    use std::sync::Arc;

    fn exec(text: &str, exten: &str) -> Execution {
        let plan = Arc::new(Dialplan::parse(text, "extensions.conf").unwrap());
        Execution::start(
            plan,
            "default",
            Channel {
                exten: exten.into(),
                caller_num: "1001".into(),
                caller_name: "Alice".into(),
                ..Channel::default()
            },
        )
        .unwrap()
    }

    fn file(f: &str) -> Action {
        Action::Play(Prompt::File(f.into()))
    }

    fn t0() -> Instant {
        // Tests only: a fixed base for virtual time.
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    const IVR: &str = "\
[default]
exten => s,1,Background(welcome&menu)
 same => n,WaitExten(4)
exten => 1,1,Playback(sales,noanswer)
 same => n,Hangup(16)
exten => 12,1,Playback(support)
exten => 123,1,NoOp(deep)
exten => i,1,Playback(invalid)
 same => n,Set(BAD=${INVALID_EXTEN})
 same => n,Hangup()
exten => t,1,Playback(goodbye)
 same => n,Hangup(19)
exten => h,1,Set(CDR_NOTE=${HANGUPCAUSE}/${DIALSTATUS}/${CALLERID(num)})
";

    #[test]
    fn background_interrupted_by_digit_goes_to_the_extension() {
        let t = t0();
        let mut x = exec(IVR, "s");
        assert_eq!(x.next_action(t), Action::Answer);
        assert_eq!(x.next_action(t), Action::DetectDigits(true));
        assert_eq!(x.next_action(t), file("welcome"));
        assert_eq!(x.next_action(t), Action::Idle { until: None });
        x.playback_done(true, t + secs(2));
        assert_eq!(x.next_action(t + secs(2)), file("menu"));
        // '1' could still become 12 or 123: the prompt stops and we wait.
        x.digit('1', t + secs(3));
        assert_eq!(x.next_action(t + secs(3)), Action::StopPlay);
        assert_eq!(
            x.next_action(t + secs(3)),
            Action::Idle {
                until: Some(t + secs(8))
            }
        );
        // A late report of the stopped prompt is ignored.
        x.playback_done(true, t + secs(3));
        // Digit timeout: exactly "1" exists.
        assert_eq!(x.next_action(t + secs(8)), Action::DetectDigits(false));
        assert_eq!(x.next_action(t + secs(8)), file("sales"));
        assert_eq!(x.exten(), "1");
        x.playback_done(true, t + secs(9));
        assert_eq!(
            x.next_action(t + secs(9)),
            Action::Hangup { cause: Some(16) }
        );
        assert_eq!(x.var("PLAYBACKSTATUS"), Some("SUCCESS"));
        x.run_hangup_handler(None);
        assert_eq!(x.var("CDR_NOTE"), Some("16//1001"));
        assert_eq!(x.exten(), "h");
    }

    #[test]
    fn unique_match_goes_at_once_and_typeahead_reaches_waitexten() {
        let t = t0();
        let mut x = exec(IVR, "s");
        for _ in 0..3 {
            x.next_action(t);
        }
        // Prompts end without a digit.
        x.playback_done(true, t);
        assert_eq!(x.next_action(t), file("menu"));
        x.playback_done(true, t);
        // Background ended; WaitExten(4) starts.
        assert_eq!(
            x.next_action(t),
            Action::Idle {
                until: Some(t + secs(4))
            }
        );
        x.digit('1', t + secs(1));
        x.digit('2', t + secs(1));
        x.digit('3', t + secs(1));
        // 123 cannot grow: straight there.
        assert_eq!(x.next_action(t + secs(1)), Action::DetectDigits(false));
        assert_eq!(x.next_action(t + secs(1)), Action::Hangup { cause: None });
        assert_eq!(x.exten(), "123");
    }

    #[test]
    fn waitexten_timeout_goes_to_t_and_invalid_to_i() {
        let t = t0();
        let mut x = exec(IVR, "s");
        for _ in 0..3 {
            x.next_action(t);
        }
        x.playback_done(true, t);
        x.next_action(t);
        x.playback_done(true, t);
        assert_eq!(
            x.next_action(t),
            Action::Idle {
                until: Some(t + secs(4))
            }
        );
        assert_eq!(
            x.next_action(t + secs(3)),
            Action::Idle {
                until: Some(t + secs(4))
            },
            "not yet"
        );
        assert_eq!(x.next_action(t + secs(4)), Action::DetectDigits(false));
        assert_eq!(x.next_action(t + secs(4)), file("goodbye"));
        x.playback_done(true, t + secs(5));
        assert_eq!(
            x.next_action(t + secs(5)),
            Action::Hangup { cause: Some(19) }
        );
        x.run_hangup_handler(None);
        assert_eq!(x.var("HANGUPCAUSE"), Some("19"));

        // An impossible digit during the prompt: `i` with INVALID_EXTEN.
        let mut x = exec(IVR, "s");
        for _ in 0..3 {
            x.next_action(t);
        }
        x.digit('9', t);
        assert_eq!(x.next_action(t), Action::StopPlay);
        assert_eq!(x.next_action(t), Action::DetectDigits(false));
        assert_eq!(x.next_action(t), file("invalid"));
        x.playback_done(true, t);
        assert_eq!(x.next_action(t), Action::Hangup { cause: None });
        assert_eq!(x.var("BAD"), Some("9"));
    }

    #[test]
    fn read_collects_until_max_hash_or_timeout_with_attempts() {
        let plan = "\
[default]
exten => s,1,Read(PIN,enter-pin&beep,4,,2,3)
 same => n,Set(R=${READSTATUS}:${PIN})
 same => n,Read(ACCT,tone:dial/2,,n)
 same => n,Set(R2=${READSTATUS}:${ACCT})
 same => n,Hangup()
";
        let t = t0();
        let mut x = exec(plan, "s");
        assert_eq!(x.next_action(t), Action::Answer);
        assert_eq!(x.next_action(t), Action::DetectDigits(true));
        assert_eq!(x.next_action(t), file("enter-pin"));
        x.playback_done(true, t);
        assert_eq!(x.next_action(t), file("beep"));
        x.playback_done(true, t);
        assert_eq!(
            x.next_action(t),
            Action::Idle {
                until: Some(t + secs(3))
            }
        );
        // No digit: second attempt replays the prompts.
        assert_eq!(x.next_action(t + secs(3)), file("enter-pin"));
        x.digit('4', t + secs(4));
        assert_eq!(x.next_action(t + secs(4)), Action::StopPlay);
        assert_eq!(
            x.next_action(t + secs(4)),
            Action::Idle {
                until: Some(t + secs(7))
            }
        );
        for d in "321".chars() {
            x.digit(d, t + secs(5));
        }
        // Fourth digit reached maxdigits.
        assert_eq!(x.next_action(t + secs(5)), Action::DetectDigits(false));
        assert_eq!(x.var("PIN"), Some("4321"));
        // Second Read: no answer needed (already), a tone prompt, ended by '#'.
        assert_eq!(x.next_action(t + secs(5)), Action::DetectDigits(true));
        assert_eq!(x.var("R"), Some("OK:4321"));
        assert_eq!(
            x.next_action(t + secs(5)),
            Action::Play(Prompt::Tone {
                name: "dial".into(),
                duration: Some(secs(2))
            })
        );
        x.digit('7', t + secs(6));
        x.digit('#', t + secs(6));
        assert_eq!(x.next_action(t + secs(6)), Action::StopPlay);
        assert_eq!(x.next_action(t + secs(6)), Action::DetectDigits(false));
        assert_eq!(x.next_action(t + secs(6)), Action::Hangup { cause: None });
        assert_eq!(x.var("R2"), Some("OK:7"));
    }

    #[test]
    fn read_times_out_after_all_attempts() {
        let plan =
            "[default]\nexten => s,1,Read(X,,2,n,,1.5)\n same => n,Set(R=${READSTATUS}:${X}:)\n";
        let t = t0();
        let mut x = exec(plan, "s");
        assert_eq!(x.next_action(t), Action::DetectDigits(true));
        let until = t + Duration::from_millis(1500);
        assert_eq!(x.next_action(t), Action::Idle { until: Some(until) });
        assert_eq!(x.next_action(until), Action::DetectDigits(false));
        assert_eq!(x.next_action(until), Action::Hangup { cause: None });
        assert_eq!(x.var("R"), Some("TIMEOUT::"));
    }

    #[test]
    fn playback_noanswer_failure_tones_and_playtones() {
        let plan = "\
[default]
exten => s,1,Progress()
 same => n,Playback(tone:ringback&missing&never,noanswer)
 same => n,Set(S=${PLAYBACKSTATUS})
 same => n,Playtones(busy)
 same => n,Wait(1)
 same => n,StopPlaytones()
 same => n,Playback(x,skip)
 same => n,Hangup(17)
";
        let t = t0();
        let mut x = exec(plan, "s");
        assert_eq!(x.next_action(t), Action::Progress);
        assert_eq!(
            x.next_action(t),
            Action::Play(Prompt::Tone {
                name: "ringback".into(),
                duration: Some(TONE_PROMPT)
            })
        );
        // Digits are ignored by Playback.
        x.digit('5', t);
        assert_eq!(x.next_action(t), Action::Idle { until: None });
        x.playback_done(true, t);
        assert_eq!(x.next_action(t), file("missing"));
        x.playback_done(false, t);
        assert_eq!(
            x.next_action(t),
            Action::Play(Prompt::Tone {
                name: "busy".into(),
                duration: None
            })
        );
        assert_eq!(x.var("S"), Some("FAILED"));
        assert_eq!(x.next_action(t), Action::Wait(secs(1)));
        assert_eq!(x.next_action(t), Action::StopPlay);
        // `skip` on an unanswered channel plays nothing.
        assert_eq!(x.next_action(t), Action::Hangup { cause: Some(17) });
        assert_eq!(x.var("HANGUPCAUSE"), Some("17"));
    }

    #[test]
    fn legacy_next_degrades_media_apps() {
        let mut x = exec(IVR, "s");
        assert_eq!(x.next(), Step::Playback("welcome&menu".into()));
        assert_eq!(x.next(), Step::Wait(secs(4)));
        // WaitExten without digits: the `t` extension.
        assert_eq!(x.next(), Step::Playback("goodbye".into()));
        assert_eq!(x.next(), Step::Hangup { cause: Some(19) });
        let mut x = exec(
            "[default]\nexten => s,1,Read(V,p)\n same => n,Set(R=${READSTATUS})\n",
            "s",
        );
        assert_eq!(x.next(), Step::Hangup { cause: None });
        assert_eq!(x.var("R"), Some("ERROR"));
    }

    #[test]
    fn dialstatus_and_hangupcause_in_h() {
        let plan = "\
[default]
exten => s,1,Dial(SIP/2000,20)
 same => n,Hangup()
exten => h,1,NoOp()
 same => n,Set(OUT=${DIALSTATUS}-${HANGUPCAUSE}-${CALLERID(name)})
";
        let mut x = exec(plan, "s");
        assert!(matches!(x.next(), Step::Dial { .. }));
        x.dial_result(DialStatus::Busy);
        x.set_hangup_cause(17);
        assert_eq!(x.next(), Step::Hangup { cause: None });
        x.run_hangup_handler(None);
        assert_eq!(x.var("OUT"), Some("BUSY-17-Alice"));
        // Runs once.
        x.set_var("OUT", "");
        x.run_hangup_handler(Some(1));
        assert_eq!(x.var("OUT"), Some(""));
    }
}
