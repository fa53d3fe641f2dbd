//! The contacts pane: the phonebook searched as you type, dialled with Enter, and added to,
//! edited and deleted from (local entries; editing a shared entry makes a local one, which
//! then wins). It holds what is shown and turns keys into [`Outcome`]s; the run loop does
//! the phonebook work and hands the results back with [`Contacts::show`].

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::keys::{LineKey, edit_line};
use super::text::{clean, pad_right as fit};
use super::view::Look;
use crate::phonebook::{Contact, Entry, Origin};

/// Contacts fetched per search.
pub const PAGE: usize = 200;

/// A phonebook change or search for the run loop.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Search(String),
    Save { id: Option<i64>, entry: Entry },
    Delete(i64),
}

/// What a key asks of the run loop.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Nothing,
    Close,
    Op(Op),
    Dial(String),
}

/// The add/edit form: name, number, company.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Form {
    /// The local entry edited; `None` adds one.
    pub id: Option<i64>,
    pub fields: [String; 3],
    pub focus: usize,
}

/// The pane's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Contacts {
    pub query: String,
    pub list: Vec<Contact>,
    pub selected: usize,
    pub form: Option<Form>,
    /// Waiting for `y` to delete the selected entry.
    pub confirm_delete: bool,
    /// The last error or confirmation, shown at the bottom.
    pub message: Option<String>,
}

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
}

impl Contacts {
    /// Search results (or the list after a change) from the run loop.
    pub fn show(&mut self, list: Vec<Contact>) {
        self.list = list;
        if self.selected >= self.list.len() {
            self.selected = self.list.len().saturating_sub(1);
        }
    }

    fn selected(&self) -> Option<&Contact> {
        self.list.get(self.selected)
    }

    /// Handles a key.
    pub fn on_key(&mut self, key: KeyEvent) -> Outcome {
        if self.form.is_some() {
            return self.form_key(key);
        }
        if self.confirm_delete {
            self.confirm_delete = false;
            return match (key.code, self.selected().and_then(|c| c.id)) {
                (KeyCode::Char('y') | KeyCode::Char('Y'), Some(id)) => Outcome::Op(Op::Delete(id)),
                _ => Outcome::Nothing,
            };
        }
        self.message = None;
        match key.code {
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => {
                if self.selected + 1 < self.list.len() {
                    self.selected += 1;
                }
            }
            KeyCode::Insert => return self.new_form(),
            KeyCode::F(2) => return self.edit_form(),
            KeyCode::Delete => return self.ask_delete(),
            _ if ctrl(&key, 'n') => return self.new_form(),
            _ if ctrl(&key, 'e') => return self.edit_form(),
            _ if ctrl(&key, 'd') => return self.ask_delete(),
            _ => match edit_line(&mut self.query, &key) {
                LineKey::Esc => return Outcome::Close,
                LineKey::Enter => {
                    if let Some(c) = self.selected() {
                        return Outcome::Dial(c.number.clone());
                    }
                }
                LineKey::Edited => {
                    self.selected = 0;
                    return Outcome::Op(Op::Search(self.query.clone()));
                }
                LineKey::Other => {}
            },
        }
        Outcome::Nothing
    }

    fn new_form(&mut self) -> Outcome {
        // A number typed as the search becomes the new entry's number.
        let q = self.query.trim();
        let number = if q.chars().any(|c| c.is_ascii_digit()) && !q.chars().any(char::is_alphabetic) {
            q.to_owned()
        } else {
            String::new()
        };
        self.form = Some(Form {
            id: None,
            fields: [String::new(), number, String::new()],
            focus: 0,
        });
        Outcome::Nothing
    }

    fn edit_form(&mut self) -> Outcome {
        if let Some(c) = self.selected() {
            self.form = Some(Form {
                // A shared entry is not ours to change: saving makes a local one.
                id: if c.origin == Origin::Local { c.id } else { None },
                fields: [c.name.clone(), c.number.clone(), c.company.clone()],
                focus: 0,
            });
        }
        Outcome::Nothing
    }

    fn ask_delete(&mut self) -> Outcome {
        match self.selected() {
            Some(c) if c.origin == Origin::Local => self.confirm_delete = true,
            Some(_) => self.message = Some("shared".into()),
            None => {}
        }
        Outcome::Nothing
    }

    fn form_key(&mut self, key: KeyEvent) -> Outcome {
        let Some(form) = self.form.as_mut() else {
            return Outcome::Nothing;
        };
        match key.code {
            KeyCode::Tab | KeyCode::Down => form.focus = (form.focus + 1) % 3,
            KeyCode::BackTab | KeyCode::Up => form.focus = (form.focus + 2) % 3,
            _ => match edit_line(&mut form.fields[form.focus], &key) {
                LineKey::Esc => self.form = None,
                LineKey::Enter => {
                    let [name, number, company] = form.fields.clone();
                    let id = form.id;
                    self.form = None;
                    return Outcome::Op(Op::Save {
                        id,
                        entry: Entry {
                            name,
                            number,
                            company,
                        },
                    });
                }
                LineKey::Edited | LineKey::Other => {}
            },
        }
        Outcome::Nothing
    }
}

