//! `$[ expression ]`: Asterisk's expression language, the part dialplans use for `GotoIf`.
//!
//! Operators, lowest precedence first: `|` (left if true, else right), `&` (left if both
//! true, else 0), comparisons `= == != < > <= >=` (1 or 0; numeric when both sides are numbers,
//! string comparison otherwise), `+ -`, `* / %`, unary `- !`, parentheses. Operands are numbers,
//! bare words or `"quoted strings"`. Arithmetic is done in floating point and printed without a
//! fraction when whole (`$[5/2]` is `2.5`, `$[4/2]` is `2`), as Asterisk does.
//!
//! Variables are already substituted when the evaluator runs. Anything it cannot read is an
//! [`ExprError`]; the caller logs it and uses an empty result (false), which is also what
//! Asterisk does with a malformed expression.

use std::cmp::Ordering;

/// The expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expression '{expr}': {msg}")]
pub(crate) struct ExprError {
    pub(crate) expr: String,
    pub(crate) msg: String,
}

/// Evaluates an expression (the text between `$[` and `]`, variables substituted).
pub(crate) fn eval(text: &str) -> Result<String, ExprError> {
    let err = |msg: String| ExprError {
        expr: text.to_string(),
        msg,
    };
    let tokens = tokenize(text).map_err(err)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let v = p.or().map_err(err)?;
    if let Some(t) = p.tokens.get(p.pos) {
        return Err(err(format!("unexpected '{}'", t.text())));
    }
    Ok(v)
}

