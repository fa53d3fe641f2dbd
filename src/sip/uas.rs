//! The answering side of an INVITE (RFC 3261 §13.3): a new INVITE checked and its dialog
//! made (100 Trying unless the call layer answers at once), ringing (180, reliable per RFC 3262 when the caller takes it, until
//! its PRACK), the 2xx with the session timer's headers retransmitted until its ACK, refusals,
//! and CANCEL matched to its INVITE transaction (§9.2).

use std::net::SocketAddr;
use std::time::Instant;

use super::addr::NameAddr;
use super::dialog::{
    self, AwaitingAck, Dialog, DialogEnd, DialogId, DialogState, Role, SessionTimer, Unacked,
};
use super::message::Message;
use super::stack::*;
use super::transaction::{T1, TX_TIMEOUT, server_key};
use super::transport::Proto;

impl Stack {
    /// A new INVITE (no To tag), `key` its server transaction's.
    pub(super) async fn on_invite(
        &mut self,
        msg: Message,
        from: SocketAddr,
        proto: Proto,
        key: Option<String>,
    ) {
        let call_id = msg.call_id().unwrap_or("").to_owned();
        let from_tag = msg
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok())
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        // A request that already reached us by another path (§8.2.2.2): same From tag, Call-ID
        // and CSeq, another transaction.
        if self
            .dialogs
            .values()
            .any(|d| d.role == Role::Uas && d.call_id == call_id && d.remote_tag() == from_tag)
        {
            self.refuse(from, proto, &msg, 482, "Loop Detected", &[]).await;
            return;
        }
        let offer = if msg.body.is_empty() {
            None
        } else {
            let ct = msg
                .get("Content-Type")
                .unwrap_or("application/sdp")
                .to_ascii_lowercase();
            if !ct.starts_with("application/sdp") {
                self.refuse(
                    from,
                    proto,
                    &msg,
                    415,
                    "Unsupported Media Type",
                    &[("Accept", "application/sdp".into())],
                )
                .await;
                return;
            }
            // Our answer is SDP too: a caller that accepts no SDP cannot have one (RFC 4475
            // §3.3.15).
            if !accepts_sdp(&msg) {
                self.refuse(from, proto, &msg, 406, "Not Acceptable", &[]).await;
                return;
            }
            Some(String::from_utf8_lossy(&msg.body).into_owned())
        };
        // RFC 4028 §8: a session interval below our minimum is refused with ours.
        if self.refused_short_interval(&msg, from, proto).await {
            return;
        }
        let Ok(remote) = msg.get("From").map(NameAddr::parse).unwrap_or(Err(String::new())) else {
            self.refuse(from, proto, &msg, 400, "Bad From", &[]).await;
            return;
        };
        let Ok(mut local) = msg.get("To").map(NameAddr::parse).unwrap_or(Err(String::new())) else {
            self.refuse(from, proto, &msg, 400, "Bad To", &[]).await;
            return;
        };
        local.set_param("tag", &random_token(10));
        let id = self.new_dialog_id();
        let mut d = Dialog::new(id, call_id.clone(), Role::Uas, local, remote, from, proto);
        d.remote_target = msg
            .get_all("Contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri)
            .unwrap_or_else(|| msg.uri().unwrap_or("").to_owned());
        d.route = msg
            .get_all("Record-Route")
            .iter()
            .map(|s| s.to_string())
            .collect();
        if d.route.is_empty() {
            // A direct call over a stream: the caller is reached back over its connection
            // when its Contact has no server of its own.
            self.transport.reuse_for(proto, d.destination().0, from);
        }
        d.local_cseq = rand::random_range(1..10_000);
        d.remote_cseq = msg.cseq().map(|(n, _)| n);
        d.invite_key = key;
        d.peer_100rel = dialog::has_option_tag(&msg, "Supported", "100rel")
            || dialog::has_option_tag(&msg, "Require", "100rel");
        d.peer_timer = dialog::has_option_tag(&msg, "Supported", "timer")
            || dialog::has_option_tag(&msg, "Require", "timer");
        d.peer_update = dialog::allows(&msg, "UPDATE");
        d.identity = dialog::asserted_identity(&msg);
        // Shared with the event: the INVITE is not copied on the way to its 180.
        let msg = std::sync::Arc::new(msg);
        d.invite = Some(msg.clone());
        // 100 Trying only if the call layer does not answer at once (RFC 3261 §17.2.1: it is
        // for a TU that will not respond within 200 ms): see `Stack::flush_trying`.
        self.trying.push(id);
        self.insert_dialog(d);
        self.emit(SipEvent::Incoming {
            dialog: id,
            call_id,
            request: msg,
            offer,
            source: from,
        });
    }

