//! The call-event bus: every subscriber receives every event, in the order published, on a
//! queue of its own. Publishing never blocks on a subscriber and never drops an event: the
//! queues are unbounded and their depth is watched instead (a subscriber that falls
//! [`BACKLOG_WARN`] events behind is named in a warning, again at each doubling, and once more
//! when it has caught up). A subscriber whose [`Subscription`] is dropped is removed at once.

use std::collections::VecDeque;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::event::{CallEvent, Event};

/// The backlog at which a subscriber is first reported as falling behind; every doubling of it
/// is reported again.
pub const BACKLOG_WARN: usize = 1000;

/// A cloneable handle on the event bus. Clones share one bus; the bus closes when the last
/// handle is dropped ([`WeakBus`] handles do not keep it open).
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Shared>,
}

/// A handle that can publish on a bus without keeping it open (for a subscriber that also
/// reports on the bus it listens to).
#[derive(Clone, Debug)]
pub struct WeakBus {
    shared: Weak<Shared>,
}

/// One subscriber's receiving end: the events published since it subscribed, in order.
/// Dropping it unsubscribes.
pub struct Subscription {
    queue: Arc<Queue>,
    bus: Weak<Shared>,
}

/// Closes one subscription from elsewhere (another thread or task): its receiver still gets
/// the events already queued, then the end, as when the bus closes.
#[derive(Clone)]
pub struct Closer {
    queue: Arc<Queue>,
}

#[derive(Default)]
struct Shared {
    queues: Mutex<Vec<Arc<Queue>>>,
}

struct Queue {
    name: String,
    state: Mutex<State>,
    /// Wakes a receiver blocked in [`Subscription::recv_blocking`] or `recv_timeout`.
    ready: Condvar,
    /// Wakes a receiver awaiting [`Subscription::recv`].
    notify: Notify,
}

struct State {
    events: VecDeque<Event>,
    /// No more events will come: the bus is gone, or the subscription was closed or dropped.
    closed: bool,
    /// A receiver waits on `ready`.
    sleeping: bool,
    /// The backlog at which the next warning is logged.
    warn_at: usize,
    /// The largest backlog since the last warning cycle began.
    peak: usize,
}

/// Locks a mutex; a panic elsewhere while holding it leaves the queue usable (a queue's state
/// is valid between any two of its statements).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Queue {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: Mutex::new(State {
                events: VecDeque::new(),
                closed: false,
                sleeping: false,
                warn_at: BACKLOG_WARN,
                peak: 0,
            }),
            ready: Condvar::new(),
            notify: Notify::new(),
        }
    }

    /// Queues a copy of `event`; false when this queue takes no more events.
    fn push(&self, event: &Event) -> bool {
        let mut s = lock(&self.state);
        if s.closed {
            return false;
        }
        s.events.push_back(event.clone());
        let depth = s.events.len();
        s.peak = s.peak.max(depth);
        let behind = depth >= s.warn_at;
        if behind {
            s.warn_at = s.warn_at.saturating_mul(2);
        }
        let sleeping = s.sleeping;
        drop(s);
        if behind {
            tracing::warn!(
                subscriber = %self.name,
                backlog = depth,
                "bus subscriber `{}` is {depth} events behind",
                self.name
            );
        }
        self.notify.notify_one();
        if sleeping {
            self.ready.notify_one();
        }
        true
    }

    /// The next event, or `Err(Empty)` / `Err(Disconnected)` (closed and drained).
    fn take(&self, s: &mut State) -> Result<Event, TryRecvError> {
        let Some(event) = s.events.pop_front() else {
            return Err(if s.closed {
                TryRecvError::Disconnected
            } else {
                TryRecvError::Empty
            });
        };
        if s.events.is_empty() && s.warn_at > BACKLOG_WARN {
            tracing::warn!(
                subscriber = %self.name,
                peak = s.peak,
                "bus subscriber `{}` has caught up (its backlog peaked at {} events)",
                self.name,
                s.peak
            );
            s.warn_at = BACKLOG_WARN;
            s.peak = 0;
        }
        Ok(event)
    }

    /// Takes no more events; wakes the receiver so that it sees the end.
    fn close(&self) {
        lock(&self.state).closed = true;
        self.notify.notify_one();
        self.ready.notify_all();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for q in lock(&self.queues).iter() {
            q.close();
        }
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queues = lock(&self.shared.queues);
        f.debug_struct("Bus")
            .field("subscribers", &queues.iter().map(|q| &q.name).collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// A new bus with no subscribers.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared::default()),
        }
    }

    /// Publishes an event to every current subscriber, never blocking on one: each gets it at
    /// the end of its queue. Publishers are serialised, so every subscriber sees the same
    /// order. With no subscriber the event goes nowhere.
    pub fn publish(&self, event: Event) {
        lock(&self.shared.queues).retain(|q| q.push(&event));
    }

    /// Publishes a call event.
    pub fn call(&self, event: CallEvent) {
        self.publish(Event::Call(event));
    }

    /// A new subscription, named for the logs (`history`, `cti`, `ui`…), that receives every
    /// event published from now on.
    pub fn subscribe_as(&self, name: &str) -> Subscription {
        let queue = Arc::new(Queue::new(name));
        lock(&self.shared.queues).push(Arc::clone(&queue));
        Subscription {
            queue,
            bus: Arc::downgrade(&self.shared),
        }
    }

    /// The bus's former receiver, a bounded broadcast channel that loses the oldest events of
    /// a subscriber more than 1,024 behind (it says so: `RecvError::Lagged`). Only for the unit
    /// tests under `src/sip/`, which name that type and are not ours to change here; every
    /// other subscriber uses [`Bus::subscribe_as`].
    /// The names of the current subscribers, in the order they subscribed.
    pub fn subscribers(&self) -> Vec<String> {
        lock(&self.shared.queues).iter().map(|q| q.name.clone()).collect()
    }

    /// A handle that publishes here without keeping the bus open.
    pub fn downgrade(&self) -> WeakBus {
        WeakBus {
            shared: Arc::downgrade(&self.shared),
        }
    }
}

