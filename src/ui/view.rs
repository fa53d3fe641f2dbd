//! Drawing the terminal UI from its state: the status bar, the call list (active calls, then
//! this session's history), the dial line, and the overlays (incoming-call popup, help, quit
//! confirmation, log pane). Text widths are display widths: double-width Japanese never
//! breaks a column or a frame.

use std::time::Instant;

use chrono::Local;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use crate::app::AgentState;
use crate::config::PopupSize;

use super::i18n::Catalog;
use super::keys::Action;
use super::lines::Lines;
use super::state::{App, ChoiceKind, DialPurpose, Level, Mode, Reg, RowState};
use super::text::{pad_right, truncate, width, wrap};
use super::theme::Theme;

/// Everything `draw` needs besides the state.
pub struct Look<'a> {
    pub theme: &'a Theme,
    pub cat: &'a Catalog,
}

fn hms(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 60, secs % 60)
    }
}

/// What the frame put where: the popup's link (for OSC 8) and its buttons (for the mouse).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drawn {
    pub link: Option<LinkSpot>,
    pub buttons: Vec<(Rect, Action)>,
}

/// Where a link was drawn, for the terminal to turn its text into an OSC 8 hyperlink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSpot {
    pub x: u16,
    pub y: u16,
    pub text: String,
    pub url: String,
}

/// Draws one frame.
pub fn draw(f: &mut Frame, app: &App, look: &Look) {
    let _ = draw_with_link(f, app, look);
}

