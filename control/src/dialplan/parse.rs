//! `extensions.conf` text to [`Dialplan`].
//!
//! One pass over the lines, then the includes are checked (an include of a context that does
//! not exist is reported at the `include =>` line) and each context's extensions are sorted
//! most specific first.

use std::collections::{BTreeMap, HashMap};

use super::pattern::Pattern;
use super::{App, Context, Dialplan, DialplanError, Extension, Instruction};

/// Where lines currently go.
enum Section {
    /// Before the first `[...]`.
    None,
    General,
    Globals,
    Context(usize),
}

struct Builder<'a> {
    file: &'a str,
    plan: Dialplan,
    /// Per context: extension key -> index in `extensions`, for merging lines.
    ext_keys: Vec<HashMap<String, usize>>,
    /// Per context: line of each `include =>`, for error messages.
    include_lines: Vec<Vec<usize>>,
    /// Per context: the extension the last `exten =>` line named (for `same =>`).
    last_ext: Vec<Option<usize>>,
    /// Per (context, extension): line where each priority was defined.
    prio_lines: HashMap<(usize, usize, u32), usize>,
}

pub(super) fn parse(text: &str, file: &str) -> Result<Dialplan, DialplanError> {
    let mut b = Builder {
        file,
        plan: Dialplan {
            contexts: Vec::new(),
            index: HashMap::new(),
            globals: HashMap::new(),
        },
        ext_keys: Vec::new(),
        include_lines: Vec::new(),
        last_ext: Vec::new(),
        prio_lines: HashMap::new(),
    };
    let mut section = Section::None;
    let mut in_block_comment = false;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = strip_comments(raw, &mut in_block_comment);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            return Err(b.err(
                line_no,
                format!("'{line}': #include and #exec are not supported"),
            ));
        }
        if let Some(rest) = line.strip_prefix('[') {
            section = b.section(line_no, rest)?;
            continue;
        }
        let Some(eq) = line.find('=') else {
            return Err(b.err(line_no, format!("expected 'key => value', found '{line}'")));
        };
        let key = line[..eq].trim();
        let value = line[eq + 1..]
            .strip_prefix('>')
            .unwrap_or(&line[eq + 1..])
            .trim();
        match section {
            Section::None => {
                return Err(b.err(
                    line_no,
                    "line before the first [context] header".to_string(),
                ))
            }
            Section::General => {}
            Section::Globals => {
                b.plan.globals.insert(key.to_string(), value.to_string());
            }
            Section::Context(ctx) => b.context_line(line_no, ctx, key, value)?,
        }
    }
    b.finish()
}

