//! CTI templates (spec §5–§6): parsing `{PARAM}` parameters and the `MD5`, `SHA256`,
//! `LOWERCASE`, `UPPERCASE` functions into a tree once, at load, with every error located; and
//! expanding that tree for one call, encoding each caller-controlled value for the context it
//! lands in (SAF-1): a URL component, a form body, one argv word, or raw text for display.
//!
//! Syntax: `{NAME}` is a parameter; `NAME(…)` with a known upper-case function name is a
//! function call whose argument is itself a template (literal text, parameters, nested
//! calls); other parentheses are literal but must balance; `{{` and `}}` are literal braces.

use std::fmt::Write as _;

use md5::Md5;
use sha2::{Digest, Sha256};

/// A template function (FUN-1…4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Md5,
    Sha256,
    Lowercase,
    Uppercase,
}

impl Func {
    const ALL: [(&'static str, Func); 4] = [
        ("MD5", Func::Md5),
        ("SHA256", Func::Sha256),
        ("LOWERCASE", Func::Lowercase),
        ("UPPERCASE", Func::Uppercase),
    ];

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    fn apply(self, input: &str) -> String {
        match self {
            Func::Md5 => upper_hex(&Md5::digest(input.as_bytes())),
            Func::Sha256 => upper_hex(&Sha256::digest(input.as_bytes())),
            Func::Lowercase => input.to_lowercase(),
            Func::Uppercase => input.to_uppercase(),
        }
    }
}

/// Upper-case hex of a digest (the manual's format).
pub fn upper_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// One node of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Text(String),
    Param(String),
    Call(Func, Vec<Node>),
}

/// A template problem, at a byte offset in the template text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

/// Is `c` part of a parameter or function name?
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl Template {
    /// Parses `source`; `known` says whether a parameter name exists. All errors are returned.
    pub fn parse(source: &str, known: &dyn Fn(&str) -> bool) -> Result<Self, Vec<TemplateError>> {
        Parser {
            src: source,
            known,
            errors: Vec::new(),
        }
        .run()
    }

    /// The template's text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every parameter name the template uses.
    pub fn params(&self) -> Vec<&str> {
        fn walk<'a>(nodes: &'a [Node], out: &mut Vec<&'a str>) {
            for n in nodes {
                match n {
                    Node::Param(p) => out.push(p),
                    Node::Call(_, args) => walk(args, out),
                    Node::Text(_) => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.nodes, &mut out);
        out
    }

    /// Expands into pieces: literal text and values, each value tagged with its trust.
    pub fn pieces(&self, vars: &dyn Lookup) -> Vec<Piece> {
        let mut out = Vec::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) => push_literal(&mut out, t),
                Node::Param(p) => out.push(vars.lookup(p)),
                Node::Call(f, args) => {
                    let inner = Template {
                        source: String::new(),
                        nodes: args.clone(),
                    };
                    let pieces = inner.pieces(vars);
                    let secret = pieces.iter().any(|p| p.secret);
                    let text: String = pieces.iter().map(|p| p.text.as_str()).collect();
                    out.push(Piece {
                        text: f.apply(&text),
                        kind: PieceKind::Value,
                        secret,
                    });
                }
            }
        }
        out
    }
}

fn push_literal(out: &mut Vec<Piece>, t: &str) {
    out.push(Piece {
        text: t.to_owned(),
        kind: PieceKind::Literal,
        secret: false,
    });
}

struct Parser<'a> {
    src: &'a str,
    known: &'a dyn Fn(&str) -> bool,
    errors: Vec<TemplateError>,
}

/// What an open parenthesis belongs to.
enum Open {
    Literal(usize),
    Call(usize, Func, Vec<Node>),
}

