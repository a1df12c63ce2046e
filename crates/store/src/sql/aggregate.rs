//! ListSessionAggregations: counts over exactly the sessions a listing with
//! the same filter and window walks.
//!
//! Every count is a `GROUP BY` in the database; nothing loads sessions. The
//! histogram buckets sessions by start time, a session that started before
//! the window counting in its first bucket, so the buckets add up to the
//! number of hits. Each nesting level of a grouped histogram is its own
//! statement, so a many-valued field (groups) never counts a session twice
//! at the level above it. Facets are independent statements, run at once; on
//! PostgreSQL, those with one key per session are one (see [`facets_statement`]).
//!
//! Every statement returns the same columns, `b` (a bucket number), `k1` to
//! `k3` (keys) and `n` (a count), so that one row reader serves them all.
//!
//! A match-all query over a window reads the hourly rollup (see
//! [`super::rollup`]) for the window's whole hours wherever it holds the
//! count asked for: the histogram when its interval is whole hours and it is
//! split by at most one rolled-up field, the hit count, and facets on a
//! rolled-up field. The same statements as otherwise, each limited to the
//! sessions that started outside those hours, count the rest, and their rows
//! are added to the rollup's, so the answer is the one the sessions give.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use gatehouse_core::{Micros, OrgId};
use gatehouse_query::{Expr, Field, Op, Predicate};

use super::builder::{Arg, Dialect, SqlBuilder};
use super::exec::Columns;
use super::filter::{AsOf, END_USER_GROUPS, USER_EXTERNAL_IDS, USER_GROUPS};
use super::list::push_matching;
use super::rollup;
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

impl AggRow {
    pub(crate) fn read_all(rows: &[impl Columns]) -> Result<Vec<AggRow>, StoreError> {
        rows.iter().map(Self::read).collect()
    }

    pub(crate) fn read(row: &impl Columns) -> Result<AggRow, StoreError> {
        Ok(AggRow {
            bucket: row.int("b")?,
            keys: [row.text("k1")?, row.text("k2")?, row.text("k3")?],
            count: row.int("n")?,
        })
    }
}

/// Runs built statements; each store implements it over its own pool.
pub(crate) trait AggRunner: Sync {
    fn dialect(&self) -> Dialect;
    /// A lower bound on the start of any session overlapping a window
    /// starting at `window_start` (see the listing).
    async fn earliest_start(&self, org: OrgId, window_start: Micros) -> Result<Micros, StoreError>;
    async fn rows(&self, sql: String, args: Vec<Arg>) -> Result<Vec<AggRow>, StoreError>;
}

/// A store that can evaluate a costly filter once for all the statements of an aggregation.
pub(crate) trait Materialize: AggRunner {
    type Matched: AggRunner;
    /// How long a whole aggregation may take: the store's statement timeout (`None`: no limit).
    fn time_limit(&self) -> Option<Duration>;
    /// A runner over one connection (and transaction) on which the temporary table
    /// `agg_matching` holds the rows `select` returns, while it lives.
    async fn matched(&self, select: String, args: Vec<Arg>) -> Result<Self::Matched, StoreError>;
}

/// The columns of `sessions` that the statements of an aggregation read, which
/// `agg_matching` holds for each matched session: the statements then read the matched
/// sessions from it alone. Joined back to `sessions` by `pk`, each statement read the
/// matched rows again (`alice` at a million sessions: 36 s, 4.7 s from this table).
const MATCHED_COLUMNS: &[&str] = &[
    "pk",
    "org_id",
    "id",
    "start_us",
    "end_us",
    "parent_session_id",
    "client_ip",
    "server_ip",
    "sidecar_id",
    "sidecar_name",
    "sidecar_technology",
    "user_type",
    "user_username",
    "user_id",
    "user_name",
    "user_email",
    "user_formal_type",
    "end_user_id",
    "end_user_name",
    "end_user_email",
    "end_user_type",
    "native_username",
    "resource_id",
    "resource_name",
    "resource_type",
    "resource_technology",
    "connector_id",
    "connector_name",
    "statement_count",
    "running_seq",
    "bytes_sent",
    "rows_sent",
];

/// Predicates (after lowering) from which a filter is evaluated once rather than in each of
/// an aggregation's statements: one bare term, which is 8 and no index helps with. Evaluated
/// in each of the ~23 statements, a 4 KiB bare term took PostgreSQL 21 s on 40,000 sessions.
const COSTLY_PREDICATES: usize = 8;

