//! Call control across calls: attended transfer (`consult`, `swap`, `complete`, `cancel`;
//! RFC 5589 §7: REFER with a Refer-To carrying Replaces), a transfer's progress (the REFER's
//! NOTIFY sipfrag, RFC 3515), and being replaced (an INVITE with Replaces, RFC 3891: the new
//! party takes the call's place, or 481/486/603 as the RFC says).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::{CallEvent, Event, PhoneEvent};
use crate::media::session::MediaCommand;
use crate::sip::dialog::DialogId;
use crate::sip::message::Message;
use crate::sip::replaces::{self, Replaces};

use super::super::identity;
use super::super::offer_answer::Negotiator;
use super::super::sdp::Sdp;
use super::super::state::CallState;
use super::Hub;

/// How long a consult call may stay up after its transfer succeeded: the colleague, whose
/// call the customer's INVITE replaced, normally ends it first (RFC 5589 §7.1).
const CONSULT_LINGER: Duration = Duration::from_secs(2);

impl Hub {
    /// The call a call-control command means: the named one, else the active one (answered,
    /// not held), else the most recent.
    pub(super) fn pick_active(&self, call: Option<&str>) -> Option<usize> {
        match call {
            Some(id) => self.find(id),
            None => self
                .calls
                .iter()
                .rposition(|c| c.is_active())
                .or_else(|| self.calls.len().checked_sub(1)),
        }
    }

    /// The customer's call and its consult call, from either of them (or the last consult
    /// call when `call` is `None`).
    fn consult_pair(&self, call: Option<&str>) -> Option<(usize, usize)> {
        let pair_of = |k: usize| {
            let customer = self.calls[k].consult_for.as_deref()?;
            Some((self.find(customer)?, k))
        };
        match call {
            Some(id) => {
                let i = self.find(id)?;
                pair_of(i).or_else(|| {
                    let k = self
                        .calls
                        .iter()
                        .rposition(|c| c.consult_for.as_deref() == Some(id))?;
                    Some((i, k))
                })
            }
            None => (0..self.calls.len()).rev().find_map(pair_of),
        }
    }

    /// `consult`: holds the call and calls the colleague.
    pub(super) async fn consult(&mut self, call: Option<&str>, to: &str) {
        let Some(i) = self.pick_active(call) else {
            return self.error("no call");
        };
        if self.calls[i].state != CallState::Confirmed {
            return self.error("consult needs an answered call");
        }
        if self.calls[i].consult_for.is_some() {
            return self.error("this is a consult call already");
        }
        let id = self.calls[i].id.clone();
        if self.consult_pair(Some(&id)).is_some() {
            return self.error("this call has a consult call already: complete or cancel it first");
        }
        if !self.calls[i].held {
            self.hold(Some(&id), true).await;
        }
        if let Some(new) = self.dial(to, None).await {
            if let Some(k) = self.find(&new) {
                self.calls[k].consult_for = Some(id.clone());
            }
            self.emit(PhoneEvent::Consult {
                call: id,
                consult: new,
            });
        }
    }

    /// `swap`: holds the active call(s) and resumes the held one (`call`, or the most recent
    /// held one).
    pub(super) async fn swap(&mut self, call: Option<&str>) {
        let target = match call {
            Some(id) => self.find(id),
            None => self
                .calls
                .iter()
                .rposition(|c| c.state == CallState::Confirmed && c.held),
        };
        let Some(t) = target else {
            return self.error("no held call to swap to");
        };
        if self.calls[t].state != CallState::Confirmed {
            return self.error("swap needs an answered call");
        }
        let target_id = self.calls[t].id.clone();
        let active: Vec<String> = self
            .calls
            .iter()
            .filter(|c| c.is_active() && c.id != target_id)
            .map(|c| c.id.clone())
            .collect();
        for id in active {
            self.hold(Some(&id), true).await;
        }
        if self.find(&target_id).is_some_and(|t| self.calls[t].held) {
            self.hold(Some(&target_id), false).await;
        }
    }