/// Draws the pane over `area`.
pub fn draw(f: &mut Frame, area: Rect, c: &Contacts, look: &Look) {
    let t = look.theme;
    let cat = look.cat;
    f.render_widget(Clear, area);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.style("ui.border"))
        .title(Span::styled(cat.get("contacts.title"), t.style("ui.title")));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [search, list, hint] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(cat.get("contacts.search"), t.style("help.key")),
            Span::styled(format!("{}▏", clean(&c.query)), t.style("input")),
        ])),
        search,
    );
    let w = list.width as usize;
    let (wn, wname) = (w.saturating_sub(2) / 3, w.saturating_sub(2) * 2 / 5);
    let wco = w.saturating_sub(wn + wname + 4);
    let mut lines = Vec::new();
    if c.list.is_empty() {
        lines.push(Line::styled(cat.get("contacts.empty"), t.style("ui.dim")));
    }
    let visible = list.height as usize;
    let skip = (c.selected + 1).saturating_sub(visible);
    for (i, e) in c.list.iter().enumerate().skip(skip).take(visible) {
        let mark = if e.origin == Origin::Shared { "↓" } else { " " };
        let text = format!(
            "{mark} {} {} {}",
            fit(&clean(&e.number), wn),
            fit(&clean(&e.name), wname),
            fit(&clean(&e.company), wco)
        );
        let style = if i == c.selected {
            t.style("list.selected")
        } else {
            t.style("ui.text")
        };
        lines.push(Line::styled(text, style));
    }
    f.render_widget(Paragraph::new(lines), list);
    let bottom = if c.confirm_delete {
        Line::styled(cat.get("contacts.confirm_delete"), t.style("help.key"))
    } else if let Some(m) = &c.message {
        let m = if m == "shared" {
            cat.get("contacts.shared_readonly").to_owned()
        } else {
            clean(m)
        };
        Line::styled(m, t.style("ui.dim"))
    } else {
        Line::styled(cat.get("contacts.keys"), t.style("ui.dim"))
    };
    f.render_widget(Paragraph::new(bottom), hint);
    if let Some(form) = &c.form {
        draw_form(f, area, form, look);
    }
}

fn draw_form(f: &mut Frame, area: Rect, form: &Form, look: &Look) {
    let t = look.theme;
    let cat = look.cat;
    let w = area.width.saturating_sub(4).min(60);
    let r = super::view::centered(area, w, 6);
    f.render_widget(Clear, r);
    let title = cat.get(if form.id.is_some() {
        "contacts.edit"
    } else {
        "contacts.new"
    });
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.style("ui.border"))
        .title(Span::styled(title, t.style("ui.title")));
    let inner = block.inner(r);
    f.render_widget(block, r);
    let labels = [
        cat.get("contacts.name"),
        cat.get("contacts.number"),
        cat.get("contacts.company"),
    ];
    let lw = labels.iter().map(|l| super::text::width(l)).max().unwrap_or(0);
    let mut lines = Vec::new();
    for (i, (label, value)) in labels.iter().zip(&form.fields).enumerate() {
        let cursor = if i == form.focus { "▏" } else { "" };
        let room = (inner.width as usize).saturating_sub(lw + 3);
        lines.push(Line::from(vec![
            Span::styled(format!("{} ", fit(label, lw)), t.style("help.key")),
            Span::styled(
                fit(&format!("{}{cursor}", clean(value)), room),
                if i == form.focus {
                    t.style("input")
                } else {
                    t.style("ui.text")
                },
            ),
        ]));
    }
    lines.push(Line::styled(cat.get("contacts.form_keys"), t.style("ui.dim")));
    f.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn contact(id: Option<i64>, name: &str, number: &str) -> Contact {
        Contact {
            id,
            name: name.into(),
            number: number.into(),
            company: String::new(),
            origin: if id.is_some() {
                Origin::Local
            } else {
                Origin::Shared
            },
        }
    }

    #[test]
    fn typing_searches_enter_dials_and_the_form_saves() {
        let mut c = Contacts::default();
        assert_eq!(
            c.on_key(key(KeyCode::Char('y'))),
            Outcome::Op(Op::Search("y".into()))
        );
        assert_eq!(
            c.on_key(key(KeyCode::Char('a'))),
            Outcome::Op(Op::Search("ya".into()))
        );
        c.show(vec![
            contact(Some(3), "Yamada", "0312345678"),
            contact(None, "Yano", "1002"),
        ]);
        c.on_key(key(KeyCode::Down));
        assert_eq!(c.on_key(key(KeyCode::Enter)), Outcome::Dial("1002".into()));
        // Editing the shared entry makes a new local one.
        c.on_key(KeyEvent::new(KeyCode::Char('e'), KeyModifiers::CONTROL));
        assert_eq!(c.form.as_ref().map(|f| f.id), Some(None));
        c.on_key(key(KeyCode::Char('!')));
        assert_eq!(
            c.on_key(key(KeyCode::Enter)),
            Outcome::Op(Op::Save {
                id: None,
                entry: Entry {
                    name: "Yano!".into(),
                    number: "1002".into(),
                    company: String::new()
                }
            })
        );
        // A shared entry cannot be deleted; a local one asks first.
        c.on_key(key(KeyCode::Delete));
        assert!(!c.confirm_delete && c.message.is_some());
        c.on_key(key(KeyCode::Up));
        c.on_key(key(KeyCode::Delete));
        assert!(c.confirm_delete);
        assert_eq!(c.on_key(key(KeyCode::Char('y'))), Outcome::Op(Op::Delete(3)));
        assert_eq!(c.on_key(key(KeyCode::Esc)), Outcome::Close);
    }

    #[test]
    fn a_typed_number_becomes_the_new_entrys_number_and_control_keys_type_nothing() {
        let mut c = Contacts::default();
        for ch in "03-1234".chars() {
            c.on_key(key(KeyCode::Char(ch)));
        }
        c.on_key(key(KeyCode::Insert));
        let f = c.form.clone().unwrap();
        assert_eq!(f.fields[1], "03-1234");
        c.on_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL));
        c.on_key(key(KeyCode::Char('\u{1b}')));
        assert_eq!(c.form.as_ref().unwrap().fields[0], "");
        c.on_key(key(KeyCode::Esc));
        assert!(c.form.is_none());
    }
}
