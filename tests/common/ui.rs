//! Helpers for the terminal UI tests: an `App` on a config text, bus events to feed it, one
//! frame rendered into ratatui's `TestBackend`, the buffer read back as text, and checks that
//! a frame is straight (every row exactly as wide as the terminal, no cell hidden under a
//! double-width character, every box closed) and clean (no control character in any cell).
//!
//! Included with `#[path = "common/ui.rs"] mod ui;` by the `ui_*` tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use ctiphone::app::{CtiEvent, EndReason, Event, PhoneEvent};
use ctiphone::config::Config;
use ctiphone::ui::i18n::{Catalog, Lang};
use ctiphone::ui::keys::KeyMap;
use ctiphone::ui::state::App;
use ctiphone::ui::theme::Theme;
use ctiphone::ui::view::{self, Look};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::{Buffer, CellWidth};
use regex::Regex;

// Also a module of `common` in the tests that include both; one definition either way.
#[allow(clippy::duplicate_mod)]
#[path = "controls.rs"]
mod controls;
pub use controls::raw_control;

/// The `[account]` every UI test uses: direct calls, no registrar.
pub const ACCOUNT: &str = "[account]\n\
    uri = \"sip:1001@127.0.0.1\"\n\
    registrar = \"\"\n\
    listen = \"127.0.0.1:5062\"\n";

/// The call id the helpers use.
pub const CALL: &str = "call-1@127.0.0.1";

/// An `App` on `ACCOUNT` plus `extra` config text, with the default keys.
pub fn app(extra: &str) -> App {
    let text = format!("{ACCOUNT}{extra}");
    let config = Config::parse(&text, None).unwrap_or_else(|e| panic!("config {text:?}: {e}"));
    App::new(&config, KeyMap::new(&Default::default()).expect("default keys"))
}

/// Feeds one phone event.
pub fn phone(app: &mut App, ev: PhoneEvent) {
    app.on_event(&Event::Phone(ev));
}

/// Feeds one CTI event.
pub fn cti(app: &mut App, ev: CtiEvent) {
    app.on_event(&Event::Cti(ev));
}

/// An incoming call `CALL` from `tel` ("display name" `telname`) to 0312345678.
pub fn incoming(app: &mut App, tel: &str, telname: &str, anonymous: bool) {
    phone(
        app,
        PhoneEvent::Incoming {
            call: CALL.to_owned(),
            tel: tel.to_owned(),
            telname: telname.to_owned(),
            called: "0312345678".to_owned(),
            calledname: String::new(),
            anonymous,
        },
    );
}

