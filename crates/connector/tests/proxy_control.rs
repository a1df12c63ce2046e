//! Everything around the relay: cancels, terminations, shutdown, TLS, bad input, and
//! authentication, against the machine's PostgreSQL.

// Tests run on runtimes of their own, with tokio's time driver.
#![allow(clippy::disallowed_methods)]

mod proxy_harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gatehouse_connector::event::{EndReason, now_us};
use gatehouse_connector::live::Termination;
use gatehouse_connector::proxy::LARGE_MESSAGE_STALL;
use gatehouse_connector::proxy::load_tls;
use gatehouse_pgwire::backend::{AuthenticationRequest, ErrorResponse};
use gatehouse_pgwire::frontend::{PasswordMessage, Terminate};
use gatehouse_pgwire::{CancelRequest, Encode, PROTOCOL_3_0, Startup, StartupMessage};
use proxy_harness::{PATIENCE, Proxy, Raw, backends_running, direct, eventually, sqlstate, unique};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

fn ssl_request() -> BytesMut {
    let mut buf = BytesMut::new();
    Startup::Ssl.encode(&mut buf);
    buf
}

fn cancel_packet(pid: i32, secret: Bytes) -> BytesMut {
    let mut buf = BytesMut::new();
    Startup::Cancel(CancelRequest { pid, secret_key: secret }).encode(&mut buf);
    buf
}

/// A certificate for `localhost`, the TLS config serving it, and a client config trusting it.
fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>, tempfile::TempDir) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let server = load_tls(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).unwrap().config();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, Arc::new(client), dir)
}

#[tokio::test]
async fn cancel_from_tokio_postgres_reaches_the_backend_and_unknown_keys_are_ignored() {
    let mut proxy = Proxy::start().await;
    let (client, _connection) = proxy.connect().await;
    let token = client.cancel_token();
    let marker = unique("gh_cancel");
    let sql = format!("select pg_sleep(30) /* {marker} */");
    let sleeper = tokio::spawn(async move {
        let started = Instant::now();
        let result = client.simple_query(&sql).await;
        (result, started.elapsed(), client)
    });
    let check = direct().await;
    eventually("the query to run", || async { !backends_running(&check, &marker).await.is_empty() }).await;
    assert_eq!(proxy.cancels.len(), 1);

    // A key the connector never issued: silently ignored, the connection simply closes.
    let mut bogus = TcpStream::connect(proxy.addr).await.unwrap();
    bogus.write_all(&cancel_packet(12345, Bytes::from_static(b"nope"))).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, bogus.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!sleeper.is_finished(), "an unknown key cancelled the query");

    token.cancel_query(NoTls).await.unwrap();
    let (result, elapsed, client) = sleeper.await.unwrap();
    assert_eq!(sqlstate(&result.unwrap_err()), "57014");
    assert!(elapsed < Duration::from_secs(10), "cancel took {elapsed:?}");
    client.simple_query("select 1").await.unwrap();
    drop(client);

    let s = proxy.ended_session().await;
    assert_eq!(s.statements[0].sqlstate, "57014");
    assert_eq!(s.texts()[1], "select 1");
    assert!(proxy.cancels.is_empty(), "the key is forgotten with its session");
}

