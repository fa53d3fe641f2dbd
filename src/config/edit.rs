//! The configuration editor behind the terminal UI's settings panes: it reads the value at a
//! dotted key path (`cti.timeout_seconds`, `cti.ring.template`, `cti.numbers`), sets or
//! removes it, locates the problems found in the edited text by key path, and writes the file
//! atomically.
//!
//! Every edit is a splice of the file's own text. A `toml_edit` parse locates each key, value
//! and table header by byte span; setting a value replaces only the bytes of the old value, a
//! new key goes on its own line after the last key of its table (with that key's
//! indentation), a new table goes after its siblings, and removing a key removes its line.
//! Everything else — comments, blank lines, key order, quoting, indentation, line endings —
//! stays byte for byte as the user wrote it. The text is parsed again after every edit, so
//! the editor never holds invalid TOML; whether the *configuration* is valid (its templates
//! included, which the CTI engine compiles) is for `settings::validate` to say, and
//! `settings::save` checks before [`Editor::write`]. No terminal code here.

use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{Document, InlineTable, Item, Key, Table, TableLike};

use crate::config::Diagnostic;
use crate::config::diag::line_col;

/// A configuration file being edited: the user's comments, order and formatting survive.
///
/// It holds the file's text as a parsed `toml_edit` document (which keeps every item's byte
/// span) and the path it is saved to.
#[derive(Clone, Debug)]
pub struct Editor {
    doc: Document<String>,
    path: PathBuf,
}

/// A value at a key path, as the settings panes show and set it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// An array of strings (e.g. `audio.codecs`).
    List(Vec<String>),
    /// `[cti] numbers`: each target number and whether it is checked (TGT-1…3).
    Numbers(Vec<(String, bool)>),
}

/// One problem of the edited configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key path the problem is about, when its place in the file names one.
    pub key: Option<String>,
    /// What is wrong, prefixed with `LINE:COL: ` when it has a place.
    pub message: String,
}

/// One splice of the text.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Edit {
    range: Range<usize>,
    text: String,
}

impl Edit {
    fn insert(at: usize, text: String) -> Self {
        Self { range: at..at, text }
    }
    fn replace(range: Range<usize>, text: String) -> Self {
        Self { range, text }
    }
    fn delete(range: Range<usize>) -> Self {
        Self {
            range,
            text: String::new(),
        }
    }
}

/// A table header in the file: `[a.b]` or one `[[a.b]]`.
struct Header {
    path: Vec<String>,
    /// Where the header starts.
    start: usize,
    /// Just past the line of the table's last key (or of the header when it has none).
    end: usize,
}

