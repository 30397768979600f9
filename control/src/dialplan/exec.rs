//! One channel walking through the dialplan.
//!
//! Calling contract: [`Execution::start`] finds the starting extension (or fails, and the
//! caller answers 404). Then call [`Execution::next`] repeatedly and perform each [`Step`].
//! After a [`Step::Dial`], report the outcome with [`Execution::dial_result`] before the next
//! `next`. Once `next` returns [`Step::Hangup`] it keeps returning it.
//!
//! The media applications (Background, Read, WaitExten, Playback of files and tones) need
//! inputs from the channel: use [`Execution::next_action`] with [`Execution::digit`] and
//! [`Execution::playback_done`] (see [`Action`] for the run loop; the state machine lives in
//! the `media` module). With plain `next` they degrade: Playback and Background return
//! [`Step::Playback`] of their first argument, Read sets its variable empty with
//! `${READSTATUS}` ERROR, WaitExten waits its timeout and goes to `t`.
//!
//! When the channel is gone, [`Execution::run_hangup_handler`] runs the context's `h`
//! extension with `${HANGUPCAUSE}` set.
//!
//! As in Asterisk, an answered `Dial` ends the dialplan when the bridged call ends (the
//! `Hangup` that follows), unless the `g` option asks to go on; an unanswered `Dial` continues
//! at the next priority with `${DIALSTATUS}` set.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::media::MediaApp;
use super::subst::{self, Scope};
use super::{
    expr, Action, App, Channel, DialStatus, DialTarget, Dialplan, ExecError, Prompt, Step,
};

/// Internal applications run per call to [`Execution::next`] before it gives up (a `Goto`
/// loop with no channel application in it).
pub const MAX_INTERNAL_STEPS: usize = 1000;

/// A channel's position in the dialplan and its variables.
#[derive(Clone, Debug)]
pub struct Execution {
    pub(super) plan: Arc<Dialplan>,
    pub(super) context: String,
    pub(super) exten: String,
    pub(super) priority: u32,
    pub(super) caller_num: String,
    pub(super) caller_name: String,
    pub(super) vars: HashMap<String, String>,
    pub(super) state: State,
    /// Actions decided but not returned yet (an Answer before a Play, a StopPlay...).
    pub(super) queued: VecDeque<Action>,
    /// The plan answered the channel (Answer, Echo, or a media app that answers).
    pub(super) answered: bool,
    /// Digit detection is on (we asked with `DetectDigits(true)`).
    pub(super) detecting: bool,
    /// Digits received while detecting but not collecting (used by the next collector).
    pub(super) typeahead: String,
    /// A Playtones tone may be playing.
    pub(super) tones_playing: bool,
    hangup_ran: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum State {
    Running,
    /// A `Dial` step was returned; its option letters.
    AwaitDial {
        options: String,
    },
    /// Finished; `next` keeps returning this hangup.
    Done {
        cause: Option<u16>,
    },
    /// A media application is running (only with `next_action`).
    Media(MediaApp),
    /// `next` (no media inputs) waited out a WaitExten: go to `t` or hang up.
    LegacyWaitExten,
    /// An `AGI()` script drives the channel until [`Execution::agi_done`].
    Agi,
}

impl Execution {
    /// Starts at priority 1 of `chan.exten` (or `s` if empty) in `context`.
    pub fn start(
        plan: Arc<Dialplan>,
        context: &str,
        chan: Channel,
    ) -> Result<Execution, ExecError> {
        if !plan.has_context(context) {
            return Err(ExecError::NoSuchContext(context.to_string()));
        }
        let exten = if chan.exten.is_empty() {
            "s".to_string()
        } else {
            chan.exten
        };
        if plan.find(context, &exten, 1).is_none() {
            return Err(ExecError::NoSuchExtension {
                context: context.to_string(),
                exten,
            });
        }
        let mut vars = plan.globals.clone();
        vars.extend(chan.vars);
        Ok(Execution {
            plan,
            context: context.to_string(),
            exten,
            priority: 1,
            caller_num: chan.caller_num,
            caller_name: chan.caller_name,
            vars,
            state: State::Running,
            queued: VecDeque::new(),
            answered: false,
            detecting: false,
            typeahead: String::new(),
            tones_playing: false,
            hangup_ran: false,
        })
    }