#[tokio::test]
async fn cancel_the_newer_libpq_way_over_tls_and_the_classic_way_after_n() {
    let (server_tls, client_tls, _dir) = tls_pair();
    let proxy = Proxy::start_with(Some(server_tls), proxy_harness::UPSTREAM).await;

    // A session over plain TCP (TLS is offered, not required).
    let mut session = Raw::connect(proxy.addr).await;
    let key = session.startup().await;
    let real_pid: i32 = session.query("select pg_backend_pid()").await[0].parse().unwrap();
    assert_eq!(key.pid, real_pid, "the client sees its backend's pid; only the secret is the connector's");

    // libpq 17: SSLRequest, TLS, then the CancelRequest inside TLS.
    session.send(&query_frame("select pg_sleep(30)")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(&ssl_request()).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'S');
    let connector = tokio_rustls::TlsConnector::from(client_tls);
    let mut tls = connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
    tls.write_all(&cancel_packet(key.pid, key.secret_key.clone())).await.unwrap();
    tls.flush().await.unwrap();
    let started = Instant::now();
    assert_eq!(session.error().await.code(), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The connector closes TLS properly (close_notify): libpq reports a cancel whose
    // connection ends with a bare EOF as failed, though it worked.
    let mut rest = Vec::new();
    assert_eq!(tls.read_to_end(&mut rest).await.unwrap(), 0, "a clean TLS close, with nothing sent");

    // The classic way on a proxy without TLS: SSLRequest answered `N`, then CancelRequest.
    let mut proxy = Proxy::start().await;
    let mut session = Raw::connect(proxy.addr).await;
    let key = session.startup().await;
    session.send(&query_frame("select pg_sleep(30)")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(&ssl_request()).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'N');
    tcp.write_all(&cancel_packet(key.pid, key.secret_key)).await.unwrap();
    assert_eq!(session.error().await.code(), Some("57014"));
    drop(session);
    assert_eq!(proxy.ended_session().await.statements[0].sqlstate, "57014");
}

/// PostgreSQL 17's `sslnegotiation=direct`: TLS from the first byte, no SSLRequest, the
/// protocol named in ALPN. Without ALPN it is refused in PostgreSQL's words; on a connector
/// without a certificate the connection closes, and the listener carries on.
#[tokio::test]
async fn a_client_may_start_tls_at_once_when_it_names_the_protocol() {
    let (server_tls, client_tls, _dir) = tls_pair();
    let mut proxy = Proxy::start_with(Some(server_tls), proxy_harness::UPSTREAM).await;
    let direct_tls = |alpn: &[&[u8]]| {
        let mut config = (*client_tls).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let connect = |addr| async move { TcpStream::connect(addr).await.unwrap() };

    let tls = direct_tls(&[b"postgresql"]).connect("localhost".try_into().unwrap(), connect(proxy.addr).await);
    let mut session = Raw::new(tls.await.unwrap());
    session.startup().await;
    assert_eq!(session.query("select 1").await, ["1"]);
    session
        .send(&{
            let mut buf = BytesMut::new();
            Terminate.encode(&mut buf);
            buf
        })
        .await;
    let s = proxy.ended_session().await;
    assert_eq!(s.texts(), ["select 1"]);

    let tls = direct_tls(&[]).connect("localhost".try_into().unwrap(), connect(proxy.addr).await);
    let mut refused = Raw::new(tls.await.unwrap());
    refused.send(StartupMessage::new(PROTOCOL_3_0, vec![("user".into(), "postgres".into())]).unwrap().frame()).await;
    let error = refused.error().await;
    assert_eq!(error.code(), Some("08P01"));
    assert!(error.message().unwrap_or_default().contains("without ALPN"), "{error:?}");

    let plain = Proxy::start().await;
    let tls = direct_tls(&[b"postgresql"]).connect("localhost".try_into().unwrap(), connect(plain.addr).await);
    assert!(tokio::time::timeout(PATIENCE, tls).await.unwrap().is_err(), "no certificate to start TLS with");
    Raw::connect(plain.addr).await.startup().await;
}

#[tokio::test]
async fn a_long_statement_is_announced_while_it_runs_then_recorded_as_it_completes() {
    let mut proxy = Proxy::start().await;
    let (client, _connection) = proxy.connect().await;
    proxy.started_session().await;
    assert_eq!(proxy.live.announce_running(i64::MAX), 0, "nothing runs");
    let marker = unique("gh_running");
    // The extended protocol: the text is the Parse's, found through the Execute's portal.
    let sql = format!("select pg_sleep(3)::text, $1::text /* {marker} */");
    let asked_at = now_us();
    let sleeper = tokio::spawn({
        let sql = sql.clone();
        async move { client.query(&sql, &[&"x"]).await.map(|_| client) }
    });
    // Prepared first, in a round trip of its own: then bound and executed.
    eventually("the statement to run", || async {
        assert_eq!(proxy.live.announce_running(asked_at - 1), 0, "started after the cut-off");
        proxy.live.announce_running(i64::MAX) == 1
    })
    .await;
    let running = proxy.next_running().await;
    assert!(!sleeper.is_finished(), "announced while it runs");
    assert_eq!(running.text, sql);
    assert!(running.start_us >= asked_at, "{} before {asked_at}", running.start_us);
    assert_eq!(proxy.live.announce_running(i64::MAX), 0, "announced once");

    let client = sleeper.await.unwrap().unwrap();
    client.simple_query("select 1").await.unwrap();
    drop(client);
    let s = proxy.ended_session().await;
    assert_eq!(s.texts(), [sql.as_str(), "select 1"]);
    assert_eq!(s.statements[0].start_us, running.start_us, "its announcement's statement");
    assert_eq!(s.running.len(), 1, "{:?}", s.running);
    assert_eq!(s.running[0].0, 1, "the announcement comes first, its statement after");
}

fn query_frame(sql: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    gatehouse_pgwire::Encode::encode(&gatehouse_pgwire::frontend::Query::new(sql), &mut buf);
    buf
}

/// A session through `proxy` running a 30 s sleep marked with `marker` (found by
/// [`backends_running`] on `check`): the sleep's task, its text and the session's id.
struct Sleeping {
    sleeper: tokio::task::JoinHandle<Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>>,
    sql: String,
    marker: String,
    check: tokio_postgres::Client,
    id: String,
}

async fn sleeping_session(proxy: &mut Proxy, marker: &str) -> Sleeping {
    let (client, _connection) = proxy.connect().await;
    let marker = unique(marker);
    let sql = format!("select pg_sleep(30) /* {marker} */");
    let sleeper = tokio::spawn({
        let sql = sql.clone();
        async move { client.simple_query(&sql).await }
    });
    let check = direct().await;
    eventually("the query to run", || async { !backends_running(&check, &marker).await.is_empty() }).await;
    let (id, _) = proxy.started_session().await;
    Sleeping { sleeper, sql, marker, check, id }
}

#[tokio::test]
async fn termination_tells_the_client_stops_the_backend_and_ends_the_session() {
    let mut proxy = Proxy::start().await;
    let Sleeping { sleeper, sql, marker, check, id } = sleeping_session(&mut proxy, "gh_term").await;

    let termination = Termination::Requested { termination_id: "t_123".into(), reason: "audit says no".into() };
    let asked = Instant::now();
    assert!(proxy.live.terminate(&id, termination));

    let error = sleeper.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&error), "57P01");
    let message = error.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("t_123") && message.contains("audit says no"), "{message}");
    eventually("the backend to go", || async { backends_running(&check, &marker).await.is_empty() }).await;
    assert!(asked.elapsed() < Duration::from_secs(3), "the backend lingered for {:?}", asked.elapsed());

    let s = proxy.ended_session().await;
    assert_eq!(s.id, id);
    assert_eq!(s.end.reason, EndReason::Terminated);
    assert_eq!(s.texts(), [sql.as_str()]);
    assert_eq!(s.statements[0].sqlstate, "57P01");
    assert_eq!(proxy.counter(|m| &m.sessions_terminated_total), 1);
    assert!(proxy.live.is_empty() && proxy.cancels.is_empty());
}

/// A full spool (fail-closed) ends the open sessions as a termination would, with FATAL 53100
/// (`disk_full`), and their end is recorded.
#[tokio::test]
async fn a_full_spool_ends_the_session_with_53100_and_records_its_end() {
    let mut proxy = Proxy::start().await;
    let Sleeping { sleeper, marker, check, id, .. } = sleeping_session(&mut proxy, "gh_full").await;

    assert_eq!(proxy.live.terminate_all(&Termination::SpoolFull), 1);
    let error = sleeper.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&error), "53100");
    let message = error.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("report spool is full"), "{message}");
    eventually("the backend to go", || async { backends_running(&check, &marker).await.is_empty() }).await;

    let s = proxy.ended_session().await;
    assert_eq!(s.id, id);
    assert_eq!(s.end.reason, EndReason::Error);
    assert_eq!(s.statements[0].sqlstate, "53100");
    assert!(proxy.live.is_empty());
}

/// A cursor part read (JDBC's fetch size, a portal fetched 5 rows at a time) when the session
/// is terminated was cut short: its statement carries 57P01, with the rows it got.
#[tokio::test]
async fn a_cursor_part_read_at_termination_is_recorded_as_cut_short() {
    let mut proxy = Proxy::start().await;
    let (mut client, _connection) = proxy.connect().await;
    let transaction = client.transaction().await.unwrap();
    let query = transaction.prepare("select generate_series(1, 100)").await.unwrap();
    let portal = transaction.bind(&query, &[]).await.unwrap();
    assert_eq!(transaction.query_portal(&portal, 5).await.unwrap().len(), 5);
    let (id, _) = proxy.started_session().await;
    let termination = Termination::Requested { termination_id: "t_cursor".into(), reason: "enough".into() };
    assert!(proxy.live.terminate(&id, termination));
    let error = transaction.query_portal(&portal, 5).await.unwrap_err();
    assert_eq!(sqlstate(&error), "57P01");

    let s = proxy.ended_session().await;
    let cursor =
        s.statements.iter().find(|s| s.text == "select generate_series(1, 100)").expect("the cursor's statement");
    assert_eq!((cursor.rows, cursor.sqlstate.as_str()), (5, "57P01"));
    assert_eq!(cursor.start_us + cursor.duration_us, s.end.end_us, "open until the session ended");
}

#[tokio::test]
async fn shutdown_ends_live_sessions_and_stops_accepting() {
    let mut proxy = Proxy::start().await;
    let (client, connection) = proxy.connect().await;
    client.simple_query("select 1").await.unwrap();
    let (id, _) = proxy.started_session().await;

    let before = gatehouse_connector::event::now_us();
    proxy.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(6), &mut proxy.task).await.unwrap().unwrap().unwrap();
    let after = gatehouse_connector::event::now_us();

    let error = connection.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&error), "57P01", "{error}");
    assert!(error.as_db_error().unwrap().message().contains("shutting down"), "{error:?}");
    let s = proxy.ended_session().await;
    assert_eq!((s.id.as_str(), s.end.reason), (id.as_str(), EndReason::Shutdown));
    assert!((before..=after).contains(&s.end.end_us));
    assert!(TcpStream::connect(proxy.addr).await.is_err(), "still accepting after shutdown");
    assert_eq!(proxy.counter(|m| &m.connections_active), 0);
}

