//! [`Lines`]: the screens' text areas (call list, log, popup, status bar) drawn as ratatui's
//! `Paragraph` draws unwrapped, unscrolled text, cell for cell the same, in fewer passes over
//! the screen. A `Paragraph` styles its whole area three times (its style, its block's, its
//! style again inside the block) through a bounds-checked index per cell, whatever the styles
//! are, and `Clear` resets it once more the same way: most of a frame's work (docs/decisions.md
//! D6). Here a default style costs nothing, a style or a clear goes row by row, and the box
//! (`Block` with all borders and a title, drawn as `Block` draws it) touches only its edges.

use ratatui::buffer::{Buffer, CellWidth};
use ratatui::layout::{Alignment, Rect};
use ratatui::style::Style;
use ratatui::symbols::line;
use ratatui::text::{Line, StyledGrapheme, Text};
use ratatui::widgets::Widget;

/// Lines of text, cut at the area's width, with an optional base style, box and clear.
pub struct Lines<'a> {
    text: Text<'a>,
    style: Style,
    /// A box round the text: its border style and title.
    boxed: Option<(Style, Line<'a>)>,
    /// The area's cells reset first (ratatui's `Clear`).
    clear: bool,
}

impl<'a> Lines<'a> {
    pub fn new<T: Into<Text<'a>>>(text: T) -> Self {
        Self {
            text: text.into(),
            style: Style::default(),
            boxed: None,
            clear: false,
        }
    }

    pub fn style(mut self, style: Style) -> Self {
        self.style = style;
        self
    }

    /// A box of plain lines in `border` style with `title` at the top left (a `Block` with
    /// `Borders::ALL`, `border_style` and `title`).
    pub fn boxed(mut self, border: Style, title: impl Into<Line<'a>>) -> Self {
        self.boxed = Some((border, title.into()));
        self
    }

    /// Resets the area first, as `Clear` does under a popup.
    pub fn clear(mut self) -> Self {
        self.clear = true;
        self
    }
}

/// The cells of row `y` from `area.left()` for `area.width`.
fn row(buf: &mut Buffer, area: Rect, y: u16) -> &mut [ratatui::buffer::Cell] {
    let start = buf.index_of(area.left(), y);
    &mut buf.content[start..start + usize::from(area.width)]
}

/// The box's edges and title, as `Block` draws them: the sides, then the corners, each cell
/// given its symbol and patched with `border`; the title cut to the space between the corners.
fn draw_box(buf: &mut Buffer, area: Rect, border: Style, title: &Line<'_>) {
    let (left, top) = (area.left(), area.top());
    let (right, bottom) = (area.right() - 1, area.bottom() - 1);
    for y in top..=bottom {
        buf[(left, y)].set_symbol(line::VERTICAL).set_style(border);
    }
    for c in row(buf, Rect::new(left, top, area.width, 1), top) {
        c.set_symbol(line::HORIZONTAL).set_style(border);
    }
    for y in top..=bottom {
        buf[(right, y)].set_symbol(line::VERTICAL).set_style(border);
    }
    for c in row(buf, Rect::new(left, bottom, area.width, 1), bottom) {
        c.set_symbol(line::HORIZONTAL).set_style(border);
    }
    for (x, y, s) in [
        (right, bottom, line::BOTTOM_RIGHT),
        (right, top, line::TOP_RIGHT),
        (left, bottom, line::BOTTOM_LEFT),
        (left, top, line::TOP_LEFT),
    ] {
        buf[(x, y)].set_symbol(s).set_style(border);
    }
    let room = area.width.saturating_sub(2);
    let width = u16::try_from(title.width()).unwrap_or(u16::MAX).min(room);
    if width > 0 {
        title.render(Rect::new(left + 1, top, width, 1), buf);
    }
}

/// Patches `style` onto every cell of `area` (already inside the buffer), a row at a time.
fn fill(buf: &mut Buffer, area: Rect, style: Style) {
    if style == Style::default() || area.is_empty() {
        return;
    }
    for y in area.top()..area.bottom() {
        for cell in row(buf, area, y) {
            cell.set_style(style);
        }
    }
}