    /// A UAS dialog's INVITE response with our tag and Contact.
    pub(super) fn invite_response(&self, d: &Dialog, code: u16, reason: &str) -> Option<Message> {
        let invite = d.invite.as_ref()?;
        let mut r = Message::response(invite, code, reason);
        r.set("To", d.local.to_string());
        if code < 300 {
            r.push("Contact", self.dialog_contact(d));
        }
        Some(r)
    }

    /// Rings an incoming call: 180, reliable (RFC 3262) when the caller takes it.
    pub async fn ring(&mut self, id: DialogId) {
        let Some(d) = self.dialogs.get(&id) else { return };
        if d.invite_answered {
            return;
        }
        let Some(mut r) = self.invite_response(d, 180, "Ringing") else {
            return;
        };
        let (peer, proto, reliable, key) = (d.peer, d.proto, d.peer_100rel, d.invite_key.clone());
        let Some(invite) = d.invite.clone() else { return };
        if reliable {
            let Some(d) = self.dialogs.get_mut(&id) else {
                return;
            };
            d.rseq = if d.rseq == 0 {
                rand::random_range(1..100_000)
            } else {
                d.rseq + 1
            };
            r.push("Require", "100rel").push("RSeq", d.rseq.to_string());
            r.push("Allow", ALLOW);
            let now = Instant::now();
            let rseq = d.rseq;
            d.unacked = Some(Unacked {
                rseq,
                bytes: Vec::new(),
                next: now + T1,
                interval: T1,
                give_up: now + TX_TIMEOUT,
            });
        }
        self.respond_keyed(peer, proto, &invite, r, key).await;
        // The reliable 180's bytes (with the Via rport filled in) as the transaction kept them.
        if reliable {
            let key = self.dialogs.get(&id).and_then(|d| d.invite_key.clone());
            let bytes = key.and_then(|k| self.servers.get(&k).map(|t| t.last.clone()));
            if let (Some(b), Some(d)) = (bytes, self.dialogs.get_mut(&id))
                && let Some(u) = &mut d.unacked
            {
                u.bytes = b;
            }
        }
    }

    /// Answers an incoming call 200 with `sdp` (an answer to its offer, or our offer when the
    /// INVITE had none: the answer then comes in the ACK).
    pub async fn accept(&mut self, id: DialogId, sdp: String, offered: bool) {
        let Some(d) = self.dialogs.get(&id) else { return };
        if d.invite_answered {
            return;
        }
        let Some(mut ok) = self.invite_response(d, 200, "OK") else {
            return;
        };
        ok.push("Allow", ALLOW).push("Supported", SUPPORTED);
        let timer = d
            .invite
            .as_ref()
            .and_then(|inv| self.timer_for_answer(d, inv, &mut ok));
        ok.with_body("application/sdp", sdp.into_bytes());
        let (peer, proto, key) = (d.peer, d.proto, d.invite_key.clone());
        let Some(invite) = d.invite.clone() else { return };
        self.respond_keyed(peer, proto, &invite, ok, key).await;
        let bytes = self
            .dialogs
            .get(&id)
            .and_then(|d| d.invite_key.as_deref())
            .and_then(|k| self.servers.get(k))
            .map(|t| t.last.clone());
        let now = Instant::now();
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        d.state = DialogState::Confirmed;
        d.invite_answered = true;
        d.unacked = None;
        d.timer = timer.map(|(interval, we)| SessionTimer::start(interval, we, now));
        let cseq = invite.cseq().map_or(0, |(n, _)| n);
        d.ok_wait = bytes.map(|b| AwaitingAck {
            cseq,
            bytes: b,
            next: now + T1,
            interval: T1,
            give_up: now + TX_TIMEOUT,
            offered,
        });
        if proto.is_stream()
            && let Some(w) = &mut d.ok_wait
        {
            // Nothing to retransmit over a stream; only the wait for the ACK.
            w.next = w.give_up;
        }
    }

