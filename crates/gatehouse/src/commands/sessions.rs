//! `gatehouse sessions`: the API client for people and scripts.

use std::io::{BufWriter, IsTerminal, StdoutLock};
use std::process::ExitCode;

use anyhow::{Context, bail};
use connectrpc::client::ClientConfig;
use connectrpc::{ConnectError, ErrorCode};
use futures::FutureExt;
use gatehouse_core::time::{format_rfc3339, format_rfc3339_micros, micros_of, now_micros};
use gatehouse_proto::core::v1::session_object::user::formal::UserInfo;
use gatehouse_proto::core::v1::{
    CreateSessionTerminationRequest, GetSessionRequest, GetSessionTranscriptRequest, ListSessionAggregationsRequest,
    ListSessionsV2Request, SessionObject, SessionsServiceClient,
};
use gatehouse_proto::gatehouse::sessions::v1::{
    ListSessionStatementsRequest, SessionStatement, StatementsServiceClient,
};

use crate::cli::{ApiArgs, ListArgs, OutputFormat, SessionsCommand};
use crate::output::Fit::{Cut, Sql, Whole};
use crate::output::{CSV_COLUMNS, Columns, RecordWriter, Table};

pub(super) type Client = SessionsServiceClient<gatehouse_tls::Transport>;

