//! ListSessionAggregations: request validation and the response message.
//!
//! The counting itself happens in the store, over exactly the sessions a
//! ListSessionsV2 walk with the same query and window returns.

use connectrpc::ConnectError;
use gatehouse_core::OrgId;
use gatehouse_core::time::{FineMicros, MIN_TIME, format_rfc3339, now_micros};
use gatehouse_proto::core::v1::ListSessionAggregationsResponse;
use gatehouse_proto::core::v1::list_sessions_response::{Aggregations, Bucket, DateBucket, GroupByBucket};
use gatehouse_query::Field;
use gatehouse_store::sql::ungroupable;
use gatehouse_store::{AggregateQuery, Aggregates, Facet, HistogramSpec, KeyCount, Store};

use crate::error::{invalid, store_error};
use crate::listing::{parse_filter, parse_window};

/// Keys per facet list.
pub const FACET_LIMIT: usize = 10;
/// Fields a histogram may be split by at most.
pub const MAX_GROUP_BY: usize = 3;
/// The narrowest histogram bucket.
const MIN_INTERVAL_US: i64 = 1_000_000;

/// A ListSessionAggregations request, as its fields arrived.
#[derive(Debug, Default, Clone)]
pub struct AggregationRequest<'a> {
    pub query: &'a str,
    pub start_timestamp: &'a str,
    pub end_timestamp: &'a str,
    pub histogram_interval: &'a str,
    pub histogram_group_by_fields: Vec<&'a str>,
    /// `histogram` for the histogram and hit count only, `facets` for the
    /// facet lists and hit count only; absent or empty computes everything.
    pub mode: Option<&'a str>,
}

/// What a ListSessionAggregations request computes (besides the hit count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    histogram: bool,
    facets: bool,
}

/// Reads `mode`. Like `sort_by`'s field names, the accepted values are exact,
/// lowercase names, around which whitespace is ignored; anything else is
/// refused rather than silently computing everything.
fn parse_mode(mode: Option<&str>) -> Result<Parts, ConnectError> {
    match mode.map(str::trim) {
        None | Some("") => Ok(Parts { histogram: true, facets: true }),
        Some("histogram") => Ok(Parts { histogram: true, facets: false }),
        Some("facets") => Ok(Parts { histogram: false, facets: true }),
        Some(other) => Err(invalid(format!(
            "unknown mode {other:?}: use \"histogram\" or \"facets\", or leave it out to compute both"
        ))),
    }
}

/// Validates `req` and counts for `org`.
pub async fn aggregate(
    store: &dyn Store,
    org: OrgId,
    req: AggregationRequest<'_>,
) -> Result<ListSessionAggregationsResponse, ConnectError> {
    let (window_start, window_end) = parse_window(req.start_timestamp, req.end_timestamp)?;
    let now = now_micros();
    let filter = parse_filter(req.query, now)?;
    let interval = match req.histogram_interval.trim() {
        "" => None,
        text => match gatehouse_query::parse_duration(text).map(FineMicros::floor) {
            Some(us) if us >= MIN_INTERVAL_US => Some(us),
            Some(_) => return Err(invalid(format!("histogram_interval {text:?} is too short: the least is 1s"))),
            None => {
                return Err(invalid(format!(
                    "histogram_interval {text:?} is not a duration such as 30s, 5m, 1h or 1d"
                )));
            }
        },
    };
    let group_by = parse_group_by(&req.histogram_group_by_fields)?;
    let parts = parse_mode(req.mode)?;
    let query = AggregateQuery {
        filter,
        window_start,
        window_end,
        now,
        histogram: parts.histogram.then_some(HistogramSpec { interval, group_by }),
        facets: if parts.facets { Facet::ALL.to_vec() } else { vec![] },
        facet_limit: FACET_LIMIT,
    };
    let counted = store.aggregate(org, &query).await.map_err(store_error)?;
    Ok(response(counted))
}

fn parse_group_by(names: &[&str]) -> Result<Vec<Field>, ConnectError> {
    if names.len() > MAX_GROUP_BY {
        return Err(invalid(format!(
            "histogram_group_by_fields has {} fields; at most {MAX_GROUP_BY} are allowed",
            names.len()
        )));
    }
    let mut fields: Vec<Field> = Vec::with_capacity(names.len());
    for name in names {
        let field = group_by_field(name)?;
        // Aliases name one field too (`user` and `user.username`, say).
        if fields.contains(&field) {
            return Err(invalid(format!(
                "histogram_group_by_fields names {:?} twice: group by each field once",
                name.trim()
            )));
        }
        fields.push(field);
    }
    Ok(fields)
}