/// How many predicates `expr` tests per session, as far as its cost goes: a value of a set
/// counts as one, and a test of a many-valued field (a lookup in `session_values` for each
/// session) as many.
fn predicates(expr: &Expr) -> usize {
    match expr {
        Expr::All => 0,
        Expr::Pred(p) if p.field.is_many_valued() => COSTLY_PREDICATES,
        Expr::Pred(Predicate { op: Op::In(values), .. }) => values.len().max(1),
        Expr::Pred(_) => 1,
        Expr::Not(inner) => predicates(inner),
        Expr::And(parts) | Expr::Or(parts) => parts.iter().map(predicates).sum(),
    }
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
    if ungroupable(field).is_some() {
        return None;
    }
    Some(match field {
        Field::SessionStatus => Status,
        Field::Id | Field::StartTime | Field::EndTime | Field::Duration => return None,
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

/// Whether a histogram can be split by `field` (see [`ungroupable`]).
pub fn is_groupable(field: Field) -> bool {
    ungroupable(field).is_none()
}

/// Why a histogram cannot be split by `field`, when it cannot.
pub fn ungroupable(field: Field) -> Option<&'static str> {
    match field {
        Field::StartTime | Field::EndTime | Field::Duration => Some("times and durations have no discrete values"),
        // As many groups as sessions: counted in full before the group cap could refuse them.
        Field::Id => Some("every session has an id of its own, so each would be a group of one"),
        _ => None,
    }
}

/// The refusal of a histogram with more than [`MAX_GROUP_ROWS`] groups.
fn too_many_groups() -> StoreError {
    StoreError::Invalid(format!(
        "the histogram would have more than {MAX_GROUP_ROWS} groups: group by fields with fewer values"
    ))
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

/// The sessions a statement counts: the listing's filter and window, or the
/// part of them that [`Part`] says.
struct Matching<'a> {
    org: OrgId,
    q: &'a AggregateQuery,
    earliest: Option<Micros>,
    part: Part,
    /// The matching sessions are in `agg_matching` already (see [`Materialize`]).
    matched: bool,
}

/// Which of the matching sessions a statement counts. When the rollup
/// stands in for the whole hours `[from, to)` of the window, the sessions
/// that started outside them are counted from the sessions.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// All of them.
    All,
    /// Those that started before `from` (including before the window).
    Before(Micros),
    /// Those that started at `to` or later.
    From(Micros),
    /// Not a part of them: the sessions the rollup counts in `hours` that the
    /// window does not match. Only a session that ended before it started
    /// (as a connector may report) can end before a window it started in.
    Unmatched(Hours),
}

impl Matching<'_> {
    fn push(&self, b: &mut SqlBuilder) {
        if self.matched {
            b.push("s.org_id = ").bind_int(self.org.0);
            return;
        }
        let q = self.q;
        // A part narrows the window's own bounds on the start, so that each
        // statement has one lower and one upper bound for the index range
        // (given two, SQLite ranges over one and filters by the other).
        let (end, earliest) = match self.part {
            Part::Unmatched(hours) => {
                // In the shape of the partial index `sessions_backwards`.
                b.push("s.org_id = ").bind_int(self.org.0).push(" AND s.end_us < s.start_us AND s.end_us < ");
                b.bind_int(q.window_start.unwrap_or(Micros::MIN));
                b.push(" AND s.start_us >= ").bind_int(hours.from).push(" AND s.start_us < ").bind_int(hours.to);
                return;
            }
            Part::All => (q.window_end, self.earliest),
            Part::Before(from) => (Some(q.window_end.map_or(from, |end| end.min(from))), self.earliest),
            Part::From(to) => (q.window_end, Some(self.earliest.map_or(to, |earliest| earliest.max(to)))),
        };
        push_matching(b, self.org, q.window_start, end, earliest, &q.filter, AsOf::live(q.now));
        // Without a window start, `push_matching` has no bound on the start to narrow.
        if let (Part::From(to), None) = (self.part, q.window_start) {
            b.push(" AND s.start_us >= ").bind_int(to);
        }
    }

    /// ` FROM sessions s`, naming the index that finds the few unmatched
    /// sessions on SQLite: without statistics its planner would rather scan
    /// the whole hours through the covering `sessions_histogram`.
    fn from(&self, dialect: Dialect) -> &'static str {
        if self.matched {
            // Under the same name, so that the statements read its columns as the sessions'.
            return " FROM agg_matching s";
        }
        match (self.part, dialect) {
            (Part::Unmatched(_), Dialect::Sqlite) => " FROM sessions s INDEXED BY sessions_backwards",
            _ => " FROM sessions s",
        }
    }

    fn part(&self, part: Part) -> Self {
        Matching { part, ..*self }
    }
}

/// The whole hours of a window that the rollup counts instead of the
/// sessions. Every session that started in them overlaps the window
/// (save those of [`Part::Unmatched`]).
#[derive(Debug, Clone, Copy)]
struct Hours {
    from: Micros,
    to: Micros,
}

