//! The busy-lamp field in the call loop: one `dialog` subscription per watched colleague once
//! registered, their NOTIFYs turned into lamps (`blf` events when a lamp changes), a failed
//! subscription shown as unknown, and `pickup` of a ringing colleague's call (RFC 3891 §7.1:
//! an INVITE with Replaces to the caller, for its early dialog; else the PBX's pickup code).

use crate::app::{CallerId, PhoneEvent};
use crate::sip::subscription::SubId;

use super::super::blf::{self, EarlyDialog, Lamp};
use super::Hub;

/// One watched colleague.
pub(super) struct Watch {
    pub number: String,
    pub name: String,
    pub sub: Option<SubId>,
    pub lamp: Lamp,
    pub ringing: Option<EarlyDialog>,
}

impl Hub {
    /// Subscribes to every watched colleague's dialog state (once, after registering).
    pub(super) async fn watch_colleagues(&mut self) {
        let domain = self.stack.domain().to_owned();
        for i in 0..self.lamps.len() {
            if self.lamps[i].sub.is_some() {
                continue;
            }
            let target = match crate::sip::stack::target_uri(&self.lamps[i].number, &domain) {
                Ok(t) => t,
                Err(e) => {
                    self.warn(format!("busy lamp: {e}"));
                    continue;
                }
            };
            self.lamps[i].sub = self.stack.subscribe("dialog", &target, 600).await;
        }
    }

    /// A `dialog` NOTIFY of subscription `sub`.
    pub(super) fn on_lamp_notify(&mut self, sub: SubId, body: &str) {
        let Some(i) = self.lamps.iter().position(|w| w.sub == Some(sub)) else {
            return;
        };
        match blf::parse(body) {
            Ok(info) => {
                self.lamps[i].ringing = info.ringing;
                self.set_lamp(i, info.lamp);
            }
            Err(e) => self.warn(format!("busy lamp of {}: {e}", self.lamps[i].number)),
        }
    }

    /// A subscription failed: the lamp is unknown until it works again.
    pub(super) fn on_lamp_failed(&mut self, sub: SubId) {
        if let Some(i) = self.lamps.iter().position(|w| w.sub == Some(sub)) {
            self.lamps[i].ringing = None;
            self.set_lamp(i, Lamp::Unknown);
        }
    }

    fn set_lamp(&mut self, i: usize, lamp: Lamp) {
        let w = &mut self.lamps[i];
        if w.lamp == lamp {
            return;
        }
        w.lamp = lamp;
        let (number, name) = (w.number.clone(), w.name.clone());
        self.emit(PhoneEvent::Blf {
            number,
            name,
            state: lamp.name().to_owned(),
        });
    }

    /// `pickup NUMBER`.
    pub(super) async fn pickup(&mut self, number: &str) {
        let Some(i) = self.lamps.iter().position(|w| w.number == number) else {
            return self.error(format!("`{number}` is not a watched colleague"));
        };
        if self.lamps[i].lamp != Lamp::Ringing {
            return self.error(format!("{number} is not ringing"));
        }
        if let Some(e) = self.lamps[i].ringing.clone()
            && !e.remote.is_empty()
        {
            // At the caller, its tag is the to-tag and the colleague's the from-tag.
            let replaces = crate::sip::replaces::Replaces {
                call_id: e.call_id,
                to_tag: e.remote_tag,
                from_tag: e.local_tag,
                early_only: true,
            };
            let caller = CallerId {
                headers: vec![("Replaces".into(), replaces.to_value())],
                ..CallerId::default()
            };
            self.dial(&e.remote, Some(caller)).await;
            return;
        }
        let code = self.cfg.pickup_code.clone();
        if code.is_empty() {
            return self.error(format!(
                "the call ringing at {number} cannot be picked up: its dialog is not known and no [blf] pickup_code is set"
            ));
        }
        self.dial(&format!("{code}{number}"), None).await;
    }
}
