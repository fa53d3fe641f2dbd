//! The agent's status (AGT-1…6): ready, not ready (with a reason), or in after-call work
//! after an answered call until a wrap-up code is picked or the time runs out. Who may ring
//! (a call while not ready is refused 486, or rings silently), what the CTI engine and the
//! history hear of it (`CallEventKind::Status`, `WrapUp`, the hangup access held back for the
//! wrap-up), and the PBX's feature codes dialled on a change (a short call of its own,
//! invisible to the front ends, the CTI engine and the history).

use std::time::Instant;

use crate::app::{AgentState, CallEvent, CallEventKind, CallParams, PhoneEvent};

use super::super::state::CallState;
use super::Hub;

/// Where the agent stands.
pub(super) struct AgentStatus {
    pub state: AgentState,
    pub reason: String,
    /// The code that ended the last after-call work (until the next change).
    pub wrapup: String,
    pub since: chrono::DateTime<chrono::Local>,
    /// After-call work: its end, and the call it is for (its parameters as at its hangup).
    pub after_call_until: Option<Instant>,
    pub after_call_for: Option<CallParams>,
    /// The last call that ended, for {ID}, {TEL}… of the status access.
    pub last_call: Option<CallParams>,
}

impl Default for AgentStatus {
    fn default() -> Self {
        Self {
            state: AgentState::Ready,
            reason: String::new(),
            wrapup: String::new(),
            since: chrono::Local::now(),
            after_call_until: None,
            after_call_for: None,
            last_call: None,
        }
    }
}

impl Hub {
    /// Whether a new incoming call may ring: `Ok(true)` rings, `Ok(false)` rings silently,
    /// `Err(())` is refused (busy).
    pub(super) fn agent_takes_calls(&self) -> Result<bool, ()> {
        match self.agent.state {
            AgentState::Ready => Ok(true),
            _ if self.cfg.agent.ring_when_not_ready => Ok(false),
            _ => Err(()),
        }
    }

    /// Announces the status at start when it is in use (a front end shows it from then on).
    pub(super) fn announce_status(&mut self) {
        if self.cfg.agent.in_use {
            self.publish_status();
        }
    }

    /// `status`: the agent's choice.
    pub(super) async fn set_status(&mut self, state: AgentState, reason: Option<String>) {
        let reason = reason.unwrap_or_default();
        match state {
            AgentState::NotReady => {
                let reasons = &self.cfg.agent.not_ready_reasons;
                if !reasons.is_empty() && !reasons.contains(&reason) {
                    return self.error(format!(
                        "not ready needs a reason, one of: {}",
                        reasons.join(", ")
                    ));
                }
            }
            AgentState::AfterCall => {
                if self.agent.state != AgentState::AfterCall {
                    return self.error("after-call work starts by itself when an answered call ends");
                }
                return;
            }
            AgentState::Ready => {}
        }
        if self.agent.state == AgentState::AfterCall {
            // Ready (or not ready) without a wrap-up code: the after-call work ends without one.
            self.finish_after_call(String::new());
        }
        if state == self.agent.state && reason == self.agent.reason {
            return;
        }
        self.change_status(state, reason).await;
    }

    /// `wrapup`: ends after-call work with `code` and goes ready.
    pub(super) async fn wrap_up(&mut self, code: String) {
        if self.agent.state != AgentState::AfterCall {
            return self.error("no after-call work to wrap up");
        }
        let codes = &self.cfg.agent.wrapup_codes;
        if !codes.is_empty() && !codes.contains(&code) {
            return self.error(format!("unknown wrap-up code; one of: {}", codes.join(", ")));
        }
        self.finish_after_call(code);
        self.change_status(AgentState::Ready, String::new()).await;
    }

