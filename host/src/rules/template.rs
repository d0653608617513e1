//! Prometheus's alert template language: the part of Go's `text/template`
//! that rule files use, plus Prometheus's functions.
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming and
//! comments; pipelines with `|`; variables (`$x := ...`, `$x = ...`) with
//! Go's scoping and parse-time "undefined variable" check; `.Field` and
//! `$var.field` chains; `if`/`else if`/`else`, `range` (with `$i, $v :=`),
//! `with`, `break`/`continue`; Go's built-in functions (`and`, `or`, `not`,
//! `len`, `index`, `print`, `printf`, `println`, comparisons, `urlquery`,
//! `html`, `js`) and Prometheus's (`query`, `first`, `label`, `value`,
//! `strvalue`, `sortByLabel`, `humanize*`, `toUpper`, `toLower`, `title`,
//! `match`, `reReplaceAll`, `stripPort`, `stripDomain`, `parseDuration`,
//! `toTime`, `now`, `pathPrefix`, `externalURL`, `graphLink`, `tableLink`,
//! `safeHtml`, `args`). `define`/`template` are not supported at run time.
//!
//! gtmpl (a Go text/template port) was considered: its functions are plain
//! `fn` pointers, so `query` could reach the engine only through a global,
//! its `printf` is partial and it has had no release since 2021. The subset
//! rule files use is small enough to own.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Where a template failed: Go's `template: NAME:LINE: message` shape.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
#[error("template: {name}:{line}: {msg}")]
pub struct TemplateError {
    pub name: String,
    pub line: usize,
    pub msg: String,
}

/// A value inside a template.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Val>),
    Map(BTreeMap<String, Val>),
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::List(l) => !l.is_empty(),
            Val::Map(m) => !m.is_empty(),
        }
    }

    fn as_f64(&self) -> Result<f64, String> {
        match self {
            Val::Int(i) => Ok(*i as f64),
            Val::Float(f) => Ok(*f),
            Val::Str(s) => s
                .trim()
                .parse::<f64>()
                .or_else(|_| go_float_special(s.trim()))
                .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
            other => Err(format!("can't convert {} to float", other.type_name())),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float64",
            Val::Str(_) => "string",
            Val::List(_) => "slice",
            Val::Map(_) => "map",
        }
    }

    /// Go's `fmt.Print` rendering of the value.
    pub fn render(&self) -> String {
        match self {
            Val::Nil => "<no value>".into(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => go_float_v(*f),
            Val::Str(s) => s.clone(),
            Val::List(l) => {
                let parts: Vec<String> = l.iter().map(Val::render).collect();
                format!("[{}]", parts.join(" "))
            }
            Val::Map(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.render()))
                    .collect();
                format!("map[{}]", parts.join(" "))
            }
        }
    }
}

fn go_float_special(s: &str) -> Result<f64, ()> {
    match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => Ok(f64::INFINITY),
        "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        _ => Err(()),
    }
}

/// A labelled sample as `query` returns it (`.Labels`, `.Value`).
pub fn sample_val(labels: &BTreeMap<String, String>, value: f64) -> Val {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.clone(), Val::Str(v.clone())))
        .collect();
    Val::Map(BTreeMap::from([
        ("Labels".to_owned(), Val::Map(labels)),
        ("Value".to_owned(), Val::Float(value)),
    ]))
}

/// What templates reach outside themselves for.
pub trait Env {
    /// Runs an instant query at the evaluation time.
    fn query(&self, q: &str) -> Result<Vec<Val>, String>;
    /// `--web.external-url`.
    fn external_url(&self) -> String;
}

/// An environment without a query engine (for tests and checks).
pub struct NoEnv;

impl Env for NoEnv {
    fn query(&self, _q: &str) -> Result<Vec<Val>, String> {
        Err("queries are not available here".into())
    }
    fn external_url(&self) -> String {
        String::new()
    }
}

// ---------------------------------------------------------------- parsing

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Action(Pipe, usize),
    If(Pipe, Vec<Node>, Vec<Node>, usize),
    Range(Pipe, Vec<Node>, Vec<Node>, usize),
    With(Pipe, Vec<Node>, Vec<Node>, usize),
    Template(String, usize),
    Break,
    Continue,
}

#[derive(Clone, Debug)]
struct Pipe {
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Clone, Debug)]
enum Arg {
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Lit(Val),
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Pipe,
    Open,
    Close,
    Declare,
    Assign,
    Comma,
    Str(String),
    Num(String),
    Ident(String),
    /// `.a.b` (empty for a bare `.`).
    Field(Vec<String>),
    Var(String),
}

const FUNCS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "urlquery",
    "html",
    "js",
    "slice",
    "call",
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toUpper",
    "toLower",
    "title",
    "match",
    "reReplaceAll",
    "stripPort",
    "stripDomain",
    "parseDuration",
    "toTime",
    "toDuration",
    "now",
    "pathPrefix",
    "externalURL",
    "graphLink",
    "tableLink",
    "safeHtml",
    "args",
];

/// A parsed template.
#[derive(Clone, Debug)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

/// Variables every alert template starts with.
const PRELUDE_VARS: &[&str] = &["$", "$labels", "$externalLabels", "$externalURL", "$value"];