impl Editor {
    /// Opens the file (a missing file starts empty, to be created on save).
    pub fn open(path: &Path) -> Result<Editor, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_text(&text, path.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::from_text("", path.to_path_buf()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Starts from `text`, to be saved to `path`. Text that is not TOML is refused, with the
    /// place of the error.
    pub fn from_text(text: &str, path: PathBuf) -> Result<Editor, String> {
        let doc = parse(text).map_err(|e| format!("{}:{e}", path.display()))?;
        Ok(Editor { doc, path })
    }

    /// The file this editor saves to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current value at a dotted key path, e.g. "cti.timeout_seconds", "cti.ring.template",
    /// "popup.size", "cti.numbers".
    pub fn get(&self, key: &str) -> Option<Value> {
        let path = split_key(key).ok()?;
        let item = lookup(self.doc.as_item(), &path)?;
        to_value(item, key == "cti.numbers")
    }

    /// The string entries of the table at a dotted key path (`cti.auth.captures`), in the
    /// file's order, whether it is written as a table, an inline table or dotted keys. None
    /// when there is no table there or one of its values is not a string.
    pub fn entries(&self, key: &str) -> Option<Vec<(String, String)>> {
        let path = split_key(key).ok()?;
        let table = lookup(self.doc.as_item(), &path)?.as_table_like()?;
        table
            .iter()
            .map(|(k, v)| v.as_str().map(|s| (k.to_owned(), s.to_owned())))
            .collect()
    }

    /// Sets a value (creating tables as needed, keeping the rest of the document as it is);
    /// None removes the key.
    pub fn set(&mut self, key: &str, value: Option<Value>) -> Result<(), String> {
        let path = split_key(key)?;
        let mut edits = match &value {
            None => self.removal(&path),
            Some(Value::Numbers(numbers)) => self.numbers_edits(&path, numbers)?,
            Some(v) => self.value_edits(&path, &encode(v))?,
        };
        if edits.is_empty() {
            return Ok(());
        }
        // Lines added to a file written with CRLF line ends end the same way.
        if self.doc.raw().contains("\r\n") {
            for e in &mut edits {
                e.text = e.text.replace('\n', "\r\n");
            }
        }
        let text = apply(self.doc.raw(), edits);
        let doc = parse(&text).map_err(|e| format!("setting `{key}` would break the file at {e}"))?;
        self.doc = doc;
        Ok(())
    }

    /// The document's text as it would be written.
    pub fn text(&self) -> String {
        self.doc.raw().to_owned()
    }

    /// The document's text, borrowed.
    pub fn as_str(&self) -> &str {
        self.doc.raw()
    }

    /// Writes the text as it is, atomically (a temp file in the same directory, fsync, rename;
    /// the file keeps its permissions, and a new file is created mode 0600 because it may hold
    /// passwords). No check: `settings::save` validates first.
    pub fn write(&self) -> Result<PathBuf, Problem> {
        write_atomic(&self.path, self.doc.raw().as_bytes()).map_err(|e| Problem {
            key: None,
            message: format!("cannot write {}: {e}", self.path.display()),
        })?;
        Ok(self.path.clone())
    }

    /// A diagnostic of the edited text as a problem: the dotted key path if it can be found
    /// from the diagnostic's span (else None), and the message with its `LINE:COL: `.
    pub fn problem(&self, d: &Diagnostic) -> Problem {
        let text = self.doc.raw();
        match &d.span {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                Problem {
                    key: self.key_at(span.start, &d.message),
                    message: format!("{line}:{col}: {}", d.message),
                }
            }
            None => Problem {
                key: None,
                message: d.message.clone(),
            },
        }
    }

    /// The dotted key path of the key, value or table header at byte `offset`. A problem
    /// located on a whole table that names one of the table's keys (`` `timeout_seconds` must
    /// be … ``) is about that key.
    pub fn key_at(&self, offset: usize, message: &str) -> Option<String> {
        let text = self.doc.raw();
        let mut best = None;
        find_at(self.doc.as_table(), text, offset, &mut Vec::new(), &mut best);
        let (mut path, is_table) = best?;
        if is_table {
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(t) = lookup(self.doc.as_item(), &refs).and_then(Item::as_table_like)
                && let Some(name) = backticked(message).into_iter().find(|n| t.contains_key(n))
            {
                path.push(name.to_owned());
            }
        }
        Some(path.join("."))
    }

    /// The edits that put the encoded value `enc` at `path`.
    fn value_edits(&self, path: &[&str], enc: &str) -> Result<Vec<Edit>, String> {
        let text = self.doc.raw();
        let chain = chain(self.doc.as_item(), path);
        if chain.len() == path.len() + 1 {
            let item = chain[path.len()];
            return match item {
                Item::Value(v) => match v.span() {
                    Some(span) => Ok(vec![Edit::replace(span, enc.to_owned())]),
                    None => Err(format!("`{}` has no place in the file", path.join("."))),
                },
                _ => Err(format!("`{}` is a table, not a value", path.join("."))),
            };
        }
        let d = chain.len() - 1;
        let container = chain[d];
        let rest = &path[d..];
        let leaf = rest.len() == 1;
        match container {
            Item::Value(toml_edit::Value::InlineTable(t)) => {
                Ok(vec![inline_insert(text, t, &[(dotted(rest), enc.to_owned())])?])
            }
            Item::Table(t) if t.is_dotted() => {
                // Insert a dotted key into the table the dotted keys are written in.
                let j = (0..d)
                    .rev()
                    .find(|&j| j == 0 || matches!(chain[j], Item::Table(t) if !t.is_dotted()))
                    .unwrap_or(0);
                let line = (dotted(&path[j..]), enc.to_owned());
                match chain[j] {
                    Item::Table(anchor) if j > 0 => Ok(vec![kv_insert(text, anchor, &[line])]),
                    _ => Ok(vec![root_insert(text, self.doc.as_table(), &line)]),
                }
            }
            Item::Table(t) if d == 0 => {
                if leaf {
                    Ok(vec![root_insert(text, t, &(dotted(rest), enc.to_owned()))])
                } else {
                    Ok(vec![self.new_header(path, enc, &[])])
                }
            }
            Item::Table(t) if t.is_implicit() => {
                if leaf {
                    Ok(vec![self.implicit_header(path, enc)])
                } else {
                    Ok(vec![self.new_header(path, enc, &path[..d])])
                }
            }
            Item::Table(t) => {
                if leaf {
                    Ok(vec![kv_insert(text, t, &[(dotted(rest), enc.to_owned())])])
                } else {
                    Ok(vec![self.new_header(path, enc, &path[..d])])
                }
            }
            Item::ArrayOfTables(_) => Err(format!("`{}` is an array of tables", path[..d].join("."))),
            _ => Err(format!("`{}` is not a table", path[..d].join("."))),
        }
    }

    /// A new `[path[..n-1]]` table holding the last key, after the last table under `after`.
    fn new_header(&self, path: &[&str], enc: &str, after: &[&str]) -> Edit {
        let text = self.doc.raw();
        let n = path.len();
        let pos = headers(self.doc.as_table(), text)
            .into_iter()
            .filter(|h| starts_with(&h.path, after))
            .max_by_key(|h| h.start)
            .map_or(text.len(), |h| h.end);
        let mut s = String::new();
        if pos == text.len() && !text.is_empty() && !text.ends_with('\n') {
            s.push('\n');
        }
        if !text.is_empty() {
            s.push('\n');
        }
        s.push_str(&format!(
            "[{}]\n{} = {enc}\n",
            dotted(&path[..n - 1]),
            key_text(path[n - 1])
        ));
        Edit::insert(pos, s)
    }

    /// The header of a table that so far exists only through its sub-tables (`[cti.ring]`
    /// without `[cti]`), holding the last key, placed before its first sub-table and the
    /// comments just above it.
    fn implicit_header(&self, path: &[&str], enc: &str) -> Edit {
        let text = self.doc.raw();
        let n = path.len();
        let parent = &path[..n - 1];
        let first = headers(self.doc.as_table(), text)
            .into_iter()
            .filter(|h| h.path.len() > parent.len() && starts_with(&h.path, parent))
            .min_by_key(|h| h.start);
        match first {
            Some(h) => Edit::insert(
                comment_block_start(text, h.start),
                format!("[{}]\n{} = {enc}\n\n", dotted(parent), key_text(path[n - 1])),
            ),
            None => self.new_header(path, enc, parent),
        }
    }

    /// The edits that remove the key at `path` (none when it is not there).
    fn removal(&self, path: &[&str]) -> Vec<Edit> {
        let text = self.doc.raw();
        let chain = chain(self.doc.as_item(), path);
        let mut out = Vec::new();
        if chain.len() != path.len() + 1 {
            return out;
        }
        let n = path.len();
        let Some(parent) = chain[n - 1].as_table_like() else {
            return out;
        };
        let Some((key, item)) = parent.get_key_value(path[n - 1]) else {
            return out;
        };
        match (chain[n - 1], item) {
            (Item::Value(_), Item::Value(v)) => {
                if let (Some(ks), Some(vs)) = (key.span(), v.span()) {
                    out.push(inline_remove(text, ks.start..vs.end));
                }
            }
            _ => remove_item(text, key, item, &mut out),
        }
        out
    }

    /// The edits that make the target-number list at `path` hold `numbers`, changing only the
    /// fields that differ when the list keeps its length.
    fn numbers_edits(&self, path: &[&str], numbers: &[(String, bool)]) -> Result<Vec<Edit>, String> {
        let text = self.doc.raw();
        let Some(item) = lookup(self.doc.as_item(), path) else {
            return self.value_edits(path, &encode_numbers(numbers));
        };
        let mut out = Vec::new();
        match item {
            Item::Value(toml_edit::Value::Array(a))
                if !a.is_empty() && a.len() == numbers.len() && a.iter().all(|v| v.is_inline_table()) =>
            {
                for (v, (number, enabled)) in a.iter().zip(numbers) {
                    let Some(t) = v.as_inline_table() else { continue };
                    let mut added = Vec::new();
                    field_edits(t, number, *enabled, &mut out, &mut added);
                    if !added.is_empty() {
                        out.push(inline_insert(text, t, &added)?);
                    }
                }
            }
            Item::Value(v) => match v.span() {
                Some(span) => out.push(Edit::replace(span, encode_numbers(numbers))),
                None => return Err(format!("`{}` has no place in the file", path.join("."))),
            },
            Item::ArrayOfTables(a) => {
                let tables: Vec<&Table> = a.iter().collect();
                for (t, (number, enabled)) in tables.iter().zip(numbers) {
                    let mut added = Vec::new();
                    field_edits(*t, number, *enabled, &mut out, &mut added);
                    if !added.is_empty() {
                        out.push(kv_insert(text, t, &added));
                    }
                }
                for t in tables.iter().skip(numbers.len()) {
                    if let Some(span) = t.span() {
                        out.push(Edit::delete(line_start(text, span.start)..section_end(text, t)));
                    }
                }
                if numbers.len() > tables.len() {
                    let pos = tables.last().map_or(text.len(), |t| section_end(text, t));
                    let mut s = String::new();
                    if pos == text.len() && !text.is_empty() && !text.ends_with('\n') {
                        s.push('\n');
                    }
                    for (number, enabled) in &numbers[tables.len()..] {
                        s.push_str(&format!(
                            "\n[[{}]]\nnumber = {}\nenabled = {enabled}\n",
                            dotted(path),
                            encode_str(number)
                        ));
                    }
                    out.push(Edit::insert(pos, s));
                }
            }
            _ => return Err(format!("`{}` is a table, not a list of numbers", path.join("."))),
        }
        Ok(out)
    }
}

/// Sets every target number's `enabled` flag at once (TGT-2 check all / uncheck all).
pub fn set_all_numbers(ed: &mut Editor, enabled: bool) -> Result<(), String> {
    match ed.get("cti.numbers") {
        Some(Value::Numbers(numbers)) => {
            let numbers = numbers.into_iter().map(|(n, _)| (n, enabled)).collect();
            ed.set("cti.numbers", Some(Value::Numbers(numbers)))
        }
        Some(_) => Err("`cti.numbers` is not a list of target numbers".to_owned()),
        None => Ok(()),
    }
}

// --- reading -----------------------------------------------------------------------------

fn parse(text: &str) -> Result<Document<String>, String> {
    Document::parse(text.to_owned()).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let (line, col) = line_col(text, at);
        format!("{line}:{col}: invalid TOML: {}", super::one_line(e.message()))
    })
}

