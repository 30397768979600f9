//! The dialplan: a real subset of Asterisk's `extensions.conf` language.
//!
//! An operator who knows Asterisk should be able to drop an `extensions.conf` here and have the
//! call routed the same way. The module is sans-IO and knows nothing about SIP: the call layer
//! asks [`Execution::next`] what to do with the channel, performs the [`Step`] (answer, dial,
//! play, hang up...) and, for `Dial`, reports the outcome with [`Execution::dial_result`].
//! Everything that does not need the channel (`NoOp`, `Set`, `Goto`, `GotoIf`, `Verbose`, `Log`)
//! runs inside `next` itself, with a loop guard so a `Goto` loop cannot hang the control plane.
//!
//! Layers:
//! - [`parse`](Dialplan::parse): text to [`Dialplan`] (contexts, extensions, priorities), with
//!   every error naming `file:line`. Unknown applications are rejected at load time, not at
//!   call time.
//! - `pattern`: extension patterns (`_X N Z [1-5] . !`) and Asterisk's "most specific first"
//!   ordering.
//! - `subst` and `expr`: `${VAR}`, `${VAR:offset:len}`, `${CALLERID(num)}` and `$[ expr ]`.
//! - [`Execution`]: one channel walking through the plan.
//!
//! Supported language:
//! - `[context]` sections; `[general]` is ignored and `[globals]` holds `NAME=value` variables
//!   every execution starts with. A context may be opened more than once; lines are appended.
//! - `exten => pattern,priority[(label)],App(args)`, `same => n[(label)],App(args)`, numbered and
//!   `n` priorities, `hint` priorities (ignored), `include => other` (searched after the local
//!   extensions, in order, depth first, as Asterisk does), `ignorepat` (ignored), `;` comments
//!   (`\;` is a literal semicolon) and `;-- block comments --;`.
//! - Applications: Answer, Dial, Hangup, NoOp, Set, Echo, Goto, GotoIf, Wait, Ringing, Progress,
//!   Playback, Verbose, Log, and Busy/Congestion (which end the call with Q.850 cause 17/34).
//! - `AGI(agi://host[:port]/script[?args][,arg1,...])`: a FastAGI script drives the channel
//!   ([`Action::Agi`]); when it ends the plan goes on at the next priority, or where the
//!   script moved it (SET CONTEXT/EXTENSION/PRIORITY), with `${AGISTATUS}` set (see the
//!   `agi` module).
//! - Media applications (with [`Execution::next_action`], see [`Action`]): Playback of sound
//!   files and tones (`tone:busy`, `tone:ringback/5` for 5 s), Background with digit
//!   collection, Read, WaitExten, Playtones/StopPlaytones, the `i` and `t` extensions,
//!   `TIMEOUT(digit)`/`TIMEOUT(response)`, and the `h` extension run by
//!   [`Execution::run_hangup_handler`]. `${DIALSTATUS}`, `${HANGUPCAUSE}`, `${READSTATUS}`,
//!   `${PLAYBACKSTATUS}` and `${CALLERID(name|num)}` are set as Asterisk sets them.
//!
//! Not supported, each rejected with a message rather than silently misread: `#include`/`#exec`,
//! context templates, caller-ID matching (`exten => 100/555,...`), switches, time-conditional
//! includes and `label+offset` priorities.

mod agi;
mod exec;
mod expr;
mod media;
mod parse;
mod pattern;
mod subst;

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use exec::{Execution, MAX_INTERNAL_STEPS};

use pattern::Pattern;

/// A loaded dialplan: contexts with their extensions, sorted for matching.
///
/// Immutable once parsed; share it between calls with an `Arc` (reload builds a new one).
#[derive(Clone, Debug)]
pub struct Dialplan {
    /// Contexts in the order they first appear in the file.
    contexts: Vec<Context>,
    /// Context name -> index in `contexts`.
    index: HashMap<String, usize>,
    /// `[globals]` variables.
    globals: HashMap<String, String>,
}

/// A dialplan file is wrong: which file, which line, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct DialplanError {
    /// The file name given to [`Dialplan::parse`].
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, and where possible how to fix it.
    pub msg: String,
}

/// The channel an execution starts with: what was dialled and who is calling.
#[derive(Clone, Debug, Default)]
pub struct Channel {
    /// The dialled extension (`${EXTEN}`); empty means `s`.
    pub exten: String,
    /// Caller number (`${CALLERID(num)}`).
    pub caller_num: String,
    /// Caller name (`${CALLERID(name)}`).
    pub caller_name: String,
    /// Channel variables set before the dialplan runs (they override `[globals]`).
    pub vars: HashMap<String, String>,
}