impl Hours {
    /// For a match-all query: the first to the last whole hour of its window. Without a window
    /// start every session matches, and the hours start at the first after the epoch (the
    /// sessions before it are counted from the sessions): counting every session of a million
    /// by each rolled-up field took a scan of them each.
    fn of(q: &AggregateQuery) -> Option<Self> {
        if !matches!(q.filter, Expr::All) {
            return None;
        }
        let from = match q.window_start {
            Some(start) => {
                let floor = rollup::hour_of(start);
                if floor < start { floor + rollup::HOUR } else { floor }
            }
            None => rollup::HOUR,
        };
        let to = rollup::hour_of(q.window_end.unwrap_or(q.now));
        // Positive, so that bucket numbers truncate as they floor.
        (from > 0 && from < to).then_some(Hours { from, to })
    }
}

/// A statement's text and values.
type Statement = (String, Vec<Arg>);

/// A statement and whether its counts add (1) or take away (-1).
type Planned = (Statement, i64);

/// Computes `q` for `org`: from the rollup where it gives the same answer as
/// the sessions, else from the sessions.
pub(crate) async fn aggregate<R: Materialize>(
    runner: &R,
    org: OrgId,
    q: &AggregateQuery,
) -> Result<Aggregates, StoreError> {
    within_time_limit(runner, async {
        if is_costly(q) {
            return over_matched(runner, org, q).await;
        }
        match compute(runner, org, q, Hours::of(q), false).await? {
            Some(out) => Ok(out),
            // Too many groups to add up exactly (see `add_up`).
            None => counted_raw(runner, org, q).await,
        }
    })
    .await
}

/// Computes `q` for `org` from the sessions alone, never the rollup: what
/// [`aggregate`] must always equal.
pub(crate) async fn aggregate_raw<R: Materialize>(
    runner: &R,
    org: OrgId,
    q: &AggregateQuery,
) -> Result<Aggregates, StoreError> {
    within_time_limit(runner, counted_raw(runner, org, q)).await
}

async fn counted_raw<R: Materialize>(runner: &R, org: OrgId, q: &AggregateQuery) -> Result<Aggregates, StoreError> {
    if is_costly(q) {
        return over_matched(runner, org, q).await;
    }
    let out = compute(runner, org, q, None, false).await?;
    out.ok_or_else(|| StoreError::Corrupt("counting from the sessions alone needed the rollup".into()))
}

/// Runs `counting` within the store's statement timeout, as one statement: an aggregation
/// is one answer to its caller, and its ~25 statements, each within the timeout, could hold
/// a connection for many times it. Past it, the statement running is stopped (its future
/// dropped, as when the caller goes away) and no other starts.
async fn within_time_limit<R: Materialize, T>(
    runner: &R,
    counting: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let Some(limit) = runner.time_limit() else {
        return counting.await;
    };
    match tokio::time::timeout(limit, counting).await {
        Ok(counted) => counted,
        Err(_) => Err(StoreError::TimedOut(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the aggregation ran past the statement timeout ({limit:?})"),
        )))),
    }
}

/// Computes `q` with its filter evaluated once, into `agg_matching`, and every statement
/// reading the sessions from there.
async fn over_matched<R: Materialize>(runner: &R, org: OrgId, q: &AggregateQuery) -> Result<Aggregates, StoreError> {
    let (select, args) = materialization(runner, org, q).await?;
    let matched = runner.matched(select, args).await?;
    let out = compute(&matched, org, q, None, true).await?;
    out.ok_or_else(|| StoreError::Corrupt("counting the matched sessions needed the rollup".into()))
}

/// Whether `q`'s filter is evaluated once, into `agg_matching` (see [`Materialize`]).
pub(crate) fn is_costly(q: &AggregateQuery) -> bool {
    predicates(&q.filter) >= COSTLY_PREDICATES
}

/// The statement selecting what `agg_matching` holds for `q`: the [`MATCHED_COLUMNS`] of
/// every session it matches.
pub(crate) async fn materialization<R: AggRunner>(
    runner: &R,
    org: OrgId,
    q: &AggregateQuery,
) -> Result<(String, Vec<Arg>), StoreError> {
    let earliest = match q.window_start {
        Some(start) => Some(runner.earliest_start(org, start).await?),
        None => None,
    };
    let columns: Vec<String> = MATCHED_COLUMNS.iter().map(|c| format!("s.{c} AS {c}")).collect();
    let mut b = SqlBuilder::new(runner.dialect());
    b.push("SELECT ").push(&columns.join(", ")).push(" FROM sessions s WHERE ");
    Matching { org, q, earliest, part: Part::All, matched: false }.push(&mut b);
    Ok(b.into_parts())
}

/// The statements [`aggregate`] runs for `q` (unless its filter is costly, when they read
/// `agg_matching`), for the tests that look at their plans.
pub(crate) async fn statements<R: AggRunner>(
    runner: &R,
    org: OrgId,
    q: &AggregateQuery,
) -> Result<Vec<(String, Vec<Arg>)>, StoreError> {
    let matched = is_costly(q);
    let hours = if matched { None } else { Hours::of(q) };
    let plan = plan(runner, org, q, hours, matched).await?;
    let statements = plan.statements.into_iter().flatten().map(|(statement, _)| statement);
    Ok(statements.chain(plan.together.map(|(statement, _)| statement)).collect())
}