/// Draws one frame; returns where the popup's link and buttons are.
pub fn draw_with_link(f: &mut Frame, app: &App, look: &Look) -> Drawn {
    let area = f.area();
    let log_h = if app.show_log {
        (area.height / 3).clamp(3, 10)
    } else {
        0
    };
    let [status, body, log, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(log_h),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_status(f, status, app, look);
    draw_list(f, body, app, look);
    if app.show_log {
        draw_log(f, log, app, look);
    }
    draw_bottom(f, bottom, app, look);
    let link = if app.popup.is_some() {
        draw_popup(f, body, app, look)
    } else {
        Drawn::default()
    };
    match app.mode {
        Mode::Help => draw_help(f, area, app, look),
        Mode::Blf { selected } => draw_blf(f, body, app, look, selected),
        Mode::Contacts => super::contacts::draw(f, body, &app.contacts, look),
        Mode::ConfirmQuit | Mode::ConfirmStop => {
            let text = look.cat.get(if app.mode == Mode::ConfirmStop {
                "quit.confirm_stop"
            } else {
                "quit.confirm"
            });
            let w = (width(text) as u16 + 4).min(area.width);
            let r = centered(area, w, 3);
            f.render_widget(
                bordered(Lines::new(text).clear(), look, "").style(look.theme.style("ui.text")),
                r,
            );
        }
        _ => {}
    }
    link
}

/// `l` in a box with the theme's border and `title`.
fn bordered<'a>(l: Lines<'a>, look: &Look, title: &'a str) -> Lines<'a> {
    l.boxed(
        look.theme.style("ui.border"),
        Span::styled(title, look.theme.style("ui.title")),
    )
}

fn draw_status(f: &mut Frame, area: Rect, app: &App, look: &Look) {
    let t = look.theme;
    let (reg_text, reg_style) = match &app.reg {
        Reg::Starting => (
            look.cat.get("status.registering").to_owned(),
            t.style("status.warn"),
        ),
        Reg::Registered(_) => (look.cat.get("status.registered").to_owned(), t.style("status.ok")),
        Reg::Failed(why) => (
            look.cat.fmt("status.failed", &[("reason", why)]),
            t.style("status.error"),
        ),
        Reg::Unregistered => (
            look.cat.get("status.unregistered").to_owned(),
            t.style("status.warn"),
        ),
        Reg::Direct(addr) => (
            look.cat.fmt("status.direct", &[("addr", addr)]),
            t.style("status.ok"),
        ),
    };
    let mut spans = vec![
        Span::styled(format!(" {} ", look.cat.get("app.title")), t.style("ui.title")),
        Span::raw(" "),
        Span::raw(truncate(&app.account, 30)),
        Span::raw(" │ "),
        Span::styled(truncate(&reg_text, 40), reg_style),
    ];
    // First after the title, the agent's status and the voicemail light: on a narrow
    // terminal the rest is cut, not these.
    let mut front = Vec::new();
    if let Some(a) = &app.agent {
        // AGT-1: the state and how long the agent has been in it.
        let (key, style) = match a.state {
            AgentState::Ready => ("status.ready", t.style("status.ok")),
            AgentState::NotReady => ("status.not_ready", t.style("status.warn")),
            AgentState::AfterCall => ("status.after_call", t.style("status.warn")),
        };
        let mut text = look.cat.get(key).to_owned();
        if !a.reason.is_empty() {
            text.push_str(&format!(" ({})", truncate(&a.reason, 20)));
        }
        text.push_str(&format!(" {}", hms(a.since.elapsed().as_secs())));
        front.push(Span::styled(text, style));
        front.push(Span::raw(" │ "));
    }
    if let Some(n) = app.voicemail.filter(|n| *n > 0) {
        front.push(Span::styled(
            look.cat.fmt("status.voicemail", &[("n", &n.to_string())]),
            t.style("status.warn"),
        ));
        front.push(Span::raw(" │ "));
    }
    if let Some((n, error)) = &app.central {
        // Issue 18: the central log is behind (PostgreSQL away); the calls go on.
        let mut text = look.cat.fmt("status.central", &[("n", &n.to_string())]);
        if !error.is_empty() {
            text.push_str(&format!(" ({})", truncate(error, 30)));
        }
        front.push(Span::styled(text, t.style("status.warn")));
        front.push(Span::raw(" │ "));
    }
    spans.splice(2..2, front);
    if app.dnd {
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(look.cat.get("status.dnd"), t.style("status.warn")));
    }
    if let Some(c) = app.calls.iter().find(|c| c.muted) {
        let _ = c;
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(look.cat.get("status.muted"), t.style("status.warn")));
    }
    if let Some(c) = app.calls.iter().find(|c| c.answered.is_some()) {
        let secs = c.answered.map_or(0, |a| a.elapsed().as_secs());
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(hms(secs), t.style("call.active")));
    }
    // The clock keeps its place at the right; the rest is cut to fit before it.
    let clock = format!(" {}", Local::now().format("%H:%M:%S"));
    let clock_w = if area.width as usize > clock.len() + 8 {
        clock.len() as u16
    } else {
        0
    };
    let [left, right] = Layout::horizontal([Constraint::Min(0), Constraint::Length(clock_w)]).areas(area);
    let text: String = spans.iter().map(|s| s.content.as_ref()).collect();
    let spans = if width(&text) > left.width as usize {
        vec![Span::raw(truncate(&text, left.width as usize))]
    } else {
        spans
    };
    f.render_widget(Lines::new(Line::from(spans)).style(t.style("status.bar")), left);
    f.render_widget(Lines::new(clock).style(t.style("status.bar")), right);
}

/// Column widths for the list, by the inner width; each column is followed by one space, so
/// the widths plus one per shown column never exceed `w`.
fn columns(w: usize) -> [usize; 7] {
    // state/date, dir, result, number, name, company, duration
    if w >= 78 {
        // Extra room goes to the name and the company.
        let (base, used) = if w >= 110 {
            ([16, 4, 10, 18, 20, 22, 9], 99 + 7)
        } else {
            ([11, 4, 9, 14, 14, 10, 8], 70 + 7)
        };
        let extra = w - used;
        let mut c = base;
        c[4] += extra / 2;
        c[5] += extra - extra / 2;
        c
    } else {
        let rest = w.saturating_sub(11 + 4 + 8 + 5);
        [11, 4, 0, rest / 2, rest - rest / 2, 0, 8]
    }
}

