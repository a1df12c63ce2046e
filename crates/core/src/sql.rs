//! SQL text read as PostgreSQL's lexer reads it, as far as recording needs: where string
//! literals, quoted names and comments begin and end.
//!
//! The connector uses it to take the passwords a statement sets out of what it records
//! ([`redact_passwords`]); the store, to take values out of statement fingerprints.

use std::borrow::Cow;
use std::ops::Range;

/// What a password taken out of a recorded statement reads as.
pub const REDACTED: &str = "[redacted]";

/// `sql` with the passwords it holds replaced by [`REDACTED`], so that a transcript, which a
/// reader key may read, never shows one:
/// - the string a `PASSWORD` option sets: `CREATE ROLE` / `ALTER ROLE` / `ALTER USER`
///   (psql's `\password` sends the hash it computed, as good as a password to an offline
///   guesser), and the `password` of a user mapping's or a server's `OPTIONS (...)`;
/// - a password inside a connection string, as `CREATE SUBSCRIPTION ... CONNECTION` or
///   `dblink_connect` take them: `password=...` and the `user:password@` of a URI.
///
/// Anything else is left exactly as sent: `WHERE password = 'x'` compares, it sets nothing
/// a database login uses. Borrowed when there was nothing to take out, as almost always.
pub fn redact_passwords(sql: &str) -> Cow<'_, str> {
    let bytes = sql.as_bytes();
    if !may_hold_password(bytes) {
        return Cow::Borrowed(sql);
    }
    let mut redactions: Vec<(Range<usize>, &str)> = Vec::new();
    let mut after_password = false;
    let mut i = 0;
    while i < bytes.len() {
        let (b, next) = (bytes[i], bytes.get(i + 1).copied());
        let follows_word = i > 0 && is_ident_byte(bytes[i - 1]);
        let (end, literal) = match b {
            b if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if next == Some(b'-') => {
                i = find(bytes, i, b"\n").map_or(bytes.len(), |n| n + 1);
                continue;
            }
            b'/' if next == Some(b'*') => {
                i = skip_block_comment(bytes, i);
                continue;
            }
            b'\'' => (skip_quoted(bytes, i, b'\''), true),
            b'e' | b'E' if next == Some(b'\'') && !follows_word => (skip_escaped_string(bytes, i + 1), true),
            b'u' | b'U' if next == Some(b'&') && bytes.get(i + 2) == Some(&b'\'') && !follows_word => {
                (skip_quoted(bytes, i + 2, b'\''), true)
            }
            b'$' if !follows_word => match skip_dollar_quoted(sql, i) {
                Some(end) => (end, true),
                None => (i + 1, false),
            },
            b'"' => (skip_quoted(bytes, i, b'"'), false),
            b if is_ident_byte(b) => {
                let end = bytes[i..].iter().position(|&b| !is_ident_byte(b)).map_or(bytes.len(), |n| i + n);
                after_password = sql[i..end].eq_ignore_ascii_case("password");
                i = end;
                continue;
            }
            _ => (i + 1, false),
        };
        if literal && after_password {
            redactions.push((i..end, "'[redacted]'"));
        } else if literal {
            redactions.extend(connection_string_passwords(sql, i..end).map(|range| (range, REDACTED)));
        }
        after_password = false;
        i = end;
    }
    if redactions.is_empty() {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for (range, replacement) in redactions {
        out.push_str(&sql[copied..range.start]);
        out.push_str(replacement);
        copied = range.end;
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

/// Whether `bytes` hold the word `password` in any case, or a URI: most statements do not,
/// and are then not read further.
fn may_hold_password(bytes: &[u8]) -> bool {
    find_ignore_case(bytes, 0, b"password").is_some() || find(bytes, 0, b"://").is_some()
}

/// The passwords in the connection string a literal (at `literal` in `sql`) may hold: the
/// value of each `password=` (to the next space, or the end of a value quoted in it), and
/// what follows the `:` of a URI's `user:password@`.
fn connection_string_passwords(sql: &str, literal: Range<usize>) -> impl Iterator<Item = Range<usize>> + '_ {
    let text = &sql.as_bytes()[..literal.end];
    let mut from = literal.start;
    let mut uri = find(text, literal.start, b"://").and_then(|scheme_end| {
        let authority = scheme_end + 3;
        let end = text[authority..]
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'\''))
            .map_or(text.len(), |n| authority + n);
        let at = text[authority..end].iter().rposition(|&b| b == b'@')? + authority;
        let colon = text[authority..at].iter().position(|&b| b == b':')? + authority;
        Some(colon + 1..at)
    });
    let mut keywords = std::iter::from_fn(move || {
        while let Some(found) = find_ignore_case(text, from, b"password") {
            from = found + 8;
            let starts_word = !is_ident_byte(text[found - 1]);
            let mut value = found + 8;
            while text.get(value).is_some_and(u8::is_ascii_whitespace) {
                value += 1;
            }
            if !starts_word || text.get(value) != Some(&b'=') {
                continue;
            }
            value += 1;
            while text.get(value).is_some_and(u8::is_ascii_whitespace) {
                value += 1;
            }
            // The closing quote of the SQL literal ends the value at the latest.
            let limit = literal.end - 1;
            if value >= limit {
                continue;
            }
            // A value quoted inside the literal: `''...''` in standard SQL, `\'...\'` in E'...'.
            let quote: &[u8] = if text[value..].starts_with(b"''") {
                b"''"
            } else if text[value..].starts_with(b"\\'") {
                b"\\'"
            } else {
                b""
            };
            let end = if quote.is_empty() {
                text[value..limit].iter().position(u8::is_ascii_whitespace).map_or(limit, |n| value + n)
            } else {
                find(&text[..limit], value + 2, quote).map_or(limit, |n| n + 2)
            };
            from = end;
            if end > value {
                return Some(value..end);
            }
        }
        None
    });
    std::iter::from_fn(move || uri.take()).filter(|r| !r.is_empty()).chain(std::iter::from_fn(move || keywords.next()))
}