    /// The session timer of a 2xx to `req` (RFC 4028 §9): the headers added to `resp`, and the
    /// interval with whether we refresh. `None`: no session timer.
    pub(super) fn timer_for_answer(
        &self,
        d: &Dialog,
        req: &Message,
        resp: &mut Message,
    ) -> Option<(u32, bool)> {
        let (se, refresher) = dialog::session_expires(req)?;
        let se = se.max(MIN_SE);
        let peer_timer = d.peer_timer || dialog::has_option_tag(req, "Supported", "timer");
        // Who refreshes, from this transaction's view: its UAC (the peer) or UAS (us).
        let uac_refreshes = match refresher.as_deref() {
            Some("uac") => true,
            Some("uas") => false,
            _ => peer_timer,
        };
        resp.push(
            "Session-Expires",
            format!("{se};refresher={}", if uac_refreshes { "uac" } else { "uas" }),
        );
        if peer_timer {
            resp.push("Require", "timer");
        }
        Some((se, !uac_refreshes))
    }

    /// Refuses an incoming call with a final response; its dialog ends (no event: the call
    /// layer chose it).
    pub async fn reject(&mut self, id: DialogId, code: u16, reason: &str) {
        if self.dialogs.get(&id).is_some_and(|d| !d.invite_answered) {
            self.terminate_invite(id, code, reason).await;
            self.remove_dialog(id);
        }
    }

    pub(super) fn on_ack(&mut self, msg: &Message) {
        let Some(id) = self.match_dialog(msg) else {
            return;
        };
        let cseq = msg.cseq().map_or(0, |(n, _)| n);
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let Some(_acked) = d.ok_wait.take_if(|w| w.cseq == cseq) else {
            return;
        };
        let sdp = (!msg.body.is_empty()).then(|| String::from_utf8_lossy(&msg.body).into_owned());
        self.emit(SipEvent::Acked { dialog: id, sdp });
    }

    pub(super) async fn on_cancel(&mut self, msg: Message, from: SocketAddr, proto: Proto) {
        let key = server_key(&msg).map(|k| k.replacen("|CANCEL", "|INVITE", 1));
        let found = key.as_deref().and_then(|k| {
            self.dialogs
                .values()
                .find(|d| d.role == Role::Uas && d.invite_key.as_deref() == Some(k))
                .map(|d| (d.id, d.invite_answered))
        });
        match found {
            Some((id, false)) => {
                let mut ok = Message::response(&msg, 200, "OK");
                add_tag(&mut ok);
                self.respond(from, proto, &msg, ok).await;
                self.terminate_invite(id, 487, "Request Terminated").await;
                self.end(id, DialogEnd::Cancelled);
            }
            found => {
                // An INVITE already answered (its transaction still known, or its dialog up):
                // the CANCEL matched and has no effect, 200 (RFC 3261 §9.2); else 481.
                let known = found.is_some() || key.as_deref().is_some_and(|k| self.servers.get(k).is_some());
                let (code, reason) = if known {
                    (200, "OK")
                } else {
                    (481, "Call/Transaction Does Not Exist")
                };
                self.refuse(from, proto, &msg, code, reason, &[]).await;
            }
        }
    }

    /// Answers a UAS dialog's INVITE with a final failure (after CANCEL, BYE or a missing PRACK).
    pub(super) async fn terminate_invite(&mut self, id: DialogId, code: u16, reason: &str) {
        let Some(d) = self.dialogs.get(&id) else { return };
        if d.invite_answered {
            return;
        }
        let Some(r) = self.invite_response(d, code, reason) else {
            return;
        };
        let (peer, proto) = (d.peer, d.proto);
        let Some(invite) = d.invite.clone() else { return };
        self.respond(peer, proto, &invite, r).await;
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.invite_answered = true;
            d.unacked = None;
        }
    }

    pub(super) async fn on_prack(&mut self, id: DialogId, msg: Message, from: SocketAddr, proto: Proto) {
        // RAck: response-num CSeq-num method (RFC 3262 §7.2).
        let rack: Vec<String> = msg
            .get("RAck")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let invite_cseq = self
            .dialogs
            .get(&id)
            .and_then(|d| d.invite.as_ref())
            .and_then(|i| i.cseq().map(|(n, _)| n));
        let matches = self.dialogs.get(&id).is_some_and(|d| {
            rack.len() == 3
                && rack[0].parse::<u32>().ok() == Some(d.rseq)
                && d.rseq != 0
                && rack[1].parse::<u32>().ok() == invite_cseq
                && rack[2].eq_ignore_ascii_case("INVITE")
        });
        if !matches {
            self.refuse(from, proto, &msg, 481, "Call/Transaction Does Not Exist", &[])
                .await;
            return;
        }
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.unacked = None;
        }
        let ok = Message::response(&msg, 200, "OK");
        self.respond(from, proto, &msg, ok).await;
    }
}