impl Parser<'_> {
    fn err(&mut self, offset: usize, message: String) {
        self.errors.push(TemplateError { offset, message });
    }

    fn run(mut self) -> Result<Template, Vec<TemplateError>> {
        let src = self.src;
        let bytes = src.as_bytes();
        // The node list being filled, and the stack of enclosing open parentheses.
        let mut current: Vec<Node> = Vec::new();
        let mut stack: Vec<Open> = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while i < src.len() {
            let c = src[i..].chars().next().unwrap_or('\0');
            match c {
                '{' if bytes.get(i + 1) == Some(&b'{') => {
                    text.push('{');
                    i += 2;
                }
                '}' if bytes.get(i + 1) == Some(&b'}') => {
                    text.push('}');
                    i += 2;
                }
                '{' => {
                    let rest = &src[i + 1..];
                    let end = rest.find(['}', '{']);
                    match end {
                        Some(e) if rest.as_bytes()[e] == b'}' => {
                            let name = &rest[..e];
                            if name.is_empty() || !name.chars().all(is_name_char) {
                                self.err(
                                    i,
                                    format!("invalid parameter name `{{{name}}}` at position {}", i + 1),
                                );
                            } else if !(self.known)(name) {
                                self.err(i, format!("unknown parameter `{{{name}}}` at position {}", i + 1));
                            }
                            flush(&mut text, &mut current);
                            current.push(Node::Param(name.to_owned()));
                            i += e + 2;
                        }
                        _ => {
                            self.err(i, format!("unbalanced `{{` at position {}: no closing `}}` (write `{{{{` for a literal brace)", i + 1));
                            i += 1;
                        }
                    }
                }
                '}' => {
                    self.err(i, format!("unbalanced `}}` at position {}: no opening `{{` (write `}}}}` for a literal brace)", i + 1));
                    i += 1;
                }
                '(' => {
                    // A function call when the text just before is a known function name.
                    let name_start = text
                        .char_indices()
                        .rev()
                        .take_while(|(_, ch)| ch.is_ascii_alphanumeric() || *ch == '_')
                        .last()
                        .map(|(k, _)| k);
                    let func = name_start.and_then(|k| {
                        let name = &text[k..];
                        let upper = name.chars().next().is_some_and(|ch| ch.is_ascii_uppercase())
                            && name.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_');
                        if !upper || name.len() < 2 {
                            return None;
                        }
                        let f = Func::from_name(name);
                        if f.is_none() {
                            self.err(
                                i - name.len(),
                                format!(
                                    "unknown function `{name}` at position {}, expected one of MD5, SHA256, LOWERCASE, UPPERCASE",
                                    i - name.len() + 1
                                ),
                            );
                        }
                        f.map(|f| (k, f))
                    });
                    match func {
                        Some((k, f)) => {
                            text.truncate(k);
                            flush(&mut text, &mut current);
                            let outer = std::mem::take(&mut current);
                            stack.push(Open::Call(i, f, outer));
                        }
                        None => {
                            text.push('(');
                            stack.push(Open::Literal(i));
                        }
                    }
                    i += 1;
                }
                ')' => {
                    match stack.pop() {
                        Some(Open::Literal(_)) => text.push(')'),
                        Some(Open::Call(_, f, outer)) => {
                            flush(&mut text, &mut current);
                            let args = std::mem::replace(&mut current, outer);
                            current.push(Node::Call(f, args));
                        }
                        None => self.err(i, format!("unbalanced `)` at position {}: no `(` is open", i + 1)),
                    }
                    i += 1;
                }
                _ => {
                    text.push(c);
                    i += c.len_utf8();
                }
            }
        }
        for open in stack.into_iter().rev() {
            match open {
                Open::Literal(at) => {
                    self.err(at, format!("unbalanced `(` at position {}: never closed", at + 1))
                }
                Open::Call(at, f, _) => {
                    let name = Func::ALL.iter().find(|(_, g)| *g == f).map_or("", |(n, _)| n);
                    self.err(
                        at,
                        format!("unbalanced `(` of {name}( at position {}: never closed", at + 1),
                    );
                }
            }
        }
        flush(&mut text, &mut current);
        if self.errors.is_empty() {
            Ok(Template {
                source: src.to_owned(),
                nodes: current,
            })
        } else {
            self.errors.sort_by_key(|e| e.offset);
            Err(self.errors)
        }
    }
}

fn flush(text: &mut String, nodes: &mut Vec<Node>) {
    if !text.is_empty() {
        nodes.push(Node::Text(std::mem::take(text)));
    }
}

/// How far a piece of an expansion can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceKind {
    /// Written by the admin in the template.
    Literal,
    /// A configured value that is part of the URL's structure ({SVADDR}): inserted as is.
    Structural,
    /// A value (caller, CRM, or config data): always encoded for its context.
    Value,
}

/// One piece of an expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub kind: PieceKind,
    /// Masked as `***` in anything shown or logged (SAF-3).
    pub secret: bool,
}

impl Piece {
    pub fn value(text: impl Into<String>, secret: bool) -> Self {
        Self {
            text: text.into(),
            kind: PieceKind::Value,
            secret,
        }
    }
    pub fn structural(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            kind: PieceKind::Structural,
            secret: false,
        }
    }
}

/// Where parameter values come from.
pub trait Lookup: Sync {
    /// The value of a parameter; unknown names expand empty.
    fn lookup(&self, name: &str) -> Piece;
}

/// The mask shown in place of a secret.
pub const MASK: &str = "***";

fn shown(p: &Piece, mask: bool) -> Option<&'static str> {
    (mask && p.secret).then_some(MASK)
}

