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
    identity: Option<Identity>,
) -> MessageField<user::formal::UserInfo, buffa::Inline<user::formal::UserInfo>> {
    match identity {
        Some(i) => MessageField::some(user::formal::UserInfo {
            id: i.id,
            name: i.name,
            email: i.email,
            r#type: i.kind,
            groups: i.groups,
            external_ids: i.external_ids,
            ..Default::default()
        }),
        None => MessageField::none(),
    }
}

/// Converts a stored session, taking its text rather than copying it (a page holds up to
/// 100,000); `now` fixes the elapsed duration of an active one.
pub fn session_object(s: Session, now: Micros) -> SessionObject {
    let (status, elapsed) = (s.status().as_str().to_owned(), s.duration(now));
    let u = s.user;
    let formal = user::Formal { user: user_info(u.formal), end_user: user_info(u.end_user), ..Default::default() };
    let has_formal = formal.user.is_set() || formal.end_user.is_set();
    let has_network = !(s.client_ip.is_empty() && s.server_ip.is_empty());
    let (has_sidecar, has_resource) = (s.sidecar != Default::default(), s.resource != Default::default());
    let has_connector = s.connector != Default::default();
    let has_native = !u.native_username.is_empty();
    SessionObject {
        id: s.id,
        start_time: MessageField::some(timestamp(s.start)),
        end_time: s.end.map(timestamp).into(),
        duration: MessageField::some(duration(elapsed)),
        session_status: status,
        network: set_if(
            Network { client_ip_address: s.client_ip, server_ip_address: s.server_ip, ..Default::default() },
            has_network,
        ),
        sidecar: set_if(
            Sidecar { id: s.sidecar.id, name: s.sidecar.name, technology: s.sidecar.technology, ..Default::default() },
            has_sidecar,
        ),
        user: MessageField::some(User {
            r#type: u.kind,
            username: u.username,
            formal: set_if(formal, has_formal),
            native: set_if(user::Native { username: u.native_username, ..Default::default() }, has_native),
            ..Default::default()
        }),
        resource: set_if(
            Resource {
                r#type: s.resource.kind,
                id: s.resource.id,
                name: s.resource.name,
                technology: s.resource.technology,
                ..Default::default()
            },
            has_resource,
        ),
        connector: set_if(
            Connector { id: s.connector.id, name: s.connector.name, ..Default::default() },
            has_connector,
        ),
        parent_session_id: s.parent_session_id,
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