impl Widget for Lines<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let area = area.intersection(buf.area);
        if area.is_empty() {
            return;
        }
        if self.clear {
            for y in area.top()..area.bottom() {
                for cell in row(buf, area, y) {
                    cell.reset();
                }
            }
        }
        fill(buf, area, self.style);
        let inner = match &self.boxed {
            Some((border, title)) => {
                draw_box(buf, area, *border, title);
                Rect::new(
                    area.x + 1,
                    area.y + 1,
                    area.width.saturating_sub(2),
                    area.height.saturating_sub(2),
                )
            }
            None => area,
        };
        if inner.is_empty() {
            return;
        }
        fill(buf, inner, self.style);
        let base = self.text.style;
        let mut row: Vec<StyledGrapheme<'_>> = Vec::new();
        for (y, line) in (inner.top()..inner.bottom()).zip(self.text.lines.iter()) {
            cut(line, base, inner.width, &mut row);
            let width: u16 = row.iter().map(|g| g.symbol.cell_width()).sum();
            let mut x = match line.alignment.unwrap_or(Alignment::Left) {
                Alignment::Center => (inner.width / 2).saturating_sub(width / 2),
                Alignment::Right => inner.width.saturating_sub(width),
                Alignment::Left => 0,
            };
            for g in &row {
                let w = g.symbol.cell_width();
                if w == 0 {
                    continue;
                }
                let symbol = if g.symbol.is_empty() { " " } else { g.symbol };
                buf[(inner.left() + x, y)].set_symbol(symbol).set_style(g.style);
                x += w;
            }
        }
    }
}

/// The graphemes of `line` that fit in `max` cells, as the paragraph's truncation keeps them:
/// one wider than the whole area skipped, the line cut at the first that does not fit.
fn cut<'a>(line: &'a Line<'a>, base: Style, max: u16, out: &mut Vec<StyledGrapheme<'a>>) {
    out.clear();
    let mut used = 0u16;
    for g in line.styled_graphemes(base) {
        let w = g.symbol.cell_width();
        if w > max {
            continue;
        }
        if used + w > max {
            break;
        }
        used += w;
        out.push(g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::style::{Color, Modifier};
    use ratatui::text::Span;
    use ratatui::widgets::{Block, Borders, Clear, Paragraph};

    /// Both widgets into buffers of the same size; the buffers must be equal. `boxed`: a
    /// border style and title; `clear`: `Clear` first.
    fn same(
        lines: Vec<Line<'static>>,
        style: Style,
        boxed: Option<(Style, Span<'static>)>,
        clear: bool,
        area: Rect,
    ) {
        let full = Rect::new(0, 0, 30, 8);
        let mut a = Buffer::empty(full);
        let mut b = Buffer::empty(full);
        // Something under the area, as a screen has.
        for buf in [&mut a, &mut b] {
            buf.set_string(0, 0, "x".repeat(30 * 8), Style::default().fg(Color::Red));
        }
        let mut p = Paragraph::new(lines.clone()).style(style);
        let mut l = Lines::new(lines).style(style);
        if let Some((border, title)) = boxed {
            p = p.block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(border)
                    .title(title.clone()),
            );
            l = l.boxed(border, title);
        }
        if clear {
            Clear.render(area, &mut a);
            l = l.clear();
        }
        p.render(area, &mut a);
        l.render(area, &mut b);
        assert_eq!(a, b, "area {area:?}");
    }

    #[test]
    fn draws_what_a_paragraph_draws() {
        let text = vec![
            Line::from(vec![
                Span::styled("山田 太郎", Style::default().fg(Color::Yellow)),
                Span::raw(" 0311112222 a long line that is cut"),
            ]),
            Line::styled("second", Style::default().add_modifier(Modifier::BOLD)),
            Line::from("right").alignment(Alignment::Right),
            Line::from("centre").alignment(Alignment::Center),
            Line::from("全角全角全角全角全角全角全角全角全角"),
            Line::from(""),
            Line::from("more lines than rows"),
            Line::from("and more"),
            Line::from("and more"),
        ];
        let titles = [
            Span::styled(
                " 着信 ",
                Style::default().fg(Color::Green).add_modifier(Modifier::BOLD),
            ),
            Span::raw(""),
            Span::raw("a title longer than any of the areas here"),
        ];
        let areas = [
            Rect::new(0, 0, 30, 8),
            Rect::new(3, 1, 17, 6),
            Rect::new(28, 7, 10, 10),
            Rect::new(5, 2, 1, 1),
            Rect::new(5, 2, 2, 2),
            Rect::new(5, 2, 3, 3),
        ];
        let border = Style::default().fg(Color::Blue);
        for area in areas {
            for style in [
                Style::default(),
                Style::default().bg(Color::Black).fg(Color::White),
            ] {
                for clear in [false, true] {
                    same(text.clone(), style, None, clear, area);
                    for t in &titles {
                        same(text.clone(), style, Some((border, t.clone())), clear, area);
                    }
                }
            }
        }
    }
}