impl Template {
    /// Parses `text` as Prometheus parses alert templates (its prelude
    /// defines `$labels`, `$externalLabels`, `$externalURL` and `$value`).
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let mut p = Parser {
            name: name.to_owned(),
            src: text,
            pos: 0,
            line: 1,
            vars: PRELUDE_VARS.iter().map(|s| s.to_string()).collect(),
            trim_next: false,
            chained_else: None,
        };
        let (nodes, end) = p.list()?;
        if let Some(kw) = end {
            return Err(p.err(format!("unexpected {{{{{kw}}}}}")));
        }
        Ok(Template {
            name: name.to_owned(),
            nodes,
        })
    }

    /// Runs the template with `data` as `.` and the prelude variables.
    pub fn execute(
        &self,
        data: &Val,
        vars: &[(&str, Val)],
        env: &dyn Env,
    ) -> Result<String, TemplateError> {
        let mut scope: Vec<(String, Val)> = vec![("$".into(), data.clone())];
        scope.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let mut ex = Exec {
            env,
            out: String::new(),
        };
        match ex.list(&self.nodes, data, &mut scope) {
            Ok(_) => Ok(ex.out),
            Err((line, msg)) => Err(TemplateError {
                name: self.name.clone(),
                line,
                msg: format!("executing {:?}: {msg}", self.name),
            }),
        }
    }
}

struct Parser<'a> {
    name: String,
    src: &'a str,
    pos: usize,
    line: usize,
    vars: Vec<String>,
    trim_next: bool,
    /// The `if`/`with` an `{{ else if ... }}` opened, for the enclosing block.
    chained_else: Option<Node>,
}

/// The keyword that ended a list: `end`, `else` (with what follows it).
type EndKw = Option<String>;

impl<'a> Parser<'a> {
    fn err(&self, msg: impl Into<String>) -> TemplateError {
        TemplateError {
            name: self.name.clone(),
            line: self.line,
            msg: msg.into(),
        }
    }