/// The CRM answered for `CALL`.
pub fn found(app: &mut App, company: &str, name: &str, ext_id: &str) {
    let vars: BTreeMap<String, String> = [("COMPANY", company), ("NAME", name), ("EXT_ID", ext_id)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    cti(
        app,
        CtiEvent::SearchResult {
            call_id: CALL.to_owned(),
            vars,
        },
    );
}

pub fn answered(app: &mut App) {
    phone(
        app,
        PhoneEvent::Answered {
            call: CALL.to_owned(),
            srtp: None,
        },
    );
}

pub fn ended(app: &mut App, reason: EndReason, duration_s: f64) {
    phone(
        app,
        PhoneEvent::Ended {
            call: CALL.to_owned(),
            reason,
            code: None,
            duration_s,
            result: None,
            detail: None,
        },
    );
}

/// Renders one frame of `app` at `w`×`h` in `lang` with the default theme. Returns the frame
/// as the UI drew it (before ratatui's diff leaves out the cells a double-width character
/// covers), so that `assert_straight` sees what was drawn under a wide character; `row` and
/// `text` show it as the terminal does.
pub fn render(app: &App, lang: Lang, w: u16, h: u16) -> Buffer {
    render_both(app, lang, w, h).0
}

/// `render`, plus the test terminal's own screen: what reached it through ratatui's diff.
pub fn render_both(app: &App, lang: Lang, w: u16, h: u16) -> (Buffer, Buffer) {
    let theme = Theme::default();
    let cat = Catalog::new(lang);
    let look = Look {
        theme: &theme,
        cat: &cat,
    };
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    let drawn = terminal
        .draw(|f| view::draw(f, app, &look))
        .expect("draw into the test backend")
        .buffer
        .clone();
    (drawn, terminal.backend().buffer().clone())
}

/// One row of the buffer as a terminal shows it: each cell's symbol, skipping the cells a
/// double-width symbol covers (widths as ratatui sends them to the terminal). Also returns the
/// covered cells that are not blank: text drawn over half of a wide character, which a real
/// terminal shows shifted or not at all.
pub fn row(buf: &Buffer, y: u16) -> (String, Vec<(u16, String)>) {
    let mut out = String::new();
    let mut hidden = Vec::new();
    let mut skip = 0u16;
    for x in 0..buf.area.width {
        let cell = &buf[(x, y)];
        let sym = cell.symbol();
        if skip == 0 {
            out.push_str(sym);
        } else if !sym.trim().is_empty() {
            hidden.push((x, sym.to_owned()));
        }
        skip = skip.max(cell.cell_width()).saturating_sub(1);
    }
    (out, hidden)
}

/// The columns a row takes on a terminal: the sum of the widths of its visible cells.
pub fn row_width(buf: &Buffer, y: u16) -> usize {
    let mut cols = 0usize;
    let mut skip = 0u16;
    for x in 0..buf.area.width {
        let cell = &buf[(x, y)];
        if skip == 0 {
            cols += usize::from(cell.cell_width());
        }
        skip = skip.max(cell.cell_width()).saturating_sub(1);
    }
    cols
}

/// The display width of a symbol as ratatui counts it (what the terminal is sent).
pub fn cell_width(sym: &str) -> usize {
    usize::from(sym.cell_width())
}

/// Every row as shown, trailing blanks kept.
pub fn rows(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height).map(|y| row(buf, y).0).collect()
}

