//! The multi-row session INSERT, shared by both databases.

use gatehouse_core::{OrgId, Session};

use super::builder::{Arg, SqlBuilder};
use super::{fold, rollup};
use crate::ip;
use crate::model::stored_end;
use crate::row::json_list;

/// Appends `INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING RETURNING pk, id, ...`
/// (and the columns the rollup counts by): a session whose id exists already
/// is left as it is and not returned. A session stored already ended counts as
/// recorded at its end (`end_recorded_us`): no walk saw it open.
pub fn push_insert_sessions(b: &mut SqlBuilder, org: OrgId, sessions: &[Session]) {
    b.push(
        "INSERT INTO sessions (org_id, id, start_us, end_us, duration_us, client_ip, client_ip_bin, \
         server_ip, server_ip_bin, sidecar_id, sidecar_name, sidecar_technology, user_type, user_username, \
         user_id, user_name, user_email, user_formal_type, user_groups, user_external_ids, end_user_id, \
         end_user_name, end_user_email, end_user_type, end_user_groups, end_user_external_ids, native_username, \
         resource_type, resource_id, resource_name, resource_technology, connector_id, connector_name, \
         parent_session_id, user_username_fold, user_name_fold, user_email_fold, end_user_name_fold, \
         end_user_email_fold, native_username_fold, resource_name_fold, connector_name_fold, run_id, \
         end_recorded_us) VALUES ",
    );
    for (i, s) in sessions.iter().enumerate() {
        let formal = s.user.formal.clone().unwrap_or_default();
        let end_user = s.user.end_user.clone().unwrap_or_default();
        let opt_int = |v: Option<i64>| v.map_or(Arg::Null, Arg::Int);
        let opt_blob = |v: Option<Vec<u8>>| v.map_or(Arg::Null, Arg::Blob);
        let end = stored_end(s);
        let args = [
            Arg::Int(org.0),
            Arg::Text(s.id.clone()),
            Arg::Int(s.start),
            opt_int(end),
            opt_int(end.map(|end| end - s.start)),
            Arg::Text(s.client_ip.clone()),
            opt_blob(ip::parse_bytes(&s.client_ip)),
            Arg::Text(s.server_ip.clone()),
            opt_blob(ip::parse_bytes(&s.server_ip)),
            Arg::Text(s.sidecar.id.clone()),
            Arg::Text(s.sidecar.name.clone()),
            Arg::Text(s.sidecar.technology.clone()),
            Arg::Text(s.user.kind.clone()),
            Arg::Text(s.user.username.clone()),
            Arg::Text(formal.id),
            Arg::Text(formal.name.clone()),
            Arg::Text(formal.email.clone()),
            Arg::Text(formal.kind),
            Arg::Text(json_list(&formal.groups)),
            Arg::Text(json_list(&formal.external_ids)),
            Arg::Text(end_user.id),
            Arg::Text(end_user.name.clone()),
            Arg::Text(end_user.email.clone()),
            Arg::Text(end_user.kind),
            Arg::Text(json_list(&end_user.groups)),
            Arg::Text(json_list(&end_user.external_ids)),
            Arg::Text(s.user.native_username.clone()),
            Arg::Text(s.resource.kind.clone()),
            Arg::Text(s.resource.id.clone()),
            Arg::Text(s.resource.name.clone()),
            Arg::Text(s.resource.technology.clone()),
            Arg::Text(s.connector.id.clone()),
            Arg::Text(s.connector.name.clone()),
            Arg::Text(s.parent_session_id.clone()),
            Arg::Text(fold(&s.user.username)),
            Arg::Text(fold(&formal.name)),
            Arg::Text(fold(&formal.email)),
            Arg::Text(fold(&end_user.name)),
            Arg::Text(fold(&end_user.email)),
            Arg::Text(fold(&s.user.native_username)),
            Arg::Text(fold(&s.resource.name)),
            Arg::Text(fold(&s.connector.name)),
            Arg::Text(s.connector.run_id.clone()),
            opt_int(end),
        ];
        b.push(if i == 0 { "(" } else { ", (" });
        for (j, arg) in args.into_iter().enumerate() {
            if j > 0 {
                b.push(", ");
            }
            b.bind(arg);
        }
        b.push(")");
    }
    b.push(" ON CONFLICT (org_id, id) DO NOTHING RETURNING pk, id, ").push(&rollup::session_columns());
}
