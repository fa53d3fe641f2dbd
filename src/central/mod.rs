//! The central call log (issue 18): every call row of the local history (and every agent
//! status change) copied to PostgreSQL for the contact center's supervisors and reports.
//! The local SQLite history stays the phone's own record; an outbox table in it, written in
//! the same transaction as the local row, holds what PostgreSQL has not acknowledged yet, so
//! nothing is lost while PostgreSQL is down (it grows) and nothing is written twice (the
//! upsert is keyed on agent + Call-ID and only a newer update sequence wins). `ctiphone report`
//! and `ctiphone supervisor` read it.

pub mod cluster;
pub mod report;
pub mod schema;
pub mod shipper;
pub mod supervisor;
pub mod target;
pub mod tls;