fn group_by_field(name: &str) -> Result<Field, ConnectError> {
    let name = name.trim();
    let field = Field::lookup(name).ok_or_else(|| {
        let hint = match Field::suggest(name, 3).as_slice() {
            [] => String::new(),
            close => format!(" (did you mean {}?)", close.join(", ")),
        };
        invalid(format!("cannot group by {name:?}: no such field{hint}"))
    })?;
    if let Some(why) = ungroupable(field) {
        return Err(invalid(format!(
            "cannot group by {name:?}: {why}; group by a field such as technology, resource.name or user.email"
        )));
    }
    Ok(field)
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn group_buckets(groups: &[KeyCount]) -> Vec<GroupByBucket> {
    groups
        .iter()
        .map(|g| GroupByBucket {
            key: g.key.clone(),
            count: count(g.count),
            buckets: group_buckets(&g.groups),
            ..Default::default()
        })
        .collect()
}

fn response(counted: Aggregates) -> ListSessionAggregationsResponse {
    let mut aggregations = Aggregations {
        logs_over_time: counted
            .histogram
            .iter()
            .map(|d| DateBucket {
                // Buckets align to the Unix epoch; the first may begin before year 1,
                // which RFC 3339 cannot write.
                datetime: format_rfc3339(d.start.max(MIN_TIME)),
                count: count(d.count),
                buckets: group_buckets(&d.groups),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    for (facet, keys) in counted.facets {
        let buckets: Vec<Bucket> =
            keys.into_iter().map(|k| Bucket { key: k.key, count: count(k.count), ..Default::default() }).collect();
        let a = &mut aggregations;
        match facet {
            Facet::ResourceTechnology => {
                a.session_types = buckets.clone();
                a.resource_technologies = buckets;
            }
            Facet::SessionId => a.session_ids = buckets,
            Facet::ClientIp => a.session_client_ip_addresses = buckets,
            Facet::ServerIp => a.session_server_ip_addresses = buckets,
            Facet::QueryFingerprint => a.query_fingerprints = buckets,
            // Without policies that block statements, every statement
            // received from the client is sent to the resource.
            Facet::Statements => {
                a.query_received = buckets.clone();
                a.query_sent = buckets;
            }
            Facet::ResourceId => a.resource_ids = buckets,
            Facet::ResourceName => a.resource_names = buckets,
            Facet::ResourceType => a.resource_types = buckets,
            Facet::ResourceHost => a.resource_hostnames = buckets,
            Facet::ConnectorName => a.connector_names = buckets,
            Facet::ConnectorId => a.connector_ids = buckets,
            Facet::UserType => a.user_types = buckets,
            Facet::UserFormalType => a.user_sub_types = buckets,
            Facet::UserEmail => a.user_emails = buckets,
            Facet::UserUsername => a.user_usernames = buckets,
            Facet::UserId => a.user_ids = buckets,
            Facet::EndUserType => a.end_user_types = buckets,
            Facet::EndUserName => a.end_user_names = buckets,
            Facet::EndUserEmail => a.end_user_emails = buckets,
            Facet::BytesSent => a.response_data_volumes = buckets,
            // The connector relays every row it receives.
            Facet::RowsSent => {
                a.response_rows_sent = buckets.clone();
                a.response_rows_received = buckets;
            }
        }
    }
    ListSessionAggregationsResponse {
        aggregations: aggregations.into(),
        num_hits: i64::try_from(counted.num_hits).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::{Parts, parse_group_by, parse_mode};

    #[test]
    fn grouping_by_session_id_is_refused_with_why() {
        for names in [&["id"][..], &["technology", " id "][..]] {
            let error = parse_group_by(names).unwrap_err();
            assert_eq!(error.code, connectrpc::ErrorCode::InvalidArgument, "{names:?}");
            let message = error.message.as_deref().unwrap_or_default();
            assert!(message.contains("cannot group by \"id\": every session has an id of its own"), "{message}");
        }
        assert!(parse_group_by(&["technology", "user.email"]).is_ok());
    }

    #[test]
    fn mode_names_one_part_or_leaves_both() {
        let both = Parts { histogram: true, facets: true };
        assert_eq!(parse_mode(None).unwrap(), both);
        assert_eq!(parse_mode(Some("")).unwrap(), both);
        assert_eq!(parse_mode(Some("histogram")).unwrap(), Parts { histogram: true, facets: false });
        assert_eq!(parse_mode(Some(" facets ")).unwrap(), Parts { histogram: false, facets: true });
    }

    #[test]
    fn unknown_modes_are_refused_with_the_accepted_values() {
        for mode in ["garbage", "both", "Facets", "HISTOGRAM", "facet", "histogram,facets"] {
            let error = parse_mode(Some(mode)).unwrap_err();
            assert_eq!(error.code, connectrpc::ErrorCode::InvalidArgument, "{mode}");
            let message = error.message.as_deref().unwrap_or_default();
            assert!(message.contains(&format!("{mode:?}")), "{message}");
            assert!(message.contains("\"histogram\" or \"facets\""), "{message}");
        }
    }
}
