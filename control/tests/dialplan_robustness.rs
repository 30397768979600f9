//! Mutated dialplans and hostile arguments never panic the parser or an execution, and every
//! execution stays bounded (a seeded, bounded stand-in for a fuzz target).

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use control::dialplan::{Channel, DialStatus, Dialplan, Execution, Step};

const SEED_PLAN: &str = "\
[globals]
X=1
[c]
exten => _1XXX,1,Set(A=${EXTEN:1:2})
 same => n(top),GotoIf($[${A} > 10 & ${LEN(${A})} = 2]?dial:c,600,1)
 same => n(dial),Dial(SIP/${EXTEN}&SIP/t/${A},${X},g)
 same => n,GotoIf($[\"${DIALSTATUS}\" = \"BUSY\"]?top)
 same => n,Hangup(17)
exten => 600,1,Answer()
 same => n,Wait(${X}.5)
 same => n,Goto(c,_1XXX,top)
include => d
[d]
exten => _X!,1,Playback(${CALLERID(num):-3})
";

const TOKENS: &[&str] = &[
    "\n",
    ",",
    "(",
    ")",
    "${",
    "}",
    "$[",
    "]",
    "?",
    ":",
    "_",
    "[",
    "!",
    ".",
    "n",
    "=>",
    "Goto(1)",
    "GotoIf(1?1:2)",
    "${EXTEN:-99:-99}",
    "4294967295",
    "-",
    ";",
    "\\",
    "\u{e9}",
    "same => n,Goto(c,1000,top)\n",
    "$[1/0]",
    "$[((((((",
    "${${${",
];

fn mutate(rng: &mut StdRng, seed: &str) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..rng.gen_range(1..5) {
        let at = rng.gen_range(0..=s.len());
        match rng.gen_range(0..3) {
            0 if at < s.len() => {
                s.remove(at);
            }
            1 => s.insert(at, char::from(rng.gen_range(0x20u8..0x7f))),
            _ => {
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                for (i, c) in t.chars().enumerate() {
                    s.insert(at + i, c);
                }
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn mutated_plans_never_panic_and_executions_stay_bounded() {
    let mut rng = StdRng::seed_from_u64(0xd1a1);
    let mut ran = 0;
    for i in 0..3000 {
        let text = mutate(&mut rng, SEED_PLAN);
        let Ok(plan) = Dialplan::parse(&text, "fuzz.conf") else {
            continue;
        };
        let plan = Arc::new(plan);
        for exten in ["1234", "600", "5", "", "1999"] {
            let chan = Channel {
                exten: exten.into(),
                caller_num: "+4930123".into(),
                ..Default::default()
            };
            let Ok(mut x) = Execution::start(Arc::clone(&plan), "c", chan) else {
                continue;
            };
            ran += 1;
            // A plan may loop through channel steps (Wait/Dial) forever, which the call layer
            // bounds in time; what must not happen is a panic or a hang inside `next`.
            for _ in 0..50 {
                match x.next() {
                    Step::Hangup { .. } => break,
                    Step::Dial { .. } => x.dial_result(if i % 2 == 0 {
                        DialStatus::Busy
                    } else {
                        DialStatus::NoAnswer
                    }),
                    _ => {}
                }
            }
        }
    }
    assert!(ran > 1000, "too few mutated plans executed: {ran}");
}

#[test]
fn hostile_arguments() {
    let deep = "${".repeat(2000) + &"}".repeat(2000);
    let expr = "$[".to_string() + &"(".repeat(5000) + "]";
    let text = format!(
        "[c]\nexten => 1,1,Set(A={deep})\n same => n,GotoIf({expr}?2:3)\n same => n,Playback(${{A}})\n"
    );
    let plan = Arc::new(Dialplan::parse(&text, "x.conf").unwrap());
    let mut x = Execution::start(
        plan,
        "c",
        Channel {
            exten: "1".into(),
            ..Default::default()
        },
    )
    .unwrap();
    // The expression is malformed, so it is false and the plan goes to priority 3.
    assert!(matches!(x.next(), Step::Playback(_)));
}
