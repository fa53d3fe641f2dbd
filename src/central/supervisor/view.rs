//! Draws the supervisor's board: a status line on top (the connection, the keys), as in the
//! phone's own screen, then a box with one line per agent (status and for how long, the
//! current call, today's counts). From 100 columns each count has its column; narrower,
//! offered/answered/missed share one and the average handle time is left out, so the
//! current call keeps its room at 80. Every text from the database is cleaned
//! (`ui::text::clean`) before it is drawn; labels come from the catalog.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use unicode_width::UnicodeWidthStr;

use super::{Agent, Board, Link};
use crate::central::report::duration;
use crate::ui::text::clean;
use crate::ui::view::Look;

/// From this width, each count has a column of its own.
pub const WIDE: u16 = 100;

/// The status's label and style slot.
fn status(agent: &Agent, look: &Look) -> (String, &'static str) {
    let (key, slot) = match agent.status.as_deref() {
        Some("ready") => ("status.ready", "status.ok"),
        Some("after_call") => ("status.after_call", "call.held"),
        Some("not_ready") => ("status.not_ready", "status.warn"),
        Some(other) => return (clean(other), "ui.text"),
        None => ("sup.status.unknown", "ui.dim"),
    };
    let label = look.cat.get(key).to_owned();
    if agent.reason.is_empty() {
        (label, slot)
    } else {
        (format!("{label} ({})", clean(&agent.reason)), slot)
    }
}

/// The current call: its time (talk time, or ringing time), direction, number and name.
fn call(board: &Board, agent: &Agent, now: f64, look: &Look) -> (String, &'static str) {
    let Some(c) = &agent.call else {
        return (String::new(), "ui.text");
    };
    let dir = match c.direction.as_str() {
        "in" => look.cat.get("dir.in").to_owned(),
        "out" => look.cat.get("dir.out").to_owned(),
        other => clean(other),
    };
    let mut parts = Vec::new();
    let slot = match c.answer_at {
        Some(at) => {
            parts.push(duration(Some(board.elapsed(at, now) as f64)));
            "call.active"
        }
        None => {
            parts.push(duration(Some(board.elapsed(c.ring_at, now) as f64)));
            parts.push(look.cat.get("state.ringing").to_owned());
            "call.ringing"
        }
    };
    parts.push(dir);
    for s in [&c.tel, &c.name] {
        if !s.is_empty() {
            parts.push(clean(s));
        }
    }
    (parts.join(" "), slot)
}

