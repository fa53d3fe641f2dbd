//! Keep-alives towards the registrar (or the outbound proxy, whose address is then the
//! registrar's), RFC 5626 §3.5.1 and §4.4.1, while registered: a double-CRLF ping every
//! `[account] keepalive_seconds` (80–100 % of it, drawn each time, so that a room of phones
//! started together does not ping together). Over UDP the ping keeps the NAT mapping open and
//! nothing comes back. Over TCP/TLS the registrar answers a CRLF pong; a flow that carries
//! nothing at all (no pong, no message) within [`pong_wait`] of a ping, or on which the ping
//! cannot be written, is dead: the connection is given up and the phone registers again on a
//! new one, as when the registrar closes it.

use std::time::{Duration, Instant};

use super::registration::RegState;
use super::stack::{SipEvent, Stack};

/// RFC 5626 §4.4.1: "If a pong is not received within 10 seconds after sending a ping … the
/// flow has failed"; never longer than the interval itself, so that a dead flow is noticed
/// within one interval of its first unanswered ping.
pub fn pong_wait(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(10))
}

/// What [`Keepalive::poll`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Send a ping now.
    Ping,
    /// The stream flow carried nothing since the ping sent then: it is dead.
    Dead {
        ping_sent: Instant,
    },
}

/// The ping schedule of one flow.
#[derive(Clone, Debug)]
pub struct Keepalive {
    /// `None`: keep-alives are off.
    interval: Option<Duration>,
    /// The next ping (None: not registered).
    next: Option<Instant>,
    /// The stream ping still waiting for a pong: when it was sent.
    waiting: Option<Instant>,
}

impl Keepalive {
    pub fn new(interval: Option<Duration>) -> Self {
        Self {
            interval: interval.filter(|i| !i.is_zero()),
            next: None,
            waiting: None,
        }
    }

    /// The interval until the next ping: 80–100 % of the configured one (RFC 5626 §4.4.1).
    fn jittered(interval: Duration) -> Duration {
        interval.mul_f64(rand::random_range(0.8..=1.0))
    }

    /// Registered (again): pings start one interval from `now`.
    pub fn start(&mut self, now: Instant) {
        self.next = self.interval.map(|i| now + Self::jittered(i));
        self.waiting = None;
    }

    /// Not registered: no pings.
    pub fn stop(&mut self) {
        self.next = None;
        self.waiting = None;
    }

    /// The earliest time [`Keepalive::poll`] has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        let pong = self
            .waiting
            .zip(self.interval)
            .map(|(sent, i)| sent + pong_wait(i));
        match (self.next, pong) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What to do at `now`. `stream`: pongs are expected; `heard`: when the flow last carried
    /// anything (None: it has no connection). A returned ping is taken as sent at `now`.
    pub fn poll(&mut self, now: Instant, stream: bool, heard: Option<Instant>) -> Action {
        let Some(interval) = self.interval else {
            return Action::Nothing;
        };
        if let Some(sent) = self.waiting {
            if heard.is_some_and(|h| h >= sent) {
                self.waiting = None;
            } else if now >= sent + pong_wait(interval) {
                self.stop();
                return Action::Dead { ping_sent: sent };
            }
        }
        match self.next {
            Some(t) if t <= now => {
                self.next = Some(now + Self::jittered(interval));
                if stream && self.waiting.is_none() {
                    self.waiting = Some(now);
                }
                Action::Ping
            }
            _ => Action::Nothing,
        }
    }
}

