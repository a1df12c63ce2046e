//! ListSessionAggregations: counts over exactly the sessions a listing with
//! the same filter and window walks.
//!
//! Every count is a `GROUP BY` in the database; nothing loads sessions. The
//! histogram buckets sessions by start time, a session that started before
//! the window counting in its first bucket, so the buckets add up to the
//! number of hits. Each nesting level of a grouped histogram is its own
//! statement, so a many-valued field (groups) never counts a session twice
//! at the level above it. Facets are independent statements, run at once.
//!
//! Every statement returns the same columns, `b` (a bucket number), `k1` to
//! `k3` (keys) and `n` (a count), so that one row reader serves them all.

use futures::{StreamExt, TryStreamExt, stream};
use gatehouse_core::{Micros, OrgId};
use gatehouse_query::Field;

use super::builder::{Arg, Dialect, SqlBuilder};
use super::filter::{END_USER_GROUPS, USER_EXTERNAL_IDS, USER_GROUPS};
use super::list::push_matching;
use crate::StoreError;
use crate::model::{
    AggregateQuery, Aggregates, DateCount, Facet, KeyCount, MAX_BUCKETS, MAX_GROUP_ROWS, TARGET_BUCKETS,
};

/// Aggregation statements one request runs at once.
const CONCURRENT_STATEMENTS: usize = 3;

/// One row of any aggregation statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggRow {
    pub bucket: i64,
    pub keys: [String; 3],
    pub count: i64,
}

/// Runs built statements; each store implements it over its own pool.
pub(crate) trait AggRunner: Sync {
    fn dialect(&self) -> Dialect;
    /// A lower bound on the start of any session overlapping a window
    /// starting at `window_start` (see the listing).
    async fn earliest_start(&self, org: OrgId, window_start: Micros) -> Result<Micros, StoreError>;
    async fn rows(&self, sql: String, args: Vec<Arg>) -> Result<Vec<AggRow>, StoreError>;
}

/// How a field's values are grouped.
enum GroupKey {
    Column(&'static str),
    /// `active` or `completed`.
    Status,
    /// A many-valued field, one key per value (`''` for none).
    Many(i64),
}

fn group_key(field: Field) -> Option<GroupKey> {
    use GroupKey::*;
    Some(match field {
        Field::Id => Column("s.id"),
        Field::SessionStatus => Status,
        Field::StartTime | Field::EndTime | Field::Duration => return None,
        Field::ParentSessionId => Column("s.parent_session_id"),
        Field::ClientIp => Column("s.client_ip"),
        Field::ServerIp => Column("s.server_ip"),
        Field::SidecarId => Column("s.sidecar_id"),
        Field::SidecarName => Column("s.sidecar_name"),
        Field::SidecarTechnology => Column("s.sidecar_technology"),
        Field::UserType => Column("s.user_type"),
        Field::UserUsername => Column("s.user_username"),
        Field::UserId => Column("s.user_id"),
        Field::UserName => Column("s.user_name"),
        Field::UserEmail => Column("s.user_email"),
        Field::UserFormalType => Column("s.user_formal_type"),
        Field::UserGroups => Many(USER_GROUPS),
        Field::UserExternalIds => Many(USER_EXTERNAL_IDS),
        Field::EndUserId => Column("s.end_user_id"),
        Field::EndUserName => Column("s.end_user_name"),
        Field::EndUserEmail => Column("s.end_user_email"),
        Field::EndUserType => Column("s.end_user_type"),
        Field::EndUserGroups => Many(END_USER_GROUPS),
        Field::NativeUsername => Column("s.native_username"),
        Field::ResourceId => Column("s.resource_id"),
        Field::ResourceName => Column("s.resource_name"),
        Field::ResourceType => Column("s.resource_type"),
        Field::ResourceTechnology => Column("s.resource_technology"),
        Field::ConnectorId => Column("s.connector_id"),
        Field::ConnectorName => Column("s.connector_name"),
    })
}

/// Whether a histogram can be split by `field`: times and durations cannot.
pub fn is_groupable(field: Field) -> bool {
    group_key(field).is_some()
}

/// The bucket width for a span: the smallest round interval giving at most
/// [`TARGET_BUCKETS`] buckets.
pub fn auto_interval(span: Micros) -> Micros {
    const SECOND: Micros = 1_000_000;
    const STEPS: [Micros; 17] = [
        SECOND,
        5 * SECOND,
        10 * SECOND,
        30 * SECOND,
        60 * SECOND,
        5 * 60 * SECOND,
        10 * 60 * SECOND,
        30 * 60 * SECOND,
        3_600 * SECOND,
        3 * 3_600 * SECOND,
        6 * 3_600 * SECOND,
        12 * 3_600 * SECOND,
        86_400 * SECOND,
        7 * 86_400 * SECOND,
        30 * 86_400 * SECOND,
        90 * 86_400 * SECOND,
        365 * 86_400 * SECOND,
    ];
    let wanted = ceil_div(span.max(1), TARGET_BUCKETS);
    STEPS.into_iter().find(|&step| step >= wanted).unwrap_or_else(|| ceil_div(wanted, STEPS[16]) * STEPS[16])
}

/// `a / b` rounded up, for positive `a` and `b` (`i64::div_ceil` is unstable).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// The sessions a statement counts: the listing's filter and window.
struct Matching<'a> {
    org: OrgId,
    q: &'a AggregateQuery,
    earliest: Option<Micros>,
}