    /// Runs internal applications until one needs the channel, and returns it. Media
    /// applications degrade as the module docs say (no digits, no playback reports).
    // Not an Iterator: the sequence never ends (it settles on Hangup) and needs dial_result.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Step {
        // Bounded: every action below either returns or advances the plan.
        for _ in 0..MAX_INTERNAL_STEPS {
            return match self.run(None) {
                Action::Answer => Step::Answer,
                Action::Ringing => Step::Ringing,
                Action::Progress => Step::Progress,
                Action::Echo => Step::Echo,
                Action::Dial {
                    targets,
                    timeout,
                    options,
                } => Step::Dial {
                    targets,
                    timeout,
                    options,
                },
                Action::Hangup { cause } => Step::Hangup { cause },
                Action::Wait(d) => Step::Wait(d),
                Action::Play(Prompt::File(f)) => Step::Playback(f),
                Action::Play(Prompt::Tone { name, .. }) => Step::Playback(format!("tone:{name}")),
                Action::StopPlay | Action::DetectDigits(_) => continue,
                // No I/O here to run a script: the application fails, as with a dead server.
                Action::Agi { .. } => {
                    self.agi_failed_to_run();
                    continue;
                }
                // Only media states idle, and `run(None)` never enters one.
                Action::Idle { .. } => self.finish(None).into_step(),
            };
        }
        self.finish(None).into_step()
    }

    /// Runs internal applications until one needs the channel, and returns what to do,
    /// including the media applications (see [`Action`] for the run loop).
    pub fn next_action(&mut self, now: Instant) -> Action {
        self.run(Some(now))
    }

    /// The interpreter. `now` is `None` for the legacy [`Execution::next`] (no media inputs).
    fn run(&mut self, now: Option<Instant>) -> Action {
        if let Some(a) = self.queued.pop_front() {
            return a;
        }
        match &self.state {
            State::Done { cause } => return Action::Hangup { cause: *cause },
            State::Media(_) => match now {
                Some(now) => {
                    if let Some(a) = self.media_step(now) {
                        return a;
                    }
                    // The application finished: go on with the plan.
                }
                None => self.state = State::Running,
            },
            State::LegacyWaitExten => {
                self.state = State::Running;
                if !self.goto_special("t") {
                    return self.finish(None);
                }
            }
            // `dial_result` was not called: carry on as Asterisk would after a failed Dial.
            State::AwaitDial { .. } | State::Running => self.state = State::Running,
            // The script still runs: nothing for the plan to do until `agi_done`.
            State::Agi => return Action::Idle { until: None },
        }
        let plan = Arc::clone(&self.plan);
        for _ in 0..MAX_INTERNAL_STEPS {
            if let Some(a) = self.queued.pop_front() {
                return a;
            }
            match &self.state {
                State::Done { cause } => return Action::Hangup { cause: *cause },
                // A media application started by the previous priority is running.
                State::Media(_) => {
                    if let Some(now) = now {
                        if let Some(a) = self.media_step(now) {
                            return a;
                        }
                        continue;
                    }
                }
                _ => {}
            }
            let Some(ins) = plan.find(&self.context, &self.exten, self.priority) else {
                // Fell off the end of the extension.
                return self.finish(None);
            };
            let args = subst::substitute(&ins.args, self);
            tracing::trace!(
                context = %self.context, exten = %self.exten, priority = self.priority,
                app = ?ins.app, %args, "dialplan"
            );
            self.priority = self.priority.saturating_add(1);
            match ins.app {
                App::Answer => {
                    self.answered = true;
                    return Action::Answer;
                }
                App::Echo => {
                    self.answered = true;
                    return Action::Echo;
                }
                App::Ringing => return Action::Ringing,
                App::Progress => return Action::Progress,
                App::Playback | App::Background if now.is_none() => {
                    let file = split_args(&args).into_iter().next().unwrap_or_default();
                    return Action::Play(Prompt::File(file.trim().to_string()));
                }
                App::Read if now.is_none() => {
                    let var = split_args(&args).into_iter().next().unwrap_or_default();
                    self.set_var(var.trim(), "");
                    self.set_var("READSTATUS", "ERROR");
                }
                App::WaitExten if now.is_none() => {
                    self.state = State::LegacyWaitExten;
                    return Action::Wait(self.response_timeout(&args));
                }
                App::Playtones | App::StopPlaytones if now.is_none() => {}
                App::Playback | App::Background | App::Read | App::WaitExten => {
                    if let Some(now) = now {
                        if let Some(a) = self.start_media(ins.app, &args, now) {
                            return a;
                        }
                    }
                }
                App::Playtones => {
                    let name = split_args(&args).into_iter().next().unwrap_or_default();
                    self.tones_playing = true;
                    return Action::Play(Prompt::Tone {
                        name: name.trim().to_string(),
                        duration: None,
                    });
                }
                App::StopPlaytones => {
                    if std::mem::take(&mut self.tones_playing) {
                        return Action::StopPlay;
                    }
                }
                App::Wait => {
                    if let Some(d) = seconds(&args) {
                        return Action::Wait(d);
                    }
                }
                App::Hangup => return self.finish(cause(&args)),
                App::Busy => return self.finish(Some(17)),
                App::Congestion => return self.finish(Some(34)),
                App::Dial => {
                    if let Some(step) = self.dial(&args) {
                        return step;
                    }
                }
                App::Agi => {
                    if let Some(a) = self.start_agi(&args) {
                        return a;
                    }
                }
                App::NoOp | App::Verbose | App::Log => {}
                App::Set => self.set(&args),
                App::Goto => {
                    if !self.goto(&args) {
                        return self.finish(None);
                    }
                }
                App::GotoIf => {
                    if !self.goto_if(&args) {
                        return self.finish(None);
                    }
                }
            }
        }
        tracing::warn!(
            context = %self.context, exten = %self.exten,
            "dialplan: {MAX_INTERNAL_STEPS} steps without a channel application; hanging up"
        );
        self.finish(None)
    }

