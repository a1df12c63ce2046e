//! Statements the two stores run alike, written once: their text with `?` placeholders, their
//! values as [`Arg`]s, and each store running them on its own pools ([`Exec`]). The registry of
//! organizations, keys, resources, connectors and identities is such; what a store does its own way (ingestion, leases)
//! stays in the store.

use std::borrow::Cow;

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::builder::{Arg, Dialect};

/// A store as the shared statements see it.
pub(crate) trait Exec: Sync {
    type Row: Columns + Send;

    fn dialect(&self) -> Dialect;

    /// Runs a statement that changes rows; returns how many it changed.
    async fn write(&self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error>;

    /// Runs a statement that changes rows and returns at most one (`RETURNING`).
    async fn write_returning(&self, sql: &str, args: Vec<Arg>) -> Result<Option<Self::Row>, sqlx::Error>;

    async fn read_optional(&self, sql: &str, args: Vec<Arg>) -> Result<Option<Self::Row>, sqlx::Error>;

    async fn read_all(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Self::Row>, sqlx::Error>;
}

impl Dialect {
    /// `sql` as this database numbers its placeholders: PostgreSQL's `$1, $2, ...` for the
    /// `?`s of a shared statement, whose text holds no other `?`.
    pub(crate) fn placeholders(self, sql: &str) -> Cow<'_, str> {
        match self {
            Dialect::Sqlite => Cow::Borrowed(sql),
            Dialect::Postgres => {
                let mut numbered = String::with_capacity(sql.len() + 16);
                let mut n = 0;
                for part in sql.split_inclusive('?') {
                    match part.strip_suffix('?') {
                        Some(head) => {
                            n += 1;
                            numbered.push_str(head);
                            numbered.push('$');
                            numbered.push_str(&n.to_string());
                        }
                        None => numbered.push_str(part),
                    }
                }
                Cow::Owned(numbered)
            }
        }
    }

    /// The larger of two values: `GREATEST` in PostgreSQL, the two-argument `MAX` in SQLite.
    pub(crate) fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }
}

/// A row's columns by name, in either database.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error>;
    fn blob(&self, column: &str) -> Result<Vec<u8>, sqlx::Error>;
}

impl<R> Columns for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }

    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        self.try_get(column)
    }

    fn blob(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_numbers_the_placeholders_of_a_shared_statement() {
        let sql = "UPDATE t SET a = ? WHERE b = ? AND c IN (?, ?)";
        assert_eq!(Dialect::Postgres.placeholders(sql), "UPDATE t SET a = $1 WHERE b = $2 AND c IN ($3, $4)");
        assert_eq!(Dialect::Sqlite.placeholders(sql), sql);
        assert_eq!(Dialect::Postgres.placeholders("SELECT 1"), "SELECT 1");
    }
}
