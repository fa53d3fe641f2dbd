//! The characters no output may carry raw: a terminal cell, a log line, a clipboard payload or
//! a file name. Shared by `common::outputs` and `common/ui.rs` (which some tests include alone,
//! with `#[path]`).

/// C0 (ESC included; a log line's own newline is checked apart), DEL, C1, and the bidi and
/// invisible format characters `text::clean` escapes.
pub fn raw_control(c: char) -> bool {
    let cp = u32::from(c);
    cp < 0x20
        || (0x7f..=0x9f).contains(&cp)
        || matches!(
            cp,
            0x061C | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2069 | 0xFEFF
        )
}
