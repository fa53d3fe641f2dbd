//! Where the settings screen's text goes, in display columns (a Japanese character takes two):
//! the label column as wide as the pane's longest label, the accesses table's columns, the
//! strip of pane tabs that keeps the current one in view, and the tail of a line being typed.
//! Labels are cut only when the terminal is too narrow to show them whole next to a value.

use super::super::text::{truncate, width};

/// Columns a value keeps next to the labels before any label is cut.
pub(super) const MIN_VALUE: usize = 16;
/// Blank columns between two columns of the table.
pub(super) const GAP: usize = 2;
/// Columns the table's template and captures keep together before the name and method
/// columns are cut.
const MIN_REST: usize = 24;

/// The label column's width for `labels` in `inner` columns: the longest label, unless that
/// leaves the value less than [`MIN_VALUE`] (then as much as is left, labels cut).
pub(super) fn label_width<'a>(labels: impl IntoIterator<Item = &'a str>, inner: usize) -> usize {
    let longest = labels.into_iter().map(width).max().unwrap_or(0);
    longest.min(inner.saturating_sub(1 + MIN_VALUE))
}

/// The widths of the accesses table's columns in `inner` columns: name, method, template,
/// captures. `name` and `method` are the widest entries of the first two columns (headers
/// included); they are narrowed (name first) only when template and captures would get less
/// than [`MIN_REST`] together. Template gets three fifths of the rest.
pub(super) fn table_widths(name: usize, method: usize, inner: usize) -> [usize; 4] {
    let fixed = 3 * GAP;
    let mut over = (name + method + fixed + MIN_REST).saturating_sub(inner);
    let cut_name = over.min(name.saturating_sub(4));
    over -= cut_name;
    let cut_method = over.min(method.saturating_sub(4));
    let (name, method) = (name - cut_name, method - cut_method);
    let rest = inner.saturating_sub(name + method + fixed);
    let template = rest * 3 / 5;
    [name, method, template, rest - template]
}

/// Which tabs fit in `avail` columns (each `widths[i]` wide, one blank after each), keeping
/// `current` in view: the first shown, one past the last shown. When some are left out, two
/// columns are kept for the `‹ ` / ` ›` marks.
pub(super) fn visible_tabs(widths: &[usize], current: usize, avail: usize) -> (usize, usize) {
    let total: usize = widths.iter().map(|w| w + 1).sum();
    if total <= avail || widths.is_empty() {
        return (0, widths.len());
    }
    let current = current.min(widths.len() - 1);
    let room = avail.saturating_sub(4);
    let span = |a: usize, b: usize| widths[a..b].iter().map(|w| w + 1).sum::<usize>();
    let mut first = 0;
    while first < current && span(first, current + 1) > room {
        first += 1;
    }
    let mut end = current + 1;
    while end < widths.len() && span(first, end + 1) <= room {
        end += 1;
    }
    (first, end)
}

/// The end of `s` that fits in `max` columns, with `…` in front when the start is left out:
/// a line being typed shows where the typing is.
pub(super) fn tail(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let reversed: String = s.chars().rev().collect();
    // `truncate` keeps whole characters; cut the reversed text and turn it back.
    let kept = truncate(&reversed, max);
    let kept = kept.trim_end_matches('…');
    let mut out = String::from("…");
    out.extend(kept.chars().rev());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_whole_while_the_terminal_has_room() {
        let labels = ["Authentication access", "Display name for anonymous calls"];
        assert_eq!(label_width(labels, 98), 32);
        assert_eq!(label_width(labels, 78), 32);
        // Too narrow: the value keeps its minimum, the labels give way.
        assert_eq!(label_width(labels, 40), 40 - 1 - MIN_VALUE);
        assert_eq!(label_width(["電話番号をクリップボードにコピー"], 118), 32);
        assert_eq!(label_width([], 80), 0);
        assert_eq!(label_width(labels, 3), 0);
    }

    #[test]
    fn the_table_narrows_its_names_only_when_it_must() {
        // 80 columns, English: names and methods whole.
        assert_eq!(table_widths(28, 19, 78), [28, 19, 15, 10]);
        assert_eq!(table_widths(28, 19, 118), [28, 19, 39, 26]);
        // Too narrow: the names give way first, then the methods, never below 4.
        let w = table_widths(28, 19, 60);
        assert_eq!(w[0], 28 - (28 + 19 + 6 + MIN_REST - 60));
        assert_eq!(w[1], 19);
        let w = table_widths(28, 19, 20);
        assert_eq!((w[0], w[1]), (4, 4));
        assert!(w.iter().sum::<usize>() + 3 * GAP >= 20);
    }

    #[test]
    fn the_current_tab_is_always_shown() {
        let widths = [7, 16, 7, 20, 9, 7, 12];
        assert_eq!(visible_tabs(&widths, 0, 120), (0, 7));
        for current in 0..widths.len() {
            let (first, end) = visible_tabs(&widths, current, 60);
            assert!(first <= current && current < end, "{current}: {first}..{end}");
            let used: usize = widths[first..end].iter().map(|w| w + 1).sum();
            assert!(used + 4 <= 60, "{current}: {used}");
        }
        assert_eq!(visible_tabs(&widths, 6, 60).1, 7);
    }

    #[test]
    fn the_tail_of_typed_text_keeps_whole_characters() {
        assert_eq!(tail("abc", 5), "abc");
        assert_eq!(tail("abcdef", 4), "…def");
        assert_eq!(tail("日本語です", 6), "…です");
        assert_eq!(tail("日本語です", 5), "…です");
        assert_eq!(tail("abc", 0), "");
        for max in 1..12 {
            assert!(width(&tail("検索に失敗しました", max)) <= max, "{max}");
        }
    }
}
