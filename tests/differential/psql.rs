//! Splits a psql script (PostgreSQL's regression files) into the statements
//! psql would send, the way psql's own lexer decides where one ends: a `;`
//! outside quotes, comments, parentheses and the `BEGIN ... END` body of a
//! `CREATE FUNCTION/PROCEDURE`. Meta-commands (`\...`) are skipped, except
//! that `\g`-like ones send the buffer, `\set` and `\getenv` define variables
//! and `:name`, `:'name'`, `:"name"` are interpolated. `COPY ... FROM stdin`
//! takes the lines up to `\.` as its data.

use std::collections::HashMap;

/// One statement of a script, as psql would send it.
#[derive(Debug, Clone)]
pub struct Item {
    pub sql: String,
    /// The data lines of `COPY ... FROM stdin`.
    pub copy_data: Option<String>,
    /// 1-based line where the statement starts.
    pub line: usize,
}

pub struct Script {
    vars: HashMap<String, String>,
    env: HashMap<String, String>,
}

impl Script {
    /// `env` answers `\getenv` (PG_ABS_SRCDIR and the like).
    pub fn new(env: HashMap<String, String>) -> Script {
        let mut vars = HashMap::new();
        // psql's own variables the regression files read.
        vars.insert("VERBOSITY".into(), "default".into());
        Script { vars, env }
    }

    pub fn split(&mut self, text: &str) -> Vec<Item> {
        let mut out = Vec::new();
        let mut st = Lexer::default();
        let mut buf = String::new();
        let mut start_line = 0;
        let mut lines = text.lines().enumerate();
        while let Some((ln, line)) = lines.next() {
            let chars: Vec<char> = line.chars().collect();
            let mut i = 0;
            if buf.trim().is_empty() {
                start_line = ln + 1;
            }
            while i < chars.len() {
                let c = chars[i];
                let next = chars.get(i + 1).copied();
                match st.mode {
                    Mode::Quote { escapes } => {
                        buf.push(c);
                        if escapes && c == '\\' {
                            if let Some(n) = next {
                                buf.push(n);
                                i += 1;
                            }
                        } else if c == '\'' {
                            if next == Some('\'') {
                                buf.push('\'');
                                i += 1;
                            } else {
                                st.mode = Mode::Normal;
                            }
                        }
                        i += 1;
                        continue;
                    }
                    Mode::Ident => {
                        buf.push(c);
                        if c == '"' {
                            if next == Some('"') {
                                buf.push('"');
                                i += 1;
                            } else {
                                st.mode = Mode::Normal;
                            }
                        }
                        i += 1;
                        continue;
                    }
                    Mode::Dollar => {
                        let rest: String = chars[i..].iter().collect();
                        if rest.starts_with(&st.dollar_tag) {
                            buf.push_str(&st.dollar_tag);
                            i += st.dollar_tag.chars().count();
                            st.mode = Mode::Normal;
                        } else {
                            buf.push(c);
                            i += 1;
                        }
                        continue;
                    }
                    Mode::Block(depth) => {
                        if c == '*' && next == Some('/') {
                            buf.push_str("*/");
                            i += 2;
                            st.mode = if depth == 1 {
                                Mode::Normal
                            } else {
                                Mode::Block(depth - 1)
                            };
                        } else if c == '/' && next == Some('*') {
                            buf.push_str("/*");
                            i += 2;
                            st.mode = Mode::Block(depth + 1);
                        } else {
                            buf.push(c);
                            i += 1;
                        }
                        continue;
                    }
                    Mode::Normal => {}
                }
                // Normal text.
                if c == '-' && next == Some('-') {
                    // A comment to the end of the line; psql keeps it in
                    // the buffer, the server ignores it.
                    break;
                }
                if c == '/' && next == Some('*') {
                    buf.push_str("/*");
                    i += 2;
                    st.mode = Mode::Block(1);
                    continue;
                }
                if c == '\'' {
                    let prev = buf.chars().last();
                    let escapes = matches!(prev, Some('e' | 'E'))
                        && !buf
                            .chars()
                            .rev()
                            .nth(1)
                            .is_some_and(|p| p.is_alphanumeric() || p == '_');
                    buf.push(c);
                    st.mode = Mode::Quote { escapes };
                    i += 1;
                    continue;
                }
                if c == '"' {
                    buf.push(c);
                    st.mode = Mode::Ident;
                    i += 1;
                    continue;
                }
                if c == '$' {
                    if let Some(tag) = dollar_tag(&chars[i..]) {
                        // Not the `$1` of a parameter, nor inside a name.
                        let prev_word = buf
                            .chars()
                            .last()
                            .is_some_and(|p| p.is_alphanumeric() || p == '_');
                        if !prev_word {
                            buf.push_str(&tag);
                            i += tag.chars().count();
                            st.dollar_tag = tag;
                            st.mode = Mode::Dollar;
                            continue;
                        }
                    }
                }
                if c == ':' {
                    if next == Some(':') {
                        buf.push_str("::");
                        i += 2;
                        continue;
                    }
                    if let Some((text, used)) = self.interpolate(&chars[i + 1..]) {
                        buf.push_str(&text);
                        i += 1 + used;
                        continue;
                    }
                }
                if c == '\\' {
                    // A meta-command: the rest of the line.
                    let meta: String = chars[i + 1..].iter().collect();
                    if meta.starts_with(';') {
                        buf.push(';');
                        i += 2;
                        continue;
                    }
                    let sends = self.meta(&meta);
                    if sends && !buf.trim().is_empty() {
                        out.push(Item {
                            sql: std::mem::take(&mut buf).trim().to_owned(),
                            copy_data: None,
                            line: start_line,
                        });
                        st = Lexer::default();
                    }
                    break;
                }
                if c == '(' {
                    st.parens += 1;
                } else if c == ')' {
                    st.parens = st.parens.saturating_sub(1);
                }
                if c.is_alphabetic() || c == '_' {
                    let mut j = i;
                    while j < chars.len()
                        && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '$')
                    {
                        j += 1;
                    }
                    let word: String = chars[i..j].iter().collect();
                    st.word(&word);
                    buf.push_str(&word);
                    i = j;
                    continue;
                }
                buf.push(c);
                i += 1;
                if c == ';' && st.parens == 0 && st.begin_depth == 0 {
                    let sql = std::mem::take(&mut buf).trim().to_owned();
                    st = Lexer::default();
                    let copy_data = if is_copy_from_stdin(&sql) {
                        let mut data = String::new();
                        for (_, l) in lines.by_ref() {
                            if l == "\\." {
                                break;
                            }
                            data.push_str(l);
                            data.push('\n');
                        }
                        Some(data)
                    } else {
                        None
                    };
                    if sql != ";" {
                        out.push(Item {
                            sql,
                            copy_data,
                            line: start_line,
                        });
                    }
                    start_line = ln + 1;
                }
            }
            if !buf.is_empty() {
                buf.push('\n');
            }
        }
        out
    }

    /// `:name`, `:'name'`, `:"name"` for a defined variable: its text and
    /// how many characters after the colon it took.
    fn interpolate(&self, rest: &[char]) -> Option<(String, usize)> {
        let (quote, body) = match rest.first()? {
            '\'' | '"' => (Some(rest[0]), &rest[1..]),
            _ => (None, rest),
        };
        let len = body
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .count();
        if len == 0 {
            return None;
        }
        let name: String = body[..len].iter().collect();
        let value = self.vars.get(&name)?;
        match quote {
            None => Some((value.clone(), len)),
            Some(q) => {
                if body.get(len) != Some(&q) {
                    return None;
                }
                let text = if q == '\'' {
                    format!("'{}'", value.replace('\'', "''"))
                } else {
                    format!("\"{}\"", value.replace('"', "\"\""))
                };
                Some((text, len + 2))
            }
        }
    }

    /// Runs a meta-command; true when it sends the query buffer.
    fn meta(&mut self, meta: &str) -> bool {
        let mut words = meta_words(meta, &self.vars);
        if words.is_empty() {
            return false;
        }
        let cmd = words.remove(0);
        match cmd.as_str() {
            "set" => {
                if let Some(name) = words.first().cloned() {
                    self.vars.insert(name, words[1..].concat());
                }
                false
            }
            "unset" => {
                if let Some(name) = words.first() {
                    self.vars.remove(name);
                }
                false
            }
            "getenv" => {
                if let [var, env] = words.as_slice() {
                    if let Some(v) = self.env.get(env) {
                        self.vars.insert(var.clone(), v.clone());
                    }
                }
                false
            }
            c => c.starts_with('g') && c != "gdesc" || c == "crosstabview",
        }
    }
}