/// What [`compute`] runs, and what it knows before it does.
struct Plan {
    /// One entry per result: histogram levels (or the hit count), then facets.
    statements: Vec<Vec<Planned>>,
    /// One statement counting several facets (see [`facets_statement`]), and the results it
    /// gives, in the order of its facets; theirs in `statements` are empty.
    together: Option<(Statement, Vec<usize>)>,
    /// The histogram's interval, first and last bucket.
    buckets: Option<(Micros, i64, i64)>,
    /// The number of hits, when counted already.
    num_hits: Option<u64>,
    /// How many of the results are the histogram's (or the hit count).
    histogram_results: usize,
}

/// Computes `q`, using the rollup for `hours` where it can; `None` when what
/// its statements returned cannot be added up exactly.
async fn compute<R: AggRunner>(
    runner: &R,
    org: OrgId,
    q: &AggregateQuery,
    hours: Option<Hours>,
    matched: bool,
) -> Result<Option<Aggregates>, StoreError> {
    let Plan { statements: plan, together, buckets, num_hits, histogram_results } =
        plan(runner, org, q, hours, matched).await?;
    let mut parts: Vec<Vec<(Vec<AggRow>, i64)>> = plan.iter().map(|_| Vec::new()).collect();
    let mut routes: Vec<Route> = plan
        .iter()
        .enumerate()
        .flat_map(|(i, parts)| parts.iter().map(move |(_, sign)| Route::One(i, *sign)))
        .collect();
    // The deepest level of a grouped histogram has the most groups (each group of a level has
    // one below it at least): alone in its result, it runs first and stops the aggregation
    // with too many, before the other statements start (those running are cancelled).
    let deepest = match &q.histogram {
        Some(spec) if !spec.group_by.is_empty() && buckets.is_some() && plan[histogram_results - 1].len() == 1 => {
            Some(histogram_results - 1)
        }
        _ => None,
    };
    let mut statements: Vec<Statement> = plan.into_iter().flatten().map(|(statement, _)| statement).collect();
    if let Some((statement, results)) = together {
        statements.push(statement);
        routes.push(Route::Each(results));
    }
    let capped = |route: &Route| matches!(route, Route::One(result, _) if Some(*result) == deepest);
    let mut runs: Vec<(Statement, Route)> = statements.into_iter().zip(routes).collect();
    runs.sort_by_key(|(_, route)| !capped(route));
    let (statements, routes): (Vec<_>, Vec<_>) = runs.into_iter().unzip();
    let caps: Vec<bool> = routes.iter().map(capped).collect();
    // A few at a time: enough to use both cores, few enough to leave the
    // pool's other connections to listings and ingestion.
    let statements = statements.into_iter().zip(caps).map(|((sql, args), capped)| async move {
        let rows = runner.rows(sql, args).await?;
        if capped && rows.len() > MAX_GROUP_ROWS {
            return Err(too_many_groups());
        }
        Ok(rows)
    });
    let rows: Vec<Vec<AggRow>> = stream::iter(statements).buffered(CONCURRENT_STATEMENTS).try_collect().await?;
    for (route, rows) in routes.into_iter().zip(rows) {
        match route {
            Route::One(result, sign) => parts[result].push((rows, sign)),
            Route::Each(results) => {
                let mut each: Vec<Vec<AggRow>> = results.iter().map(|_| Vec::new()).collect();
                for row in rows {
                    let at = grouped_by(row.bucket, results.len());
                    each[at].push(AggRow { bucket: 0, ..row });
                }
                for (result, rows) in results.into_iter().zip(each) {
                    parts[result].push((rows, 1));
                }
            }
        }
    }
    let Some(mut results) = parts.into_iter().map(add_up).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let facet_rows = results.split_off(histogram_results);
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
        .map(|(&facet, mut rows)| {
            if hours.is_some() && rollup::dim_of_facet(facet).is_some() {
                // Added up by key: order and cut them as a facet statement does.
                rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.keys[0].cmp(&b.keys[0])));
                rows.truncate(q.facet_limit);
            }
            let keys =
                rows.into_iter().map(|r| KeyCount { key: take_key(r.keys, 0), count: r.count as u64, groups: vec![] });
            (facet, keys.collect())
        })
        .collect();
    Ok(Some(out))
}

/// Where the rows of a statement go.
enum Route {
    /// To one result, adding (1) or taking away (-1).
    One(usize, i64),
    /// To one result each, as their `GROUPING` value in `b` says (see [`facets_statement`]).
    Each(Vec<usize>),
}

/// The place, among the `m` columns of a `GROUPING(f0, ..., f{m-1})`, of the one a row is
/// grouped by: the only bit `grouping` has clear, f0's the highest.
fn grouped_by(grouping: i64, m: usize) -> usize {
    m - 1 - (!grouping).trailing_zeros() as usize
}

