//! The calling side (RFC 3261 §13.2): our INVITE with its retries (digest authentication,
//! 422 Min-SE), its provisional answers (PRACK for a reliable one, RFC 3262 §4), the 2xx ACKed,
//! CANCEL, our re-offers by re-INVITE or UPDATE, REFER and INFO inside a dialog.

use std::net::SocketAddr;
use std::time::Instant;

use super::addr::{NameAddr, Via};
use super::auth;
use super::dialog::{self, Dialog, DialogEnd, DialogId, DialogState, Role, SessionTimer};
use super::message::{Message, StartLine};
use super::stack::*;
use super::transaction::{ClientTx, failure_ack};
use super::transport::{Inbound, Proto};

impl Stack {
    /// Calls `target` (a request URI) at `dest`: a new dialog with Call-ID `call_id`, From
    /// `from` (tag added here), our offer `sdp`, `headers` added. Its progress comes as
    /// `Early`, `Confirmed` or `Ended` events.
    pub async fn invite(
        &mut self,
        call_id: &str,
        target: &str,
        dest: SocketAddr,
        mut from: NameAddr,
        headers: &[(String, String)],
        sdp: String,
    ) -> DialogId {
        from.set_param("tag", &random_token(10));
        let id = self.new_dialog_id();
        // A sips: target is never reached over anything but TLS (no downgrade).
        let proto = if wants_tls(target) {
            Proto::Tls
        } else {
            self.cfg.proto
        };
        if proto == Proto::Tls
            && self.cfg.registrar != Some(dest)
            && let Ok(u) = super::addr::Uri::parse(target)
            && ip_literal(&u.host).is_none()
        {
            // Straight to the target: its certificate must name the target's host.
            self.transport.expect_name(dest, &u.host);
        }
        let mut d = Dialog::new(
            id,
            call_id.to_owned(),
            Role::Uac,
            from,
            NameAddr::new(target),
            dest,
            proto,
        );
        d.remote_target = target.to_owned();
        let mut inv = Message::request("INVITE", target);
        inv.push("From", d.local.to_string())
            .push("To", d.remote.to_string())
            .push("Call-ID", call_id.to_owned())
            .push("CSeq", "1 INVITE")
            .push(
                "Contact",
                if is_sips(target) {
                    self.sips_contact()
                } else {
                    self.contact_for(proto)
                },
            )
            .push("Allow", ALLOW)
            .push("Supported", SUPPORTED)
            .push("Session-Expires", SESSION_EXPIRES.to_string())
            .push("Min-SE", MIN_SE.to_string());
        for (name, value) in headers {
            inv.push(name, value.clone());
        }
        inv.with_body("application/sdp", sdp.into_bytes());
        self.insert_dialog(d);
        self.send_invite(id, inv, dest, proto).await;
        id
    }