impl Matching<'_> {
    fn push(&self, b: &mut SqlBuilder) {
        push_matching(b, self.org, self.q.window_start, self.q.window_end, self.earliest, &self.q.filter, self.q.now);
    }
}

/// Computes `q` for `org`.
pub(crate) async fn aggregate<R: AggRunner>(
    runner: &R,
    org: OrgId,
    q: &AggregateQuery,
) -> Result<Aggregates, StoreError> {
    let earliest = match q.window_start {
        Some(start) => Some(runner.earliest_start(org, start).await?),
        None => None,
    };
    let matching = Matching { org, q, earliest };
    let dialect = runner.dialect();

    // Where the histogram starts: the window's start, or else the first hit.
    let mut buckets = None;
    let mut num_hits = None;
    if let Some(spec) = &q.histogram {
        let from = match q.window_start {
            Some(start) => Some(start),
            None => {
                let mut b = SqlBuilder::new(dialect);
                b.push("SELECT CAST(COALESCE(MIN(s.start_us), 0) AS BIGINT) AS b, '' AS k1, '' AS k2, '' AS k3, ");
                b.push("CAST(COUNT(*) AS BIGINT) AS n FROM sessions s WHERE ");
                matching.push(&mut b);
                let (sql, args) = b.into_parts();
                let row = runner.rows(sql, args).await?.into_iter().next().unwrap_or_default();
                num_hits = Some(row.count as u64);
                (row.count > 0).then_some(row.bucket)
            }
        };
        if let Some(from) = from {
            let end = q.window_end.unwrap_or(q.now).max(from + 1);
            let interval = spec.interval.unwrap_or_else(|| auto_interval(end - from));
            let (first, last) = (from.div_euclid(interval), (end - 1).div_euclid(interval));
            if last - first + 1 > MAX_BUCKETS {
                return Err(StoreError::Invalid(format!(
                    "a histogram_interval of {} s gives {} buckets over this window; at most {MAX_BUCKETS} are allowed: \
                     use a longer interval or a shorter window",
                    interval / 1_000_000,
                    last - first + 1
                )));
            }
            buckets = Some((interval, first, last));
        }
    }

    let mut statements = Vec::new();
    if let (Some(spec), Some((interval, first, _))) = (&q.histogram, buckets) {
        for depth in 0..=spec.group_by.len() {
            statements.push(histogram_statement(
                dialect,
                &matching,
                interval,
                first * interval,
                &spec.group_by[..depth],
            ));
        }
    } else if num_hits.is_none() {
        let mut b = SqlBuilder::new(dialect);
        b.push("SELECT CAST(0 AS BIGINT) AS b, '' AS k1, '' AS k2, '' AS k3, CAST(COUNT(*) AS BIGINT) AS n ");
        b.push("FROM sessions s WHERE ");
        matching.push(&mut b);
        statements.push(b.into_parts());
    }
    let histogram_statements = statements.len();
    for &facet in &q.facets {
        statements.push(facet_statement(dialect, &matching, facet, q.facet_limit));
    }

    // A few at a time: enough to use both cores, few enough to leave the
    // pool's other connections to listings and ingestion.
    let mut results: Vec<Vec<AggRow>> = stream::iter(statements.into_iter().map(|(sql, args)| runner.rows(sql, args)))
        .buffered(CONCURRENT_STATEMENTS)
        .try_collect()
        .await?;
    let facet_rows = results.split_off(histogram_statements);
    let mut out = Aggregates::default();
    match buckets {
        Some((interval, first, last)) => {
            let (histogram, hits) = assemble_histogram(results, interval, first, last)?;
            out.interval = interval;
            out.histogram = histogram;
            out.num_hits = num_hits.unwrap_or(hits);
        }
        None => {
            let counted = results.first().and_then(|rows| rows.first()).map(|row| row.count as u64);
            out.num_hits = num_hits.or(counted).unwrap_or(0);
        }
    }
    out.facets = q
        .facets
        .iter()
        .zip(facet_rows)
        .map(|(&facet, rows)| {
            (
                facet,
                rows.into_iter()
                    .map(|r| KeyCount { key: take_key(r.keys, 0), count: r.count as u64, groups: vec![] })
                    .collect(),
            )
        })
        .collect();
    Ok(out)
}