    /// Parses nodes until EOF or a block keyword (`end`, `else ...`).
    fn list(&mut self) -> Result<(Vec<Node>, EndKw), TemplateError> {
        let mut nodes = Vec::new();
        loop {
            let rest = &self.src[self.pos..];
            let Some(open) = rest.find("{{") else {
                let mut text = rest.to_owned();
                if self.trim_next {
                    text = text.trim_start().to_owned();
                }
                if !text.is_empty() {
                    nodes.push(Node::Text(text));
                }
                self.pos = self.src.len();
                return Ok((nodes, None));
            };
            let mut text = &rest[..open];
            if self.trim_next {
                text = text.trim_start();
            }
            let after = &rest[open + 2..];
            let trim_left = after.starts_with("- ")
                || after.starts_with("-\t")
                || after.starts_with("-\n")
                || after.starts_with("-\r");
            if trim_left {
                text = text.trim_end();
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text.to_owned()));
            }
            self.line += rest[..open].matches('\n').count();
            self.pos += open + 2 + usize::from(trim_left);
            // Comments.
            let inner = self.src[self.pos..].trim_start();
            if inner.starts_with("/*") {
                let start = self.pos + (self.src[self.pos..].len() - inner.len());
                let Some(end) = self.src[start..].find("*/") else {
                    return Err(self.err("unclosed comment"));
                };
                let mut p = start + end + 2;
                let tail = &self.src[p..];
                let t = tail.trim_start();
                let (trim_right, close_len) = if t.starts_with("-}}") {
                    (true, tail.len() - t.len() + 3)
                } else if t.starts_with("}}") {
                    (false, tail.len() - t.len() + 2)
                } else {
                    return Err(self.err("comment ends before closing delimiter"));
                };
                self.line += self.src[self.pos..start + end].matches('\n').count();
                p += close_len;
                self.pos = p;
                self.trim_next = trim_right;
                continue;
            }
            let toks = self.action_tokens()?;
            let line = self.line;
            match toks.first() {
                None => return Err(self.err("missing value for command")),
                Some(Tok::Ident(kw)) => match kw.as_str() {
                    "end" => {
                        if toks.len() > 1 {
                            return Err(self.err("unexpected token in end"));
                        }
                        return Ok((nodes, Some("end".into())));
                    }
                    "else" => {
                        // `else` alone or `else if ...` / `else with ...`.
                        if toks.len() == 1 {
                            return Ok((nodes, Some("else".into())));
                        }
                        let rest: Vec<Tok> = toks[1..].to_vec();
                        match rest.first() {
                            Some(Tok::Ident(k)) if k == "if" || k == "with" => {
                                let kind = k.clone();
                                let node = self.block(&kind, &rest[1..], line)?;
                                self.chained_else = Some(node);
                                return Ok((nodes, Some("else-chain".into())));
                            }
                            _ => return Err(self.err("unexpected token in else")),
                        }
                    }
                    "if" | "range" | "with" => {
                        let kind = kw.clone();
                        let node = self.block(&kind, &toks[1..], line)?;
                        nodes.push(node);
                    }
                    "break" | "continue" => {
                        nodes.push(if kw == "break" {
                            Node::Break
                        } else {
                            Node::Continue
                        });
                    }
                    "template" => {
                        let Some(Tok::Str(name)) = toks.get(1) else {
                            return Err(self.err("unexpected token in template clause"));
                        };
                        if toks.len() > 2 {
                            let _ = self.pipe(&toks[2..], false)?;
                        }
                        nodes.push(Node::Template(name.clone(), line));
                    }
                    "define" | "block" => {
                        return Err(self.err(format!("{kw} is not supported in Ember templates")));
                    }
                    _ => {
                        let pipe = self.pipe(&toks, true)?;
                        nodes.push(Node::Action(pipe, line));
                    }
                },
                Some(_) => {
                    let pipe = self.pipe(&toks, true)?;
                    nodes.push(Node::Action(pipe, line));
                }
            }
        }
    }

    /// Parses an `if`/`range`/`with` after its keyword, up to its `end`
    /// (which an `else if` chain shares).
    fn block(&mut self, kind: &str, toks: &[Tok], line: usize) -> Result<Node, TemplateError> {
        let scope = self.vars.len();
        let pipe = self.pipe(toks, true)?;
        if pipe.cmds.is_empty() {
            return Err(self.err(format!("missing value for {kind}")));
        }
        let (then, end) = self.list()?;
        let els = match end.as_deref() {
            Some("end") => Vec::new(),
            Some("else-chain") => self.chained_else.take().into_iter().collect(),
            Some("else") => {
                let (els, end2) = self.list()?;
                if end2.as_deref() != Some("end") {
                    return Err(self.err("unexpected EOF"));
                }
                els
            }
            _ => return Err(self.err("unexpected EOF")),
        };
        self.vars.truncate(scope);
        Ok(match kind {
            "if" => Node::If(pipe, then, els, line),
            "range" => Node::Range(pipe, then, els, line),
            _ => Node::With(pipe, then, els, line),
        })
    }

    /// Reads the tokens of one action and its closing `}}`.
    fn action_tokens(&mut self) -> Result<Vec<Tok>, TemplateError> {
        let mut toks = Vec::new();
        let bytes = self.src.as_bytes();
        loop {
            while self.pos < bytes.len() && (bytes[self.pos] as char).is_ascii_whitespace() {
                if bytes[self.pos] == b'\n' {
                    self.line += 1;
                }
                self.pos += 1;
            }
            let rest = &self.src[self.pos..];
            if rest.is_empty() {
                return Err(self.err("unclosed action"));
            }
            if rest.starts_with("-}}") {
                self.pos += 3;
                self.trim_next = true;
                return Ok(toks);
            }
            if rest.starts_with("}}") {
                self.pos += 2;
                self.trim_next = false;
                return Ok(toks);
            }
            let c = rest.chars().next().unwrap_or(' ');
            match c {
                '|' => {
                    toks.push(Tok::Pipe);
                    self.pos += 1;
                }
                '(' => {
                    toks.push(Tok::Open);
                    self.pos += 1;
                }
                ')' => {
                    toks.push(Tok::Close);
                    self.pos += 1;
                }
                ',' => {
                    toks.push(Tok::Comma);
                    self.pos += 1;
                }
                ':' if rest.starts_with(":=") => {
                    toks.push(Tok::Declare);
                    self.pos += 2;
                }
                '=' => {
                    toks.push(Tok::Assign);
                    self.pos += 1;
                }
                '"' => {
                    let (s, len) =
                        unquote(rest).ok_or_else(|| self.err("unterminated quoted string"))?;
                    toks.push(Tok::Str(s));
                    self.pos += len;
                }
                '`' => {
                    let end = rest[1..]
                        .find('`')
                        .ok_or_else(|| self.err("unterminated raw quoted string"))?;
                    toks.push(Tok::Str(rest[1..1 + end].to_owned()));
                    self.line += rest[1..1 + end].matches('\n').count();
                    self.pos += end + 2;
                }
                '.' if !rest[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                    let (chain, len) = field_chain(rest);
                    toks.push(Tok::Field(chain));
                    self.pos += len;
                }
                '$' => {
                    let len = 1 + rest[1..]
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len() - 1);
                    toks.push(Tok::Var(rest[..len].to_owned()));
                    self.pos += len;
                    if self.src[self.pos..].starts_with('.') {
                        let (chain, l) = field_chain(&self.src[self.pos..]);
                        toks.push(Tok::Field(chain));
                        self.pos += l;
                    }
                }
                c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                    let len = rest
                        .find(|c: char| {
                            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
                        })
                        .unwrap_or(rest.len());
                    let len = if rest[..len].ends_with('-') && len > 1 {
                        len - 1
                    } else {
                        len
                    };
                    toks.push(Tok::Num(rest[..len].to_owned()));
                    self.pos += len;
                }
                c if c.is_alphabetic() || c == '_' => {
                    let len = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    toks.push(Tok::Ident(rest[..len].to_owned()));
                    self.pos += len;
                }
                '\'' => {
                    let end = rest[1..]
                        .find('\'')
                        .ok_or_else(|| self.err("unterminated character constant"))?;
                    let ch = rest[1..1 + end].chars().next().unwrap_or('\0');
                    toks.push(Tok::Num((ch as u32).to_string()));
                    self.pos += end + 2;
                }
                other => return Err(self.err(format!("unexpected {other:?} in command"))),
            }
        }
    }

    /// A pipeline: optional declaration, then commands separated by `|`.
    fn pipe(&mut self, toks: &[Tok], allow_decl: bool) -> Result<Pipe, TemplateError> {
        let mut decl = Vec::new();
        let mut assign = false;
        let mut rest = toks;
        if allow_decl {
            // `$x :=`, `$x =`, `$i, $v :=`
            let mut names = Vec::new();
            let mut i = 0;
            while let Some(Tok::Var(v)) = rest.get(i) {
                names.push(v.clone());
                match rest.get(i + 1) {
                    Some(Tok::Comma) => i += 2,
                    Some(Tok::Declare) | Some(Tok::Assign) => {
                        assign = rest.get(i + 1) == Some(&Tok::Assign);
                        rest = &rest[i + 2..];
                        decl = names.clone();
                        break;
                    }
                    _ => break,
                }
            }
        }
        let mut cmds = Vec::new();
        let mut cur = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            match &rest[i] {
                Tok::Pipe => {
                    if cur.is_empty() {
                        return Err(self.err("missing command"));
                    }
                    cmds.push(std::mem::take(&mut cur));
                    i += 1;
                }
                _ => {
                    let (arg, used) = self.operand(&rest[i..])?;
                    cur.push(arg);
                    i += used;
                }
            }
        }
        if !cur.is_empty() {
            cmds.push(cur);
        } else if !cmds.is_empty() {
            return Err(self.err("missing command"));
        }
        if assign {
            for v in &decl {
                if !self.vars.contains(v) {
                    return Err(self.err(format!("undefined variable {v:?}")));
                }
            }
        } else {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipe { decl, assign, cmds })
    }

    fn operand(&mut self, toks: &[Tok]) -> Result<(Arg, usize), TemplateError> {
        let chain_after = |toks: &[Tok], at: usize| -> (Vec<String>, usize) {
            match toks.get(at) {
                Some(Tok::Field(c)) => (c.clone(), 1),
                _ => (Vec::new(), 0),
            }
        };
        match &toks[0] {
            Tok::Field(chain) => Ok((Arg::Dot(chain.clone()), 1)),
            Tok::Var(v) => {
                if !self.vars.contains(v) {
                    return Err(self.err(format!("undefined variable {v:?}")));
                }
                let (chain, n) = chain_after(toks, 1);
                Ok((Arg::Var(v.clone(), chain), 1 + n))
            }
            Tok::Str(s) => Ok((Arg::Lit(Val::Str(s.clone())), 1)),
            Tok::Num(n) => Ok((
                Arg::Lit(
                    parse_number(n).ok_or_else(|| self.err(format!("bad number syntax: {n:?}")))?,
                ),
                1,
            )),
            Tok::Ident(id) => match id.as_str() {
                "true" => Ok((Arg::Lit(Val::Bool(true)), 1)),
                "false" => Ok((Arg::Lit(Val::Bool(false)), 1)),
                "nil" => Ok((Arg::Lit(Val::Nil), 1)),
                f if FUNCS.contains(&f) => Ok((Arg::Func(f.to_owned()), 1)),
                f => Err(self.err(format!("function {f:?} not defined"))),
            },
            Tok::Open => {
                let mut depth = 0;
                let mut end = None;
                for (j, t) in toks.iter().enumerate() {
                    match t {
                        Tok::Open => depth += 1,
                        Tok::Close => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or_else(|| self.err("unclosed left paren"))?;
                let inner = self.pipe(&toks[1..end], true)?;
                if inner.cmds.is_empty() {
                    return Err(self.err("missing value for parenthesized pipeline"));
                }
                let (chain, n) = chain_after(toks, end + 1);
                Ok((Arg::Sub(Box::new(inner), chain), end + 1 + n))
            }
            Tok::Close => Err(self.err("unexpected right paren")),
            other => Err(self.err(format!("unexpected {other:?} in operand"))),
        }
    }
}

fn field_chain(s: &str) -> (Vec<String>, usize) {
    let mut chain = Vec::new();
    let mut len = 0;
    let b = s.as_bytes();
    while len < b.len() && b[len] == b'.' {
        let start = len + 1;
        let mut end = start;
        while end < b.len() && ((b[end] as char).is_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if end == start {
            len = start;
            break;
        }
        chain.push(s[start..end].to_owned());
        len = end;
    }
    (chain, len.max(1))
}

fn unquote(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\n' => return None,
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut hex = String::new();
                        for _ in 0..n {
                            hex.push(chars.next()?.1);
                        }
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    _ => return None,
                }
            }
            c => out.push(c),
        }
    }
    None
}

