//! One channel walking through the dialplan.
//!
//! Calling contract: [`Execution::start`] finds the starting extension (or fails, and the
//! caller answers 404). Then call [`Execution::next`] repeatedly and perform each [`Step`].
//! After a [`Step::Dial`], report the outcome with [`Execution::dial_result`] before the next
//! `next`. Once `next` returns [`Step::Hangup`] it keeps returning it.
//!
//! As in Asterisk, an answered `Dial` ends the dialplan when the bridged call ends (the
//! `Hangup` that follows), unless the `g` option asks to go on; an unanswered `Dial` continues
//! at the next priority with `${DIALSTATUS}` set.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::subst::{self, Scope};
use super::{expr, App, Channel, DialStatus, DialTarget, Dialplan, ExecError, Step};

/// Internal applications run per call to [`Execution::next`] before it gives up (a `Goto`
/// loop with no channel application in it).
pub const MAX_INTERNAL_STEPS: usize = 1000;

/// A channel's position in the dialplan and its variables.
#[derive(Clone, Debug)]
pub struct Execution {
    plan: Arc<Dialplan>,
    context: String,
    exten: String,
    priority: u32,
    caller_num: String,
    caller_name: String,
    vars: HashMap<String, String>,
    state: State,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Running,
    /// A `Dial` step was returned; its option letters.
    AwaitDial {
        options: String,
    },
    /// Finished; `next` keeps returning this hangup.
    Done {
        cause: Option<u16>,
    },
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
        })
    }

    /// Runs internal applications until one needs the channel, and returns it.
    // Not an Iterator: the sequence never ends (it settles on Hangup) and needs dial_result.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Step {
        match &self.state {
            State::Done { cause } => return Step::Hangup { cause: *cause },
            // `dial_result` was not called: carry on as Asterisk would after a failed Dial.
            State::AwaitDial { .. } | State::Running => self.state = State::Running,
        }
        let plan = Arc::clone(&self.plan);
        for _ in 0..MAX_INTERNAL_STEPS {
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
                App::Answer => return Step::Answer,
                App::Echo => return Step::Echo,
                App::Ringing => return Step::Ringing,
                App::Progress => return Step::Progress,
                App::Playback => {
                    let file = split_args(&args).into_iter().next().unwrap_or_default();
                    return Step::Playback(file.trim().to_string());
                }
                App::Wait => {
                    if let Some(d) = seconds(&args) {
                        return Step::Wait(d);
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
                App::NoOp | App::Verbose | App::Log => {}
                App::Set => self.set(&args),
                App::Goto => {
                    if !self.goto(&args) {
                        return self.finish(None);
                    }
                }
                App::GotoIf => {
                    let (cond, branches) = args.split_once('?').unwrap_or((&args, ""));
                    let (if_true, if_false) = branches.split_once(':').unwrap_or((branches, ""));
                    let target = if expr::is_true(cond) {
                        if_true
                    } else {
                        if_false
                    };
                    if !target.trim().is_empty() && !self.goto(target) {
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

    /// Reports how the last `Dial` ended; sets `${DIALSTATUS}`.
    pub fn dial_result(&mut self, status: DialStatus) {
        self.vars
            .insert("DIALSTATUS".into(), status.as_str().into());
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

    fn finish(&mut self, cause: Option<u16>) -> Step {
        self.state = State::Done { cause };
        Step::Hangup { cause }
    }

    /// `Dial(targets[,timeout[,options]])`; `None` when there is nothing to dial (then
    /// `${DIALSTATUS}` is `CHANUNAVAIL` and the plan goes on).
    fn dial(&mut self, args: &str) -> Option<Step> {
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
        self.state = State::AwaitDial {
            options: options.clone(),
        };
        Some(Step::Dial {
            targets,
            timeout,
            options,
        })
    }

    /// `Set(NAME=value)`; `CALLERID(num|name)` set the caller ID.
    fn set(&mut self, args: &str) {
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
    fn goto(&mut self, target: &str) -> bool {
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

/// Splits application arguments on commas outside parentheses and double quotes.
fn split_args(args: &str) -> Vec<String> {
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
fn seconds(text: &str) -> Option<Duration> {
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
