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
