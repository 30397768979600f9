//! FastAGI client: `AGI(agi://host[:port]/script[?args])`, Asterisk compatible so existing AGI
//! libraries (pyst2, panoramisk, PHPAGI, asterisk-java) work unchanged.
//!
//! [`AgiSession`] is sans-IO: it emits the `agi_*` environment block exactly as Asterisk's
//! `res_agi` does, then parses command lines fed by [`AgiSession::handle_bytes`] and answers
//! them with Asterisk's `200 result=...` replies. Quick operations (answer, variables, caller
//! ID, status, exec, context/extension/priority) go through the [`AgiChannel`] trait at once;
//! operations that take media time (STREAM FILE, GET DATA, SAY DIGITS, WAIT FOR DIGIT) come
//! out of [`AgiSession::poll_media`] for the caller to perform and are finished with
//! [`AgiSession::complete_media`]. [`tcp`] is the tokio edge.

pub mod tcp;

use std::collections::VecDeque;

/// Default FastAGI port.
pub const DEFAULT_PORT: u16 = 4573;

/// A parsed `agi://host[:port]/script[?args]` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgiUrl {
    pub host: String,
    pub port: u16,
    /// The path after the host, with its query (`agi_network_script`).
    pub script: String,
    /// The whole URL as given (`agi_request`).
    pub request: String,
}

/// Bad `AGI()` argument. Caused by the dialplan author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgiError {
    #[error("AGI target {0:?} is not agi://host[:port]/script")]
    BadUrl(String),
    #[error("AGI server {0}: {1}")]
    Connect(String, String),
    #[error("AGI server {0} closed or broke the connection: {1}")]
    Io(String, String),
}

impl AgiUrl {
    pub fn parse(s: &str) -> Result<AgiUrl, AgiError> {
        let bad = || AgiError::BadUrl(s.to_string());
        let rest = s.strip_prefix("agi://").ok_or_else(bad)?;
        let (hostport, script) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], rest[i..].trim_start_matches('/')),
            None => (rest, ""),
        };
        if hostport.is_empty() {
            return Err(bad());
        }
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [v6]:port
            let (h, p) = h.split_once(']').ok_or_else(bad)?;
            let port = match p.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None => DEFAULT_PORT,
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (hostport.to_string(), DEFAULT_PORT),
            }
        };
        Ok(AgiUrl {
            host,
            port,
            script: script.to_string(),
            request: s.to_string(),
        })
    }
}

/// What the channel tells the AGI script at start (`agi_*` variables).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgiEnv {
    pub channel: String,
    pub language: String,
    /// Channel technology (`SIP`, `DAHDI`...).
    pub channel_type: String,
    pub uniqueid: String,
    pub version: String,
    pub callerid: String,
    pub calleridname: String,
    pub callingpres: u32,
    pub callingani2: u32,
    pub callington: u32,
    pub callingtns: u32,
    pub dnid: String,
    pub rdnis: String,
    pub context: String,
    pub extension: String,
    pub priority: u32,
    pub accountcode: String,
    pub threadid: u64,
    /// `AGI(url,arg1,arg2...)` arguments: `agi_arg_1`...
    pub args: Vec<String>,
}

/// The block Asterisk sends first, in Asterisk's order, ending with an empty line.
pub fn env_block(url: &AgiUrl, env: &AgiEnv) -> String {
    let or_unknown = |s: &str| {
        if s.is_empty() {
            "unknown".to_string()
        } else {
            s.to_string()
        }
    };
    let mut v: Vec<(String, String)> = vec![("network".into(), "yes".into())];
    if !url.script.is_empty() {
        v.push(("network_script".into(), url.script.clone()));
    }
    v.extend([
        ("request".into(), url.request.clone()),
        ("channel".into(), env.channel.clone()),
        (
            "language".into(),
            if env.language.is_empty() {
                "en".into()
            } else {
                env.language.clone()
            },
        ),
        ("type".into(), env.channel_type.clone()),
        ("uniqueid".into(), env.uniqueid.clone()),
        ("version".into(), env.version.clone()),
        ("callerid".into(), or_unknown(&env.callerid)),
        ("calleridname".into(), or_unknown(&env.calleridname)),
        ("callingpres".into(), env.callingpres.to_string()),
        ("callingani2".into(), env.callingani2.to_string()),
        ("callington".into(), env.callington.to_string()),
        ("callingtns".into(), env.callingtns.to_string()),
        ("dnid".into(), or_unknown(&env.dnid)),
        ("rdnis".into(), or_unknown(&env.rdnis)),
        ("context".into(), env.context.clone()),
        ("extension".into(), env.extension.clone()),
        ("priority".into(), env.priority.to_string()),
        ("enhanced".into(), "0.0".into()),
        ("accountcode".into(), env.accountcode.clone()),
        ("threadid".into(), env.threadid.to_string()),
    ]);
    for (i, a) in env.args.iter().enumerate() {
        v.push((format!("arg_{}", i + 1), a.clone()));
    }
    let mut out = String::new();
    for (k, val) in v {
        // A value never spans lines: a newline would end the block early.
        let val: String = val.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        out.push_str(&format!("agi_{k}: {val}\n"));
    }
    out.push('\n');
    out
}