fn local_time(epoch: f64) -> String {
    chrono::DateTime::from_timestamp(epoch as i64, 0)
        .map(|t| t.with_timezone(&chrono::Local).format("%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Draws the board at local time `now` (seconds since the epoch).
pub fn draw(f: &mut Frame, board: &Board, now: f64, look: &Look) {
    let [status_line, main] = Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(f.area());
    let title = format!(
        " {} · {} ",
        look.cat.get("sup.title"),
        look.cat
            .fmt("sup.count", &[("n", &board.agents.len().to_string())])
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(look.theme.style("ui.border"))
        .title(Span::styled(title, look.theme.style("ui.title")));
    if board.agents.is_empty() {
        let p = Paragraph::new(Span::styled(
            look.cat.get("sup.empty"),
            look.theme.style("ui.dim"),
        ))
        .block(block);
        f.render_widget(p, main);
    } else {
        table(f, board, now, look, block, main);
    }
    footer(f, board, now, look, status_line);
}

fn table(f: &mut Frame, board: &Board, now: f64, look: &Look, block: Block, area: Rect) {
    let wide = area.width >= WIDE;
    let cat = look.cat;
    let mut heads = vec![
        cat.get("sup.col.agent"),
        cat.get("sup.col.status"),
        cat.get("sup.col.for"),
        cat.get("sup.col.call"),
    ];
    if wide {
        heads.extend([
            cat.get("sup.col.offered"),
            cat.get("sup.col.answered"),
            cat.get("sup.col.missed"),
            cat.get("sup.col.handle"),
        ]);
    } else {
        heads.push(cat.get("sup.col.counts"));
    }
    let rows: Vec<(Vec<(String, &'static str)>, &Agent)> = board
        .agents
        .iter()
        .map(|a| {
            let t = &a.today;
            let mut cells = vec![
                (clean(&a.id), "ui.text"),
                status(a, look),
                (
                    a.status_at
                        .map_or(String::new(), |at| duration(Some(board.elapsed(at, now) as f64))),
                    "ui.text",
                ),
                call(board, a, now, look),
            ];
            if wide {
                cells.extend([
                    (t.offered.to_string(), "ui.text"),
                    (t.answered.to_string(), "ui.text"),
                    (
                        t.missed.to_string(),
                        if t.missed > 0 { "status.warn" } else { "ui.text" },
                    ),
                    (duration(t.avg_handle_s), "ui.text"),
                ]);
            } else {
                cells.push((format!("{}/{}/{}", t.offered, t.answered, t.missed), "ui.text"));
            }
            (cells, a)
        })
        .collect();
    // Columns as wide as their widest cell, the agent and status capped so that the call
    // keeps the rest.
    let caps: &[u16] = if wide {
        &[24, 24, 8, u16::MAX, 16, 16, 16, 16]
    } else {
        &[14, 16, 7, u16::MAX, 20]
    };
    let widths: Vec<Constraint> = caps
        .iter()
        .enumerate()
        .map(|(i, cap)| {
            if *cap == u16::MAX {
                return Constraint::Fill(1);
            }
            let w = rows
                .iter()
                .map(|(c, _)| c[i].0.width())
                .chain([heads[i].width()])
                .max()
                .unwrap_or(0);
            Constraint::Length(u16::try_from(w).unwrap_or(*cap).min(*cap))
        })
        .collect();
    let numeric = |i: usize| i >= 4;
    let header = Row::new(heads.iter().enumerate().map(|(i, h)| {
        let line = Line::from(*h);
        Cell::from(if numeric(i) { line.right_aligned() } else { line })
    }))
    .style(look.theme.style("list.header"));
    let body: Vec<Row> = rows
        .into_iter()
        .map(|(cells, _)| {
            Row::new(cells.into_iter().enumerate().map(|(i, (text, slot))| {
                let line = Line::styled(text, look.theme.style(slot));
                Cell::from(if numeric(i) { line.right_aligned() } else { line })
            }))
        })
        .collect();
    let t = Table::new(body, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .row_highlight_style(look.theme.style("list.selected"));
    let mut state = TableState::default().with_selected(Some(board.selected));
    f.render_stateful_widget(t, area, &mut state);
}

fn footer(f: &mut Frame, board: &Board, now: f64, look: &Look, area: Rect) {
    let (text, slot) = match &board.link {
        Link::Connecting => (
            look.cat.fmt("sup.connecting", &[("url", &clean(&board.shown))]),
            "status.warn",
        ),
        Link::Live { updated } => (
            look.cat.fmt("sup.live", &[("time", &local_time(*updated))]),
            "status.ok",
        ),
        Link::Lost { error, at, retry_in } => {
            let left = (retry_in.as_secs_f64() - (now - at)).max(0.0).ceil() as u64;
            (
                look.cat
                    .fmt("sup.lost", &[("error", &clean(error)), ("n", &left.to_string())]),
                "status.error",
            )
        }
    };
    let text = format!(" {text}");
    // The keys make room for a message that needs it.
    let keys = look.cat.get("sup.keys");
    let keys = if text.width() + keys.width() + 2 > usize::from(area.width) {
        ""
    } else {
        keys
    };
    let [left, right] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(u16::try_from(keys.width() + 1).unwrap_or(0)),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(Span::styled(text, look.theme.style(slot))).style(look.theme.style("status.bar")),
        left,
    );
    f.render_widget(
        Paragraph::new(Span::styled(keys, look.theme.style("ui.dim")))
            .style(look.theme.style("status.bar"))
            .right_aligned(),
        right,
    );
}