/// What the dialplan wants done with the channel next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer the call (SIP 200 OK).
    Answer,
    /// Call the targets in parallel; the first to answer wins. Report the outcome with
    /// [`Execution::dial_result`] before calling [`Execution::next`] again.
    Dial {
        /// `SIP/1002&SIP/1003` -> two targets.
        targets: Vec<DialTarget>,
        /// Ring timeout; `None` rings until the caller gives up.
        timeout: Option<Duration>,
        /// Dial option letters, verbatim (`tT`, `g`, ...).
        options: String,
    },
    /// Hang up. `cause` is the Q.850 cause if the plan gave one (`Hangup(17)`); `None` when
    /// the plan said `Hangup()` or ran out of priorities.
    Hangup {
        /// Q.850 cause number.
        cause: Option<u16>,
    },
    /// Echo the caller's media back (answer first).
    Echo,
    /// Indicate ringing (SIP 180).
    Ringing,
    /// Indicate progress / early media (SIP 183).
    Progress,
    /// Wait this long, then call `next` again.
    Wait(Duration),
    /// Play a sound file (the name as written, without extension).
    Playback(String),
}

/// What the dialplan wants done next: [`Step`] plus the media applications. Returned by
/// [`Execution::next_action`] (the successor of [`Execution::next`], which keeps returning
/// [`Step`] and skips the media inputs for callers that have none).
///
/// Run loop for the call layer: call `next_action(now)` and perform the action until it returns
/// [`Action::Idle`] (or a `Dial`/`Wait`/`Echo`/`Hangup` that suspends the dialplan as before).
/// While idle, feed [`Execution::digit`] for each digit the caller sends (after
/// `DetectDigits(true)`), [`Execution::playback_done`] when a prompt started by `Play` ends,
/// and call `next_action(now)` again after each of them and when `until` passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer the call (SIP 200 OK).
    Answer,
    /// Indicate ringing (SIP 180).
    Ringing,
    /// Indicate progress / early media (SIP 183).
    Progress,
    /// Echo the caller's media back (answer first).
    Echo,
    /// Call the targets; report with [`Execution::dial_result`].
    Dial {
        targets: Vec<DialTarget>,
        timeout: Option<Duration>,
        options: String,
    },
    /// Hang up with this Q.850 cause (`None`: normal clearing).
    Hangup { cause: Option<u16> },
    /// Wait this long, then call `next_action` again.
    Wait(Duration),
    /// Play a prompt to the caller. Report its end with [`Execution::playback_done`] (`true`
    /// when it played to the end, `false` when it could not be played, e.g. no such file);
    /// a playback stopped or replaced on our request is not reported.
    Play(Prompt),
    /// Stop the prompt or tone playing to the caller (a digit interrupted it, or
    /// StopPlaytones). Its end is not reported.
    StopPlay,
    /// Turn detection of the caller's digits on or off.
    DetectDigits(bool),
    /// Nothing to do until a digit, the end of the prompt playing, or `until` if set.
    Idle { until: Option<Instant> },
    /// Run a FastAGI script on the channel (`AGI(agi://host[:port]/script[?q],arg1,...)`).
    /// The plan waits until [`Execution::agi_done`]; meanwhile the script reads and sets
    /// variables and moves the plan through [`Execution::agi_variable`],
    /// [`Execution::set_var`] and [`Execution::agi_set_priority`] and friends.
    Agi {
        url: crate::agi::AgiUrl,
        /// `agi_arg_1`...
        args: Vec<String>,
    },
}

/// What to play to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// A sound file by name as written in the plan (no extension; a relative name is looked
    /// up in the configured sound directory, `name.wav` or `name.raw`/`.sln` 8 kHz 16-bit).
    File(String),
    /// A call-progress tone of the configured tone zone (`dial`, `ringback`, `busy`,
    /// `congestion`, `callwaiting`), for `duration` or, when `None`, until stopped.
    Tone {
        name: String,
        duration: Option<Duration>,
    },
}

/// One `TECH/resource` target of a `Dial`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialTarget {
    /// Channel technology as written: `SIP`, `H323`, `DAHDI`.
    pub tech: String,
    /// Everything after the first `/`: `1002`, `trunk/5551234`, `g1/5551234`.
    pub resource: String,
}