impl WeakBus {
    /// The bus, while some [`Bus`] handle keeps it open.
    pub fn upgrade(&self) -> Option<Bus> {
        self.shared.upgrade().map(|shared| Bus { shared })
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.queue.name)
            .field("backlog", &self.backlog())
            .finish()
    }
}

impl Subscription {
    /// The name given at subscribe time.
    pub fn name(&self) -> &str {
        &self.queue.name
    }

    /// How many events wait to be received.
    pub fn backlog(&self) -> usize {
        lock(&self.queue.state).events.len()
    }

    /// The next event; `None` once the bus is closed (or this subscription closed) and every
    /// event queued before has been received.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            // A notification between the check and the wait is kept as a permit.
            let notified = self.queue.notify.notified();
            let next = self.queue.take(&mut lock(&self.queue.state));
            match next {
                Ok(event) => return Some(event),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => notified.await,
            }
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Result<Event, TryRecvError> {
        let mut s = lock(&self.queue.state);
        self.queue.take(&mut s)
    }

    /// The next event, blocking the thread until one comes; for a subscriber on a thread of
    /// its own, never on the async runtime. `None` as for [`Subscription::recv`].
    pub fn recv_blocking(&mut self) -> Option<Event> {
        let mut s = lock(&self.queue.state);
        loop {
            match self.queue.take(&mut s) {
                Ok(event) => return Some(event),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {
                    s.sleeping = true;
                    s = self.queue.ready.wait(s).unwrap_or_else(|p| p.into_inner());
                    s.sleeping = false;
                }
            }
        }
    }

    /// As [`Subscription::recv_blocking`], waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut s = lock(&self.queue.state);
        loop {
            match self.queue.take(&mut s) {
                Ok(event) => return Ok(event),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {
                    let left = match deadline {
                        Some(d) => d.saturating_duration_since(Instant::now()),
                        None => Duration::MAX,
                    };
                    if left.is_zero() {
                        return Err(RecvTimeoutError::Timeout);
                    }
                    s.sleeping = true;
                    s = match self.queue.ready.wait_timeout(s, left) {
                        Ok((s, _)) => s,
                        Err(p) => p.into_inner().0,
                    };
                    s.sleeping = false;
                }
            }
        }
    }

    /// A handle that closes this subscription from elsewhere.
    pub fn closer(&self) -> Closer {
        Closer {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let dropped = {
            let mut s = lock(&self.queue.state);
            s.closed = true;
            std::mem::take(&mut s.events)
        };
        drop(dropped);
        if let Some(shared) = self.bus.upgrade() {
            lock(&shared.queues).retain(|q| !Arc::ptr_eq(q, &self.queue));
        }
    }
}

impl std::fmt::Debug for Closer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closer")
            .field("name", &self.queue.name)
            .field("backlog", &self.backlog())
            .finish()
    }
}

impl Closer {
    /// Closes the subscription: no further event is queued for it, and its receiver gets the
    /// end after the events already queued.
    pub fn close(&self) {
        self.queue.close();
    }

