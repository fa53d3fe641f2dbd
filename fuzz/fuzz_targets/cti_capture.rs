//! Capture rules (`ctiphone::cti::capture`): parsing `json:`, `regex:` and `line:` rules and
//! applying them to a CRM reply or a command's output.
//!
//! Input: lines of rules (as `[cti.*.captures]` values), a 0xFF byte, then the reply body.
//! Without 0xFF the whole input is the reply, read with a fixed set of rules.
//!
//! Checks, besides "never panics" (and no regex that takes forever to compile):
//! - every rule that parses is applied, and each capture gets a value or is named by exactly
//!   one error, never both (the `json:` captures of a reply that is not JSON share one);
//! - a `line:` value is what follows `KEY=` on a line, trimmed, so it holds no line break;
//! - a `regex:` value is a substring of the reply; a `json:` string value equals the value
//!   `serde_json` reads at that pointer.
#![no_main]

use ctiphone::cti::capture::{Capture, Rule, apply_all};
use libfuzzer_sys::fuzz_target;

/// Rules used when the input holds only a reply.
const DEFAULT_RULES: &[&str] = &[
    "json:/data/0/company",
    "json:/name",
    "json:",
    "json:/a~1b/~0",
    "regex:token=([A-Za-z0-9]+)",
    "regex:(?s)<name>(.*?)</name>",
    "line:session",
    "line:NAME",
];

fuzz_target!(|data: &[u8]| {
    let (rules, body) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (String::from_utf8_lossy(&data[..i]).into_owned(), &data[i + 1..]),
        None => (DEFAULT_RULES.join("\n"), data),
    };
    // Replies are read as lossy UTF-8.
    let body = String::from_utf8_lossy(body);
    let captures: Vec<Capture> = rules
        .lines()
        .take(16)
        .enumerate()
        // Bounded patterns, as a configuration file would hold.
        .filter(|(_, r)| r.len() <= 256)
        .filter_map(|(i, r)| Capture::parse(&format!("V{i}"), r).ok())
        .collect();

    let (values, errors) = apply_all(&captures, &body);
    // Every capture has a value or is named by exactly one error ("capture V1, V3: why": the
    // json captures of a reply that is not JSON share one message), and every error names
    // failed captures only.
    let named: Vec<Vec<&str>> = errors
        .iter()
        .map(|e| {
            let list = e
                .strip_prefix("capture ")
                .and_then(|rest| rest.split_once(": "))
                .map(|(vars, _)| vars)
                .unwrap_or_else(|| panic!("error names no variable: {e}"));
            list.split(", ").collect()
        })
        .collect();
    for c in &captures {
        let times = named.iter().flatten().filter(|v| **v == c.var).count();
        let expected = usize::from(!values.contains_key(&c.var));
        assert_eq!(times, expected, "capture {} named {times} times: {errors:?}", c.var);
    }
    assert_eq!(
        values.len() + named.iter().map(Vec::len).sum::<usize>(),
        captures.len()
    );
    let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    for c in &captures {
        let Some(v) = values.get(&c.var) else {
            continue;
        };
        match &c.rule {
            Rule::Line(key) => {
                assert!(!v.contains(['\n']), "line:{key} value {v:?} spans lines");
                assert_eq!(v.trim(), v);
            }
            Rule::Regex(_) => assert!(body.contains(v.as_str()), "regex value {v:?} not in reply"),
            Rule::Json(pointer) => {
                let doc = json
                    .as_ref()
                    .expect("a json: value from a reply that is not JSON");
                match doc.pointer(pointer) {
                    Some(serde_json::Value::String(s)) => assert_eq!(s, v),
                    Some(serde_json::Value::Null) => assert!(v.is_empty()),
                    Some(other) => assert_eq!(&other.to_string(), v),
                    None => panic!("json:{pointer} gave {v:?} but points nowhere"),
                }
            }
        }
    }
});
