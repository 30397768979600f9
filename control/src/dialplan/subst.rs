//! Variable substitution in application arguments.
//!
//! - `${NAME}`: a channel variable, a `[globals]` variable or a built-in (`EXTEN`, `CONTEXT`,
//!   `PRIORITY`). Unknown names expand to the empty string, as in Asterisk.
//! - `${NAME:offset}` and `${NAME:offset:length}`: substrings. A negative offset counts from the
//!   end; a negative length leaves that many characters off the end (`${EXTEN:1}` strips a
//!   trunk prefix, `${EXTEN:-4}` keeps the last four digits).
//! - `${FUNC(args)}`, optionally with `:offset:length`: `CALLERID(num)`, `CALLERID(name)`,
//!   `CALLERID(all)`, `LEN(text)`.
//! - Nesting: the inside of `${...}` and `$[...]` is substituted first, so
//!   `${EXTEN:${SKIP}}` and `$[${EXTEN} > 1500]` work.
//! - `$[ expr ]`: see the `expr` module.
//!
//! An unterminated `${` or `$[` is left as literal text.

use super::expr;

/// Where substitution looks names up.
pub(crate) trait Scope {
    /// A variable or built-in.
    fn variable(&self, name: &str) -> Option<String>;
    /// `FUNC(arg)`; `None` for unknown functions.
    fn function(&self, name: &str, arg: &str) -> Option<String>;
}

/// Recursion bound: deeper nesting is left unexpanded rather than risking the stack.
const MAX_DEPTH: u32 = 16;

/// Expands every `${...}` and `$[...]` in `input`.
pub(crate) fn substitute(input: &str, scope: &dyn Scope) -> String {
    expand(input, scope, 0)
}

fn expand(input: &str, scope: &dyn Scope, depth: u32) -> String {
    if depth > MAX_DEPTH || !input.contains('$') {
        return input.to_string();
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (open, close) = match after.as_bytes().first() {
            Some(b'{') => (b'{', b'}'),
            Some(b'[') => (b'[', b']'),
            _ => {
                out.push('$');
                rest = after;
                continue;
            }
        };
        let Some(end) = matching(after, open, close) else {
            // Unterminated: keep the text as written.
            out.push_str(&rest[at..]);
            return out;
        };
        let inner = expand(&after[1..end], scope, depth + 1);
        if open == b'{' {
            out.push_str(&lookup(&inner, scope));
        } else {
            // A malformed expression expands to nothing (false), as in Asterisk.
            out.push_str(&expr::eval(&inner).unwrap_or_else(|e| {
                tracing::debug!("dialplan: {e}");
                String::new()
            }));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Index in `s` (which starts with `open`) of the bracket closing it.
fn matching(s: &str, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if b == open {
            depth += 1;
        } else if b == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Evaluates the (already expanded) inside of `${...}`.
fn lookup(inner: &str, scope: &dyn Scope) -> String {
    let (value, modifiers) = match inner.find('(') {
        // FUNC(args)[:offset[:length]]
        Some(open)
            if inner[..open]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            let Some(close) = inner.rfind(')') else {
                return String::new();
            };
            let name = &inner[..open];
            let arg = &inner[open + 1..close.max(open + 1)];
            let value = scope.function(name, arg).unwrap_or_default();
            (value, inner.get(close + 1..).unwrap_or(""))
        }
        _ => match inner.find(':') {
            Some(colon) => (
                scope.variable(&inner[..colon]).unwrap_or_default(),
                &inner[colon..],
            ),
            None => (scope.variable(inner).unwrap_or_default(), ""),
        },
    };
    let Some(mods) = modifiers.strip_prefix(':') else {
        return value;
    };
    let mut parts = mods.splitn(2, ':');
    let offset = parts
        .next()
        .and_then(|o| o.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let length = parts.next().and_then(|l| l.trim().parse::<i64>().ok());
    substring(&value, offset, length)
}

/// Asterisk's `${VAR:offset:length}`, on characters.
pub(crate) fn substring(value: &str, offset: i64, length: Option<i64>) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = i64::try_from(chars.len()).unwrap_or(i64::MAX);
    let start = if offset < 0 {
        (n + offset).max(0)
    } else {
        offset.min(n)
    };
    let end = match length {
        None => n,
        Some(l) if l < 0 => (n + l).max(start),
        Some(l) => start.saturating_add(l).min(n),
    };
    // start <= end <= n, all non-negative, so the conversions and the slice are in range.
    let (start, end) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end).unwrap_or(0),
    );
    chars[start..end.max(start)].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<&'static str, &'static str>);

    impl Scope for Vars {
        fn variable(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
        fn function(&self, name: &str, arg: &str) -> Option<String> {
            match (name, arg) {
                ("CALLERID", "num") => Some("5551234".into()),
                ("LEN", a) => Some(a.chars().count().to_string()),
                _ => None,
            }
        }
    }

    fn vars() -> Vars {
        Vars(HashMap::from([
            ("EXTEN", "914155551234"),
            ("SKIP", "1"),
            ("NAME", "SIP"),
            ("FOO_SIP", "nested"),
        ]))
    }

    #[test]
    fn table() {
        let cases = [
            ("plain", "plain"),
            ("${EXTEN}", "914155551234"),
            ("SIP/${EXTEN}", "SIP/914155551234"),
            ("${EXTEN:1}", "14155551234"),
            ("${EXTEN:1:3}", "141"),
            ("${EXTEN:-4}", "1234"),
            ("${EXTEN:-4:2}", "12"),
            ("${EXTEN:0:-4}", "91415555"),
            ("${EXTEN:1:-4}", "1415555"),
            ("${EXTEN:50}", ""),
            ("${EXTEN:-50}", "914155551234"),
            ("${EXTEN:${SKIP}}", "14155551234"),
            ("${FOO_${NAME}}", "nested"),
            ("${UNSET}x", "x"),
            ("${CALLERID(num)}", "5551234"),
            ("${CALLERID(num):-4}", "1234"),
            ("${LEN(${EXTEN})}", "12"),
            ("${NOSUCHFUNC(x)}", ""),
            ("$[1 + 2]", "3"),
            ("$[${SKIP} + 1]", "2"),
            ("$[${EXTEN:0:1} = 9]", "1"),
            ("$[ 1 + ]", ""),
            ("cost $5", "cost $5"),
            ("${EXTEN", "${EXTEN"),
            ("a$[1", "a$[1"),
            ("${SKIP}${SKIP}", "11"),
        ];
        let v = vars();
        for (input, want) in cases {
            assert_eq!(substitute(input, &v), want, "{input}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let input = format!("{}x{}", "${".repeat(5000), "}".repeat(5000));
        let _ = substitute(&input, &vars());
    }
}