impl Builder<'_> {
    fn err(&self, line: usize, msg: String) -> DialplanError {
        DialplanError {
            file: self.file.to_string(),
            line,
            msg,
        }
    }

    /// `[name]` header (after the `[`).
    fn section(&mut self, line_no: usize, rest: &str) -> Result<Section, DialplanError> {
        let Some(close) = rest.find(']') else {
            return Err(self.err(line_no, "context header without closing ']'".into()));
        };
        let name = rest[..close].trim();
        let after = rest[close + 1..].trim();
        if !after.is_empty() {
            return Err(self.err(
                line_no,
                format!("'[{name}]{after}': context templates are not supported"),
            ));
        }
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(self.err(line_no, format!("invalid context name '{name}'")));
        }
        Ok(match name {
            "general" => Section::General,
            "globals" => Section::Globals,
            _ => Section::Context(self.context_index(name)),
        })
    }

    fn context_index(&mut self, name: &str) -> usize {
        if let Some(&i) = self.plan.index.get(name) {
            return i;
        }
        let i = self.plan.contexts.len();
        self.plan.contexts.push(Context {
            name: name.to_string(),
            extensions: Vec::new(),
            includes: Vec::new(),
        });
        self.plan.index.insert(name.to_string(), i);
        self.ext_keys.push(HashMap::new());
        self.include_lines.push(Vec::new());
        self.last_ext.push(None);
        i
    }

    fn context_line(
        &mut self,
        line_no: usize,
        ctx: usize,
        key: &str,
        value: &str,
    ) -> Result<(), DialplanError> {
        match key.to_ascii_lowercase().as_str() {
            "exten" => self.exten_line(line_no, ctx, value, false),
            "same" => self.exten_line(line_no, ctx, value, true),
            "include" => {
                if value.contains(',') || value.contains('|') {
                    return Err(self.err(
                        line_no,
                        format!("include '{value}': time-conditional includes are not supported"),
                    ));
                }
                if value.is_empty() {
                    return Err(self.err(line_no, "include without a context name".into()));
                }
                self.plan.contexts[ctx].includes.push(value.to_string());
                self.include_lines[ctx].push(line_no);
                Ok(())
            }
            "ignorepat" => Ok(()),
            "switch" | "lswitch" | "eswitch" => {
                Err(self.err(line_no, format!("'{key}' is not supported")))
            }
            _ => Err(self.err(
                line_no,
                format!("unknown keyword '{key}' (expected exten, same, include or ignorepat)"),
            )),
        }
    }

    /// `exten => name,priority,App(args)` or `same => priority,App(args)`.
    fn exten_line(
        &mut self,
        line_no: usize,
        ctx: usize,
        value: &str,
        same: bool,
    ) -> Result<(), DialplanError> {
        let (ext_idx, rest) = if same {
            let Some(e) = self.last_ext[ctx] else {
                return Err(self.err(line_no, "'same =>' with no 'exten =>' before it".into()));
            };
            (e, value)
        } else {
            let Some((name, rest)) = value.split_once(',') else {
                return Err(self.err(
                    line_no,
                    format!("'exten => {value}': expected 'exten => name,priority,App(args)'"),
                ));
            };
            let name = name.trim();
            // Hints tie an extension to a device state; there are no device states here.
            if rest.trim_start().to_ascii_lowercase().starts_with("hint") {
                return Ok(());
            }
            let pattern = Pattern::parse(name).map_err(|m| self.err(line_no, m))?;
            let key = match &pattern {
                Pattern::Exact(n) => n.clone(),
                Pattern::Match(_) => name.to_string(),
            };
            let idx = match self.ext_keys[ctx].get(&key) {
                Some(&i) => i,
                None => {
                    let exts = &mut self.plan.contexts[ctx].extensions;
                    exts.push(Extension {
                        pattern,
                        priorities: BTreeMap::new(),
                        labels: HashMap::new(),
                    });
                    self.ext_keys[ctx].insert(key, exts.len() - 1);
                    exts.len() - 1
                }
            };
            self.last_ext[ctx] = Some(idx);
            (idx, rest)
        };

        let Some((prio_text, app_text)) = rest.split_once(',') else {
            return Err(self.err(
                line_no,
                format!(
                    "'{}': expected 'priority,App(args)' after the extension",
                    rest.trim()
                ),
            ));
        };
        let (prio_text, label) = split_label(prio_text.trim()).map_err(|m| self.err(line_no, m))?;
        let ext = &self.plan.contexts[ctx].extensions[ext_idx];
        let priority = match prio_text {
            "n" | "N" => match ext.priorities.keys().next_back() {
                Some(&last) if last < u32::MAX => last + 1,
                Some(_) => return Err(self.err(line_no, "priority 'n' overflows".into())),
                None => {
                    return Err(self.err(
                        line_no,
                        "priority 'n' on the first line of an extension (use 1)".into(),
                    ))
                }
            },
            p => match p.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(self.err(
                        line_no,
                        format!("invalid priority '{p}' (expected a number >= 1, 'n' or 'hint')"),
                    ))
                }
            },
        };
        let instruction = parse_app(app_text.trim()).map_err(|m| self.err(line_no, m))?;

        if let Some(first) = self.prio_lines.get(&(ctx, ext_idx, priority)) {
            return Err(self.err(
                line_no,
                format!("duplicate priority {priority} for this extension (first defined at line {first})"),
            ));
        }
        if let Some(label) = &label {
            if let Some(p) = ext.labels.get(label) {
                return Err(self.err(
                    line_no,
                    format!("duplicate label '{label}' (already priority {p} of this extension)"),
                ));
            }
        }
        self.prio_lines.insert((ctx, ext_idx, priority), line_no);
        let ext = &mut self.plan.contexts[ctx].extensions[ext_idx];
        ext.priorities.insert(priority, instruction);
        if let Some(label) = label {
            ext.labels.insert(label, priority);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Dialplan, DialplanError> {
        for (ctx, lines) in self.include_lines.iter().enumerate() {
            for (inc, &line) in self.plan.contexts[ctx].includes.iter().zip(lines) {
                if !self.plan.index.contains_key(inc) {
                    return Err(self.err(line, format!("include of unknown context '{inc}'")));
                }
            }
        }
        for ctx in &mut self.plan.contexts {
            // Stable sort: equal patterns cannot occur (they were merged by key).
            ctx.extensions
                .sort_by(|a, b| a.pattern.cmp_specificity(&b.pattern));
        }
        Ok(self.plan)
    }
}

