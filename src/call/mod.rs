//! The call layer: the hub the front ends talk to. It owns the call model (one [`state`] enum
//! per call, with the reason it ended), runs offer/answer for each dialog, starts and
//! re-targets media, names the parties (phonebook) and builds the CTI variables, and
//! publishes every call event on the bus. Below it, [`crate::sip`] carries signalling only
//! and hands it dialog events; nothing here waits on anything slow: devices, DNS and the
//! phonebook run beside the loop and come back as `hub::Task` results.

pub mod answer_mode;
pub mod blf;
pub mod config;
mod hub;
pub mod identity;
mod media;
pub mod offer_answer;
pub mod sdes;
pub mod sdp;
pub mod state;
pub mod voicemail;

pub use config::{CallConfig, sdp_codecs};
pub use hub::run;

#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod reconnect_tests;
#[cfg(test)]
mod stun_tests;
#[cfg(test)]
mod tests;