/// The arguments of a meta-command, with psql's quoting and variables.
fn meta_words(meta: &str, vars: &HashMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = meta.chars().peekable();
    let cmd: String = chars.by_ref().take_while(|c| !c.is_whitespace()).collect();
    words.push(cmd);
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        if c == '\\' {
            break;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '\'' {
                while let Some(q) = chars.next() {
                    if q == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                            word.push('\'');
                            continue;
                        }
                        break;
                    }
                    word.push(q);
                }
            } else if c == ':' {
                let name: String =
                    std::iter::from_fn(|| chars.next_if(|c| c.is_alphanumeric() || *c == '_'))
                        .collect();
                match vars.get(&name) {
                    Some(v) => word.push_str(v),
                    None => {
                        word.push(':');
                        word.push_str(&name);
                    }
                }
            } else {
                word.push(c);
            }
        }
        words.push(word);
    }
    words
}

fn is_copy_from_stdin(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.trim_start().starts_with("copy") && lower.contains("from stdin")
}

/// `$tag$` at the start of `chars`.
fn dollar_tag(chars: &[char]) -> Option<String> {
    let mut j = 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        if j == 1 && chars[j].is_ascii_digit() {
            return None;
        }
        j += 1;
    }
    if chars.get(j) == Some(&'$') {
        Some(chars[..=j].iter().collect())
    } else {
        None
    }
}

#[derive(Default)]
enum Mode {
    #[default]
    Normal,
    Quote {
        escapes: bool,
    },
    Ident,
    Dollar,
    Block(usize),
}

/// psql's heuristic for `CREATE FUNCTION ... BEGIN ATOMIC ... END`.
#[derive(Default)]
struct Lexer {
    mode: Mode,
    dollar_tag: String,
    parens: usize,
    begin_depth: usize,
    words: Vec<char>,
    word_count: usize,
}

impl Lexer {
    fn word(&mut self, w: &str) {
        let lower = w.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "create" | "function" | "procedure" | "or" | "replace"
        ) && self.word_count == self.words.len()
            && self.words.len() < 4
        {
            self.words.push(lower.chars().next().unwrap_or(' '));
        }
        self.word_count += 1;
        let w = &self.words;
        let is_routine = w.first() == Some(&'c')
            && (matches!(w.get(1), Some('f' | 'p'))
                || (w.get(1) == Some(&'o')
                    && w.get(2) == Some(&'r')
                    && matches!(w.get(3), Some('f' | 'p'))));
        if is_routine && self.parens == 0 {
            match lower.as_str() {
                "begin" => self.begin_depth += 1,
                "case" if self.begin_depth >= 1 => self.begin_depth += 1,
                "end" => self.begin_depth = self.begin_depth.saturating_sub(1),
                _ => {}
            }
        }
    }
}
