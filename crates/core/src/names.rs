//! The shape of the names people and machines are known by, checked alike
//! where they are registered (the control plane) and where they are given
//! (the connector's startup packet).

/// The longest machine name, group or external id.
pub const MAX_NAME_LEN: usize = 200;
/// PostgreSQL's identifier limit, which role names share.
pub const MAX_ROLE_LEN: usize = 63;

/// A human's email: one `@` with text on both sides, no spaces or control
/// characters, at most [`MAX_NAME_LEN`] bytes.
pub fn is_email(email: &str) -> bool {
    let shaped = match email.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    };
    shaped && email.len() <= MAX_NAME_LEN && !email.chars().any(blank)
}

/// A machine's name: no `@` (connections append `@<role>` to it, and a
/// handle with an `@` is a human's email), no spaces or control characters.
pub fn is_machine_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.contains('@') && !name.chars().any(blank)
}

/// A native role name: identifier-sized, without spaces, quotes or `@`
/// (which separates it in connection user names).
pub fn is_role_name(role: &str) -> bool {
    let bad = |c: char| blank(c) || matches!(c, '@' | '"' | '\'');
    !role.is_empty() && role.len() <= MAX_ROLE_LEN && !role.chars().any(bad)
}

fn blank(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(is_email("alice@example.com"));
        for bad in ["alice", "@example.com", "alice@", "a@b@c", "a b@c", "a@b\nc", "a\u{1b}@b"] {
            assert!(!is_email(bad), "{bad:?}");
        }
        assert!(!is_email(&format!("{}@example.com", "a".repeat(MAX_NAME_LEN))));
    }

    #[test]
    fn machine_names() {
        assert!(is_machine_name("etl-nightly"));
        for bad in ["", "etl@x", "etl nightly", "etl\nINFO fake"] {
            assert!(!is_machine_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn role_names() {
        assert!(is_role_name("analyst"));
        for bad in ["", "a b", "a@b", "a\"b", "a'b", "a\tb"] {
            assert!(!is_role_name(bad), "{bad:?}");
        }
        assert!(!is_role_name(&"r".repeat(MAX_ROLE_LEN + 1)));
    }
}