/// Truth as Asterisk's `GotoIf` sees it: empty and numeric zero are false, anything else true.
pub(crate) fn is_true(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() {
        return false;
    }
    match number(v) {
        Some(n) => n != 0.0,
        None => true,
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Op(&'static str),
}

impl Token {
    fn text(&self) -> &str {
        match self {
            Token::Word(w) => w,
            Token::Op(o) => o,
        }
    }
}

/// Longest operators first so `<=` is not read as `<` `=`.
const OPS: [&str; 16] = [
    "==", "!=", "<=", ">=", "|", "&", "=", "<", ">", "+", "-", "*", "/", "%", "!", "(",
];

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else { break };
        if c == ')' {
            out.push(Token::Op(")"));
            rest = &rest[1..];
        } else if c == '"' {
            let end = rest[1..].find('"').ok_or("unterminated quoted string")?;
            out.push(Token::Word(rest[1..1 + end].to_string()));
            rest = &rest[end + 2..];
        } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Token::Op(op));
            rest = &rest[op.len()..];
        } else {
            let end = rest
                .find(|ch: char| {
                    ch.is_whitespace() || ch == '"' || ch == ')' || "|&=<>+-*/%!(".contains(ch)
                })
                .unwrap_or(rest.len());
            out.push(Token::Word(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Nesting depth, bounded so a hostile expression cannot overflow the stack.
    depth: u32,
}

const MAX_DEPTH: u32 = 64;

impl Parser {
    fn peek_op(&self) -> Option<&'static str> {
        match self.tokens.get(self.pos) {
            Some(Token::Op(o)) => Some(o),
            _ => None,
        }
    }

    fn binary(
        &mut self,
        ops: &[&str],
        next: fn(&mut Parser) -> Result<String, String>,
        apply: fn(&str, &str, &str) -> Result<String, String>,
    ) -> Result<String, String> {
        let mut left = next(self)?;
        while let Some(op) = self.peek_op().filter(|o| ops.contains(o)) {
            self.pos += 1;
            let right = next(self)?;
            left = apply(op, &left, &right)?;
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<String, String> {
        self.binary(&["|"], Parser::and, |_, l, r| {
            Ok(if is_true(l) { l } else { r }.to_string())
        })
    }

    fn and(&mut self) -> Result<String, String> {
        self.binary(&["&"], Parser::comparison, |_, l, r| {
            Ok(if is_true(l) && is_true(r) {
                l.to_string()
            } else {
                "0".to_string()
            })
        })
    }

    fn comparison(&mut self) -> Result<String, String> {
        self.binary(
            &["=", "==", "!=", "<", ">", "<=", ">="],
            Parser::additive,
            |op, l, r| {
                let ord = match (number(l), number(r)) {
                    (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
                    _ => l.cmp(r),
                };
                let t = match op {
                    "=" | "==" => ord == Ordering::Equal,
                    "!=" => ord != Ordering::Equal,
                    "<" => ord == Ordering::Less,
                    ">" => ord == Ordering::Greater,
                    "<=" => ord != Ordering::Greater,
                    _ => ord != Ordering::Less,
                };
                Ok(if t { "1" } else { "0" }.to_string())
            },
        )
    }

    fn additive(&mut self) -> Result<String, String> {
        self.binary(&["+", "-"], Parser::multiplicative, arith)
    }

    fn multiplicative(&mut self) -> Result<String, String> {
        self.binary(&["*", "/", "%"], Parser::unary, arith)
    }

    fn unary(&mut self) -> Result<String, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("expression nested too deeply".into());
        }
        let r = match self.peek_op() {
            Some("-") => {
                self.pos += 1;
                let v = self.unary()?;
                let n = number(&v).ok_or_else(|| format!("'-' applied to non-number '{v}'"))?;
                Ok(format_number(-n))
            }
            Some("!") => {
                self.pos += 1;
                let v = self.unary()?;
                Ok(if is_true(&v) { "0" } else { "1" }.to_string())
            }
            _ => self.primary(),
        };
        self.depth -= 1;
        r
    }

    fn primary(&mut self) -> Result<String, String> {
        match self.tokens.get(self.pos).cloned() {
            Some(Token::Word(w)) => {
                self.pos += 1;
                Ok(w)
            }
            Some(Token::Op("(")) => {
                self.pos += 1;
                let v = self.or()?;
                if self.peek_op() != Some(")") {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(v)
            }
            Some(Token::Op(o)) => Err(format!("expected a value, found '{o}'")),
            None => Err("expected a value, found the end".into()),
        }
    }
}

fn arith(op: &str, l: &str, r: &str) -> Result<String, String> {
    let (Some(a), Some(b)) = (number(l), number(r)) else {
        return Err(format!("'{l}' {op} '{r}': not numbers"));
    };
    let v = match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" | "%" if b == 0.0 => return Err("division by zero".into()),
        "/" => a / b,
        _ => a % b,
    };
    Ok(format_number(v))
}

fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    // Only plain decimal numbers: "inf", "nan" and "1e5" are words, not numbers.
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+')
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("1 + 2", "3"),
            ("2 * 3 + 1", "7"),
            ("2 * (3 + 1)", "8"),
            ("5 / 2", "2.5"),
            ("4/2", "2"),
            ("7 % 3", "1"),
            ("-3 + 1", "-2"),
            ("1002 = 1002", "1"),
            ("1002 == 1003", "0"),
            ("10 > 9", "1"),
            ("abc < abd", "1"),
            ("\"BUSY\" = \"BUSY\"", "1"),
            ("BUSY != ANSWER", "1"),
            ("0 | 5", "5"),
            ("3 | 5", "3"),
            ("1 & 0", "0"),
            ("2 & 3", "2"),
            ("!0", "1"),
            ("!abc", "0"),
            ("1 < 2 & 3 > 2", "1"),
            ("\"\" = \"\"", "1"),
            ("10 >= 10", "1"),
            ("9 <= 8", "0"),
        ];
        for (expr, want) in cases {
            assert_eq!(eval(expr).as_deref(), Ok(want), "{expr}");
        }
    }

    #[test]
    fn errors() {
        for expr in ["1 +", "(1", "= 1", "a + 1", "1 / 0", "\"x", "1 2"] {
            assert!(eval(expr).is_err(), "{expr}");
        }
        let deep = "(".repeat(10_000);
        assert!(eval(&deep).is_err());
    }

    #[test]
    fn truth() {
        for (v, t) in [
            ("", false),
            ("0", false),
            (" 0 ", false),
            ("1", true),
            ("-1", true),
            ("x", true),
        ] {
            assert_eq!(is_true(v), t, "{v:?}");
        }
    }
}