/// Asterisk channel states for CHANNEL STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStatus {
    Down = 0,
    Reserved = 1,
    OffHook = 2,
    Dialing = 3,
    Ring = 4,
    Ringing = 5,
    Up = 6,
    Busy = 7,
}

/// The channel operations an AGI script may ask for that complete at once.
pub trait AgiChannel {
    /// Answers the channel; false if it could not be answered.
    fn answer(&mut self) -> bool;
    /// Hangs the channel up (the session then reports the hangup to the script).
    fn hangup(&mut self);
    fn variable(&self, name: &str) -> Option<String>;
    fn set_variable(&mut self, name: &str, value: &str);
    fn set_callerid(&mut self, callerid: &str);
    fn status(&self) -> ChannelStatus;
    /// Runs a dialplan application; returns its result (`-2` if unknown).
    fn exec(&mut self, app: &str, args: &str) -> i32;
    fn verbose(&mut self, message: &str, level: u8);
    fn set_context(&mut self, context: &str);
    fn set_extension(&mut self, extension: &str);
    fn set_priority(&mut self, priority: &str) -> bool;
    /// Whether `EXEC app` takes media or call time (Dial, Playback, Wait): the session then
    /// hands it out as [`MediaRequest::Exec`] instead of calling [`AgiChannel::exec`].
    fn exec_takes_time(&self, _app: &str) -> bool {
        false
    }
}

/// An operation that takes media time, for the caller to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRequest {
    /// Play `file`; stop early on one of `escape_digits`.
    StreamFile { file: String, escape_digits: String },
    /// Play `file` then collect up to `max_digits` digits (`#` ends), waiting `timeout_ms`.
    GetData {
        file: String,
        timeout_ms: Option<u64>,
        max_digits: Option<u32>,
    },
    SayDigits {
        digits: String,
        escape_digits: String,
    },
    /// Wait for one digit; `timeout_ms` -1 waits forever.
    WaitForDigit { timeout_ms: i64 },
    /// `EXEC app args` for an application that takes time (see
    /// [`AgiChannel::exec_takes_time`]); finished with [`MediaOutcome::Exec`].
    Exec { app: String, args: String },
}

/// How a [`MediaRequest`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOutcome {
    /// STREAM FILE / SAY DIGITS / WAIT FOR DIGIT: the digit pressed, if any; `endpos` in samples.
    Digit { digit: Option<char>, endpos: u64 },
    /// GET DATA: the digits and whether the wait timed out.
    Digits { digits: String, timed_out: bool },
    /// EXEC: the application's result (`0` ran, `-1` failed or hung up).
    Exec(i32),
    /// The file could not be played or the channel failed.
    Failed,
}

/// One AGI connection of the daemon (the call engine numbers them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgiTicket(pub u64);

impl std::fmt::Display for AgiTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "agi{}", self.0)
    }
}

/// Socket work the sans-IO call engine asks of the edge for its AGI sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgiIo {
    /// Open a connection to the server of `url`; report with [`PipeEvent`]s.
    Connect { ticket: AgiTicket, url: AgiUrl },
    /// Write these bytes (queued until the connection is up).
    Send { ticket: AgiTicket, bytes: Vec<u8> },
    /// Close the connection after what was queued (the engine is done with it).
    Close { ticket: AgiTicket },
}

/// What the edge reports about an AGI connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeEvent {
    /// Bytes from the AGI server.
    Data(Vec<u8>),
    /// The connection ended: `None` when the server closed it (the script ended), else why
    /// it failed. Always the last event.
    Closed(Option<AgiError>),
}