/// With a drain, a shutdown refuses new clients (57P03) and lets open sessions go on: one that
/// ends on its own is recorded as the client's end, one still open when the drain runs out is
/// ended then, as without one.
#[tokio::test]
async fn a_drain_lets_open_sessions_finish_and_refuses_new_ones() {
    let drain = Duration::from_secs(2);
    let mut proxy = Proxy::start_with_drain(drain).await;
    let (leaving, leaving_connection) = proxy.connect().await;
    let (staying, staying_connection) = proxy.connect().await;
    leaving.simple_query("select 'leaving'").await.unwrap();
    staying.simple_query("select 'staying'").await.unwrap();

    let asked = Instant::now();
    proxy.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = proxy.config().connect(NoTls).await.map(drop).unwrap_err();
    assert_eq!(sqlstate(&refused), "57P03", "{refused}");
    assert!(refused.as_db_error().unwrap().message().contains("shutting down"), "{refused:?}");
    leaving.simple_query("select 'still served'").await.unwrap();
    drop(leaving);
    leaving_connection.await.unwrap().unwrap();

    tokio::time::timeout(drain + Duration::from_secs(6), &mut proxy.task).await.unwrap().unwrap().unwrap();
    assert!(asked.elapsed() >= drain, "the open session was given the drain: {:?}", asked.elapsed());
    let error = staying_connection.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&error), "57P01", "{error}");
    let mut ends = [proxy.ended_session().await, proxy.ended_session().await];
    ends.sort_by_key(|s| s.texts().len());
    assert_eq!(ends[0].texts(), ["select 'staying'"]);
    assert_eq!(ends[0].end.reason, EndReason::Shutdown);
    assert_eq!(ends[1].texts(), ["select 'leaving'", "select 'still served'"]);
    assert_eq!(ends[1].end.reason, EndReason::Client);
    assert_eq!(proxy.counter(|m| &m.connections_refused_total), 1);
}

/// Asked again to stop (a second Ctrl-C or SIGTERM), a draining proxy ends its sessions at
/// once rather than wait out the drain.
#[tokio::test]
async fn a_drain_cut_short_ends_the_open_sessions_at_once() {
    let mut proxy = Proxy::start_with_drain(Duration::from_secs(600)).await;
    let (client, connection) = proxy.connect().await;
    client.simple_query("select 'staying'").await.unwrap();
    proxy.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!proxy.task.is_finished(), "the drain holds the session open");
    let asked = Instant::now();
    proxy.end_drain.cancel();
    tokio::time::timeout(Duration::from_secs(10), &mut proxy.task).await.unwrap().unwrap().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(10));
    let error = connection.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&error), "57P01", "{error}");
    assert_eq!(proxy.ended_session().await.end.reason, EndReason::Shutdown);
}

#[tokio::test]
async fn tls_for_psql_with_sslmode_require_and_n_without_a_certificate() {
    let (server_tls, _, _dir) = tls_pair();
    let mut proxy = Proxy::start_with(Some(server_tls), proxy_harness::UPSTREAM).await;
    let out = tokio::process::Command::new("psql")
        .arg(format!("{} sslmode=require", proxy.conninfo()))
        .args(["-X", "-A", "-t", "-c", "\\conninfo", "-c", "select 'over tls'"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("SSL connection (protocol: TLSv1.3"), "{stdout}");
    assert!(stdout.contains("over tls"), "{stdout}");
    assert_eq!(proxy.ended_session().await.texts(), ["select 'over tls'"]);

    // Without a certificate: `N`, so sslmode=require fails and sslmode=prefer goes on in clear.
    let mut proxy = Proxy::start().await;
    let out = tokio::process::Command::new("psql")
        .arg(format!("{} sslmode=require", proxy.conninfo()))
        .args(["-X", "-c", "select 1"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not support SSL"), "{out:?}");
    let out = tokio::process::Command::new("psql")
        .arg(format!("{} sslmode=prefer gssencmode=prefer", proxy.conninfo()))
        .args(["-X", "-A", "-t", "-c", "select 'in clear'"])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "in clear", "{out:?}");
    assert_eq!(proxy.ended_session().await.texts(), ["select 'in clear'"]);

    // GSSENCRequest gets `N` too, then the client may carry on.
    let mut raw = Raw::connect(proxy.addr).await;
    let mut gss = BytesMut::new();
    Startup::GssEnc.encode(&mut gss);
    raw.send(&gss).await;
    assert_eq!(raw.stream.read_u8().await.unwrap(), b'N');
    raw.startup().await;
    assert_eq!(raw.query("select 'after gss'").await, ["after gss"]);
}

#[tokio::test]
async fn garbage_and_bad_frames_end_only_their_own_session() {
    let mut proxy = Proxy::start().await;
    let (good, _connection) = proxy.connect().await;
    good.simple_query("select 1").await.unwrap();

    // Not PostgreSQL at all: counted, so that an operator sees a scanner.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_protocol_violation(&mut raw).await;
    eventually("the startup failure counted", || async { proxy.counter(|m| &m.startup_failures_total) == 1 }).await;

    // Protocols 1.0 and 2.0: refused in PostgreSQL's words, in their own format, as PostgreSQL
    // 15 refuses them (found by a review: a v3 ErrorResponse, which such a client cannot read).
    for major in [1, 2] {
        let mut raw = Raw::connect(proxy.addr).await;
        raw.send(&[0, 0, 0, 8, 0, major, 0, 0]).await;
        let mut answer = Vec::new();
        raw.stream.read_to_end(&mut answer).await.unwrap();
        let expected = format!("EFATAL:  unsupported frontend protocol {major}.0: server supports 3.0 to 3.0\n\0");
        assert_eq!(String::from_utf8_lossy(&answer), expected);
    }
    // A later one (4.0), in protocol 3's.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(b"\0\0\0\x08\0\x04\0\0").await;
    let error = raw.recv().await.expect("closed without an error").decode::<ErrorResponse>().unwrap();
    assert_eq!(error.code(), Some("0A000"), "{error:?}");
    assert_eq!(error.message(), Some("unsupported frontend protocol 4.0: server supports 3.0 to 3.0"));

    // Unencrypted bytes behind an SSLRequest, before its answer: answered first (`N`, no
    // certificate here), then refused, as PostgreSQL does.
    let mut raw = Raw::connect(proxy.addr).await;
    let mut packet = ssl_request();
    packet.extend_from_slice(b"Q\0\0\0\x0dselect 1\0");
    raw.send(&packet).await;
    let mut answer = [0u8; 1];
    raw.stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"N");
    let error = raw.error().await;
    assert_eq!(error.code(), Some("08P01"));
    assert_eq!(error.message(), Some("received unencrypted data after SSL request"));

    // After startup: a length that cannot be right is refused at once, without waiting for a
    // body that will never come (a Sync of 50 MB, as PostgreSQL decides); a negative one too;
    // a type byte no client sends (with a 1 GiB length, or an SSLRequest sent late); and a
    // frame cut short by the close.
    let late_ssl = ssl_request();
    for bad in [
        &b"Q\x7f\xff\xff\xff"[..],
        b"S\x02\xfa\xf0\x80",
        b"Q\xff\xff\xff\xfe",
        b"d\0\0\0\x02",
        b"\x01\x3f\xff\xff\xff",
        &late_ssl,
    ] {
        let mut raw = Raw::connect(proxy.addr).await;
        raw.startup().await;
        let started = Instant::now();
        raw.send(bad).await;
        assert_protocol_violation(&mut raw).await;
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // A type byte no client sends is named in PostgreSQL's words.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    raw.send(b"\x01\0\0\0\x04").await;
    let error = raw.error().await;
    assert_eq!((error.code(), error.message()), (Some("08P01"), Some("invalid frontend message type 1")));
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    raw.send(b"Q\0\0\0\x20select").await;
    raw.stream.shutdown().await.unwrap();
    assert_protocol_violation(&mut raw).await;

    // The first session is untouched.
    let rows = good.simple_query("select 2").await.unwrap();
    assert_eq!(rows.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))).count(), 1);
    for _ in 0..8 {
        let s = proxy.ended_session().await;
        assert_eq!(s.end.reason, EndReason::Error);
        assert!(s.statements.is_empty());
    }
    assert_eq!(proxy.counter(|m| &m.errors_total), 8);
    assert_eq!(proxy.live.len(), 1);
}