/// Whether `b` continues (or starts) a name: PostgreSQL takes letters beyond ASCII too.
fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Where `needle` next occurs in `haystack` at or after `from`.
fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|n| from + n)
}

/// [`find`], in any ASCII case.
fn find_ignore_case(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle)).map(|n| from + n)
}

/// Index just past the quoted run starting at `start` (doubled quotes escape).
pub fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// Index just past an `E'...'` string whose quote is at `start`, where a backslash escapes
/// the character after it as well.
fn skip_escaped_string(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Index just past the dollar-quoted string (`$$...$$`, `$tag$...$tag$`) starting at `start`,
/// or `None` when the `$` there starts none (a `$1` parameter).
pub fn skip_dollar_quoted(sql: &str, start: usize) -> Option<usize> {
    let bytes = sql.as_bytes();
    let tag_end = sql[start + 1..].find(|c: char| !(c.is_alphanumeric() || c == '_')).map(|n| start + 1 + n)?;
    if bytes[tag_end] != b'$' || bytes.get(start + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let tag = &bytes[start..=tag_end];
    Some(find(bytes, tag_end + 1, tag).map_or(bytes.len(), |k| k + tag.len()))
}

/// Index just past the block comment starting at `start`: they nest in PostgreSQL.
pub fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let (mut depth, mut i) = (0usize, start);
    while i + 1 < bytes.len() {
        match &bytes[i..i + 2] {
            b"/*" => {
                depth += 1;
                i += 2;
            }
            b"*/" => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(sql: &str) -> String {
        redact_passwords(sql).into_owned()
    }

    #[test]
    fn a_password_option_is_redacted() {
        for (sql, expected) in [
            ("ALTER ROLE app PASSWORD 'hunter2'", "ALTER ROLE app PASSWORD '[redacted]'"),
            (
                "create user x with login encrypted password 'a b' valid until 'infinity'",
                "create user x with login encrypted password '[redacted]' valid until 'infinity'",
            ),
            ("alter user x password E'it\\'s'", "alter user x password '[redacted]'"),
            ("alter user x password $p$it's$p$;", "alter user x password '[redacted]';"),
            ("alter user x password /* why */ 'a''b' -- c\n", "alter user x password /* why */ '[redacted]' -- c\n"),
            ("alter user x password U&'d\\0061t'", "alter user x password '[redacted]'"),
            (
                "ALTER USER \"Bob\" PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$aGFzaA==:a2V5'",
                "ALTER USER \"Bob\" PASSWORD '[redacted]'",
            ),
            (
                "create user mapping for app server s options (user 'u', password 'p')",
                "create user mapping for app server s options (user 'u', password '[redacted]')",
            ),
            (
                "select 1; alter role a password 'x'; select 'password'",
                "select 1; alter role a password '[redacted]'; select 'password'",
            ),
        ] {
            assert_eq!(redacted(sql), expected, "{sql}");
        }
    }

    #[test]
    fn a_connection_strings_password_is_redacted() {
        for (sql, expected) in [
            (
                "CREATE SUBSCRIPTION s CONNECTION 'host=db user=rep password=s3cret dbname=x' PUBLICATION p",
                "CREATE SUBSCRIPTION s CONNECTION 'host=db user=rep password=[redacted] dbname=x' PUBLICATION p",
            ),
            (
                "select dblink_connect('password = ''a b'' host=h')",
                "select dblink_connect('password = [redacted] host=h')",
            ),
            ("select dblink_connect('dbname=x password=p')", "select dblink_connect('dbname=x password=[redacted]')"),
            (
                "select dblink_connect('postgresql://rep:s3cret@db:5432/x?sslmode=require')",
                "select dblink_connect('postgresql://rep:[redacted]@db:5432/x?sslmode=require')",
            ),
        ] {
            assert_eq!(redacted(sql), expected, "{sql}");
        }
    }

    #[test]
    fn what_sets_no_password_is_left_as_sent() {
        for sql in [
            "select * from users where password = 'x'",
            "update users set password = crypt('x', gen_salt('bf'))",
            "insert into t (password) values ('x')",
            "select 'no password here', \"password\" from t",
            "select $1 from t where password_hash = $2",
            "select 'password', 'mypassword=1'",
            "-- password 'x'\nselect 1",
            "alter role x password null",
            "select 'http://user@host/password'",
        ] {
            assert!(matches!(redact_passwords(sql), Cow::Borrowed(_)), "{sql}: {}", redacted(sql));
        }
    }

    #[test]
    fn text_that_does_not_end_is_read_to_its_end() {
        assert_eq!(redacted("alter role a password 'unterminated"), "alter role a password '[redacted]'");
        assert_eq!(redacted("alter role a password E'x\\"), "alter role a password '[redacted]'");
        assert_eq!(redacted("alter role a password"), "alter role a password");
        assert_eq!(redacted("/* /* nested */ password 'x' */ select 1"), "/* /* nested */ password 'x' */ select 1");
        assert_eq!(redacted("select 'password="), "select 'password=");
        assert_eq!(redacted("alter role é password 'ü'"), "alter role é password '[redacted]'");
    }

    #[test]
    fn dollar_quotes_and_parameters() {
        assert_eq!(skip_dollar_quoted("$$a$$ b", 0), Some(5));
        assert_eq!(skip_dollar_quoted("$t$a$$t$ b", 0), Some(8));
        assert_eq!(skip_dollar_quoted("$1", 0), None);
        assert_eq!(skip_dollar_quoted("$", 0), None);
        assert_eq!(skip_block_comment(b"/* a /* b */ c */ d", 0), 17);
    }
}
