//! The call layer: the call model (one state enum with an end reason), offer/answer, media
//! orchestration, caller identity and the CTI variables, over the signalling in [`crate::sip`].

pub mod offer_answer;
pub mod sdp;
