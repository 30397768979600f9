//! The `AGI()` application's side of the dialplan.
//!
//! `AGI(agi://host[:port]/script[?query][,arg1[,arg2...]])` hands the channel to a FastAGI
//! script: [`Execution::next_action`] returns [`Action::Agi`] and the plan waits (returning
//! [`Action::Idle`]) until the call layer reports the end with [`Execution::agi_done`].
//! Meanwhile the script works on the execution through the `agi_*` methods here, as
//! Asterisk's `res_agi` works on the channel:
//! - GET/SET VARIABLE read and write channel variables (functions like `CALLERID(num)` too),
//!   so a later `Dial(SIP/${TARGET})` sees what the script set;
//! - SET CONTEXT/EXTENSION change where the plan goes on; SET PRIORITY sets the priority that
//!   runs next (a number or a label). Without them the plan goes on at the priority after
//!   `AGI()`;
//! - EXEC of internal applications (Set, NoOp, Verbose, Log, Goto, GotoIf) runs here.
//!
//! `${AGISTATUS}` is SUCCESS when the script ended, FAILURE when it could not run (bad URL,
//! server unreachable, connection broken) and HANGUP when the channel hung up meanwhile.

use crate::agi::{AgiStatus, AgiUrl};

use super::exec::{split_args, State};
use super::subst::{self, Scope};
use super::{Action, App, DialTarget, Execution};
use std::time::Duration;

impl Execution {
    /// `AGI(url[,args...])` reached: the action, or `None` (FAILURE, plan goes on) when the
    /// URL is not `agi://`.
    pub(super) fn start_agi(&mut self, args: &str) -> Option<Action> {
        let mut parts = split_args(args).into_iter();
        let target = parts.next().unwrap_or_default();
        match AgiUrl::parse(target.trim()) {
            Ok(url) => {
                self.state = State::Agi;
                Some(Action::Agi {
                    url,
                    args: parts.map(|a| a.trim().to_string()).collect(),
                })
            }
            Err(e) => {
                tracing::warn!(
                    context = %self.context, exten = %self.exten,
                    "dialplan: AGI: {e}; AGISTATUS=FAILURE"
                );
                self.set_var("AGISTATUS", "FAILURE");
                None
            }
        }
    }

    /// The caller cannot run scripts (legacy [`Execution::next`]): the application fails.
    pub(super) fn agi_failed_to_run(&mut self) {
        self.state = State::Running;
        self.set_var("AGISTATUS", "FAILURE");
    }

    /// Whether an `AGI()` started by [`Action::Agi`] has not been reported done.
    pub fn agi_running(&self) -> bool {
        self.state == State::Agi
    }

    /// The script ended: sets `${AGISTATUS}`; the next `next_action` goes on with the plan.
    pub fn agi_done(&mut self, status: &AgiStatus) {
        self.set_var("AGISTATUS", status.as_str());
        if self.state == State::Agi {
            self.state = State::Running;
        }
    }

    /// The script answered the channel (a later Playback will not answer again).
    pub fn agi_answered(&mut self) {
        self.answered = true;
    }

    /// GET VARIABLE / GET FULL VARIABLE: a variable, or a function such as
    /// `CALLERID(num)`.
    pub fn agi_variable(&self, name: &str) -> Option<String> {
        let name = name.trim();
        if let Some((f, rest)) = name.split_once('(') {
            if let Some(arg) = rest.strip_suffix(')') {
                return self.function(f, arg);
            }
        }
        self.variable(name)
    }

    /// SET VARIABLE: as `Set(name=value)` without substitution (`CALLERID(num)` sets the
    /// caller number).
    pub fn agi_set_variable(&mut self, name: &str, value: &str) {
        self.set(&format!("{name}={value}"));
    }

    /// SET CONTEXT.
    pub fn agi_set_context(&mut self, context: &str) {
        self.context = context.trim().to_string();
    }

    /// SET EXTENSION.
    pub fn agi_set_extension(&mut self, exten: &str) {
        self.exten = exten.trim().to_string();
    }

