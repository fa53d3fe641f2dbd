//! ctiphone: a terminal softphone for contact-center agents, with CTI popups.
//!
//! The core (everything but `ui`) knows nothing of terminals: `app` owns the call-event bus,
//! `config` the configuration file, `cti` the CRM integration engine.

pub mod app;
pub mod bench;
pub mod call;
pub mod central;
pub mod cli;
pub mod config;
pub mod cti;
pub mod daemon;
pub mod demo;
pub mod errors;
pub mod headless;
pub mod history;
pub mod http_client;
pub mod logging;
pub mod media;
pub mod phonebook;
pub mod private;
pub mod settings;
pub mod sip;
pub mod ui;