/// The outcome of a `Dial`, stored in `${DIALSTATUS}` as Asterisk names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialStatus {
    /// A target answered (and the bridged call has ended).
    Answer,
    /// Target busy (SIP 486/600, Q.850 17).
    Busy,
    /// No answer before the timeout.
    NoAnswer,
    /// The caller hung up while ringing.
    Cancel,
    /// All routes busy / network failure (SIP 503, Q.850 34).
    Congestion,
    /// The target could not be reached at all (unregistered, unknown trunk).
    ChanUnavail,
}

impl DialStatus {
    /// The `${DIALSTATUS}` value, as in Asterisk.
    pub fn as_str(self) -> &'static str {
        match self {
            DialStatus::Answer => "ANSWER",
            DialStatus::Busy => "BUSY",
            DialStatus::NoAnswer => "NOANSWER",
            DialStatus::Cancel => "CANCEL",
            DialStatus::Congestion => "CONGESTION",
            DialStatus::ChanUnavail => "CHANUNAVAIL",
        }
    }
}

/// Why an execution could not start; the caller answers 404.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The configuration routes the call to a context the dialplan does not have.
    #[error("no such context '{0}'")]
    NoSuchContext(String),
    /// The dialled extension matches nothing (with priority 1) in the context or its includes.
    #[error("no extension '{exten}' with priority 1 in context '{context}'")]
    NoSuchExtension {
        /// Context searched.
        context: String,
        /// Extension dialled.
        exten: String,
    },
}

impl Dialplan {
    /// The plan used when no `extensions.conf` is configured: four-digit extensions starting
    /// with 1 ring the registered SIP user for 30 s; 600 is an echo test.
    pub const EMBEDDED_DEFAULT: &'static str = "\
; Tandem embedded default dialplan (used when no extensions.conf is configured).
[default]
; Four-digit extensions 1000-1999 ring the registered SIP user for 30 seconds.
exten => _1XXX,1,Dial(SIP/${EXTEN},30)
 same => n,Hangup()
; 600 is an echo test.
exten => 600,1,Answer()
 same => n,Echo()
 same => n,Hangup()
; 201-204 ring the simulated analog phones on FXS ports 1-4.
exten => _20[1-4],1,Dial(DAHDI/${EXTEN:2},30)
 same => n,Hangup()
; 8 + number leaves on the analog exchange line (FXO port 5).
exten => _8X.,1,Dial(DAHDI/5/${EXTEN:1},60)
 same => n,Hangup()
; Calls in on the analog exchange line (FXO port 5) dial 200: ring 1001.
exten => 200,1,Dial(SIP/1001,30)
 same => n,Hangup()
";

    /// Parses `extensions.conf` text. `file_name` is only used in error messages.
    pub fn parse(text: &str, file_name: &str) -> Result<Dialplan, DialplanError> {
        parse::parse(text, file_name)
    }

    /// The plan of [`Dialplan::EMBEDDED_DEFAULT`].
    pub fn embedded_default() -> Dialplan {
        // The text is a constant covered by tests; failing here is a build defect, not input.
        #[allow(clippy::expect_used)]
        Dialplan::parse(Self::EMBEDDED_DEFAULT, "<embedded default>")
            .expect("the embedded default dialplan parses")
    }

