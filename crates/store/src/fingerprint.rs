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
    let mut out = String::with_capacity(sql.len().min(MAX_LEN));
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut space = false;
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    while i < chars.len() && out.len() < MAX_LEN {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            space = true;
            continue;
        }
        if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        let after_ident = out.chars().next_back().is_some_and(ident);
        match c {
            '\'' => {
                // A prefix such as E'..' or B'..' belongs to the literal.
                if out.ends_with(['e', 'b', 'x', 'n']) && !out[..out.len() - 1].ends_with(ident) {
                    out.pop();
                }
                i = skip_quoted(&chars, i, '\'');
                push_value(&mut out);
            }
            '"' => {
                let end = skip_quoted(&chars, i, '"');
                out.extend(&chars[i..end]);
                i = end;
            }
            '$' if !after_ident => {
                let tag_end = (i + 1..chars.len()).find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_'));
                match tag_end {
                    Some(j) if chars[j] == '$' && !chars[i + 1..j].first().is_some_and(char::is_ascii_digit) => {
                        let tag: Vec<char> = chars[i..=j].to_vec();
                        let body = j + 1;
                        let close = (body..chars.len()).find(|&k| chars[k..].starts_with(&tag));
                        i = close.map_or(chars.len(), |k| k + tag.len());
                        push_value(&mut out);
                    }
                    // `$1`: a parameter, kept.
                    _ => {
                        out.push('$');
                        i += 1;
                        while i < chars.len() && chars[i].is_ascii_digit() {
                            out.push(chars[i]);
                            i += 1;
                        }
                    }
                }
            }
            c if c.is_ascii_digit() && !after_ident => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                push_value(&mut out);
            }
            // Most SQL is ASCII, and Unicode's case tables are slow.
            c if c.is_ascii() => {
                out.push(c.to_ascii_lowercase());
                i += 1;
            }
            c => {
                out.extend(c.to_lowercase());
                i += 1;
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

/// Index just past the quoted run starting at `start` (doubled quotes escape).
fn skip_quoted(chars: &[char], start: usize, quote: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
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
    fn long_and_broken_text_is_safe() {
        assert!(fingerprint(&"select 'é".repeat(1_000)).len() <= 512);
        assert_eq!(fingerprint("select 'unterminated"), "select ?");
        assert_eq!(fingerprint("/* open"), "");
        assert!(fingerprint(&"ü".repeat(2_000)).len() <= 512);
    }
}
