//! Terminal-safe text (SAF-2) and display-width helpers.
//!
//! Everything the UI draws that a caller controls — SIP display names and
//! numbers, CRM values, server error strings — goes through [`clean`] first,
//! so that no C0/C1 control character and no escape sequence ever reaches the
//! terminal, bidi overrides cannot visually reorder text ("Your Bank"
//! spoofing), and a flood of combining marks cannot bloat a cell.
//!
//! [`width`], [`truncate`] and [`pad_right`] measure and fit text in display
//! columns (East Asian wide characters count 2), never splitting a grapheme
//! cluster or leaving half of a wide character.

use std::fmt::Write as _;

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Maximum display width of a [`clean`]ed string, ellipsis included.
pub const CLEAN_MAX_WIDTH: usize = 256;

/// Maximum number of combining (zero-width) characters kept after one base
/// character; further ones are dropped.
const MAX_COMBINING: usize = 2;

/// The ellipsis appended when text is cut; one display column wide.
const ELLIPSIS: char = '…';

/// How many columns, counted character by character, [`clean`] reads before it leaves the
/// rest out. Larger than [`CLEAN_MAX_WIDTH`]: a string can be narrower than the sum of its
/// characters (an emoji with U+FE0E, a lam-alef ligature), and what is read is then cut to
/// the real width.
const CLEAN_SCAN_COLUMNS: usize = 4 * CLEAN_MAX_WIDTH;

/// Makes caller-controlled text safe to draw on one terminal line.
///
/// * C0 controls, DEL and C1 controls become visible escapes: `\n`, `\r`,
///   `\t`, `\e` (ESC), `\0`, `\xNN` (other C0 and DEL), `\u{NN}` (C1, e.g.
///   `\u{9b}` for the single-byte CSI).
/// * Bidi controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C),
///   zero-width / format characters (U+200B–U+200D, U+2060, U+FEFF) and a few
///   other invisible format characters (U+2028/U+2029 line and paragraph
///   separators, U+2061–U+2065, U+206A–U+206F, U+180E, U+FFF9–U+FFFB, tag
///   characters U+E0000–U+E007F) become `\u{XXXX}` escapes.
/// * A literal backslash is kept as is.
/// * At most two combining marks (any other zero-width character) are kept
///   per base character; a combining mark without a base (at the start or
///   right after an escape) is escaped as `\u{XXXX}`.
/// * The result is at most [`CLEAN_MAX_WIDTH`] columns wide; longer text is
///   cut and ends with `…`. Work stops early, so huge inputs are cheap.
pub fn clean(s: &str) -> String {
    let widened = widen_halfwidth_kana(s);
    let s = widened.as_ref();
    let mut out = String::new();
    let mut cols = 0usize;
    // Combining marks seen since the last base character; `None` when there
    // is no base to attach to.
    let mut combining: Option<usize> = None;
    let mut left_out = false;
    for c in s.chars() {
        if cols > CLEAN_SCAN_COLUMNS {
            left_out = true;
            break;
        }
        if let Some(esc) = escape(c) {
            cols += esc.len();
            out.push_str(&esc);
            combining = None;
            continue;
        }
        match c.width() {
            Some(0) | None => match combining {
                Some(n) if n < MAX_COMBINING => {
                    out.push(c);
                    combining = Some(n + 1);
                }
                Some(_) => {}
                None => {
                    let esc = unicode_escape(c);
                    cols += esc.len();
                    out.push_str(&esc);
                }
            },
            Some(w) => {
                cols += w;
                out.push(c);
                combining = Some(0);
            }
        }
    }
    if left_out {
        // Text was left out: say so even when what was read fits.
        out.push(ELLIPSIS);
    }
    if width(&out) > CLEAN_MAX_WIDTH {
        truncate(&out, CLEAN_MAX_WIDTH)
    } else {
        out
    }
}

/// The visible escape for a character that must not reach the terminal.
fn escape(c: char) -> Option<String> {
    let simple = match c {
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        '\u{1b}' => Some("\\e"),
        '\0' => Some("\\0"),
        _ => None,
    };
    if let Some(s) = simple {
        return Some(s.to_owned());
    }
    let cp = u32::from(c);
    if cp < 0x20 || cp == 0x7f {
        return Some(format!("\\x{cp:02x}"));
    }
    if (0x80..=0x9f).contains(&cp) || is_invisible_format(cp) {
        return Some(unicode_escape(c));
    }
    None
}