    /// An answered call `params` ended: after-call work for it, when configured and ready.
    /// Whether it starts (the hangup access then waits for the wrap-up).
    pub(super) fn after_call_starts(&mut self, params: &CallParams, answered: bool) -> bool {
        self.agent.last_call = Some(params.clone());
        let Some(length) = self.cfg.agent.after_call else {
            return false;
        };
        if !answered || self.agent.state == AgentState::NotReady {
            return false;
        }
        if self.agent.state == AgentState::AfterCall {
            // Another answered call ended during after-call work: the earlier one is done.
            self.finish_after_call(String::new());
        }
        self.agent.after_call_until = Some(Instant::now() + length);
        self.agent.after_call_for = Some(params.clone());
        true
    }

    /// After the hangup of the call that started after-call work: the status changes.
    pub(super) async fn enter_after_call(&mut self) {
        if self.agent.after_call_until.is_some() && self.agent.state != AgentState::AfterCall {
            self.change_status(AgentState::AfterCall, String::new()).await;
        }
    }

    /// The after-call work's deadline, for the loop's timer.
    pub(super) fn agent_deadline(&self) -> Option<Instant> {
        self.agent.after_call_until
    }

    /// The after-call work's time ran out: ready, without a code.
    pub(super) async fn on_agent_timer(&mut self) {
        if self.agent.after_call_until.is_some_and(|t| t <= Instant::now()) {
            self.finish_after_call(String::new());
            self.change_status(AgentState::Ready, String::new()).await;
        }
    }

    /// Ends after-call work: the wrap-up code goes to the call's history row and its held-back
    /// hangup access.
    fn finish_after_call(&mut self, code: String) {
        self.agent.after_call_until = None;
        let Some(mut params) = self.agent.after_call_for.take() else {
            return;
        };
        params.extra.insert("WRAPUP".into(), code.clone());
        if let Some(last) = self.agent.last_call.as_mut()
            && last.id == params.id
        {
            last.extra.insert("WRAPUP".into(), code.clone());
        }
        self.agent.wrapup = code.clone();
        self.bus.call(CallEvent {
            kind: CallEventKind::WrapUp { code },
            params,
        });
    }

    async fn change_status(&mut self, state: AgentState, reason: String) {
        let before = self.agent.state;
        self.agent.state = state;
        self.agent.reason = reason;
        self.agent.since = chrono::Local::now();
        // The wrap-up code is reported with the change it caused (after-call → ready) only.
        if !(before == AgentState::AfterCall && state == AgentState::Ready) {
            self.agent.wrapup.clear();
        }
        self.publish_status();
        // The PBX's queue follows: taking calls or not.
        let takes = |s: AgentState| s == AgentState::Ready;
        if takes(before) != takes(state) {
            let code = if takes(state) {
                self.cfg.agent.ready_code.clone()
            } else {
                self.cfg.agent.not_ready_code.clone()
            };
            if !code.is_empty() {
                self.dial_feature_code(&code).await;
            }
        }
    }

    fn publish_status(&mut self) {
        let a = &self.agent;
        self.emit(PhoneEvent::Status {
            state: a.state,
            reason: a.reason.clone(),
            wrapup: a.wrapup.clone(),
            since: a.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        });
        let mut params = a
            .last_call
            .clone()
            .unwrap_or_else(|| CallParams::incoming("", "", ""));
        params.extra.insert("STATUS".into(), a.state.name().into());
        params.extra.insert("REASON".into(), a.reason.clone());
        params.extra.insert("WRAPUP".into(), a.wrapup.clone());
        self.bus.call(CallEvent {
            kind: CallEventKind::Status { state: a.state },
            params,
        });
    }

    /// Dials a PBX feature code: a call of its own, hung up as soon as the PBX answers (or
    /// over when it refuses); the front ends, the CTI engine and the history never see it.
    async fn dial_feature_code(&mut self, code: &str) {
        if let Some(id) = self.dial_with(code, None, true).await {
            tracing::info!(code, call = %id, "agent status: feature code dialled");
        }
    }

    /// A feature-code call was answered: hang it up.
    pub(super) async fn on_feature_answered(&mut self, i: usize) {
        if self.calls[i].feature && self.calls[i].state == CallState::Confirmed {
            self.hangup(i).await;
        }
    }
}
