//! SIP signalling, in layers: messages and addresses ([`message`], [`addr`], [`auth`]), the
//! transport (UDP, TCP, TLS), transactions, and dialogs with the registration beside them,
//! driven as one [`stack::Stack`]. Signalling only: it imports nothing from the call layer,
//! media, CTI, phonebook or history; offers and answers pass through it as SDP text, and
//! what happens comes out as [`stack::SipEvent`]s for the call layer (`crate::call`).

pub mod addr;
pub mod auth;
pub mod dialog;
mod in_dialog;
pub mod keepalive;
pub mod message;
pub mod registration;
pub mod replaces;
pub mod resolve;
pub mod stack;
pub mod stun;
pub mod subscription;
pub mod transaction;
pub mod transport;
mod uac;
mod uas;
