//! The CTI engine (spec `cti.md`): templates and their encoders, capture rules, the compiled
//! plan of accesses, the call filter, the five methods and browser_post's one-shot page
//! server, and the engine that subscribes to the call-event bus. No terminal code here.

pub mod capture;
pub mod engine;
pub mod exec;
pub mod filter;
pub mod form_server;
pub mod plan;
pub mod template;
pub mod vars;

pub use engine::{Engine, FireReport, Options};
pub use plan::Plan;