/// The application's outcome, as Asterisk's `${AGISTATUS}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgiStatus {
    /// The script ran and closed the connection.
    Success,
    /// Could not connect, or the connection broke or went silent: the reason.
    Failure(AgiError),
    /// The channel hung up during the script.
    Hangup,
}

impl AgiStatus {
    /// The `AGISTATUS` variable value.
    pub fn as_str(&self) -> &'static str {
        match self {
            AgiStatus::Success => "SUCCESS",
            AgiStatus::Failure(_) => "FAILURE",
            AgiStatus::Hangup => "HANGUP",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    AwaitMedia,
    Dead,
}

/// One FastAGI conversation.
#[derive(Debug)]
pub struct AgiSession {
    out: VecDeque<u8>,
    inbuf: Vec<u8>,
    lines: VecDeque<String>,
    media: Option<MediaRequest>,
    pending_media: Option<MediaRequest>,
    state: State,
    hung_up: bool,
    /// Commands served (for logs and tests).
    pub commands: u64,
}

/// Reply to a command the channel cannot run any more.
const DEAD: &str = "511 Command Not Permitted on a dead channel or intercept routine\n";

impl AgiSession {
    /// Starts a session: the environment block is the first output.
    pub fn new(url: &AgiUrl, env: &AgiEnv) -> AgiSession {
        AgiSession {
            out: env_block(url, env).into_bytes().into(),
            inbuf: Vec::new(),
            lines: VecDeque::new(),
            media: None,
            pending_media: None,
            state: State::Running,
            hung_up: false,
            commands: 0,
        }
    }