    /// Whether a `[name]` context exists (`general` and `globals` are not contexts).
    pub fn has_context(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Context names in file order.
    pub fn contexts(&self) -> impl Iterator<Item = &str> {
        self.contexts.iter().map(|c| c.name.as_str())
    }

    /// `[globals]` variables.
    pub fn globals(&self) -> &HashMap<String, String> {
        &self.globals
    }

    /// Whether `exten` with `priority` exists in `context` or its includes (Asterisk's
    /// `exists_extension`); the call layer can use it to answer 404 early.
    pub fn exists(&self, context: &str, exten: &str, priority: u32) -> bool {
        self.find(context, exten, priority).is_some()
    }

    /// Whether some extension in `context` (or its includes) could match `prefix` followed by
    /// more characters: digit collection keeps waiting while this holds.
    pub(crate) fn can_match_longer(&self, context: &str, prefix: &str) -> bool {
        let mut visited = Vec::new();
        self.any_in(context, &mut visited, &|e| {
            e.pattern.can_match_longer(prefix) && !e.priorities.is_empty()
        })
    }

    fn any_in(
        &self,
        context: &str,
        visited: &mut Vec<usize>,
        pred: &dyn Fn(&Extension) -> bool,
    ) -> bool {
        let Some(&idx) = self.index.get(context) else {
            return false;
        };
        if visited.contains(&idx) {
            return false;
        }
        visited.push(idx);
        let ctx = &self.contexts[idx];
        ctx.extensions.iter().any(pred)
            || ctx
                .includes
                .iter()
                .any(|inc| self.any_in(inc, visited, pred))
    }

    /// The instruction at (context, exten, priority), searching includes.
    fn find(&self, context: &str, exten: &str, priority: u32) -> Option<&Instruction> {
        self.search(context, exten, &|e| e.priorities.contains_key(&priority))
            .and_then(|e| e.priorities.get(&priority))
    }

    /// The priority number of `label` for `exten` in `context`, searching includes.
    fn find_label(&self, context: &str, exten: &str, label: &str) -> Option<u32> {
        self.search(context, exten, &|e| e.labels.contains_key(label))
            .and_then(|e| e.labels.get(label).copied())
    }

    /// Finds the first extension matching `exten` for which `wanted` holds: local extensions
    /// first (most specific first), then each include in order, depth first.
    fn search(
        &self,
        context: &str,
        exten: &str,
        wanted: &dyn Fn(&Extension) -> bool,
    ) -> Option<&Extension> {
        let mut visited = Vec::new();
        self.search_in(context, exten, wanted, &mut visited)
    }

    fn search_in(
        &self,
        context: &str,
        exten: &str,
        wanted: &dyn Fn(&Extension) -> bool,
        visited: &mut Vec<usize>,
    ) -> Option<&Extension> {
        let idx = *self.index.get(context)?;
        // An include loop (a includes b includes a) is legal in Asterisk; search each once.
        if visited.contains(&idx) {
            return None;
        }
        visited.push(idx);
        let ctx = &self.contexts[idx];
        if let Some(e) = ctx
            .extensions
            .iter()
            .find(|e| e.pattern.matches(exten) && wanted(e))
        {
            return Some(e);
        }
        for inc in &ctx.includes {
            if let Some(e) = self.search_in(inc, exten, wanted, visited) {
                return Some(e);
            }
        }
        None
    }
}

/// One `[context]`.
#[derive(Clone, Debug)]
struct Context {
    name: String,
    /// Sorted most specific first (exact names, then patterns by [`Pattern::cmp_specificity`]).
    extensions: Vec<Extension>,
    /// `include =>` targets in file order.
    includes: Vec<String>,
}

/// All priorities of one extension (exact name or pattern) in one context.
#[derive(Clone, Debug)]
struct Extension {
    pattern: Pattern,
    priorities: std::collections::BTreeMap<u32, Instruction>,
    labels: HashMap<String, u32>,
}

/// One priority: the application and its unexpanded arguments.
#[derive(Clone, Debug)]
struct Instruction {
    app: App,
    args: String,
}

/// Applications this dialplan knows. Names are case-insensitive, as in Asterisk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum App {
    Agi,
    Answer,
    Background,
    Busy,
    Congestion,
    Dial,
    Echo,
    Goto,
    GotoIf,
    Hangup,
    Log,
    NoOp,
    Playback,
    Playtones,
    Progress,
    Read,
    Ringing,
    Set,
    StopPlaytones,
    Verbose,
    Wait,
    WaitExten,
}

impl App {
    const ALL: [(&'static str, App); 22] = [
        ("AGI", App::Agi),
        ("Answer", App::Answer),
        ("Background", App::Background),
        ("Busy", App::Busy),
        ("Congestion", App::Congestion),
        ("Dial", App::Dial),
        ("Echo", App::Echo),
        ("Goto", App::Goto),
        ("GotoIf", App::GotoIf),
        ("Hangup", App::Hangup),
        ("Log", App::Log),
        ("NoOp", App::NoOp),
        ("Playback", App::Playback),
        ("Playtones", App::Playtones),
        ("Progress", App::Progress),
        ("Read", App::Read),
        ("Ringing", App::Ringing),
        ("Set", App::Set),
        ("StopPlaytones", App::StopPlaytones),
        ("Verbose", App::Verbose),
        ("Wait", App::Wait),
        ("WaitExten", App::WaitExten),
    ];

    fn from_name(name: &str) -> Option<App> {
        App::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, a)| a)
    }

    fn names() -> String {
        App::ALL
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