    /// `GotoIf(cond?true[:false])`; false if the chosen target does not exist.
    pub(super) fn goto_if(&mut self, args: &str) -> bool {
        let (cond, branches) = args.split_once('?').unwrap_or((args, ""));
        let (if_true, if_false) = branches.split_once(':').unwrap_or((branches, ""));
        let target = if expr::is_true(cond) {
            if_true
        } else {
            if_false
        };
        target.trim().is_empty() || self.goto(target)
    }

    /// Goes to priority 1 of a special extension (`t`, `i`) of the current context, if the
    /// plan has it.
    pub(super) fn goto_special(&mut self, exten: &str) -> bool {
        if !self.plan.exists(&self.context, exten, 1) {
            return false;
        }
        self.exten = exten.to_string();
        self.priority = 1;
        true
    }

    /// Runs the `h` extension of the current context (internal applications only: Set, NoOp,
    /// Verbose, Log, Goto, GotoIf) once the channel is gone, with `${HANGUPCAUSE}` set to
    /// `cause` (16, normal clearing, when `None` and nothing set it before). Runs at most once;
    /// afterwards the execution is finished.
    pub fn run_hangup_handler(&mut self, cause: Option<u16>) {
        if std::mem::replace(&mut self.hangup_ran, true) {
            return;
        }
        match cause {
            Some(c) => self.set_hangup_cause(c),
            None if !self.vars.contains_key("HANGUPCAUSE") => self.set_hangup_cause(16),
            None => {}
        }
        let final_cause = self.vars.get("HANGUPCAUSE").and_then(|c| c.parse().ok());
        self.queued.clear();
        if self.goto_special("h") {
            let plan = Arc::clone(&self.plan);
            for _ in 0..MAX_INTERNAL_STEPS {
                let Some(ins) = plan.find(&self.context, &self.exten, self.priority) else {
                    break;
                };
                let args = subst::substitute(&ins.args, self);
                self.priority = self.priority.saturating_add(1);
                match ins.app {
                    App::NoOp | App::Verbose | App::Log => {}
                    App::Set => self.set(&args),
                    App::Goto => {
                        if !self.goto(&args) {
                            break;
                        }
                    }
                    App::GotoIf => {
                        if !self.goto_if(&args) {
                            break;
                        }
                    }
                    App::Hangup | App::Busy | App::Congestion => break,
                    other => tracing::debug!(
                        app = ?other,
                        "dialplan: h extension runs after hangup; channel application skipped"
                    ),
                }
            }
        }
        self.state = State::Done { cause: final_cause };
    }