    /// Bytes to write to the AGI server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.drain(..).collect())
        }
    }

    /// A media operation to perform now (at most one at a time).
    pub fn poll_media(&mut self) -> Option<MediaRequest> {
        self.pending_media.take()
    }

    /// Whether the channel was hung up during the session.
    pub fn hung_up(&self) -> bool {
        self.hung_up
    }

    /// Bytes from the AGI server: complete lines are served in order.
    pub fn handle_bytes(&mut self, bytes: &[u8], chan: &mut dyn AgiChannel) {
        self.inbuf.extend_from_slice(bytes);
        while let Some(i) = self.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.inbuf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            self.lines.push_back(line);
        }
        // A line longer than Asterisk's 2048-byte buffer is answered as invalid.
        if self.inbuf.len() > 8192 {
            self.inbuf.clear();
            self.out.extend(b"510 Invalid or unknown command\n");
        }
        self.serve(chan);
    }

    /// The media operation from [`AgiSession::poll_media`] finished.
    pub fn complete_media(&mut self, outcome: MediaOutcome, chan: &mut dyn AgiChannel) {
        let Some(req) = self.media.take() else { return };
        let reply = match (&req, outcome) {
            (_, MediaOutcome::Failed) => match req {
                MediaRequest::StreamFile { .. } => "200 result=-1 endpos=0\n".to_string(),
                _ => "200 result=-1\n".to_string(),
            },
            (MediaRequest::StreamFile { .. }, MediaOutcome::Digit { digit, endpos }) => {
                format!(
                    "200 result={} endpos={endpos}\n",
                    digit.map_or(0, |d| d as u32)
                )
            }
            (MediaRequest::GetData { .. }, MediaOutcome::Digits { digits, timed_out }) => {
                if timed_out {
                    format!("200 result={digits} (timeout)\n")
                } else {
                    format!("200 result={digits}\n")
                }
            }
            (_, MediaOutcome::Exec(n)) => format!("200 result={n}\n"),
            (_, MediaOutcome::Digit { digit, .. }) => {
                format!("200 result={}\n", digit.map_or(0, |d| d as u32))
            }
            (_, MediaOutcome::Digits { digits, .. }) => {
                format!(
                    "200 result={}\n",
                    digits.chars().next().map_or(0, |d| d as u32)
                )
            }
        };
        self.out.extend(reply.as_bytes());
        if self.state == State::AwaitMedia {
            self.state = State::Running;
        }
        self.serve(chan);
    }

    /// The channel hung up: Asterisk tells the script with a `HANGUP` line; later commands
    /// get 511.
    pub fn handle_hangup(&mut self) {
        if !self.hung_up {
            self.hung_up = true;
            self.out.extend(b"HANGUP\n");
        }
        if self.media.take().is_some() {
            self.out.extend(b"200 result=-1\n");
        }
        self.state = State::Dead;
    }

    fn serve(&mut self, chan: &mut dyn AgiChannel) {
        while self.state != State::AwaitMedia {
            let Some(line) = self.lines.pop_front() else {
                return;
            };
            if line.trim().is_empty() {
                continue;
            }
            self.commands += 1;
            let reply = self.command(&line, chan);
            if let Some(r) = reply {
                self.out.extend(r.as_bytes());
            }
        }
    }

    fn command(&mut self, line: &str, chan: &mut dyn AgiChannel) -> Option<String> {
        let args = split_args(line);
        let up: Vec<String> = args
            .iter()
            .take(3)
            .map(|a| a.to_ascii_uppercase())
            .collect();
        let word = |i: usize| up.get(i).map(String::as_str).unwrap_or("");
        let arg = |i: usize| args.get(i).map(String::as_str);
        let usage =
            || Some("520 Invalid command syntax.  Proper usage not available.\n".to_string());
        let dead = self.state == State::Dead;
        let ok = |n: i64| Some(format!("200 result={n}\n"));
        match (word(0), word(1)) {
            ("ANSWER", _) => {
                if dead {
                    return Some(DEAD.into());
                }
                ok(if chan.answer() { 0 } else { -1 })
            }
            ("HANGUP", _) => {
                if !dead {
                    chan.hangup();
                    self.handle_hangup();
                    // handle_hangup queued HANGUP; the reply to this command comes first.
                    let n = self.out.len();
                    let tail: Vec<u8> = self.out.drain(n - 7..).collect();
                    self.out.extend(b"200 result=1\n");
                    self.out.extend(tail);
                    return None;
                }
                ok(1)
            }
            ("STREAM", "FILE") => {
                let (Some(file), Some(esc)) = (arg(2), arg(3)) else {
                    return usage();
                };
                self.start_media(
                    dead,
                    MediaRequest::StreamFile {
                        file: file.into(),
                        escape_digits: esc.into(),
                    },
                )
            }
            ("GET", "DATA") => {
                let Some(file) = arg(2) else { return usage() };
                let timeout_ms = arg(3).and_then(|t| t.parse().ok());
                let max_digits = arg(4).and_then(|t| t.parse().ok());
                self.start_media(
                    dead,
                    MediaRequest::GetData {
                        file: file.into(),
                        timeout_ms,
                        max_digits,
                    },
                )
            }
            ("SAY", "DIGITS") => {
                let (Some(d), Some(esc)) = (arg(2), arg(3)) else {
                    return usage();
                };
                if !d.chars().all(|c| c.is_ascii_digit()) {
                    return usage();
                }
                self.start_media(
                    dead,
                    MediaRequest::SayDigits {
                        digits: d.into(),
                        escape_digits: esc.into(),
                    },
                )
            }
            ("WAIT", "FOR") if word(2) == "DIGIT" => {
                let Some(t) = arg(3).and_then(|t| t.parse::<i64>().ok()) else {
                    return usage();
                };
                self.start_media(dead, MediaRequest::WaitForDigit { timeout_ms: t })
            }
            ("GET", "VARIABLE") => {
                let Some(name) = arg(2) else { return usage() };
                match chan.variable(name) {
                    Some(v) => Some(format!("200 result=1 ({v})\n")),
                    None => ok(0),
                }
            }
            ("SET", "VARIABLE") => {
                let (Some(n), Some(v)) = (arg(2), arg(3)) else {
                    return usage();
                };
                chan.set_variable(n, v);
                ok(1)
            }
            ("SET", "CALLERID") => {
                let Some(c) = arg(2) else { return usage() };
                chan.set_callerid(c);
                ok(1)
            }
            ("SET", "CONTEXT") => {
                let Some(c) = arg(2) else { return usage() };
                chan.set_context(c);
                ok(0)
            }
            ("SET", "EXTENSION") => {
                let Some(c) = arg(2) else { return usage() };
                chan.set_extension(c);
                ok(0)
            }
            ("SET", "PRIORITY") => {
                let Some(c) = arg(2) else { return usage() };
                if chan.set_priority(c) {
                    ok(0)
                } else {
                    Some(format!("200 result=-1 (Invalid priority {c})\n"))
                }
            }
            ("EXEC", _) => {
                if dead {
                    return Some(DEAD.into());
                }
                let Some(app) = arg(1) else { return usage() };
                let rest = args.get(2..).map(|a| a.join(",")).unwrap_or_default();
                if chan.exec_takes_time(app) {
                    return self.start_media(
                        dead,
                        MediaRequest::Exec {
                            app: app.into(),
                            args: rest,
                        },
                    );
                }
                ok(i64::from(chan.exec(app, &rest)))
            }
            ("VERBOSE", _) => {
                let Some(m) = arg(1) else { return usage() };
                let level = arg(2).and_then(|l| l.parse().ok()).unwrap_or(1);
                chan.verbose(m, level);
                ok(1)
            }
            ("CHANNEL", "STATUS") => ok(if dead {
                ChannelStatus::Down
            } else {
                chan.status()
            } as i64),
            ("NOOP", _) => ok(0),
            _ => Some("510 Invalid or unknown command\n".into()),
        }
    }

    fn start_media(&mut self, dead: bool, req: MediaRequest) -> Option<String> {
        if dead {
            return Some(DEAD.into());
        }
        self.media = Some(req.clone());
        self.pending_media = Some(req);
        self.state = State::AwaitMedia;
        None
    }
}

