//! SQL text building shared by the store implementations.
//!
//! Only trusted text (column names, keywords) is ever appended to a statement;
//! every value, including those from a user's query, goes through
//! [`SqlBuilder::bind`].

mod aggregate;
mod builder;
mod exec;
mod filter;
pub(crate) mod identity;
mod insert;
mod list;
pub(crate) mod orgs;
pub(crate) mod registry;
pub mod rollup;
pub(crate) mod terminations;

pub use aggregate::{AggRow, auto_interval, is_groupable, ungroupable};
pub(crate) use aggregate::{AggRunner, Materialize, aggregate, aggregate_raw, is_costly, materialization, statements};
pub use builder::{Arg, Dialect, SqlBuilder};
pub(crate) use exec::Exec;
pub use filter::{END_USER_GROUPS, USER_EXTERNAL_IDS, USER_GROUPS, push_filter};
pub use insert::push_insert_sessions;
pub use list::{SESSION_COLUMNS, Walk, push_list, push_listed, push_matching};

/// Case-folds text for the `_fold` columns and for the values compared with
/// them, so text fields match case-insensitively in every script, in every
/// database, with plain (index-friendly) comparisons. Greek final sigma is
/// written σ: lowercasing picks ς by where a Σ stands, so a prefix (`ΣΊΣ*`)
/// would fold otherwise than the same letters inside a value
/// (`migrations/*/0016_fold_final_sigma.sql` mends folds stored before).
pub fn fold(text: &str) -> String {
    text.to_lowercase().replace('ς', "σ")
}
