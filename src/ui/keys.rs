//! The terminal UI's keys: every action has a default key, remappable in `[keys]`
//! (`answer = "F5"`, `dial = "ctrl+d"`), with arrows and vim-style motion in lists.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Answer,
    Hangup,
    Hold,
    Mute,
    Transfer,
    /// Attended transfer: hold and call the colleague; then complete, swap, or cancel.
    Consult,
    Swap,
    Complete,
    CancelConsult,
    /// Join the answered calls into a local conference.
    Conference,
    /// The agent's status: ready, not ready (with a reason), wrap-up code (AGT-1…3).
    Ready,
    NotReady,
    Wrapup,
    /// Dial the voicemail number.
    Voicemail,
    /// The colleagues' lamps (BLF): dial, transfer to, pick up.
    Blf,
    Dnd,
    Record,
    Dial,
    Settings,
    Help,
    Log,
    Up,
    Down,
    /// Enter: the popup's click access, or call back the selected history row.
    Activate,
    Copy,
    ClosePopup,
    /// Filter the call list by text, by result; jump to a date.
    Filter,
    ResultFilter,
    JumpDate,
    /// The contacts pane.
    Contacts,
    /// Run the click access again for the selected past call (HIS-2).
    Reclick,
    /// Open (or copy the path of) the selected past call's recording.
    OpenRecording,
    /// Leave the screen: detach from the daemon (calls go on), or quit the phone without one.
    Quit,
    /// Stop the phone (the daemon), after a confirmation.
    Stop,
}

impl Action {
    /// Every action with its config name, default keys and help catalog key.
    pub const ALL: [(Action, &'static str, &'static [&'static str], &'static str); 34] = [
        (Action::Answer, "answer", &["a"], "help.answer"),
        (Action::Hangup, "hangup", &["x"], "help.hangup"),
        (Action::Hold, "hold", &["h"], "help.hold"),
        (Action::Mute, "mute", &["m"], "help.mute"),
        (Action::Transfer, "transfer", &["t"], "help.transfer"),
        (Action::Consult, "consult", &["T"], "help.consult"),
        (Action::Swap, "swap", &["w"], "help.swap"),
        (Action::Complete, "complete", &["C"], "help.complete"),
        (
            Action::CancelConsult,
            "cancel_consult",
            &["X"],
            "help.cancel_consult",
        ),
        (Action::Conference, "conference", &["J"], "help.conference"),
        (Action::Ready, "ready", &["r"], "help.ready"),
        (Action::NotReady, "not_ready", &["n"], "help.not_ready"),
        (Action::Wrapup, "wrapup", &["W"], "help.wrapup"),
        (Action::Voicemail, "voicemail", &["M"], "help.voicemail"),
        (Action::Blf, "blf", &["b"], "help.blf"),
        (Action::Dnd, "dnd", &["D"], "help.dnd"),
        (Action::Record, "record", &["R"], "help.record"),
        (Action::Dial, "dial", &["d", ":"], "help.dial"),
        (Action::Settings, "settings", &["s"], "help.settings"),
        (Action::Help, "help", &["?", "F1"], "help.help"),
        (Action::Log, "log", &["l"], "help.log"),
        (Action::Up, "up", &["up", "k"], "help.up"),
        (Action::Down, "down", &["down", "j"], "help.down"),
        (Action::Activate, "activate", &["enter"], "help.click"),
        (Action::Copy, "copy", &["y"], "help.copy"),
        (Action::ClosePopup, "close", &["esc"], "help.close"),
        (Action::Filter, "filter", &["/"], "help.filter"),
        (
            Action::ResultFilter,
            "result_filter",
            &["f"],
            "help.result_filter",
        ),
        (Action::JumpDate, "jump", &["g"], "help.jump"),
        (Action::Contacts, "contacts", &["c"], "help.contacts"),
        (Action::Reclick, "reclick", &["o"], "help.reclick"),
        (
            Action::OpenRecording,
            "open_recording",
            &["v"],
            "help.open_recording",
        ),
        (Action::Quit, "quit", &["q"], "help.quit"),
        (Action::Stop, "stop", &["Q"], "help.stop"),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(a, ..)| *a == self)
            .map_or("", |(_, n, ..)| n)
    }
}

/// The longest line typed into a prompt or a field, in characters.
pub const MAX_LINE: usize = 256;

