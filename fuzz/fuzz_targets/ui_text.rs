//! The terminal text sanitiser (`ctiphone::ui::text`): `clean`, `width`, `truncate`,
//! `pad_right` on any text a caller or CRM could send.
//!
//! Checks, besides "never panics":
//! - `clean` output holds no C0/C1 control character, no DEL (so no ESC and no escape
//!   sequence), no bidi control and no other invisible format character; it is at most
//!   `CLEAN_MAX_WIDTH` columns; a zero-width character only follows a visible one, at most
//!   two in a row; and cleaning it again changes nothing;
//! - `truncate` never exceeds its width and returns text that fits unchanged, and
//!   `pad_right` of cleaned text fills exactly its width.
//!
//! The first input byte is the width for `truncate`/`pad_right`; the rest is the text
//! (lossy UTF-8, as the SIP and HTTP layers hand it over).
#![no_main]

use ctiphone::ui::text::{CLEAN_MAX_WIDTH, clean, pad_right, truncate, width};
use libfuzzer_sys::fuzz_target;
use unicode_width::UnicodeWidthChar;

fuzz_target!(|data: &[u8]| {
    let Some((&w, rest)) = data.split_first() else {
        return;
    };
    let w = usize::from(w);
    let text = String::from_utf8_lossy(rest);

    let out = clean(&text);
    check_clean(&text, &out);
    assert_eq!(clean(&out), out, "cleaning twice changes {text:?}");

    for s in [&*text, out.as_str()] {
        let t = truncate(s, w);
        assert!(
            width(&t) <= w,
            "truncate({s:?}, {w}) = {t:?} is {} wide",
            width(&t)
        );
        if width(s) <= w {
            assert_eq!(t, s);
        }
    }
    let p = pad_right(&out, w);
    assert_eq!(width(&p), w, "pad_right({out:?}, {w}) = {p:?}");
});

fn forbidden(c: char) -> bool {
    let cp = u32::from(c);
    c.is_control()
        || matches!(
            cp,
            0x061C
                | 0x180E
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0xE0000..=0xE007F
        )
}

fn check_clean(input: &str, out: &str) {
    if let Some(c) = out.chars().find(|c| forbidden(*c)) {
        panic!("clean({input:?}) = {out:?} holds U+{:04X}", u32::from(c));
    }
    assert!(!out.bytes().any(|b| b == 0x1b), "ESC byte in {out:?}");
    assert!(
        width(out) <= CLEAN_MAX_WIDTH,
        "clean({input:?}) is {} wide",
        width(out)
    );
    let mut run: Option<usize> = None;
    for c in out.chars() {
        match c.width() {
            Some(0) => match run {
                Some(n) if n < 2 => run = Some(n + 1),
                _ => panic!(
                    "clean({input:?}) = {out:?}: U+{:04X} without a base",
                    u32::from(c)
                ),
            },
            _ => run = Some(0),
        }
    }
}