    /// Sets `${HANGUPCAUSE}` (Q.850), e.g. from the far end of a failed Dial.
    pub fn set_hangup_cause(&mut self, cause: u16) {
        self.vars.insert("HANGUPCAUSE".into(), cause.to_string());
    }

    /// Reports how the last `Dial` ended; sets `${DIALSTATUS}`.
    pub fn dial_result(&mut self, status: DialStatus) {
        self.vars
            .insert("DIALSTATUS".into(), status.as_str().into());
        if status == DialStatus::Answer {
            self.answered = true;
        }
        if let State::AwaitDial { options } = &self.state {
            self.state = if status == DialStatus::Answer && !options.contains('g') {
                State::Done { cause: None }
            } else {
                State::Running
            };
        }
    }

    /// A channel variable (`EXTEN` and `CONTEXT` included).
    pub fn var(&self, name: &str) -> Option<&str> {
        match name {
            "EXTEN" => Some(&self.exten),
            "CONTEXT" => Some(&self.context),
            _ => self.vars.get(name).map(String::as_str),
        }
    }

    /// Sets a channel variable.
    pub fn set_var(&mut self, name: &str, value: &str) {
        self.vars.insert(name.to_string(), value.to_string());
    }

    /// Current context.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Current extension.
    pub fn exten(&self) -> &str {
        &self.exten
    }

    /// The priority `next` will run (after a step: the one after it).
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// Caller number, as changed by `Set(CALLERID(num)=...)`.
    pub fn caller_num(&self) -> &str {
        &self.caller_num
    }

    /// Caller name, as changed by `Set(CALLERID(name)=...)`.
    pub fn caller_name(&self) -> &str {
        &self.caller_name
    }

    pub(super) fn finish(&mut self, cause: Option<u16>) -> Action {
        if let Some(c) = cause {
            self.set_hangup_cause(c);
        }
        self.state = State::Done { cause };
        self.queued.clear();
        Action::Hangup { cause }
    }

    /// `Dial(targets[,timeout[,options]])`; `None` when there is nothing to dial (then
    /// `${DIALSTATUS}` is `CHANUNAVAIL` and the plan goes on).
    fn dial(&mut self, args: &str) -> Option<Action> {
        let action = self.parse_dial(args)?;
        if let Action::Dial { options, .. } = &action {
            self.state = State::AwaitDial {
                options: options.clone(),
            };
        }
        Some(action)
    }

