//! Dialplans run end to end through `Execution`: the embedded default, Dial and
//! `${DIALSTATUS}`, GotoIf, includes, pattern order, substitution in arguments, loop guard.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use control::dialplan::{Channel, DialStatus, DialTarget, Dialplan, ExecError, Execution, Step};

fn plan(text: &str) -> Arc<Dialplan> {
    Arc::new(Dialplan::parse(text, "extensions.conf").unwrap_or_else(|e| panic!("{e}")))
}

fn chan(exten: &str) -> Channel {
    Channel {
        exten: exten.into(),
        caller_num: "1001".into(),
        caller_name: "Alice".into(),
        vars: HashMap::new(),
    }
}

fn start(p: &Arc<Dialplan>, ctx: &str, exten: &str) -> Execution {
    Execution::start(Arc::clone(p), ctx, chan(exten)).unwrap_or_else(|e| panic!("{e}"))
}

fn sip(resource: &str) -> DialTarget {
    DialTarget {
        tech: "SIP".into(),
        resource: resource.into(),
    }
}

fn hangup() -> Step {
    Step::Hangup { cause: None }
}

#[test]
fn embedded_default_dials_1xxx_and_echoes_600() {
    let p = Arc::new(Dialplan::embedded_default());
    assert!(p.has_context("default"));
    assert_eq!(p.contexts().collect::<Vec<_>>(), ["default"]);
    assert!(Dialplan::EMBEDDED_DEFAULT.contains("exten => _1XXX,1,Dial(SIP/${EXTEN},30)"));

    let mut x = start(&p, "default", "1002");
    assert_eq!(
        x.next(),
        Step::Dial {
            targets: vec![sip("1002")],
            timeout: Some(Duration::from_secs(30)),
            options: String::new()
        }
    );
    x.dial_result(DialStatus::NoAnswer);
    assert_eq!(x.var("DIALSTATUS"), Some("NOANSWER"));
    assert_eq!(x.next(), hangup());
    assert_eq!(x.next(), hangup(), "stays hung up");

    let mut x = start(&p, "default", "600");
    assert_eq!(x.next(), Step::Answer);
    assert_eq!(x.next(), Step::Echo);
    assert_eq!(x.next(), hangup());

    for missing in ["999", "10020", "2002", ""] {
        assert!(
            matches!(
                Execution::start(Arc::clone(&p), "default", chan(missing)),
                Err(ExecError::NoSuchExtension { .. })
            ),
            "{missing:?}"
        );
    }
    assert_eq!(
        Execution::start(Arc::clone(&p), "nope", chan("1002")).unwrap_err(),
        ExecError::NoSuchContext("nope".into())
    );
}

#[test]
fn answered_dial_ends_the_plan_unless_g() {
    let p = plan(
        "[c]\n\
         exten => 1,1,Dial(SIP/a)\n same => n,Playback(after)\n\
         exten => 2,1,Dial(SIP/a,,g)\n same => n,Playback(after)\n",
    );
    let mut x = start(&p, "c", "1");
    assert!(matches!(x.next(), Step::Dial { timeout: None, .. }));
    x.dial_result(DialStatus::Answer);
    assert_eq!(x.var("DIALSTATUS"), Some("ANSWER"));
    assert_eq!(x.next(), hangup());

    let mut x = start(&p, "c", "2");
    assert!(matches!(x.next(), Step::Dial { ref options, .. } if options == "g"));
    x.dial_result(DialStatus::Answer);
    assert_eq!(x.next(), Step::Playback("after".into()));
}