/// `n(label)` / `1(label)` -> ("n", Some("label")).
fn split_label(p: &str) -> Result<(&str, Option<String>), String> {
    let Some(open) = p.find('(') else {
        if p.contains('+') || p.contains('-') {
            return Err(format!(
                "priority '{p}': offsets (label+N) are not supported"
            ));
        }
        return Ok((p, None));
    };
    let Some(inner) = p[open + 1..].strip_suffix(')') else {
        return Err(format!("priority '{p}': label without closing ')'"));
    };
    let label = inner.trim();
    if label.is_empty()
        || !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!("priority '{p}': invalid label '{label}'"));
    }
    Ok((p[..open].trim(), Some(label.to_string())))
}

/// `App(args)` or `App`.
fn parse_app(text: &str) -> Result<Instruction, String> {
    let (name, args) = match text.find('(') {
        Some(open) => {
            let Some(args) = text[open + 1..].strip_suffix(')') else {
                return Err(format!("'{text}': application arguments must end with ')'"));
            };
            (text[..open].trim(), args)
        }
        None => (text, ""),
    };
    if name.is_empty() {
        return Err("missing application name".into());
    }
    if name.contains(',') {
        return Err(format!(
            "'{text}': application arguments must be in parentheses, e.g. Dial(SIP/100)"
        ));
    }
    let app = App::from_name(name)
        .ok_or_else(|| format!("unknown application '{name}' (supported: {})", App::names()))?;
    Ok(Instruction {
        app,
        args: args.to_string(),
    })
}

/// Removes `;` comments (keeping `\;` as a literal `;`) and `;-- block comments --;`.
fn strip_comments(line: &str, in_block: &mut bool) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        if *in_block {
            match rest.find("--;") {
                Some(end) => {
                    *in_block = false;
                    rest = &rest[end + 3..];
                }
                None => return out,
            }
        }
        let Some(semi) = rest.find(';') else {
            out.push_str(rest);
            return out;
        };
        if rest[..semi].ends_with('\\') {
            out.push_str(&rest[..semi - 1]);
            out.push(';');
            rest = &rest[semi + 1..];
            continue;
        }
        out.push_str(&rest[..semi]);
        if rest[semi..].starts_with(";--") {
            *in_block = true;
            rest = &rest[semi + 3..];
            continue;
        }
        return out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments() {
        let mut b = false;
        assert_eq!(strip_comments("a ; b", &mut b), "a ");
        assert_eq!(strip_comments("Set(X=a\\;b) ; c", &mut b), "Set(X=a;b) ");
        assert_eq!(strip_comments("x ;-- start", &mut b), "x ");
        assert!(b);
        assert_eq!(strip_comments("inside", &mut b), "");
        assert_eq!(strip_comments("end --; y", &mut b), " y");
        assert!(!b);
        assert_eq!(strip_comments("p ;-- one line --; q", &mut b), "p  q");
    }

    #[test]
    fn labels() {
        assert_eq!(split_label("n(loop)").unwrap(), ("n", Some("loop".into())));
        assert_eq!(split_label("1").unwrap(), ("1", None));
        assert!(split_label("n(").is_err());
        assert!(split_label("loop+1").is_err());
    }

    #[test]
    fn apps_case_insensitive() {
        assert_eq!(parse_app("dial(SIP/1)").unwrap().app, App::Dial);
        assert_eq!(parse_app("NOOP").unwrap().app, App::NoOp);
        assert!(parse_app("Dial,SIP/1").unwrap_err().contains("parentheses"));
        assert!(parse_app("Dial(SIP/1").unwrap_err().contains("')'"));
        assert!(parse_app("Frobnicate()")
            .unwrap_err()
            .contains("unknown application 'Frobnicate'"));
    }
}