fn draw_list(f: &mut Frame, area: Rect, app: &App, look: &Look) {
    let t = look.theme;
    let cat = look.cat;
    let inner_w = area.width.saturating_sub(2) as usize;
    let cols = columns(inner_w);
    let mut lines: Vec<Line> = Vec::new();
    let header = [
        cat.get("col.state"),
        cat.get("col.dir"),
        cat.get("col.result"),
        cat.get("col.number"),
        cat.get("col.name"),
        cat.get("col.company"),
        cat.get("col.duration"),
    ];
    lines.push(row_line(
        &header.map(str::to_owned),
        &cols,
        t.style("list.header"),
    ));
    let now = Instant::now();
    let mut detail = 0;
    for (i, c) in app.calls.iter().enumerate() {
        let state = match c.state {
            RowState::Ringing => cat.get("state.ringing"),
            RowState::Calling => cat.get("state.calling"),
            RowState::Ringback => cat.get("state.ringback"),
            RowState::Active if c.conference => cat.get("state.conference"),
            RowState::Active => cat.get("state.active"),
            RowState::Held => cat.get("state.held"),
        };
        let dur = c.answered.map_or(0, |a| now.duration_since(a).as_secs());
        let name = if c.crm.name.is_empty() {
            c.telname.clone()
        } else {
            c.crm.name.clone()
        };
        // A lock: the call's audio is encrypted (SRTP).
        let state = match c.srtp {
            Some(_) => format!("{LOCK}{state}"),
            None => state.to_owned(),
        };
        let mut cells = [
            state,
            dir(c.incoming, look),
            c.quality_cell(),
            app.shown_number(c).to_owned(),
            name,
            c.crm.company.clone(),
            hms(dur),
        ];
        if c.recording {
            cells[6] = format!("● {}", cells[6]);
        }
        let style = if i == app.selected {
            t.style("list.selected")
        } else {
            match c.state {
                RowState::Ringing | RowState::Ringback | RowState::Calling => t.style("call.ringing"),
                RowState::Held => t.style("call.held"),
                RowState::Active => t.style("call.active"),
            }
        };
        lines.push(row_line(&cells, &cols, style));
        // Under the selected call: every figure of its last quality report.
        if i == app.selected
            && let Some(q) = &c.quality
        {
            detail = 1;
            let mut d = cat.fmt(
                "quality.detail",
                &[
                    ("mos", &format!("{:.1}", q.mos)),
                    ("lost", &q.lost.to_string()),
                    ("loss", &format!("{:.1}", q.loss_percent)),
                    ("late", &q.late.to_string()),
                    ("concealed", &format!("{:.1}", q.concealed_s)),
                    ("buffer", &q.buffer_ms.to_string()),
                    ("jitter", &format!("{:.0}", q.jitter_ms)),
                ],
            );
            if let Some(r) = q.rtt_ms {
                d.push_str(&cat.fmt("quality.rtt", &[("rtt", &format!("{r:.0}"))]));
            }
            lines.push(Line::styled(
                truncate(&format!("   └ {d}"), inner_w),
                t.style("ui.dim"),
            ));
        }
    }
    if app.calls.is_empty() && app.history.is_empty() {
        lines.push(Line::styled(
            format!(" {}", cat.get("calls.empty")),
            t.style("ui.dim"),
        ));
    }
    for (j, h) in app.history.iter().enumerate() {
        let i = app.calls.len() + j;
        let result = cat.get(&format!("result.{}", h.result)).to_owned();
        let cells = [
            h.date.format("%m-%d %H:%M").to_string(),
            dir(h.incoming, look),
            result,
            h.tel.clone(),
            h.name.clone(),
            h.company.clone(),
            format!(
                "{}{}",
                if h.recording.is_some() { "● " } else { "" },
                hms(h.duration_s.round() as u64)
            ),
        ];
        let style = if i == app.selected {
            t.style("list.selected")
        } else {
            t.style("ui.text")
        };
        lines.push(row_line(&cells, &cols, style));
    }
    // Keep the selection visible.
    let visible = area.height.saturating_sub(2) as usize;
    let skip = (app.selected + 2 + detail).saturating_sub(visible);
    let header_line = lines.remove(0);
    let mut shown = vec![header_line];
    shown.extend(lines.into_iter().skip(skip));
    let mut title = format!("{} / {}", cat.get("calls.active"), cat.get("calls.history"));
    // The filter in force, so a short list is never mistaken for the whole history.
    let fl = &app.filter;
    if !fl.text.is_empty() {
        title += &format!(
            " · {}",
            cat.fmt("history.filter", &[("text", &super::text::clean(&fl.text))])
        );
    }
    if let Some(r) = fl.result {
        title += &format!(
            " · {}",
            cat.fmt("history.result", &[("result", cat.get(&format!("result.{r}")))])
        );
    }
    if let Some(d) = &fl.until {
        title += &format!(
            " · {}",
            cat.fmt("history.until", &[("date", &super::text::clean(d))])
        );
    }
    f.render_widget(bordered(Lines::new(shown), look, &title), area);
}

