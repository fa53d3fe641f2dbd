//! [`Lines`]: the screens' text areas (call list, log, popup, status bar) drawn as ratatui's
//! `Paragraph` draws unwrapped, unscrolled text, cell for cell the same, in fewer passes over
//! the screen. A `Paragraph` styles its whole area three times (its style, its block's, its
//! style again inside the block) through a bounds-checked index per cell, whatever the styles
//! are: two thirds of a frame's work (docs/decisions.md D6). Here a default style costs
//! nothing, and a style is applied row by row.

use ratatui::buffer::{Buffer, CellWidth};
use ratatui::layout::{Alignment, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, StyledGrapheme, Text};
use ratatui::widgets::{Block, Widget};

/// Lines of text, cut at the area's width, with an optional base style and block.
pub struct Lines<'a> {
    text: Text<'a>,
    style: Style,
    block: Option<Block<'a>>,
}

impl<'a> Lines<'a> {
    pub fn new<T: Into<Text<'a>>>(text: T) -> Self {
        Self {
            text: text.into(),
            style: Style::default(),
            block: None,
        }
    }

    pub fn style(mut self, style: Style) -> Self {
        self.style = style;
        self
    }

    pub fn block(mut self, block: Block<'a>) -> Self {
        self.block = Some(block);
        self
    }
}

/// Patches `style` onto every cell of `area` (already inside the buffer), a row at a time.
fn fill(buf: &mut Buffer, area: Rect, style: Style) {
    if style == Style::default() || area.is_empty() {
        return;
    }
    for y in area.top()..area.bottom() {
        let start = buf.index_of(area.left(), y);
        for cell in &mut buf.content[start..start + usize::from(area.width)] {
            cell.set_style(style);
        }
    }
}

impl Widget for Lines<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let area = area.intersection(buf.area);
        fill(buf, area, self.style);
        let inner = match &self.block {
            Some(b) => {
                b.render(area, buf);
                b.inner(area)
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
    use ratatui::widgets::{Borders, Paragraph};

    /// Both widgets into buffers of the same size; the buffers must be equal.
    fn same(lines: Vec<Line<'static>>, style: Style, block: Option<Block<'static>>, area: Rect) {
        let full = Rect::new(0, 0, 30, 8);
        let mut a = Buffer::empty(full);
        let mut b = Buffer::empty(full);
        // Something under the area, as a screen has.
        for buf in [&mut a, &mut b] {
            buf.set_string(0, 0, "x".repeat(30 * 8), Style::default().fg(Color::Red));
        }
        let mut p = Paragraph::new(lines.clone()).style(style);
        let mut l = Lines::new(lines).style(style);
        if let Some(bl) = block {
            p = p.block(bl.clone());
            l = l.block(bl);
        }
        p.render(area, &mut a);
        l.render(area, &mut b);
        assert_eq!(a, b);
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
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(Style::default().fg(Color::Blue))
            .title("title");
        for area in [
            Rect::new(0, 0, 30, 8),
            Rect::new(3, 1, 17, 6),
            Rect::new(28, 7, 10, 10),
        ] {
            for style in [
                Style::default(),
                Style::default().bg(Color::Black).fg(Color::White),
            ] {
                same(text.clone(), style, None, area);
                same(text.clone(), style, Some(block.clone()), area);
            }
        }
    }
}
