//! The settings panes, one per section of the vendor manual (Basic, Target numbers, Popup,
//! Custom integration) plus Account, Audio and Theme: fields edited in place with live
//! validation, a preview of each template's expansion for a sample call, and a save that
//! writes the file with its comments and order kept, atomically, only when valid.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::config::edit::{self, Editor, Problem, Value};
use crate::config::{ACCESS_NAMES, Method};
use crate::settings;

use super::i18n::Catalog;
use super::text::{clean, pad_right, truncate};
use super::theme::Theme;

/// How a field is edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Text,
    Secret,
    Enum(&'static [&'static str]),
    List,
}

/// One editable field: its dotted key, its label (catalog key) and kind.
#[derive(Clone, Debug)]
struct Field {
    key: String,
    label: String,
    kind: Kind,
}

fn field(key: &str, label: &str, kind: Kind) -> Field {
    Field {
        key: key.to_owned(),
        label: label.to_owned(),
        kind,
    }
}

const METHODS: &[&str] = &["", "browser_get", "get", "browser_post", "post", "command"];

/// The panes and their fields (the numbers pane is built from the file).
fn pane_fields(pane: usize) -> Vec<Field> {
    match pane {
        0 => vec![
            field("cti.target", "field.target", Kind::Enum(&["none", "custom"])),
            field("cti.skip_internal", "field.skip_internal", Kind::Bool),
            field("cti.internal_pattern", "field.internal_pattern", Kind::Text),
            field("cti.session_keep_minutes", "field.session_keep", Kind::Float),
            field("cti.timeout_seconds", "field.timeout", Kind::Float),
            field("cti.system_number", "field.system_number", Kind::Text),
            field("cti.server_address", "field.server_address", Kind::Text),
        ],
        2 => vec![
            field(
                "popup.size",
                "field.size",
                Kind::Enum(&["small", "medium", "large"]),
            ),
            field("popup.buttons", "field.buttons", Kind::Bool),
            field("popup.display_seconds", "field.display_seconds", Kind::Int),
            field("popup.copy_number", "field.copy_number", Kind::Bool),
            field("popup.anonymous_name", "field.anonymous_name", Kind::Text),
        ],
        3 => ACCESS_NAMES
            .iter()
            .flat_map(|a| {
                let mut v = vec![
                    field(
                        &format!("cti.{a}.method"),
                        &format!("access.{a}"),
                        Kind::Enum(METHODS),
                    ),
                    field(&format!("cti.{a}.template"), "field.template", Kind::Text),
                ];
                if *a == "answer" {
                    v.push(field("cti.answer.delay_seconds", "field.delay", Kind::Float));
                }
                if *a == "hangup" {
                    v.push(field(
                        "cti.hangup.only_if_answered",
                        "field.only_if_answered",
                        Kind::Bool,
                    ));
                }
                v
            })
            .collect(),
        4 => vec![
            field("account.uri", "field.uri", Kind::Text),
            field("account.username", "field.username", Kind::Text),
            field("account.password", "field.password", Kind::Secret),
            field("account.registrar", "field.registrar", Kind::Text),
            field(
                "account.transport",
                "field.transport",
                Kind::Enum(&["udp", "tcp", "tls"]),
            ),
            field("account.listen", "field.listen", Kind::Text),
            field("account.extension", "field.extension", Kind::Text),
            field("account.display_name", "field.display_name", Kind::Text),
            field("account.call_waiting", "field.call_waiting", Kind::Bool),
            field("account.mwi", "field.mwi", Kind::Bool),
            field("account.voicemail", "field.voicemail", Kind::Text),
            field("calls.remote_answer", "field.remote_answer", Kind::Bool),
            field("calls.remote_answer_from", "field.remote_answer_from", Kind::List),
            field("agent.not_ready_reasons", "field.not_ready_reasons", Kind::List),
            field("agent.after_call_seconds", "field.after_call_seconds", Kind::Int),
            field("agent.wrapup_codes", "field.wrapup_codes", Kind::List),
            field(
                "agent.ring_when_not_ready",
                "field.ring_when_not_ready",
                Kind::Bool,
            ),
            field("agent.ready_code", "field.ready_code", Kind::Text),
            field("agent.not_ready_code", "field.not_ready_code", Kind::Text),
        ],
        5 => vec![
            field("audio.input", "field.input", Kind::Text),
            field("audio.output", "field.output", Kind::Text),
            field("audio.codecs", "field.codecs", Kind::List),
            field("audio.ring", "field.ring", Kind::Bool),
            field("media.symmetric_rtp", "field.symmetric_rtp", Kind::Bool),
            field("media.rtp_timeout_seconds", "field.rtp_timeout", Kind::Int),
        ],
        6 => vec![
            field(
                "ui.theme",
                "field.theme",
                Kind::Enum(&["default", "light", "high-contrast", "mono"]),
            ),
            field("ui.language", "field.language", Kind::Enum(&["", "en", "ja"])),
        ],
        _ => Vec::new(),
    }
}