fn parse_number(n: &str) -> Option<Val> {
    let clean = n.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let int = if let Some(h) = digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = digits.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = digits.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Some(Val::Int(if neg { -i } else { i }));
    }
    clean.parse::<f64>().ok().map(Val::Float)
}

// --------------------------------------------------------------- execution

type ExecErr = (usize, String);

enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'e> {
    env: &'e dyn Env,
    out: String,
}

fn field(v: &Val, chain: &[String]) -> Result<Val, String> {
    let mut cur = v.clone();
    for name in chain {
        cur = match cur {
            // Prometheus runs templates with missingkey=zero.
            Val::Map(m) => m.get(name).cloned().unwrap_or(Val::Str(String::new())),
            Val::Nil => return Err(format!("nil pointer evaluating .{name}")),
            other => {
                return Err(format!(
                    "can't evaluate field {name} in type {}",
                    other.type_name()
                ));
            }
        };
    }
    Ok(cur)
}

impl<'e> Exec<'e> {
    fn list(
        &mut self,
        nodes: &[Node],
        dot: &Val,
        vars: &mut Vec<(String, Val)>,
    ) -> Result<Flow, ExecErr> {
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(pipe, line) => {
                    let v = self.pipe(pipe, dot, vars).map_err(|e| (*line, e))?;
                    if pipe.decl.is_empty() {
                        self.out.push_str(&v.render());
                    }
                }
                Node::If(pipe, then, els, line) | Node::With(pipe, then, els, line) => {
                    let scope = vars.len();
                    let v = self.pipe(pipe, dot, vars).map_err(|e| (*line, e))?;
                    let flow = if v.truthy() {
                        let d = if matches!(node, Node::With(..)) {
                            &v
                        } else {
                            dot
                        };
                        self.list(then, d, vars)?
                    } else {
                        self.list(els, dot, vars)?
                    };
                    vars.truncate(scope);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(pipe, body, els, line) => {
                    let scope = vars.len();
                    let mut p = pipe.clone();
                    let decl = std::mem::take(&mut p.decl);
                    let v = self.pipe(&p, dot, vars).map_err(|e| (*line, e))?;
                    let items: Vec<(Val, Val)> = match v {
                        Val::List(l) => l
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (Val::Int(i as i64), x))
                            .collect(),
                        Val::Map(m) => m.into_iter().map(|(k, x)| (Val::Str(k), x)).collect(),
                        Val::Int(n) => (0..n).map(|i| (Val::Int(i), Val::Int(i))).collect(),
                        Val::Nil => Vec::new(),
                        other => {
                            return Err((
                                *line,
                                format!("range can't iterate over {}", other.render()),
                            ));
                        }
                    };
                    if items.is_empty() {
                        self.list(els, dot, vars)?;
                    }
                    for (k, x) in items {
                        let inner = vars.len();
                        match decl.as_slice() {
                            [v] => vars.push((v.clone(), x.clone())),
                            [i, v] => {
                                vars.push((i.clone(), k));
                                vars.push((v.clone(), x.clone()));
                            }
                            _ => {}
                        }
                        let flow = self.list(body, &x, vars)?;
                        vars.truncate(inner);
                        if matches!(flow, Flow::Break) {
                            break;
                        }
                    }
                    vars.truncate(scope);
                }
                Node::Template(name, line) => {
                    return Err((*line, format!("no such template {name:?}")));
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn pipe(
        &mut self,
        pipe: &Pipe,
        dot: &Val,
        vars: &mut Vec<(String, Val)>,
    ) -> Result<Val, String> {
        let mut last: Option<Val> = None;
        for cmd in &pipe.cmds {
            last = Some(self.command(cmd, last, dot, vars)?);
        }
        let v = last.unwrap_or(Val::Nil);
        if let Some(name) = pipe.decl.last() {
            if pipe.assign {
                if let Some(slot) = vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn arg(&mut self, a: &Arg, dot: &Val, vars: &mut Vec<(String, Val)>) -> Result<Val, String> {
        match a {
            Arg::Dot(chain) => field(dot, chain),
            Arg::Var(name, chain) => {
                let v = vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("undefined variable {name:?}"))?;
                field(&v, chain)
            }
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Func(f) => self.call(f, Vec::new()),
            Arg::Sub(p, chain) => {
                let v = self.pipe(p, dot, vars)?;
                field(&v, chain)
            }
        }
    }

    fn command(
        &mut self,
        cmd: &[Arg],
        piped: Option<Val>,
        dot: &Val,
        vars: &mut Vec<(String, Val)>,
    ) -> Result<Val, String> {
        if let Some(Arg::Func(f)) = cmd.first() {
            // `and`/`or` stop at the first deciding argument.
            let mut args = Vec::with_capacity(cmd.len());
            for a in &cmd[1..] {
                args.push(self.arg(a, dot, vars)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return self
                .call(f, args)
                .map_err(|e| format!("error calling {f}: {e}"));
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err("can't give argument to non-function".into());
        }
        self.arg(&cmd[0], dot, vars)
    }

    fn call(&mut self, f: &str, args: Vec<Val>) -> Result<Val, String> {
        let want = |n: usize| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "wrong number of args for {f}: want {n} got {}",
                    args.len()
                ))
            }
        };
        let s = |v: &Val| v.render();
        Ok(match f {
            "and" => {
                let mut last = Val::Nil;
                for a in &args {
                    last = a.clone();
                    if !a.truthy() {
                        break;
                    }
                }
                last
            }
            "or" => {
                let mut last = Val::Nil;
                for a in &args {
                    last = a.clone();
                    if a.truthy() {
                        break;
                    }
                }
                last
            }
            "not" => {
                want(1)?;
                Val::Bool(!args[0].truthy())
            }
            "len" => {
                want(1)?;
                Val::Int(match &args[0] {
                    Val::Str(x) => x.len(),
                    Val::List(l) => l.len(),
                    Val::Map(m) => m.len(),
                    other => return Err(format!("len of type {}", other.type_name())),
                } as i64)
            }
            "index" => {
                let mut it = args.into_iter();
                let mut cur = it.next().ok_or("index of untyped nil")?;
                for key in it {
                    cur = match (&cur, &key) {
                        (Val::Map(m), k) => {
                            m.get(&s(k)).cloned().unwrap_or(Val::Str(String::new()))
                        }
                        (Val::List(l), Val::Int(i)) => l
                            .get(usize::try_from(*i).map_err(|_| "index out of range")?)
                            .cloned()
                            .ok_or_else(|| format!("index out of range: {i}"))?,
                        _ => return Err(format!("can't index item of type {}", cur.type_name())),
                    };
                }
                cur
            }
            "print" => {
                // Go adds spaces between operands when neither is a string.
                let mut out = String::new();
                for (i, a) in args.iter().enumerate() {
                    if i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
                        out.push(' ');
                    }
                    out.push_str(&s(a));
                }
                Val::Str(out)
            }
            "println" => {
                let parts: Vec<String> = args.iter().map(s).collect();
                Val::Str(format!("{}\n", parts.join(" ")))
            }
            "printf" => {
                let (fmt, rest) = args.split_first().ok_or("printf needs a format")?;
                Val::Str(sprintf(&s(fmt), rest))
            }
            "eq" => {
                let (first, rest) = args
                    .split_first()
                    .ok_or("missing argument for comparison")?;
                if rest.is_empty() {
                    return Err("missing argument for comparison".into());
                }
                Val::Bool(
                    rest.iter()
                        .any(|b| compare(first, b) == Some(std::cmp::Ordering::Equal)),
                )
            }
            "ne" | "lt" | "le" | "gt" | "ge" => {
                want(2)?;
                let ord = compare(&args[0], &args[1]).ok_or_else(|| {
                    format!(
                        "incompatible types for comparison: {} and {}",
                        args[0].type_name(),
                        args[1].type_name()
                    )
                })?;
                use std::cmp::Ordering::*;
                Val::Bool(match f {
                    "ne" => ord != Equal,
                    "lt" => ord == Less,
                    "le" => ord != Greater,
                    "gt" => ord == Greater,
                    _ => ord != Less,
                })
            }
            "urlquery" => {
                let joined: String = args.iter().map(s).collect();
                Val::Str(form_urlencoded::byte_serialize(joined.as_bytes()).collect())
            }
            "html" | "safeHtml" => {
                let joined: String = args.iter().map(s).collect();
                if f == "safeHtml" {
                    Val::Str(joined)
                } else {
                    Val::Str(html_escape(&joined))
                }
            }
            "js" => {
                let joined: String = args.iter().map(s).collect();
                Val::Str(
                    joined
                        .replace('\\', "\\\\")
                        .replace('\'', "\\'")
                        .replace('"', "\\\""),
                )
            }
            "slice" | "call" => return Err(format!("{f} is not supported")),
            "query" => {
                want(1)?;
                Val::List(self.env.query(&s(&args[0]))?)
            }
            "first" => {
                want(1)?;
                match &args[0] {
                    Val::List(l) => l
                        .first()
                        .cloned()
                        .ok_or("first() called on vector with no elements")?,
                    _ => return Err("first() needs a query result".into()),
                }
            }
            "label" => {
                want(2)?;
                field(&args[1], &["Labels".to_owned(), s(&args[0])])?
            }
            "value" => {
                want(1)?;
                field(&args[0], &["Value".to_owned()])?
            }
            "strvalue" => {
                want(1)?;
                field(&args[0], &["Labels".to_owned(), "__value__".to_owned()])?
            }
            "sortByLabel" => {
                want(2)?;
                let key = s(&args[0]);
                let Val::List(mut l) = args[1].clone() else {
                    return Err("sortByLabel needs a query result".into());
                };
                l.sort_by_key(|x| {
                    field(x, &["Labels".to_owned(), key.clone()])
                        .map(|v| v.render())
                        .unwrap_or_default()
                });
                Val::List(l)
            }
            "humanize" => Val::Str(humanize(args.first().ok_or("missing argument")?.as_f64()?)),
            "humanize1024" => Val::Str(humanize1024(
                args.first().ok_or("missing argument")?.as_f64()?,
            )),
            "humanizeDuration" => Val::Str(humanize_duration(
                args.first().ok_or("missing argument")?.as_f64()?,
            )),
            "humanizePercentage" => {
                let v = args.first().ok_or("missing argument")?.as_f64()?;
                Val::Str(format!("{}%", go_g(v * 100.0, 4)))
            }
            "humanizeTimestamp" => {
                let v = args.first().ok_or("missing argument")?.as_f64()?;
                Val::Str(humanize_timestamp(v))
            }
            "toTime" => {
                let v = args.first().ok_or("missing argument")?.as_f64()?;
                Val::Str(humanize_timestamp(v))
            }
            "toDuration" => {
                let v = args.first().ok_or("missing argument")?.as_f64()?;
                Val::Str(go_duration(v))
            }
            "toUpper" => Val::Str(args.first().map(s).unwrap_or_default().to_uppercase()),
            "toLower" => Val::Str(args.first().map(s).unwrap_or_default().to_lowercase()),
            "title" => Val::Str(title(&args.first().map(s).unwrap_or_default())),
            "match" => {
                want(2)?;
                let re = regex::Regex::new(&s(&args[0])).map_err(|e| e.to_string())?;
                Val::Bool(re.is_match(&s(&args[1])))
            }
            "reReplaceAll" => {
                want(3)?;
                let re = regex::Regex::new(&s(&args[0])).map_err(|e| e.to_string())?;
                let repl = go_expand_to_rust(&s(&args[1]));
                Val::Str(re.replace_all(&s(&args[2]), repl.as_str()).into_owned())
            }
            "stripPort" => {
                want(1)?;
                let h = s(&args[0]);
                Val::Str(strip_port(&h))
            }
            "stripDomain" => {
                want(1)?;
                let h = s(&args[0]);
                let (host, port) = match h.rsplit_once(':') {
                    Some((a, p)) if !a.contains(':') && !a.is_empty() => {
                        (a.to_owned(), format!(":{p}"))
                    }
                    _ => (h.clone(), String::new()),
                };
                if host.parse::<std::net::IpAddr>().is_ok() {
                    Val::Str(h)
                } else {
                    Val::Str(format!("{}{port}", host.split('.').next().unwrap_or("")))
                }
            }
            "parseDuration" => {
                want(1)?;
                let d = crate::config::duration::parse(&s(&args[0])).map_err(|e| e.to_string())?;
                Val::Float(d.as_millis() as f64 / 1000.0)
            }
            "now" => Val::Float(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            ),
            "pathPrefix" => {
                let url = self.env.external_url();
                let path = url
                    .split_once("://")
                    .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_owned()));
                Val::Str(path.unwrap_or_default())
            }
            "externalURL" => Val::Str(self.env.external_url()),
            "graphLink" | "tableLink" => {
                want(1)?;
                let tab = if f == "graphLink" { 0 } else { 1 };
                let q: String = form_urlencoded::byte_serialize(s(&args[0]).as_bytes()).collect();
                Val::Str(format!("/graph?g0.expr={q}&g0.tab={tab}"))
            }
            "args" => {
                let mut m = BTreeMap::new();
                for (i, a) in args.into_iter().enumerate() {
                    m.insert(format!("arg{i}"), a);
                }
                Val::Map(m)
            }
            other => return Err(format!("function {other:?} not defined")),
        })
    }
}

