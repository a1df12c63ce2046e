//! A statement under construction: trusted text plus bound arguments.

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Blob(Vec<u8>),
}

/// The SQL differences between the stores that filters and paging touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `?` placeholders. (Both compare text without case through `_fold` columns, folded when
    /// written.)
    Sqlite,
    /// `$n` placeholders.
    Postgres,
}

#[derive(Debug)]
pub struct SqlBuilder {
    dialect: Dialect,
    sql: String,
    args: Vec<Arg>,
}

impl SqlBuilder {
    pub fn new(dialect: Dialect) -> Self {
        Self { dialect, sql: String::with_capacity(512), args: Vec::new() }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Appends trusted SQL text. Never pass user input here.
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        match self.dialect {
            Dialect::Sqlite => self.sql.push('?'),
            Dialect::Postgres => {
                self.sql.push('$');
                self.sql.push_str(&self.args.len().to_string());
            }
        }
        self
    }

    pub fn bind_int(&mut self, value: i64) -> &mut Self {
        self.bind(Arg::Int(value))
    }

    pub fn bind_text(&mut self, value: impl Into<String>) -> &mut Self {
        self.bind(Arg::Text(value.into()))
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    pub fn into_parts(self) -> (String, Vec<Arg>) {
        (self.sql, self.args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_per_dialect() {
        let mut b = SqlBuilder::new(Dialect::Postgres);
        b.push("a = ").bind_int(1).push(" AND b = ").bind_text("x");
        assert_eq!(b.sql(), "a = $1 AND b = $2");
        let mut b = SqlBuilder::new(Dialect::Sqlite);
        b.push("a = ").bind_int(1).push(" AND b = ").bind_text("x");
        let (sql, args) = b.into_parts();
        assert_eq!(sql, "a = ? AND b = ?");
        assert_eq!(args, vec![Arg::Int(1), Arg::Text("x".into())]);
    }
}
