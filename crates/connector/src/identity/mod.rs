//! Identity logins: the connector authenticates the person or machine behind a connection
//! itself, with an access token checked by the control plane, and logs in to the database as
//! the native role the control plane maps them to.
//!
//! # Layout
//! - `username`: the convention `idp:formal:human:<email>[@role]`, `idp:formal:machine:<name>[@role]`.
//! - `options`: the end user named with `options=-c gatehouse.end_user=...`.
//! - [`Verifier`]: `VerifyIdentity` calls with a short cache.
//! - [`Credentials`]: the native roles' passwords, which never leave the connector.
//! - `access`: open sessions checked again, and terminated once their access is gone.
//! - [`Throttle`]: addresses that keep failing are refused without a check for a while.
//!
//! The exchange itself (cleartext password from the client, login upstream) is in
//! `proxy::login`, in the startup phase: nothing here runs per relayed message.

mod access;
mod options;
pub mod throttle;
mod username;
mod verifier;

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

pub use access::{Access, RECHECK_EVERY, Round, recheck, recheck_once};
pub use options::{END_USER, take_end_user};
pub use throttle::Throttle;
pub use username::{IdentityName, NameError, PREFIX, UserType, parse};
pub use verifier::{MAX_CACHE, VERIFY_TIMEOUT, Verdict, Verifier, VerifyError};

use crate::config::{Credential, Secret};

/// The native roles' passwords, by resource and role; a credential without a resource
/// applies to every resource that has none of its own. Replaced whole when the configuration
/// is read again (SIGHUP): a login takes the passwords of the moment it logs in.
#[derive(Debug, Default)]
pub struct Credentials {
    by_role: RwLock<HashMap<(Option<String>, String), Secret>>,
}

impl Credentials {
    pub fn new(credentials: &[Credential]) -> Self {
        Self { by_role: RwLock::new(Self::index(credentials)) }
    }

    /// Replaces every password with those of `credentials`.
    pub fn replace(&self, credentials: &[Credential]) {
        *self.by_role.write().unwrap_or_else(PoisonError::into_inner) = Self::index(credentials);
    }

    /// The password of `role` on `resource_id`, if the connector has one.
    pub fn find(&self, resource_id: &str, role: &str) -> Option<Secret> {
        let by_role = self.by_role.read().unwrap_or_else(PoisonError::into_inner);
        by_role
            .get(&(Some(resource_id.to_owned()), role.to_owned()))
            .or_else(|| by_role.get(&(None, role.to_owned())))
            .cloned()
    }

    fn index(credentials: &[Credential]) -> HashMap<(Option<String>, String), Secret> {
        credentials.iter().map(|c| ((c.resource.clone(), c.role.clone()), c.secret.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_credential_wins_over_a_general_one() {
        let credentials = Credentials::new(&[
            Credential::new(None, "analyst", "general"),
            Credential::new(Some("res_a"), "analyst", "specific"),
        ]);
        let password = |resource, role| credentials.find(resource, role).map(|s| s.expose().to_owned());
        assert_eq!(password("res_a", "analyst").as_deref(), Some("specific"));
        assert_eq!(password("res_b", "analyst").as_deref(), Some("general"));
        assert_eq!(password("res_a", "other"), None);
        assert!(!format!("{credentials:?}").contains("general"));
        credentials.replace(&[Credential::new(None, "other", "renewed")]);
        assert_eq!(password("res_a", "analyst"), None, "replaced whole");
        assert_eq!(password("res_a", "other").as_deref(), Some("renewed"));
    }
}