fn split_key(key: &str) -> Result<Vec<&str>, String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}` is not a key path, expected names joined by `.`"));
    }
    Ok(parts)
}

fn lookup<'a>(root: &'a Item, path: &[&str]) -> Option<&'a Item> {
    let mut item = root;
    for seg in path {
        item = item.as_table_like()?.get(seg)?;
    }
    Some(item)
}

/// The items along `path` that exist: the root first, then one per segment found.
fn chain<'a>(root: &'a Item, path: &[&str]) -> Vec<&'a Item> {
    let mut out = vec![root];
    let mut item = root;
    for seg in path {
        match item.as_table_like().and_then(|t| t.get(seg)) {
            Some(next) => {
                out.push(next);
                item = next;
            }
            None => break,
        }
    }
    out
}

fn to_value(item: &Item, numbers: bool) -> Option<Value> {
    use toml_edit::Value as V;
    match item {
        Item::Value(V::Boolean(b)) => Some(Value::Bool(*b.value())),
        Item::Value(V::Integer(i)) => Some(Value::Int(*i.value())),
        Item::Value(V::Float(f)) => Some(Value::Float(*f.value())),
        Item::Value(V::String(s)) => Some(Value::Text(s.value().clone())),
        Item::Value(V::Datetime(d)) => Some(Value::Text(d.value().to_string())),
        Item::Value(V::Array(a)) => {
            if numbers || (!a.is_empty() && a.iter().all(|v| v.is_inline_table())) {
                a.iter()
                    .map(|v| v.as_inline_table().and_then(|t| number_entry(t)))
                    .collect::<Option<Vec<_>>>()
                    .map(Value::Numbers)
            } else {
                a.iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .map(Value::List)
            }
        }
        Item::ArrayOfTables(a) => a
            .iter()
            .map(|t| number_entry(t))
            .collect::<Option<Vec<_>>>()
            .map(Value::Numbers),
        _ => None,
    }
}

/// One target number: `number` (required) and `enabled` (default true).
fn number_entry(t: &dyn TableLike) -> Option<(String, bool)> {
    let number = t.get("number")?.as_str()?.to_owned();
    let enabled = match t.get("enabled") {
        None => true,
        Some(e) => e.as_bool()?,
    };
    Some((number, enabled))
}

/// Every table header of the document, in no particular order.
fn headers(root: &Table, text: &str) -> Vec<Header> {
    fn walk(t: &Table, text: &str, path: &mut Vec<String>, out: &mut Vec<Header>) {
        for (k, item) in t.iter() {
            path.push(k.to_owned());
            match item {
                Item::Table(sub) => {
                    if let (false, false, Some(span)) = (sub.is_dotted(), sub.is_implicit(), sub.span()) {
                        out.push(Header {
                            path: path.clone(),
                            start: span.start,
                            end: section_end(text, sub),
                        });
                    }
                    walk(sub, text, path, out);
                }
                Item::ArrayOfTables(a) => {
                    for sub in a.iter() {
                        if let Some(span) = sub.span() {
                            out.push(Header {
                                path: path.clone(),
                                start: span.start,
                                end: section_end(text, sub),
                            });
                        }
                        walk(sub, text, path, out);
                    }
                }
                _ => {}
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(root, text, &mut Vec::new(), &mut out);
    out
}

/// The last key-value of a table (through its dotted keys): the start of its key and the
/// end of its value.
fn last_kv(t: &Table) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for (k, item) in t.iter() {
        let found = match item {
            Item::Value(v) => match (t.key(k).and_then(Key::span), v.span()) {
                (Some(ks), Some(vs)) => Some((ks.start, vs.end)),
                _ => None,
            },
            Item::Table(sub) if sub.is_dotted() => last_kv(sub),
            _ => None,
        };
        if let Some(f) = found
            && best.is_none_or(|b| f.1 > b.1)
        {
            best = Some(f);
        }
    }
    best
}

/// Just past the line of a header table's last key, or of its header.
fn section_end(text: &str, t: &Table) -> usize {
    let end = last_kv(t)
        .map(|(_, e)| e)
        .or_else(|| t.span().map(|s| s.end))
        .unwrap_or(text.len());
    line_after(text, end)
}

/// Where the table or key-value at `offset` is: (dotted path, is a table).
fn find_at(
    t: &dyn TableLike,
    text: &str,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Option<(Vec<String>, bool)>,
) {
    let within =
        |r: Option<Range<usize>>| r.is_some_and(|r| r.start <= offset && offset < r.end.max(r.start + 1));
    for (k, item) in t.iter() {
        let Some((key, item)) = t.get_key_value(k).map(|(key, _)| (key, item)) else {
            continue;
        };
        path.push(k.to_owned());
        match item {
            Item::Value(v) => {
                let range = match (key.span(), v.span()) {
                    (Some(ks), Some(vs)) => Some(ks.start..vs.end),
                    (ks, vs) => ks.or(vs),
                };
                if within(range) {
                    *best = Some((path.clone(), false));
                    if let Some(inline) = v.as_inline_table() {
                        find_at(inline, text, offset, path, best);
                    }
                }
            }
            Item::Table(sub) => {
                if !sub.is_dotted() && within(sub.span()) {
                    *best = Some((path.clone(), true));
                }
                find_at(sub, text, offset, path, best);
            }
            Item::ArrayOfTables(a) => {
                // A dotted path cannot name one table of the array: the array it is.
                let hit = a.iter().any(|sub| {
                    sub.span()
                        .is_some_and(|s| s.start <= offset && offset < section_end(text, sub))
                });
                if hit {
                    *best = Some((path.clone(), false));
                }
            }
            Item::None => {}
        }
        path.pop();
    }
}

/// The names in backquotes in a message; of `` `[audio] codecs` `` the last word.
fn backticked(message: &str) -> Vec<&str> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|s| s.split_whitespace().last())
        .map(|s| s.trim_matches(|c| c == '[' || c == ']'))
        .collect()
}

// --- writing -----------------------------------------------------------------------------

/// Applies non-overlapping edits (an edit overlapping one after it is dropped).
fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for e in edits {
        if e.range.start < at || e.range.end > text.len() {
            continue;
        }
        out.push_str(text.get(at..e.range.start).unwrap_or(""));
        out.push_str(&e.text);
        at = e.range.end;
    }
    out.push_str(text.get(at..).unwrap_or(""));
    out
}

fn line_start(text: &str, pos: usize) -> usize {
    text.get(..pos).and_then(|t| t.rfind('\n')).map_or(0, |i| i + 1)
}

/// Just past the end of the line holding `pos` (its newline included).
fn line_after(text: &str, pos: usize) -> usize {
    text.get(pos..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| pos + i + 1)
}

/// The start of the comment lines directly above the line holding `pos`.
fn comment_block_start(text: &str, pos: usize) -> usize {
    let mut start = line_start(text, pos);
    while start > 0 {
        let prev = line_start(text, start - 1);
        if text
            .get(prev..start)
            .is_some_and(|l| l.trim_start().starts_with('#'))
        {
            start = prev;
        } else {
            break;
        }
    }
    start
}

fn indent_of(text: &str, pos: usize) -> &str {
    let start = line_start(text, pos);
    let line = text.get(start..).unwrap_or("");
    let n = line.len() - line.trim_start_matches([' ', '\t']).len();
    &line[..n]
}

/// New `key = value` lines after the last key of a header table (or its header line).
fn kv_insert(text: &str, t: &Table, lines: &[(String, String)]) -> Edit {
    let (indent, end) = match last_kv(t) {
        Some((ks, ve)) => (indent_of(text, ks), ve),
        None => ("", t.span().map_or(text.len(), |s| s.end)),
    };
    let pos = line_after(text, end);
    let mut s = String::new();
    if pos == text.len() && !text.is_empty() && !text.ends_with('\n') {
        s.push('\n');
    }
    for (k, v) in lines {
        s.push_str(&format!("{indent}{k} = {v}\n"));
    }
    Edit::insert(pos, s)
}

/// A new top-level key: after the last one, else at the top of the file.
fn root_insert(text: &str, root: &Table, line: &(String, String)) -> Edit {
    match last_kv(root) {
        Some(_) => kv_insert(text, root, std::slice::from_ref(line)),
        None => {
            let sep = if text.is_empty() { "" } else { "\n" };
            Edit::insert(0, format!("{} = {}\n{sep}", line.0, line.1))
        }
    }
}

/// New `key = value` pairs at the end of an inline table.
fn inline_insert(text: &str, t: &InlineTable, pairs: &[(String, String)]) -> Result<Edit, String> {
    let span = t.span().ok_or("the inline table has no place in the file")?;
    let raw = text.get(span.clone()).unwrap_or("");
    let close = raw
        .rfind('}')
        .map(|i| span.start + i)
        .ok_or("the inline table is not closed")?;
    let inner = text.get(span.start + 1..close).unwrap_or("");
    let joined = pairs
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    if inner.trim().is_empty() {
        return Ok(Edit::replace(span, format!("{{ {joined} }}")));
    }
    let trimmed = inner.trim_end();
    let at = span.start + 1 + trimmed.len();
    let sep = if trimmed.ends_with(',') { " " } else { ", " };
    Ok(Edit::insert(at, format!("{sep}{joined}")))
}

/// Removes `key = value` (`range`) from an inline table with one of its commas.
fn inline_remove(text: &str, range: Range<usize>) -> Edit {
    let (mut start, mut end) = (range.start, range.end);
    let after = text.get(end..).unwrap_or("");
    let gap = after.len() - after.trim_start_matches([' ', '\t']).len();
    if after[gap..].starts_with(',') {
        let rest = &after[gap + 1..];
        end += gap + 1 + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
    } else {
        let before = text.get(..start).unwrap_or("");
        let trimmed = before.trim_end_matches([' ', '\t']);
        if trimmed.ends_with(',') {
            start = trimmed.len() - 1;
        }
    }
    Edit::delete(start..end)
}

/// Removes a key-value line, or a whole table section with its sub-tables.
fn remove_item(text: &str, key: &Key, item: &Item, out: &mut Vec<Edit>) {
    match item {
        Item::Value(v) => {
            if let (Some(ks), Some(vs)) = (key.span(), v.span()) {
                out.push(Edit::delete(line_start(text, ks.start)..line_after(text, vs.end)));
            }
        }
        Item::Table(t) if t.is_dotted() || t.is_implicit() => {
            for (k, _) in t.iter() {
                if let Some((key, item)) = t.get_key_value(k) {
                    remove_item(text, key, item, out);
                }
            }
        }
        Item::Table(t) => remove_section(text, t, out),
        Item::ArrayOfTables(a) => {
            for t in a.iter() {
                remove_section(text, t, out);
            }
        }
        Item::None => {}
    }
}

/// Removes a header table (header through its last key) and the tables under it.
fn remove_section(text: &str, t: &Table, out: &mut Vec<Edit>) {
    if let Some(span) = t.span() {
        out.push(Edit::delete(line_start(text, span.start)..section_end(text, t)));
    }
    fn sub_headers(t: &Table, text: &str, out: &mut Vec<Edit>) {
        for (k, item) in t.iter() {
            match item {
                Item::Table(sub) if sub.is_dotted() => sub_headers(sub, text, out),
                Item::Table(_) | Item::ArrayOfTables(_) => {
                    if let Some((key, item)) = t.get_key_value(k) {
                        remove_item(text, key, item, out);
                    }
                }
                _ => {}
            }
        }
    }
    sub_headers(t, text, out);
}

/// Edits that set `number` and `enabled` in one target-number table; the fields it lacks go
/// to `added` (`enabled` only when false, true being the default).
fn field_edits(
    t: &dyn TableLike,
    number: &str,
    enabled: bool,
    out: &mut Vec<Edit>,
    added: &mut Vec<(String, String)>,
) {
    match t.get("number") {
        Some(item) if item.as_str() == Some(number) => {}
        Some(item) => {
            if let Some(span) = item.span() {
                out.push(Edit::replace(span, encode_str(number)));
            }
        }
        None => added.push(("number".to_owned(), encode_str(number))),
    }
    match t.get("enabled") {
        Some(item) if item.as_bool() == Some(enabled) => {}
        Some(item) => {
            if let Some(span) = item.span() {
                out.push(Edit::replace(span, enabled.to_string()));
            }
        }
        None if !enabled => added.push(("enabled".to_owned(), "false".to_owned())),
        None => {}
    }
}

/// A value as TOML text.
fn encode(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => toml::Value::Float(*f).to_string(),
        Value::Text(s) => encode_str(s),
        Value::List(items) => format!(
            "[{}]",
            items.iter().map(|s| encode_str(s)).collect::<Vec<_>>().join(", ")
        ),
        Value::Numbers(n) => encode_numbers(n),
    }
}

/// A string as TOML: as `toml` writes it (a literal string when that avoids escapes), but
/// always on one line, so an edit never adds lines of its own.
fn encode_str(s: &str) -> String {
    let enc = toml::Value::String(s.to_owned()).to_string();
    if !enc.contains(['\n', '\r']) {
        return enc;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A target-number list, one inline table a line (the layout of `config.example.toml`).
fn encode_numbers(numbers: &[(String, bool)]) -> String {
    if numbers.is_empty() {
        return "[]".to_owned();
    }
    let mut s = "[\n".to_owned();
    for (number, enabled) in numbers {
        s.push_str(&format!(
            "  {{ number = {}, enabled = {enabled} }},\n",
            encode_str(number)
        ));
    }
    s.push(']');
    s
}

/// A key as written: bare when it can be, else quoted.
fn key_text(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        encode_str(k)
    }
}

fn dotted(path: &[&str]) -> String {
    path.iter().map(|k| key_text(k)).collect::<Vec<_>>().join(".")
}

fn starts_with(path: &[String], prefix: &[&str]) -> bool {
    path.len() >= prefix.len() && path.iter().zip(prefix).all(|(a, b)| a == b)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and
/// renamed over it. An existing file keeps its owner's permissions but none for group or
/// others (it holds the account's password; a symlink is followed and its target replaced); a
/// new file is mode 0600, in a directory created mode 0700 if need be.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let existing = std::fs::metadata(&target).ok().map(|m| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(m.permissions().mode() & 0o700)
    });
    if existing.is_none() && !dir.exists() {
        crate::private::create_dir(&dir)?;
    }
    // tempfile creates the file mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".ctiphone-config-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    if let Some(perms) = existing {
        tmp.as_file().set_permissions(perms)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    // The rename is durable once the directory is synced.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, PopupSize};

    fn example() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        std::fs::read_to_string(path).unwrap()
    }

    fn editor(text: &str) -> Editor {
        Editor::from_text(text, PathBuf::from("/nonexistent/config.toml")).unwrap()
    }

    /// The edited text is a valid configuration (its templates are the CTI engine's business).
    fn valid(ed: &Editor) -> bool {
        Config::parse(ed.as_str(), None).is_ok()
    }

    #[test]
    fn the_calls_section_is_made_when_a_file_has_none() {
        let mut ed = Editor::from_text("[account]\nuri = \"sip:1@h\"\n", PathBuf::from("c.toml")).unwrap();
        assert_eq!(ed.get("calls.remote_answer"), None);
        ed.set("calls.remote_answer", Some(Value::Bool(true))).unwrap();
        ed.set(
            "calls.remote_answer_from",
            Some(Value::List(vec!["127.0.0.1".into(), "pbx.example".into()])),
        )
        .unwrap();
        let c = Config::parse(ed.as_str(), None).unwrap_or_else(|e| panic!("{e}\n{}", ed.as_str()));
        assert!(c.calls.remote_answer);
        assert_eq!(c.calls.remote_answer_from, ["127.0.0.1", "pbx.example"]);
    }

    #[test]
    fn a_round_trip_changes_only_the_edited_values_and_keeps_every_comment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let original = example();
        std::fs::write(&path, &original).unwrap();
        let mut ed = Editor::open(&path).unwrap();
        assert_eq!(ed.text(), original);
        assert_eq!(ed.get("cti.timeout_seconds"), Some(Value::Int(5)));
        assert_eq!(ed.get("popup.size"), Some(Value::Text("medium".into())));
        assert_eq!(
            ed.get("cti.numbers"),
            Some(Value::Numbers(vec![
                ("03-1234-5678".into(), true),
                ("0120-000-111".into(), false),
                ("201".into(), true),
            ]))
        );
        ed.set("cti.timeout_seconds", Some(Value::Float(7.5))).unwrap();
        ed.set("popup.size", Some(Value::Text("large".into()))).unwrap();
        ed.set(
            "cti.ring.template",
            Some(Value::Text("https://crm.example/?tel={TEL}&n={TELNAME}".into())),
        )
        .unwrap();
        ed.set(
            "cti.numbers",
            Some(Value::Numbers(vec![
                ("03-1234-5678".into(), true),
                ("0120-000-111".into(), true),
                ("201".into(), true),
            ])),
        )
        .unwrap();
        assert_eq!(ed.write().unwrap(), path);
        let saved = std::fs::read_to_string(&path).unwrap();
        for line in original.lines().filter(|l| l.trim_start().starts_with('#')) {
            assert!(saved.contains(line), "lost comment: {line}");
        }
        let (old, new): (Vec<&str>, Vec<&str>) = (original.lines().collect(), saved.lines().collect());
        assert_eq!(old.len(), new.len());
        let changed: Vec<(&str, &str)> = old
            .iter()
            .zip(&new)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (*a, *b))
            .collect();
        assert_eq!(
            changed,
            vec![
                ("timeout_seconds = 5", "timeout_seconds = 7.5"),
                (
                    "  { number = \"0120-000-111\", enabled = false },",
                    "  { number = \"0120-000-111\", enabled = true },"
                ),
                (
                    "template = \"https://www.google.com/search?q={TEL}\"",
                    "template = \"https://crm.example/?tel={TEL}&n={TELNAME}\""
                ),
                ("size = \"medium\"", "size = \"large\""),
            ]
        );
        let config = Config::load(&path).unwrap();
        assert_eq!(config.cti.timeout_seconds, 7.5);
        assert_eq!(config.popup.size, PopupSize::Large);
        assert!(config.cti.numbers.iter().all(|n| n.enabled));
        assert!(config.cti.accesses.contains_key("ring"));
    }

    #[cfg(unix)]
    #[test]
    fn new_files_are_private_and_existing_files_keep_only_their_owners_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.toml");
        let mut ed = Editor::open(&path).unwrap();
        assert_eq!(ed.text(), "");
        ed.set("agent.password", Some(Value::Text("pw".into()))).unwrap();
        ed.set("popup.size", Some(Value::Text("small".into()))).unwrap();
        ed.write().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[agent]\npassword = \"pw\"\n\n[popup]\nsize = \"small\"\n"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut ed = Editor::open(&path).unwrap();
        ed.set("popup.size", Some(Value::Text("large".into()))).unwrap();
        ed.write().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "group and others lose their access");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let mut ed = Editor::open(&path).unwrap();
        ed.set("popup.size", Some(Value::Text("small".into()))).unwrap();
        ed.write().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400, "the owner's bits stay as they were");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn check_all_works_on_inline_tables_and_arrays_of_tables() {
        let mut ed = editor(&example());
        set_all_numbers(&mut ed, false).unwrap();
        let Some(Value::Numbers(n)) = ed.get("cti.numbers") else {
            panic!()
        };
        assert!(n.iter().all(|(_, e)| !e));
        set_all_numbers(&mut ed, true).unwrap();
        assert!(
            ed.text()
                .contains("  { number = \"0120-000-111\", enabled = true },\n")
        );
        assert!(valid(&ed));

        let text = "[cti]\ntarget = \"custom\"\n\n# first\n[[cti.numbers]]\nnumber = \"1\"\n\n# second\n[[cti.numbers]]\nnumber = \"2\"\nenabled = true # keep\n\n[popup]\nsize = \"small\"\n";
        let mut ed = editor(text);
        set_all_numbers(&mut ed, false).unwrap();
        assert_eq!(
            ed.text(),
            text.replace("number = \"1\"\n", "number = \"1\"\nenabled = false\n")
                .replace("enabled = true # keep", "enabled = false # keep")
        );
        set_all_numbers(&mut ed, true).unwrap();
        assert_eq!(
            ed.get("cti.numbers"),
            Some(Value::Numbers(vec![("1".into(), true), ("2".into(), true)]))
        );
        // Growing and shrinking an array of tables.
        ed.set(
            "cti.numbers",
            Some(Value::Numbers(vec![
                ("1".into(), true),
                ("2".into(), true),
                ("3".into(), false),
            ])),
        )
        .unwrap();
        assert_eq!(
            ed.get("cti.numbers"),
            Some(Value::Numbers(vec![
                ("1".into(), true),
                ("2".into(), true),
                ("3".into(), false)
            ]))
        );
        ed.set("cti.numbers", Some(Value::Numbers(vec![("1".into(), true)])))
            .unwrap();
        assert_eq!(
            ed.get("cti.numbers"),
            Some(Value::Numbers(vec![("1".into(), true)]))
        );
        assert!(ed.text().contains("# first\n[[cti.numbers]]"));
        assert!(valid(&ed), "{}", ed.text());

        // Inline tables without `enabled`, and a list of another length.
        let mut ed = editor("[cti]\nnumbers = [{ number = \"1\" }, { number = \"2\", enabled = true }]\n");
        set_all_numbers(&mut ed, false).unwrap();
        assert_eq!(
            ed.text(),
            "[cti]\nnumbers = [{ number = \"1\", enabled = false }, { number = \"2\", enabled = false }]\n"
        );
        ed.set("cti.numbers", Some(Value::Numbers(vec![("9".into(), true)])))
            .unwrap();
        assert_eq!(
            ed.text(),
            "[cti]\nnumbers = [\n  { number = \"9\", enabled = true },\n]\n"
        );
        // No list: nothing to do.
        let mut ed = editor("[popup]\nsize = \"small\"\n");
        set_all_numbers(&mut ed, true).unwrap();
        assert_eq!(ed.text(), "[popup]\nsize = \"small\"\n");
    }

    #[test]
    fn new_keys_and_tables_go_next_to_their_siblings() {
        let text = "# top\n[cti]\n  target = \"custom\" # why\n\n# ring\n[cti.ring]\nmethod = \"get\"\ntemplate = \"https://a/{TEL}\"\n\n# popup\n[popup]\nsize = \"small\"\n";
        let mut ed = editor(text);
        ed.set("cti.skip_internal", Some(Value::Bool(true))).unwrap();
        ed.set("cti.answer.delay_seconds", Some(Value::Float(2.0)))
            .unwrap();
        ed.set("cti.ring.body", Some(Value::Text("a=b".into()))).unwrap();
        ed.set("audio.ring", Some(Value::Bool(false))).unwrap();
        assert_eq!(
            ed.text(),
            "# top\n[cti]\n  target = \"custom\" # why\n  skip_internal = true\n\n# ring\n[cti.ring]\nmethod = \"get\"\ntemplate = \"https://a/{TEL}\"\nbody = \"a=b\"\n\n[cti.answer]\ndelay_seconds = 2.0\n\n# popup\n[popup]\nsize = \"small\"\n\n[audio]\nring = false\n"
        );
        assert_eq!(ed.get("cti.answer.delay_seconds"), Some(Value::Float(2.0)));
        assert_eq!(ed.get("cti.skip_internal"), Some(Value::Bool(true)));

        // A table known only through its sub-table gets its header before them.
        let mut ed = editor("[account]\nuri = \"sip:1@x\"\n\n# ring\n[cti.ring]\nmethod = \"get\"\n");
        ed.set("cti.timeout_seconds", Some(Value::Int(3))).unwrap();
        assert_eq!(
            ed.text(),
            "[account]\nuri = \"sip:1@x\"\n\n[cti]\ntimeout_seconds = 3\n\n# ring\n[cti.ring]\nmethod = \"get\"\n"
        );

        // Dotted keys and inline tables.
        let mut ed = editor("[cti]\nring.method = \"get\"\n[cti.auth]\ncaptures = { TOKEN = \"json:/t\" }\n");
        ed.set("cti.ring.template", Some(Value::Text("https://a/".into())))
            .unwrap();
        ed.set("cti.auth.captures.SID", Some(Value::Text("line:SID".into())))
            .unwrap();
        assert_eq!(
            ed.text(),
            "[cti]\nring.method = \"get\"\nring.template = \"https://a/\"\n[cti.auth]\ncaptures = { TOKEN = \"json:/t\", SID = \"line:SID\" }\n"
        );
        assert_eq!(
            ed.get("cti.ring.template"),
            Some(Value::Text("https://a/".into()))
        );
        assert!(ed.set("cti.ring.method.x", Some(Value::Int(1))).is_err());
        assert!(ed.set("cti..x", Some(Value::Int(1))).is_err());
    }

    #[test]
    fn the_entries_of_a_table_read_back_in_the_files_order() {
        let ed = editor(
            "[cti.auth]\ncaptures = { TOKEN = \"json:/t\", SID = \"line:SID\" }\n\
             [cti.search.captures]\nNAME = \"json:/name\"\nCOMPANY = \"json:/company\"\n\
             [cti.ring]\ncaptures.X = \"line:X\"\n[cti.click]\ncaptures = { N = 1 }\n",
        );
        let pairs = |v: &[(&str, &str)]| -> Option<Vec<(String, String)>> {
            Some(v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect())
        };
        assert_eq!(
            ed.entries("cti.auth.captures"),
            pairs(&[("TOKEN", "json:/t"), ("SID", "line:SID")])
        );
        assert_eq!(
            ed.entries("cti.search.captures"),
            pairs(&[("NAME", "json:/name"), ("COMPANY", "json:/company")])
        );
        assert_eq!(ed.entries("cti.ring.captures"), pairs(&[("X", "line:X")]));
        // Not strings, not a table, not there.
        assert_eq!(ed.entries("cti.click.captures"), None);
        assert_eq!(ed.entries("cti.auth.captures.TOKEN"), None);
        assert_eq!(ed.entries("cti.answer.captures"), None);
        assert_eq!(ed.entries("cti..x"), None);
    }

    #[test]
    fn removing_keys_and_tables() {
        let text = "[cti]\n# the limit\ntimeout_seconds = 3\ntarget = \"custom\"\n\n[cti.auth]\nmethod = \"get\"\ncaptures = { A = \"line:A\", B = \"line:B\" }\n\n[popup]\nsize = \"small\"\n";
        let mut ed = editor(text);
        ed.set("cti.timeout_seconds", None).unwrap();
        ed.set("cti.auth.captures.A", None).unwrap();
        ed.set("nothing.here", None).unwrap();
        assert_eq!(
            ed.text(),
            "[cti]\n# the limit\ntarget = \"custom\"\n\n[cti.auth]\nmethod = \"get\"\ncaptures = { B = \"line:B\" }\n\n[popup]\nsize = \"small\"\n"
        );
        ed.set("cti.auth", None).unwrap();
        assert_eq!(
            ed.text(),
            "[cti]\n# the limit\ntarget = \"custom\"\n\n\n[popup]\nsize = \"small\"\n"
        );
        assert_eq!(ed.get("cti.auth.method"), None);
    }

    #[test]
    fn strings_stay_on_one_line_and_crlf_files_stay_crlf() {
        let mut ed = editor("[popup]\r\nsize = \"small\"\r\n");
        ed.set(
            "popup.anonymous_name",
            Some(Value::Text("a\nb\r\"c\" \\ \u{7}".into())),
        )
        .unwrap();
        ed.set("cti.ring.template", Some(Value::Text("https://a/".into())))
            .unwrap();
        assert_eq!(
            ed.text(),
            "[popup]\r\nsize = \"small\"\r\nanonymous_name = \"a\\nb\\r\\\"c\\\" \\\\ \\u0007\"\r\n\r\n[cti.ring]\r\ntemplate = \"https://a/\"\r\n"
        );
        assert_eq!(
            ed.get("popup.anonymous_name"),
            Some(Value::Text("a\nb\r\"c\" \\ \u{7}".into()))
        );
        ed.set("internal", Some(Value::Text("^\\d+$".into()))).unwrap();
        assert!(ed.text().starts_with("internal = '^\\d+$'\r\n\r\n[popup]"));
    }

    #[test]
    fn values_of_every_type_read_back() {
        let mut ed = editor(&example());
        assert_eq!(ed.get("popup.buttons"), Some(Value::Bool(true)));
        assert_eq!(ed.get("account.expires"), Some(Value::Int(3600)));
        assert_eq!(
            ed.get("audio.codecs"),
            Some(Value::List(vec![
                "PCMU".into(),
                "PCMA".into(),
                "G722".into(),
                "opus".into()
            ]))
        );
        assert_eq!(ed.get("cti.ring"), None);
        assert_eq!(ed.get("cti.missing"), None);
        let tricky = "a \"quoted\" \\ value\twith 'both' and 日本";
        ed.set("account.display_name", Some(Value::Text(tricky.into())))
            .unwrap();
        assert_eq!(ed.get("account.display_name"), Some(Value::Text(tricky.into())));
        ed.set("audio.codecs", Some(Value::List(vec![]))).unwrap();
        assert_eq!(ed.get("audio.codecs"), Some(Value::List(vec![])));
        ed.set("cti.numbers", Some(Value::Numbers(vec![]))).unwrap();
        assert_eq!(ed.get("cti.numbers"), Some(Value::Numbers(vec![])));
        assert!(
            Editor::from_text("a = [", PathBuf::from("f.toml"))
                .unwrap_err()
                .starts_with("f.toml:1:")
        );
    }
}