/// The statements that compute `q`, using the rollup for `hours` where it can.
async fn plan<R: AggRunner>(
    runner: &R,
    org: OrgId,
    q: &AggregateQuery,
    hours: Option<Hours>,
    matched: bool,
) -> Result<Plan, StoreError> {
    let earliest = match q.window_start {
        Some(start) if !matched => Some(runner.earliest_start(org, start).await?),
        _ => None,
    };
    if let Some(spec) = &q.histogram {
        for &field in &spec.group_by {
            if let Some(why) = ungroupable(field) {
                return Err(StoreError::Invalid(format!("cannot group the histogram by {}: {why}", field.name())));
            }
        }
    }
    let matching = Matching { org, q, earliest, part: Part::All, matched };
    let dialect = runner.dialect();
    // The statements of one result: the rollup's rows for `hours` plus the
    // sessions outside them, when `rolled` is given; else the sessions.
    let split =
        |rolled: Option<(String, Vec<Arg>)>, build: &dyn Fn(&Matching<'_>) -> (String, Vec<Arg>)| match (hours, rolled)
        {
            (Some(hours), Some(rolled)) => {
                let mut parts = vec![
                    (rolled, 1),
                    (build(&matching.part(Part::Before(hours.from))), 1),
                    (build(&matching.part(Part::From(hours.to))), 1),
                ];
                // Without a window start, every session matches.
                if q.window_start.is_some() {
                    parts.push((build(&matching.part(Part::Unmatched(hours))), -1));
                }
                parts
            }
            _ => vec![(build(&matching), 1)],
        };

    // Where the histogram starts: the window's start, or else the first hit.
    let mut buckets = None;
    let mut num_hits = None;
    if let Some(spec) = &q.histogram {
        let from = match q.window_start {
            Some(start) => Some(start),
            None => {
                // The first start alone, an index probe for a match-all query: the hits are what
                // the histogram's buckets add up to.
                let mut b = SqlBuilder::new(dialect);
                b.push("SELECT CAST(COALESCE(MIN(s.start_us), 0) AS BIGINT) AS b, '' AS k1, '' AS k2, '' AS k3, ");
                b.push("CAST(CASE WHEN MIN(s.start_us) IS NULL THEN 0 ELSE 1 END AS BIGINT) AS n");
                b.push(matching.from(dialect)).push(" WHERE ");
                matching.push(&mut b);
                let (sql, args) = b.into_parts();
                let row = runner.rows(sql, args).await?.into_iter().next().unwrap_or_default();
                if row.count == 0 {
                    num_hits = Some(0);
                }
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

    // One entry per result: histogram levels (or the hit count), then facets.
    let mut plan: Vec<Vec<Planned>> = Vec::new();
    if let (Some(spec), Some((interval, first, _))) = (&q.histogram, buckets) {
        // Whole hours fill whole buckets, and the rollup splits by one field.
        let dims: Option<Vec<i64>> = (interval % rollup::HOUR == 0 && spec.group_by.len() <= 1)
            .then(|| spec.group_by.iter().map(|&f| rollup::dim_of_field(f).map(|d| d.code)).collect())
            .flatten();
        for depth in 0..=spec.group_by.len() {
            let rolled = hours.zip(dims.as_ref()).map(|(hours, dims)| {
                let dim = if depth == 0 { rollup::ALL_SESSIONS } else { dims[depth - 1] };
                let limit = Some(MAX_GROUP_ROWS as i64 + 1);
                let keys = if depth > 0 { RollupKeys::All } else { RollupKeys::None };
                rollup_statement(dialect, org, hours, dim, Some(interval), keys, limit)
            });
            let group_by = &spec.group_by[..depth];
            plan.push(split(rolled, &|m| histogram_statement(dialect, m, interval, first * interval, group_by)));
        }
    } else if num_hits.is_none() {
        let rolled = hours
            .map(|hours| rollup_statement(dialect, org, hours, rollup::ALL_SESSIONS, None, RollupKeys::None, None));
        plan.push(split(rolled, &|m| count_statement(dialect, m)));
    }
    let histogram_results = plan.len();
    let rolled_up = |facet: Facet| rollup::dim_of_facet(facet).filter(|_| hours.is_some());
    // On PostgreSQL, the facets counted from the matching sessions alone, one key per session,
    // in one scan of them (GROUPING SETS); SQLite has none.
    let mut together: Vec<usize> = match dialect {
        Dialect::Postgres => (0..q.facets.len())
            .filter(|&i| {
                let facet = q.facets[i];
                one_key_per_session(facet) && !unique_per_session(facet) && rolled_up(facet).is_none()
            })
            .collect(),
        Dialect::Sqlite => Vec::new(),
    };
    if together.len() < 2 {
        together.clear();
    }
    for (i, &facet) in q.facets.iter().enumerate() {
        if together.contains(&i) {
            plan.push(Vec::new());
            continue;
        }
        // Every key of each part, so that the top ones of the sum are known.
        let dim = rolled_up(facet);
        let limit = if dim.is_some() { None } else { Some(q.facet_limit) };
        let rolled = hours
            .zip(dim)
            .map(|(hours, dim)| rollup_statement(dialect, org, hours, dim.code, None, RollupKeys::NonEmpty, None));
        plan.push(split(rolled, &|m| facet_statement(dialect, m, facet, limit)));
    }
    let together = (!together.is_empty()).then(|| {
        let facets: Vec<Facet> = together.iter().map(|&i| q.facets[i]).collect();
        let statement = facets_statement(dialect, &matching, &facets, q.facet_limit);
        (statement, together.iter().map(|&i| histogram_results + i).collect())
    });

    Ok(Plan { statements: plan, together, buckets, num_hits, histogram_results })
}

/// The rows of one result from the rows of its statements: those of a single
/// statement as they are, those of several added up by bucket and keys
/// (without the ones that come to 0). `None` when a statement returned more
/// groups than allowed while another took some away: some of those groups
/// may come to 0, so whether there are too many is not known.
fn add_up(mut parts: Vec<(Vec<AggRow>, i64)>) -> Option<Vec<AggRow>> {
    if let [(_, 1)] = parts[..] {
        return parts.pop().map(|(rows, _)| rows);
    }
    let takes_away = parts.iter().any(|(rows, sign)| *sign < 0 && !rows.is_empty());
    if takes_away && parts.iter().any(|(rows, _)| rows.len() > MAX_GROUP_ROWS) {
        return None;
    }
    let mut sums: BTreeMap<(i64, [String; 3]), i64> = BTreeMap::new();
    for (rows, sign) in parts {
        for row in rows {
            *sums.entry((row.bucket, row.keys)).or_default() += sign * row.count;
        }
    }
    Some(
        sums.into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|((bucket, keys), count)| AggRow { bucket, keys, count })
            .collect(),
    )
}

fn take_key(keys: [String; 3], i: usize) -> String {
    keys.into_iter().nth(i).unwrap_or_default()
}

/// Which keys of a rollup statement's dim it returns.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RollupKeys {
    /// None: every count is under `''`.
    None,
    All,
    /// All but the empty key, as facets count.
    NonEmpty,
}

/// Counts from the rollup over `hours`, in buckets of `interval` (else all in
/// bucket 0), by the key of `dim` as `keys` says.
fn rollup_statement(
    dialect: Dialect,
    org: OrgId,
    hours: Hours,
    dim: i64,
    interval: Option<Micros>,
    keys: RollupKeys,
    limit: Option<i64>,
) -> (String, Vec<Arg>) {
    let mut b = SqlBuilder::new(dialect);
    b.push("SELECT ");
    match interval {
        Some(interval) => b.push("hour_us / ").bind_int(interval),
        None => b.push("CAST(0 AS BIGINT)"),
    };
    let keyed = keys != RollupKeys::None;
    b.push(if keyed { " AS b, key AS k1" } else { " AS b, '' AS k1" });
    b.push(", '' AS k2, '' AS k3, CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM session_rollup WHERE org_id = ");
    b.bind_int(org.0).push(" AND dim = ").bind_int(dim);
    b.push(" AND hour_us >= ").bind_int(hours.from).push(" AND hour_us < ").bind_int(hours.to);
    if keys == RollupKeys::NonEmpty {
        b.push(" AND key <> ''");
    }
    match (interval.is_some(), keyed) {
        (true, true) => b.push(" GROUP BY b, k1"),
        (true, false) => b.push(" GROUP BY b"),
        (false, true) => b.push(" GROUP BY k1"),
        (false, false) => &mut b,
    };
    if let Some(limit) = limit {
        b.push(" LIMIT ").bind_int(limit);
    }
    b.into_parts()
}

/// The number of matching sessions, in bucket 0.
fn count_statement(dialect: Dialect, matching: &Matching<'_>) -> (String, Vec<Arg>) {
    let mut b = SqlBuilder::new(dialect);
    b.push("SELECT CAST(0 AS BIGINT) AS b, '' AS k1, '' AS k2, '' AS k3, CAST(COUNT(*) AS BIGINT) AS n");
    b.push(matching.from(dialect)).push(" WHERE ");
    matching.push(&mut b);
    b.into_parts()
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
    b.push(matching.from(dialect));
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
            ("sf.fingerprint", " JOIN session_fingerprints sf ON sf.org_id = s.org_id AND sf.session_id = s.id")
        }
        // With the statement running, which a session ended by its connector's lease keeps
        // (its transcript ends with it): it ran, though it was never reported complete.
        Facet::Statements => {
            (decimal_range!("(s.statement_count + CASE WHEN s.running_seq IS NULL THEN 0 ELSE 1 END)"), "")
        }
        Facet::BytesSent => (decimal_range!("s.bytes_sent"), ""),
        Facet::RowsSent => (decimal_range!("s.rows_sent"), ""),
    }
}