#[test]
fn dialstatus_drives_gotoif() {
    // A classic voicemail-less fallback: busy -> 486-like hangup, no answer -> second phone.
    let p = plan(
        "[from-internal]\n\
         exten => _1XXX,1,Dial(SIP/${EXTEN}&SIP/desk-${EXTEN},20,tT)\n\
          same => n,GotoIf($[\"${DIALSTATUS}\" = \"BUSY\"]?busy)\n\
          same => n,GotoIf($[${DIALSTATUS} = NOANSWER]?fallback,1:end)\n\
          same => n(busy),Hangup(17)\n\
          same => n(end),Hangup()\n\
         exten => fallback,1,Dial(SIP/trunk/5551234,,r)\n",
    );
    let table = [
        (DialStatus::Busy, Step::Hangup { cause: Some(17) }),
        (
            DialStatus::NoAnswer,
            Step::Dial {
                targets: vec![sip("trunk/5551234")],
                timeout: None,
                options: "r".into(),
            },
        ),
        (DialStatus::Congestion, hangup()),
        (DialStatus::ChanUnavail, hangup()),
        (DialStatus::Cancel, hangup()),
    ];
    for (status, want) in table {
        let mut x = start(&p, "from-internal", "1234");
        assert_eq!(
            x.next(),
            Step::Dial {
                targets: vec![sip("1234"), sip("desk-1234")],
                timeout: Some(Duration::from_secs(20)),
                options: "tT".into()
            }
        );
        x.dial_result(status);
        assert_eq!(x.next(), want, "{status:?}");
        if status == DialStatus::NoAnswer {
            assert_eq!(x.exten(), "fallback");
            assert_eq!(x.var("EXTEN"), Some("fallback"));
        }
    }
}

#[test]
fn gotoif_arithmetic_and_labels_across_contexts() {
    let p = plan(
        "[globals]\nLIMIT=1500\n\
         [in]\n\
         exten => _1XXX,1,GotoIf($[${EXTEN} > ${LIMIT}]?high)\n\
          same => n,Playback(low)\n\
          same => n,Goto(out,s,done)\n\
          same => n(high),Playback(high-${EXTEN:-2})\n\
          same => n,Goto(out,s,1)\n\
         [out]\n\
         exten => s,1,Playback(out-${CONTEXT})\n\
          same => n(done),Hangup(16)\n",
    );
    let mut x = start(&p, "in", "1234");
    assert_eq!(x.next(), Step::Playback("low".into()));
    assert_eq!(x.next(), Step::Hangup { cause: Some(16) });
    assert_eq!((x.context(), x.exten()), ("out", "s"));

    let mut x = start(&p, "in", "1600");
    assert_eq!(x.next(), Step::Playback("high-00".into()));
    assert_eq!(x.next(), Step::Playback("out-out".into()));
    assert_eq!(x.next(), Step::Hangup { cause: Some(16) });
}

#[test]
fn set_callerid_and_substrings() {
    let p = plan(
        "[out]\n\
         exten => _9NXXXXXX,1,Set(CALLERID(num)=+4930${CALLERID(num)})\n\
          same => n,Set(TRUNK=pstn)\n\
          same => n,Set(__INHERIT=x=y)\n\
          same => n,Dial(SIP/${TRUNK}/${EXTEN:1},45)\n",
    );
    let mut x = start(&p, "out", "95551234");
    assert_eq!(
        x.next(),
        Step::Dial {
            targets: vec![sip("pstn/5551234")],
            timeout: Some(Duration::from_secs(45)),
            options: String::new()
        }
    );
    assert_eq!(x.caller_num(), "+49301001");
    assert_eq!(x.var("INHERIT"), Some("x=y"));
    assert_eq!(x.var("TRUNK"), Some("pstn"));
}

#[test]
fn most_specific_pattern_wins_whatever_the_file_order() {
    let p = plan(
        "[c]\n\
         exten => _X.,1,Playback(any)\n\
         exten => _1XXX,1,Playback(1xxx)\n\
         exten => _12XX,1,Playback(12xx)\n\
         exten => 1234,1,Playback(exact)\n\
         exten => _1!,1,Playback(bang)\n",
    );
    for (dialled, want) in [
        ("1234", "exact"),
        ("1235", "12xx"),
        ("1335", "1xxx"),
        ("13", "bang"),
        ("1", "bang"),
        ("555", "any"),
    ] {
        let mut x = start(&p, "c", dialled);
        assert_eq!(x.next(), Step::Playback(want.into()), "{dialled}");
    }
}