/// `\u{XXXX}` in lowercase hex, the same notation Rust uses.
fn unicode_escape(c: char) -> String {
    let mut s = String::with_capacity(10);
    let _ = write!(s, "\\u{{{:x}}}", u32::from(c));
    s
}

/// Bidi controls, zero-width and other invisible format characters.
fn is_invisible_format(cp: u32) -> bool {
    matches!(
        cp,
        0x061C          // ARABIC LETTER MARK
        | 0x180E        // MONGOLIAN VOWEL SEPARATOR
        | 0x200B..=0x200F // ZWSP, ZWNJ, ZWJ, LRM, RLM
        | 0x2028..=0x2029 // LINE / PARAGRAPH SEPARATOR
        | 0x202A..=0x202E // LRE, RLE, PDF, LRO, RLO
        | 0x2060..=0x2064 // WORD JOINER, invisible operators
        | 0x2065        // reserved, default-ignorable: may render as nothing
        | 0x2066..=0x2069 // LRI, RLI, FSI, PDI
        | 0x206A..=0x206F // deprecated format characters
        | 0xFEFF        // BOM / ZWNBSP
        | 0xFFF9..=0xFFFB // interlinear annotation
        | 0xE0000..=0xE007F // tag characters
    )
}

/// Half-width katakana (U+FF61–U+FF9F, common in legacy CRMs: ﾔﾏﾀﾞ ﾀﾛｳ) as full-width
/// (NFKC): their voiced marks are separate characters that libraries measure as zero columns
/// while terminals draw them in one, which would shift every column after them.
fn widen_halfwidth_kana(s: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::UnicodeNormalization;
    let half = |c: char| ('\u{FF61}'..='\u{FF9F}').contains(&c);
    if !s.chars().any(half) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 2);
    let mut run = String::new();
    for c in s.chars() {
        if half(c) {
            run.push(c);
        } else {
            out.extend(run.nfkc());
            run.clear();
            out.push(c);
        }
    }
    out.extend(run.nfkc());
    std::borrow::Cow::Owned(out)
}

/// Display width in terminal columns (East Asian wide characters count 2).
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Fits `s` into `max` columns. When text is cut, `…` (one column) is
/// appended; grapheme clusters are never split and a wide character that
/// does not fit entirely is left out. `max == 0` gives an empty string.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let budget = max - 1;
    let mut out = String::new();
    let mut used = 0usize;
    for g in s.graphemes(true) {
        let w = width(g);
        if used + w > budget {
            break;
        }
        used += w;
        out.push_str(g);
    }
    // Per-grapheme widths can differ from the width of the whole string in
    // rare contextual cases; shrink until the result really fits.
    while width(&out) > budget {
        if out.pop().is_none() {
            break;
        }
    }
    out.push(ELLIPSIS);
    out
}

/// [`truncate`]s `s` to `w` columns, then pads with spaces to exactly `w`.
pub fn pad_right(s: &str, w: usize) -> String {
    let mut out = truncate(s, w);
    let used = width(&out);
    out.extend(std::iter::repeat_n(' ', w.saturating_sub(used)));
    out
}