/// Says whether a terminated session was seen ended within `wait`: the API's answer means the
/// termination was recorded, not that the connector carrying the session has acted on it.
async fn report_end(
    api: &ApiArgs,
    client: &Client,
    id: &str,
    connector: &str,
    lease_ended: bool,
    wait: std::time::Duration,
) -> anyhow::Result<()> {
    const POLL: std::time::Duration = std::time::Duration::from_millis(200);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let request = GetSessionRequest { session_id: id.to_owned(), ..Default::default() };
        let session = call(api, client.get_session(request)).await?.into_owned().session.into_option();
        if let Some(end) = session.and_then(|s| s.end_time.into_option()) {
            let end = micros_of(end.seconds, end.nanos);
            // Ended before it was asked, and the termination still taken: only the lease's end
            // is, when the session may be live behind a partition.
            if lease_ended {
                note!(
                    "Session {id} was completed at {} when connector {connector}'s lease ran out; it may \
                     still be live behind a partition: the termination is carried out if the connector \
                     is heard again within the hour.",
                    format_rfc3339_micros(end)
                );
            } else {
                note!("Session {id} ended at {}.", format_rfc3339_micros(end));
            }
            return Ok(());
        }
        if tokio::time::Instant::now() + POLL > deadline {
            note!(
                "Session {id} is still active after {}: connector {connector} has not reported its end \
                 yet (it may have ended it and be behind with its reports). It will when it next \
                 reaches the control plane, or the session is completed when the connector's lease \
                 runs out.",
                precise_duration(wait.as_micros() as i64)
            );
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn run(command: SessionsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SessionsCommand::List(args) => list(args).await,
        SessionsCommand::Watch(args) => super::watch::run(args).await,
        SessionsCommand::Terminate { id, connector, wait, api } => {
            let client = client(&api)?;
            let request = GetSessionRequest { session_id: id.clone(), ..Default::default() };
            let session = call(&api, client.get_session(request)).await?.into_owned().session.into_option();
            // Ended already, and a termination still taken: the lease ended it (see `report_end`).
            let lease_ended = session.as_ref().is_some_and(|s| s.end_time.is_set());
            let connector_id = match connector {
                Some(connector) => connector,
                None => {
                    let connector = session.and_then(|s| s.connector.into_option()).map(|c| c.id);
                    connector.filter(|id| !id.is_empty()).with_context(|| {
                        format!("session {id} names no connector to end it through: pass --connector")
                    })?
                }
            };
            let request = CreateSessionTerminationRequest { session_id: id, connector_id, ..Default::default() };
            let response = call(&api, client.create_session_termination(request)).await?.into_owned();
            let shutdown = response.session_shutdown.into_option().context("the response has no session_shutdown")?;
            note!("Termination of session {} sent to connector {}.", shutdown.session_id, shutdown.connector_id);
            if !wait.is_zero() {
                report_end(&api, &client, &shutdown.session_id, &shutdown.connector_id, lease_ended, wait).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionsCommand::Transcript { id, api } => {
            let request = GetSessionTranscriptRequest { session_id: id.clone(), ..Default::default() };
            let transcript = call(&api, client(&api)?.get_session_transcript(request)).await?.into_owned().transcript;
            if transcript.is_empty() {
                note!("Session {id} has no statements recorded.");
            }
            std::io::Write::write_all(&mut std::io::stdout().lock(), transcript.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        SessionsCommand::Statements { id, output, api } => {
            let (transport, config) = connection(&api)?;
            let client = StatementsServiceClient::new(transport, config);
            let mut request = ListSessionStatementsRequest {
                session_id: id.clone(),
                page_size: STATEMENTS_PAGE,
                ..Default::default()
            };
            let mut sink = Sink::new(output, STATEMENT_COLUMNS)?;
            let mut listed = 0;
            loop {
                let page = call(&api, client.list_session_statements(request.clone())).await?.into_owned();
                listed += page.statements.len();
                sink.add(&page.statements, statement_json, statement_row)?;
                if page.next_page_token.is_empty() {
                    break;
                }
                request.page_token = page.next_page_token;
            }
            if listed == 0 {
                note!("Session {id} has no statements recorded.");
            }
            sink.finish()?;
            Ok(ExitCode::SUCCESS)
        }
        SessionsCommand::Get { id, output, api } => {
            let client = client(&api)?;
            let request = GetSessionRequest { session_id: id, ..Default::default() };
            let response = call(&api, client.get_session(request)).await?.into_owned();
            let session = response.session.into_option().context("the response has no session")?;
            let mut sink = Sink::new(output, SESSION_COLUMNS)?;
            sink.add(&[session], api_json, table_row)?;
            sink.finish()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The largest response taken: a page of 100,000 sessions (the most a page holds) is tens of
/// megabytes.
const MAX_RESPONSE: usize = 1 << 30;

pub(super) fn client(api: &ApiArgs) -> anyhow::Result<Client> {
    let (transport, config) = connection(api)?;
    Ok(SessionsServiceClient::new(transport, config))
}

/// How to reach the control plane `api` names, with its key, for a client of any of its services.
fn connection(api: &ApiArgs) -> anyhow::Result<(gatehouse_tls::Transport, ClientConfig)> {
    // Each a mistake in the call (exit 2), found before anything is sent.
    let usage = |message: String| anyhow::Error::from(super::UsageError(message));
    let url = api.url.trim();
    let uri: http::Uri = url.parse().ok().filter(|uri: &http::Uri| uri.host().is_some()).ok_or_else(|| {
        usage(format!(
            "the control-plane URL {:?} (--url or GATEHOUSE_URL) is not a URL such as http://127.0.0.1:7400",
            gatehouse_tls::shown_url(&api.url)
        ))
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(usage(format!(
            "the control-plane URL {:?} (--url or GATEHOUSE_URL) must start with http:// or https://",
            gatehouse_tls::shown_url(&api.url)
        )));
    }
    let key = api.api_key.trim();
    if key.is_empty() {
        return Err(usage(
            "no API key: set GATEHOUSE_API_KEY or pass --api-key (`gatehouse keys create` makes one)".to_owned(),
        ));
    }
    let key = http::HeaderValue::from_str(key)
        .ok()
        .ok_or_else(|| usage("the API key holds characters no key has".to_owned()))?;
    let config =
        ClientConfig::new(uri).with_default_header("x-api-key", key).with_default_max_message_size(MAX_RESPONSE);
    let transport =
        gatehouse_tls::transport(api.ca_file()).context("cannot use the CA file (--ca-file or GATEHOUSE_CA_FILE)")?;
    Ok((transport, config))
}

/// Makes a call within `--timeout`. A failure that is not the control plane's answer (nothing
/// listening, no answer in time, another kind of server) names the URL tried: a refused
/// connection alone does not.
pub(super) async fn call<T>(api: &ApiArgs, call: impl Future<Output = Result<T, ConnectError>>) -> anyhow::Result<T> {
    let url = gatehouse_tls::shown_url(&api.url);
    match tokio::time::timeout(api.timeout, call).await {
        Err(_) => bail!("no answer from the control plane at {url} within {:?} (--timeout)", api.timeout),
        // Transport errors carry their cause; errors the control plane sent do not.
        Ok(Err(error)) if error.code == ErrorCode::Unavailable && std::error::Error::source(&error).is_some() => {
            let advice = not_http_advice(&error, &url)
                .or_else(|| refused_advice(&error))
                .or_else(|| gatehouse_tls::advice(&error, "--ca-file (or GATEHOUSE_CA_FILE)"));
            let error = anyhow::Error::new(error).context(format!("cannot reach the control plane at {url}"));
            Err(match advice {
                Some(advice) => anyhow::anyhow!("{}\n{advice}", crate::message(&error)),
                None => error,
            })
        }
        Ok(Err(error)) => match gatehouse_tls::not_the_api(&url, &error) {
            Some(message) => Err(anyhow::Error::msg(message)),
            None => Err(error.into()),
        },
        Ok(Ok(answer)) => Ok(answer),
    }
}

/// `error`, as a usage error (exit 2) when the control plane refused the query the user typed
/// (`--query`): its syntax, a field it does not know. Other `invalid_argument` answers are not
/// the caller's mistake (a cursor the control plane made, a check the CLI made first and the
/// control plane disagrees with) and stay failures.
pub(super) fn query_refused_as_usage(error: anyhow::Error) -> anyhow::Error {
    let refused = error.downcast_ref::<ConnectError>().filter(|error| error.code == ErrorCode::InvalidArgument);
    // The control plane's words for a query it cannot read (`listing::parse_filter`), said as
    // any of its errors is (`invalid_argument: invalid query: ...`).
    match refused.filter(|refused| refused.message.as_deref().is_some_and(|m| m.starts_with("invalid query:"))) {
        Some(refused) => super::UsageError(refused.to_string()).into(),
        None => error,
    }
}

/// What to do about a server that answered with something other than HTTP. Other services
/// (a database, a connector's listener) answer so as well as a control plane serving HTTPS, so
/// that is only one possibility.
fn not_http_advice(error: &ConnectError, url: &str) -> Option<String> {
    if !gatehouse_tls::chain(error).contains("invalid HTTP version parsed") {
        return None;
    }
    let https = if url.starts_with("http://") {
        ", or a control plane that serves HTTPS on that port (then use an https:// URL)"
    } else {
        ""
    };
    Some(format!(
        "the server at {url} does not speak HTTP: it may be another service (a database, a connector's \
         listener){https}; the control plane listens on 7400 by default"
    ))
}

/// Nothing listens at the URL: the control plane is down, or elsewhere.
fn refused_advice(error: &ConnectError) -> Option<String> {
    gatehouse_tls::chain(error).contains("Connection refused").then(|| {
        "is the control plane running (`gatehouse serve`, or `gatehouse dev`)? For another address, \
         set GATEHOUSE_URL or pass --url"
            .to_owned()
    })
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        // Told here, not by the control plane in its own terms.
        let message = format!("--from ({}) is after --to ({})", format_rfc3339(from), format_rfc3339(to));
        return Err(super::UsageError(message).into());
    }
    let client = client(&args.api)?;
    let since = args.since.map(|span| now_micros().saturating_sub(span));
    let mut request = ListSessionsV2Request {
        limit: args.limit,
        query: args.query.clone(),
        sort_by: args.sort.clone(),
        start_timestamp: since.or(args.from).map(format_rfc3339).unwrap_or_default(),
        end_timestamp: args.to.map(format_rfc3339).unwrap_or_default(),
        ..Default::default()
    };
    let progress = args.all && std::io::stderr().is_terminal();
    // Counted beside the walk, for the progress line only: one pass over the matches on the
    // server, which the walk itself makes page by page.
    let mut counting = progress.then(|| tokio::spawn(count_matches(client.clone(), args.api.clone(), request.clone())));
    let mut matching = None;
    let mut fetched = 0usize;
    let mut sink = Sink::new(args.output, SESSION_COLUMNS)?;
    let more = loop {
        let response = call(&args.api, client.list_sessions_v2(request.clone()))
            .await
            // What was written stays written: say how far the export got.
            .map_err(|error| match fetched {
                0 => query_refused_as_usage(error),
                _ => error.context(format!("stopped after {fetched} sessions")),
            })?
            .into_owned();
        let first_page = fetched == 0;
        fetched += response.sessions.len();
        sink.add(&response.sessions, api_json, table_row)?;
        let next = response.list_metadata.into_option().map(|m| m.next_cursor).unwrap_or_default();
        if !args.all || next.is_empty() {
            break !next.is_empty();
        }
        if first_page && matches!(sink, Sink::Table(_)) {
            note!(
                "The table is printed once the last page is in, since its columns fit every row: \
                 --output jsonl or csv streams page by page, for large exports."
            );
        }
        if let Some(handle) = counting.as_mut().filter(|handle| handle.is_finished()) {
            matching = handle.now_or_never().and_then(Result::ok).flatten();
            counting = None;
        }
        if progress {
            let of = matching.map(|total| format!(" of {total}")).unwrap_or_default();
            progress!("\rfetched {fetched}{of} sessions…");
        }
        request.cursor = next;
    };
    if let Some(handle) = counting {
        handle.abort();
    }
    if progress {
        note!("\rfetched {fetched} sessions.{:20}", "");
    }
    let table = matches!(sink, Sink::Table(_));
    sink.finish()?;
    if more {
        note!("More sessions match: raise --limit, or pass --all for every one.");
    }
    if fetched == 0 && table {
        // A header alone could be taken for output cut short.
        note!(
            "No sessions match{}.",
            if args.query.trim().is_empty() { " in this window" } else { " the query in this window" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How many sessions a walk of `listing` returns, or `None` when the control plane does not
/// say (the progress line then shows no total).
async fn count_matches(client: Client, api: ApiArgs, listing: ListSessionsV2Request) -> Option<i64> {
    let request = ListSessionAggregationsRequest {
        query: listing.query,
        start_timestamp: listing.start_timestamp,
        end_timestamp: listing.end_timestamp,
        // The cheaper of the two parts: one bucketed count, where facets count a dozen fields.
        mode: Some("histogram".to_owned()),
        ..Default::default()
    };
    let response = call(&api, client.list_session_aggregations(request)).await.ok()?;
    Some(response.into_owned().num_hits)
}

/// Where listed records (sessions, statements) go: written page by page; or a table, whose
/// columns fit its widest cells and so is printed only once every row is in. (One per command:
/// its size does not matter, so the CSV writer is not boxed.)
#[allow(clippy::large_enum_variant)]
enum Sink {
    Records(RecordWriter<BufWriter<StdoutLock<'static>>>),
    /// Rendered cells, not the records: a table of every session holds a fraction of their size.
    Table(Table),
}

/// A table's columns and the CSV columns of the same records.
struct SinkColumns {
    table: &'static [(&'static str, crate::output::Fit)],
    /// Table columns left out, first first, of a table too wide for the terminal however cut.
    droppable: &'static [&'static str],
    csv: Columns,
}

const SESSION_COLUMNS: SinkColumns = SinkColumns {
    table: &[
        ("ID", Whole),
        ("STATUS", Whole),
        ("START", Whole),
        ("DURATION", Whole),
        ("USER", Cut),
        ("ROLE", Cut),
        ("RESOURCE", Cut),
        ("TECH", Whole),
        ("CLIENT IP", Whole),
        ("CONNECTOR", Cut),
    ],
    droppable: &["CONNECTOR", "CLIENT IP", "TECH", "ROLE", "RESOURCE", "DURATION"],
    csv: CSV_COLUMNS,
};

const STATEMENT_COLUMNS: SinkColumns = SinkColumns {
    table: &[
        ("SEQ", Whole),
        ("START", Whole),
        ("DURATION", Whole),
        ("ROWS", Whole),
        ("CHANGED", Whole),
        ("BYTES", Whole),
        ("SQLSTATE", Whole),
        ("STATUS", Whole),
        ("TEXT", Sql),
    ],
    droppable: &["BYTES", "STATUS", "CHANGED", "ROWS"],
    csv: &[
        ("seq", "/seq"),
        ("start_time", "/startTime"),
        ("duration_seconds", "/duration"),
        ("rows", "/rows"),
        ("rows_changed", "/rowsChanged"),
        ("bytes_sent", "/bytesSent"),
        ("sqlstate", "/sqlstate"),
        ("status", "/status"),
        ("text", "/text"),
    ],
};

impl Sink {
    fn new(format: OutputFormat, columns: SinkColumns) -> anyhow::Result<Self> {
        let out = || BufWriter::new(std::io::stdout().lock());
        Ok(match format {
            OutputFormat::Table => Self::Table(Table::new(columns.table).droppable(columns.droppable)),
            OutputFormat::Jsonl => Self::Records(RecordWriter::jsonl(out())),
            OutputFormat::Csv => {
                let to_terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
                Self::Records(RecordWriter::csv(out(), columns.csv, to_terminal)?)
            }
        })
    }

    /// Writes `records`, each as its `json` form or as the table's `row` of cells.
    fn add<R>(
        &mut self,
        records: &[R],
        json: fn(&R) -> serde_json::Result<serde_json::Value>,
        row: fn(&R) -> Vec<String>,
    ) -> anyhow::Result<()> {
        match self {
            Self::Records(writer) => {
                for record in records {
                    writer.write(&json(record)?)?;
                }
                writer.flush()?;
            }
            Self::Table(table) => records.iter().for_each(|record| table.row(row(record))),
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Self::Table(table) = self {
            table.print()?;
        }
        Ok(())
    }
}

/// A session's cells in the table [`Sink::new`] makes.
pub(super) fn table_row(s: &SessionObject) -> Vec<String> {
    let user = s.user.as_option();
    let formal = user.and_then(|u| u.formal.as_option());
    let handle = |f: &UserInfo| if f.email.is_empty() { f.name.clone() } else { f.email.clone() };
    let mut who = formal
        .and_then(|f| f.user.as_option())
        .map(handle)
        .or_else(|| user.map(|u| u.username.clone()))
        .unwrap_or_default();
    // A machine acting for a person: both, as the session records them.
    if let Some(end_user) = formal.and_then(|f| f.end_user.as_option()) {
        who = format!("{who} for {}", handle(end_user));
    }
    let resource = s.resource.as_option();
    vec![
        s.id.clone(),
        s.session_status.clone(),
        s.start_time.as_option().map(|t| format_rfc3339(t.seconds * 1_000_000)).unwrap_or_default(),
        s.duration.as_option().map(|d| table_duration(micros_of(d.seconds, d.nanos))).unwrap_or_default(),
        who,
        user.and_then(|u| u.native.as_option()).map(|n| n.username.clone()).unwrap_or_default(),
        resource.map(|r| r.name.clone()).unwrap_or_default(),
        resource.map(|r| r.technology.clone()).unwrap_or_default(),
        s.network.as_option().map(|n| n.client_ip_address.clone()).unwrap_or_default(),
        s.connector.as_option().map(|c| c.name.clone()).unwrap_or_default(),
    ]
}

/// A record in the API's JSON form.
fn api_json<R: serde::Serialize>(record: &R) -> serde_json::Result<serde_json::Value> {
    serde_json::to_value(record)
}

/// A statement in the API's JSON form, but for its counts: numbers, each of them there. The
/// API writes its 64-bit integers as strings and leaves zeros out (proto3's JSON), which `jq`
/// would compare as text (`"10" < "9"`) and find missing; the registry's lists write them so.
fn statement_json(statement: &SessionStatement) -> serde_json::Result<serde_json::Value> {
    let mut json = serde_json::to_value(statement)?;
    if let Some(object) = json.as_object_mut() {
        object.insert("seq".to_owned(), statement.seq.into());
        object.insert("rows".to_owned(), statement.rows.into());
        object.insert("rowsChanged".to_owned(), statement.rows_changed.into());
        object.insert("bytesSent".to_owned(), statement.bytes_sent.into());
    }
    Ok(json)
}

/// Statements asked for at once: a few megabytes.
const STATEMENTS_PAGE: i32 = 10_000;

/// A statement's cells in the table [`STATEMENT_COLUMNS`] makes.
fn statement_row(s: &SessionStatement) -> Vec<String> {
    let lasted = s.duration.as_option().map_or(0, |d| micros_of(d.seconds, d.nanos));
    vec![
        s.seq.to_string(),
        s.start_time.as_option().map(|t| format_rfc3339_micros(micros_of(t.seconds, t.nanos))).unwrap_or_default(),
        precise_duration(lasted),
        s.rows.to_string(),
        s.rows_changed.to_string(),
        s.bytes_sent.to_string(),
        s.sqlstate.clone(),
        s.status.clone(),
        s.text.clone(),
    ]
}

/// Milliseconds, to the microsecond, under a second; seconds, to the millisecond, under a
/// minute (as the console shows them); then as [`human_duration`].
pub(super) fn precise_duration(micros: i64) -> String {
    match micros {
        m if m < 1_000_000 => format!("{}.{:03} ms", m / 1000, m % 1000),
        m if m < 60_000_000 => format!("{}.{:03} s", m / 1_000_000, m % 1_000_000 / 1000),
        m => human_duration(m / 1_000_000),
    }
}

/// A session's duration in the table, in at most 6 characters: milliseconds under a second
/// (`18ms`), seconds to a tenth under a minute (`12.5s`, cut rather than rounded, so that `59.9s`
/// never becomes `60.0s`), then as [`human_duration`].
fn table_duration(micros: i64) -> String {
    match micros.max(0) {
        m if m < 1_000_000 => format!("{}ms", m / 1000),
        m if m < 60_000_000 => format!("{}.{}s", m / 1_000_000, m % 1_000_000 / 100_000),
        m => human_duration(m / 1_000_000),
    }
}

fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_query_is_a_usage_error() {
        let refused = |code, message: &str| anyhow::Error::new(ConnectError::new(code, message.to_owned()));
        let is_usage = |error: anyhow::Error| query_refused_as_usage(error).is::<crate::commands::UsageError>();
        assert!(is_usage(refused(ErrorCode::InvalidArgument, "invalid query: unknown field \"nosuch\"")));
        // A cursor the control plane made, a limit or a window the CLI checked first: not the
        // caller's mistake, whatever the control plane says of them.
        assert!(!is_usage(refused(ErrorCode::InvalidArgument, "the cursor is not valid for this listing")));
        assert!(!is_usage(refused(ErrorCode::InvalidArgument, "start_timestamp is after end_timestamp")));
        assert!(!is_usage(refused(ErrorCode::Unauthenticated, "invalid query: (not a query error)")));
        assert!(!is_usage(anyhow::anyhow!("invalid query: not from the control plane")));
    }

    #[test]
    fn the_tables_durations_show_what_a_second_holds() {
        for (micros, shown) in [
            (0, "0ms"),
            (18_000, "18ms"),
            (999_999, "999ms"),
            (1_000_000, "1.0s"),
            (12_530_000, "12.5s"),
            (59_999_999, "59.9s"),
            (60_000_000, "1m00s"),
            (3_725_000_000, "1h02m"),
        ] {
            assert_eq!(table_duration(micros), shown, "{micros}");
        }
        let session = |micros| SessionObject {
            duration: gatehouse_server::convert::duration(micros).into(),
            ..Default::default()
        };
        assert_eq!(table_row(&session(12_530_000))[3], "12.5s");
        assert_eq!(table_row(&session(18_000))[3], "18ms");
    }

    #[test]
    fn durations_read_in_the_unit_that_suits_them() {
        assert_eq!(precise_duration(0), "0.000 ms");
        assert_eq!(precise_duration(1_234), "1.234 ms");
        assert_eq!(precise_duration(999_999), "999.999 ms");
        assert_eq!(precise_duration(1_000_000), "1.000 s");
        assert_eq!(precise_duration(3_736_002), "3.736 s");
        assert_eq!(precise_duration(61_000_000), "1m01s");
    }
}
