//! What the front ends ask of a call (the `Command`s): dial, answer, reject, hang up, hold,
//! mute, DTMF, transfer, record, click, quit.

use std::time::{Duration, Instant};

use crate::app::{CallEvent, CallResult, Command, EndReason, Event, PhoneEvent};
use crate::media::session::MediaCommand;
use crate::sip::stack;

use super::super::offer_answer::State as Neg;
use super::super::state::CallState;
use super::Hub;

impl Hub {
    /// The call a command means: the named one, else the active one (answered, not held),
    /// else the most recent.
    pub(super) fn pick(&self, call: Option<&str>) -> Option<usize> {
        self.pick_active(call)
    }

    /// The call `answer` means: the named one, else the most recent one ringing here.
    fn pick_ringing(&self, call: Option<&str>) -> Option<usize> {
        match call {
            Some(id) => self.find(id),
            None => self
                .calls
                .iter()
                .rposition(|c| c.is_ringing_here())
                .or_else(|| self.calls.len().checked_sub(1)),
        }
    }

    pub(super) async fn on_command(&mut self, cmd: Command) {
        let no_call = |s: &Hub, c: &Option<String>| {
            s.error(match c {
                Some(id) => format!("no call `{id}`"),
                None => "no call".to_owned(),
            })
        };
        match cmd {
            Command::Dial { to } => {
                self.dial(&to, None).await;
            }
            Command::DialAs { to, caller } => {
                self.dial(&to, Some(caller)).await;
            }
            Command::Answer { call } => match self.pick_ringing(call.as_deref()) {
                Some(i) if self.calls[i].is_ringing_here() => self.answer_holding_others(i).await,
                Some(_) => self.error("the call is not ringing here"),
                None => no_call(self, &call),
            },
            Command::Hangup { call } => match self.pick(call.as_deref()) {
                Some(i) => self.hangup(i).await,
                None => no_call(self, &call),
            },
            Command::Reject { call } => match self.pick_ringing(call.as_deref()) {
                Some(i) if self.calls[i].is_ringing_here() => {
                    if let Some(d) = self.calls[i].dialog {
                        self.stack.reject(d, 603, "Decline").await;
                    }
                    self.end_call(i, EndReason::Rejected, Some(603));
                }
                Some(_) => self.error("the call is not ringing here"),
                None => no_call(self, &call),
            },
            Command::Hold { call } => self.hold(call.as_deref(), true).await,
            Command::Unhold { call } => self.hold(call.as_deref(), false).await,
            Command::Mute { call } | Command::Unmute { call } if self.pick(call.as_deref()).is_none() => {
                no_call(self, &call)
            }
            Command::Mute { call } => self.mute(call.as_deref(), true),
            Command::Unmute { call } => self.mute(call.as_deref(), false),
            Command::Dtmf { digits, call } => match self.pick(call.as_deref()) {
                Some(i) if self.calls[i].state == CallState::Confirmed => self.send_dtmf(i, &digits).await,
                Some(_) => self.error("DTMF needs an answered call"),
                None => no_call(self, &call),
            },
            Command::Transfer { to, call } => match self.pick(call.as_deref()) {
                Some(i) if self.calls[i].state == CallState::Confirmed => self.transfer(i, &to).await,
                Some(_) => self.error("transfer needs an answered call"),
                None => no_call(self, &call),
            },
            Command::Consult { to, call } => self.consult(call.as_deref(), &to).await,
            Command::Swap { call } => self.swap(call.as_deref()).await,
            Command::Complete { call } => self.complete(call.as_deref()).await,
            Command::Cancel { call } => self.cancel_consult(call.as_deref()).await,
            Command::Conference => self.conference().await,
            Command::Status { state, reason } => self.set_status(state, reason).await,
            Command::Wrapup { code } => self.wrap_up(code).await,
            Command::Pickup { number } => self.pickup(&number).await,
            Command::Record { on, call } => match self.pick(call.as_deref()) {
                Some(i) if self.calls[i].media.is_some() => {
                    let target = on.then(|| self.recording_target(i));
                    if let Some(m) = &self.calls[i].media {
                        let _ = m.commands.try_send(MediaCommand::Record(target));
                    }
                    let call = self.calls[i].id.clone();
                    self.publish(i, Event::Phone(PhoneEvent::Recording { call, on }));
                }
                Some(_) => self.error("recording needs an answered call with audio"),
                None => no_call(self, &call),
            },
            Command::Click { call } => match self.pick(call.as_deref()) {
                Some(i) => {
                    let params = self.calls[i].params.clone();
                    self.publish(i, Event::Call(CallEvent::click(params)));
                }
                None => no_call(self, &call),
            },
            // The core's dispatcher answers it from the history (app::core).
            Command::Reclick { .. } => {}
            Command::Quit => self.quit().await,
        }
    }

    /// Answers ringing call `i`; the calls in progress wait on hold (call waiting).
    pub(super) async fn answer_holding_others(&mut self, i: usize) {
        let id = self.calls[i].id.clone();
        let active: Vec<String> = self
            .calls
            .iter()
            .filter(|c| c.is_active() && c.id != id)
            .map(|c| c.id.clone())
            .collect();
        for a in active {
            self.hold(Some(&a), true).await;
        }
        if let Some(i) = self.find(&id) {
            self.answer(i).await;
        }
    }

    /// Ends a call from our side, whatever its state.
    pub(super) async fn hangup(&mut self, i: usize) {
        let reason = match self.calls[i].state {
            CallState::Ringing => EndReason::Rejected,
            CallState::Dialing | CallState::Early => EndReason::Cancelled,
            CallState::Confirmed | CallState::Ended(_) => EndReason::LocalHangup,
        };
        let code = (self.calls[i].state == CallState::Ringing).then_some(486);
        if let Some(d) = self.calls[i].dialog {
            self.stack.hangup(d, 486, "Busy Here").await;
        }
        let id = self.calls[i].id.clone();
        self.dialing.remove(&id);
        self.end_call(i, reason, code);
    }

