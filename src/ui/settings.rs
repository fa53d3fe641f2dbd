//! The settings panes, one per section of the vendor manual (Basic, Target numbers, Popup,
//! Custom integration) plus Account, Audio and Theme: fields edited in place with live
//! validation, a preview of each template's expansion for a sample call, and a save that
//! writes the file with its comments and order kept, atomically, only when valid.

mod fields;
mod layout;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::config::Method;
use crate::config::edit::{self, Editor, Problem, Value};
use crate::settings;

use super::i18n::Catalog;
use super::text::{clean, pad_right, truncate, width, wrap};
use super::theme::Theme;
use fields::{
    CUSTOM_PANE, Column, Field, Kind, METHODS, NUMBERS_PANE, PANES, accesses, captures_text, effective,
    pane_fields, parse_captures, raw, shown,
};

/// What the settings screen tells the UI loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Stay,
    Close,
}

/// The settings screen's state.
pub struct Settings {
    editor: Editor,
    /// Called numbers seen in calls but not in the file (TGT-5): offered unchecked.
    seen: Vec<String>,
    pane: usize,
    row: usize,
    /// The cell of the accesses table being worked on (Custom integration pane).
    col: usize,
    editing: Option<String>,
    problems: Vec<Problem>,
    message: Option<(bool, String)>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("pane", &self.pane)
            .field("row", &self.row)
            .field("col", &self.col)
            .finish()
    }
}

/// Styles of one drawn value.
struct Looks<'a> {
    theme: &'a Theme,
    cat: &'a Catalog,
}

impl Settings {
    /// Opens the configuration file for editing; `seen`: called numbers seen in calls.
    pub fn open(path: &std::path::Path, seen: Vec<String>) -> Result<Settings, String> {
        let editor = Editor::open(path)?;
        let mut s = Settings {
            editor,
            seen,
            pane: 0,
            row: 0,
            col: 1,
            editing: None,
            problems: Vec::new(),
            message: None,
        };
        s.revalidate();
        Ok(s)
    }

    fn revalidate(&mut self) {
        self.problems = match settings::validate(&self.editor) {
            Ok(_) => Vec::new(),
            Err(p) => p,
        };
    }

    /// The target numbers (TGT-1): the file's, then the called numbers seen in calls that
    /// the file does not list yet, unchecked (TGT-5).
    fn numbers(&self) -> Vec<(String, bool)> {
        let mut n = match self.editor.get("cti.numbers") {
            Some(Value::Numbers(n)) => n,
            _ => Vec::new(),
        };
        let norm = crate::cti::filter::normalize;
        for called in &self.seen {
            if !called.is_empty() && !n.iter().any(|(x, _)| norm(x) == norm(called)) {
                n.push((called.clone(), false));
            }
        }
        n
    }

    /// The rows of the accesses table (the Custom integration pane only).
    fn table_rows(&self) -> usize {
        if self.pane == CUSTOM_PANE {
            accesses().len()
        } else {
            0
        }
    }

    fn rows(&self) -> usize {
        if self.pane == NUMBERS_PANE {
            self.numbers().len()
        } else {
            self.table_rows() + pane_fields(self.pane).len()
        }
    }