/// The whole screen as text, trailing blanks of each row removed.
pub fn text(buf: &Buffer) -> String {
    rows(buf)
        .iter()
        .map(|r| r.trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` with what changes from run to run replaced by placeholders of the same width: the
/// clock at the end of the status bar (`HH:MM:SS`, or as much of it as the bar shows), the
/// date of history rows, the popup's countdown. Call it right after rendering.
pub fn stable(buf: &Buffer) -> String {
    // A history row's "MM-DD hh:mm", whole or cut short by a popup drawn over it (at least
    // "MM-DD h"), becomes the same length of the placeholder.
    let date = Regex::new(r"\b\d\d-\d\d \d(?:\d(?::(?:\d\d?)?)?)?").unwrap();
    let closes_en = Regex::new(r"closes in \d+").unwrap();
    let closes_ja = Regex::new(r"\d+ 秒後").unwrap();
    let t = text(buf);
    let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
    if let Some(first) = lines.first_mut() {
        *first = without_clock(first);
    }
    let t = lines.join("\n");
    let t = date.replace_all(&t, |c: &regex::Captures| "MM-DD hh:mm"[..c[0].len()].to_owned());
    let t = closes_en.replace_all(&t, "closes in NN");
    closes_ja.replace_all(&t, "NN 秒後").into_owned()
}

/// The status bar with the clock at its end (the last few seconds' times, possibly cut short
/// by a narrow terminal, at least `HH:`) replaced by `HH:MM:SS` cut the same way.
fn without_clock(line: &str) -> String {
    let now = chrono::Local::now();
    for back in 0..5 {
        let t = (now - chrono::Duration::seconds(back))
            .format("%H:%M:%S")
            .to_string();
        for k in (3..=t.len()).rev() {
            if let Some(head) = line.strip_suffix(&t[..k]) {
                return format!("{head}{}", &"HH:MM:SS"[..k]);
            }
        }
    }
    line.to_owned()
}

/// The screen with row numbers, for assertion messages.
pub fn dump(buf: &Buffer) -> String {
    rows(buf)
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{i:>3}|{r}|"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A box found on the screen: its corners, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub left: u16,
    pub top: u16,
    pub right: u16,
    pub bottom: u16,
}

/// Traces the box whose top-left corner `┌` is at (`left`, `top`): its top edge runs right to
/// a `┐`, its sides run down as `│` to `└` and `┘` on the same row, its bottom edge is `─`.
pub fn trace_box(buf: &Buffer, left: u16, top: u16) -> Result<Frame, String> {
    let (w, h) = (buf.area.width, buf.area.height);
    let sym = |x: u16, y: u16| buf[(x, y)].symbol();
    if sym(left, top) != "┌" {
        return Err(format!("no ┌ at ({left},{top})"));
    }
    let right = (left + 1..w)
        .find(|&x| sym(x, top) == "┐")
        .ok_or_else(|| format!("box at ({left},{top}) has no ┐"))?;
    let mut y = top + 1;
    loop {
        if y >= h {
            return Err(format!("box ({left},{top})-({right},?) has no bottom edge"));
        }
        let (l, r) = (sym(left, y), sym(right, y));
        if l == "└" && r == "┘" {
            break;
        }
        if l != "│" || r != "│" {
            return Err(format!(
                "box ({left},{top})-({right},?): row {y} has {l:?} and {r:?} where its sides should be"
            ));
        }
        y += 1;
    }
    if let Some(x) = (left + 1..right).find(|&x| sym(x, y) != "─") {
        return Err(format!(
            "box ({left},{top})-({right},{y}): bottom edge broken at column {x}"
        ));
    }
    Ok(Frame {
        left,
        top,
        right,
        bottom: y,
    })
}

/// Every box on the screen (see `trace_box`). Panics, with the screen, on a box that is not
/// closed: a side broken by a character drawn over it, a missing corner.
pub fn frames(buf: &Buffer) -> Vec<Frame> {
    let mut found = Vec::new();
    for top in 0..buf.area.height {
        for left in 0..buf.area.width {
            if buf[(left, top)].symbol() == "┌" {
                match trace_box(buf, left, top) {
                    Ok(f) => found.push(f),
                    Err(e) => panic!("{e}\n{}", dump(buf)),
                }
            }
        }
    }
    found
}

/// The box whose top edge carries `title` (as the terminal shows it); panics unless it is
/// closed.
pub fn frame_titled(buf: &Buffer, title: &str) -> Frame {
    for top in 0..buf.area.height {
        let (line, _) = row(buf, top);
        if !line.contains(title) {
            continue;
        }
        for left in 0..buf.area.width {
            if buf[(left, top)].symbol() != "┌" {
                continue;
            }
            // The title must sit on this box's top edge, left of its ┐.
            let mut edge = String::new();
            let mut skip = 0u16;
            for x in left..buf.area.width {
                let cell = &buf[(x, top)];
                if skip == 0 {
                    edge.push_str(cell.symbol());
                }
                skip = skip.max(cell.cell_width()).saturating_sub(1);
                if x > left && matches!(cell.symbol(), "┐" | "┌") {
                    break;
                }
            }
            // ratatui puts a box's title right after its top-left corner.
            if edge.strip_prefix('┌').is_some_and(|e| e.starts_with(title)) {
                return trace_box(buf, left, top).unwrap_or_else(|e| panic!("{e}\n{}", dump(buf)));
            }
        }
    }
    panic!(
        "no box titled {title:?} (a corner covered by a double-width character?)\n{}",
        dump(buf)
    )
}

/// A straight frame: every row exactly `width` columns as a terminal shows it, no visible
/// cell hidden under half of a wide character, every box closed, and the call list's own box
/// spanning the whole width. Returns the boxes.
pub fn assert_straight(buf: &Buffer) -> Vec<Frame> {
    let w = buf.area.width as usize;
    for y in 0..buf.area.height {
        let (r, hidden) = row(buf, y);
        assert_eq!(
            row_width(buf, y),
            w,
            "row {y} is {} columns wide, not {w}: {r:?}\n{}",
            row_width(buf, y),
            dump(buf)
        );
        assert!(
            hidden.is_empty(),
            "row {y}: cells drawn under half of a double-width character {hidden:?}\n{}",
            dump(buf)
        );
    }
    let boxes = frames(buf);
    assert!(
        boxes
            .iter()
            .any(|b| b.left == 0 && b.top == 1 && b.right == buf.area.width - 1),
        "no call-list box across the whole width: {boxes:?}\n{}",
        dump(buf)
    );
    boxes
}

/// Panics on any cell holding a `raw_control` character.
pub fn assert_clean(buf: &Buffer, what: &str) {
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            let s = buf[(x, y)].symbol();
            if let Some(c) = s.chars().find(|c| raw_control(*c)) {
                panic!(
                    "{what}: cell ({x},{y}) holds U+{:04X} in {s:?}\n{}",
                    u32::from(c),
                    dump(buf)
                );
            }
        }
    }
}

/// The bytes one frame of `app` sends to a real terminal (ratatui's crossterm backend writing
/// into memory, a fixed `w`×`h` screen), in `lang` with the default theme.
pub fn terminal_bytes(app: &App, lang: Lang, w: u16, h: u16) -> Vec<u8> {
    use ratatui::backend::CrosstermBackend;
    use ratatui::layout::Rect;
    use ratatui::{TerminalOptions, Viewport};
    let theme = Theme::default();
    let cat = Catalog::new(lang);
    let look = Look {
        theme: &theme,
        cat: &cat,
    };
    let mut out = Vec::new();
    {
        let options = TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, w, h)),
        };
        let mut terminal =
            Terminal::with_options(CrosstermBackend::new(&mut out), options).expect("terminal in memory");
        terminal
            .draw(|f| view::draw(f, app, &look))
            .expect("draw into memory");
    }
    out
}

/// An escape sequence in a terminal byte stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Seq {
    /// `ESC [` parameters, intermediates and the final byte.
    Csi(String),
    /// `ESC ]` … up to BEL or `ESC \`, without them.
    Osc(String),
    /// A lone BEL.
    Bell,
}

/// Splits what a program wrote to the terminal into its printable text and its escape
/// sequences. Err on anything a terminal would act on besides well-formed CSI and OSC
/// sequences and BEL: another C0 byte, DEL, a C1 code point, an ESC starting anything else,
/// an unterminated sequence, invalid UTF-8, or a bidi/invisible format character in the text.
pub fn scan_terminal(bytes: &[u8]) -> Result<(String, Vec<Seq>), String> {
    let s = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let b = s.as_bytes();
    let mut text = String::new();
    let mut seqs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            0x1b => match b.get(i + 1) {
                Some(b'[') => {
                    let start = i + 2;
                    let mut j = start;
                    while j < b.len() && (0x20..=0x3f).contains(&b[j]) {
                        j += 1;
                    }
                    if j >= b.len() || !(0x40..=0x7e).contains(&b[j]) {
                        return Err(format!(
                            "malformed CSI at byte {i}: {:?}",
                            &s[i..b.len().min(i + 16)]
                        ));
                    }
                    seqs.push(Seq::Csi(s[start..=j].to_owned()));
                    i = j + 1;
                }
                Some(b']') => {
                    let start = i + 2;
                    let mut j = start;
                    let end = loop {
                        match b.get(j) {
                            None => return Err(format!("unterminated OSC at byte {i}")),
                            Some(0x07) => break j + 1,
                            Some(0x1b) if b.get(j + 1) == Some(&b'\\') => break j + 2,
                            Some(c) if *c < 0x20 || *c == 0x7f => {
                                return Err(format!("control byte 0x{c:02x} inside an OSC at byte {j}"));
                            }
                            Some(_) => j += 1,
                        }
                    };
                    let body_end = if b[end - 1] == 0x07 { end - 1 } else { end - 2 };
                    seqs.push(Seq::Osc(s[start..body_end].to_owned()));
                    i = end;
                }
                other => return Err(format!("ESC followed by {other:?} at byte {i}")),
            },
            0x07 => {
                seqs.push(Seq::Bell);
                i += 1;
            }
            _ => {
                let c = s[i..].chars().next().unwrap_or('\0');
                if raw_control(c) {
                    return Err(format!("raw U+{:04X} at byte {i}", u32::from(c)));
                }
                text.push(c);
                i += c.len_utf8();
            }
        }
    }
    Ok((text, seqs))
}