/// Marks a call whose audio is encrypted (SRTP), in the call list and the popup's title.
const LOCK: &str = "🔒";

fn dir(incoming: bool, look: &Look) -> String {
    look.cat
        .get(if incoming { "dir.in" } else { "dir.out" })
        .to_owned()
}

fn row_line(cells: &[String; 7], cols: &[usize; 7], style: Style) -> Line<'static> {
    let mut s = String::new();
    for (cell, w) in cells.iter().zip(cols) {
        if *w == 0 {
            continue;
        }
        s.push_str(&pad_right(cell, *w));
        s.push(' ');
    }
    Line::styled(s, style)
}

fn draw_log(f: &mut Frame, area: Rect, app: &App, look: &Look) {
    let t = look.theme;
    let n = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = app
        .log
        .iter()
        .rev()
        .take(n)
        .rev()
        .map(|(lvl, msg)| {
            let style = match lvl {
                Level::Info => t.style("log.info"),
                Level::Warn => t.style("log.warn"),
                Level::Error => t.style("log.error"),
            };
            Line::styled(truncate(msg, area.width.saturating_sub(2) as usize), style)
        })
        .collect();
    f.render_widget(bordered(Lines::new(lines), look, look.cat.get("log.title")), area);
}

fn draw_bottom(f: &mut Frame, area: Rect, app: &App, look: &Look) {
    let t = look.theme;
    let line = match &app.mode {
        Mode::Dial { input, purpose } => {
            let prompt = match purpose {
                DialPurpose::Transfer => look.cat.get("help.transfer"),
                DialPurpose::Consult => look.cat.get("help.consult"),
                DialPurpose::Call => look.cat.get("dial.prompt"),
            };
            Line::from(vec![
                Span::styled(prompt, t.style("help.key")),
                Span::styled(format!("{}▏", super::text::clean(input)), t.style("input")),
            ])
        }
        Mode::Choose(kind) => {
            let (prompt, list) = match kind {
                ChoiceKind::NotReadyReason => (look.cat.get("choose.not_ready"), &app.not_ready_reasons),
                ChoiceKind::WrapupCode => (look.cat.get("choose.wrapup"), &app.wrapup_codes),
            };
            let mut spans = vec![Span::styled(prompt.to_owned(), t.style("help.key"))];
            for (i, item) in list.iter().enumerate() {
                spans.push(Span::styled(format!(" {} ", i + 1), t.style("help.key")));
                spans.push(Span::styled(format!("{item} "), t.style("ui.dim")));
            }
            spans.push(Span::styled(" esc ", t.style("help.key")));
            Line::from(spans)
        }
        Mode::Prompt { kind, input } => {
            let prompt = match kind {
                super::state::PromptKind::Filter => look.cat.get("history.filter_prompt"),
                super::state::PromptKind::Date => look.cat.get("history.date_prompt"),
            };
            Line::from(vec![
                Span::styled(prompt, t.style("help.key")),
                Span::styled(format!("{}▏", super::text::clean(input)), t.style("input")),
            ])
        }
        _ => {
            // The main keys, as mapped, with their help texts.
            let k = |a: Action| app.keys.keys_of(a).first().cloned().unwrap_or_default();
            let mut spans = Vec::new();
            // With two calls up, the keys that work across them.
            let consulting = app.calls.iter().any(|c| c.consult_for.is_some());
            let quit_help = if app.attached { "help.detach" } else { "help.quit" };
            let keys: &[(Action, &str)] = if consulting {
                &[
                    (Action::Complete, "help.complete"),
                    (Action::Swap, "help.swap"),
                    (Action::CancelConsult, "help.cancel_consult"),
                    (Action::Conference, "help.conference"),
                ]
            } else if app.calls.len() >= 2 {
                &[
                    (Action::Answer, "help.answer"),
                    (Action::Swap, "help.swap"),
                    (Action::Conference, "help.conference"),
                    (Action::Hangup, "help.hangup"),
                    (Action::Help, "help.help"),
                ]
            } else {
                &[
                    (Action::Help, "help.help"),
                    (Action::Dial, "help.dial"),
                    (Action::Answer, "help.answer"),
                    (Action::Hangup, "help.hangup"),
                    (Action::Settings, "help.settings"),
                    (Action::Quit, quit_help),
                ]
            };
            for &(a, help) in keys {
                spans.push(Span::styled(format!(" {} ", k(a)), t.style("help.key")));
                spans.push(Span::styled(
                    format!("{} ", look.cat.get(help)),
                    t.style("ui.dim"),
                ));
            }
            Line::from(spans)
        }
    };
    f.render_widget(Lines::new(line), area);
}

