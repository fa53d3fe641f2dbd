//! CTI templates (`ctiphone::cti::template`): parsing, and expanding with caller values
//! into each context — URL, form body, POST split, argv words and raw text.
//!
//! Input: the template, then caller values, separated by 0xFF bytes (a byte that never
//! occurs in UTF-8 text). The values become {TEL}, {TELNAME}, {CALLED}, … in turn; the
//! server address {SVADDR} is fixed configuration, as in real use.
//!
//! Checks, besides "never panics":
//! - a URL expansion equals a reference built here (literal text as written, each value
//!   percent-encoded as one RFC 3986 component), so a value can never add a path segment,
//!   a `?` or a `#`; it is refused exactly when a value would form a `.`/`..` path segment
//!   or the URL is over `MAX_URL`;
//! - in a form body, values add no `&`, `=`, `+`-as-space or `#`;
//! - the POST split keeps the text order, and masking hides every secret;
//! - a command line gives one argv element per word whatever the values hold, each value
//!   passed through verbatim.
#![no_main]

use ctiphone::cti::plan::BUILTIN_PARAMS;
use ctiphone::cti::template::{
    self, Lookup, MASK, MAX_URL, Piece, PieceKind, Template, form_body, raw, split_query, url,
};
use ctiphone::cti::vars::Vars;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986 unreserved characters (written here, not taken from the crate).
const UNRESERVED_ONLY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The caller-controlled parameters, in the order input values fill them.
const CALLER: &[&str] = &[
    "TEL",
    "TELNAME",
    "CALLED",
    "CALLEDNAME",
    "ID",
    "COMPANY",
    "NAME",
    "EXT_ID",
    "CODE1",
    "CODE2",
    "REC_PATH",
    "REC_FILE",
    "AID",
    "APW",
    "EXT",
];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xFF);
    let source = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let values: Vec<String> = parts.map(|p| String::from_utf8_lossy(p).into_owned()).collect();

    let mut vars = Vars::default();
    vars.set("SVADDR", "https://crm.example:8000/", false);
    for (i, name) in CALLER.iter().enumerate() {
        let v = if values.is_empty() {
            ""
        } else {
            &values[i % values.len()]
        };
        vars.set(name, v, *name == "APW");
    }

    // As the configuration check parses it: only known parameter names.
    let _ = Template::parse(&source, &|n: &str| BUILTIN_PARAMS.contains(&n));
    if let Ok(t) = Template::parse(&source, &|_: &str| true) {
        assert_eq!(t.source(), &*source);
        let _ = t.params();
        let pieces = t.pieces(&vars);
        check_url(&pieces);
        check_form(&pieces);
        check_split(&pieces);
        check_mask(&pieces);
    }
    check_argv(&source, &vars);
});

/// What `url` must give: `Some(url)` or `None` when it must refuse.
fn reference_url(pieces: &[Piece]) -> Option<String> {
    let mut out = String::new();
    let mut in_path = true;
    let mut seg = String::new();
    let mut seg_has_value = false;
    let bad = |seg: &str, has_value: bool| has_value && (seg == "." || seg == "..");
    for p in pieces {
        if p.kind == PieceKind::Value {
            let enc = utf8_percent_encode(&p.text, UNRESERVED_ONLY).to_string();
            out.push_str(&enc);
            if in_path {
                seg.push_str(&enc);
                seg_has_value = true;
            }
            continue;
        }
        for c in p.text.chars() {
            out.push(c);
            if !in_path {
                continue;
            }
            if matches!(c, '/' | '?' | '#') {
                if bad(&seg, seg_has_value) {
                    return None;
                }
                seg.clear();
                seg_has_value = false;
                in_path = c == '/';
            } else {
                seg.push(c);
            }
        }
    }
    if in_path && bad(&seg, seg_has_value) {
        return None;
    }
    (out.len() <= MAX_URL).then_some(out)
}

fn structure(s: &str) -> usize {
    s.chars().filter(|c| matches!(c, '/' | '?' | '#')).count()
}