/// Breaks `s` into lines of at most `max` columns, at spaces where it can (a word longer
/// than a line is cut between grapheme clusters), into at most `lines` lines; text left over
/// ends the last line with `…`. Never splits a grapheme cluster or a wide character.
pub fn wrap(s: &str, max: usize, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if max == 0 || lines == 0 {
        return out;
    }
    let mut rest = s.trim();
    while !rest.is_empty() {
        if out.len() + 1 == lines || width(rest) <= max {
            out.push(truncate(rest, max));
            break;
        }
        // The longest prefix of whole graphemes that fits.
        let mut used = 0usize;
        let mut end = 0usize;
        let mut last_space = None;
        for (i, g) in rest.grapheme_indices(true) {
            let w = width(g);
            if used + w > max {
                break;
            }
            if g == " " {
                last_space = Some(i);
            }
            used += w;
            end = i + g.len();
        }
        if end == 0 {
            // Not even one grapheme fits.
            out.push(truncate(rest, max));
            break;
        }
        // A line ending right before a space breaks there; else at the last space, if any.
        let cut = match last_space {
            _ if rest[end..].starts_with(' ') => end,
            Some(sp) if sp > 0 => sp,
            _ => end,
        };
        out.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_and_cuts_the_last_line() {
        assert_eq!(
            wrap("CRM search failed: timeout", 40, 3),
            ["CRM search failed: timeout"]
        );
        assert_eq!(
            wrap("CRM search failed: TLS: invalid peer certificate", 20, 3),
            ["CRM search failed:", "TLS: invalid peer", "certificate"]
        );
        assert_eq!(wrap("aaaa bbbb cccc dddd", 9, 2), ["aaaa bbbb", "cccc dddd"]);
        assert_eq!(wrap("aaaa bbbb cccc dddd eeee", 9, 2), ["aaaa bbbb", "cccc ddd…"]);
        // A word longer than a line is cut; wide characters are never split.
        assert_eq!(wrap("abcdefghij", 4, 3), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("山田太郎です", 5, 3), ["山田", "太郎", "です"]);
        assert!(wrap("x", 0, 3).is_empty() && wrap("x", 5, 0).is_empty());
        assert_eq!(wrap("山田", 1, 3), ["…"]);
        for l in wrap("検索に失敗しました: error sending a request to the CRM", 7, 10) {
            assert!(width(&l) <= 7, "{l:?}");
        }
    }

    #[test]
    fn halfwidth_katakana_is_widened() {
        assert_eq!(clean("ﾔﾏﾀﾞ ﾀﾛｳ"), "ヤマダ タロウ");
        assert_eq!(clean("ﾊﾟｰﾌﾟﾙ"), "パープル");
        assert_eq!(width(&clean("ﾊﾟｰﾌﾟﾙ")), 8);
    }

    /// No code point in C0, DEL or C1 survives.
    fn no_control_chars(s: &str) -> bool {
        s.chars().all(|c| !c.is_control())
    }

    #[test]
    fn simple_escapes() {
        assert_eq!(clean("a\nb"), "a\\nb");
        assert_eq!(clean("a\rb"), "a\\rb");
        assert_eq!(clean("a\tb"), "a\\tb");
        assert_eq!(clean("a\u{1b}b"), "a\\eb");
        assert_eq!(clean("a\0b"), "a\\0b");
    }

    #[test]
    fn c0_del_c1_escapes() {
        assert_eq!(clean("\u{7}"), "\\x07");
        assert_eq!(clean("\u{1f}"), "\\x1f");
        assert_eq!(clean("\u{7f}"), "\\x7f");
        assert_eq!(clean("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(clean("\u{80}\u{9f}"), "\\u{80}\\u{9f}");
        assert_eq!(clean("\u{85}"), "\\u{85}");
    }

    #[test]
    fn bidi_and_zero_width_escapes() {
        assert_eq!(clean("Your \u{202e}knaB"), "Your \\u{202e}knaB");
        for cp in [
            0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c,
            0x200b, 0x200c, 0x200d, 0x2060, 0xfeff,
        ] {
            let c = char::from_u32(cp).unwrap_or('?');
            let s = format!("a{c}b");
            assert_eq!(clean(&s), format!("a\\u{{{cp:x}}}b"), "U+{cp:04X}");
        }
        assert_eq!(clean("\u{2028}"), "\\u{2028}");
        assert_eq!(clean("x\u{e0041}"), "x\\u{e0041}");
    }

    /// Found by the `ui_text` fuzz target: the unassigned U+2065, in the middle of the
    /// invisible-operator and bidi-isolate block, passed through as a zero-width mark.
    #[test]
    fn the_whole_invisible_format_block_is_escaped() {
        assert_eq!(clean("a\u{2065}b"), "a\\u{2065}b");
        for cp in 0x2060..=0x206f {
            let c = char::from_u32(cp).unwrap_or('?');
            assert_eq!(clean(&format!("x{c}")), format!("x\\u{{{cp:x}}}"), "U+{cp:04X}");
        }
    }

    #[test]
    fn backslash_and_plain_text_kept() {
        assert_eq!(clean("C:\\path"), "C:\\path");
        assert_eq!(clean("山田 太郎"), "山田 太郎");
        assert_eq!(clean("Müller"), "Müller");
        assert_eq!(clean(""), "");
    }

    #[test]
    fn escape_sequences_are_neutralised() {
        for input in ["\u{1b}]52;c;cm0gLXJmIH4K\u{7}", "\u{1b}[2J\u{1b}[H"] {
            let out = clean(input);
            assert!(
                out.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{input:?} -> {out:?}"
            );
            assert!(no_control_chars(&out));
        }
        assert_eq!(clean("\u{1b}[2J\u{1b}[H"), "\\e[2J\\e[H");
        assert_eq!(
            clean("\u{1b}]52;c;cm0gLXJmIH4K\u{7}"),
            "\\e]52;c;cm0gLXJmIH4K\\x07"
        );
    }

    #[test]
    fn combining_marks_limited() {
        // Decomposed é keeps its accent.
        assert_eq!(clean("e\u{301}"), "e\u{301}");
        // Zalgo: a thousand strikethrough marks per letter.
        let flood: String = "ab"
            .chars()
            .flat_map(|c| std::iter::once(c).chain(std::iter::repeat_n('\u{336}', 1000)))
            .collect();
        let out = clean(&flood);
        assert_eq!(out, "a\u{336}\u{336}b\u{336}\u{336}");
        // Orphan marks have no base to sit on: escaped.
        assert_eq!(clean("\u{336}x"), "\\u{336}x");
        assert_eq!(clean("\n\u{336}"), "\\n\\u{336}");
    }

    #[test]
    fn long_input_bounded() {
        let long = "x\u{336}\u{336}\u{336}".repeat(100_000);
        let out = clean(&long);
        assert!(width(&out) <= CLEAN_MAX_WIDTH);
        assert!(out.ends_with('…'));
        assert!(out.chars().count() <= CLEAN_MAX_WIDTH * (1 + MAX_COMBINING));

        let wide = "山".repeat(10_000);
        let out = clean(&wide);
        assert!(width(&out) <= CLEAN_MAX_WIDTH);
        assert!(out.ends_with('…'));

        let esc = "\u{1b}".repeat(10_000);
        let out = clean(&esc);
        assert!(width(&out) <= CLEAN_MAX_WIDTH);
        assert!(no_control_chars(&out));

        let exact = "a".repeat(CLEAN_MAX_WIDTH);
        assert_eq!(clean(&exact), exact);
    }

    /// Found by the `ui_text` fuzz target: reading stopped after 256 columns counted per
    /// character, but an emoji with U+FE0E (text presentation) is two columns alone and one
    /// in the string, so long text came out cut at about 128 columns with no `…`, and
    /// cleaning the result again cut it further.
    #[test]
    fn text_narrower_than_its_characters_is_cut_with_an_ellipsis() {
        let narrow = "\u{1f4da}\u{fe0e}".repeat(300);
        assert_eq!(width("\u{1f4da}\u{fe0e}"), 1);
        let out = clean(&narrow);
        assert!(out.ends_with('…'), "{out:?}");
        assert_eq!(width(&out), CLEAN_MAX_WIDTH);
        assert_eq!(clean(&out), out);
        let fits = "\u{1f4da}\u{fe0e}".repeat(200);
        assert_eq!(clean(&fits), fits);
        // The same with escapes, whose length counts: cut once, never inside a second pass.
        let mixed = "\u{1f4da}\u{fe0e}\u{1b}".repeat(100);
        let out = clean(&mixed);
        assert!(out.ends_with('…') && width(&out) <= CLEAN_MAX_WIDTH, "{out:?}");
        assert_eq!(clean(&out), out);
    }

    #[test]
    fn widths() {
        assert_eq!(width("山田 太郎"), 9);
        assert_eq!(width("abc"), 3);
        assert_eq!(width("e\u{301}"), 1);
        assert_eq!(width(""), 0);
        assert_eq!(width("…"), 1);
    }

    #[test]
    fn truncate_wide_at_odd_widths() {
        let name = "山田 太郎";
        assert_eq!(truncate(name, 9), name);
        assert_eq!(truncate(name, 10), name);
        assert_eq!(truncate(name, 8), "山田 太…");
        assert_eq!(truncate(name, 7), "山田 …");
        assert_eq!(truncate(name, 5), "山田…");
        assert_eq!(truncate(name, 4), "山…");
        assert_eq!(truncate(name, 3), "山…");
        assert_eq!(truncate(name, 2), "…");
        assert_eq!(truncate(name, 1), "…");
        assert_eq!(truncate(name, 0), "");
        for max in 0..12 {
            assert!(width(&truncate(name, max)) <= max, "max {max}");
        }
    }

    #[test]
    fn truncate_keeps_graphemes_whole() {
        assert_eq!(truncate("e\u{301}e\u{301}e\u{301}", 2), "e\u{301}…");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn pad_right_exact() {
        let name = "山田 太郎";
        for w in 0..14 {
            let p = pad_right(name, w);
            assert_eq!(width(&p), w, "w {w}: {p:?}");
        }
        assert_eq!(pad_right(name, 4), "山… ");
        assert_eq!(pad_right(name, 11), "山田 太郎  ");
        assert_eq!(pad_right("ab", 4), "ab  ");
        assert_eq!(pad_right("", 0), "");
    }
}