#[test]
fn includes_are_searched_after_local_extensions_in_order() {
    let p = plan(
        "[phones]\nexten => _1XXX,1,Playback(phones)\n\
         [trunks]\nexten => _X.,1,Playback(trunks)\nexten => _1XXX,1,Playback(trunk-1xxx)\n\
         [loop]\ninclude => entry\n\
         [entry]\n\
         exten => 1000,1,Playback(local)\n\
         include => phones\ninclude => trunks\ninclude => loop\n",
    );
    for (dialled, want) in [("1000", "local"), ("1001", "phones"), ("555", "trunks")] {
        let mut x = start(&p, "entry", dialled);
        assert_eq!(x.next(), Step::Playback(want.into()), "{dialled}");
    }
    // The include loop entry -> loop -> entry terminates.
    assert!(Execution::start(Arc::clone(&p), "loop", chan("#")).is_err());
    let mut x = start(&p, "loop", "1001");
    assert_eq!(x.next(), Step::Playback("phones".into()));
}

#[test]
fn channel_apps_and_fall_off_the_end() {
    let p = plan(
        "[c]\n\
         exten => s,1,NoOp(start ${CALLERID(name)})\n\
          same => n,Verbose(2,hello)\n\
          same => n,Log(NOTICE,hi)\n\
          same => n,Ringing()\n\
          same => n,Wait(1.5)\n\
          same => n,Progress\n\
          same => n,Answer()\n\
          same => n,Playback(tt-monkeys,noanswer)\n\
          same => n,Wait(bogus)\n\
          same => n,Busy()\n\
         exten => 7,1,Congestion(5)\n\
         exten => 8,1,Answer\n",
    );
    let mut x = start(&p, "c", "");
    assert_eq!(x.exten(), "s");
    let want = [
        Step::Ringing,
        Step::Wait(Duration::from_millis(1500)),
        Step::Progress,
        Step::Answer,
        Step::Playback("tt-monkeys".into()),
        Step::Hangup { cause: Some(17) },
    ];
    for w in want {
        assert_eq!(x.next(), w);
    }
    let mut x = start(&p, "c", "7");
    assert_eq!(x.next(), Step::Hangup { cause: Some(34) });
    let mut x = start(&p, "c", "8");
    assert_eq!(x.next(), Step::Answer);
    assert_eq!(x.next(), hangup(), "no priority 2: the plan ends");
}

#[test]
fn goto_loop_is_bounded() {
    let p = plan("[c]\nexten => 1,1,NoOp()\n same => n,Goto(1)\n");
    let mut x = start(&p, "c", "1");
    assert_eq!(x.next(), hangup());
    // A loop that waits each time is a channel loop, not a runaway: it keeps going.
    let p = plan("[c]\nexten => 1,1,Wait(1)\n same => n,Goto(1)\n");
    let mut x = start(&p, "c", "1");
    for _ in 0..5 {
        assert_eq!(x.next(), Step::Wait(Duration::from_secs(1)));
    }
}

#[test]
fn goto_to_missing_label_or_dial_without_target_is_handled() {
    let p = plan(
        "[c]\n\
         exten => 1,1,Goto(nolabel)\n\
         exten => 2,1,Dial(${NOTHING})\n same => n,Playback(${DIALSTATUS})\n",
    );
    let mut x = start(&p, "c", "1");
    assert_eq!(x.next(), hangup());
    let mut x = start(&p, "c", "2");
    assert_eq!(x.next(), Step::Playback("CHANUNAVAIL".into()));
}

#[test]
fn channel_vars_override_globals() {
    let p = plan("[globals]\nA=global\nB=global\n[c]\nexten => 1,1,Playback(${A}-${B})\n");
    let mut ch = chan("1");
    ch.vars.insert("B".into(), "chan".into());
    let mut x = Execution::start(Arc::clone(&p), "c", ch).unwrap();
    assert_eq!(x.next(), Step::Playback("global-chan".into()));
    x.set_var("A", "set");
    assert_eq!(x.var("A"), Some("set"));
}
