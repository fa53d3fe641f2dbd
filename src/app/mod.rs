//! The core's call-event bus: one typed event enum that every subscriber (the CTI engine, the
//! history, the front ends) receives, and the handle used to publish on it.
//!
//! Producers (the SIP call layer, the media recorder, a front end for `click`) publish
//! [`CallEvent`]s; the CTI engine answers with [`CtiEvent`]s on the same bus. Nothing here knows
//! about terminals or SIP libraries. The bus itself ([`bus`]) gives each subscriber every
//! event in order, on a queue of its own.

pub mod bus;
pub mod event;

pub mod command;
pub mod core;
pub mod protocol;
pub mod snapshot;

pub use bus::{Bus, Closer, Subscription, WeakBus};
pub use command::{CallerId, Command};
pub use event::{
    ActionReport, AgentState, CallEvent, CallEventKind, CallParams, CallResult, CtiEvent, Direction,
    EndReason, Event, PhoneEvent,
};

/// The most characters of one value [`Logged`] writes.
pub const LOGGED_MAX: usize = 256;

/// A caller-controlled value (a number, a display name, a CRM or server text) as it goes into
/// the log: on one line, with every control, format (bidi) and escape character escaped as
/// Rust's `escape_debug` writes it (`\n`, `\u{1b}`, `\u{202e}`, `\"`), at most
/// [`LOGGED_MAX`] characters of the value (a longer one is cut and ends with `…(N bytes)`).
/// A caller can neither forge log lines nor drive the terminal the log is read on.
pub struct Logged<'a>(pub &'a str);

impl std::fmt::Display for Logged<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chars = self.0.char_indices();
        for (_, c) in chars.by_ref().take(LOGGED_MAX) {
            write!(f, "{}", c.escape_debug())?;
        }
        if chars.next().is_some() {
            write!(f, "…({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_values_stay_on_one_line_without_controls() {
        assert_eq!(Logged("Bob\nINFO forged").to_string(), "Bob\\nINFO forged");
        assert_eq!(
            Logged("\u{1b}[2J\u{9b}1m\u{7f}\0").to_string(),
            "\\u{1b}[2J\\u{9b}1m\\u{7f}\\0"
        );
        assert_eq!(Logged("\u{202e}knaB").to_string(), "\\u{202e}knaB");
        assert_eq!(Logged("山田 \"x\"").to_string(), "山田 \\\"x\\\"");
        let long = "9".repeat(5000);
        let shown = Logged(&long).to_string();
        assert_eq!(shown, format!("{}…(5000 bytes)", "9".repeat(LOGGED_MAX)));
    }
}