/// Whether no two sessions of an organization share `facet`'s key: the session id.
fn unique_per_session(facet: Facet) -> bool {
    facet == Facet::SessionId
}

/// Whether `facet`'s join gives a session at most one key: the fingerprints give it one each.
fn one_key_per_session(facet: Facet) -> bool {
    facet != Facet::QueryFingerprint
}

/// The top `limit` keys of each of `facets` (each with [`one_key_per_session`]) among the
/// matching sessions, as [`facet_statement`] counts them, from one scan of them: PostgreSQL
/// counts every grouping set of `GROUP BY GROUPING SETS` from the rows read once, where one
/// statement per facet read the sessions once each (`technology:postgres` at a million
/// sessions: 7.0 s, 2.1 s so). `b` is the rows' `GROUPING(f0, ...)`, which tells the facet
/// (see [`grouped_by`]). Keys compare in "C" (bytes), as the columns they come from and SQLite do.
fn facets_statement(dialect: Dialect, matching: &Matching<'_>, facets: &[Facet], limit: usize) -> (String, Vec<Arg>) {
    let columns = (0..facets.len()).map(|i| format!("f{i}")).collect::<Vec<_>>().join(", ");
    let mut b = SqlBuilder::new(dialect);
    b.push("SELECT CAST(g AS BIGINT) AS b, k1, '' AS k2, '' AS k3, n FROM (SELECT GROUPING(").push(&columns);
    b.push(") AS g, COALESCE(").push(&columns).push(") AS k1, CAST(COUNT(*) AS BIGINT) AS n, ");
    b.push("ROW_NUMBER() OVER (PARTITION BY GROUPING(").push(&columns).push(") ORDER BY COUNT(*) DESC, COALESCE(");
    b.push(&columns).push(")) AS r FROM (SELECT ");
    let mut joins: Vec<&str> = Vec::new();
    for (i, &facet) in facets.iter().enumerate() {
        let (key, join) = facet_key(facet);
        // Empty keys (a property a session does not have) are not counted: grouped as NULL,
        // which no other grouping set's row has, they are left out below.
        b.push(if i == 0 { "" } else { ", " }).push("NULLIF(").push(key).push(&format!(", '') COLLATE \"C\" AS f{i}"));
        if !join.is_empty() && !joins.contains(&join) {
            joins.push(join);
        }
    }
    b.push(matching.from(dialect));
    for join in joins {
        b.push(join);
    }
    b.push(" WHERE ");
    matching.push(&mut b);
    b.push(") t GROUP BY GROUPING SETS (");
    for i in 0..facets.len() {
        b.push(&format!("{}(f{i})", if i == 0 { "" } else { ", " }));
    }
    b.push(") HAVING COALESCE(").push(&columns).push(") IS NOT NULL) g WHERE r <= ").bind_int(limit as i64);
    b.push(" ORDER BY b, n DESC, k1");
    b.into_parts()
}