const PANES: [&str; 7] = [
    "settings.basic",
    "settings.targets",
    "settings.popup",
    "settings.custom",
    "settings.account",
    "settings.audio",
    "settings.theme",
];

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
    editing: Option<String>,
    problems: Vec<Problem>,
    message: Option<(bool, String)>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("pane", &self.pane)
            .field("row", &self.row)
            .finish()
    }
}

fn show(v: Option<Value>, kind: Kind) -> String {
    match (v, kind) {
        (None, _) => String::new(),
        (Some(_), Kind::Secret) => "***".into(),
        (Some(Value::Bool(b)), _) => {
            if b {
                "[x]".into()
            } else {
                "[ ]".into()
            }
        }
        (Some(Value::Int(i)), _) => i.to_string(),
        (Some(Value::Float(f)), _) => f.to_string(),
        (Some(Value::Text(t)), _) => t,
        (Some(Value::List(l)), _) => l.join(", "),
        (Some(Value::Numbers(n)), _) => n.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
    }
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

    fn rows(&self) -> usize {
        if self.pane == 1 {
            self.numbers().len()
        } else {
            pane_fields(self.pane).len()
        }
    }

    fn current(&self) -> Option<Field> {
        pane_fields(self.pane).get(self.row).cloned()
    }

    fn set(&mut self, key: &str, value: Option<Value>) {
        if let Err(e) = self.editor.set(key, value) {
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
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => return Outcome::Close,
            KeyCode::Char('s') if ctrl => self.save(),
            KeyCode::Char('w') => self.save(),
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
            KeyCode::Char('A') if self.pane == 1 => {
                let _ = edit::set_all_numbers(&mut self.editor, true);
                self.revalidate();
            }
            KeyCode::Char('U') if self.pane == 1 => {
                let _ = edit::set_all_numbers(&mut self.editor, false);
                self.revalidate();
            }
            KeyCode::Enter | KeyCode::Char(' ') => self.activate(),
            _ => {}
        }
        Outcome::Stay
    }

    fn activate(&mut self) {
        if self.pane == 1 {
            let mut n = self.numbers();
            if let Some(entry) = n.get_mut(self.row) {
                entry.1 = !entry.1;
                self.set("cti.numbers", Some(Value::Numbers(n)));
            }
            return;
        }
        let Some(f) = self.current() else { return };
        let cur = self.editor.get(&f.key);
        match f.kind {
            Kind::Bool => {
                let b = matches!(cur, Some(Value::Bool(true)));
                self.set(&f.key, Some(Value::Bool(!b)));
            }
            Kind::Enum(options) => {
                let now = show(cur, f.kind);
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
            _ => self.editing = Some(show(cur, f.kind)),
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

    /// Draws the settings screen over `area`.
    pub fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme, cat: &Catalog) {
        f.render_widget(Clear, area);
        let [tabs, body, foot] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(2)]).areas(area);
        let mut spans = Vec::new();
        for (i, p) in PANES.iter().enumerate() {
            let style = if i == self.pane {
                theme.style("button.focused")
            } else {
                theme.style("button")
            };
            spans.push(Span::styled(format!(" {} ", cat.get(p)), style));
            spans.push(Span::raw(" "));
        }
        f.render_widget(Paragraph::new(Line::from(spans)), tabs);
        let label_w = 26;
        let value_w = (body.width as usize).saturating_sub(label_w + 4);
        let mut lines: Vec<Line> = Vec::new();
        let problem_for = |key: &str| self.problems.iter().find(|p| p.key.as_deref() == Some(key));
        if self.pane == 1 {
            lines.push(Line::styled(
                format!(
                    "A {}   U {}",
                    cat.get("settings.check_all"),
                    cat.get("settings.uncheck_all")
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
                    format!("{} {}", if *on { "[x]" } else { "[ ]" }, clean(n)),
                    style,
                ));
            }
        } else {
            let config = settings::validate(&self.editor).ok().map(|(c, _)| c);
            for (i, fd) in pane_fields(self.pane).iter().enumerate() {
                let selected = i == self.row;
                let value = match (&self.editing, selected) {
                    (Some(t), true) => format!(
                        "{}▏",
                        if fd.kind == Kind::Secret {
                            "*".repeat(t.chars().count())
                        } else {
                            clean(t)
                        }
                    ),
                    _ => clean(&show(self.editor.get(&fd.key), fd.kind)),
                };
                let style = if selected {
                    theme.style("list.selected")
                } else {
                    theme.style("ui.text")
                };
                let label = if fd.label.starts_with("access.") {
                    format!("{} — {}", cat.get(&fd.label), cat.get("field.method"))
                } else {
                    cat.get(&fd.label).to_owned()
                };
                lines.push(Line::from(vec![
                    Span::styled(pad_right(&label, label_w), theme.style("popup.label")),
                    Span::raw(" "),
                    Span::styled(truncate(&value, value_w), style),
                ]));
                if let Some(p) = problem_for(&fd.key) {
                    lines.push(Line::styled(
                        format!("{:label_w$}  ⚠ {}", "", truncate(&clean(&p.message), value_w)),
                        theme.style("input.invalid"),
                    ));
                } else if selected && fd.key.ends_with(".template") {
                    // Live preview of the expansion for a sample call.
                    let access = fd.key.trim_start_matches("cti.").trim_end_matches(".template");
                    let method = match self.editor.get(&format!("cti.{access}.method")) {
                        Some(Value::Text(m)) => parse_method(&m),
                        _ => None,
                    };
                    let text = self
                        .editing
                        .clone()
                        .unwrap_or_else(|| show(self.editor.get(&fd.key), Kind::Text));
                    if let (Some(c), Some(m)) = (&config, method) {
                        let preview = match settings::preview(c, m, &text) {
                            Ok(p) => format!("{} {}", cat.get("settings.preview"), p),
                            Err(e) => format!("⚠ {e}"),
                        };
                        lines.push(Line::styled(
                            format!("{:label_w$}  {}", "", truncate(&clean(&preview), value_w)),
                            theme.style("ui.dim"),
                        ));
                    }
                }
            }
        }
        let title = format!("{} — {}", cat.get("settings.title"), self.editor.path().display());
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.style("ui.border"))
            .title(Span::styled(clean(&title), theme.style("ui.title")));
        let visible = body.height.saturating_sub(2) as usize;
        let skip = (self.row + 3).saturating_sub(visible);
        let lines: Vec<Line> = lines.into_iter().skip(skip).collect();
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
            None => (
                "Tab/←→ panes  ↑↓ fields  Enter edit  w save  Esc close".to_owned(),
                theme.style("ui.dim"),
            ),
        };
        f.render_widget(
            Paragraph::new(truncate(&clean(&foot_text.0), foot.width as usize)).style(foot_text.1),
            foot,
        );
    }
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
