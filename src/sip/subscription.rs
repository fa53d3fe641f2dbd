//! Event subscriptions we hold (RFC 6665): SUBSCRIBE through the registrar with digest
//! authentication, refreshed at half the granted time, resubscribed with backoff (2 s doubling
//! to 5 minutes) after a failure or a `terminated` NOTIFY; the NOTIFYs of a subscription
//! matched by Call-ID and our tag and handed on as [`SipEvent::Notified`]. Used for the
//! voicemail light (`message-summary`, RFC 3842); an unsolicited `message-summary` NOTIFY is
//! taken from the registrar's address only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::addr::NameAddr;
use super::auth::{self, Challenge};
use super::message::Message;
use super::stack::{Owner, SipEvent, Stack, challenges, random_token, reason_phrase};
use super::transport::Proto;

/// Which subscription (an index into the stack's list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubId(pub usize);

/// One subscription.
#[derive(Debug)]
pub struct Subscription {
    /// The event package (`message-summary`, `dialog`).
    pub event: String,
    /// What is watched (the Request-URI and To).
    pub target: String,
    pub call_id: String,
    pub tag: String,
    /// The notifier's tag, from its 2xx: a refresh goes inside the subscription's dialog.
    pub remote_tag: Option<String>,
    pub cseq: u32,
    pub expires: u32,
    pub active: bool,
    pub challenge: Option<(Challenge, bool)>,
    pub nc: u32,
    pub auth_tries: u8,
    /// The next SUBSCRIBE (refresh or retry).
    pub next: Option<Instant>,
    pub backoff: Duration,
}

/// What a subscription's NOTIFY bodies are.
fn accept_for(event: &str) -> &'static str {
    match event {
        "message-summary" => "application/simple-message-summary",
        "dialog" => "application/dialog-info+xml",
        _ => "*/*",
    }
}

impl Stack {
    /// Subscribes to `event` of `target` (a SIP URI) through the registrar; `None` without
    /// one. Refreshed and retried until the stack stops.
    pub async fn subscribe(&mut self, event: &str, target: &str, expires: u32) -> Option<SubId> {
        self.cfg.registrar?;
        let id = SubId(self.subs.len());
        self.subs.push(Subscription {
            event: event.to_owned(),
            target: target.to_owned(),
            call_id: format!("{}@ctiphone", random_token(20)),
            tag: random_token(10),
            remote_tag: None,
            cseq: 0,
            expires: expires.max(60),
            active: false,
            challenge: None,
            nc: 0,
            auth_tries: 0,
            next: None,
            backoff: Duration::from_secs(2),
        });
        self.send_subscribe(id).await;
        Some(id)
    }

    async fn send_subscribe(&mut self, id: SubId) {
        let Some(registrar) = self.cfg.registrar else {
            return;
        };
        let (aor, contact) = (self.aor(), self.contact());
        let (user, password) = (self.cfg.auth_user.clone(), self.cfg.password.clone());
        let Some(s) = self.subs.get_mut(id.0) else {
            return;
        };
        s.cseq += 1;
        s.next = None;
        let mut req = Message::request("SUBSCRIBE", &s.target);
        req.push("From", format!("<{aor}>;tag={}", s.tag))
            .push(
                "To",
                match &s.remote_tag {
                    Some(t) => format!("<{}>;tag={t}", s.target),
                    None => format!("<{}>", s.target),
                },
            )
            .push("Call-ID", s.call_id.clone())
            .push("CSeq", format!("{} SUBSCRIBE", s.cseq))
            .push("Contact", contact)
            .push("Event", s.event.clone())
            .push("Accept", accept_for(&s.event))
            .push("Expires", s.expires.to_string());
        if let Some((ch, proxy)) = &s.challenge {
            s.nc += 1;
            let (name, value) = auth::credentials(ch, *proxy, &user, &password, "SUBSCRIBE", &s.target, s.nc);
            req.push(name, value);
        }
        let proto = self.cfg.proto;
        self.send_request(req, registrar, proto, Owner::Subscribe(id))
            .await;
    }