fn check_url(pieces: &[Piece]) {
    let got = url(pieces, false);
    let want = reference_url(pieces);
    match (&got, &want) {
        (Ok(u), Some(w)) => assert_eq!(u, w),
        (Err(_), None) => {}
        _ => panic!("url() gave {got:?}, expected {want:?} for {pieces:?}"),
    }
    if let Ok(u) = &got {
        let literal: usize = pieces
            .iter()
            .filter(|p| p.kind != PieceKind::Value)
            .map(|p| structure(&p.text))
            .sum();
        assert_eq!(structure(u), literal, "a value changed the URL's structure: {u}");
        // Masked, the same URL shape comes out (the mask holds no delimiter).
        if let Ok(m) = url(pieces, true) {
            assert_eq!(structure(&m), literal);
        }
    }
}

fn check_form(pieces: &[Piece]) {
    let body = form_body(pieces, false);
    let count = |s: &str| {
        s.chars()
            .filter(|c| matches!(c, '&' | '=' | '+' | '#' | ' '))
            .count()
    };
    let literal: usize = pieces
        .iter()
        .filter(|p| p.kind != PieceKind::Value)
        .map(|p| count(&p.text))
        .sum();
    // Values become `+` for spaces: count those separately.
    let value_spaces: usize = pieces
        .iter()
        .filter(|p| p.kind == PieceKind::Value)
        .map(|p| p.text.matches(' ').count())
        .sum();
    assert_eq!(
        count(&body),
        literal + value_spaces,
        "a value added a delimiter: {body:?}"
    );
    for p in pieces.iter().filter(|p| p.kind == PieceKind::Value) {
        let enc = form_body(std::slice::from_ref(p), false);
        assert!(
            enc.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"*-._+%".contains(&b)),
            "form value {:?} encoded as {enc:?}",
            p.text
        );
    }
    let _ = form_body(pieces, true);
}

fn check_split(pieces: &[Piece]) {
    let (before, after) = split_query(pieces);
    let all = raw(pieces, false);
    let b = raw(&before, false);
    assert!(
        all.starts_with(&b),
        "the URL part {b:?} is not the start of {all:?}"
    );
    for p in before.iter().filter(|p| p.kind != PieceKind::Value) {
        assert!(
            !p.text.contains('?'),
            "literal `?` left in the URL part: {before:?}"
        );
    }
    if !after.is_empty() {
        let a = raw(&after, false);
        let rest = &all[b.len()..];
        assert!(rest.starts_with('?'), "no `?` between {b:?} and {a:?} in {all:?}");
        assert!(
            rest[1..].starts_with(&a),
            "query {a:?} is not what follows `?` in {all:?}"
        );
        for p in after.iter().filter(|p| p.kind != PieceKind::Value) {
            assert!(!p.text.contains('#'), "literal `#` in the body part: {after:?}");
        }
    }
    // What a POST sends.
    let _ = url(&before, false);
    let _ = form_body(&after, false);
}

fn check_mask(pieces: &[Piece]) {
    let masked = raw(pieces, true);
    let shown: String = pieces
        .iter()
        .map(|p| if p.secret { MASK } else { p.text.as_str() })
        .collect();
    assert_eq!(masked, shown);
}

/// A `command` access: the template split into words once, at load; each word one argv
/// element at ring time.
fn check_argv(source: &str, vars: &Vars) {
    let Ok(words) = shell_words::split(source) else {
        return;
    };
    let mut argv = Vec::new();
    for w in &words {
        let Ok(t) = Template::parse(w, &|_: &str| true) else {
            return;
        };
        let pieces = t.pieces(vars);
        let word = template::raw(&pieces, false);
        // Values verbatim: no quoting, escaping or splitting.
        let verbatim: String = pieces.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(word, verbatim);
        for p in t.nodes() {
            if let template::Node::Param(name) = p {
                let v = vars.lookup(name).text;
                assert!(
                    word.contains(&v),
                    "value {v:?} of {name} not verbatim in {word:?}"
                );
            }
        }
        argv.push(word);
    }
    assert_eq!(argv.len(), words.len());
}
