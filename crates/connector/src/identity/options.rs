//! The end user an application names for a session: the startup option
//! `options=-c gatehouse.end_user=<email or name>` (libpq: `PGOPTIONS` or the `options`
//! connection parameter), taken out of `options` before the startup goes upstream.
//!
//! A startup option was chosen over a SQL comment because it is read once, in the startup
//! phase, and costs the relay nothing; every driver can set it.
//!
//! `options` is split as PostgreSQL splits it: on spaces, with `\` escaping the next
//! character. `-c name=value`, `-cname=value` and `--name=value` are recognised.

/// The setting's name; PostgreSQL would accept it as a custom placeholder, but it is ours.
pub const END_USER: &str = "gatehouse.end_user";

/// One token of `options`: as written, and unescaped.
struct Token<'a> {
    raw: &'a str,
    value: String,
}

fn tokens(options: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut chars = options.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_ascii_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else { break };
        let mut value = String::new();
        let mut end = options.len();
        while let Some((i, c)) = chars.next() {
            if c.is_ascii_whitespace() {
                end = i;
                break;
            }
            if c == '\\' {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            } else {
                value.push(c);
            }
        }
        out.push(Token { raw: &options[start..end], value });
    }
    out
}

/// The `value` of `name=value` when `name` is [`END_USER`] (case-insensitive, `-` for `_`).
fn end_user_value(setting: &str) -> Option<&str> {
    let (name, value) = setting.split_once('=')?;
    name.replace('-', "_").eq_ignore_ascii_case(END_USER).then_some(value)
}

/// Takes the end user out of `options`: returns it (the last one, if set twice, as
/// PostgreSQL would) and the remaining options, as written.
pub fn take_end_user(options: &str) -> (Option<String>, String) {
    let tokens = tokens(options);
    let mut end_user = None;
    let mut rest: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if token.value == "-c"
            && let Some(next) = tokens.get(i + 1)
            && let Some(value) = end_user_value(&next.value)
        {
            end_user = Some(value.to_owned());
            i += 2;
            continue;
        }
        let setting = token.value.strip_prefix("--").or_else(|| token.value.strip_prefix("-c"));
        if let Some(value) = setting.and_then(end_user_value) {
            end_user = Some(value.to_owned());
        } else {
            rest.push(token.raw);
        }
        i += 1;
    }
    (end_user.filter(|u| !u.trim().is_empty()), rest.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_end_user_in_each_spelling() {
        for options in [
            "-c gatehouse.end_user=alice@example.com",
            "-cgatehouse.end_user=alice@example.com",
            "--gatehouse.end_user=alice@example.com",
            "--gatehouse.end-user=alice@example.com",
            "-c GATEHOUSE.END_USER=alice@example.com",
        ] {
            assert_eq!(take_end_user(options), (Some("alice@example.com".into()), String::new()), "{options}");
        }
    }

    #[test]
    fn keeps_the_other_options_as_written() {
        let (user, rest) = take_end_user(
            "-c search_path=a\\ b  -c gatehouse.end_user=Jane\\ Doe --work_mem=64MB -c statement_timeout=5s",
        );
        assert_eq!(user.as_deref(), Some("Jane Doe"));
        assert_eq!(rest, "-c search_path=a\\ b --work_mem=64MB -c statement_timeout=5s");
        assert_eq!(take_end_user("-c search_path=x"), (None, "-c search_path=x".into()));
        assert_eq!(take_end_user(""), (None, String::new()));
        // A trailing `-c` with nothing after it stays for PostgreSQL to refuse.
        assert_eq!(take_end_user("-c"), (None, "-c".into()));
    }

    #[test]
    fn the_last_setting_wins_and_empty_is_none() {
        assert_eq!(take_end_user("-c gatehouse.end_user=a -c gatehouse.end_user=b").0.as_deref(), Some("b"));
        assert_eq!(take_end_user("-c gatehouse.end_user=").0, None);
    }
}
