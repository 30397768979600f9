//! Every dialplan load error names file:line and what is wrong.

use control::dialplan::Dialplan;

#[test]
fn errors_name_file_line_and_problem() {
    // (text, line, substring of the message)
    let cases: &[(&str, usize, &str)] = &[
        (
            "[c]\nexten => 1,1,Frobnicate()\n",
            2,
            "unknown application 'Frobnicate'",
        ),
        (
            "[c]\n\n; comment\nexten => 1,1,Queue(support)\n",
            4,
            "unknown application 'Queue'",
        ),
        ("exten => 1,1,Answer()\n", 1, "before the first [context]"),
        ("[c\n", 1, "closing ']'"),
        ("[c](tmpl)\n", 1, "templates are not supported"),
        ("[]\n", 1, "invalid context name"),
        (
            "[c]\nsame => n,Answer()\n",
            2,
            "'same =>' with no 'exten =>'",
        ),
        (
            "[c]\nexten => 1,n,Answer()\n",
            2,
            "priority 'n' on the first line",
        ),
        ("[c]\nexten => 1,0,Answer()\n", 2, "invalid priority '0'"),
        ("[c]\nexten => 1,x,Answer()\n", 2, "invalid priority 'x'"),
        (
            "[c]\nexten => 1,1,Answer()\nexten => 1,1,Hangup()\n",
            3,
            "duplicate priority 1",
        ),
        (
            "[c]\nexten => 1,1(a),Answer()\n same => n(a),Hangup()\n",
            3,
            "duplicate label 'a'",
        ),
        ("[c]\nexten => 1,1,Dial(SIP/1\n", 2, "must end with ')'"),
        ("[c]\nexten => 1,1,Dial,SIP/1\n", 2, "in parentheses"),
        ("[c]\nexten => 1,1\n", 2, "expected 'priority,App(args)'"),
        (
            "[c]\nexten => 1\n",
            2,
            "expected 'exten => name,priority,App(args)'",
        ),
        (
            "[c]\nexten => _1[23,1,Answer()\n",
            2,
            "without a closing ']'",
        ),
        (
            "[c]\nexten => 100/555,1,Answer()\n",
            2,
            "caller-ID matching",
        ),
        (
            "[c]\ninclude => nowhere\n",
            2,
            "include of unknown context 'nowhere'",
        ),
        (
            "[c]\ninclude => d,9:00-17:00,*,*,*\n[d]\n",
            2,
            "time-conditional",
        ),
        (
            "[c]\nswitch => Realtime/x\n",
            2,
            "'switch' is not supported",
        ),
        ("[c]\nfoo => bar\n", 2, "unknown keyword 'foo'"),
        ("[c]\njust text\n", 2, "expected 'key => value'"),
        ("#include other.conf\n", 1, "#include"),
        ("[c]\nexten => 1,1(a b),Answer()\n", 2, "invalid label"),
        ("[c]\nexten => 1,lbl+1,Answer()\n", 2, "offsets"),
    ];
    for &(text, line, needle) in cases {
        let err = Dialplan::parse(text, "extensions.conf").expect_err(text);
        assert_eq!(err.file, "extensions.conf", "{text}");
        assert_eq!(err.line, line, "{text}: {err}");
        assert!(err.msg.contains(needle), "{text}: {err}");
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("extensions.conf:{line}: ")),
            "{shown}"
        );
    }
}

#[test]
fn accepted_syntax() {
    let text = "\
[general]
static=yes
writeprotect=no
[globals]
TRUNK=pstn ; trailing comment
[c]
exten = 1,1,Answer()          ; single '=' works too
exten => 1,hint,SIP/1         ; hints are ignored
exten => 2,1,Set(X=a\\;b)       ; escaped semicolon
ignorepat => 9
;-- a block
comment --;
[c]
exten => 3,1,Hangup()         ; a context may be reopened
[d]
include => c
";
    let p = Dialplan::parse(text, "x.conf").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.contexts().collect::<Vec<_>>(), ["c", "d"]);
    assert!(!p.has_context("general") && !p.has_context("globals"));
    assert_eq!(p.globals().get("TRUNK").map(String::as_str), Some("pstn"));
    for e in ["1", "2", "3"] {
        assert!(p.exists("d", e, 1), "{e} via include");
    }
    assert!(!p.exists("c", "1", 2));
}
