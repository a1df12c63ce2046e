//! Statement fingerprints: the text with its values taken out, so that
//! statements differing only in literals count as one query.

use gatehouse_core::sql::{line_comment_end, skip_block_comment, skip_dollar_quoted, skip_quoted};

/// Longest fingerprint kept, in bytes; longer ones are cut at a char boundary.
const MAX_LEN: usize = 512;

/// Words after which a `-` starts a negative number rather than subtracting.
#[rustfmt::skip]
const VALUE_KEYWORDS: &[&str] = &[
    "and", "between", "by", "case", "else", "having", "ilike", "in", "like", "limit", "not", "offset", "on", "or",
    "return", "returning", "select", "then", "values", "when", "where",
];

/// `SELECT * FROM t WHERE id = -42 AND name IN ('a', 'b')` becomes
/// `select * from t where id = ? and name in (?)`: string, number and
/// dollar-quoted literals and `$n` parameters become `?` (`where aid = $1`, prepared, is
/// `where aid = 5` sent whole), comments go, whitespace collapses and unquoted text is
/// lower-cased. Quoted identifiers stay as written.
///
/// As in PostgreSQL's grammar (and so `pg_stat_statements`), a minus right
/// before a number where a value is expected belongs to the number:
/// `n + -5` is `n + ?`, like `n + 5`. A run of literals in an `IN (…)` list or
/// a `VALUES (…)` row becomes one `?`, so that lists of any length are one
/// statement; elsewhere (`select 1, 2`, `f(1, 2)`) each literal keeps its `?`.
///
/// A statement's closing `;` goes too: psql and pgbench send it, drivers do not, and
/// `select 1;` is the same query as `select 1`.
pub fn fingerprint(sql: &str) -> String {
    // Walks bytes, not chars: every character the rules look at is ASCII,
    // and UTF-8 never uses an ASCII byte inside another character.
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len().min(MAX_LEN));
    let mut i = 0;
    let mut space = false;
    // Per open parenthesis, whether it holds a list of values that folds into one `?`.
    let mut lists: Vec<bool> = Vec::new();
    // Whether the parenthesis closed last was such a list: `VALUES (1), (2)` continues it.
    let mut closed_list = false;
    while i < bytes.len() && out.len() < MAX_LEN {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let c = if b.is_ascii() { char::from(b) } else { sql[i..].chars().next().expect("a char starts here") };
        if c.is_whitespace() {
            space = true;
            i += c.len_utf8();
            continue;
        }
        if b == b'-' && next == Some(b'-') {
            i = line_comment_end(bytes, i + 2);
            space = true;
            continue;
        }
        if b == b'/' && next == Some(b'*') {
            i = skip_block_comment(bytes, i);
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        let in_list = lists.last() == Some(&true);
        match b {
            // A word, lower-cased as one run: most of a statement is keywords and names.
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let end = bytes[i..].iter().position(|&b| !is_ascii_ident(b)).map_or(bytes.len(), |n| i + n);
                let end = end.min(i + (MAX_LEN - out.len()));
                let start = out.len();
                out.push_str(&sql[i..end]);
                out[start..].make_ascii_lowercase();
                i = end;
            }
            b'\'' => {
                // A prefix such as E'..' or B'..' belongs to the literal.
                if out.ends_with(['e', 'b', 'x', 'n']) && !out[..out.len() - 1].ends_with(is_ident) {
                    out.pop();
                }
                i = skip_quoted(bytes, i, b'\'');
                push_value(&mut out, in_list);
            }
            b'"' => {
                let end = skip_quoted(bytes, i, b'"');
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'$' if !ends_with_ident(&out) => match skip_dollar_quoted(sql, i) {
                Some(end) => {
                    i = end;
                    push_value(&mut out, in_list);
                }
                // `$1`: a parameter, a value as a literal is (a prepared statement is the query
                // its simple-protocol twin is); `$` alone stays.
                None => {
                    let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                    if digits == 0 {
                        out.push('$');
                    } else {
                        push_value(&mut out, in_list);
                    }
                    i += 1 + digits;
                }
            },
            b if b.is_ascii_digit() && !ends_with_ident(&out) => {
                i = skip_number(bytes, i);
                push_value(&mut out, in_list);
            }
            b'-' if next.is_some_and(|n| n.is_ascii_digit()) && expects_value(&out) => {
                i = skip_number(bytes, i + 1);
                push_value(&mut out, in_list);
            }
            b'(' => {
                lists.push(opens_list(&out, closed_list));
                out.push('(');
                i += 1;
            }
            b')' => {
                closed_list = lists.pop().unwrap_or(false);
                out.push(')');
                i += 1;
            }
            // Most SQL is ASCII, and Unicode's case tables are slow.
            b if b.is_ascii() => {
                out.push(c.to_ascii_lowercase());
                i += 1;
            }
            _ => {
                out.extend(c.to_lowercase());
                i += c.len_utf8();
            }
        }
    }
    if out.len() > MAX_LEN {
        let mut cut = MAX_LEN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    // Migration 0014 takes the same characters off the fingerprints stored before.
    out.truncate(out.trim_end_matches([';', ' ']).len());
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn is_ascii_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Whether `out` ends inside a word, where a digit or `$` continues it.
fn ends_with_ident(out: &str) -> bool {
    out.chars().next_back().is_some_and(is_ident)
}

/// The word (identifier, keyword or `$n`) that `text` ends with, if any.
fn last_word(text: &str) -> &str {
    text.rsplit(|c: char| !is_ident(c)).next().unwrap_or("")
}

/// Whether a value may start after the normalised text `out`: at the start,
/// after an operator, `(`, `,` or a keyword such as `select`, but not after an
/// operand (a name, a literal's `?`, `)`), where `-` subtracts.
fn expects_value(out: &str) -> bool {
    let before = out.trim_end();
    match before.chars().next_back() {
        None => true,
        Some(c) if is_ident(c) => VALUE_KEYWORDS.contains(&last_word(before)),
        Some(c) => !matches!(c, ')' | ']' | '?' | '"'),
    }
}

/// Whether a `(` after the normalised text `out` opens a list of values:
/// `IN (`, `VALUES (`, or a further row after a `VALUES` row and a comma.
fn opens_list(out: &str, closed_list: bool) -> bool {
    let before = out.trim_end();
    matches!(last_word(before), "in" | "values") || (closed_list && before.ends_with("),"))
}

/// Index just past the number starting at `start`: digits, letters (`0x1f`,
/// `1e3`), dots, and the sign of an exponent (`1.5e-3`).
fn skip_number(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while let Some(&b) = bytes.get(i) {
        let exponent_sign = matches!(b, b'+' | b'-')
            && matches!(bytes[i - 1], b'e' | b'E')
            && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
        if !(b.is_ascii_alphanumeric() || b == b'.' || exponent_sign) {
            break;
        }
        i += 1;
    }
    i
}

/// Appends `?`; in a list of values (`in_list`), folds `?, ?` into one.
fn push_value(out: &mut String, in_list: bool) {
    if in_list && (out.ends_with("?, ") || out.ends_with("?,")) {
        out.truncate(out.trim_end_matches(' ').len() - 1);
        while out.ends_with(' ') {
            out.pop();
        }
        return;
    }
    out.push('?');
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            fingerprint("SELECT *  FROM t\n WHERE id = 42 AND name IN ('a', 'it''s', E'x') -- why\n"),
            "select * from t where id = ? and name in (?)"
        );
        assert_eq!(fingerprint("select $1::int, $$body$$ || $tag$a$b$tag$"), "select ?::int, ? || ?");
        assert_eq!(fingerprint("select * from t where aid = $1"), fingerprint("select * from t where aid = 42"));
        // A comment ends at a carriage return too, as PostgreSQL reads it.
        assert_eq!(fingerprint("select 1 -- why\rfrom t"), "select ? from t");
        assert_eq!(
            fingerprint("SELECT \"Weird\"\"Col\" FROM t2 /* c */ LIMIT 10"),
            "select \"Weird\"\"Col\" from t2 limit ?"
        );
        assert_eq!(fingerprint("insert into t values (1.5e3, 'x')"), "insert into t values (?)");
        assert_eq!(fingerprint("select 1"), fingerprint("SELECT   2"));
    }

    #[test]
    fn a_minus_where_a_value_is_expected_belongs_to_the_number() {
        let update = "update pgbench_accounts set abalance = abalance + 5 where aid = 3;";
        assert_eq!(fingerprint(update), "update pgbench_accounts set abalance = abalance + ? where aid = ?");
        assert_eq!(fingerprint(&update.replace("+ 5", "+ -5")), fingerprint(update));
        assert_eq!(fingerprint(&update.replace("= 3", "= -3")), fingerprint(update));
        assert_eq!(
            fingerprint("insert into t values (1, -2, current_timestamp)"),
            fingerprint("insert into t values (1, 2, current_timestamp)")
        );
        for (sql, expected) in [
            ("-1", "?"),
            ("select -1, (-2), f(-3.5e-2)", "select ?, (?), f(?)"),
            ("select case when n < -1 then -1 else -2 end", "select case when n < ? then ? else ? end"),
            ("select * from t where id in (-1, 2) limit -0", "select * from t where id in (?) limit ?"),
            ("select a[1]-1, $1-2, (x)-3, 'a'-4", "select a[?]-?, ?-?, (x)-?, ?-?"),
            ("select n - 1, n-1, t2.c-1", "select n - ?, n-?, t2.c-?"),
            ("select 1.5e-3, 2E+4, 7-1", "select ?, ?, ?-?"),
            // Not a number: the minus stays.
            ("select -n, - 1", "select -n, - ?"),
        ] {
            assert_eq!(fingerprint(sql), expected, "{sql}");
        }
    }

    #[test]
    fn only_in_lists_and_values_rows_fold_into_one_placeholder() {
        assert_eq!(fingerprint("select 1, 2, 'a', 'b'"), "select ?, ?, ?, ?");
        assert_eq!(fingerprint("select * from generate_series(1,5)"), "select * from generate_series(?,?)");
        assert_eq!(fingerprint("select f(1, 'x'), g((1, 2))"), "select f(?, ?), g((?, ?))");
        assert_eq!(fingerprint("select x from t where id in (1, 2, 3)"), "select x from t where id in (?)");
        assert_eq!(fingerprint("select x from t where id in (1)"), fingerprint("select x from t where id IN (1,2)"));
        assert_eq!(fingerprint("select x where id not in ('a', $1, 'b')"), "select x where id not in (?)");
        assert_eq!(fingerprint("insert into t values (1, 'a'), (2, 'b')"), "insert into t values (?), (?)");
        assert_eq!(fingerprint("insert into t values (1, now(), 2, 3)"), "insert into t values (?, now(), ?)");
        // A function's arguments inside a list are not the list.
        assert_eq!(fingerprint("select 1 where x in (f(1, 2), 3, 4)"), "select ? where x in (f(?, ?), ?)");
        // Unbalanced parentheses do not break anything.
        assert_eq!(fingerprint("select ) in (1, 2"), "select ) in (?");
    }

    #[test]
    fn a_closing_semicolon_is_no_part_of_the_query() {
        assert_eq!(fingerprint("select 1;"), fingerprint("SELECT 2"));
        assert_eq!(fingerprint("select 1 ; ;\n-- done\n"), "select ?");
        assert_eq!(fingerprint("begin; select 1;"), "begin; select ?");
        assert_eq!(fingerprint(";"), "");
        assert_eq!(fingerprint("select ';'"), "select ?");
    }

    #[test]
    fn text_beyond_ascii_follows_the_same_rules() {
        assert_eq!(fingerprint("SELECT\u{a0}'é'\u{b}FROM Tä\u{2003}WHERE Ü = $é$x$é$"), "select ? from tä where ü = ?");
        assert_eq!(fingerprint("select \"Ä\" -- ü\n, $1 /* ö */"), "select \"Ä\" , ?");
    }

    #[test]
    fn long_and_broken_text_is_safe() {
        assert!(fingerprint(&"select 'é".repeat(1_000)).len() <= 512);
        assert_eq!(fingerprint("select 'unterminated"), "select ?");
        assert_eq!(fingerprint("/* open"), "");
        assert!(fingerprint(&"ü".repeat(2_000)).len() <= 512);
    }
}