/// A client's statements followed by a message that cannot be read: the database runs them
/// (and commits them) before it reads that message, so they are recorded with what really
/// happened, and the client hears their answers before the FATAL, as directly. Sent before the
/// login completed (behind the startup packet), they wait for it, and the session that runs
/// them is recorded: none may run unrecorded (found by a review: such a write left no trace).
#[tokio::test]
async fn statements_before_an_unreadable_message_run_and_are_recorded() {
    let mut proxy = Proxy::start().await;
    let direct = direct().await;
    let table = unique("gh_unreadable");
    direct.batch_execute(&format!("create table {table} (tag text)")).await.unwrap();
    let query = |sql: &str| {
        let mut buf = BytesMut::new();
        gatehouse_pgwire::frontend::Query::new(sql).encode(&mut buf);
        buf
    };
    let startup =
        StartupMessage::new(PROTOCOL_3_0, vec![("user".into(), "postgres".into()), ("database".into(), "test".into())])
            .unwrap();
    let insert = |tag: &str| format!("insert into {table} select '{tag}' from pg_sleep(0.2)");
    let garbage = b"\0\0\0\0\x08\0\0\0";

    // After the login, and behind the startup packet, in one write each.
    let mut after = Raw::connect(proxy.addr).await;
    after.startup().await;
    let mut behind = Raw::connect(proxy.addr).await;
    let mut bytes = BytesMut::from(startup.frame().as_ref());
    bytes.extend_from_slice(&query(&insert("behind")));
    bytes.extend_from_slice(garbage);
    behind.send(&bytes).await;
    let mut bytes = query(&insert("after"));
    bytes.extend_from_slice(garbage);
    after.send(&bytes).await;

    for raw in [&mut after, &mut behind] {
        let mut tags = Vec::new();
        while let Some(msg) = raw.recv().await {
            tags.push(msg.tag());
        }
        // The login's messages first, for the one behind the startup packet.
        let answers: Vec<u8> = tags.iter().copied().skip_while(|&t| t != b'C').collect();
        assert_eq!(answers, b"CZE", "the answer, then the FATAL: {:?}", String::from_utf8_lossy(&tags));
    }
    let mut tags = Vec::new();
    for _ in 0..2 {
        let session = proxy.ended_session().await;
        assert_eq!(session.end.reason, EndReason::Error);
        let [statement] = &session.statements[..] else { panic!("{:?}", session.statements) };
        assert_eq!((statement.sqlstate.as_str(), statement.rows_changed), ("", 1), "{statement:?}");
        assert!(statement.duration_us >= 200_000, "{statement:?}");
        tags.push(statement.text.clone());
    }
    tags.sort();
    assert_eq!(tags, [insert("after"), insert("behind")]);
    let rows = direct.query(&format!("select tag from {table} order by tag"), &[]).await.unwrap();
    let stored: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, ["after", "behind"]);
    direct.batch_execute(&format!("drop table {table}")).await.unwrap();

    // Extended: every answer owed comes before the FATAL, errors and ReadyForQuery included
    // (a review found a failed Parse's error lost, and so unrecorded, and a Sync's
    // ReadyForQuery dropped at times).
    let parse_only = frame(b'P', b"\0select * from gh_no_such_table\0\0\0");
    let failing = [&extended("select 1/0")[..], &frame(b'S', b"")].concat();
    for (bytes, expected, sqlstate) in [(parse_only, &b"EE"[..], "42P01"), (failing, b"1EZE", "22012")] {
        let mut raw = Raw::connect(proxy.addr).await;
        raw.startup().await;
        raw.send(&[&bytes[..], &garbage[..]].concat()).await;
        let mut tags = Vec::new();
        while let Some(msg) = raw.recv().await {
            tags.push(msg.tag());
        }
        assert_eq!(tags, expected, "{:?}", String::from_utf8_lossy(&tags));
        let session = proxy.ended_session().await;
        let [statement] = &session.statements[..] else { panic!("{:?}", session.statements) };
        assert_eq!(statement.sqlstate, sqlstate, "{statement:?}");
    }
}

/// A statement larger than a login may send (128 KiB), sent behind the startup packet, waits
/// for the login and runs, as directly: the login's limit is for its own messages (found by a
/// review: it ended the connection after AuthenticationOk). Also when it follows a smaller one.
#[tokio::test]
async fn a_large_statement_behind_the_startup_packet_runs_after_the_login() {
    let mut proxy = Proxy::start().await;
    let startup =
        StartupMessage::new(PROTOCOL_3_0, vec![("user".into(), "postgres".into()), ("database".into(), "test".into())])
            .unwrap();
    let large = format!("select length('{}')", "a".repeat(200_000));
    for statements in [vec![large.clone()], vec!["select 1".to_owned(), large.clone()]] {
        let mut bytes = BytesMut::from(startup.frame().as_ref());
        for sql in &statements {
            gatehouse_pgwire::frontend::Query::new(sql).encode(&mut bytes);
        }
        Terminate.encode(&mut bytes);
        let mut raw = Raw::connect(proxy.addr).await;
        raw.send(&bytes).await;
        let mut tags = Vec::new();
        let mut values = Vec::new();
        while let Some(msg) = raw.recv().await {
            if msg.tag() == b'D' {
                values.push(String::from_utf8_lossy(&msg.frame()[11..]).into_owned());
            }
            tags.push(msg.tag());
        }
        assert!(!tags.contains(&b'E'), "{:?}", String::from_utf8_lossy(&tags));
        assert_eq!(values.last().map(String::as_str), Some("200000"), "{values:?}");
        let session = proxy.ended_session().await;
        let texts: Vec<&str> = session.statements.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, statements, "recorded in the session that ran them");
    }
}