/// A printable character typed without Ctrl or Alt.
pub fn typed(key: &KeyEvent) -> Option<char> {
    match key.code {
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                && !c.is_control() =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// What a key did to a one-line input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKey {
    Enter,
    Esc,
    /// A character added (up to [`MAX_LINE`]) or removed.
    Edited,
    Other,
}

/// Applies a key to a one-line input: printable characters are added, Backspace removes one.
pub fn edit_line(line: &mut String, key: &KeyEvent) -> LineKey {
    match key.code {
        KeyCode::Enter => LineKey::Enter,
        KeyCode::Esc => LineKey::Esc,
        KeyCode::Backspace => {
            line.pop();
            LineKey::Edited
        }
        _ => match typed(key) {
            Some(c) => {
                if line.chars().count() < MAX_LINE {
                    line.push(c);
                }
                LineKey::Edited
            }
            None => LineKey::Other,
        },
    }
}

/// A key as written in the config: `a`, `A`, `F5`, `enter`, `esc`, `ctrl+d`, `up`, `?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn parse(s: &str) -> Result<Key, String> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = s.trim();
        loop {
            let lower = rest.to_ascii_lowercase();
            if let Some(r) = lower.strip_prefix("ctrl+").map(|_| &rest[5..]) {
                ctrl = true;
                rest = r;
            } else if let Some(r) = lower.strip_prefix("alt+").map(|_| &rest[4..]) {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "enter" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "space" => KeyCode::Char(' '),
            "backspace" => KeyCode::Backspace,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "delete" => KeyCode::Delete,
            f if f.len() > 1
                && f.starts_with('f')
                && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
            {
                KeyCode::F(f[1..].parse().unwrap_or(1))
            }
            _ => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if !c.is_control() => KeyCode::Char(c),
                    _ => {
                        return Err(format!(
                            "unknown key `{s}`, expected e.g. `a`, `F5`, `enter`, `ctrl+d`"
                        ));
                    }
                }
            }
        };
        Ok(Key { code, ctrl, alt })
    }

    fn of(ev: &KeyEvent) -> Key {
        Key {
            code: ev.code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
            alt: ev.modifiers.contains(KeyModifiers::ALT),
        }
    }

    /// How the key is shown in the help.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_owned(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::F(n) => format!("F{n}"),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            other => format!("{other:?}"),
        };
        match (self.ctrl, self.alt) {
            (true, _) => format!("Ctrl+{base}"),
            (_, true) => format!("Alt+{base}"),
            _ => base,
        }
    }
}

/// Keys → actions.
#[derive(Clone, Debug)]
pub struct KeyMap {
    map: HashMap<Key, Action>,
}

impl KeyMap {
    /// The defaults with `[keys]` overrides (an override replaces that action's default keys).
    pub fn new(overrides: &std::collections::BTreeMap<String, String>) -> Result<KeyMap, Vec<String>> {
        let mut errors = Vec::new();
        let mut map = HashMap::new();
        for (action, name, defaults, _) in Action::ALL {
            let keys: Vec<String> = match overrides.get(name) {
                Some(k) => k.split(',').map(|s| s.trim().to_owned()).collect(),
                None => defaults.iter().map(|s| (*s).to_owned()).collect(),
            };
            for k in keys {
                match Key::parse(&k) {
                    Ok(key) => {
                        if let Some(other) = map.insert(key, action)
                            && other != action
                        {
                            errors.push(format!(
                                "[keys] `{k}` is given to both `{}` and `{name}`",
                                other.name()
                            ));
                        }
                    }
                    Err(e) => errors.push(format!("[keys] {name}: {e}")),
                }
            }
        }
        for name in overrides.keys() {
            if !Action::ALL.iter().any(|(_, n, ..)| n == name) {
                let known: Vec<&str> = Action::ALL.iter().map(|(_, n, ..)| *n).collect();
                errors.push(format!(
                    "[keys] unknown action `{name}`, expected one of {}",
                    known.join(", ")
                ));
            }
        }
        if errors.is_empty() {
            Ok(KeyMap { map })
        } else {
            Err(errors)
        }
    }

    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        let mut k = Key::of(ev);
        // Shifted letters arrive as upper-case chars; the SHIFT flag itself is ignored.
        if let KeyCode::Char(_) = k.code {
            k.alt = ev.modifiers.contains(KeyModifiers::ALT);
        }
        self.map.get(&k).copied()
    }

    /// The keys of an action, for the help overlay.
    pub fn keys_of(&self, action: Action) -> Vec<String> {
        let mut v: Vec<String> = self
            .map
            .iter()
            .filter(|(_, a)| **a == action)
            .map(|(k, _)| k.label())
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn defaults_and_overrides() {
        let km = KeyMap::new(&Default::default()).unwrap();
        assert_eq!(
            km.action(&press(KeyCode::Char('a'), KeyModifiers::NONE)),
            Some(Action::Answer)
        );
        assert_eq!(
            km.action(&press(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Action::Down)
        );
        assert_eq!(
            km.action(&press(KeyCode::Down, KeyModifiers::NONE)),
            Some(Action::Down)
        );
        assert_eq!(
            km.action(&press(KeyCode::Char('D'), KeyModifiers::SHIFT)),
            Some(Action::Dnd)
        );
        let o = [
            ("answer".to_owned(), "F5".to_owned()),
            ("dial".to_owned(), "ctrl+d".to_owned()),
        ]
        .into_iter()
        .collect();
        let km = KeyMap::new(&o).unwrap();
        assert_eq!(
            km.action(&press(KeyCode::F(5), KeyModifiers::NONE)),
            Some(Action::Answer)
        );
        assert_eq!(km.action(&press(KeyCode::Char('a'), KeyModifiers::NONE)), None);
        assert_eq!(
            km.action(&press(KeyCode::Char('d'), KeyModifiers::CONTROL)),
            Some(Action::Dial)
        );
    }

    #[test]
    fn bad_overrides_are_reported() {
        let o = [
            ("answer".to_owned(), "hyper+z".to_owned()),
            ("explode".to_owned(), "e".to_owned()),
        ]
        .into_iter()
        .collect();
        let e = KeyMap::new(&o).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        let o = [("answer".to_owned(), "x".to_owned())].into_iter().collect();
        assert!(KeyMap::new(&o).unwrap_err()[0].contains("both"));
    }
}