fn take_key(keys: [String; 3], i: usize) -> String {
    keys.into_iter().nth(i).unwrap_or_default()
}

/// Counts per bucket, split by the first `group_by.len()` fields.
fn histogram_statement(
    dialect: Dialect,
    matching: &Matching<'_>,
    interval: Micros,
    origin: Micros,
    group_by: &[Field],
) -> (String, Vec<Arg>) {
    let mut b = SqlBuilder::new(dialect);
    // A session that started before the window counts in its first bucket.
    b.push("SELECT (CASE WHEN s.start_us < ").bind_int(origin).push(" THEN ").bind_int(origin);
    b.push(" ELSE s.start_us END) / ").bind_int(interval).push(" AS b");
    let mut joins = Vec::new();
    for i in 0..3 {
        b.push(", ");
        match group_by.get(i).and_then(|&f| group_key(f)) {
            None => {
                b.push("''");
            }
            Some(GroupKey::Column(col)) => {
                b.push(col);
            }
            Some(GroupKey::Status) => {
                b.push("CASE WHEN s.end_us IS NULL THEN 'active' ELSE 'completed' END");
            }
            Some(GroupKey::Many(code)) => {
                b.push(&format!("COALESCE(g{i}.value, '')"));
                joins.push((i, code));
            }
        }
        b.push(&format!(" AS k{}", i + 1));
    }
    // A session with two groups counts once under each, but once in its bucket.
    b.push(if joins.is_empty() {
        ", CAST(COUNT(*) AS BIGINT) AS n"
    } else {
        ", CAST(COUNT(DISTINCT s.pk) AS BIGINT) AS n"
    });
    b.push(" FROM sessions s");
    for (i, code) in joins {
        b.push(&format!(" LEFT JOIN session_values g{i} ON g{i}.session_pk = s.pk AND g{i}.field = ")).bind_int(code);
    }
    b.push(" WHERE ");
    matching.push(&mut b);
    b.push(" GROUP BY b");
    for i in 0..group_by.len() {
        b.push(&format!(", k{}", i + 1));
    }
    // One more than allowed tells that there were too many.
    b.push(" LIMIT ").bind_int(MAX_GROUP_ROWS as i64 + 1);
    b.into_parts()
}