    /// `complete`: asks the customer to call the colleague in place of our consult call
    /// (REFER, Refer-To: <colleague?Replaces=consult dialog>).
    pub(super) async fn complete(&mut self, call: Option<&str>) {
        let Some((ci, ki)) = self.consult_pair(call) else {
            return self.error("no consult call to complete");
        };
        if self.calls[ki].state != CallState::Confirmed {
            return self.error("the consulted party has not answered yet");
        }
        if self.calls[ci].transfer_to.is_some() {
            return self.error("a transfer of this call is already under way");
        }
        let (Some(customer), Some(consult)) = (self.calls[ci].dialog, self.calls[ki].dialog) else {
            return;
        };
        let Some(info) = self.stack.dialog_info(consult) else {
            return self.error("the consult call is gone");
        };
        // The colleague receives it: its tag is the to-tag, ours the from-tag.
        let r = Replaces {
            call_id: info.call_id,
            to_tag: info.remote_tag,
            from_tag: info.local_tag,
            early_only: false,
        };
        let target = replaces::refer_to_with_replaces(&info.remote_uri, &r);
        self.calls[ci].transfer_to = Some(target.clone());
        self.calls[ci].transfer_consult = Some(self.calls[ki].id.clone());
        self.stack.refer(customer, &target).await;
    }

    /// `cancel`: hangs up the consult call and resumes the customer.
    pub(super) async fn cancel_consult(&mut self, call: Option<&str>) {
        let Some((ci, ki)) = self.consult_pair(call) else {
            return self.error("no consult call to cancel");
        };
        let customer = self.calls[ci].id.clone();
        self.calls[ci].transfer_to = None;
        self.calls[ci].transfer_consult = None;
        self.hangup(ki).await;
        if self.find(&customer).is_some_and(|i| self.calls[i].held) {
            self.hold(Some(&customer), false).await;
        }
    }

    /// A transfer's progress: the NOTIFY's sipfrag status line (RFC 3515 §2.4.5). A final 2xx
    /// ends our side; a failure leaves the calls as they were.
    pub(super) async fn on_transfer_progress(&mut self, i: usize, frag: &str) {
        let code: Option<u16> = frag.split_whitespace().nth(1).and_then(|c| c.parse().ok());
        let Some(code) = code.filter(|c| *c >= 200) else {
            return;
        };
        if code >= 300 {
            let line = frag.lines().next().unwrap_or("").trim().to_owned();
            return self.transfer_failed(i, &line);
        }
        let c = &mut self.calls[i];
        let target = c.transfer_to.take().unwrap_or_default();
        let consult = c.transfer_consult.take();
        let id = c.id.clone();
        // Who the customer went to: the consulted party as the agent knows them, else the URI.
        let to = consult
            .as_deref()
            .and_then(|k| self.find(k))
            .map_or(target, |k| self.calls[k].params.tel.clone());
        self.emit(PhoneEvent::Transferred {
            call: id,
            to,
            consult: consult.clone(),
        });
        self.hangup(i).await;
        if let Some(k) = consult.as_deref().and_then(|k| self.find(k)) {
            let c = &mut self.calls[k];
            c.consult_for = None;
            c.bye_at = Some(Instant::now() + CONSULT_LINGER);
        }
    }

    /// Our REFER was refused, or the transfer failed: both calls stay as they were.
    pub(super) fn transfer_failed(&mut self, i: usize, why: &str) {
        let c = &mut self.calls[i];
        c.transfer_to = None;
        c.transfer_consult = None;
        let id = c.id.clone();
        self.error(format!("call {id}: transfer failed: {why}"));
    }