/// The popup's share of the screen (POP-1).
fn popup_rect(area: Rect, size: PopupSize) -> Rect {
    let (pw, ph, minw, minh) = match size {
        PopupSize::Small => (40, 40, 36, 8),
        PopupSize::Medium => (60, 60, 44, 11),
        PopupSize::Large => (80, 80, 50, 14),
    };
    let w = (area.width * pw / 100).max(minw).min(area.width);
    let h = (area.height * ph / 100).max(minh).min(area.height);
    centered(area, w, h)
}

pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_popup(f: &mut Frame, area: Rect, app: &App, look: &Look) -> Drawn {
    let Some(p) = app.popup.as_ref() else {
        return Drawn::default();
    };
    let Some(c) = app.call(&p.call) else {
        return Drawn::default();
    };
    let t = look.theme;
    let cat = look.cat;
    // Inside the list's frame, so both frames stay whole.
    let inner = Rect {
        x: area.x + 1,
        y: area.y + 1,
        width: area.width.saturating_sub(2),
        height: area.height.saturating_sub(2),
    };
    let r = popup_rect(inner, app.popup_size);
    // A double-width character just left of the popup would cover its left border: blank it.
    if r.x > area.x {
        let buf = f.buffer_mut();
        for y in r.y..r.y + r.height {
            if let Some(cell) = buf.cell_mut((r.x - 1, y))
                && width(cell.symbol()) > 1
            {
                cell.set_symbol(" ");
            }
        }
    }
    let labels = [
        "popup.number",
        "popup.name",
        "popup.called",
        "popup.company",
        "popup.crm_name",
        "popup.ext_id",
    ];
    let label_w = labels
        .iter()
        .map(|k| width(cat.get(k)))
        .max()
        .unwrap_or(12)
        .min(r.width as usize / 2);
    let value_w = (r.width as usize).saturating_sub(label_w + 4);
    let field = |label: &str, value: &str, style: Style| -> Line<'static> {
        Line::from(vec![
            Span::styled(pad_right(label, label_w), t.style("popup.label")),
            Span::raw(" "),
            Span::styled(truncate(value, value_w), style),
        ])
    };
    let mut lines = vec![
        field(
            cat.get("popup.number"),
            app.shown_number(c),
            t.style("popup.value"),
        ),
        field(cat.get("popup.name"), &c.telname, t.style("popup.value")),
    ];
    if app.popup_size != PopupSize::Small {
        lines.push(field(cat.get("popup.called"), &c.called, t.style("popup.value")));
    }
    lines.push(Line::raw(""));
    if c.crm.searching {
        lines.push(Line::styled(
            cat.get("popup.searching").to_owned(),
            t.style("popup.searching"),
        ));
    } else if let Some(e) = &c.crm.error {
        // Why the search failed, on as many lines as the popup has free (at least one): the
        // cause is what the agent needs ("TLS: invalid peer certificate", "timeout after 5 s").
        let msg = cat.fmt("popup.search_failed", &[("error", e)]);
        let inner_h = r.height.saturating_sub(2) as usize;
        let free = inner_h.saturating_sub(lines.len() + 1 + usize::from(c.crm.link.is_some()));
        for l in wrap(&msg, r.width.saturating_sub(4) as usize, free.max(1)) {
            lines.push(Line::styled(l, t.style("popup.error")));
        }
    } else {
        lines.push(field(
            cat.get("popup.company"),
            &c.crm.company,
            t.style("popup.value"),
        ));
        lines.push(field(
            cat.get("popup.crm_name"),
            &c.crm.name,
            t.style("popup.value"),
        ));
        if app.popup_size == PopupSize::Large {
            lines.push(field(
                cat.get("popup.ext_id"),
                &c.crm.ext_id,
                t.style("popup.value"),
            ));
        }
    }
    let mut link_spot = None;
    if let Some(link) = &c.crm.link {
        let text = truncate(
            &cat.fmt("popup.link", &[("url", link)]),
            r.width.saturating_sub(4) as usize,
        );
        link_spot = Some((lines.len(), text, link.clone()));
        lines.push(Line::styled(
            truncate(
                &cat.fmt("popup.link", &[("url", link)]),
                r.width.saturating_sub(4) as usize,
            ),
            t.style("ui.dim"),
        ));
    }
    // Buttons (POP-2) and the countdown (POP-3).
    let mut bottom: Vec<Span> = Vec::new();
    let mut button_spans: Vec<(usize, Action)> = Vec::new();
    if app.popup_buttons && c.state == RowState::Ringing {
        let k = |a: Action| app.keys.keys_of(a).first().cloned().unwrap_or_default();
        button_spans.push((bottom.len(), Action::Answer));
        bottom.push(Span::styled(
            format!("[{}] {}", k(Action::Answer), cat.get("popup.answer")),
            t.style("button.focused"),
        ));
        bottom.push(Span::raw("  "));
        button_spans.push((bottom.len(), Action::Hangup));
        bottom.push(Span::styled(
            format!("[{}] {}", k(Action::Hangup), cat.get("popup.hangup")),
            t.style("button"),
        ));
        bottom.push(Span::raw("  "));
        button_spans.push((bottom.len(), Action::Activate));
        bottom.push(Span::styled(
            format!("[Enter] {}", cat.get("popup.open")),
            t.style("button"),
        ));
    }
    if app.popup_seconds > 0 {
        let left = u64::from(app.popup_seconds).saturating_sub(p.shown.elapsed().as_secs());
        bottom.push(Span::raw("  "));
        bottom.push(Span::styled(
            cat.fmt("popup.closes", &[("secs", &left.to_string())]),
            t.style("ui.dim"),
        ));
    }
    let inner_h = r.height.saturating_sub(2) as usize;
    while lines.len() + 1 < inner_h {
        lines.push(Line::raw(""));
    }
    lines.truncate(inner_h.saturating_sub(1));
    // Where each button lands, for mouse clicks.
    let bottom_y = r.y + 1 + lines.len() as u16;
    let mut buttons = Vec::new();
    let mut x = r.x + 1;
    for (i, span) in bottom.iter().enumerate() {
        let w = width(&span.content) as u16;
        if let Some((_, a)) = button_spans.iter().find(|(j, _)| *j == i) {
            buttons.push((
                Rect {
                    x,
                    y: bottom_y,
                    width: w,
                    height: 1,
                },
                *a,
            ));
        }
        x = x.saturating_add(w);
    }
    lines.push(Line::from(bottom));
    let shown_lines = lines.len().saturating_sub(1);
    f.render_widget(
        Lines::new(lines).clear().boxed(
            t.style("popup.border"),
            Span::styled(
                match c.srtp {
                    Some(_) => format!(" {LOCK}{} ", cat.get("popup.title")),
                    None => format!(" {} ", cat.get("popup.title")),
                },
                t.style("popup.title"),
            ),
        ),
        r,
    );
    let link = link_spot
        .filter(|(i, ..)| *i < shown_lines)
        .map(|(i, text, url)| LinkSpot {
            x: r.x + 1,
            y: r.y + 1 + i as u16,
            text,
            url,
        });
    Drawn { link, buttons }
}