/// A per-session total as a decimal range: `0`, `1-9`, `10-99`, ... `1000000000+`.
macro_rules! decimal_range {
    ($col:literal) => {
        concat!(
            "CASE WHEN ",
            $col,
            " <= 0 THEN '0' WHEN ",
            $col,
            " < 10 THEN '1-9' WHEN ",
            $col,
            " < 100 THEN '10-99' ",
            "WHEN ",
            $col,
            " < 1000 THEN '100-999' WHEN ",
            $col,
            " < 10000 THEN '1000-9999' ",
            "WHEN ",
            $col,
            " < 100000 THEN '10000-99999' WHEN ",
            $col,
            " < 1000000 THEN '100000-999999' ",
            "WHEN ",
            $col,
            " < 10000000 THEN '1000000-9999999' WHEN ",
            $col,
            " < 100000000 THEN '10000000-99999999' ",
            "WHEN ",
            $col,
            " < 1000000000 THEN '100000000-999999999' ELSE '1000000000+' END"
        )
    };
}

/// How a facet's key is computed, and what it needs joined.
fn facet_key(facet: Facet) -> (&'static str, &'static str) {
    match facet {
        Facet::ResourceTechnology => ("s.resource_technology", ""),
        Facet::SessionId => ("s.id", ""),
        Facet::ClientIp => ("s.client_ip", ""),
        Facet::ServerIp => ("s.server_ip", ""),
        Facet::ResourceId => ("s.resource_id", ""),
        Facet::ResourceName => ("s.resource_name", ""),
        Facet::ResourceType => ("s.resource_type", ""),
        Facet::ResourceHost => {
            ("COALESCE(r.host, '')", " LEFT JOIN resources r ON r.org_id = s.org_id AND r.id = s.resource_id")
        }
        Facet::ConnectorName => ("s.connector_name", ""),
        Facet::ConnectorId => ("s.connector_id", ""),
        Facet::UserType => ("s.user_type", ""),
        Facet::UserFormalType => ("s.user_formal_type", ""),
        Facet::UserEmail => ("s.user_email", ""),
        Facet::UserUsername => ("s.user_username", ""),
        Facet::UserId => ("s.user_id", ""),
        Facet::EndUserType => ("s.end_user_type", ""),
        Facet::EndUserName => ("s.end_user_name", ""),
        Facet::EndUserEmail => ("s.end_user_email", ""),
        Facet::QueryFingerprint => {
            ("st.fingerprint", " JOIN statements st ON st.org_id = s.org_id AND st.session_id = s.id")
        }
        Facet::Statements => (decimal_range!("s.statement_count"), ""),
        Facet::BytesSent => (decimal_range!("s.bytes_sent"), ""),
        Facet::RowsSent => (decimal_range!("s.rows_sent"), ""),
    }
}

/// The top `limit` keys of `facet` among matching sessions; empty keys
/// (a property a session does not have) are not counted.
fn facet_statement(dialect: Dialect, matching: &Matching<'_>, facet: Facet, limit: usize) -> (String, Vec<Arg>) {
    let (key, join) = facet_key(facet);
    // Statements join many rows per session; count sessions, not statements.
    let count = if join.contains("statements") { "COUNT(DISTINCT s.pk)" } else { "COUNT(*)" };
    let mut b = SqlBuilder::new(dialect);
    b.push("SELECT CAST(0 AS BIGINT) AS b, ").push(key).push(" AS k1, '' AS k2, '' AS k3, CAST(");
    b.push(count).push(" AS BIGINT) AS n FROM sessions s").push(join).push(" WHERE ");
    matching.push(&mut b);
    b.push(" AND ").push(key).push(" <> ''");
    b.push(" GROUP BY k1 ORDER BY n DESC, k1 ASC LIMIT ").bind_int(limit as i64);
    b.into_parts()
}