fn strip_port(h: &str) -> String {
    if let Some((ip, _)) = h.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        return ip.to_owned();
    }
    match h.rsplit_once(':') {
        Some((a, _)) if !a.contains(':') => a.to_owned(),
        _ => h.to_owned(),
    }
}

fn go_expand_to_rust(repl: &str) -> String {
    // Go's Expand and Rust's regex share `$1`/`${name}`; `$$` is the same too.
    repl.to_owned()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

fn compare(a: &Val, b: &Val) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => {
            let (x, y) = (a.as_f64().ok()?, b.as_f64().ok()?);
            x.partial_cmp(&y)
        }
        (Val::Nil, Val::Nil) => Some(std::cmp::Ordering::Equal),
        _ => None,
    }
}

// ------------------------------------------------------- number formatting

/// Shortest digits and decimal exponent of a finite non-zero float.
fn shortest(v: f64) -> (String, i32) {
    let e = format!("{:e}", v.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    (mant.replace('.', ""), exp.parse().unwrap_or(0))
}

fn exp_suffix(exp: i32) -> String {
    format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Go's `%v` for float64: shortest digits, exponent form outside 1e-4..1e6.
pub fn go_float_v(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (digits, exp) = shortest(v);
    let sign = if v < 0.0 { "-" } else { "" };
    // strconv's shortest 'g' switches to exponent form from 1e+06 on.
    if !(-4..6).contains(&exp) {
        let mut m = digits[..1].to_owned();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        return format!("{sign}{m}{}", exp_suffix(exp));
    }
    format!("{sign}{}", place_point(&digits, exp))
}

fn place_point(digits: &str, exp: i32) -> String {
    if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else if (exp as usize) + 1 >= digits.len() {
        format!("{digits}{}", "0".repeat(exp as usize + 1 - digits.len()))
    } else {
        let (a, b) = digits.split_at(exp as usize + 1);
        format!("{a}.{b}")
    }
}

/// Go's `%.{prec}g`.
pub fn go_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let prec = prec.max(1);
    if v == 0.0 {
        return "0".into();
    }
    let e = format!("{:.*e}", prec - 1, v.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits = mant.replace('.', "");
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if v < 0.0 { "-" } else { "" };
    if exp < -4 || exp >= prec as i32 {
        let mut m = digits[..1].to_owned();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        format!("{sign}{m}{}", exp_suffix(exp))
    } else {
        format!("{sign}{}", place_point(digits, exp))
    }
}

pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, 4))
}

pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

pub fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {mins}m {secs}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {mins}m {secs}s")
        } else if mins != 0 {
            format!("{sign}{mins}m {secs}s")
        } else {
            format!("{sign}{}s", go_g(v, 4))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, 4))
}

fn humanize_timestamp(v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    let secs = v.floor() as i64;
    let nanos = ((v - v.floor()) * 1e9).round() as u32;
    match chrono::DateTime::from_timestamp(secs, nanos.min(999_999_999)) {
        Some(t) => {
            let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
            if nanos > 0 {
                let frac = format!("{:09}", nanos);
                s.push('.');
                s.push_str(frac.trim_end_matches('0'));
            }
            s.push_str(" +0000 UTC");
            s
        }
        None => go_g(v, 4),
    }
}

fn go_duration(secs: f64) -> String {
    if secs == 0.0 {
        return "0s".into();
    }
    let ms = (secs * 1000.0).round() as i64;
    let (sign, ms) = if ms < 0 { ("-", -ms) } else { ("", ms) };
    let (h, m, s, frac) = (
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms / 1000) % 60,
        ms % 1000,
    );
    let mut out = sign.to_owned();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    if frac > 0 {
        let f = format!("{frac:03}");
        let _ = write!(out, "{s}.{}s", f.trim_end_matches('0'));
    } else {
        let _ = write!(out, "{s}s");
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use.
pub fn sprintf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+# 0".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let body = format_verb(verb, &flags, prec, arg);
        let width: usize = width.parse().unwrap_or(0);
        let len = body.chars().count();
        if len >= width {
            out.push_str(&body);
        } else if flags.contains('-') {
            out.push_str(&body);
            out.push_str(&" ".repeat(width - len));
        } else if flags.contains('0') && !matches!(verb, 's' | 'q' | 'v' | 't') {
            let (sign, digits) = match body.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(width - len));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(width - len));
            out.push_str(&body);
        }
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.render()))
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