/// Splits a command line the way Asterisk's `parse_args` does: blanks separate, double
/// quotes group, a backslash escapes the next character.
pub fn split_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_quote, mut escaped, mut have) = (false, false, false);
    for c in line.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            have = true;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => {
                in_quote = !in_quote;
                have = true;
            }
            ' ' | '\t' if !in_quote => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            _ => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Chan {
        vars: HashMap<String, String>,
        answered: bool,
        hung: bool,
        cid: String,
    }
    impl AgiChannel for Chan {
        fn answer(&mut self) -> bool {
            self.answered = true;
            true
        }
        fn hangup(&mut self) {
            self.hung = true;
        }
        fn variable(&self, n: &str) -> Option<String> {
            self.vars.get(n).cloned()
        }
        fn set_variable(&mut self, n: &str, v: &str) {
            self.vars.insert(n.into(), v.into());
        }
        fn set_callerid(&mut self, c: &str) {
            self.cid = c.into();
        }
        fn status(&self) -> ChannelStatus {
            if self.answered {
                ChannelStatus::Up
            } else {
                ChannelStatus::Ring
            }
        }
        fn exec(&mut self, app: &str, _: &str) -> i32 {
            if app.eq_ignore_ascii_case("NoOp") {
                0
            } else {
                -2
            }
        }
        fn verbose(&mut self, _: &str, _: u8) {}
        fn set_context(&mut self, _: &str) {}
        fn set_extension(&mut self, _: &str) {}
        fn set_priority(&mut self, p: &str) -> bool {
            p.parse::<u32>().is_ok()
        }
    }

    fn session() -> AgiSession {
        let url = AgiUrl::parse("agi://127.0.0.1/ivr?x=1").unwrap();
        let mut s = AgiSession::new(&url, &AgiEnv::default());
        s.poll_transmit();
        s
    }

    fn run(s: &mut AgiSession, c: &mut Chan, line: &str) -> String {
        s.handle_bytes(format!("{line}\n").as_bytes(), c);
        String::from_utf8(s.poll_transmit().unwrap_or_default()).unwrap()
    }

    #[test]
    fn url_forms() {
        let u = AgiUrl::parse("agi://agi.example:4600/a/b?c=d").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.script.as_str()),
            ("agi.example", 4600, "a/b?c=d")
        );
        assert_eq!(AgiUrl::parse("agi://h").unwrap().port, 4573);
        assert_eq!(AgiUrl::parse("agi://[::1]:9/s").unwrap().host, "::1");
        assert!(AgiUrl::parse("http://h/s").is_err());
        assert!(AgiUrl::parse("agi://h:x/s").is_err());
    }

    #[test]
    fn commands_and_replies() {
        let mut s = session();
        let mut c = Chan::default();
        assert_eq!(run(&mut s, &mut c, "CHANNEL STATUS"), "200 result=4\n");
        assert_eq!(run(&mut s, &mut c, "ANSWER"), "200 result=0\n");
        assert_eq!(
            run(&mut s, &mut c, "SET VARIABLE \"MY VAR\" \"a b\""),
            "200 result=1\n"
        );
        assert_eq!(c.vars["MY VAR"], "a b");
        assert_eq!(
            run(&mut s, &mut c, "GET VARIABLE \"MY VAR\""),
            "200 result=1 (a b)\n"
        );
        assert_eq!(run(&mut s, &mut c, "GET VARIABLE NOPE"), "200 result=0\n");
        assert_eq!(run(&mut s, &mut c, "EXEC Frobnicate x"), "200 result=-2\n");
        assert_eq!(
            run(&mut s, &mut c, "FLY AWAY"),
            "510 Invalid or unknown command\n"
        );
        assert!(run(&mut s, &mut c, "SET VARIABLE").starts_with("520 "));
        // Media: the next command waits until the digit arrives.
        assert_eq!(run(&mut s, &mut c, "WAIT FOR DIGIT 5000\nVERBOSE hi 1"), "");
        assert_eq!(
            s.poll_media(),
            Some(MediaRequest::WaitForDigit { timeout_ms: 5000 })
        );
        s.complete_media(
            MediaOutcome::Digit {
                digit: Some('5'),
                endpos: 0,
            },
            &mut c,
        );
        assert_eq!(
            String::from_utf8(s.poll_transmit().unwrap()).unwrap(),
            "200 result=53\n200 result=1\n"
        );
        run(&mut s, &mut c, "GET DATA beep 3000 4");
        s.complete_media(
            MediaOutcome::Digits {
                digits: "12".into(),
                timed_out: true,
            },
            &mut c,
        );
        assert_eq!(
            String::from_utf8(s.poll_transmit().unwrap()).unwrap(),
            "200 result=12 (timeout)\n"
        );
        assert_eq!(run(&mut s, &mut c, "HANGUP"), "200 result=1\nHANGUP\n");
        assert!(c.hung);
        assert_eq!(run(&mut s, &mut c, "STREAM FILE x \"\""), DEAD);
    }

    #[test]
    fn exec_that_takes_time_waits_for_its_outcome() {
        struct Slow(Chan);
        impl AgiChannel for Slow {
            fn answer(&mut self) -> bool {
                self.0.answer()
            }
            fn hangup(&mut self) {}
            fn variable(&self, n: &str) -> Option<String> {
                self.0.variable(n)
            }
            fn set_variable(&mut self, n: &str, v: &str) {
                self.0.set_variable(n, v)
            }
            fn set_callerid(&mut self, _: &str) {}
            fn status(&self) -> ChannelStatus {
                self.0.status()
            }
            fn exec(&mut self, a: &str, b: &str) -> i32 {
                self.0.exec(a, b)
            }
            fn exec_takes_time(&self, app: &str) -> bool {
                app.eq_ignore_ascii_case("Dial")
            }
            fn verbose(&mut self, _: &str, _: u8) {}
            fn set_context(&mut self, _: &str) {}
            fn set_extension(&mut self, _: &str) {}
            fn set_priority(&mut self, _: &str) -> bool {
                true
            }
        }
        let mut s = session();
        let mut c = Slow(Chan::default());
        s.handle_bytes(b"EXEC Dial SIP/1002,20\nEXEC NoOp x\n", &mut c);
        assert_eq!(s.poll_transmit(), None, "the reply waits for the Dial");
        assert_eq!(
            s.poll_media(),
            Some(MediaRequest::Exec {
                app: "Dial".into(),
                args: "SIP/1002,20".into()
            })
        );
        s.complete_media(MediaOutcome::Exec(0), &mut c);
        assert_eq!(
            String::from_utf8(s.poll_transmit().unwrap()).unwrap(),
            "200 result=0\n200 result=0\n"
        );
    }

    #[test]
    fn env_block_shape() {
        let url = AgiUrl::parse("agi://127.0.0.1:4573/ivr").unwrap();
        let env = AgiEnv {
            args: vec!["a".into()],
            priority: 1,
            ..AgiEnv::default()
        };
        let b = env_block(&url, &env);
        assert!(b.starts_with(
            "agi_network: yes\nagi_network_script: ivr\nagi_request: agi://127.0.0.1:4573/ivr\n"
        ));
        assert!(b.ends_with("agi_arg_1: a\n\n"));
        assert_eq!(b.lines().filter(|l| l.is_empty()).count(), 1);
    }
}