#[tokio::test]
async fn large_messages_share_a_memory_budget_and_give_it_back() {
    const MIB: usize = 1024 * 1024;
    let mut proxy = Proxy::start_with_large_message_budget(8 * MIB, LARGE_MESSAGE_STALL).await;

    // A client holds 6 MiB of the budget with a statement it has not finished sending: 5 MiB
    // of it came, more than the quarter (and 4 MiB) that gets a message charged whole.
    let mut holder = Raw::connect(proxy.addr).await;
    holder.startup().await;
    let len = i32::try_from(6 * MIB).unwrap();
    let mut partial = vec![b'Q'];
    partial.extend_from_slice(&len.to_be_bytes());
    partial.resize(5 * MIB, b' ');
    holder.send(&partial).await;

    // A 3 MB row from the database does not fit beside it: that session ends, with
    // PostgreSQL's out_of_memory, and the connector carries on.
    let (client, _connection) = proxy.connect().await;
    let eventually_refused = async {
        loop {
            match client.simple_query("select repeat('x', 3000000)").await {
                Err(error) => break error,
                // The holder's bytes may not all have arrived yet.
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    let error = tokio::time::timeout(PATIENCE, eventually_refused).await.expect("never refused");
    assert_eq!(sqlstate(&error), "53200", "{error:?}");

    // Nor does a 3 MB query from another client: refused before it is whole, and recorded.
    let mut sender = Raw::connect(proxy.addr).await;
    sender.startup().await;
    let mut query = vec![b'Q'];
    query.extend_from_slice(&i32::try_from(3 * MIB).unwrap().to_be_bytes());
    query.resize(64 * 1024, b' ');
    sender.send(&query).await;
    let error = sender.error().await;
    assert_eq!(error.code(), Some("53200"), "{error:?}");

    // Once the holder goes, its share comes back.
    drop(holder);
    let (client, _connection) = proxy.connect().await;
    let fits = async {
        loop {
            if client.simple_query("select repeat('x', 3000000)").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, fits).await.expect("the budget never came back");
    let ended = [proxy.ended_session().await, proxy.ended_session().await, proxy.ended_session().await];
    assert!(ended.iter().all(|s| s.end.reason == EndReason::Error), "{ended:?}");
    let refused: Vec<(&str, &str)> =
        ended.iter().flat_map(|s| &s.statements).map(|st| (st.text.as_str(), st.sqlstate.as_str())).collect();
    let query = format!(
        "-- a query of {} bytes, refused before it was whole: over the connector's memory for large messages",
        3 * MIB + 1
    );
    assert!(refused.contains(&("select repeat('x', 3000000)", "53200")), "{refused:?}");
    assert!(refused.contains(&(query.as_str(), "53200")), "{refused:?}");
}

/// A client that stops sending a message holding some of the large-message budget holds it
/// from every other connection: after a while without a byte of it, its session is ended and
/// the memory comes back (found by a review: one stalled client refused every other large
/// message for as long as it liked). One that keeps sending, however slowly, goes on.
#[tokio::test]
async fn a_client_that_stops_sending_a_large_message_gives_its_memory_back() {
    const MIB: usize = 1024 * 1024;
    let mut proxy = Proxy::start_with_large_message_budget(8 * MIB, Duration::from_secs(1)).await;
    let partial_query = |len: usize, sent: usize| {
        let mut bytes = vec![b'Q'];
        bytes.extend_from_slice(&i32::try_from(len).unwrap().to_be_bytes());
        bytes.extend_from_slice(b"select '");
        bytes.resize(sent, b'x');
        bytes
    };

    // Slow but steady: 5 MiB of 6, then the rest in pieces, each within the patience.
    let mut steady = Raw::connect(proxy.addr).await;
    steady.startup().await;
    let len = 6 * MIB;
    steady.send(&partial_query(len, 5 * MIB)).await;
    // The type byte is not in the length; the text ends with `'` and a NUL.
    let rest = len + 1 - 5 * MIB - 2;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        steady.send(&vec![b'x'; rest / 4]).await;
    }
    steady.send(&vec![b'x'; rest - 4 * (rest / 4)]).await;
    steady.send(b"'\0").await;
    let mut tags = Vec::new();
    while let Some(msg) = steady.recv().await {
        tags.push(msg.tag());
        if msg.tag() == b'Z' {
            break;
        }
    }
    assert_eq!(tags, b"TDCZ", "answered in full");
    drop(steady);
    let ended = proxy.ended_session().await;
    assert_eq!((ended.statements.len(), ended.end.reason), (1, EndReason::Client), "{ended:?}");

    // Stalled: 5 MiB of 6, then nothing.
    let mut stalled = Raw::connect(proxy.addr).await;
    stalled.startup().await;
    stalled.send(&partial_query(len, 5 * MIB)).await;
    let started = Instant::now();
    let error = stalled.error().await;
    assert_eq!(error.code(), Some("08P01"), "{error:?}");
    assert!(error.message().unwrap_or_default().contains("sent nothing of its message for 1 s"), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(stalled.recv().await.is_none(), "closed");

    // Its share is back: a 3 MB row fits.
    let (client, _connection) = proxy.connect().await;
    client.simple_query("select repeat('x', 3000000)").await.unwrap();
    let ended = proxy.ended_session().await;
    assert_eq!(ended.end.reason, EndReason::Error, "{:?}", ended.end);
}

async fn assert_protocol_violation(raw: &mut Raw<TcpStream>) {
    let msg = raw.recv().await.expect("closed without an error");
    assert_eq!(msg.tag(), b'E');
    let error = msg.decode::<ErrorResponse>().unwrap();
    assert_eq!((error.code(), error.severity()), (Some("08P01"), Some("FATAL")), "{error:?}");
    assert!(raw.recv().await.is_none(), "still open after a FATAL");
}

/// A message of type `tag`.
fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    [&[tag][..], &(body.len() as u32 + 4).to_be_bytes(), body].concat()
}

/// `sql` run with the extended protocol, unnamed, without a Sync: Parse, Bind and Execute.
fn extended(sql: &str) -> Vec<u8> {
    let parse = [b"\0", sql.as_bytes(), b"\0\0\0"].concat();
    [frame(b'P', &parse), frame(b'B', b"\0\0\0\0\0\0\0\0"), frame(b'E', b"\0\0\0\0\0")].concat()
}

/// How many rows `table` holds, as the database sees it now.
async fn rows_in(direct: &tokio_postgres::Client, table: &str) -> i64 {
    direct.query_one(&format!("select count(*) from {table}"), &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_statement_the_client_walks_away_from_is_recorded_as_it_ended() {
    let mut proxy = Proxy::start().await;
    let table = unique("gh_walked");
    let direct = direct().await;
    direct.simple_query(&format!("create table {table} (x int)")).await.unwrap();

    // The client sends a statement and Terminate at once, and goes: PostgreSQL still runs
    // (and commits) the statement, and the record says so.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    let mut bytes = query_frame(&format!("insert into {table} select 1 from pg_sleep(0.3)"));
    bytes.extend_from_slice(b"X\0\0\0\x04");
    raw.send(&bytes).await;
    drop(raw);

    let s = proxy.ended_session().await;
    assert_eq!(s.end.reason, EndReason::Client);
    // Its real outcome: it succeeded (an insert sends no rows).
    assert_eq!((s.statements[0].rows, s.statements[0].sqlstate.as_str()), (0, ""), "{:?}", s.statements);
    assert!(s.statements[0].duration_us >= 300_000);
    let count = rows_in(&direct, &table).await;
    assert_eq!(count, 1, "the insert committed");
    direct.simple_query(&format!("drop table {table}")).await.unwrap();

    // A client that crashes (no Terminate) while its statement runs: the statement's outcome
    // is awaited as long as the database runs it, and the session ends with it.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    raw.send(&query_frame("select pg_sleep(2.5)")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(raw);
    let s = proxy.ended_session().await;
    assert_eq!((s.end.reason, s.statements[0].sqlstate.as_str(), s.statements[0].rows), (EndReason::Client, "", 1));
    assert!(s.statements[0].duration_us >= 2_500_000, "{:?}", s.statements);
    assert!(s.end.end_us >= s.statements[0].start_us + s.statements[0].duration_us);

    // An extended exchange the client left before its Sync: the database rolls it back as it
    // reads the end of the client's messages (the connector passes that end on), and the
    // session ends then rather than waiting for a Sync that never comes.
    let table = unique("gh_unsynced");
    direct.simple_query(&format!("create table {table} (x int)")).await.unwrap();
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    let unsynced = [extended(&format!("insert into {table} values (1)")), frame(b'H', b"")].concat();
    raw.send(&unsynced).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(raw);
    let s = proxy.ended_session().await;
    assert_eq!(s.end.reason, EndReason::Client);
    let count = rows_in(&direct, &table).await;
    assert_eq!(count, 0, "rolled back");
    direct.simple_query(&format!("drop table {table}")).await.unwrap();

    // A client killed with answers unread resets its connection: the database (directly, it
    // would lose what it had not read) runs none of what is queued, its pipelined COMMIT
    // included, and the transaction is rolled back.
    let table = unique("gh_reset");
    direct.simple_query(&format!("create table {table} (x int)")).await.unwrap();
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    let mut pipeline = query_frame("begin");
    for sql in [format!("insert into {table} values (1)"), "select pg_sleep(0.5)".to_owned(), "commit".to_owned()] {
        pipeline.extend_from_slice(&query_frame(&sql));
    }
    raw.send(&pipeline).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.stream.set_zero_linger().unwrap();
    drop(raw);
    let s = proxy.ended_session().await;
    assert_eq!(s.end.reason, EndReason::Client);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let count = rows_in(&direct, &table).await;
    assert_eq!(count, 0, "rolled back, as it would be directly");
    direct.simple_query(&format!("drop table {table}")).await.unwrap();

    // A client that resets its connection while its one statement runs: the database finishes
    // it, as directly, and the record says so.
    direct.simple_query(&format!("create table {table} (x int)")).await.unwrap();
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    raw.send(&query_frame(&format!("insert into {table} select 1 from pg_sleep(0.5)"))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.stream.set_zero_linger().unwrap();
    drop(raw);
    let s = proxy.ended_session().await;
    assert_eq!((s.end.reason, s.statements[0].sqlstate.as_str()), (EndReason::Client, ""), "{:?}", s.statements);
    assert_eq!(rows_in(&direct, &table).await, 1, "committed");
    // Its statement and Terminate, then a reset while it runs: what it queued behind is lost,
    // as directly.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    let mut bytes = query_frame("select pg_sleep(0.5)");
    bytes.extend_from_slice(&query_frame(&format!("insert into {table} values (2)")));
    bytes.extend_from_slice(b"X\0\0\0\x04");
    raw.send(&bytes).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.stream.set_zero_linger().unwrap();
    drop(raw);
    proxy.ended_session().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(rows_in(&direct, &table).await, 1, "the queued insert never ran");
    direct.simple_query(&format!("drop table {table}")).await.unwrap();

    // A client that leaves during a large result: the database stops, as it would directly,
    // rather than run on for nobody.
    let marker = unique("gh_big");
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    // A cross join streams its rows (a set-returning function would gather them all first).
    let big = format!("select repeat('x', 1000) /* {marker} */ from pg_class a, pg_class b, pg_class c");
    raw.send(&query_frame(&big)).await;
    eventually("the query to run", || async { !backends_running(&direct, &marker).await.is_empty() }).await;
    drop(raw);
    eventually("the backend to stop", || async { backends_running(&direct, &marker).await.is_empty() }).await;
    let s = proxy.ended_session().await;
    assert_eq!((s.end.reason, s.statements[0].sqlstate.as_str()), (EndReason::Client, "08006"));

    // One terminated while the connector awaits its outcome: the backend is stopped.
    let marker = unique("gh_left");
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    raw.send(&query_frame(&format!("select pg_sleep(60) /* {marker} */"))).await;
    eventually("the query to run", || async { !backends_running(&direct, &marker).await.is_empty() }).await;
    let (id, _) = proxy.started_session().await;
    drop(raw);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let termination = Termination::Requested { termination_id: "t_left".into(), reason: String::new() };
    assert!(proxy.live.terminate(&id, termination));
    eventually("the backend to go", || async { backends_running(&direct, &marker).await.is_empty() }).await;
    let s = proxy.ended_session().await;
    assert_eq!((s.end.reason, s.statements[0].sqlstate.as_str()), (EndReason::Terminated, "57P01"));
}

/// Found by a review: a client that sends a pipeline (libpq's pipeline mode, asyncpg's
/// `executemany`: one Sync at its end) and leaves before its answers. PostgreSQL holds a
/// pipeline's answers until its Sync, so it runs the whole of it, COMMIT included, before a
/// write could tell it the client is gone; the connector, which has the database answer each
/// statement as it ends (to time it), was resetting it at the first answer, and it rolled
/// back. Unless a write comes sooner: a result past the database's 8 KiB send buffer.
#[tokio::test]
async fn a_pipeline_its_client_leaves_runs_as_far_as_it_would_directly() {
    let mut proxy = Proxy::start().await;
    let check = direct().await;
    let postgres: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    // A short result while it sleeps, or 50 KB of rows a millisecond apart.
    for (rows, pause, reset) in [(1, 0.3, false), (1, 0.3, true), (500, 0.001, true)] {
        let large = rows > 1;
        let mut counts = vec![];
        for addr in [postgres, proxy.addr] {
            let table = unique("gh_left_pipeline");
            check.simple_query(&format!("create table {table} (x int)")).await.unwrap();
            let mut raw = Raw::connect(addr).await;
            raw.startup().await;
            let statements = [
                "begin".to_owned(),
                format!("insert into {table} values (1)"),
                format!("select repeat('x', 100), pg_sleep({pause}) from generate_series(1, {rows})"),
                format!("insert into {table} values (2)"),
                "commit".to_owned(),
            ];
            let pipeline = [statements.iter().flat_map(|sql| extended(sql)).collect(), frame(b'S', b"")].concat();
            raw.send(&pipeline).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if reset {
                raw.stream.set_zero_linger().unwrap();
            }
            drop(raw);
            if addr == proxy.addr {
                let s = proxy.ended_session().await;
                let outcomes: Vec<_> = s.statements.iter().map(|s| s.sqlstate.as_str()).collect();
                let expected = if large { &["", "", "08006", "08006", "08006"] } else { &[""; 5] };
                assert_eq!(outcomes, expected, "{rows} rows, reset: {reset}");
            }
            // What the database did, once it is done.
            tokio::time::sleep(Duration::from_millis(800)).await;
            counts.push(rows_in(&check, &table).await);
            check.simple_query(&format!("drop table {table}")).await.unwrap();
        }
        let committed = if large { 0 } else { 2 };
        assert_eq!(counts, [committed, committed], "directly, then through the connector");
    }
}

/// A client that sends its queries and Terminate, or half-closes, in one write and then
/// reads: PostgreSQL answers the queries first, and so does the connector.
#[tokio::test]
async fn queries_sent_with_their_goodbye_are_still_answered() {
    let mut proxy = Proxy::start().await;
    for half_close in [false, true] {
        let mut raw = Raw::connect(proxy.addr).await;
        raw.startup().await;
        let mut bytes = query_frame("select 'one' from pg_sleep(0.2)");
        if !half_close {
            bytes.extend_from_slice(b"X\0\0\0\x04");
        }
        raw.send(&bytes).await;
        if half_close {
            raw.stream.shutdown().await.unwrap();
        }
        let mut tags = Vec::new();
        while let Some(msg) = raw.recv().await {
            tags.push(msg.tag());
        }
        assert_eq!(tags, b"TDCZ", "half-close: {half_close}");
        let s = proxy.ended_session().await;
        assert_eq!((s.end.reason, s.texts()), (EndReason::Client, vec!["select 'one' from pg_sleep(0.2)"]));
    }

    // A half-closed client that takes its time reading a large result gets all of it.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    raw.send(&query_frame("select g, repeat('x', 100) from generate_series(1, 300000) g")).await;
    raw.stream.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut rows, mut last) = (0, 0);
    while let Some(msg) = raw.recv().await {
        rows += usize::from(msg.tag() == b'D');
        last = msg.tag();
    }
    assert_eq!((rows, last), (300_000, b'Z'));
    let s = proxy.ended_session().await;
    assert_eq!((s.statements[0].rows, s.statements[0].sqlstate.as_str()), (300_000, ""));

    // A whole query, then half a message and the end: the query runs, as it would directly,
    // and is recorded so; the half message is refused.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    let mut bytes = query_frame("select 1 from pg_sleep(0.3)");
    bytes.extend_from_slice(&query_frame("select 2")[..7]);
    raw.send(&bytes).await;
    raw.stream.shutdown().await.unwrap();
    while raw.recv().await.is_some() {}
    let s = proxy.ended_session().await;
    assert_eq!((s.statements[0].rows, s.statements[0].sqlstate.as_str()), (1, ""), "{:?}", s.statements);
    assert!(s.statements[0].duration_us >= 300_000);

    // Startup, a query and Terminate in one write: the login completes and the session starts
    // while the connector waits for the query's outcome, so it is recorded like any other.
    let mut raw = Raw::connect(proxy.addr).await;
    let params = vec![("user".into(), "postgres".into()), ("database".into(), "test".into())];
    let mut bytes =
        gatehouse_pgwire::StartupMessage::new(gatehouse_pgwire::PROTOCOL_3_0, params).unwrap().frame().to_vec();
    bytes.extend_from_slice(&query_frame("select 'two'"));
    bytes.extend_from_slice(b"X\0\0\0\x04");
    raw.send(&bytes).await;
    let mut tags = Vec::new();
    while let Some(msg) = raw.recv().await {
        tags.push(msg.tag());
    }
    assert!(tags.ends_with(b"KZTDCZ"), "{:?}", String::from_utf8_lossy(&tags));
    let s = proxy.ended_session().await;
    assert_eq!((s.end.reason, s.texts()), (EndReason::Client, vec!["select 'two'"]));
}

#[tokio::test]
async fn unreachable_database_gets_a_clear_error_and_no_session() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut proxy = Proxy::start_with(None, &upstream).await;
    let mut raw = Raw::connect(proxy.addr).await;
    let params = vec![("user".into(), "postgres".into())];
    raw.send(gatehouse_pgwire::StartupMessage::new(gatehouse_pgwire::PROTOCOL_3_0, params).unwrap().frame()).await;
    let error = raw.error().await;
    assert_eq!(error.code(), Some("08006"));
    assert!(error.message().unwrap().contains("cannot reach the database"));
    assert!(!error.message().unwrap().contains(&upstream), "where the database is stays in the log");
    proxy.assert_quiet(Duration::from_millis(200)).await;
    assert_eq!(proxy.counter(|m| &m.upstream_connect_failures_total), 1, "an operator can alert on it");
}

/// Logs in as `postgres` to `test`, runs one query and says Terminate over `raw`; returns the
/// bytes sent and received, message by message.
async fn one_query_session<S: AsyncRead + AsyncWrite + Unpin>(raw: &mut Raw<S>) -> (usize, usize) {
    let params = vec![("user".into(), "postgres".into()), ("database".into(), "test".into())];
    let startup = StartupMessage::new(PROTOCOL_3_0, params).unwrap();
    let query = query_frame("select 1");
    let mut received = 0;
    for request in [&startup.frame()[..], &query] {
        raw.send(request).await;
        loop {
            let msg = raw.recv().await.expect("closed before ReadyForQuery");
            received += msg.frame().len();
            if msg.tag() == b'Z' {
                break;
            }
        }
    }
    let mut terminate = BytesMut::new();
    Terminate.encode(&mut terminate);
    raw.send(&terminate).await;
    (startup.frame().len() + query.len() + terminate.len(), received)
}

#[tokio::test]
async fn the_byte_counters_count_the_startup_phase_too() {
    let counted = |proxy: &Proxy| {
        (proxy.counter(|m| &m.bytes_from_clients_total) as usize, proxy.counter(|m| &m.bytes_to_clients_total) as usize)
    };
    let mut proxy = Proxy::start().await;
    let (sent, received) = one_query_session(&mut Raw::connect(proxy.addr).await).await;
    proxy.ended_session().await;
    assert_eq!(counted(&proxy), (sent, received), "every byte each way, the startup packet included");

    // Over TLS: the SSLRequest and its `S` too.
    let (server_tls, client_tls, _dir) = tls_pair();
    let mut proxy = Proxy::start_with(Some(server_tls), proxy_harness::UPSTREAM).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(&ssl_request()).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'S');
    let tls = tokio_rustls::TlsConnector::from(client_tls).connect("localhost".try_into().unwrap(), tcp).await;
    let (sent, received) = one_query_session(&mut Raw::new(tls.unwrap())).await;
    proxy.ended_session().await;
    assert_eq!(counted(&proxy), (ssl_request().len() + sent, 1 + received));
}

/// The connector's bound on the database's first answer to a login.
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Reads what the connector says to a client once the database has stopped answering: after
/// [`FIRST_ANSWER_TIMEOUT`], not before; checks that it is FATAL 08006, not naming `upstream`.
async fn assert_unanswered(raw: &mut Raw<TcpStream>, upstream: &str) {
    let started = Instant::now();
    let answer = tokio::time::timeout(FIRST_ANSWER_TIMEOUT + PATIENCE, raw.reader.read_message(&mut raw.stream));
    let msg = answer.await.expect("the client is answered in time").unwrap().expect("an answer, not a close");
    assert!(started.elapsed() >= FIRST_ANSWER_TIMEOUT - Duration::from_secs(1), "{:?}", started.elapsed());
    let error = msg.decode::<ErrorResponse>().unwrap();
    assert_eq!(error.code(), Some("08006"), "{error:?}");
    let message = error.message().unwrap();
    assert!(message.contains("no answer from the database within"), "{message}");
    assert!(!message.contains(upstream), "where the database is stays in the log: {message}");
}

/// Reads what the client sent until the connector closes the connection to the database.
async fn assert_let_go(database: &mut TcpStream) {
    let closed = tokio::time::timeout(PATIENCE, database.read_to_end(&mut Vec::new())).await;
    closed.expect("the connector lets go of the database").unwrap();
}

#[tokio::test]
async fn a_database_that_never_answers_the_startup_gets_the_client_a_08006_in_15_seconds() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = silent.local_addr().unwrap().to_string();
    let mut proxy = Proxy::start_with(None, &upstream).await;
    let mut raw = Raw::connect(proxy.addr).await;
    let params = vec![("user".into(), "postgres".into())];
    raw.send(StartupMessage::new(PROTOCOL_3_0, params).unwrap().frame()).await;
    let (mut database, _) = silent.accept().await.unwrap();

    assert_unanswered(&mut raw, &upstream).await;
    assert_let_go(&mut database).await;
    proxy.assert_quiet(Duration::from_millis(200)).await;
    assert_eq!(proxy.counter(|m| &m.upstream_connect_failures_total), 1, "an operator can alert on it");
}

#[tokio::test]
async fn the_clients_time_to_answer_a_password_request_is_not_the_databases() {
    let scripted = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = scripted.local_addr().unwrap().to_string();
    let proxy = Proxy::start_with(None, &upstream).await;
    let mut raw = Raw::connect(proxy.addr).await;
    let params = vec![("user".into(), "postgres".into())];
    raw.send(StartupMessage::new(PROTOCOL_3_0, params).unwrap().frame()).await;
    let mut database = Raw::new(scripted.accept().await.unwrap().0);
    database.reader.read_startup(&mut database.stream).await.unwrap();
    let mut ask = BytesMut::new();
    AuthenticationRequest::Md5Password { salt: [1, 2, 3, 4] }.encode(&mut ask);
    database.send(&ask).await;
    assert_eq!(raw.recv().await.unwrap().tag(), b'R');

    // A person types slowly: longer than the database may take.
    tokio::time::sleep(FIRST_ANSWER_TIMEOUT + Duration::from_secs(1)).await;
    let mut password = BytesMut::new();
    PasswordMessage::password("md5whatever").encode(&mut password);
    raw.send(&password).await;
    assert_eq!(database.recv().await.unwrap().tag(), b'p', "the login went on");
    // The database takes the password and finishes the login.
    let mut ok = BytesMut::new();
    AuthenticationRequest::Ok.encode(&mut ok);
    ok.extend_from_slice(b"Z\0\0\0\x05I");
    database.send(&ok).await;
    assert_eq!(raw.recv().await.unwrap().tag(), b'R');
    assert_eq!(raw.recv().await.unwrap().tag(), b'Z', "the login is over, and not refused");
    assert_eq!(proxy.counter(|m| &m.upstream_connect_failures_total), 0);
}

#[tokio::test]
async fn a_password_login_goes_on_while_the_report_queue_is_full() {
    // A full report queue holds back statements, not logins: a login reports nothing until it
    // succeeds, and a password left unread would run into the database's authentication_timeout.
    let hba = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
    let pg = tokio::task::spawn_blocking(move || proxy_harness::PrivateCluster::start(hba)).await.unwrap();
    pg.psql("create role gh_scram login password 'scram-secret'");
    let mut proxy = Proxy::start_with_report_bound(&pg.addr(), 0).await;
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(proxy.addr.port()).user("gh_scram").password("scram-secret").dbname("postgres");
    let (client, connection) = tokio::time::timeout(Duration::from_secs(5), config.connect(NoTls))
        .await
        .expect("the login is not held back")
        .unwrap();
    tokio::spawn(connection);
    let (_, start) = proxy.started_session().await;
    assert_eq!(start.username, "gh_scram");
    // Statements are: not read while the queue has no room.
    let query = tokio::spawn(async move { client.simple_query("select 1").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!query.is_finished(), "a statement read while the report queue is full");
}

#[tokio::test]
async fn md5_and_scram_authentication_flow_through_and_failed_logins_leave_no_session() {
    let hba = "local all all trust\n\
               host all gh_md5 127.0.0.1/32 md5\n\
               host all all 127.0.0.1/32 scram-sha-256\n";
    let pg = tokio::task::spawn_blocking(move || proxy_harness::PrivateCluster::start(hba)).await.unwrap();
    pg.psql("create role gh_scram login password 'scram-secret'");
    pg.psql("set password_encryption = 'md5'; create role gh_md5 login password 'md5-secret'");
    let mut proxy = Proxy::start_with(None, &pg.addr()).await;
    let port = proxy.addr.port();
    let login = |user: &str, password: &str| {
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(port).user(user).password(password).dbname("postgres");
        config
    };

    for user in ["gh_scram", "gh_md5"] {
        let Err(error) = login(user, "wrong").connect(NoTls).await else { panic!("{user} logged in") };
        assert_eq!(sqlstate(&error), "28P01", "{user}: {error:?}");
    }
    proxy.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(proxy.counter(|m| &m.database_login_refusals_total), 2, "counted, though no session");

    for (user, password) in [("gh_scram", "scram-secret"), ("gh_md5", "md5-secret")] {
        let (client, connection) = login(user, password).connect(NoTls).await.unwrap();
        tokio::spawn(connection);
        let who: String = client.query_one("select current_user::text", &[]).await.unwrap().get(0);
        assert_eq!(who, user);
        drop(client);
        let s = proxy.ended_session().await;
        assert_eq!((s.start.username.as_str(), s.start.database.as_str()), (user, "postgres"));
        assert_eq!(s.texts(), ["select current_user::text"]);
    }
}
