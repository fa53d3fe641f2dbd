//! The SIP user agent, in layers: messages and addresses, transport (UDP, TCP), transactions,
//! registration, and calls (dialogs with SDP offer/answer). Nothing outside this module sees
//! SIP wire types; the rest of the program talks to it through [`ua`]'s commands and events.

pub mod addr;
pub mod auth;
pub mod message;
pub mod transaction;
pub mod transport;
pub mod ua;
