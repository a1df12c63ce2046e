//! The hourly rollup: sessions counted per organization, start hour and
//! value of a few single-valued fields (`session_rollup`), so that an
//! aggregation over a long window reads one row per hour and value rather
//! than one per session.
//!
//! The table holds exactly `GROUP BY org_id, hour, dim, value` over every
//! stored session, whatever its end: each write that adds sessions adds
//! what it inserted, in its own transaction, and retention takes away what
//! it deletes; rows that reach 0 are deleted. Nothing else changes a
//! rolled-up column (a session's end sets only its end time). The migration
//! that creates the table (`0005_rollup.sql` on SQLite, `0004_rollup.sql` on
//! PostgreSQL) fills it from the sessions already stored, with one statement
//! per entry of [`DIMS`].

use std::collections::BTreeMap;

use gatehouse_core::{Micros, OrgId};
use gatehouse_query::Field;
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::builder::SqlBuilder;
use crate::StoreError;
use crate::model::Facet;

pub const HOUR: Micros = 3_600_000_000;

/// `dim` of the rows counting every session (key `''`).
pub const ALL_SESSIONS: i64 = 0;

/// A rolled-up field: the code stored in `session_rollup.dim` (never reused
/// for another column), the `sessions` column whose value is the key, and
/// the query field and facet that group by that same column.
#[derive(Debug)]
pub struct Dim {
    pub code: i64,
    pub column: &'static str,
    pub field: Field,
    pub facet: Option<Facet>,
}

/// Single-valued columns of few values, the ones the console groups and
/// facets by. Session ids, parent ids and client addresses have about as
/// many values as sessions, and many-valued fields (groups) are not columns.
pub const DIMS: &[Dim] = &[
    Dim {
        code: 1,
        column: "resource_technology",
        field: Field::ResourceTechnology,
        facet: Some(Facet::ResourceTechnology),
    },
    Dim { code: 2, column: "resource_id", field: Field::ResourceId, facet: Some(Facet::ResourceId) },
    Dim { code: 3, column: "resource_name", field: Field::ResourceName, facet: Some(Facet::ResourceName) },
    Dim { code: 4, column: "resource_type", field: Field::ResourceType, facet: Some(Facet::ResourceType) },
    Dim { code: 5, column: "connector_id", field: Field::ConnectorId, facet: Some(Facet::ConnectorId) },
    Dim { code: 6, column: "connector_name", field: Field::ConnectorName, facet: Some(Facet::ConnectorName) },
    Dim { code: 7, column: "user_type", field: Field::UserType, facet: Some(Facet::UserType) },
    Dim { code: 8, column: "user_formal_type", field: Field::UserFormalType, facet: Some(Facet::UserFormalType) },
    Dim { code: 9, column: "user_email", field: Field::UserEmail, facet: Some(Facet::UserEmail) },
    Dim { code: 10, column: "user_username", field: Field::UserUsername, facet: Some(Facet::UserUsername) },
    Dim { code: 11, column: "native_username", field: Field::NativeUsername, facet: None },
];

pub fn dim_of_field(field: Field) -> Option<&'static Dim> {
    DIMS.iter().find(|d| d.field == field)
}

pub fn dim_of_facet(facet: Facet) -> Option<&'static Dim> {
    DIMS.iter().find(|d| d.facet == Some(facet))
}

/// The start of the hour holding `at` (as the migration computes it:
/// `start_us - ((start_us % 3600000000) + 3600000000) % 3600000000`).
pub fn hour_of(at: Micros) -> Micros {
    at.div_euclid(HOUR) * HOUR
}

/// The columns a [`RollupDelta`] reads a session from, to select or return.
pub fn session_columns() -> String {
    let mut out = String::from("start_us");
    for dim in DIMS {
        out.push_str(", ");
        out.push_str(dim.column);
    }
    out
}

/// Counts to add to the rollup (negative: to take away), by `(dim, hour, key)`.
/// Iterated in that order, so that concurrent writers lock rows in one order.
#[derive(Debug, Default)]
pub struct RollupDelta {
    counts: BTreeMap<(i64, Micros, String), i64>,
}

impl RollupDelta {
    /// Counts `sign` for the session in `row`, read with [`session_columns`].
    pub(crate) fn add_row<'r, R>(&mut self, row: &'r R, sign: i64) -> Result<(), StoreError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let hour = hour_of(row.try_get::<i64, _>("start_us")?);
        *self.counts.entry((ALL_SESSIONS, hour, String::new())).or_default() += sign;
        for dim in DIMS {
            let key: String = row.try_get(dim.column)?;
            *self.counts.entry((dim.code, hour, key)).or_default() += sign;
        }
        Ok(())
    }

    /// `(dim, hour, key, n)` for every non-zero count.
    pub fn rows(&self) -> impl Iterator<Item = (i64, Micros, &str, i64)> {
        self.counts.iter().filter(|(_, n)| **n != 0).map(|((dim, hour, key), n)| (*dim, *hour, key.as_str(), *n))
    }

    /// Whether it takes anything away (so rows may reach 0).
    pub fn removes(&self) -> bool {
        self.counts.values().any(|n| *n < 0)
    }
}

/// Appends the upsert adding `rows` to `org`'s rollup (the VALUES form, for
/// SQLite); with `returning`, it returns each row's new count.
pub fn push_rollup_upsert(b: &mut SqlBuilder, org: OrgId, rows: &[(i64, Micros, &str, i64)], returning: bool) {
    b.push("INSERT INTO session_rollup (org_id, hour_us, dim, key, n) VALUES ");
    for (i, (dim, hour, key, n)) in rows.iter().enumerate() {
        b.push(if i == 0 { "(" } else { ", (" });
        b.bind_int(org.0).push(", ").bind_int(*hour).push(", ").bind_int(*dim).push(", ");
        b.bind_text(*key).push(", ").bind_int(*n).push(")");
    }
    b.push(" ON CONFLICT (org_id, dim, hour_us, key) DO UPDATE SET n = session_rollup.n + excluded.n");
    if returning {
        b.push(" RETURNING dim, hour_us, key, n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_columns_are_distinct_and_zero_is_all_sessions() {
        let mut codes: Vec<_> = DIMS.iter().map(|d| d.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), DIMS.len());
        assert!(!codes.contains(&ALL_SESSIONS));
        for dim in DIMS {
            assert_eq!(DIMS.iter().filter(|d| d.column == dim.column || d.field == dim.field).count(), 1, "{dim:?}");
        }
    }

    #[test]
    fn hours_floor_like_the_migration() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR - 1), 0);
        assert_eq!(hour_of(HOUR), HOUR);
        assert_eq!(hour_of(-1), -HOUR);
        assert_eq!(hour_of(-HOUR), -HOUR);
        // The migration's SQL expression, in integer arithmetic that truncates.
        for at in [-HOUR - 1, -HOUR, -1, 0, 1, HOUR - 1, HOUR, 1_717_243_199_999_999] {
            assert_eq!(hour_of(at), at - ((at % HOUR) + HOUR) % HOUR, "{at}");
        }
    }
}