/// Builds the nested buckets from one result per depth (0 = totals).
fn assemble_histogram(
    levels: Vec<Vec<AggRow>>,
    interval: Micros,
    first: i64,
    last: i64,
) -> Result<(Vec<DateCount>, u64), StoreError> {
    let width = (last - first + 1) as usize;
    // Sessions that started after the window's end (clock skew) count last.
    let slot = |bucket: i64| (bucket.clamp(first, last) - first) as usize;
    let mut dates: Vec<DateCount> =
        (0..width).map(|i| DateCount { start: (first + i as i64) * interval, ..Default::default() }).collect();
    let mut hits = 0;
    for (depth, rows) in levels.into_iter().enumerate() {
        if rows.len() > MAX_GROUP_ROWS {
            return Err(StoreError::Invalid(format!(
                "the histogram would have more than {MAX_GROUP_ROWS} groups: group by fields with fewer values"
            )));
        }
        for row in rows {
            let date = &mut dates[slot(row.bucket)];
            let count = row.count as u64;
            if depth == 0 {
                date.count += count;
                hits += count;
                continue;
            }
            let mut level = &mut date.groups;
            for key in &row.keys[..depth - 1] {
                let at = level.iter().position(|g| &g.key == key);
                level = match at {
                    Some(at) => &mut level[at].groups,
                    None => break,
                };
            }
            let key = &row.keys[depth - 1];
            match level.iter_mut().find(|g| &g.key == key) {
                // Rows clamped into the same last bucket add up.
                Some(existing) => existing.count += count,
                None => level.push(KeyCount { key: key.clone(), count, groups: vec![] }),
            }
        }
    }
    for date in &mut dates {
        sort_groups(&mut date.groups);
    }
    Ok((dates, hits))
}

/// Most frequent first, ties by key, at every level.
fn sort_groups(groups: &mut [KeyCount]) {
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    for g in groups {
        sort_groups(&mut g.groups);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_intervals_give_at_most_the_target() {
        let day = 86_400_000_000;
        assert_eq!(auto_interval(day), 30 * 60 * 1_000_000);
        assert_eq!(auto_interval(30 * day), 12 * 3_600 * 1_000_000);
        assert_eq!(auto_interval(15 * 60 * 1_000_000), 10 * 1_000_000);
        for span in [1, 999, 3_600_000_000, 7 * day, 400 * day, 40_000 * day] {
            let interval = auto_interval(span);
            assert!(ceil_div(span, interval) <= TARGET_BUCKETS, "{span} / {interval}");
        }
    }

    #[test]
    fn nested_levels_assemble_in_order() {
        let row = |bucket, keys: [&str; 3], count| AggRow { bucket, keys: keys.map(String::from), count };
        let levels = vec![
            vec![row(10, ["", "", ""], 5), row(12, ["", "", ""], 1)],
            vec![row(10, ["pg", "", ""], 2), row(10, ["my", "", ""], 3), row(12, ["pg", "", ""], 1)],
            vec![row(10, ["my", "a", ""], 3), row(10, ["pg", "b", ""], 1), row(10, ["pg", "a", ""], 1)],
        ];
        let (dates, hits) = assemble_histogram(levels, 60, 10, 12).unwrap();
        assert_eq!(hits, 6);
        assert_eq!(dates.iter().map(|d| (d.start, d.count)).collect::<Vec<_>>(), [(600, 5), (660, 0), (720, 1)]);
        let keys: Vec<_> = dates[0].groups.iter().map(|g| (g.key.as_str(), g.count, g.groups.len())).collect();
        assert_eq!(keys, [("my", 3, 1), ("pg", 2, 2)]);
        assert_eq!(dates[0].groups[1].groups[0].key, "a");
    }
}
