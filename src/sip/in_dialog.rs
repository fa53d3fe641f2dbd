//! Requests inside a dialog (RFC 3261 §12.2.2): matched by Call-ID and both tags (481
//! otherwise), CSeq in order (500 otherwise); BYE, INFO, NOTIFY, OPTIONS; a re-INVITE or UPDATE
//! with an offer handed to the call layer and answered when it says (491 on glare, 500 while one
//! is pending), an UPDATE without SDP answered here as a session refresh (RFC 4028).

use std::net::SocketAddr;
use std::time::Instant;

use super::addr::NameAddr;
use super::dialog::{self, AwaitingAck, DialogEnd, DialogId, DialogState, PendingOffer, Role, SessionTimer};
use super::message::Message;
use super::stack::*;
use super::transaction::{T1, TX_TIMEOUT, server_key};
use super::transport::Proto;

impl Stack {
    /// The dialog a request inside one belongs to: Call-ID, our tag (its To tag) and the
    /// peer's tag (its From tag) all match (RFC 3261 §12.2.2).
    pub(super) fn match_dialog(&self, msg: &Message) -> Option<DialogId> {
        let call_id = msg.call_id()?;
        let to_tag = msg
            .get("To")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|t| t.tag().map(str::to_owned))?;
        let from_tag = msg
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok())
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        let id = *self.by_key.get(&(call_id.to_owned(), to_tag))?;
        let d = self.dialogs.get(&id)?;
        // A UAC dialog whose peer has not answered with a tag yet has none to compare.
        let theirs = d.remote_tag();
        (theirs == from_tag || (d.role == Role::Uac && theirs.is_empty())).then_some(id)
    }

    pub(super) async fn on_in_dialog(&mut self, msg: Message, from: SocketAddr, proto: Proto) {
        let method = msg.method().unwrap_or("").to_owned();
        let Some(id) = self.match_dialog(&msg) else {
            self.refuse(from, proto, &msg, 481, "Call/Transaction Does Not Exist", &[])
                .await;
            return;
        };
        let cseq = msg.cseq().map_or(0, |(n, _)| n);
        let in_order = self
            .dialogs
            .get_mut(&id)
            .is_some_and(|d| d.accept_remote_cseq(cseq));
        if !in_order {
            self.refuse(from, proto, &msg, 500, "CSeq Out of Order", &[])
                .await;
            return;
        }
        // A new asserted identity (a PBX's connected-line update after a transfer).
        if matches!(method.as_str(), "INVITE" | "UPDATE")
            && let Some(pai) = dialog::asserted_identity(&msg)
            && let Some(d) = self.dialogs.get_mut(&id)
            && d.identity.as_deref() != Some(pai.as_str())
        {
            d.identity = Some(pai);
            self.emit(SipEvent::IdentityChanged {
                dialog: id,
                request: Box::new(msg.clone()),
            });
        }
        match method.as_str() {
            "BYE" => {
                let ok = Message::response(&msg, 200, "OK");
                self.respond(from, proto, &msg, ok).await;
                let early = self
                    .dialogs
                    .get(&id)
                    .is_some_and(|d| d.state == DialogState::Early);
                if early {
                    self.terminate_invite(id, 487, "Request Terminated").await;
                    self.end(id, DialogEnd::Cancelled);
                } else {
                    self.end(id, DialogEnd::RemoteBye);
                }
            }
            "INVITE" | "UPDATE" => self.on_offer(id, msg, from, proto).await,
            "PRACK" => self.on_prack(id, msg, from, proto).await,
            "INFO" => {
                let ok = Message::response(&msg, 200, "OK");
                self.respond(from, proto, &msg, ok).await;
                self.emit(SipEvent::Info {
                    dialog: id,
                    content_type: msg.get("Content-Type").unwrap_or("").to_ascii_lowercase(),
                    body: String::from_utf8_lossy(&msg.body).into_owned(),
                });
            }
            "NOTIFY" => {
                let ok = Message::response(&msg, 200, "OK");
                self.respond(from, proto, &msg, ok).await;
                self.emit(SipEvent::Notify {
                    dialog: id,
                    event: msg.get("Event").unwrap_or("").to_owned(),
                    body: String::from_utf8_lossy(&msg.body).into_owned(),
                    source: from,
                });
            }
            "OPTIONS" => {
                let mut r = Message::response(&msg, 200, "OK");
                r.push("Allow", ALLOW).push("Supported", SUPPORTED);
                self.respond(from, proto, &msg, r).await;
            }
            _ => {
                let mut r = Message::response(&msg, 501, "Not Implemented");
                r.push("Allow", ALLOW);
                self.respond(from, proto, &msg, r).await;
            }
        }
    }

    /// A re-INVITE or UPDATE: a session refresh answered here, an offer handed to the call
    /// layer.
    pub(super) async fn on_offer(&mut self, id: DialogId, msg: Message, from: SocketAddr, proto: Proto) {
        let Some(d) = self.dialogs.get(&id) else { return };
        let method = msg.method().unwrap_or("").to_owned();
        let reinvite = method == "INVITE";
        if reinvite && d.state == DialogState::Early {
            // A re-INVITE before the dialog is confirmed (RFC 3261 §14.2 allows it only then).
            self.refuse(from, proto, &msg, 491, "Request Pending", &[]).await;
            return;
        }
        if d.pending_out.is_some() {
            // Glare: both sides offered at once (RFC 3261 §14.2).
            self.refuse(from, proto, &msg, 491, "Request Pending", &[]).await;
            return;
        }
        if d.pending_in.is_some() || (reinvite && d.ok_wait.is_some()) {
            self.refuse(
                from,
                proto,
                &msg,
                500,
                "Server Internal Error",
                &[("Retry-After", "1".into())],
            )
            .await;
            return;
        }
        if self.refused_short_interval(&msg, from, proto).await {
            return;
        }
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.refresh_target(&msg);
        }
        let sdp = (!msg.body.is_empty()).then(|| String::from_utf8_lossy(&msg.body).into_owned());
        if !reinvite && sdp.is_none() {
            // An UPDATE without SDP: a session refresh (RFC 4028), answered here.
            let mut ok = Message::response(&msg, 200, "OK");
            if let Some(d) = self.dialogs.get(&id) {
                ok.push("Contact", self.dialog_contact(d));
            }
            self.restart_timer_for(id, &msg, &mut ok);
            self.respond(from, proto, &msg, ok).await;
            return;
        }
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.pending_in = Some(PendingOffer {
                request: msg,
                from,
                proto,
            });
        }
        self.emit(SipEvent::Offer { dialog: id, sdp });
    }

    /// Restarts the session timer from a refresh request `req` and writes its headers into
    /// `resp`.
    pub(super) fn restart_timer_for(&mut self, id: DialogId, req: &Message, resp: &mut Message) {
        let Some(d) = self.dialogs.get(&id) else { return };
        let t = self.timer_for_answer(d, req, resp);
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.timer = t.map(|(interval, we)| SessionTimer::start(interval, we, Instant::now()));
        }
    }

    /// Answers the peer's pending offer: 200 with `sdp` (an answer, or our offer for a
    /// re-INVITE without SDP: the answer comes in the ACK).
    pub async fn answer_offer(&mut self, id: DialogId, sdp: String, offered: bool) {
        let Some(p) = self.dialogs.get_mut(&id).and_then(|d| d.pending_in.take()) else {
            return;
        };
        let mut ok = Message::response(&p.request, 200, "OK");
        if let Some(d) = self.dialogs.get(&id) {
            ok.push("Contact", self.dialog_contact(d));
        }
        ok.push("Allow", ALLOW).push("Supported", SUPPORTED);
        self.restart_timer_for(id, &p.request, &mut ok);
        ok.with_body("application/sdp", sdp.into_bytes());
        let reinvite = p.request.method() == Some("INVITE");
        self.respond(p.from, p.proto, &p.request, ok).await;
        if reinvite {
            let bytes = server_key(&p.request).and_then(|k| self.servers.get(&k).map(|t| t.last.clone()));
            let now = Instant::now();
            let cseq = p.request.cseq().map_or(0, |(n, _)| n);
            if let (Some(d), Some(b)) = (self.dialogs.get_mut(&id), bytes) {
                let stream = p.proto.is_stream();
                d.ok_wait = Some(AwaitingAck {
                    cseq,
                    bytes: b,
                    next: if stream { now + TX_TIMEOUT } else { now + T1 },
                    interval: T1,
                    give_up: now + TX_TIMEOUT,
                    offered,
                });
            }
        }
    }

    /// Refuses the peer's pending offer (488, 491…): the session stays as it was.
    pub async fn refuse_offer(&mut self, id: DialogId, code: u16, reason: &str, warning: Option<&str>) {
        let Some(p) = self.dialogs.get_mut(&id).and_then(|d| d.pending_in.take()) else {
            return;
        };
        let mut r = Message::response(&p.request, code, reason);
        if let Some(w) = warning {
            r.push("Warning", format!("399 ctiphone \"{}\"", warning_text(w)));
        }
        self.respond(p.from, p.proto, &p.request, r).await;
    }
}
