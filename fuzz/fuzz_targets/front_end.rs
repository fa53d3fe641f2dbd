//! What reaches the daemon from outside the phone: a click-to-call link handed to
//! `ctiphone open` (`ctiphone::daemon::uri::target`) and a line on the daemon's socket
//! (`ctiphone::app::protocol`: a command in, an event read back by an attached front end).
//!
//! Input: the link, a 0xFF byte, then the line (without 0xFF: the whole input is both).
//!
//! Checks, besides "never panics":
//! - a link that is taken dials a number of digits, `*`, `#` and one leading `+`, or a
//!   `sip:`/`sips:` URI with no whitespace, control character, `?`, `<`, `>`, `"`, `'`,
//!   `` ` ``, `$`, `&` or parentheses — nothing a shell, a terminal or the INVITE's headers
//!   would read as more;
//! - a command line that parses is written back (`command_line`) as a line that parses to
//!   the same command;
//! - an event object read back (`from_json`) is sent again (`to_json`) as one that reads
//!   back to the same event.
#![no_main]

use ctiphone::app::protocol::{command_line, from_json, parse_command, to_json};
use ctiphone::daemon::uri::target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (link, line) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let link = String::from_utf8_lossy(link);
    if let Ok(to) = target(&link) {
        if let Some(uri) = to.strip_prefix("sip:").or_else(|| to.strip_prefix("sips:")) {
            assert!(
                !uri.chars().any(|c| c.is_whitespace() || c.is_control() || "?<>\"'`$&()".contains(c)),
                "{link:?} dials {to:?}"
            );
        } else {
            let digits = to.strip_prefix('+').unwrap_or(&to);
            assert!(
                !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#'),
                "{link:?} dials {to:?}"
            );
        }
    }
    let line = String::from_utf8_lossy(line);
    if let Ok(cmd) = parse_command(&line) {
        assert_eq!(parse_command(&command_line(&cmd)), Ok(cmd), "{line:?}");
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
        && let Some(ev) = from_json(&v)
        && let Some(again) = to_json(&ev)
    {
        assert_eq!(from_json(&again), Some(ev), "{line:?}");
    }
});