    pub(super) async fn on_subscribe_response(&mut self, id: SubId, msg: &Message, code: u16) {
        if code < 200 {
            return;
        }
        let Some(s) = self.subs.get_mut(id.0) else {
            return;
        };
        if code < 300 {
            s.auth_tries = 0;
            s.active = true;
            s.remote_tag = msg
                .get("To")
                .and_then(|t| NameAddr::parse(t).ok())
                .and_then(|t| t.tag().map(str::to_owned));
            s.backoff = Duration::from_secs(2);
            let granted = msg
                .get("Expires")
                .and_then(|e| e.trim().parse::<u32>().ok())
                .unwrap_or(s.expires);
            if granted == 0 {
                // Accepted and ended at once: subscribe again later.
                s.next = Some(Instant::now() + s.backoff);
            } else {
                s.next = Some(Instant::now() + Duration::from_secs(u64::from(granted.max(2))) / 2);
            }
            return;
        }
        if (code == 401 || code == 407) && s.auth_tries < 2 {
            let all = challenges(msg, code);
            let stale = all.iter().any(|c| c.stale);
            if let Some(ch) = auth::pick(&all).cloned()
                && (s.auth_tries == 0 || stale)
            {
                s.auth_tries += 1;
                s.challenge = Some((ch, code == 407));
                s.nc = 0;
                self.send_subscribe(id).await;
                return;
            }
        }
        let (event, target) = (s.event.clone(), s.target.clone());
        // The server does not have the package (or never will take it): no retrying.
        let permanent = matches!(code, 403 | 404 | 405 | 489 | 501);
        self.subscription_failed(id, &format!("{code} {}", reason_phrase(msg)), permanent);
        tracing::info!(%event, %target, code, "subscription refused");
    }

    /// A SUBSCRIBE got no answer: retried with backoff.
    pub(super) fn on_subscribe_timeout(&mut self, id: SubId) {
        self.subscription_failed(id, "no answer", false);
    }

    fn subscription_failed(&mut self, id: SubId, why: &str, permanent: bool) {
        let Some(s) = self.subs.get_mut(id.0) else {
            return;
        };
        s.active = false;
        s.auth_tries = 0;
        s.challenge = None;
        // A new subscription (new Call-ID and tag) next time.
        s.call_id = format!("{}@ctiphone", random_token(20));
        s.tag = random_token(10);
        s.remote_tag = None;
        s.next = (!permanent).then(|| Instant::now() + s.backoff);
        s.backoff = (s.backoff * 2).min(Duration::from_secs(300));
        let (event, target) = (s.event.clone(), s.target.clone());
        self.emit(SipEvent::SubscriptionFailed {
            sub: id,
            event,
            target,
            why: why.to_owned(),
        });
    }

    /// The earliest SUBSCRIBE due.
    pub(super) fn subscriptions_deadline(&self) -> Option<Instant> {
        self.subs.iter().filter_map(|s| s.next).min()
    }

    /// Sends the SUBSCRIBEs due.
    pub(super) async fn subscriptions_due(&mut self, now: Instant) {
        let due: Vec<SubId> = (0..self.subs.len())
            .filter(|&i| self.subs[i].next.is_some_and(|t| t <= now))
            .map(SubId)
            .collect();
        for id in due {
            self.send_subscribe(id).await;
        }
    }

    /// A NOTIFY: ours (a subscription's: Call-ID and our tag), or an unsolicited
    /// message-summary from the registrar. `false`: not for a subscription (the caller goes on
    /// with it as a dialog's request).
    pub(super) async fn on_subscription_notify(
        &mut self,
        msg: &Message,
        from: SocketAddr,
        proto: Proto,
    ) -> bool {
        let call_id = msg.call_id().unwrap_or("");
        let to_tag = msg
            .get("To")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|t| t.tag().map(str::to_owned));
        let event = msg
            .get("Event")
            .map(|e| e.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&msg.body).into_owned();
        let sub = self
            .subs
            .iter()
            .position(|s| s.call_id == call_id && to_tag.as_deref() == Some(s.tag.as_str()));
        if let Some(i) = sub {
            if self.subs[i].event != event {
                self.refuse(from, proto, msg, 489, "Bad Event", &[]).await;
                return true;
            }
            let ok = Message::response(msg, 200, "OK");
            self.respond(from, proto, msg, ok).await;
            let terminated = msg
                .get("Subscription-State")
                .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("terminated"));
            if terminated {
                // The notifier ended it: a new one after a pause.
                let s = &mut self.subs[i];
                s.active = false;
                s.call_id = format!("{}@ctiphone", random_token(20));
                s.tag = random_token(10);
                s.remote_tag = None;
                s.next = Some(Instant::now() + s.backoff);
            }
            self.emit(SipEvent::Notified {
                sub: Some(SubId(i)),
                event,
                body,
            });
            return true;
        }
        if to_tag.is_some() {
            return false;
        }
        // Unsolicited (RFC 3842 §3: some servers send message-summary without a
        // subscription): only from the registrar, never from anyone who can reach our port.
        if event == "message-summary" && self.cfg.registrar.is_some_and(|r| r.ip() == from.ip()) {
            let ok = Message::response(msg, 200, "OK");
            self.respond(from, proto, msg, ok).await;
            self.emit(SipEvent::Notified {
                sub: None,
                event,
                body,
            });
        } else {
            tracing::info!(%from, %event, "unsolicited NOTIFY from a stranger refused");
            self.refuse(from, proto, msg, 403, "Forbidden", &[]).await;
        }
        true
    }
}