    /// How many events wait to be received.
    pub fn backlog(&self) -> usize {
        lock(&self.queue.state).events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{CallEventKind, CallParams, PhoneEvent};

    fn numbered(n: usize) -> Event {
        Event::Phone(PhoneEvent::Warning {
            message: n.to_string(),
        })
    }

    fn number(ev: &Event) -> usize {
        match ev {
            Event::Phone(PhoneEvent::Warning { message }) => message.parse().expect("a number"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_subscriber_sees_every_event() {
        let bus = Bus::new();
        let mut a = bus.subscribe_as("a");
        let mut b = bus.subscribe_as("b");
        let params = CallParams::incoming("c1", "0312345678", "09011112222");
        bus.call(CallEvent::ring(params.clone()));
        bus.call(CallEvent::hangup(params, true));
        for rx in [&mut a, &mut b] {
            match rx.recv().await.expect("first") {
                Event::Call(e) => assert_eq!(e.kind, CallEventKind::Ring),
                other => panic!("unexpected {other:?}"),
            }
            match rx.recv().await.expect("second") {
                Event::Call(e) => assert_eq!(
                    e.kind,
                    CallEventKind::Hangup {
                        answered: true,
                        wrapup: false
                    }
                ),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_sleeping_subscriber_gets_100_000_events_in_order() {
        const N: usize = 100_000;
        let bus = Bus::new();
        let rx = bus.subscribe_as("sleeper");
        let (published, wait) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut rx = rx;
            // Asleep until the whole burst is published (a publisher that waited for room in
            // the queue would never get there).
            let slept_through = wait.recv_timeout(Duration::from_secs(60)).is_ok();
            let mut seen = Vec::with_capacity(N);
            while let Some(ev) = rx.recv_blocking() {
                seen.push(number(&ev));
            }
            (slept_through, seen)
        });
        for n in 0..N {
            bus.publish(numbered(n));
        }
        published.send(()).expect("the reader waits");
        drop(bus);
        let (slept_through, seen) = reader.join().expect("the reader");
        assert!(
            slept_through,
            "the burst was not published while the subscriber slept"
        );
        assert_eq!(seen.len(), N);
        assert!(seen.iter().enumerate().all(|(i, n)| i == *n), "out of order");
    }

    #[tokio::test]
    async fn an_async_subscriber_gets_a_burst_published_from_another_thread() {
        const N: usize = 20_000;
        let bus = Bus::new();
        let mut rx = bus.subscribe_as("async");
        let publisher = bus.clone();
        std::thread::spawn(move || {
            for n in 0..N {
                publisher.publish(numbered(n));
            }
        });
        drop(bus);
        for n in 0..N {
            let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("within 5 s")
                .expect("an event");
            assert_eq!(number(&ev), n);
        }
        assert!(rx.recv().await.is_none(), "the bus closed with its last handle");
    }

    #[test]
    fn a_dropped_subscriber_is_removed_and_its_queue_freed() {
        let bus = Bus::new();
        let kept = bus.subscribe_as("kept");
        let gone = bus.subscribe_as("gone");
        let weak = Arc::downgrade(&gone.queue);
        for n in 0..10 {
            bus.publish(numbered(n));
        }
        assert_eq!(bus.subscribers(), ["kept", "gone"]);
        drop(gone);
        assert_eq!(bus.subscribers(), ["kept"]);
        assert!(weak.upgrade().is_none(), "the queue and its events are freed");
        bus.publish(numbered(10));
        assert_eq!(kept.backlog(), 11);
    }

    #[test]
    fn a_closed_subscription_drains_then_ends_and_takes_nothing_more() {
        let bus = Bus::new();
        let mut rx = bus.subscribe_as("closing");
        bus.publish(numbered(0));
        let closer = rx.closer();
        closer.close();
        bus.publish(numbered(1));
        assert!(bus.subscribers().is_empty(), "removed at the next publish");
        assert_eq!(rx.recv_blocking().as_ref().map(number), Some(0));
        assert!(rx.recv_blocking().is_none());
        assert_eq!(closer.backlog(), 0);
    }

    #[test]
    fn recv_timeout_times_out_then_sees_the_end() {
        let bus = Bus::new();
        let mut rx = bus.subscribe_as("t");
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(20)).map(|e| number(&e)),
            Err(RecvTimeoutError::Timeout)
        );
        let weak = bus.downgrade();
        bus.publish(numbered(7));
        drop(bus);
        assert!(
            weak.upgrade().is_none(),
            "a weak handle does not keep the bus open"
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)).map(|e| number(&e)), Ok(7));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(1)).map(|e| number(&e)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn a_backlog_is_reported_past_each_threshold_and_when_caught_up() {
        let bus = Bus::new();
        let mut rx = bus.subscribe_as("slow");
        for n in 0..BACKLOG_WARN * 2 {
            bus.publish(numbered(n));
        }
        {
            let s = lock(&rx.queue.state);
            assert_eq!(s.warn_at, BACKLOG_WARN * 4, "warned at 1000 and 2000");
            assert_eq!(s.peak, BACKLOG_WARN * 2);
        }
        while rx.try_recv().is_ok() {}
        let s = lock(&rx.queue.state);
        assert_eq!(
            (s.warn_at, s.peak),
            (BACKLOG_WARN, 0),
            "caught up: the next backlog warns again"
        );
    }
}