impl Stack {
    /// Pings the registrar when due, and gives up a stream flow that stopped answering.
    pub(super) async fn keepalive_due(&mut self, now: Instant) {
        let Some(registrar) = self.cfg.registrar else {
            return;
        };
        if self.reg.state != RegState::Registered {
            self.reg.keepalive.stop();
            return;
        }
        let proto = self.cfg.proto;
        let heard = self.transport.heard_from(proto, registrar);
        let dead = match self.reg.keepalive.poll(now, proto.is_stream(), heard) {
            Action::Nothing => return,
            Action::Ping => match self.transport.ping(proto, registrar).await {
                Ok(()) => return,
                Err(e) if proto.is_stream() => format!("the keep-alive could not be sent ({e})"),
                Err(e) => {
                    // UDP: a send error (no route for now) is the network's; the next
                    // REGISTER refresh says whether the registrar is reachable.
                    tracing::debug!(%registrar, error = %e, "keep-alive not sent");
                    return;
                }
            },
            Action::Dead { ping_sent } => format!(
                "nothing came back within {:.1} s of a keep-alive",
                now.saturating_duration_since(ping_sent).as_secs_f64()
            ),
        };
        self.reg.keepalive.stop();
        self.transport.drop_connection(proto, registrar);
        self.emit(SipEvent::Warning(format!(
            "the {} connection to the registrar {registrar} is dead: {dead}",
            proto.name()
        )));
        self.on_connection_lost(proto, registrar, false).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn off_means_no_ping_ever() {
        let mut k = Keepalive::new(None);
        let t0 = Instant::now();
        k.start(t0);
        assert_eq!(k.deadline(), None);
        assert_eq!(k.poll(t0 + 100 * S, false, None), Action::Nothing);
        let mut zero = Keepalive::new(Some(Duration::ZERO));
        zero.start(t0);
        assert_eq!(zero.deadline(), None);
    }

    #[test]
    fn udp_pings_every_interval_while_registered() {
        let mut k = Keepalive::new(Some(25 * S));
        let t0 = Instant::now();
        assert_eq!(k.deadline(), None, "not registered: nothing scheduled");
        k.start(t0);
        let first = k.deadline().unwrap();
        assert!(first >= t0 + 20 * S && first <= t0 + 25 * S, "{:?}", first - t0);
        assert_eq!(k.poll(first - S, false, None), Action::Nothing);
        assert_eq!(k.poll(first, false, None), Action::Ping);
        // UDP waits for no pong: the next deadline is the next ping.
        let second = k.deadline().unwrap();
        assert!(second >= first + 20 * S && second <= first + 25 * S);
        assert_eq!(k.poll(second, false, None), Action::Ping);
        k.stop();
        assert_eq!(k.deadline(), None);
        assert_eq!(k.poll(second + 100 * S, false, None), Action::Nothing);
    }

    #[test]
    fn a_stream_ping_answered_keeps_the_flow() {
        let mut k = Keepalive::new(Some(25 * S));
        let t0 = Instant::now();
        k.start(t0);
        let ping = k.deadline().unwrap();
        assert_eq!(k.poll(ping, true, Some(t0)), Action::Ping);
        // The pong is awaited at most 10 s (RFC 5626 §4.4.1).
        assert_eq!(k.deadline(), Some(ping + 10 * S));
        // A pong (or any bytes) came 50 ms after the ping.
        let heard = ping + Duration::from_millis(50);
        assert_eq!(k.poll(ping + 10 * S, true, Some(heard)), Action::Nothing);
        let next = k.deadline().unwrap();
        assert!(next >= ping + 20 * S, "next ping, no pong wait left");
        assert_eq!(k.poll(next, true, Some(heard)), Action::Ping);
    }

    #[test]
    fn a_stream_ping_unanswered_is_a_dead_flow_within_one_interval() {
        let mut k = Keepalive::new(Some(S));
        let t0 = Instant::now();
        k.start(t0);
        let ping = k.deadline().unwrap();
        assert_eq!(k.poll(ping, true, Some(t0)), Action::Ping);
        // Short intervals wait for the pong one interval at most, not 10 s.
        assert!(k.deadline().is_some_and(|d| d <= ping + S));
        assert_eq!(k.poll(ping + S / 2, true, Some(t0)), Action::Nothing);
        assert_eq!(k.poll(ping + S, true, Some(t0)), Action::Dead { ping_sent: ping });
        assert_eq!(k.deadline(), None, "stopped until registered again");
        // No connection at all is no answer either.
        k.start(t0);
        let ping = k.deadline().unwrap();
        assert_eq!(k.poll(ping, true, None), Action::Ping);
        assert_eq!(k.poll(ping + S, true, None), Action::Dead { ping_sent: ping });
    }
}