/// The colleagues' lamps: name, number and state, the selected row marked, the keys below.
fn draw_blf(f: &mut Frame, area: Rect, app: &App, look: &Look, selected: usize) {
    let t = look.theme;
    let w = 50.min(area.width);
    let inner = w.saturating_sub(2) as usize;
    let mut lines = Vec::new();
    for (i, r) in app.blf.iter().enumerate() {
        let (state, style) = match r.state.as_str() {
            "idle" => (look.cat.get("blf.idle"), t.style("status.ok")),
            "ringing" => (look.cat.get("blf.ringing"), t.style("status.warn")),
            "busy" => (look.cat.get("blf.busy"), t.style("status.error")),
            _ => (look.cat.get("blf.unknown"), t.style("ui.dim")),
        };
        let mark = if i == selected { "▶ " } else { "  " };
        let name_w = inner.saturating_sub(2 + 12 + 1 + 10);
        lines.push(Line::from(vec![
            Span::styled(mark.to_owned(), t.style("help.key")),
            Span::styled(pad_right(&r.name, name_w), t.style("ui.text")),
            Span::styled(pad_right(&r.number, 12), t.style("ui.text")),
            Span::raw(" "),
            Span::styled(pad_right(state, 10), style),
        ]));
    }
    lines.push(Line::styled(
        truncate(look.cat.get("blf.keys"), inner),
        t.style("ui.dim"),
    ));
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = centered(area, w, h);
    f.render_widget(
        bordered(Lines::new(lines).clear(), look, look.cat.get("blf.title")),
        r,
    );
}