/// The top `limit` keys of `facet` among matching sessions (all of them,
/// unordered, without a limit); empty keys (a property a session does not
/// have) are not counted.
fn facet_statement(
    dialect: Dialect,
    matching: &Matching<'_>,
    facet: Facet,
    limit: Option<usize>,
) -> (String, Vec<Arg>) {
    let (key, join) = facet_key(facet);
    let mut b = SqlBuilder::new(dialect);
    if unique_per_session(facet) {
        // Each key counts 1, so the top keys, ties by key, are the first: an index walk, where
        // grouping a million sessions by id took 2.5 s.
        b.push("SELECT CAST(0 AS BIGINT) AS b, ").push(key).push(" AS k1, '' AS k2, '' AS k3, CAST(1 AS BIGINT) AS n");
        b.push(matching.from(dialect)).push(join).push(" WHERE ");
        matching.push(&mut b);
        b.push(" AND ").push(key).push(" <> '' ORDER BY k1");
        if let Some(limit) = limit {
            b.push(" LIMIT ").bind_int(limit as i64);
        }
        return b.into_parts();
    }
    b.push("SELECT CAST(0 AS BIGINT) AS b, ")
        .push(key)
        .push(" AS k1, '' AS k2, '' AS k3, CAST(COUNT(*) AS BIGINT) AS n");
    b.push(matching.from(dialect)).push(join).push(" WHERE ");
    matching.push(&mut b);
    b.push(" AND ").push(key).push(" <> ''");
    b.push(" GROUP BY k1");
    if let Some(limit) = limit {
        b.push(" ORDER BY n DESC, k1 ASC LIMIT ").bind_int(limit as i64);
    }
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
            return Err(too_many_groups());
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
    use crate::model::HistogramSpec;

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
    fn rolled_up_fields_and_facets_group_by_their_dims_column() {
        for dim in rollup::DIMS {
            let column = format!("s.{}", dim.column);
            assert!(matches!(group_key(dim.field), Some(GroupKey::Column(c)) if c == column), "{dim:?}");
            if let Some(facet) = dim.facet {
                assert_eq!(facet_key(facet), (column.as_str(), ""), "{dim:?}");
            }
        }
    }

    /// Builds statements without a database: every session starts at 0.
    struct Unconnected(Dialect);

    impl AggRunner for Unconnected {
        fn dialect(&self) -> Dialect {
            self.0
        }

        async fn earliest_start(&self, _org: OrgId, window_start: Micros) -> Result<Micros, StoreError> {
            Ok(window_start)
        }

        async fn rows(&self, _sql: String, _args: Vec<Arg>) -> Result<Vec<AggRow>, StoreError> {
            Ok(vec![AggRow { bucket: 0, keys: Default::default(), count: 1 }])
        }
    }

    /// The `x` of every `s.x` in `sql`.
    fn session_columns_read(sql: &str) -> Vec<String> {
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut columns = Vec::new();
        for (at, _) in sql.match_indices("s.") {
            if sql[..at].ends_with(is_name) {
                continue;
            }
            let rest = &sql[at + 2..];
            columns.push(rest[..rest.find(|c| !is_name(c)).unwrap_or(rest.len())].to_owned());
        }
        columns
    }

    #[tokio::test]
    async fn statements_over_matched_sessions_read_only_the_columns_materialized() {
        let groupable: Vec<Field> = Field::ALL.iter().copied().filter(|&f| is_groupable(f)).collect();
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for group_by in groupable.chunks(3) {
                let q = AggregateQuery {
                    filter: gatehouse_query::parse("alice", 0).unwrap(),
                    window_start: None,
                    window_end: None,
                    now: 0,
                    histogram: Some(HistogramSpec { interval: Some(rollup::HOUR), group_by: group_by.to_vec() }),
                    facets: Facet::ALL.to_vec(),
                    facet_limit: 10,
                };
                assert!(is_costly(&q));
                for (sql, _) in statements(&Unconnected(dialect), OrgId(1), &q).await.unwrap() {
                    assert!(sql.contains("agg_matching s"), "{sql}");
                    for column in session_columns_read(&sql) {
                        assert!(MATCHED_COLUMNS.contains(&column.as_str()), "{column} is not materialized: {sql}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_grouping_value_tells_the_one_column_grouped_by() {
        // GROUPING(f0, f1, f2): a bit per column, f0's the highest, set where not grouped by.
        assert_eq!(grouped_by(0b011, 3), 0);
        assert_eq!(grouped_by(0b101, 3), 1);
        assert_eq!(grouped_by(0b110, 3), 2);
        assert_eq!(grouped_by(0, 1), 0);
    }

    #[test]
    fn added_up_rows_drop_what_comes_to_zero_and_refuse_unknowable_totals() {
        let row = |bucket, key: &str, count| AggRow { bucket, keys: [key.into(), String::new(), String::new()], count };
        let parts = vec![
            (vec![row(1, "a", 3), row(1, "b", 1)], 1),
            (vec![row(1, "a", 2), row(0, "c", 1)], 1),
            (vec![row(1, "b", 1)], -1),
        ];
        assert_eq!(add_up(parts), Some(vec![row(0, "c", 1), row(1, "a", 5)]));
        let single = vec![(vec![row(2, "z", 1), row(1, "a", 1)], 1)];
        assert_eq!(add_up(single), Some(vec![row(2, "z", 1), row(1, "a", 1)]), "one statement's rows as they are");
        let many: Vec<_> = (0..=MAX_GROUP_ROWS as i64).map(|i| row(i, "", 1)).collect();
        assert_eq!(add_up(vec![(many.clone(), 1), (vec![row(0, "", 1)], -1)]), None);
        assert_eq!(add_up(vec![(many, 1), (vec![], -1)]).map(|rows| rows.len()), Some(MAX_GROUP_ROWS + 1));
    }

    #[test]
    fn the_rollup_covers_the_whole_hours_of_a_match_all_window() {
        const H: Micros = rollup::HOUR;
        let query = |start: Option<Micros>, end: Option<Micros>, filter: Expr| AggregateQuery {
            filter,
            window_start: start,
            window_end: end,
            now: 100 * H + 5,
            histogram: None,
            facets: vec![],
            facet_limit: 10,
        };
        let hours = |q: &AggregateQuery| Hours::of(q).map(|h| (h.from / H, h.to / H));
        assert_eq!(hours(&query(Some(10 * H + 1), None, Expr::All)), Some((11, 100)));
        assert_eq!(hours(&query(Some(10 * H), Some(20 * H - 1), Expr::All)), Some((10, 19)));
        assert_eq!(hours(&query(Some(10 * H + 1), Some(11 * H + 2), Expr::All)), None, "no whole hour");
        assert_eq!(hours(&query(None, Some(20 * H), Expr::All)), Some((1, 20)), "every session matches");
        let filtered = gatehouse_query::parse("technology:postgres", 0).unwrap();
        assert_eq!(hours(&query(Some(10 * H), None, filtered)), None);
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