/// Raw expansion (for `cti expand`, argv words, and display), secrets masked when `mask`.
pub fn raw(pieces: &[Piece], mask: bool) -> String {
    pieces.iter().map(|p| shown(p, mask).unwrap_or(&p.text)).collect()
}

/// A value that must not be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataError(pub String);

/// The longest URL sent; longer ones are refused as a data error (servers and HTTP libraries
/// refuse them anyway, less clearly).
pub const MAX_URL: usize = 8192;

/// Percent-encodes everything but RFC 3986 unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn pct(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum UrlPart {
    Path,
    Query,
    Fragment,
}

/// Expands pieces as a URL: each value is percent-encoded as one component, whatever part of
/// the URL it lands in, so it can never add a path segment, a query parameter or a fragment.
/// A value that would form a `.` or `..` path segment is refused.
pub fn url(pieces: &[Piece], mask: bool) -> Result<String, DataError> {
    let mut out = String::new();
    let mut part = UrlPart::Path;
    // The current path segment and whether a value contributed to it.
    let mut seg_start = 0;
    let mut seg_has_value = false;
    let check_segment = |out: &str, start: usize, has_value: bool| -> Result<(), DataError> {
        let seg = &out[start..];
        if has_value && (seg == "." || seg == "..") {
            return Err(DataError(format!("a value would form the path segment `{seg}`")));
        }
        Ok(())
    };
    for p in pieces {
        match p.kind {
            PieceKind::Literal | PieceKind::Structural => {
                for c in p.text.chars() {
                    if part == UrlPart::Path && matches!(c, '/' | '?' | '#') {
                        check_segment(&out, seg_start, seg_has_value)?;
                        seg_has_value = false;
                        seg_start = out.len() + 1;
                    }
                    match (part, c) {
                        (UrlPart::Path, '?') => part = UrlPart::Query,
                        (UrlPart::Path | UrlPart::Query, '#') => part = UrlPart::Fragment,
                        _ => {}
                    }
                    out.push(c);
                }
            }
            PieceKind::Value => {
                match shown(p, mask) {
                    Some(m) => out.push_str(m),
                    None => out.push_str(&pct(&p.text)),
                }
                if part == UrlPart::Path {
                    seg_has_value = true;
                }
            }
        }
    }
    if part == UrlPart::Path {
        check_segment(&out, seg_start, seg_has_value)?;
    }
    if out.len() > MAX_URL {
        return Err(DataError(format!(
            "the URL would be {} bytes long, over the limit of {MAX_URL}",
            out.len()
        )));
    }
    Ok(out)
}

/// Expands pieces as an `application/x-www-form-urlencoded` body: literal text as written,
/// each value form-encoded (space as `+`, `+` as `%2B`, `&` and `=` escaped).
pub fn form_body(pieces: &[Piece], mask: bool) -> String {
    pieces
        .iter()
        .map(|p| match (p.kind, shown(p, mask)) {
            (_, Some(m)) => m.to_owned(),
            (PieceKind::Value, None) => form(&p.text),
            (_, None) => p.text.clone(),
        })
        .collect()
}

/// Splits a POST template's pieces at the first literal `?`: the URL before it, and the query
/// after it (up to a literal `#`) which becomes the form body.
pub fn split_query(pieces: &[Piece]) -> (Vec<Piece>, Vec<Piece>) {
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut in_query = false;
    let mut done = false;
    for p in pieces {
        if p.kind == PieceKind::Value || done {
            if in_query && !done {
                after.push(p.clone());
            } else if !in_query {
                before.push(p.clone());
            }
            continue;
        }
        let mut rest = p.text.as_str();
        while !rest.is_empty() {
            if !in_query {
                match rest.find('?') {
                    Some(q) => {
                        if q > 0 {
                            before.push(Piece {
                                text: rest[..q].to_owned(),
                                ..p.clone()
                            });
                        }
                        in_query = true;
                        rest = &rest[q + 1..];
                    }
                    None => {
                        before.push(Piece {
                            text: rest.to_owned(),
                            ..p.clone()
                        });
                        rest = "";
                    }
                }
            } else {
                match rest.find('#') {
                    Some(h) => {
                        if h > 0 {
                            after.push(Piece {
                                text: rest[..h].to_owned(),
                                ..p.clone()
                            });
                        }
                        done = true;
                        rest = "";
                    }
                    None => {
                        after.push(Piece {
                            text: rest.to_owned(),
                            ..p.clone()
                        });
                        rest = "";
                    }
                }
            }
        }
    }
    (before, after)
}

#[cfg(test)]
mod tests;