fn draw_help(f: &mut Frame, area: Rect, app: &App, look: &Look) {
    let t = look.theme;
    let entries: Vec<(String, &str)> = Action::ALL
        .iter()
        .map(|(action, _, _, help_key)| {
            // Attached to the daemon, `q` leaves the calls running.
            let help_key = if *action == Action::Quit && app.attached {
                "help.detach"
            } else {
                help_key
            };
            (app.keys.keys_of(*action).join(" "), look.cat.get(help_key))
        })
        .collect();
    // One column when it fits the screen's height, else two side by side.
    let cols = if entries.len() as u16 + 2 <= area.height {
        1
    } else {
        2
    };
    let rows = entries.len().div_ceil(cols);
    // Two columns cover the call list's inside exactly (its sides show on both ends, and no
    // double-width character of the list is cut by the overlay's edge).
    let w = if cols == 1 {
        56.min(area.width)
    } else {
        100.min(area.width.saturating_sub(2))
    };
    let col_w = (w.saturating_sub(2) as usize) / cols;
    let key_w = if cols == 1 { 12 } else { 6 }.min(col_w / 3);
    let mut lines = Vec::new();
    for r in 0..rows {
        let mut spans = Vec::new();
        for c in 0..cols {
            if let Some((keys, help)) = entries.get(c * rows + r) {
                spans.push(Span::styled(pad_right(keys, key_w), t.style("help.key")));
                spans.push(Span::raw(" "));
                spans.push(Span::styled(
                    pad_right(help, col_w.saturating_sub(key_w + 1)),
                    t.style("ui.text"),
                ));
            }
        }
        lines.push(Line::from(spans));
    }
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = centered(area, w, h);
    f.render_widget(
        bordered(Lines::new(lines).clear(), look, look.cat.get("help.title")),
        r,
    );
}