    /// Hangs up a confirmed call with `reason`.
    pub(super) async fn end_with_bye(&mut self, i: usize, reason: EndReason) {
        if let Some(d) = self.calls[i].dialog {
            self.stack.hangup(d, 500, "Server Internal Error").await;
        }
        self.end_call(i, reason, None);
    }

    pub(super) async fn hold(&mut self, call: Option<&str>, hold: bool) {
        let Some(i) = self.pick(call) else {
            return self.error("no call");
        };
        if self.calls[i].state != CallState::Confirmed {
            return self.error("hold needs an answered call");
        }
        if self.calls[i].neg.state() != Neg::Done {
            return self.error("an offer is already under way for this call; try again");
        }
        let Some(dialog) = self.calls[i].dialog else {
            return;
        };
        let was = self.calls[i].held;
        self.calls[i].held = hold;
        let Some(body) = self.local_offer(i) else {
            self.calls[i].held = was;
            return;
        };
        self.calls[i].pending_hold = Some(hold);
        // `held` / `resumed` follow when the far end accepts (on its 2xx, which is ACKed).
        if !self.stack.reoffer(dialog, body, false).await {
            let c = &mut self.calls[i];
            c.held = was;
            c.pending_hold = None;
            c.neg.rollback();
            self.error("the call cannot be changed now; try again");
        }
    }

    pub(super) fn mute(&mut self, call: Option<&str>, on: bool) {
        let Some(i) = self.pick(call) else { return };
        self.calls[i].muted = on;
        if let Some(m) = &self.calls[i].media {
            let _ = m.commands.try_send(MediaCommand::Mute(on));
        }
        let call = self.calls[i].id.clone();
        self.publish(i, Event::Phone(PhoneEvent::Muted { call, muted: on }));
    }

    pub(super) async fn send_dtmf(&mut self, i: usize, digits: &str) {
        for d in digits.chars() {
            if !(d.is_ascii_digit() || "*#ABCDabcd".contains(d)) {
                return self.error(format!("`{d}` is not a DTMF digit"));
            }
        }
        // RFC 4733 in the media when the far end takes telephone-events; SIP INFO otherwise.
        if let (Some(_), Some(m)) = (self.calls[i].dtmf_pt, &self.calls[i].media) {
            let _ = m
                .commands
                .try_send(MediaCommand::Dtmf(digits.to_ascii_uppercase()));
            return;
        }
        let Some(dialog) = self.calls[i].dialog else {
            return;
        };
        for d in digits.chars() {
            self.stack
                .send_in_dialog(
                    dialog,
                    "INFO",
                    "application/dtmf-relay",
                    format!("Signal={d}\r\nDuration=160\r\n").into_bytes(),
                )
                .await;
        }
    }

    pub(super) async fn transfer(&mut self, i: usize, to: &str) {
        let target = match stack::target_uri(to, self.stack.domain()) {
            Ok(u) => u,
            Err(e) => return self.error(e),
        };
        let Some(dialog) = self.calls[i].dialog else {
            return;
        };
        self.calls[i].transfer_to = Some(target.clone());
        self.stack.refer(dialog, &target).await;
    }

    pub(super) async fn quit(&mut self) {
        let ids: Vec<String> = self.calls.iter().map(|c| c.id.clone()).collect();
        for id in ids {
            if let Some(i) = self.find(&id) {
                self.hangup(i).await;
            }
        }
        self.quitting = Some(Instant::now() + Duration::from_millis(1500));
        self.stack.unregister().await;
    }

    pub(super) fn end_call(&mut self, i: usize, reason: EndReason, code: Option<u16>) {
        self.end_call_why(i, reason, code, None);
    }

    /// [`Self::end_call`], saying why in words (`detail` of the `ended` event).
    pub(super) fn end_call_why(
        &mut self,
        i: usize,
        reason: EndReason,
        code: Option<u16>,
        detail: Option<String>,
    ) {
        if self.calls[i].feature {
            // A feature code's call ends unseen.
            let c = self.calls.remove(i);
            if let Some(d) = c.dialog {
                self.by_dialog.remove(&d);
            }
            self.dialing.remove(&c.id);
            return;
        }
        // Published in order: an unannounced call is announced first.
        self.calls[i].settled = true;
        self.announce(i);
        let mut c = self.calls.remove(i);
        c.state = CallState::Ended(reason);
        if let Some(d) = c.dialog {
            self.by_dialog.remove(&d);
        }
        self.dialing.remove(&c.id);
        let duration = c.answered_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let mut params = c.params.clone();
        params
            .extra
            .insert("DURATION".into(), format!("{}", duration.round() as u64));
        let result = CallResult::new(params.direction, c.answered_at.is_some(), reason);
        params.set_result(result);
        self.emit(PhoneEvent::Ended {
            call: c.id.clone(),
            reason,
            code,
            duration_s: (duration * 1000.0).round() / 1000.0,
            result: Some(result),
            detail,
        });
        if let Some(m) = c.media.take() {
            // The session closes the recording and reports it; keep the call's values for it.
            let _ = m.commands.try_send(MediaCommand::Stop);
            self.finishing.insert(c.id.clone(), (params.clone(), m.task));
        }
        let answered = c.answered_at.is_some();
        let wrapup = self.after_call_starts(&params, answered);
        self.bus.call(CallEvent {
            kind: crate::app::CallEventKind::Hangup { answered, wrapup },
            params,
        });
        if c.conferenced {
            // The others go on: linked again, or a plain call.
            self.link_conference();
        }
    }
}
