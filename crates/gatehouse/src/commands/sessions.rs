//! `gatehouse sessions`: the API client for people and scripts.

use std::io::{BufWriter, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use connectrpc::client::ClientConfig;
use connectrpc::{ConnectError, ErrorCode};
use gatehouse_core::time::{format_rfc3339, now_micros};
use gatehouse_proto::core::v1::{
    CreateSessionTerminationRequest, GetSessionRequest, GetSessionTranscriptRequest, ListSessionsV2Request,
    SessionObject, SessionsServiceClient,
};

use crate::cli::{ApiArgs, ListArgs, OutputFormat, SessionsCommand};
use crate::output::{RecordWriter, Table};

type Client = SessionsServiceClient<gatehouse_tls::Transport>;

pub async fn run(command: SessionsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SessionsCommand::List(args) => list(args).await,
        SessionsCommand::Terminate { id, connector, api } => {
            let client = client(&api)?;
            let connector_id = match connector {
                Some(connector) => connector,
                None => {
                    let request = GetSessionRequest { session_id: id.clone(), ..Default::default() };
                    let session = call(&api, client.get_session(request)).await?.into_owned().session.into_option();
                    session.and_then(|s| s.connector.into_option()).map(|c| c.id).unwrap_or_default()
                }
            };
            let request = CreateSessionTerminationRequest { session_id: id, connector_id, ..Default::default() };
            let response = call(&api, client.create_session_termination(request)).await?.into_owned();
            let shutdown = response.session_shutdown.into_option().context("the response has no session_shutdown")?;
            note!("Termination of session {} sent to connector {}.", shutdown.session_id, shutdown.connector_id);
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
        SessionsCommand::Get { id, output, api } => {
            let client = client(&api)?;
            let request = GetSessionRequest { session_id: id, ..Default::default() };
            let response = call(&api, client.get_session(request)).await?.into_owned();
            let session = response.session.into_option().context("the response has no session")?;
            print_sessions(&[session], output)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The largest response taken: a page of 100,000 sessions (the most a page holds) is tens of
/// megabytes.
const MAX_RESPONSE: usize = 1 << 30;

/// The URL as errors show it: without a password or query string it may carry.
fn shown_url(api: &ApiArgs) -> String {
    let url = api.url.trim();
    let url = url.split(['?', '#']).next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

fn client(api: &ApiArgs) -> anyhow::Result<Client> {
    let url = api.url.trim();
    let uri: http::Uri = url.parse().ok().filter(|uri: &http::Uri| uri.host().is_some()).with_context(|| {
        format!(
            "the control-plane URL {:?} (--url or GATEHOUSE_URL) is not a URL such as http://127.0.0.1:7400",
            shown_url(api)
        )
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        bail!(
            "the control-plane URL {:?} (--url or GATEHOUSE_URL) must start with http:// or https://",
            shown_url(api)
        );
    }
    let key = api.api_key.trim();
    if key.is_empty() {
        bail!("no API key: set GATEHOUSE_API_KEY or pass --api-key (`gatehouse keys create` makes one)");
    }
    let key = http::HeaderValue::from_str(key).ok().context("the API key holds characters no key has")?;
    let config =
        ClientConfig::new(uri).with_default_header("x-api-key", key).with_default_max_message_size(MAX_RESPONSE);
    let transport =
        gatehouse_tls::transport(api.ca_file()).context("cannot use the CA file (--ca-file or GATEHOUSE_CA_FILE)")?;
    Ok(SessionsServiceClient::new(transport, config))
}

/// Makes a call within `--timeout`. A failure that is not the control plane's answer (nothing
/// listening, no answer in time) names the URL tried: a refused connection alone does not.
async fn call<T>(api: &ApiArgs, call: impl Future<Output = Result<T, ConnectError>>) -> anyhow::Result<T> {
    let url = shown_url(api);
    match tokio::time::timeout(api.timeout, call).await {
        Err(_) => bail!("no answer from the control plane at {url} within {:?} (--timeout)", api.timeout),
        // Transport errors carry their cause; errors the control plane sent do not.
        Ok(Err(error)) if error.code == ErrorCode::Unavailable && std::error::Error::source(&error).is_some() => {
            let advice = gatehouse_tls::advice(&error, "--ca-file (or GATEHOUSE_CA_FILE)");
            let error = anyhow::Error::new(error).context(format!("cannot reach the control plane at {url}"));
            Err(match advice {
                Some(advice) => anyhow::anyhow!("{}\n{advice}", crate::message(&error)),
                None => error,
            })
        }
        Ok(result) => Ok(result?),
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
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
    let mut total = 0usize;
    let mut table_rows = Vec::new();
    // JSONL and CSV go out page by page: an export of any size holds one page.
    let mut records = match args.output {
        OutputFormat::Table => None,
        OutputFormat::Jsonl => Some(RecordWriter::jsonl(BufWriter::new(std::io::stdout().lock()))),
        OutputFormat::Csv => Some(RecordWriter::csv(BufWriter::new(std::io::stdout().lock()))?),
    };
    let more = loop {
        let response = call(&args.api, client.list_sessions_v2(request.clone()))
            .await
            // What was written stays written: say how far the export got.
            .map_err(|error| if total > 0 { error.context(format!("stopped after {total} sessions")) } else { error })?
            .into_owned();
        total += response.sessions.len();
        match records.as_mut() {
            Some(records) => {
                for session in &response.sessions {
                    records.write(&serde_json::to_value(session)?)?;
                }
                records.flush()?;
            }
            None => table_rows.extend(response.sessions),
        }
        let next = response.list_metadata.into_option().map(|m| m.next_cursor).unwrap_or_default();
        if !args.all || next.is_empty() {
            break !next.is_empty();
        }
        if progress {
            progress!("\rfetched {total} sessions…");
        }
        request.cursor = next;
    };
    if progress {
        note!("\rfetched {total} sessions.   ");
    }
    if records.is_none() {
        print_sessions(&table_rows, OutputFormat::Table)?;
    }
    if more {
        note!("More sessions match: raise --limit, or pass --all for every one.");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_sessions(sessions: &[SessionObject], format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Jsonl | OutputFormat::Csv => {
            let out = BufWriter::new(std::io::stdout().lock());
            let mut records =
                if format == OutputFormat::Csv { RecordWriter::csv(out)? } else { RecordWriter::jsonl(out) };
            for session in sessions {
                records.write(&serde_json::to_value(session)?)?;
            }
            records.flush()?;
        }
        OutputFormat::Table => {
            let mut table = Table::new(&[
                "ID",
                "STATUS",
                "START",
                "DURATION",
                "USER",
                "ROLE",
                "RESOURCE",
                "TECH",
                "CLIENT IP",
                "CONNECTOR",
            ]);
            for s in sessions {
                let user = s.user.as_option();
                let formal = user.and_then(|u| u.formal.as_option()).and_then(|f| f.user.as_option());
                let who = formal
                    .map(|f| if f.email.is_empty() { f.name.clone() } else { f.email.clone() })
                    .or_else(|| user.map(|u| u.username.clone()))
                    .unwrap_or_default();
                let resource = s.resource.as_option();
                table.row(vec![
                    s.id.clone(),
                    s.session_status.clone(),
                    s.start_time.as_option().map(|t| format_rfc3339(t.seconds * 1_000_000)).unwrap_or_default(),
                    s.duration.as_option().map(|d| human_duration(d.seconds)).unwrap_or_default(),
                    who,
                    user.and_then(|u| u.native.as_option()).map(|n| n.username.clone()).unwrap_or_default(),
                    resource.map(|r| r.name.clone()).unwrap_or_default(),
                    resource.map(|r| r.technology.clone()).unwrap_or_default(),
                    s.network.as_option().map(|n| n.client_ip_address.clone()).unwrap_or_default(),
                    s.connector.as_option().map(|c| c.name.clone()).unwrap_or_default(),
                ]);
            }
            table.print()?;
        }
    }
    Ok(())
}

fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}
