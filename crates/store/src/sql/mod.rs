//! SQL text building shared by the store implementations.
//!
//! Only trusted text (column names, keywords) is ever appended to a statement;
//! every value, including those from a user's query, goes through
//! [`SqlBuilder::bind`].

mod builder;
mod filter;
mod list;

pub use builder::{Arg, Dialect, SqlBuilder};
pub use filter::{END_USER_GROUPS, USER_EXTERNAL_IDS, USER_GROUPS, push_filter};
pub use list::{SESSION_COLUMNS, push_list};