    /// SET PRIORITY: a number or a label of the current context and extension; false if
    /// neither.
    pub fn agi_set_priority(&mut self, priority: &str) -> bool {
        let p = priority.trim();
        let n = match p.parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            Ok(_) => None,
            Err(_) => self.plan.find_label(&self.context, &self.exten, p),
        };
        match n {
            Some(n) => {
                self.priority = n;
                true
            }
            None => false,
        }
    }

    /// SET CALLERID: `"Name" <number>`, `Name <number>` or a bare number.
    pub fn agi_set_callerid(&mut self, text: &str) {
        let text = text.trim();
        match (text.find('<'), text.rfind('>')) {
            (Some(l), Some(r)) if l < r => {
                self.caller_num = text[l + 1..r].trim().to_string();
                let name = text[..l].trim().trim_matches('"').trim();
                self.caller_name = name.to_string();
            }
            _ => self.caller_num = text.to_string(),
        }
    }

    /// EXEC of an application that needs no channel I/O; `None` when `app` is not one of
    /// them. Arguments are substituted (`${VAR}`) first, as Asterisk does.
    pub fn agi_exec_internal(&mut self, app: &str, args: &str) -> Option<i32> {
        let args = subst::substitute(args, self);
        match App::from_name(app)? {
            App::NoOp | App::Verbose | App::Log => Some(0),
            App::Set => {
                self.set(&args);
                Some(0)
            }
            App::Goto => Some(if self.goto(&args) { 0 } else { -1 }),
            App::GotoIf => Some(if self.goto_if(&args) { 0 } else { -1 }),
            _ => None,
        }
    }

    /// EXEC Dial: the targets and timeout of `Dial` arguments (substituted), without
    /// leaving the AGI state; `None` (and `${DIALSTATUS}` CHANUNAVAIL) when there is
    /// nothing to dial. Report the outcome with [`Execution::dial_result`] as usual.
    pub fn agi_dial(&mut self, args: &str) -> Option<(Vec<DialTarget>, Option<Duration>)> {
        let args = subst::substitute(args, self);
        match self.parse_dial(&args)? {
            Action::Dial {
                targets, timeout, ..
            } => Some((targets, timeout)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialplan::{Channel, DialStatus, Dialplan};
    use std::sync::Arc;
    use std::time::Instant;

    const PLAN: &str = "\
[default]
exten => 800,1,AGI(agi://127.0.0.1:4600/route?x=1,first,second)
 same => n,Dial(SIP/${TARGET},20)
 same => n(after),Hangup(${AGISTATUS})
exten => 801,1,AGI(http://nope)
 same => n,Set(S=${AGISTATUS})
 same => n,Hangup(17)
[other]
exten => 9,1,Hangup(21)
";

    fn exec(exten: &str) -> Execution {
        let plan = Arc::new(Dialplan::parse(PLAN, "t.conf").unwrap());
        let chan = Channel {
            exten: exten.into(),
            caller_num: "1001".into(),
            ..Channel::default()
        };
        Execution::start(plan, "default", chan).unwrap()
    }

    #[test]
    fn script_sets_a_variable_the_plan_dials() {
        let now = Instant::now();
        let mut e = exec("800");
        let Action::Agi { url, args } = e.next_action(now) else {
            panic!("AGI expected")
        };
        assert_eq!((url.port, url.script.as_str()), (4600, "route?x=1"));
        assert_eq!(args, ["first", "second"]);
        assert!(e.agi_running());
        assert_eq!(e.next_action(now), Action::Idle { until: None });
        assert_eq!(e.agi_variable("CALLERID(num)").as_deref(), Some("1001"));
        e.set_var("TARGET", "1002");
        e.agi_done(&AgiStatus::Success);
        match e.next_action(now) {
            Action::Dial { targets, .. } => assert_eq!(targets[0].resource, "1002"),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.var("AGISTATUS"), Some("SUCCESS"));
    }

    #[test]
    fn script_moves_the_plan_and_exec_runs_internal_apps() {
        let now = Instant::now();
        let mut e = exec("800");
        assert!(matches!(e.next_action(now), Action::Agi { .. }));
        assert_eq!(e.agi_exec_internal("Set", "A=${EXTEN}"), Some(0));
        assert_eq!(e.var("A"), Some("800"));
        assert_eq!(e.agi_exec_internal("Frob", ""), None);
        assert!(e.agi_set_priority("after"));
        assert!(!e.agi_set_priority("nolabel"));
        e.agi_done(&AgiStatus::Hangup);
        // `after` is Hangup(${AGISTATUS}): HANGUP is no cause number, so a plain hangup.
        assert_eq!(e.next_action(now), Action::Hangup { cause: None });

        let mut e = exec("800");
        assert!(matches!(e.next_action(now), Action::Agi { .. }));
        e.agi_set_context("other");
        e.agi_set_extension("9");
        assert!(e.agi_set_priority("1"));
        e.agi_done(&AgiStatus::Success);
        assert_eq!(e.next_action(now), Action::Hangup { cause: Some(21) });
    }

    #[test]
    fn bad_url_fails_and_the_plan_goes_on() {
        let mut e = exec("801");
        assert_eq!(
            e.next_action(Instant::now()),
            Action::Hangup { cause: Some(17) }
        );
        assert_eq!(e.var("S"), Some("FAILURE"));
        // The legacy interface cannot run scripts: FAILURE, and on.
        let mut e = exec("800");
        // (TARGET is unset, so the Dial has no target and the plan reaches `after`.)
        assert_eq!(e.next(), crate::dialplan::Step::Hangup { cause: None });
        assert_eq!(e.var("AGISTATUS"), Some("FAILURE"));
        assert_eq!(e.var("DIALSTATUS"), Some("CHANUNAVAIL"));
    }

    #[test]
    fn callerid_forms_and_exec_dial() {
        let mut e = exec("800");
        e.agi_set_callerid("\"Alice B\" <2000>");
        assert_eq!((e.caller_name(), e.caller_num()), ("Alice B", "2000"));
        e.agi_set_callerid("3000");
        assert_eq!(e.caller_num(), "3000");
        e.set_var("T", "1002");
        let (t, timeout) = e.agi_dial("SIP/${T},5").unwrap();
        assert_eq!(t[0].resource, "1002");
        assert_eq!(timeout, Some(Duration::from_secs(5)));
        assert!(e.agi_dial("nothing").is_none());
        assert_eq!(e.var("DIALSTATUS"), Some(DialStatus::ChanUnavail.as_str()));
    }
}
