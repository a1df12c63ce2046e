//! Domain sessions to `core.v1` messages. Empty values stay unset, so the
//! JSON form omits them as the public API does.

use buffa::MessageField;
use buffa_types::google::protobuf::{Duration, Timestamp};
use gatehouse_core::{Identity, Micros, Session};
use gatehouse_proto::core::v1::SessionObject;
use gatehouse_proto::core::v1::session_object::{Connector, Network, Resource, Sidecar, User, user};

pub fn timestamp(at: Micros) -> Timestamp {
    Timestamp {
        seconds: at.div_euclid(1_000_000),
        nanos: (at.rem_euclid(1_000_000) * 1_000) as i32,
        ..Default::default()
    }
}

pub fn duration(span: Micros) -> Duration {
    // Seconds and nanos share the sign, per the Duration contract.
    Duration { seconds: span / 1_000_000, nanos: ((span % 1_000_000) * 1_000) as i32, ..Default::default() }
}

fn set_if<T: Default>(value: T, present: bool) -> MessageField<T, buffa::Inline<T>> {
    if present { MessageField::some(value) } else { MessageField::none() }
}

fn user_info(
    identity: &Option<Identity>,
) -> MessageField<user::formal::UserInfo, buffa::Inline<user::formal::UserInfo>> {
    match identity {
        Some(i) => MessageField::some(user::formal::UserInfo {
            id: i.id.clone(),
            name: i.name.clone(),
            email: i.email.clone(),
            r#type: i.kind.clone(),
            groups: i.groups.clone(),
            external_ids: i.external_ids.clone(),
            ..Default::default()
        }),
        None => MessageField::none(),
    }
}

/// Converts a stored session; `now` fixes the elapsed duration of an active one.
pub fn session_object(s: &Session, now: Micros) -> SessionObject {
    let u = &s.user;
    let formal = user::Formal { user: user_info(&u.formal), end_user: user_info(&u.end_user), ..Default::default() };
    let has_formal = formal.user.is_set() || formal.end_user.is_set();
    SessionObject {
        id: s.id.clone(),
        start_time: MessageField::some(timestamp(s.start)),
        end_time: s.end.map(timestamp).into(),
        duration: MessageField::some(duration(s.duration(now))),
        session_status: s.status().as_str().to_owned(),
        network: set_if(
            Network {
                client_ip_address: s.client_ip.clone(),
                server_ip_address: s.server_ip.clone(),
                ..Default::default()
            },
            !(s.client_ip.is_empty() && s.server_ip.is_empty()),
        ),
        sidecar: set_if(
            Sidecar {
                id: s.sidecar.id.clone(),
                name: s.sidecar.name.clone(),
                technology: s.sidecar.technology.clone(),
                ..Default::default()
            },
            s.sidecar != Default::default(),
        ),
        user: MessageField::some(User {
            r#type: u.kind.clone(),
            username: u.username.clone(),
            formal: set_if(formal, has_formal),
            native: set_if(
                user::Native { username: u.native_username.clone(), ..Default::default() },
                !u.native_username.is_empty(),
            ),
            ..Default::default()
        }),
        resource: set_if(
            Resource {
                r#type: s.resource.kind.clone(),
                id: s.resource.id.clone(),
                name: s.resource.name.clone(),
                technology: s.resource.technology.clone(),
                ..Default::default()
            },
            s.resource != Default::default(),
        ),
        connector: set_if(
            Connector { id: s.connector.id.clone(), name: s.connector.name.clone(), ..Default::default() },
            s.connector != Default::default(),
        ),
        parent_session_id: s.parent_session_id.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_before_epoch_keep_positive_nanos() {
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_999_000));
        let d = duration(3_500_000);
        assert_eq!((d.seconds, d.nanos), (3, 500_000_000));
    }
}