    /// An INVITE with Replaces (RFC 3891 §3): the new party takes the place of the call it
    /// names, answered at once; or refused as the RFC says.
    pub(super) async fn on_replacing_invite(
        &mut self,
        dialog: DialogId,
        request: &Arc<Message>,
        offer: Option<Sdp>,
    ) {
        let headers = request.get_all("Replaces");
        if headers.len() != 1 {
            self.stack
                .reject(dialog, 400, "Bad Request (one Replaces header expected)")
                .await;
            return;
        }
        let r = match Replaces::parse(headers[0]) {
            Ok(r) => r,
            Err(_) => {
                self.stack.reject(dialog, 400, "Bad Replaces").await;
                return;
            }
        };
        let Some(old) = self.stack.find_replaced(&r.call_id, &r.to_tag, &r.from_tag) else {
            self.stack
                .reject(dialog, 481, "Call/Transaction Does Not Exist")
                .await;
            return;
        };
        let Some(info) = self.stack.dialog_info(old) else {
            self.stack
                .reject(dialog, 481, "Call/Transaction Does Not Exist")
                .await;
            return;
        };
        let Some(i) = self.find_dialog(old) else {
            // The stack still knows the dialog, the call is over (RFC 3891 §3: 603).
            self.stack.reject(dialog, 603, "Declined").await;
            return;
        };
        if info.confirmed && r.early_only {
            self.stack.reject(dialog, 486, "Busy Here").await;
            return;
        }
        if !info.confirmed && !info.uac {
            // An early dialog someone else started (our ringing call): not ours to replace.
            self.stack
                .reject(dialog, 481, "Call/Transaction Does Not Exist")
                .await;
            return;
        }
        let mut neg = Negotiator::new(rand::random_range(1..u64::from(u32::MAX)));
        if let Some(o) = offer
            && let Err(e) = neg.receive_offer(o)
        {
            self.stack.reject(dialog, e.status(), "Not Acceptable Here").await;
            return;
        }
        let id = self.calls[i].id.clone();
        // The replaced dialog ends (BYE, or CANCEL if early); its end is not the call's.
        self.by_dialog.remove(&old);
        self.stack.hangup(old, 486, "Busy Here").await;
        let Some(i) = self.find(&id) else { return };
        if let Some(m) = self.calls[i].media.take() {
            let _ = m.commands.try_send(MediaCommand::Stop);
            let key = format!("{id} replaced {}", self.finishing.len());
            self.finishing.insert(key, (self.calls[i].params.clone(), m.task));
        }
        let who = identity::caller_identity(request);
        let ip = self.stack.local().ip();
        let c = &mut self.calls[i];
        c.dialog = Some(dialog);
        c.neg = neg;
        c.held = false;
        c.pending_hold = None;
        c.media_opening = false;
        c.transfer_to = None;
        c.transfer_consult = None;
        c.consult_for = None;
        c.params.tel = who.tel;
        c.params.telname = who.telname;
        c.params.anonymous = who.anonymous;
        let stun = self.stack.stun_server();
        if let Some(w) = self.calls[i].reserve_rtp(ip, stun).await {
            self.warn(w);
        }
        if let Some(pb) = self.cfg.phonebook.clone() {
            identity::try_name_parties(&pb, &mut self.calls[i].params);
        }
        self.by_dialog.insert(dialog, id.clone());
        let was_up = self.calls[i].state == CallState::Confirmed;
        let Some(offered) = self.send_answer(i).await else {
            return;
        };
        let Some(i) = self.find(&id) else { return };
        let p = self.calls[i].params.clone();
        self.publish(
            i,
            Event::Phone(PhoneEvent::Replaced {
                call: id.clone(),
                tel: p.tel.clone(),
                telname: p.telname.clone(),
            }),
        );
        // The CTI engine searches the CRM for the new party; the history row follows.
        self.publish(i, Event::Call(CallEvent::identity(p)));
        if !was_up {
            // Our outgoing call, still ringing, answered by the new party (RFC 3891 §7.1).
            self.confirm(i);
        }
        if !offered {
            self.start_media(i).await;
        }
    }
}
