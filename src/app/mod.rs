//! The core's call-event bus: one typed event enum that every subscriber (the CTI engine, the
//! history, the front ends) receives, and the handle used to publish on it.
//!
//! Producers (the SIP call layer, the media recorder, a front end for `click`) publish
//! [`CallEvent`]s; the CTI engine answers with [`CtiEvent`]s on the same bus. Nothing here knows
//! about terminals or SIP libraries.

pub mod event;

pub mod command;
pub mod core;

pub use command::{CallerId, Command};
pub use event::{
    ActionReport, CallEvent, CallEventKind, CallParams, CtiEvent, Direction, EndReason, Event, PhoneEvent,
};

use tokio::sync::broadcast;

/// How many events a slow subscriber may lag behind before it starts losing the oldest.
const BUS_CAPACITY: usize = 1024;

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

/// A cloneable handle on the event bus.
#[derive(Clone, Debug)]
pub struct Bus {
    tx: broadcast::Sender<Event>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// A new bus with no subscribers.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        Self { tx }
    }

    /// Publishes an event to every current subscriber. Publishing never blocks; with no
    /// subscriber the event is dropped.
    pub fn publish(&self, event: Event) {
        // An error only means "nobody is listening", which is not a failure of the producer.
        let _ = self.tx.send(event);
    }

    /// Publishes a call event.
    pub fn call(&self, event: CallEvent) {
        self.publish(Event::Call(event));
    }

    /// A new subscription that sees every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
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

    #[tokio::test]
    async fn every_subscriber_sees_every_event() {
        let bus = Bus::new();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        let params = CallParams::incoming("c1", "0312345678", "09011112222");
        bus.call(CallEvent::ring(params.clone()));
        bus.call(CallEvent::hangup(params, true));
        for rx in [&mut a, &mut b] {
            match rx.recv().await.expect("first") {
                Event::Call(e) => assert_eq!(e.kind, CallEventKind::Ring),
                other => panic!("unexpected {other:?}"),
            }
            match rx.recv().await.expect("second") {
                Event::Call(e) => assert_eq!(e.kind, CallEventKind::Hangup { answered: true }),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
