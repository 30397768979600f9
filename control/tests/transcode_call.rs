//! A transcoded call through a real `tandemd`: baresip as 1001 speaks only
//! PCMU; a G.729-only UA (`tests/peers/g729ua.py`, bcg729 through ctypes) is
//! 1002, whose config says `codecs = ["g729"]`. Tandem offers 1002 only G.729,
//! answers 1001 with PCMU and transcodes. Speech must arrive both ways.
//!
//! Audio: real recorded telephony speech (the first 6 s of
//! `testdata/audio/ast_demo-congrats_8k.wav` one way, 6 s of
//! `ast_demo-instruct_8k.wav` the other), compared with `sipua.py analyze`
//! (block cross-correlation median). G.729 is a lossy analysis-by-synthesis
//! coder, so the waveform match is bounded by the codec: the same clip
//! through bcg729 alone (encode + decode, no network) scores about 0.88 here.
//! The path adds a G.711 stage and our own G.729A and measured 0.874 / 0.867
//! against 0.880 / 0.870 for bcg729 alone, so the test asks for the issue's
//! 0.8 and, in the same run, no more than 0.05 below the codec-only figure;
//! unrelated signals score below 0.1.
//!
//! Skips with a message when baresip, sipua.py, the test audio or libbcg729
//! is missing.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn g729ua() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/g729ua.py")
}

fn have_bcg729() -> bool {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import ctypes.util,ctypes,sys; n=ctypes.util.find_library('bcg729') or 'libbcg729.so.0'; ctypes.CDLL(n)")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: libbcg729 missing (scripts/test.sh installs libbcg729-dev)");
    }
    ok
}

fn run_tool(args: &[&str]) {
    let st = Command::new("python3")
        .arg(g729ua())
        .args(args)
        .status()
        .expect("run g729ua.py");
    assert!(st.success(), "g729ua.py {args:?} failed");
}

fn corr(reference: &Path, rec: &Path) -> (f64, serde_json::Value) {
    let v = analyze(reference, rec);
    (v["block_corr_median"].as_f64().unwrap_or(0.0), v)
}

#[test]
fn pcmu_caller_to_g729_only_callee_is_transcoded_both_ways() {
    if !have_baresip() || !have_bcg729() {
        return;
    }
    let audio = shared().join("testdata/audio");
    let (src_a, src_b) = (
        audio.join("ast_demo-congrats_8k.wav"),
        audio.join("ast_demo-instruct_8k.wav"),
    );
    if !src_a.exists() || !src_b.exists() {
        eprintln!("SKIP: {} missing", audio.display());
        return;
    }
    let _g = serial();
    let d = Daemon::start_with_users("transcode", None, "", &|u| {
        if u == 1002 {
            "codecs = [\"g729\"]\n".into()
        } else {
            String::new()
        }
    });
    let p = |f: &str| d.dir.path(f).display().to_string();
    run_tool(&[
        "clip",
        &src_a.display().to_string(),
        &p("a.wav"),
        "--seconds",
        "6",
    ]);
    run_tool(&[
        "clip",
        &src_b.display().to_string(),
        &p("b.wav"),
        "--start",
        "1",
        "--seconds",
        "6",
    ]);
    // Codec-only references (bcg729 encode + decode of each clip).
    run_tool(&["loopback", &p("a.wav"), &p("a_ref.wav")]);
    run_tool(&["loopback", &p("b.wav"), &p("b_ref.wav")]);

    let out = d.dir.path("b.jsonl");
    let mut b = common::Ua {
        child: Command::new("python3")
            .arg(g729ua())
            .args(["answer", "--registrar", &d.registrar(), "--user", "1002"])
            .args(["--password", "pw1002", "--play", &p("b.wav")])
            .args(["--record", &p("rec_b.wav"), "--timeout", "60"])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(d.dir.path("b.stderr")).unwrap())
            .spawn()
            .expect("start g729ua.py"),
        out,
        name: "g729ua".into(),
    };
    b.wait_event("registered", 15);
    b.wait_event("waiting", 5);

    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([s("--dial"), s("1002"), s("--codecs"), s("PCMU")]);
    caller.extend([s("--play"), p("a.wav"), s("--record"), p("rec_a.wav")]);
    caller.extend([s("--seconds"), s("8")]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 20);

    // G.729 only was offered to 1002; 1001 got PCMU.
    let incoming = b.wait_event("incoming", 5);
    assert_eq!(incoming["offer_formats"], "18 101", "{incoming}");
    let codec = a.wait_event("codec", 5);
    assert!(
        codec["tx"].as_str().unwrap_or("").contains("PCMU"),
        "caller codec: {codec}"
    );

    // While the call is up the worker reports a transcoding channel.
    let mut seen = serde_json::Value::Null;
    d.wait_for("a transcoding channel in show workers", 10, |d| {
        let w = d.ctl_json(&["show", "workers"]);
        seen = w.clone();
        w.as_array().is_some_and(|ws| {
            ws.iter()
                .any(|w| w["transcoding_channels"].as_u64() == Some(1))
        })
    });
    // Let some audio flow, then read the CPU figure.
    b.wait_event("rtp_started", 10);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let workers = d.ctl_json(&["show", "workers"]);
    let w = &workers.as_array().unwrap()[0];
    let per = w["codec_ns_per_channel_second"].as_u64().unwrap_or(0);
    assert!(per > 0, "no codec CPU measured: {w} (earlier: {seen})");
    eprintln!(
        "transcoding CPU per channel: {per} ns/s = {:.3}% of a core",
        per as f64 / 1e7
    );
    let (code, table) = d.ctl(&["show", "workers"]);
    assert_eq!(code, 0);
    assert!(table.contains("TRANSCODING"), "{table}");

    assert_eq!(a.wait(40), 0, "caller flow failed: {:?}", a.events());
    assert_eq!(b.wait(20), 0, "callee flow failed: {:?}", b.events());
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
    let w = d.ctl_json(&["show", "workers"]);
    assert_eq!(w[0]["transcoding_channels"], 0, "{w}");

    let (ref_ab, _) = corr(&d.dir.path("a.wav"), &d.dir.path("a_ref.wav"));
    let (ref_ba, _) = corr(&d.dir.path("b.wav"), &d.dir.path("b_ref.wav"));
    let (ab, vab) = corr(&d.dir.path("a.wav"), &d.dir.path("rec_b.wav"));
    let (ba, vba) = corr(&d.dir.path("b.wav"), &d.dir.path("rec_a.wav"));
    eprintln!(
        "1001->1002 {ab:.3} (bcg729 alone {ref_ab:.3}); 1002->1001 {ba:.3} (alone {ref_ba:.3})"
    );
    // On a miss, say what each UA saw (its RTP stats and recording) and
    // what the daemon did, so a failure explains itself.
    let why = || {
        format!(
            "caller events {:?}\ncallee events {:?}\ncaller stderr {}\ncallee stderr {}\nworkers {w}",
            a.events(),
            b.events(),
            std::fs::read_to_string(d.dir.path("a.stderr")).unwrap_or_default(),
            std::fs::read_to_string(d.dir.path("b.stderr")).unwrap_or_default()
        )
    };
    assert!(
        ab >= 0.8 && ab >= ref_ab - 0.05,
        "PCMU caller -> G.729 callee: {vab} (codec-only reference {ref_ab})\n{}",
        why()
    );
    assert!(
        ba >= 0.8 && ba >= ref_ba - 0.05,
        "G.729 callee -> PCMU caller: {vba} (codec-only reference {ref_ba})\n{}",
        why()
    );
}