    /// The access of the selected table row.
    fn access(&self) -> Option<&'static str> {
        (self.row < self.table_rows())
            .then(|| accesses().get(self.row).copied())
            .flatten()
    }

    fn column(&self) -> Column {
        Column::ALL.get(self.col).copied().unwrap_or(Column::Template)
    }

    /// The field the selection edits: a cell of the accesses table or a field of the pane.
    fn current(&self) -> Option<Field> {
        if let Some(a) = self.access() {
            return Some(fields::cell(a, self.column()));
        }
        pane_fields(self.pane)
            .get(self.row.checked_sub(self.table_rows())?)
            .cloned()
    }

    fn set(&mut self, key: &str, value: Option<Value>) {
        if let Err(e) = self.editor.set(key, value) {
            self.message = Some((false, e));
        }
        self.revalidate();
    }

    /// Makes the captures table at `key` hold `entries`: captures left out are removed,
    /// changed or new ones written; the others stay as they are written.
    fn set_captures(&mut self, key: &str, entries: &[(String, String)]) {
        let old = self.editor.entries(key).unwrap_or_default();
        let mut result = Ok(());
        for (name, _) in old.iter().filter(|(n, _)| !entries.iter().any(|(e, _)| e == n)) {
            result = result.and_then(|()| self.editor.set(&format!("{key}.{name}"), None));
        }
        for (name, rule) in entries {
            if !old.iter().any(|(n, r)| n == name && r == rule) {
                result = result.and_then(|()| {
                    self.editor
                        .set(&format!("{key}.{name}"), Some(Value::Text(rule.clone())))
                });
            }
        }
        if let Err(e) = result {
            self.message = Some((false, e));
        }
        self.revalidate();
    }

    /// Handles a key.
    pub fn on_key(&mut self, key: KeyEvent) -> Outcome {
        if let Some(mut text) = self.editing.take() {
            match key.code {
                KeyCode::Esc => {}
                KeyCode::Enter => self.commit(&text),
                KeyCode::Backspace => {
                    text.pop();
                    self.editing = Some(text);
                }
                KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) && !c.is_control() => {
                    text.push(c);
                    self.editing = Some(text);
                }
                _ => self.editing = Some(text),
            }
            return Outcome::Stay;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let in_table = self.access().is_some();
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => return Outcome::Close,
            KeyCode::Char('s') if ctrl => self.save(),
            KeyCode::Char('w') => self.save(),
            // In the accesses table ←→ move between a row's cells; Tab still changes panes.
            KeyCode::Right if in_table => self.col = (self.col + 1).min(Column::ALL.len() - 1),
            KeyCode::Left if in_table => self.col = self.col.saturating_sub(1),
            KeyCode::Tab | KeyCode::Right => {
                self.pane = (self.pane + 1) % PANES.len();
                self.row = 0;
            }
            KeyCode::BackTab | KeyCode::Left => {
                self.pane = (self.pane + PANES.len() - 1) % PANES.len();
                self.row = 0;
            }
            KeyCode::Down | KeyCode::Char('j') if self.row + 1 < self.rows() => self.row += 1,
            KeyCode::Up | KeyCode::Char('k') => self.row = self.row.saturating_sub(1),
            KeyCode::Char('A') if self.pane == NUMBERS_PANE => {
                if let Err(e) = edit::set_all_numbers(&mut self.editor, true) {
                    self.message = Some((false, e));
                }
                self.revalidate();
            }
            KeyCode::Char('U') if self.pane == NUMBERS_PANE => {
                if let Err(e) = edit::set_all_numbers(&mut self.editor, false) {
                    self.message = Some((false, e));
                }
                self.revalidate();
            }
            KeyCode::Enter | KeyCode::Char(' ') => self.activate(),
            _ => {}
        }
        Outcome::Stay
    }

    /// Enter on the selection: a switch flips, a choice moves to the next, text is edited.
    /// A field the file does not write starts from its default, and any change writes it.
    fn activate(&mut self) {
        if self.pane == NUMBERS_PANE {
            let mut n = self.numbers();
            if let Some(entry) = n.get_mut(self.row) {
                entry.1 = !entry.1;
                self.set("cti.numbers", Some(Value::Numbers(n)));
            }
            return;
        }
        let Some(f) = self.current() else { return };
        let (cur, _) = effective(self.editor.get(&f.key), &f.key);
        match f.kind {
            Kind::Bool => {
                let b = matches!(cur, Some(Value::Bool(true)));
                self.set(&f.key, Some(Value::Bool(!b)));
            }
            Kind::Enum(options) => {
                let now = raw(cur.as_ref());
                let i = options
                    .iter()
                    .position(|o| *o == now)
                    .map_or(0, |i| (i + 1) % options.len());
                let v = options[i];
                self.set(
                    &f.key,
                    if v.is_empty() {
                        None
                    } else {
                        Some(Value::Text(v.to_owned()))
                    },
                );
            }
            Kind::Secret => self.editing = Some(String::new()),
            Kind::Captures => {
                self.editing = Some(captures_text(&self.editor.entries(&f.key).unwrap_or_default()))
            }
            _ => self.editing = Some(raw(cur.as_ref())),
        }
    }

    fn commit(&mut self, text: &str) {
        let Some(f) = self.current() else { return };
        let value = match f.kind {
            Kind::Int => match text.trim().parse() {
                Ok(i) => Value::Int(i),
                Err(_) => return self.message = Some((false, format!("{}: a whole number", f.key))),
            },
            Kind::Float => match text.trim().parse() {
                Ok(x) => Value::Float(x),
                Err(_) => return self.message = Some((false, format!("{}: a number", f.key))),
            },
            Kind::List => Value::List(
                text.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            Kind::Captures => {
                match parse_captures(text) {
                    Ok(entries) => self.set_captures(&f.key, &entries),
                    Err(e) => self.message = Some((false, e)),
                }
                return;
            }
            _ => Value::Text(text.to_owned()),
        };
        self.set(&f.key, Some(value));
    }

    fn save(&mut self) {
        match settings::save(&self.editor) {
            Ok(path) => self.message = Some((true, path.display().to_string())),
            Err(problems) => {
                self.message = Some((
                    false,
                    problems.first().map(|p| p.message.clone()).unwrap_or_default(),
                ));
                self.problems = problems;
            }
        }
    }

    fn problem_for(&self, key: &str) -> Option<&Problem> {
        self.problems.iter().find(|p| p.key.as_deref() == Some(key))
    }

    /// Draws the settings screen over `area`.
    pub fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme, cat: &Catalog) {
        f.render_widget(Clear, area);
        let [tabs, body, foot] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(2)]).areas(area);
        f.render_widget(
            Paragraph::new(self.tab_line(theme, cat, tabs.width as usize)),
            tabs,
        );
        let look = Looks { theme, cat };
        let inner = (body.width as usize).saturating_sub(2);
        let mut lines: Vec<Line> = Vec::new();
        // The line of the selection, and how many lines at the top stay when scrolling.
        let (selected, pinned) = if self.pane == NUMBERS_PANE {
            lines.push(Line::styled(
                truncate(
                    &format!(
                        "A {}   U {}",
                        cat.get("settings.check_all"),
                        cat.get("settings.uncheck_all")
                    ),
                    inner,
                ),
                theme.style("ui.dim"),
            ));
            for (i, (n, on)) in self.numbers().iter().enumerate() {
                let style = if i == self.row {
                    theme.style("list.selected")
                } else {
                    theme.style("ui.text")
                };
                lines.push(Line::styled(
                    truncate(
                        &format!("{} {}", if *on { "[x]" } else { "[ ]" }, clean(n)),
                        inner,
                    ),
                    style,
                ));
            }
            (self.row + 1, 0)
        } else if self.pane == CUSTOM_PANE {
            self.table_lines(&look, inner, &mut lines)
        } else {
            let fields = pane_fields(self.pane);
            let mut selected = 0;
            self.field_lines(&fields, 0, &look, inner, &mut lines, &mut selected);
            (selected, 0)
        };
        let title = format!("{} — {}", cat.get("settings.title"), self.editor.path().display());
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.style("ui.border"))
            .title(Span::styled(
                truncate(&clean(&title), inner),
                theme.style("ui.title"),
            ));
        let visible = body.height.saturating_sub(2) as usize;
        let skip = (selected + 3)
            .saturating_sub(visible)
            .min(lines.len().saturating_sub(visible));
        let lines: Vec<Line> = if skip == 0 {
            lines
        } else {
            let mut it = lines.into_iter();
            let head: Vec<Line> = it.by_ref().take(pinned).collect();
            head.into_iter().chain(it.skip(skip)).collect()
        };
        f.render_widget(Paragraph::new(lines).block(block), body);
        let foot_text = match &self.message {
            Some((true, path)) => (
                cat.fmt("settings.saved", &[("path", path)]),
                theme.style("status.ok"),
            ),
            Some((false, e)) => (
                cat.fmt("settings.invalid", &[("error", e)]),
                theme.style("status.error"),
            ),
            None => {
                let keys = if self.pane == CUSTOM_PANE {
                    "settings.keys_table"
                } else {
                    "settings.keys"
                };
                (cat.get(keys).to_owned(), theme.style("ui.dim"))
            }
        };
        let foot_lines: Vec<Line> = wrap(&clean(&foot_text.0), foot.width as usize, foot.height as usize)
            .into_iter()
            .map(Line::from)
            .collect();
        f.render_widget(Paragraph::new(foot_lines).style(foot_text.1), foot);
    }

    /// The pane tabs, as many as fit with the current one always among them.
    fn tab_line(&self, theme: &Theme, cat: &Catalog, avail: usize) -> Line<'static> {
        let names: Vec<String> = PANES.iter().map(|p| format!(" {} ", cat.get(p))).collect();
        let widths: Vec<usize> = names.iter().map(|n| width(n)).collect();
        let (first, end) = layout::visible_tabs(&widths, self.pane, avail);
        let mut spans = Vec::new();
        if first > 0 {
            spans.push(Span::styled("‹ ", theme.style("ui.dim")));
        }
        for (i, name) in names.into_iter().enumerate().take(end).skip(first) {
            let style = if i == self.pane {
                theme.style("button.focused")
            } else {
                theme.style("button")
            };
            spans.push(Span::styled(name, style));
            spans.push(Span::raw(" "));
        }
        if end < PANES.len() {
            spans.push(Span::styled(" ›", theme.style("ui.dim")));
        }
        Line::from(spans)
    }

    /// Label/value lines of `fields` (row numbers from `first_row`), labels as wide as the
    /// longest; a field's problem under it. Sets `selected` to the line of the selection.
    fn field_lines(
        &self,
        fields: &[Field],
        first_row: usize,
        look: &Looks,
        inner: usize,
        lines: &mut Vec<Line<'static>>,
        selected: &mut usize,
    ) {
        let (theme, cat) = (look.theme, look.cat);
        let label_w = layout::label_width(fields.iter().map(|fd| cat.get(&fd.label)), inner);
        let value_w = inner.saturating_sub(label_w + 1);
        for (i, fd) in fields.iter().enumerate() {
            let is_selected = first_row + i == self.row;
            if is_selected {
                *selected = lines.len();
            }
            let mut spans = vec![
                Span::styled(pad_right(cat.get(&fd.label), label_w), theme.style("popup.label")),
                Span::raw(" "),
            ];
            match (&self.editing, is_selected) {
                (Some(t), true) => spans.push(Span::styled(
                    editing_text(t, fd.kind, value_w),
                    theme.style("input"),
                )),
                _ => spans.extend(self.value_spans(fd, is_selected, value_w, look)),
            }
            lines.push(Line::from(spans));
            if let Some(p) = self.problem_for(&fd.key) {
                lines.push(Line::styled(
                    format!(
                        "{:label_w$} {}",
                        "",
                        truncate(&format!("⚠ {}", clean(&p.message)), value_w)
                    ),
                    theme.style("input.invalid"),
                ));
            }
        }
    }

    /// A field's value in `w` columns: the file's, else the default shown dimmed and marked
    /// as such; the mark stays whole while there is room for it.
    fn value_spans(&self, fd: &Field, selected: bool, w: usize, look: &Looks) -> Vec<Span<'static>> {
        let (theme, cat) = (look.theme, look.cat);
        let (value, default) = effective(self.editor.get(&fd.key), &fd.key);
        let text = clean(&shown(value.as_ref(), fd, cat));
        let style = |default_style: &str| {
            if selected {
                theme.style("list.selected")
            } else {
                theme.style(default_style)
            }
        };
        if !default {
            return vec![Span::styled(truncate(&text, w), style("ui.text"))];
        }
        // The mark is the catalog's text around an empty value: the value gives way to it.
        let room = w.saturating_sub(width(&cat.fmt("settings.default_value", &[("value", "")])));
        if room < 2 {
            return vec![Span::styled(truncate(&text, w), style("ui.dim"))];
        }
        let marked = cat.fmt("settings.default_value", &[("value", &truncate(&text, room))]);
        vec![Span::styled(truncate(&marked, w), style("ui.dim"))]
    }

    /// The Custom integration pane: the accesses as the manual's table (one row per access;
    /// method, template, captures), the answer delay and hang-up switch under it, then the
    /// selected access's cell in full, its problem and its template's preview. Returns the
    /// line of the selection and the lines kept at the top when scrolling (the header).
    fn table_lines(&self, look: &Looks, inner: usize, lines: &mut Vec<Line<'static>>) -> (usize, usize) {
        let (theme, cat) = (look.theme, look.cat);
        let names: Vec<String> = accesses()
            .iter()
            .map(|a| cat.get(&format!("access.{a}")).to_owned())
            .collect();
        let method_names: Vec<String> = METHODS
            .iter()
            .filter(|m| !m.is_empty())
            .map(|m| cat.get(&format!("method.{m}")).to_owned())
            .collect();
        let none_default = cat.fmt("settings.default_value", &[("value", cat.get("settings.none"))]);
        let name_w = names
            .iter()
            .map(|n| width(n))
            .chain([width(cat.get("settings.access"))])
            .max()
            .unwrap_or(0);
        let method_w = method_names
            .iter()
            .map(|m| width(m))
            .chain([width(cat.get("field.method")), width(&none_default)])
            .max()
            .unwrap_or(0);
        let w = layout::table_widths(name_w, method_w, inner);
        let gap = " ".repeat(layout::GAP);
        let mut header = vec![Span::styled(
            pad_right(cat.get("settings.access"), w[0]),
            theme.style("list.header"),
        )];
        for (col, cw) in Column::ALL.iter().zip(&w[1..]) {
            header.push(Span::styled(gap.clone(), theme.style("list.header")));
            header.push(Span::styled(
                pad_right(cat.get(col.label()), *cw),
                theme.style("list.header"),
            ));
        }
        lines.push(Line::from(header));
        let mut selected = 0;
        for (i, (access, name)) in accesses().iter().zip(&names).enumerate() {
            let row_selected = i == self.row;
            if row_selected {
                selected = lines.len();
            }
            let mut spans = vec![Span::styled(
                pad_right(name, w[0]),
                if row_selected {
                    theme.style("list.selected")
                } else {
                    theme.style("popup.label")
                },
            )];
            for (c, col) in Column::ALL.iter().enumerate() {
                let cw = w[c + 1];
                let focused = row_selected && c == self.col;
                let (text, dim) = match (&self.editing, focused) {
                    (Some(t), true) => (editing_text(t, Kind::Text, cw), false),
                    _ => self.cell_text(access, *col, cat),
                };
                let style = if focused {
                    theme.style("button.focused")
                } else if row_selected {
                    theme.style("list.selected")
                } else if dim {
                    theme.style("ui.dim")
                } else {
                    theme.style("ui.text")
                };
                spans.push(Span::raw(gap.clone()));
                spans.push(Span::styled(pad_right(&text, cw), style));
            }
            lines.push(Line::from(spans));
        }
        lines.push(Line::raw(""));
        self.field_lines(
            &pane_fields(CUSTOM_PANE),
            accesses().len(),
            look,
            inner,
            lines,
            &mut selected,
        );
        if let Some(access) = self.access() {
            lines.push(Line::raw(""));
            self.detail_lines(access, look, inner, lines);
        }
        (selected, 1)
    }

    /// A cell of the accesses table and whether it is dimmed (nothing written).
    fn cell_text(&self, access: &str, col: Column, cat: &Catalog) -> (String, bool) {
        let key = col.key(access);
        match col {
            Column::Method => match self.editor.get(&key) {
                Some(Value::Text(m)) => match parse_method(&m) {
                    Some(m) => (cat.get(&format!("method.{}", m.name())).to_owned(), false),
                    None => (clean(&m), false),
                },
                Some(other) => (clean(&raw(Some(&other))), false),
                None => (
                    cat.fmt("settings.default_value", &[("value", cat.get("settings.none"))]),
                    true,
                ),
            },
            Column::Template => match self.editor.get(&key) {
                Some(v) => (clean(&raw(Some(&v))), false),
                None => ("—".to_owned(), true),
            },
            Column::Captures => match self.editor.entries(&key) {
                Some(e) if !e.is_empty() => (clean(&captures_text(&e)), false),
                _ => ("—".to_owned(), true),
            },
        }
    }

    /// Under the table, for the selected access: the focused cell whole (or being typed),
    /// the access's problem, and the template's expansion for a sample call.
    fn detail_lines(&self, access: &str, look: &Looks, inner: usize, lines: &mut Vec<Line<'static>>) {
        let (theme, cat) = (look.theme, look.cat);
        let col = self.column();
        let label = format!("{}: ", cat.get(col.label()));
        let room = inner.saturating_sub(width(&label));
        let (text, style) = match &self.editing {
            Some(t) => (editing_text(t, Kind::Text, room), theme.style("input")),
            None => {
                let (t, dim) = self.cell_text(access, col, cat);
                (t, theme.style(if dim { "ui.dim" } else { "ui.text" }))
            }
        };
        // The whole value, on as many as three lines: the table shows only its start.
        let wrapped = if self.editing.is_some() {
            vec![text]
        } else {
            wrap(&text, room, 3)
        };
        for (i, part) in wrapped.into_iter().enumerate() {
            let head = if i == 0 {
                Span::styled(label.clone(), theme.style("popup.label"))
            } else {
                Span::raw(" ".repeat(width(&label)))
            };
            lines.push(Line::from(vec![head, Span::styled(part, style)]));
        }
        // A problem of any key of the access, or of its table as a whole.
        let table = format!("cti.{access}");
        let of_access = |k: &str| k == table || k.strip_prefix(&table).is_some_and(|r| r.starts_with('.'));
        if let Some(p) = self
            .problems
            .iter()
            .find(|p| p.key.as_deref().is_some_and(of_access))
        {
            lines.push(Line::styled(
                truncate(&format!("⚠ {}", clean(&p.message)), inner),
                theme.style("input.invalid"),
            ));
            return;
        }
        if col != Column::Template {
            return;
        }
        // Live preview of the expansion for a sample call.
        let method = match self.editor.get(&format!("cti.{access}.method")) {
            Some(Value::Text(m)) => parse_method(&m),
            _ => None,
        };
        let template = self
            .editing
            .clone()
            .unwrap_or_else(|| raw(self.editor.get(&format!("cti.{access}.template")).as_ref()));
        let config = settings::validate(&self.editor).ok().map(|(c, _)| c);
        if let (Some(c), Some(m)) = (&config, method) {
            let preview = match settings::preview(c, m, &template) {
                Ok(p) => format!("{} {}", cat.get("settings.preview"), p),
                Err(e) => format!("⚠ {e}"),
            };
            lines.push(Line::styled(
                truncate(&clean(&preview), inner),
                theme.style("ui.dim"),
            ));
        }
    }
}

