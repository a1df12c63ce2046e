//! The PostgreSQL connector: a protocol-aware proxy in front of a database.
//! Every client connection through it becomes a session, reported with its
//! statements to the control plane; an administrator can end a live one.
//!
//! # Layout
//! - [`config`]: listeners, control plane, spool, TLS.
//! - [`event`]: what a session produces: its start, statements, end.
//! - [`identity`]: identity logins: the user-name convention, token checks, native credentials.
//! - [`live`]: the live sessions, by id, so a termination can reach one; the sweep that asks
//!   them to announce long statements.
//! - [`metrics`]: counters served at `/metrics`.
//! - [`proxy`]: accept, startup, relay and recording (the hot path).
//! - [`report`]: batching to the control plane, the spool, heartbeats, terminations.
//! - [`stop`]: a connection's signal: its listener's shutdown or its termination, and asks to
//!   announce a long statement while it runs.
//! - [`timer`]: every timer of the crate, on a thread of their own (the relay's runtime has none).
//! - [`admin`]: `/health` and `/metrics`.
//! - [`runtime`]: wires listeners, reporting and the admin server; [`runtime::run`] is the entry point.

pub mod admin;
pub mod config;
pub mod event;
pub mod identity;
pub mod live;
pub mod metrics;
pub mod proxy;
pub mod report;
pub mod runtime;
pub mod stop;
pub mod timer;

/// Locks a mutex whose holder may have panicked: the data (a map, a file handle, a position)
/// stays usable, and one connection's panic does not take the others down with it.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
