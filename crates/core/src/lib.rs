//! Domain types shared by the store, the control plane and the connector.
//!
//! Nothing here does IO and nothing is serializable: wire formats (protobuf,
//! SQL rows) are separate types, converted at the edges.
//!
//! # Layout
//! - [`session`]: a recorded session and the identities inside it.
//! - [`auth`]: organizations, API key roles and the caller identity.
//! - [`time`]: microsecond timestamps and their RFC 3339 form.
//! - [`names`]: the shape of emails, machine names and role names.
//! - [`display`]: recorded text made safe to print in a terminal.
//! - [`sql`]: where SQL text's literals and comments are, and the passwords it sets.

pub mod auth;
pub mod display;
pub mod names;
pub mod session;
pub mod sql;
pub mod time;

pub use auth::{Caller, OrgId, Role};
pub use session::{Identity, Session, SessionStatus};
pub use time::Micros;
