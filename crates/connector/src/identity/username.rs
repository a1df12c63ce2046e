//! The connection convention for identities: the startup user name
//! `idp:formal:human:<email>` or `idp:formal:machine:<name>`, optionally followed by
//! `@<native role>`.
//!
//! A human's email holds one `@` itself, so for humans only a second `@` starts the role
//! (`idp:formal:human:alice@example.com@analyst`); for machines the first does
//! (`idp:formal:machine:etl@loader`).

use gatehouse_core::names;

/// Every identity user name starts with this; other names are native logins.
pub const PREFIX: &str = "idp:formal:";

/// `human` or `machine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    Human,
    Machine,
}

impl UserType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Machine => "machine",
        }
    }
}

/// A parsed identity user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityName {
    pub user_type: UserType,
    /// A human's email or a machine's name.
    pub user: String,
    /// The `@<role>` asked for, if any.
    pub role: Option<String>,
}

/// Why a name that starts with [`PREFIX`] is not a valid identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("expected idp:formal:human:<email> or idp:formal:machine:<name>")]
    UnknownType,
    #[error("the email is not an address")]
    BadEmail,
    #[error("the machine name is empty, or holds spaces or control characters")]
    BadMachineName,
    #[error("the role after `@` is empty, or holds spaces, quotes or control characters")]
    BadRole,
    #[error("the role after `@` holds another `@`: name one role")]
    TwoRoles,
}

/// `None` for a native user name; the parsed identity, or why it is not one, otherwise.
pub fn parse(name: &str) -> Option<Result<IdentityName, NameError>> {
    let rest = name.strip_prefix(PREFIX)?;
    Some(parse_rest(rest))
}

fn parse_rest(rest: &str) -> Result<IdentityName, NameError> {
    let (user_type, rest) = if let Some(rest) = rest.strip_prefix("human:") {
        (UserType::Human, rest)
    } else if let Some(rest) = rest.strip_prefix("machine:") {
        (UserType::Machine, rest)
    } else {
        return Err(NameError::UnknownType);
    };
    let (user, role) = match user_type {
        UserType::Human => match rest.match_indices('@').nth(1) {
            Some((at, _)) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        },
        UserType::Machine => match rest.split_once('@') {
            Some((user, role)) => (user, Some(role)),
            None => (rest, None),
        },
    };
    let user_ok = match user_type {
        UserType::Human => names::is_email(user),
        UserType::Machine => names::is_machine_name(user),
    };
    if !user_ok {
        return Err(match user_type {
            UserType::Human => NameError::BadEmail,
            UserType::Machine => NameError::BadMachineName,
        });
    }
    if role.is_some_and(|role| role.contains('@')) {
        return Err(NameError::TwoRoles);
    }
    if role.is_some_and(|role| !names::is_role_name(role)) {
        return Err(NameError::BadRole);
    }
    Ok(IdentityName { user_type, user: user.to_owned(), role: role.map(str::to_owned) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str) -> (UserType, String, Option<String>) {
        let parsed = parse(name).unwrap().unwrap();
        (parsed.user_type, parsed.user, parsed.role)
    }

    #[test]
    fn native_names_are_not_identities() {
        for name in ["postgres", "alice@example.com", "idp:other:human:a@b", "IDP:FORMAL:human:a@b", ""] {
            assert_eq!(parse(name), None, "{name}");
        }
    }

    #[test]
    fn humans_with_and_without_a_role() {
        assert_eq!(ok("idp:formal:human:alice@example.com"), (UserType::Human, "alice@example.com".into(), None));
        assert_eq!(
            ok("idp:formal:human:alice@example.com@analyst"),
            (UserType::Human, "alice@example.com".into(), Some("analyst".into()))
        );
        // Everything after the second `@` is the role, and roles never hold one.
        assert_eq!(parse("idp:formal:human:a@b.c@x@y"), Some(Err(NameError::TwoRoles)));
    }

    #[test]
    fn machines_with_and_without_a_role() {
        assert_eq!(ok("idp:formal:machine:etl"), (UserType::Machine, "etl".into(), None));
        assert_eq!(
            ok("idp:formal:machine:etl-bot@loader"),
            (UserType::Machine, "etl-bot".into(), Some("loader".into()))
        );
    }

    #[test]
    fn malformed_identities_say_why() {
        let err = |name: &str| parse(name).unwrap().unwrap_err();
        assert_eq!(err("idp:formal:robot:x"), NameError::UnknownType);
        assert_eq!(err("idp:formal:"), NameError::UnknownType);
        assert_eq!(err("idp:formal:human:alice"), NameError::BadEmail);
        assert_eq!(err("idp:formal:human:@example.com"), NameError::BadEmail);
        assert_eq!(err("idp:formal:human:alice@"), NameError::BadEmail);
        assert_eq!(err("idp:formal:human:alice@example.com@"), NameError::BadRole);
        assert_eq!(err("idp:formal:machine:"), NameError::BadMachineName);
        assert_eq!(err("idp:formal:machine:@role"), NameError::BadMachineName);
        assert_eq!(err("idp:formal:machine:etl@"), NameError::BadRole);
        // Names that would write lines of their own into a log.
        assert_eq!(err("idp:formal:machine:etl\nINFO identity login user=ceo"), NameError::BadMachineName);
        assert_eq!(err("idp:formal:human:x@example.com\nINFO fake"), NameError::BadEmail);
        assert_eq!(err("idp:formal:machine:etl@dba\r\nfake"), NameError::BadRole);
    }
}