fn format_verb(verb: char, flags: &str, prec: Option<usize>, arg: &Val) -> String {
    let plus = |s: String, v: f64| {
        if flags.contains('+') && v >= 0.0 {
            format!("+{s}")
        } else {
            s
        }
    };
    match verb {
        'd' => match arg {
            Val::Int(i) => plus(i.to_string(), *i as f64),
            other => format!("%!d({}={})", other.type_name(), other.render()),
        },
        'f' | 'F' => match arg.as_f64() {
            Ok(v) if matches!(arg, Val::Float(_) | Val::Int(_)) && v.is_finite() => {
                plus(format!("{:.*}", prec.unwrap_or(6), v), v)
            }
            Ok(v) if matches!(arg, Val::Float(_)) => go_float_v(v),
            _ => format!("%!{verb}({}={})", arg.type_name(), arg.render()),
        },
        'e' | 'E' => match arg {
            Val::Float(v) => {
                let s = format!("{:.*e}", prec.unwrap_or(6), v);
                let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                let r = format!("{m}{}", exp_suffix(e.parse().unwrap_or(0)));
                plus(if verb == 'E' { r.to_uppercase() } else { r }, *v)
            }
            other => format!("%!{verb}({}={})", other.type_name(), other.render()),
        },
        'g' | 'G' => match arg {
            Val::Float(v) => {
                let r = match prec {
                    Some(p) => go_g(*v, p),
                    None => go_float_v(*v),
                };
                plus(if verb == 'G' { r.to_uppercase() } else { r }, *v)
            }
            other => format!("%!{verb}({}={})", other.type_name(), other.render()),
        },
        's' | 'v' => {
            let s = arg.render();
            match (verb, prec) {
                ('s', Some(p)) => s.chars().take(p).collect(),
                _ => s,
            }
        }
        'q' => format!("{:?}", arg.render()),
        't' => match arg {
            Val::Bool(b) => b.to_string(),
            other => format!("%!t({}={})", other.type_name(), other.render()),
        },
        'x' | 'X' => {
            let s = match arg {
                Val::Int(i) => format!("{i:x}"),
                Val::Str(s) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                other => format!("%!x({}={})", other.type_name(), other.render()),
            };
            if verb == 'X' { s.to_uppercase() } else { s }
        }
        other => format!("%!{other}({}={})", arg.type_name(), arg.render()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Env for Fake {
        fn query(&self, q: &str) -> Result<Vec<Val>, String> {
            if q == "bad" {
                return Err("parse error".into());
            }
            Ok(vec![
                sample_val(&BTreeMap::from([("job".into(), "b".into())]), 2.0),
                sample_val(&BTreeMap::from([("job".into(), "a".into())]), 1.5),
            ])
        }
        fn external_url(&self) -> String {
            "http://ember:9090/p".into()
        }
    }

    fn run(text: &str) -> Result<String, TemplateError> {
        let labels = Val::Map(BTreeMap::from([
            ("instance".into(), Val::Str("host:9100".into())),
            ("job".into(), Val::Str("node".into())),
        ]));
        let ext = Val::Map(BTreeMap::from([("dc".into(), Val::Str("eu".into()))]));
        let data = Val::Map(BTreeMap::from([
            ("Labels".into(), labels.clone()),
            ("ExternalLabels".into(), ext.clone()),
            ("Value".into(), Val::Float(1234.5678)),
        ]));
        let t = Template::parse("__alert_X", text)?;
        t.execute(
            &data,
            &[
                ("$labels", labels),
                ("$externalLabels", ext),
                ("$externalURL", Val::Str("http://ember:9090/p".into())),
                ("$value", Val::Float(1234.5678)),
            ],
            &Fake,
        )
    }

    #[test]
    fn what_rule_files_write() {
        assert_eq!(
            run("{{ $labels.instance }} is down").unwrap(),
            "host:9100 is down"
        );
        assert_eq!(run("{{ $value }}").unwrap(), "1234.5678");
        assert_eq!(
            run("{{ $externalLabels.dc }}/{{ $labels.missing }}.").unwrap(),
            "eu/."
        );
        assert_eq!(run("{{ .Labels.job }}").unwrap(), "node");
        assert_eq!(run("{{ $value | humanize }}").unwrap(), "1.235k");
        assert_eq!(run("{{ humanize1024 2048 }}").unwrap(), "2ki");
        assert_eq!(run("{{ humanizeDuration 3661 }}").unwrap(), "1h 1m 1s");
        assert_eq!(run("{{ humanizeDuration 0.25 }}").unwrap(), "250ms");
        assert_eq!(run("{{ humanizePercentage 0.1234 }}").unwrap(), "12.34%");
        assert_eq!(run("{{ printf \"%.2f\" $value }}").unwrap(), "1234.57");
        assert_eq!(run("{{ printf \"%s=%d\" \"a\" 3 }}").unwrap(), "a=3");
        assert_eq!(
            run(
                "{{ if gt $value 1000.0 }}high{{ else if gt $value 10.0 }}mid{{ else }}low{{ end }}"
            )
            .unwrap(),
            "high"
        );
        assert_eq!(
            run("{{ range query \"up\" }}{{ .Labels.job }}={{ .Value }} {{ end }}").unwrap(),
            "b=2 a=1.5 "
        );
        assert_eq!(
            run("{{ range $i, $s := query \"up\" | sortByLabel \"job\" }}{{ $i }}:{{ label \"job\" $s }} {{ end }}").unwrap(),
            "0:a 1:b "
        );
        assert_eq!(run("{{ query \"up\" | first | value }}").unwrap(), "2");
        assert_eq!(
            run("{{ with query \"up\" }}{{ . | first | value | printf \"%.1f\" }}{{ end }}")
                .unwrap(),
            "2.0"
        );
        assert_eq!(run("a {{- \" b \" -}} c").unwrap(), "a b c");
        assert_eq!(run("{{/* note */}}x").unwrap(), "x");
        assert_eq!(run("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}").unwrap(), "2");
        assert_eq!(
            run("{{ toUpper \"a\" }}{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}")
                .unwrap(),
            "Ahost"
        );
        assert_eq!(run("{{ stripPort $labels.instance }}").unwrap(), "host");
        assert_eq!(
            run("{{ graphLink \"up\" }}").unwrap(),
            "/graph?g0.expr=up&g0.tab=0"
        );
    }

    #[test]
    fn errors_like_go() {
        let e = Template::parse("__alert_X", "{{ .Foo ").unwrap_err();
        assert_eq!(e.to_string(), "template: __alert_X:1: unclosed action");
        let e = Template::parse("__alert_X", "{{ foo }}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "template: __alert_X:1: function \"foo\" not defined"
        );
        let e = Template::parse("__alert_X", "{{ $x }}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "template: __alert_X:1: undefined variable \"$x\""
        );
        assert!(Template::parse("t", "{{ if 1 }}").is_err());
        assert!(Template::parse("t", "{{ end }}").is_err());
        assert!(Template::parse("t", "{{ if 1 }}{{ $y := 1 }}{{ end }}{{ $y }}").is_err());
        assert!(Template::parse("t", "{{ template \"x\" }}").is_ok());
        let e = run("{{ query \"bad\" }}").unwrap_err();
        assert!(
            e.to_string().contains("error calling query: parse error"),
            "{e}"
        );
    }

    #[test]
    fn go_number_formats() {
        assert_eq!(go_float_v(1e6), "1e+06");
        assert_eq!(go_float_v(123456.0), "123456");
        assert_eq!(go_float_v(0.0001), "0.0001");
        assert_eq!(go_float_v(0.00001), "1e-05");
        assert_eq!(go_g(12345.0, 4), "1.234e+04");
        assert_eq!(go_g(0.5, 4), "0.5");
        assert_eq!(humanize(0.0012), "1.2m");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize_timestamp(1.5), "1970-01-01 00:00:01.5 +0000 UTC");
    }
}
