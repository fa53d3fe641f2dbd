//! The local 3-way (or larger) conference: the answered calls joined in one mix in our media
//! sessions (`media::conference`), held ones resumed first; a leg that ends leaves the others
//! talking (two legs left: linked again; one left: a plain call).

use crate::app::PhoneEvent;
use crate::media::conference;
use crate::media::session::MediaCommand;

use super::super::state::CallState;
use super::Hub;

impl Hub {
    /// `conference`: joins every answered call (the active one and the held ones).
    pub(super) async fn conference(&mut self) {
        let legs: Vec<String> = self
            .calls
            .iter()
            .filter(|c| c.state == CallState::Confirmed)
            .map(|c| c.id.clone())
            .collect();
        if legs.len() < 2 {
            return self.error("a conference needs two answered calls (one may be on hold)");
        }
        for id in &legs {
            if let Some(i) = self.find(id) {
                self.calls[i].conferenced = true;
                if self.calls[i].held {
                    self.hold(Some(id), false).await;
                }
            }
        }
        self.link_conference();
    }

    /// Links the conferenced calls' media anew (after a join, a leg's end, or a leg's audio
    /// starting) and reports who is in it when that changed; one leg alone leaves it.
    pub(super) fn link_conference(&mut self) {
        let legs: Vec<usize> = (0..self.calls.len())
            .filter(|&i| self.calls[i].conferenced)
            .collect();
        if legs.len() < 2 {
            for &i in &legs {
                self.calls[i].conferenced = false;
                if let Some(m) = &self.calls[i].media {
                    let _ = m.commands.try_send(MediaCommand::Leave);
                }
            }
            if !self.conference.is_empty() {
                self.conference.clear();
                self.emit(PhoneEvent::Conference { calls: Vec::new() });
            }
            return;
        }
        // The legs whose audio runs; one whose devices are still opening joins when they are.
        let running: Vec<usize> = legs
            .iter()
            .copied()
            .filter(|&i| self.calls[i].media.is_some())
            .collect();
        if running.len() >= 2 {
            let rates: Vec<u32> = running
                .iter()
                .filter_map(|&i| self.calls[i].media.as_ref().map(|m| m.rate))
                .collect();
            for (&i, link) in running.iter().zip(conference::links(&rates)) {
                if let Some(m) = &self.calls[i].media {
                    let _ = m.commands.try_send(MediaCommand::Join(link));
                }
            }
        }
        let calls: Vec<String> = legs.iter().map(|&i| self.calls[i].id.clone()).collect();
        if calls != self.conference {
            self.conference = calls.clone();
            self.emit(PhoneEvent::Conference { calls });
        }
    }
}