    pub(super) async fn send_invite(&mut self, id: DialogId, inv: Message, dest: SocketAddr, proto: Proto) {
        let br = self.send_request(inv, dest, proto, Owner::Invite(id)).await;
        // To one of several registrar addresses: no answer at all (not even 100 Trying) soon
        // moves on to the next (RFC 3263 §4.3); a provisional answer gives it Timer C.
        if self.cfg.registrar_targets.len() > 1
            && self.cfg.registrar_targets.contains(&dest)
            && let Some(tx) = self.clients.get_mut(&br)
            && !tx.done
        {
            tx.deadline = tx
                .deadline
                .min(Instant::now() + super::registration::FAILOVER_TIMEOUT);
        }
        let sent = self.clients.get(&br).and_then(|t| Message::parse(&t.bytes).ok());
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.our_invite = sent;
            d.our_branch = Some(br);
        }
    }

    /// Ends a dialog from our side: BYE when confirmed, CANCEL for our early INVITE, a final
    /// response (`code`) for an incoming INVITE not answered yet.
    pub async fn hangup(&mut self, id: DialogId, code: u16, reason: &str) {
        let Some(d) = self.dialogs.get(&id) else { return };
        match (d.role, d.state) {
            (_, DialogState::Confirmed) => {
                let Some(d) = self.dialogs.get_mut(&id) else {
                    return;
                };
                let bye = d.request("BYE", None);
                let (to, proto) = d.destination();
                self.send_request(bye, to, proto, Owner::None).await;
                self.remove_dialog(id);
            }
            (Role::Uac, DialogState::Early) => self.cancel(id).await,
            (Role::Uas, DialogState::Early) => self.reject(id, code, reason).await,
        }
    }

    pub(super) async fn cancel(&mut self, id: DialogId) {
        let Some(d) = self.dialogs.get(&id) else { return };
        let Some(inv) = d.our_invite.clone() else {
            self.remove_dialog(id);
            return;
        };
        let mut cancel = Message::request("CANCEL", inv.uri().unwrap_or(""));
        if let Some(v) = inv.get_all("Via").first() {
            cancel.push("Via", v.to_string());
        }
        cancel
            .push("Max-Forwards", "70")
            .push("From", inv.get("From").unwrap_or("").to_owned())
            .push("To", inv.get("To").unwrap_or("").to_owned())
            .push("Call-ID", d.call_id.clone())
            .push("CSeq", format!("{} CANCEL", inv.cseq().map_or(1, |(n, _)| n)));
        for r in inv.get_all("Route") {
            cancel.push("Route", r.to_string());
        }
        let (to, proto) = (d.peer, d.proto);
        // CANCEL keeps the INVITE's branch: a transaction of its own keyed by method.
        let bytes = cancel.to_bytes();
        let key = format!("{}#CANCEL", d.our_branch.clone().unwrap_or_default());
        let now = Instant::now();
        self.clients.insert(
            key,
            ClientTx::new("CANCEL", bytes.clone(), to, proto, Owner::None, now),
        );
        self.send(proto, to, bytes).await;
        // The INVITE transaction goes on: a 2xx that crosses the CANCEL is ACKed and BYEd.
        self.remove_dialog(id);
    }

    /// Offers `sdp` inside a confirmed dialog: a re-INVITE, or an UPDATE when `update` and the
    /// peer takes it. The answer comes as `OfferAnswered` or `OfferRefused`.
    pub async fn reoffer(&mut self, id: DialogId, sdp: String, update: bool) -> bool {
        let Some(contact) = self.dialogs.get(&id).map(|d| self.dialog_contact(d)) else {
            return false;
        };
        let Some(d) = self.dialogs.get_mut(&id) else {
            return false;
        };
        if d.pending_out.is_some() || d.pending_in.is_some() || d.state != DialogState::Confirmed {
            return false;
        }
        let method = if update && d.peer_update {
            "UPDATE"
        } else {
            "INVITE"
        };
        let mut req = d.request(method, None);
        req.push("Contact", contact)
            .push("Allow", ALLOW)
            .push("Supported", SUPPORTED);
        if let Some(t) = d.timer {
            req.push(
                "Session-Expires",
                format!(
                    "{};refresher={}",
                    t.interval,
                    if t.we_refresh { "uac" } else { "uas" }
                ),
            );
        }
        req.with_body("application/sdp", sdp.into_bytes());
        let (to, proto) = d.destination();
        let br = self.send_request(req, to, proto, Owner::Reoffer(id)).await;
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.pending_out = Some(br);
        }
        true
    }

    /// Sends a request inside a dialog whose answer nobody waits for (INFO).
    pub async fn send_in_dialog(&mut self, id: DialogId, method: &str, content_type: &str, body: Vec<u8>) {
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let mut req = d.request(method, None);
        req.with_body(content_type, body);
        let (to, proto) = d.destination();
        self.send_request(req, to, proto, Owner::None).await;
    }

    /// Asks the peer to call `target` (RFC 3515): a plain URI for a blind transfer, or one
    /// carrying `?Replaces=…` for an attended one (RFC 5589 §7). `target` goes into
    /// `Refer-To: <…>` as given; the caller escapes it.
    pub async fn refer(&mut self, id: DialogId, target: &str) {
        let (aor, contact) = (self.aor(), self.contact());
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let mut refer = d.request("REFER", None);
        refer
            .push("Refer-To", format!("<{target}>"))
            .push("Referred-By", format!("<{aor}>"))
            .push("Contact", contact);
        let (to, proto) = d.destination();
        self.send_request(refer, to, proto, Owner::Refer(id)).await;
    }

    /// What identifies dialog `id` to others: its Call-ID, tags and parties.
    pub fn dialog_info(&self, id: DialogId) -> Option<DialogInfo> {
        let d = self.dialogs.get(&id)?;
        Some(DialogInfo {
            call_id: d.call_id.clone(),
            local_tag: d.local_tag().to_owned(),
            remote_tag: d.remote_tag().to_owned(),
            remote_uri: d.remote.uri.clone(),
            remote_target: d.remote_target.clone(),
            uac: d.role == Role::Uac,
            confirmed: d.state == DialogState::Confirmed,
            tls: d.proto == Proto::Tls,
        })
    }

    /// The dialog a `Replaces` header names (RFC 3891 §3: its to-tag is our tag, its
    /// from-tag the peer's).
    pub fn find_replaced(&self, call_id: &str, to_tag: &str, from_tag: &str) -> Option<DialogId> {
        let id = *self.by_key.get(&(call_id.to_owned(), to_tag.to_owned()))?;
        let d = self.dialogs.get(&id)?;
        (d.remote_tag() == from_tag).then_some(id)
    }

    // ------------------------------------------------------------------------ responses

    pub(super) async fn on_response(&mut self, inb: Inbound) {
        let msg = &inb.msg;
        let Some(code) = msg.code() else { return };
        let Some(br) = msg
            .get_all("Via")
            .first()
            .and_then(|v| Via::parse(v).ok())
            .and_then(|v| v.branch().map(str::to_owned))
        else {
            return;
        };
        let cseq_method = msg.cseq().map(|(_, m)| m.to_owned()).unwrap_or_default();
        let key = if cseq_method == "CANCEL" {
            format!("{br}#CANCEL")
        } else {
            br.clone()
        };
        let now = Instant::now();
        let Some(tx) = self.clients.get_mut(&key) else {
            // A 2xx retransmitted after its transaction ended: ACK it again.
            if (200..300).contains(&code) && cseq_method == "INVITE" {
                let found = self.dialogs.values().find(|d| {
                    d.role == Role::Uac && msg.call_id() == Some(d.call_id.as_str()) && d.ack.is_some()
                });
                if let Some((ack, to, proto)) = found.and_then(|d| {
                    let (to, proto) = d.destination();
                    d.ack.clone().map(|a| (a, to, proto))
                }) {
                    self.send(proto, to, ack).await;
                }
            }
            return;
        };
        if tx.method != cseq_method {
            return;
        }
        if tx.done {
            if let Some(ack) = tx.ack.clone() {
                let (to, p) = (tx.to, tx.proto);
                self.send(p, to, ack).await;
            }
            return;
        }
        if code < 200 {
            tx.provisional(now);
        } else {
            tx.finished(now);
        }
        let owner = tx.owner.clone();
        let method = tx.method.clone();
        // A failed INVITE is ACKed by its transaction (same branch), whatever became of the call.
        if method == "INVITE"
            && code >= 300
            && let Some(ack) = Message::parse(&tx.bytes).ok().map(|inv| failure_ack(&inv, msg))
        {
            tx.ack = Some(ack.clone());
            let (to, p) = (tx.to, tx.proto);
            self.send(p, to, ack).await;
        }
        match owner {
            Owner::Register => self.on_register_response(msg, code).await,
            Owner::Subscribe(id) => self.on_subscribe_response(id, msg, code).await,
            Owner::Invite(id) => {
                if self.dialogs.contains_key(&id) {
                    self.on_invite_response(id, msg, code).await;
                } else if (200..300).contains(&code) {
                    // Answered after we gave up on it (a CANCEL that lost the race): ACK, BYE.
                    self.ack_and_bye(msg, inb.from, inb.proto).await;
                }
            }
            Owner::Reoffer(id) => self.on_reoffer_response(id, msg, code).await,
            Owner::Refer(id) if code >= 300 => {
                let reason = reason_phrase(msg);
                self.emit(SipEvent::ReferRefused {
                    dialog: id,
                    code,
                    reason,
                });
            }
            Owner::Refer(_) | Owner::Prack(_) | Owner::None => {}
        }
    }

    pub(super) async fn on_invite_response(&mut self, id: DialogId, msg: &Message, code: u16) {
        if code == 100 {
            return;
        }
        let tag = msg
            .get("To")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|t| t.tag().map(str::to_owned));
        if code < 300 {
            let Some(d) = self.dialogs.get_mut(&id) else {
                return;
            };
            if let Some(tag) = &tag {
                d.remote.set_param("tag", tag);
            }
            d.refresh_target(msg);
            // The route set comes from the response that creates the dialog, and is computed
            // again from the 2xx (RFC 3261 §12.1.2, §13.2.2.4).
            d.route = msg
                .get_all("Record-Route")
                .iter()
                .rev()
                .map(|s| s.to_string())
                .collect();
            d.peer_update = dialog::allows(msg, "UPDATE") || d.peer_update;
        }
        let sdp = (!msg.body.is_empty()).then(|| String::from_utf8_lossy(&msg.body).into_owned());
        if code < 200 {
            let reliable = dialog::has_option_tag(msg, "Require", "100rel");
            let rseq: Option<u32> = msg.get("RSeq").and_then(|r| r.trim().parse().ok());
            if reliable && let Some(rseq) = rseq {
                let Some(d) = self.dialogs.get_mut(&id) else {
                    return;
                };
                // In order, once each (RFC 3262 §4): a retransmission is not PRACKed again.
                if d.remote_rseq.is_some_and(|last| rseq <= last) {
                    return;
                }
                d.remote_rseq = Some(rseq);
                let invite_cseq = msg.cseq().map_or(1, |(n, _)| n);
                let mut prack = d.request("PRACK", None);
                prack.push("RAck", format!("{rseq} {invite_cseq} INVITE"));
                let (to, proto) = d.destination();
                self.send_request(prack, to, proto, Owner::Prack(id)).await;
            }
            self.emit(SipEvent::Early {
                dialog: id,
                code,
                sdp,
            });
            return;
        }
        if code < 300 {
            let cseq = msg.cseq().map_or(1, |(n, _)| n);
            let timer = dialog::session_expires(msg).map(|(se, r)| {
                // From our INVITE's view we are the UAC.
                (se.max(MIN_SE), r.as_deref() != Some("uas"))
            });
            let Some(d) = self.dialogs.get_mut(&id) else {
                return;
            };
            d.state = DialogState::Confirmed;
            d.timer = timer.map(|(se, we)| SessionTimer::start(se, we, Instant::now()));
            self.send_ack(id, cseq).await;
            self.emit(SipEvent::Confirmed { dialog: id, sdp });
            return;
        }
        if (code == 401 || code == 407)
            && self.dialogs.get(&id).is_some_and(|d| d.auth_tries == 0)
            && !self.cfg.password.is_empty()
            && let Some(ch) = auth::pick(&challenges(msg, code)).cloned()
            && let Some(inv) = self.dialogs.get(&id).and_then(|d| d.our_invite.clone())
        {
            let value = |inv: &Message, cfg: &StackConfig| {
                let uri = inv.uri().unwrap_or("").to_owned();
                auth::authorization(
                    &ch,
                    &cfg.auth_user,
                    &cfg.password,
                    "INVITE",
                    &uri,
                    1,
                    &random_token(12),
                    &inv.body,
                )
            };
            let header = auth::header_for(code == 407);
            let v = value(&inv, &self.cfg);
            self.retry_invite(id, inv, |d, m| {
                d.auth_tries += 1;
                m.set(header, v);
            })
            .await;
            return;
        }
        if code == 422
            && self.dialogs.get(&id).is_some_and(|d| !d.min_se_retried)
            && let Some(min) = dialog::min_se(msg)
            && let Some(inv) = self.dialogs.get(&id).and_then(|d| d.our_invite.clone())
        {
            // RFC 4028 §7.4: again with the interval the peer asks for.
            let min = min.max(MIN_SE);
            self.retry_invite(id, inv, |d, m| {
                d.min_se_retried = true;
                m.set("Session-Expires", min.to_string());
                m.set("Min-SE", min.to_string());
            })
            .await;
            return;
        }
        if code == 503 && self.invite_next_target(id, &reason_phrase(msg)).await {
            return;
        }
        if (300..400).contains(&code) {
            let targets = redirect_targets(msg);
            if !targets.is_empty() {
                self.emit(SipEvent::Redirected {
                    dialog: id,
                    code,
                    targets,
                });
            }
        }
        let reason = reason_phrase(msg);
        self.end(id, DialogEnd::Refused { code, reason });
    }

    /// RFC 3263 §4.3: our INVITE to one of the registrar's addresses got a 503 or no answer
    /// before any provisional response from the far end: the next address gets it (a new
    /// transaction, the same Call-ID). Whether it was sent.
    pub(super) async fn invite_next_target(&mut self, id: DialogId, why: &str) -> bool {
        let Some(d) = self.dialogs.get(&id) else {
            return false;
        };
        if d.state == DialogState::Confirmed || d.remote.tag().is_some() {
            return false;
        }
        let targets = &self.cfg.registrar_targets;
        let Some(next) = targets
            .iter()
            .position(|t| *t == d.peer)
            .and_then(|i| targets.get(i + 1).copied())
        else {
            return false;
        };
        let Some(inv) = d.our_invite.clone() else {
            return false;
        };
        let warning = format!(
            "call {}: {} {why}; trying {}",
            d.call_id,
            super::stack::fmt_addr(d.peer),
            super::stack::fmt_addr(next)
        );
        self.emit(SipEvent::Warning(warning));
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.peer = next;
        }
        self.retry_invite(id, inv, |_, _| {}).await;
        true
    }

    /// Sends our INVITE again with the next CSeq and `change` applied (authentication, Min-SE).
    pub(super) async fn retry_invite(
        &mut self,
        id: DialogId,
        mut inv: Message,
        change: impl FnOnce(&mut Dialog, &mut Message),
    ) {
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let cseq = inv.cseq().map_or(1, |(n, _)| n) + 1;
        inv.set("CSeq", format!("{cseq} INVITE"));
        change(d, &mut inv);
        d.local_cseq = cseq;
        let (to, proto) = (d.peer, d.proto);
        self.send_invite(id, inv, to, proto).await;
    }

    pub(super) async fn on_reoffer_response(&mut self, id: DialogId, msg: &Message, code: u16) {
        if code < 200 {
            return;
        }
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        d.pending_out = None;
        let method = msg.cseq().map(|(_, m)| m.to_owned()).unwrap_or_default();
        let sdp = (!msg.body.is_empty()).then(|| String::from_utf8_lossy(&msg.body).into_owned());
        if code < 300 {
            d.refresh_target(msg);
            if let Some((se, r)) = dialog::session_expires(msg) {
                d.timer = Some(SessionTimer::start(
                    se.max(MIN_SE),
                    r.as_deref() != Some("uas"),
                    Instant::now(),
                ));
            } else if d.timer.is_some() {
                // A refresh answered without the header: the interval we asked for.
                let t = d
                    .timer
                    .take()
                    .map(|t| SessionTimer::start(t.interval, t.we_refresh, Instant::now()));
                d.timer = t;
            }
            if method == "INVITE" {
                let cseq = msg.cseq().map_or(1, |(n, _)| n);
                self.send_ack(id, cseq).await;
            }
            if sdp.is_some() || method == "INVITE" {
                self.emit(SipEvent::OfferAnswered { dialog: id, sdp });
            }
            return;
        }
        // A 481 or 408 to a request inside the dialog ends it (RFC 3261 §12.2.1.2).
        if code == 481 || code == 408 {
            self.emit(SipEvent::OfferRefused {
                dialog: id,
                code,
                reason: reason_phrase(msg),
            });
            if let Some(d) = self.dialogs.get_mut(&id) {
                let bye = d.request("BYE", None);
                let (to, proto) = d.destination();
                self.send_request(bye, to, proto, Owner::None).await;
            }
            self.end(
                id,
                if code == 481 {
                    DialogEnd::Gone
                } else {
                    DialogEnd::Timeout
                },
            );
            return;
        }
        // Refused: the session stays as it was (RFC 3261 §14.1).
        self.emit(SipEvent::OfferRefused {
            dialog: id,
            code,
            reason: reason_phrase(msg),
        });
    }

    /// ACKs the peer's 2xx to our INVITE or re-INVITE with CSeq `cseq` (a transaction of its
    /// own, RFC 3261 §13.2.2.4), kept to ACK a retransmitted 2xx again.
    async fn send_ack(&mut self, id: DialogId, cseq: u32) {
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let mut ack = d.request("ACK", Some(cseq));
        let (to, proto) = d.destination();
        ack.headers.insert(0, ("Via".into(), self.via(proto, &branch())));
        ack.push("Max-Forwards", "70");
        let bytes = ack.to_bytes();
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.ack = Some(bytes.clone());
        }
        self.send(proto, to, bytes).await;
    }

    /// ACKs then ends a dialog we no longer want (a 2xx that arrived after we hung up).
    pub(super) async fn ack_and_bye(&mut self, resp: &Message, from: SocketAddr, proto: Proto) {
        let target = resp
            .get_all("Contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok())
            .map_or_else(
                || {
                    resp.get("To")
                        .and_then(|t| NameAddr::parse(t).ok())
                        .map(|t| t.uri)
                        .unwrap_or_default()
                },
                |c| c.uri,
            );
        let n = resp.cseq().map_or(1, |(n, _)| n);
        let mut base = Message::request("ACK", &target);
        base.push("From", resp.get("From").unwrap_or("").to_owned())
            .push("To", resp.get("To").unwrap_or("").to_owned())
            .push("Call-ID", resp.call_id().unwrap_or("").to_owned());
        for r in resp.get_all("Record-Route").iter().rev() {
            base.push("Route", r.to_string());
        }
        let mut ack = base.clone();
        ack.push("CSeq", format!("{n} ACK"));
        ack.headers.insert(0, ("Via".into(), self.via(proto, &branch())));
        self.send(proto, from, ack.to_bytes()).await;
        let mut bye = base;
        bye.start = StartLine::Request {
            method: "BYE".into(),
            uri: target,
        };
        bye.push("CSeq", format!("{} BYE", n + 1));
        self.send_request(bye, from, proto, Owner::None).await;
    }
}
/// The targets of a 3xx (RFC 3261 §8.1.3.4): its Contacts that are sip:, sips: or tel: URIs,
/// the highest `q` first (1.0 without one; equal ones in the order given), at most 10.
pub(super) fn redirect_targets(msg: &Message) -> Vec<String> {
    let mut found: Vec<(u16, String)> = msg
        .get_all("Contact")
        .into_iter()
        .flat_map(super::message::split_commas)
        .filter_map(|c| NameAddr::parse(c.trim()).ok())
        .filter(|n| {
            super::addr::Uri::parse(&n.uri).is_ok_and(|u| {
                matches!(u.scheme.as_str(), "sip" | "sips" | "tel")
                    && (u.scheme == "tel" || !u.host.is_empty())
            })
        })
        .map(|n| {
            let q = n
                .param("q")
                .and_then(|q| q.parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(1.0);
            ((q * 1000.0) as u16, n.uri.clone())
        })
        .take(10)
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, u)| u).collect()
}
