//! `tandemd --check-config`: exit 0 on a good file, non-zero with `file:line: what`.

use std::fs;
use std::process::Command;

fn check(name: &str, toml: &str, dialplan: Option<&str>) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("tandem-check-{}-{name}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("tandem.toml");
    fs::write(&conf, toml).unwrap();
    if let Some(d) = dialplan {
        fs::write(dir.join("extensions.conf"), d).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tandemd"))
        .arg("--check-config")
        .arg(&conf)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::remove_dir_all(&dir);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn good_config_with_dialplan_passes() {
    let (code, out) = check(
        "good",
        "[sip]\nlisten = [\"udp:127.0.0.1:5090\"]\n[[sip.user]]\nname = \"1001\"\npassword = \"s3cret\"\n\
         [dataplane]\nbackend = \"socket\"\ncores = [0]\nrtp_ports = \"20000-29999\"\nmedia_ip = \"127.0.0.1\"\n\
         [dialplan]\nfile = \"extensions.conf\"\ncontext = \"default\"\n[mgmt]\nsocket = \"/tmp/x.sock\"\n",
        Some("[default]\nexten => _1XXX,1,Dial(SIP/${EXTEN},30)\n"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn unknown_key_fails_naming_file_and_line() {
    let (code, out) = check("unknown", "[sip]\nrealm = \"x\"\nlistenn = []\n", None);
    assert_ne!(code, 0);
    assert!(out.contains("tandem.toml:3:"), "{out}");
    assert!(out.contains("listenn"), "{out}");
}

#[test]
fn unknown_section_fails() {
    let (code, out) = check("section", "[sip]\n\n[sipp]\nx = 1\n", None);
    assert_ne!(code, 0);
    assert!(out.contains("tandem.toml:3:"), "{out}");
}

#[test]
fn dialplan_errors_name_the_dialplan_file_and_line() {
    let (code, out) = check(
        "dp",
        "[dialplan]\nfile = \"extensions.conf\"\n",
        Some("[default]\nexten => 100,1,Answer()\nexten => 101,1,NoSuchApp(x)\n"),
    );
    assert_ne!(code, 0);
    assert!(out.contains("extensions.conf:3:"), "{out}");
}

#[test]
fn missing_dialplan_file_is_reported_at_its_key() {
    let (code, out) = check("nofile", "[dialplan]\n\nfile = \"nope.conf\"\n", None);
    assert_ne!(code, 0);
    assert!(
        out.contains("tandem.toml:3:") && out.contains("nope.conf"),
        "{out}"
    );
}