/// Text being typed, in `w` columns with the cursor after it: its end shows, a secret as
/// stars.
fn editing_text(t: &str, kind: Kind, w: usize) -> String {
    let shown = if kind == Kind::Secret {
        "*".repeat(t.chars().count())
    } else {
        clean(t)
    };
    layout::tail(&format!("{shown}▏"), w)
}

fn parse_method(m: &str) -> Option<Method> {
    Some(match m {
        "browser_get" => Method::BrowserGet,
        "get" => Method::Get,
        "browser_post" => Method::BrowserPost,
        "post" => Method::Post,
        "command" => Method::Command,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(s: &mut Settings, text: &str) {
        for c in text.chars() {
            s.on_key(key(KeyCode::Char(c)));
        }
    }

    fn open(text: &str) -> (tempfile::TempDir, std::path::PathBuf, Settings) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let s = Settings::open(&path, Vec::new()).unwrap();
        (dir, path, s)
    }

    #[test]
    fn a_default_edited_is_written_starting_from_the_default() {
        let (_dir, path, mut s) = open("# mine\n[popup]\nsize = \"small\"\n");
        // Popup: size, buttons (unset: on by default).
        s.on_key(key(KeyCode::Tab));
        s.on_key(key(KeyCode::Tab));
        s.on_key(key(KeyCode::Down));
        s.on_key(key(KeyCode::Enter));
        assert_eq!(s.editor.get("popup.buttons"), Some(Value::Bool(false)));
        // Display time (unset: 30) is edited from its default.
        s.on_key(key(KeyCode::Down));
        s.on_key(key(KeyCode::Enter));
        assert_eq!(s.editing.as_deref(), Some("30"));
        s.on_key(key(KeyCode::Enter));
        assert_eq!(s.editor.get("popup.display_seconds"), Some(Value::Int(30)));
        // Theme: an unset theme is the default one; the next is `light`.
        s.on_key(key(KeyCode::BackTab));
        s.on_key(key(KeyCode::BackTab));
        s.on_key(key(KeyCode::BackTab));
        s.on_key(key(KeyCode::Enter));
        assert_eq!(s.editor.get("ui.theme"), Some(Value::Text("light".into())));
        s.on_key(key(KeyCode::Char('w')));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# mine\n[popup]\nsize = \"small\"\nbuttons = false\n"),
            "{text}"
        );
        let c = crate::config::Config::parse(&text, None).unwrap();
        assert!(!c.popup.buttons);
        assert_eq!(c.ui.theme, "light");
    }

    #[test]
    fn the_accesses_table_edits_method_template_and_captures_of_a_row() {
        let (_dir, path, mut s) = open(
            "[cti]\ntarget = \"custom\"\n[cti.search]\nmethod = \"get\"\ntemplate = \"https://h/?q={TEL}\"\n\
             captures = { NAME = \"json:/name\", OLD = \"line:OLD\" }\n",
        );
        for _ in 0..3 {
            s.on_key(key(KeyCode::Tab));
        }
        // Row 1 is the search access; the template cell is the first one worked on.
        s.on_key(key(KeyCode::Down));
        assert_eq!((s.access(), s.column()), (Some("search"), Column::Template));
        s.on_key(key(KeyCode::Enter));
        typed(&mut s, "&x=1");
        s.on_key(key(KeyCode::Enter));
        assert_eq!(
            s.editor.get("cti.search.template"),
            Some(Value::Text("https://h/?q={TEL}&x=1".into()))
        );
        // → captures: the whole list is edited as one line.
        s.on_key(key(KeyCode::Right));
        s.on_key(key(KeyCode::Right));
        assert_eq!((s.column(), s.pane), (Column::Captures, CUSTOM_PANE));
        s.on_key(key(KeyCode::Enter));
        assert_eq!(s.editing.as_deref(), Some("NAME=json:/name, OLD=line:OLD"));
        for _ in 0.."OLD=line:OLD".len() {
            s.on_key(key(KeyCode::Backspace));
        }
        typed(&mut s, "COMPANY=regex:c=([a-z]{1,9})");
        s.on_key(key(KeyCode::Enter));
        assert_eq!(
            s.editor.entries("cti.search.captures"),
            Some(vec![
                ("NAME".into(), "json:/name".into()),
                ("COMPANY".into(), "regex:c=([a-z]{1,9})".into())
            ])
        );
        // A bad capture is refused with its reason, nothing changes.
        s.on_key(key(KeyCode::Enter));
        typed(&mut s, ", X=");
        s.on_key(key(KeyCode::Enter));
        assert!(
            s.message
                .as_ref()
                .is_some_and(|(ok, m)| !ok && m.contains("`X` has no rule")),
            "{:?}",
            s.message
        );
        assert_eq!(s.editor.entries("cti.search.captures").map(|e| e.len()), Some(2));
        // ← ← method: cycled; then Tab leaves the pane.
        s.on_key(key(KeyCode::Left));
        s.on_key(key(KeyCode::Left));
        s.on_key(key(KeyCode::Left));
        assert_eq!(s.column(), Column::Method);
        s.on_key(key(KeyCode::Enter));
        assert_eq!(
            s.editor.get("cti.search.method"),
            Some(Value::Text("browser_post".into()))
        );
        s.on_key(key(KeyCode::Enter));
        s.on_key(key(KeyCode::Enter));
        assert_eq!(
            s.editor.get("cti.search.method"),
            Some(Value::Text("command".into()))
        );
        s.on_key(key(KeyCode::Char('w')));
        let c = crate::config::Config::load(&path).unwrap();
        let search = &c.cti.accesses["search"];
        assert_eq!(search.captures.len(), 2);
        // Below the table (the selection is on row 1): the answer delay.
        for _ in 1..accesses().len() {
            s.on_key(key(KeyCode::Down));
        }
        assert_eq!(
            s.current().map(|f| f.key),
            Some("cti.answer.delay_seconds".to_owned())
        );
        s.on_key(key(KeyCode::Right));
        assert_eq!(s.pane, CUSTOM_PANE + 1, "outside the table → changes panes");
    }

    #[test]
    fn numbers_seen_in_calls_are_offered_unchecked_and_can_be_ticked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "# mine\n[cti]\nnumbers = [{ number = \"03-1234-5678\", enabled = true }]\n",
        )
        .unwrap();
        let mut s = Settings::open(&path, vec!["0312345678".into(), "0120999888".into()]).unwrap();
        // The same number in another form is not offered twice.
        assert_eq!(
            s.numbers(),
            vec![("03-1234-5678".into(), true), ("0120999888".into(), false)]
        );
        s.on_key(key(KeyCode::Tab));
        s.on_key(key(KeyCode::Down));
        s.on_key(key(KeyCode::Char(' ')));
        s.on_key(key(KeyCode::Char('w')));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# mine\n"), "{text}");
        let config = crate::config::Config::parse(&text, None).unwrap();
        let got: Vec<(String, bool)> = config
            .cti
            .numbers
            .iter()
            .map(|n| (n.number.clone(), n.enabled))
            .collect();
        assert_eq!(
            got,
            vec![("03-1234-5678".into(), true), ("0120999888".into(), true)]
        );
    }
}
