//! Statement fingerprints: the text with its values taken out, so that
//! statements differing only in literals count as one query.

/// Longest fingerprint kept, in bytes; longer ones are cut at a char boundary.
const MAX_LEN: usize = 512;

/// `SELECT * FROM t WHERE id = 42 AND name IN ('a', 'b')` becomes
/// `select * from t where id = ? and name in (?)`: string, number and
/// dollar-quoted literals become `?`, lists of them one `?`, comments go,
/// whitespace collapses and unquoted text is lower-cased. Quoted identifiers
/// and `$n` parameters stay as written.
pub fn fingerprint(sql: &str) -> String {
    // Walks bytes, not chars: every character the rules look at is ASCII,
    // and UTF-8 never uses an ASCII byte inside another character.
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len().min(MAX_LEN));
    let mut i = 0;
    let mut space = false;
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
            i = bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |n| i + n);
            space = true;
            continue;
        }
        if b == b'/' && next == Some(b'*') {
            i = find(bytes, i + 2, b"*/").map_or(bytes.len(), |k| k + 2);
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        let after_ident = out.chars().next_back().is_some_and(is_ident);
        match b {
            b'\'' => {
                // A prefix such as E'..' or B'..' belongs to the literal.
                if out.ends_with(['e', 'b', 'x', 'n']) && !out[..out.len() - 1].ends_with(is_ident) {
                    out.pop();
                }
                i = skip_quoted(bytes, i, b'\'');
                push_value(&mut out);
            }
            b'"' => {
                let end = skip_quoted(bytes, i, b'"');
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'$' if !after_ident => {
                let tag_end = sql[i + 1..].find(|c: char| !(c.is_alphanumeric() || c == '_')).map(|n| i + 1 + n);
                match tag_end {
                    Some(j) if bytes[j] == b'$' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                        let tag = &bytes[i..=j];
                        i = find(bytes, j + 1, tag).map_or(bytes.len(), |k| k + tag.len());
                        push_value(&mut out);
                    }
                    // `$1`: a parameter, kept.
                    _ => {
                        let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                        out.push_str(&sql[i..i + 1 + digits]);
                        i += 1 + digits;
                    }
                }
            }
            b if b.is_ascii_digit() && !after_ident => {
                i += bytes[i..].iter().take_while(|&&b| b.is_ascii_alphanumeric() || b == b'.').count();
                push_value(&mut out);
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
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Where `needle` next occurs in `haystack` at or after `from`.
fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|n| from + n)
}

/// Index just past the quoted run starting at `start` (doubled quotes escape).
fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
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

/// Appends `?`, folding a list of values (`?, ?`) into one.
fn push_value(out: &mut String) {
    if out.ends_with("?, ") || out.ends_with("?,") {
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
        assert_eq!(fingerprint("select $1::int, $$body$$ || $tag$a$b$tag$"), "select $1::int, ? || ?");
        assert_eq!(
            fingerprint("SELECT \"Weird\"\"Col\" FROM t2 /* c */ LIMIT 10"),
            "select \"Weird\"\"Col\" from t2 limit ?"
        );
        assert_eq!(fingerprint("insert into t values (1.5e3, 'x')"), "insert into t values (?)");
        assert_eq!(fingerprint("select 1"), fingerprint("SELECT   2"));
    }

    #[test]
    fn text_beyond_ascii_follows_the_same_rules() {
        assert_eq!(fingerprint("SELECT\u{a0}'é'\u{b}FROM Tä\u{2003}WHERE Ü = $é$x$é$"), "select ? from tä where ü = ?");
        assert_eq!(fingerprint("select \"Ä\" -- ü\n, $1 /* ö */"), "select \"Ä\" , $1");
    }

    #[test]
    fn long_and_broken_text_is_safe() {
        assert!(fingerprint(&"select 'é".repeat(1_000)).len() <= 512);
        assert_eq!(fingerprint("select 'unterminated"), "select ?");
        assert_eq!(fingerprint("/* open"), "");
        assert!(fingerprint(&"ü".repeat(2_000)).len() <= 512);
    }
}
