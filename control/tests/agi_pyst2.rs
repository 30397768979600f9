//! FastAGI against pyst2 (PyPI), a FastAGI library no one here wrote: the test starts a
//! Python FastAGI server whose script answers, reads digits with GET DATA and WAIT FOR DIGIT,
//! sets and reads back a variable, and returns. Checks the `agi_*` names pyst2 received are
//! exactly Asterisk's, and that a dead AGI server fails the application cleanly.
//!
//! Skips with a message when python3 or pyst2 is missing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use control::agi::tcp::{run, AgiMediaChannel, AgiStatus};
use control::agi::{AgiChannel, AgiEnv, AgiUrl, ChannelStatus, MediaOutcome, MediaRequest};

const SERVER: &str = r#"
import json, os, socket, sys
import asterisk.agi
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
srv.settimeout(20)
conn, _ = srv.accept()
f = conn.makefile("rw", newline="\n")
agi = asterisk.agi.AGI(stdin=f, stdout=f, stderr=open(os.devnull, "w"))
out = {"env": agi.env, "order": []}
agi.answer()
out["status"] = agi.channel_status()
out["data"] = agi.get_data("enter-pin", 3000, 4)
out["digit"] = agi.wait_for_digit(2000)
agi.set_variable("PIN", out["data"])
out["pin_back"] = agi.get_variable("PIN")
agi.set_callerid("2000")
agi.verbose("pyst2 script done")
with open(sys.argv[1], "w") as fh:
    json.dump(out, fh)
f.close()
conn.close()
"#;

/// Every variable Asterisk's res_agi sends to a FastAGI script with one argument, in order.
const ASTERISK_AGI_VARS: [&str; 23] = [
    "agi_network",
    "agi_network_script",
    "agi_request",
    "agi_channel",
    "agi_language",
    "agi_type",
    "agi_uniqueid",
    "agi_version",
    "agi_callerid",
    "agi_calleridname",
    "agi_callingpres",
    "agi_callingani2",
    "agi_callington",
    "agi_callingtns",
    "agi_dnid",
    "agi_rdnis",
    "agi_context",
    "agi_extension",
    "agi_priority",
    "agi_enhanced",
    "agi_accountcode",
    "agi_threadid",
    "agi_arg_1",
];

#[derive(Default)]
struct Chan {
    vars: HashMap<String, String>,
    answered: bool,
    callerid: String,
    media: Vec<MediaRequest>,
}

impl AgiChannel for Chan {
    fn answer(&mut self) -> bool {
        self.answered = true;
        true
    }
    fn hangup(&mut self) {}
    fn variable(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
    fn set_variable(&mut self, name: &str, value: &str) {
        self.vars.insert(name.into(), value.into());
    }
    fn set_callerid(&mut self, c: &str) {
        self.callerid = c.into();
    }
    fn status(&self) -> ChannelStatus {
        if self.answered {
            ChannelStatus::Up
        } else {
            ChannelStatus::Ring
        }
    }
    fn exec(&mut self, _: &str, _: &str) -> i32 {
        -2
    }
    fn verbose(&mut self, _: &str, _: u8) {}
    fn set_context(&mut self, _: &str) {}
    fn set_extension(&mut self, _: &str) {}
    fn set_priority(&mut self, _: &str) -> bool {
        true
    }
}

impl AgiMediaChannel for Chan {
    async fn perform(&mut self, req: MediaRequest) -> MediaOutcome {
        self.media.push(req.clone());
        match req {
            MediaRequest::GetData { .. } => MediaOutcome::Digits {
                digits: "1234".into(),
                timed_out: false,
            },
            _ => MediaOutcome::Digit {
                digit: Some('#'),
                endpos: 0,
            },
        }
    }
}

fn env() -> AgiEnv {
    AgiEnv {
        channel: "SIP/1000-00000001".into(),
        channel_type: "SIP".into(),
        uniqueid: "1764000000.1".into(),
        version: "tandem-0.1".into(),
        callerid: "1000".into(),
        calleridname: "Alice".into(),
        dnid: "500".into(),
        context: "default".into(),
        extension: "500".into(),
        priority: 2,
        args: vec!["first arg".into()],
        ..AgiEnv::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn fastagi_script_served_by_pyst2() {
    let has_pyst2 = Command::new("python3")
        .args(["-c", "import asterisk.agi"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_pyst2 {
        eprintln!("SKIP: python3 with pyst2 not available (pip install pyst2)");
        return;
    }
    let out = std::env::temp_dir().join(format!("tandem-agi-pyst2-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let mut child = Command::new("python3")
        .args(["-c", SERVER])
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("server port");
    let url = AgiUrl::parse(&format!("agi://127.0.0.1:{port}/pin-check?lang=en")).unwrap();
    let mut chan = Chan::default();
    let status = rt().block_on(run(
        &url,
        &env(),
        &mut chan,
        Duration::from_secs(5),
        Duration::from_secs(10),
    ));
    let _ = child.wait();
    assert_eq!(status, AgiStatus::Success);
    assert!(chan.answered);
    assert_eq!(chan.vars.get("PIN").map(String::as_str), Some("1234"));
    assert_eq!(chan.callerid, "2000");
    assert_eq!(
        chan.media,
        vec![
            MediaRequest::GetData {
                file: "enter-pin".into(),
                timeout_ms: Some(3000),
                max_digits: Some(4)
            },
            MediaRequest::WaitForDigit { timeout_ms: 2000 },
        ]
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    let got_env = v["env"].as_object().unwrap();
    let mut names: Vec<&str> = got_env.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut want = ASTERISK_AGI_VARS.to_vec();
    want.sort_unstable();
    assert_eq!(names, want, "agi_* names must be Asterisk's");
    assert_eq!(got_env["agi_network_script"], "pin-check?lang=en");
    assert_eq!(got_env["agi_callerid"], "1000");
    assert_eq!(got_env["agi_arg_1"], "first arg");
    assert_eq!(got_env["agi_priority"], "2");
    assert_eq!(v["status"], 6, "CHANNEL STATUS after ANSWER is Up");
    assert_eq!(v["data"], "1234");
    assert_eq!(v["digit"], "#");
    assert_eq!(v["pin_back"], "1234");
}

#[test]
fn dead_agi_server_fails_cleanly() {
    // A port nobody listens on: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = AgiUrl::parse(&format!("agi://127.0.0.1:{port}/x")).unwrap();
    let mut chan = Chan::default();
    let status = rt().block_on(run(
        &url,
        &env(),
        &mut chan,
        Duration::from_secs(2),
        Duration::from_secs(2),
    ));
    assert!(matches!(status, AgiStatus::Failure(_)), "{status:?}");
    assert_eq!(status.as_str(), "FAILURE");

    // A server that accepts and never speaks: the idle timeout ends it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = AgiUrl::parse(&format!(
        "agi://127.0.0.1:{}/x",
        l.local_addr().unwrap().port()
    ))
    .unwrap();
    let status = rt().block_on(run(
        &url,
        &env(),
        &mut chan,
        Duration::from_secs(2),
        Duration::from_millis(300),
    ));
    assert!(matches!(status, AgiStatus::Failure(_)), "{status:?}");
}