    /// The [`Action::Dial`] of `Dial` arguments, without starting it; `None` (and
    /// `${DIALSTATUS}` CHANUNAVAIL) when there is nothing to dial.
    pub(super) fn parse_dial(&mut self, args: &str) -> Option<Action> {
        let parts = split_args(args);
        let targets: Vec<DialTarget> = parts
            .first()
            .map(|t| {
                t.split('&')
                    .filter_map(|t| {
                        let (tech, resource) = t.trim().split_once('/')?;
                        (!tech.is_empty() && !resource.is_empty()).then(|| DialTarget {
                            tech: tech.to_string(),
                            resource: resource.to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if targets.is_empty() {
            tracing::warn!(args, "dialplan: Dial without a TECH/resource target");
            self.vars
                .insert("DIALSTATUS".into(), DialStatus::ChanUnavail.as_str().into());
            return None;
        }
        let timeout = parts
            .get(1)
            .and_then(|t| seconds(t))
            .filter(|d| !d.is_zero());
        let options = parts
            .get(2)
            .map(|o| o.trim().to_string())
            .unwrap_or_default();
        Some(Action::Dial {
            targets,
            timeout,
            options,
        })
    }

    /// `Set(NAME=value)`; `CALLERID(num|name)` set the caller ID.
    pub(super) fn set(&mut self, args: &str) {
        let Some((name, value)) = args.split_once('=') else {
            tracing::warn!(args, "dialplan: Set without '='");
            return;
        };
        // `_NAME` / `__NAME` mark inheritance to dialled channels in Asterisk.
        let name = name.trim().trim_start_matches('_');
        match name {
            "" => {}
            "CALLERID(num)" | "CALLERID(number)" => self.caller_num = value.to_string(),
            "CALLERID(name)" => self.caller_name = value.to_string(),
            _ => {
                self.vars.insert(name.to_string(), value.to_string());
            }
        }
    }

    /// `Goto([[context,]exten,]priority)`; false if the target does not exist.
    pub(super) fn goto(&mut self, target: &str) -> bool {
        let parts: Vec<&str> = target.split(',').map(str::trim).collect();
        let (context, exten, prio) = match parts.as_slice() {
            [p] => (self.context.clone(), self.exten.clone(), *p),
            [e, p] => (self.context.clone(), (*e).to_string(), *p),
            [c, e, p] => ((*c).to_string(), (*e).to_string(), *p),
            _ => {
                tracing::warn!(target, "dialplan: Goto takes [[context,]exten,]priority");
                return false;
            }
        };
        let priority = match prio.parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => self.plan.find_label(&context, &exten, prio),
        };
        let Some(priority) = priority else {
            tracing::warn!(
                target,
                "dialplan: Goto to a priority/label that does not exist"
            );
            return false;
        };
        self.context = context;
        self.exten = exten;
        self.priority = priority;
        true
    }
}

impl Scope for Execution {
    fn variable(&self, name: &str) -> Option<String> {
        match name {
            "PRIORITY" => Some(self.priority.to_string()),
            "CALLERIDNUM" => Some(self.caller_num.clone()),
            "CALLERIDNAME" => Some(self.caller_name.clone()),
            _ => self.var(name).map(str::to_string),
        }
    }

    fn function(&self, name: &str, arg: &str) -> Option<String> {
        match (name.to_ascii_uppercase().as_str(), arg.trim()) {
            ("CALLERID", "num" | "number") => Some(self.caller_num.clone()),
            ("CALLERID", "name") => Some(self.caller_name.clone()),
            ("CALLERID", "all") => Some(format!("\"{}\" <{}>", self.caller_name, self.caller_num)),
            ("LEN", _) => Some(arg.chars().count().to_string()),
            _ => None,
        }
    }
}

impl Action {
    /// The legacy step of an action that ends the plan.
    fn into_step(self) -> Step {
        match self {
            Action::Hangup { cause } => Step::Hangup { cause },
            _ => Step::Hangup { cause: None },
        }
    }
}

/// Splits application arguments on commas outside parentheses and double quotes.
pub(super) fn split_args(args: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0u32;
    let mut quoted = false;
    for c in args.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

/// Seconds as Asterisk writes them (`30`, `1.5`); `None` if empty or not a sane number.
pub(super) fn seconds(text: &str) -> Option<Duration> {
    let s: f64 = text.trim().parse().ok()?;
    // try_from rejects NaN, negatives and overflow instead of panicking.
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| d.as_secs() < 1_000_000)
}

/// `Hangup(cause)`: a Q.850 number or one of the common Asterisk cause names.
fn cause(args: &str) -> Option<u16> {
    let a = args.trim();
    if let Ok(n) = a.parse::<u16>() {
        return (1..=127).contains(&n).then_some(n);
    }
    Some(
        match a.to_ascii_uppercase().trim_start_matches("AST_CAUSE_") {
            "UNALLOCATED" => 1,
            "NORMAL_CLEARING" | "NORMAL" => 16,
            "USER_BUSY" | "BUSY" => 17,
            "NO_USER_RESPONSE" => 18,
            "NO_ANSWER" => 19,
            "CALL_REJECTED" => 21,
            "NORMAL_CIRCUIT_CONGESTION" | "CONGESTION" => 34,
            _ => return None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_split() {
        assert_eq!(split_args("SIP/1&SIP/2,30,tT"), ["SIP/1&SIP/2", "30", "tT"]);
        assert_eq!(split_args("SIP/1,,M(a,b)"), ["SIP/1", "", "M(a,b)"]);
        assert_eq!(split_args("\"a,b\",c"), ["\"a,b\"", "c"]);
        assert_eq!(split_args(""), [""]);
    }

    #[test]
    fn seconds_and_causes() {
        assert_eq!(seconds("30"), Some(Duration::from_secs(30)));
        assert_eq!(seconds("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(seconds("-1"), None);
        assert_eq!(seconds("NaN"), None);
        assert_eq!(seconds("1e300"), None);
        assert_eq!(seconds("x"), None);
        assert_eq!(cause("17"), Some(17));
        assert_eq!(cause(""), None);
        assert_eq!(cause("300"), None);
        assert_eq!(cause("USER_BUSY"), Some(17));
    }
}
