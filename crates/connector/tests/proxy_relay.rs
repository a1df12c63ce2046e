//! The relay and its recording, driven by real clients (tokio-postgres, psql) through the
//! proxy to the machine's PostgreSQL.

// Tests run on runtimes of their own, with tokio's time driver.
#![allow(clippy::disallowed_methods)]

mod proxy_harness;

use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use gatehouse_connector::event::EndReason;
use gatehouse_pgwire::{PROTOCOL_3_0, StartupMessage};
use proxy_harness::{Proxy, RESOURCE, Raw, direct, sqlstate, unique};
use tokio::io::AsyncWriteExt;
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

#[tokio::test]
async fn simple_and_extended_queries_are_recorded_with_rows_and_session_details() {
    let mut proxy = Proxy::start().await;
    let (client, connection) = proxy.connect().await;

    client.simple_query("create temp table t (x int)").await.unwrap();
    client.simple_query("insert into t values (1), (2), (3)").await.unwrap();
    let rows = client.query("select x from t where x > $1 order by x", &[&1i32]).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(client.execute("update t set x = x + 1", &[]).await.unwrap(), 3);
    let multi = client.simple_query("select 1; select 2 union all select 3").await.unwrap();
    assert_eq!(multi.iter().filter(|m| matches!(m, SimpleQueryMessage::Row(_))).count(), 3);
    drop(client);
    connection.await.unwrap().unwrap();

    let s = proxy.ended_session().await;
    assert_eq!(
        s.texts(),
        [
            "create temp table t (x int)",
            "insert into t values (1), (2), (3)",
            "select x from t where x > $1 order by x",
            "update t set x = x + 1",
            "select 1; select 2 union all select 3",
        ]
    );
    // Rows sent to the client: the insert and the update send none.
    assert_eq!(s.statements.iter().map(|s| s.rows).collect::<Vec<_>>(), [0, 0, 2, 0, 3]);
    assert!(s.statements.iter().all(|s| s.sqlstate.is_empty() && s.bytes_sent > 0 && s.duration_us >= 0));
    assert!(s.statements.windows(2).all(|w| w[0].start_us <= w[1].start_us));

    assert_eq!(s.start.resource_id, RESOURCE);
    assert_eq!((s.start.client_ip.as_str(), s.start.server_ip.as_str()), ("127.0.0.1", "127.0.0.1"));
    assert_eq!((s.start.username.as_str(), s.start.native_username.as_str()), ("postgres", "postgres"));
    assert_eq!((s.start.database.as_str(), s.start.application_name.as_str()), ("test", "gatehouse-test"));
    assert!(s.start.start_us <= s.statements[0].start_us);
    assert_eq!(s.end.reason, EndReason::Client);
    assert!(s.end.end_us >= s.statements[4].start_us + s.statements[4].duration_us);
    uuid::Uuid::parse_str(&s.id).unwrap();

    assert!(proxy.live.is_empty() && proxy.cancels.is_empty(), "a session ends everywhere");
    assert_eq!(proxy.counter(|m| &m.statements_total), 5);
    assert_eq!(proxy.counter(|m| &m.connections_total), 1);
    assert_eq!(proxy.counter(|m| &m.connections_active), 0);
    assert!(proxy.counter(|m| &m.bytes_to_clients_total) > 0 && proxy.counter(|m| &m.bytes_from_clients_total) > 0);
}

/// A statement is recorded without the passwords it sets, its literals read as the database
/// read them. Found by a review: with `standard_conforming_strings` on (the default), `'a\'` is
/// the whole password and the CREATE TABLE after it runs; it was recorded as part of the
/// password, read as it would be with the setting off, where a backslash escapes the quote.
#[tokio::test]
async fn passwords_are_redacted_as_the_database_reads_a_backslash() {
    let (role, table) = (unique("redacted_role"), unique("redacted_t"));
    let admin = direct().await;
    admin.simple_query(&format!("create role {role}")).await.unwrap();
    let mut proxy = Proxy::start().await;
    let (client, connection) = proxy.connect().await;
    // The database reads a query whole before it runs the SET at its end.
    let off = "set standard_conforming_strings = off";
    let evading = format!(r"alter role {role} password 'a\'; create temp table {table} (); select 'c'; {off}");
    client.simple_query(&evading).await.unwrap();
    let count = client.query_one(&format!("select count(*) from {table}"), &[]).await.unwrap();
    assert_eq!(count.get::<_, i64>(0), 0, "the table was created");
    client.simple_query(&format!(r"alter role {role} password 'ab\'S3cret42'")).await.unwrap();
    client.execute(&format!(r"alter role {role} password 'cd\'S3cret43'"), &[]).await.unwrap();
    drop(client);
    connection.await.unwrap().unwrap();
    admin.simple_query(&format!("drop role {role}")).await.unwrap();

    let s = proxy.ended_session().await;
    assert_eq!(
        s.texts(),
        [
            format!("alter role {role} password '[redacted]'; create temp table {table} (); select 'c'; {off}"),
            format!("select count(*) from {table}"),
            format!("alter role {role} password '[redacted]'"),
            format!("alter role {role} password '[redacted]'"),
        ]
    );
}

/// Found by a review: a connection string built up in SQL (as `dblink_connect` takes one) left
/// its password to the literal after it, which was recorded in clear.
#[tokio::test]
async fn a_password_built_up_in_sql_is_redacted() {
    let mut proxy = Proxy::start().await;
    let (client, connection) = proxy.connect().await;
    let conninfo = "host=127.0.0.1 dbname=test user=u password=";
    let built = [
        format!("select format('{conninfo}%s', 'SUPERSECRET50')"),
        format!("select '{conninfo}' || quote_literal('SUPERSECRET53')"),
        format!("select concat('{conninfo}', 'SUPERSECRET44')"),
    ];
    for sql in &built {
        let row = client.query_one(sql.as_str(), &[]).await.unwrap();
        assert!(row.get::<_, String>(0).contains("SUPERSECRET"), "the client gets what it asked for");
    }
    drop(client);
    connection.await.unwrap().unwrap();

    let s = proxy.ended_session().await;
    assert_eq!(
        s.texts(),
        [
            format!("select format('{conninfo}[redacted]', '[redacted]')"),
            format!("select '{conninfo}' || quote_literal('[redacted]')"),
            format!("select concat('{conninfo}', '[redacted]')"),
        ]
    );
}

/// PostgreSQL reads the first 63 bytes of a user name and logs in whoever that names: the
/// session is recorded with the role that logged in, not the 8 kB the client sent.
#[tokio::test]
async fn an_overlong_user_name_is_recorded_as_the_role_postgresql_reads() {
    let role = format!("{}{}", unique("long_role"), "r".repeat(63)).chars().take(63).collect::<String>();
    let admin = direct().await;
    admin.simple_query(&format!("create role {role} login")).await.unwrap();
    let mut proxy = Proxy::start().await;
    let mut config = proxy.config();
    config.user(format!("{role}{}", "x".repeat(8000))).dbname("test");
    let (client, connection) = config.connect(NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    let who = client.simple_query("select current_user").await.unwrap();
    drop(client);
    connection.await.unwrap().unwrap();
    admin.simple_query(&format!("drop role {role}")).await.unwrap();

    let Some(SimpleQueryMessage::Row(row)) = who.iter().find(|m| matches!(m, SimpleQueryMessage::Row(_))) else {
        panic!("{who:?}")
    };
    assert_eq!(row.get(0), Some(role.as_str()));
    let s = proxy.ended_session().await;
    assert_eq!((s.start.username.as_str(), s.start.native_username.as_str()), (role.as_str(), role.as_str()));
}

/// PostgreSQL takes startup parameters in any bytes (an `application_name` in LATIN1, a role
/// named in a LATIN1 database): through the connector a client gets what it gets directly,
/// and the session shows each byte that is not UTF-8 as `\xNN`.
#[tokio::test]
async fn startup_parameters_that_are_not_utf8_pass_as_they_do_directly() {
    fn startup(user: &[u8], application: &[u8]) -> Vec<u8> {
        let mut body = b"\0\x03\0\0user\0".to_vec();
        body.extend_from_slice(user);
        body.extend_from_slice(b"\0database\0test\0application_name\0");
        body.extend_from_slice(application);
        body.extend_from_slice(b"\0\0");
        let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        packet
    }
    async fn answers(addr: std::net::SocketAddr, user: &[u8]) -> Result<Vec<String>, String> {
        let mut raw = Raw::connect(addr).await;
        raw.send(&startup(user, b"caf\xe9")).await;
        loop {
            let msg = raw.recv().await.expect("closed during startup");
            match msg.tag() {
                b'E' => {
                    return Err(msg
                        .decode::<gatehouse_pgwire::backend::ErrorResponse>()
                        .unwrap()
                        .code()
                        .unwrap_or_default()
                        .to_owned());
                }
                b'Z' => return Ok(raw.query("select current_setting('application_name')").await),
                _ => {}
            }
        }
    }
    let mut proxy = Proxy::start().await;
    let postgres: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    for user in [&b"postgres"[..], b"j\xfcrgen"] {
        let directly = answers(postgres, user).await;
        assert_eq!(answers(proxy.addr, user).await, directly, "{}", String::from_utf8_lossy(user));
    }
    let s = proxy.ended_session().await;
    assert_eq!((s.start.username.as_str(), s.start.application_name.as_str()), ("postgres", "caf\\xe9"));
}

#[tokio::test]
async fn pipelined_extended_queries_are_recorded_in_order_and_an_error_only_fails_its_own() {
    let mut proxy = Proxy::start().await;
    let (client, _connection) = proxy.connect().await;
    let add = client.prepare("select $1::int + 1").await.unwrap();
    let div = client.prepare("select 10 / $1::int").await.unwrap();
    let series = client.prepare("select generate_series(1, $1::int)").await.unwrap();

    // Polled together, these go out back to back before any answer is read.
    let (a, b, c, d) = tokio::join!(
        client.query(&add, &[&1i32]),
        client.query(&div, &[&0i32]),
        client.query(&series, &[&4i32]),
        client.query_one(&add, &[&41i32]),
    );
    assert_eq!(a.unwrap()[0].get::<_, i32>(0), 2);
    assert_eq!(sqlstate(&b.unwrap_err()), "22012");
    assert_eq!(c.unwrap().len(), 4);
    assert_eq!(d.unwrap().get::<_, i32>(0), 42);
    drop(client);

    let s = proxy.ended_session().await;
    let got: Vec<(&str, i64, &str)> =
        s.statements.iter().map(|s| (s.text.as_str(), s.rows, s.sqlstate.as_str())).collect();
    assert_eq!(
        got,
        [
            ("select $1::int + 1", 1, ""),
            ("select 10 / $1::int", 0, "22012"),
            ("select generate_series(1, $1::int)", 4, ""),
            ("select $1::int + 1", 1, ""),
        ]
    );
}

/// postgres.js sends each query as Parse, Bind, Execute, Sync in one write: a query that fails
/// at its Parse or its Bind is recorded before the queries sent after it, in time as in order.
#[tokio::test]
async fn a_pipelined_query_that_fails_before_it_runs_keeps_its_place() {
    let mut proxy = Proxy::start().await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    let queries = [
        "select 1",
        "select * from no_such_table_here",
        "select 'x'::int",
        "select 4",
        "create temp table t as select generate_series(1, 6)",
    ];
    let mut batch = BytesMut::new();
    for sql in queries {
        frame(b'P', format!("\0{sql}\0\0\0").as_bytes(), &mut batch);
        frame(b'B', b"\0\0\0\0\0\0\0\0", &mut batch);
        frame(b'E', b"\0\0\0\0\0", &mut batch);
        frame(b'S', b"", &mut batch);
    }
    raw.send(&batch).await;
    for _ in queries {
        while raw.recv().await.unwrap().tag() != b'Z' {}
    }
    drop(raw);
    let mut s = proxy.ended_session().await;
    s.statements.sort_by_key(|s| s.start_us);
    let got: Vec<(&str, &str, i64)> =
        s.statements.iter().map(|s| (s.text.as_str(), s.sqlstate.as_str(), s.rows_changed)).collect();
    assert_eq!(
        got,
        [
            (queries[0], "", 0),
            (queries[1], "42P01", 0),
            (queries[2], "22P02", 0),
            (queries[3], "", 0),
            // Its tag is `SELECT 6`, and it sent no rows: it wrote them.
            (queries[4], "", 6),
        ]
    );
}

#[tokio::test]
async fn an_error_statement_records_its_sqlstate_and_the_session_goes_on() {
    let mut proxy = Proxy::start().await;
    let (client, _connection) = proxy.connect().await;
    let missing = unique("gh_missing");
    let simple = client.simple_query(&format!("select * from {missing}")).await.unwrap_err();
    assert_eq!(sqlstate(&simple), "42P01");
    let extended = client.query("select 1 / 0", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&extended), "22012");
    client.simple_query("select 1").await.unwrap();
    drop(client);

    let s = proxy.ended_session().await;
    let got: Vec<(String, &str)> = s.statements.iter().map(|s| (s.text.clone(), s.sqlstate.as_str())).collect();
    assert_eq!(
        got,
        [(format!("select * from {missing}"), "42P01"), ("select 1 / 0".into(), "22012"), ("select 1".into(), "")]
    );
}

#[tokio::test]
async fn psql_script_with_copy_in_and_out() {
    let mut proxy = Proxy::start().await;
    let table = unique("gh_copy");
    let dir = tempfile::tempdir().unwrap();
    let input: String = (1..=500).map(|i| format!("{i},name {i}\n")).collect();
    std::fs::write(dir.path().join("in.csv"), &input).unwrap();
    let script = format!(
        "create table {table} (id int primary key, name text);\n\
         \\copy {table} from 'in.csv' csv\n\
         select count(*) from {table};\n\
         \\copy (select * from {table} order by id) to 'out.csv' csv\n\
         drop table {table};\n"
    );
    std::fs::write(dir.path().join("script.sql"), script).unwrap();

    let out = tokio::process::Command::new("psql")
        .arg(proxy.conninfo())
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "script.sql"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "500"), "{out:?}");
    assert_eq!(std::fs::read_to_string(dir.path().join("out.csv")).unwrap(), input);

    // And a one-off -c.
    let out = tokio::process::Command::new("psql")
        .arg(proxy.conninfo())
        .args(["-X", "-A", "-t", "-c", "select 'via -c'"])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "via -c");

    let s = proxy.ended_session().await;
    assert_eq!(s.start.application_name, "psql");
    let got: Vec<(&str, i64)> = s.statements.iter().map(|s| (s.text.as_str(), s.rows)).collect();
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0], (format!("create table {table} (id int primary key, name text);").as_str(), 0));
    assert!(
        got[1].0.contains(&format!("{table} FROM STDIN")) || got[1].0.contains(&format!("{table} from STDIN")),
        "{got:?}"
    );
    // Rows sent to the client: none for the copy in, each row for the copy out.
    assert_eq!(got[1].1, 0);
    assert_eq!(got[2], (format!("select count(*) from {table};").as_str(), 1));
    assert!(got[3].0.to_lowercase().contains("to stdout"), "{got:?}");
    assert_eq!(got[3].1, 500);
    assert!(s.statements[3].bytes_sent >= input.len() as i64);
    assert_eq!(got[4], (format!("drop table {table};").as_str(), 0));

    let s = proxy.ended_session().await;
    assert_eq!(s.texts(), ["select 'via -c'"]);
    assert_eq!(s.end.reason, EndReason::Client);
}

/// Found by a review: a text over 1 MiB lost its middle, so statements hidden between two long
/// comments (psql sends `a \; b \; c` as one query) or literals ran and were not in the
/// transcript. What holds no SQL goes first now, and the statements stay.
#[tokio::test]
async fn statements_hidden_between_padding_stay_in_the_transcript() {
    let (victim, second, evil) = (unique("gh_victim"), unique("gh_victim"), unique("gh_evil"));
    let admin = direct().await;
    admin.batch_execute(&format!("create table {victim} (x int); create table {second} (x int)")).await.unwrap();
    let mut proxy = Proxy::start().await;
    let pad = "x".repeat(600_000);
    let dir = tempfile::tempdir().unwrap();
    let hidden = format!("drop table {victim}");
    let script = format!("select 1 /* {pad} */ \\; {hidden} \\; select 2 /* {pad} */;\n");
    std::fs::write(dir.path().join("hide.sql"), script).unwrap();
    let out = tokio::process::Command::new("psql")
        .arg(proxy.conninfo())
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "hide.sql"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));

    // Padding in string literals, from a driver.
    let (client, connection) = proxy.connect().await;
    let ddl = format!("drop table {second}; create role {evil} superuser; drop role {evil}");
    let pad = "y".repeat(700_000);
    client.simple_query(&format!("select '{pad}'; {ddl}; select '{pad}'")).await.unwrap();
    drop(client);
    connection.await.unwrap().unwrap();

    for hidden in [&hidden, &ddl] {
        let s = proxy.ended_session().await;
        let text = &s.statements[0].text;
        assert!(text.len() <= 1 << 20 && text.contains(hidden.as_str()), "{}", &text[..text.len().min(300)]);
        assert!(text.contains("… [Gatehouse cut ") && text.contains(" in all; SHA-256 of the whole: "));
    }
    let left = "select count(*) from pg_class where relname = any($1)";
    let left: i64 = admin.query_one(left, &[&vec![victim, second]]).await.unwrap().get(0);
    assert_eq!(left, 0, "the hidden statements ran");
}

#[tokio::test]
async fn statement_text_is_recorded_from_the_client_encoding() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let mut proxy = Proxy::start().await;
    // LATIN1 from the startup packet, then WIN1251 by SET: the server reports both.
    let out = tokio::process::Command::new("psql")
        .arg(proxy.conninfo())
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-c".as_ref(), OsStr::from_bytes(b"select 'caf\xe9'")])
        .args(["-c", "set client_encoding = 'WIN1251'"])
        .args(["-c".as_ref(), OsStr::from_bytes(b"select '\xcf\xf0\xe8\xe2\xe5\xf2'")])
        .env("PGCLIENTENCODING", "LATIN1")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.starts_with(b"caf\xe9\n"), "{out:?}");
    assert!(out.stdout.ends_with(b"\xcf\xf0\xe8\xe2\xe5\xf2\n"), "{out:?}");

    let s = proxy.ended_session().await;
    assert_eq!(s.texts(), ["select 'café'", "set client_encoding = 'WIN1251'", "select 'Привет'"]);
}

#[tokio::test]
async fn large_rows_pass_both_ways() {
    let mut proxy = Proxy::start().await;
    let (client, _connection) = proxy.connect().await;
    let big = "y".repeat(5 * 1024 * 1024);
    client.simple_query("create temp table big (v text)").await.unwrap();
    client.execute("insert into big values ($1)", &[&big]).await.unwrap();
    let row = client.query_one("select v, repeat('x', 8000000) from big", &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), big);
    assert_eq!(row.get::<_, &str>(1).len(), 8_000_000);
    drop(client);

    let s = proxy.ended_session().await;
    assert_eq!(s.statements[2].text, "select v, repeat('x', 8000000) from big");
    assert!(s.statements[2].bytes_sent > 13_000_000);
    assert!(proxy.counter(|m| &m.bytes_from_clients_total) > 5 * 1024 * 1024);
}

#[tokio::test]
async fn notifications_reach_a_listening_client() {
    let mut proxy = Proxy::start().await;
    let channel = unique("gh_chan");
    let (client, mut connection) = proxy.config().connect(NoTls).await.unwrap();
    let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            if let Ok(AsyncMessage::Notification(n)) = message {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    client.simple_query(&format!("listen {channel}")).await.unwrap();

    direct().await.simple_query(&format!("notify {channel}, 'hello'")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), notifications.recv()).await.unwrap().unwrap();
    assert_eq!(got, (channel.clone(), "hello".to_owned()));

    // The session still works after an unsolicited message.
    client.simple_query("select 1").await.unwrap();
    drop(client);
    let s = proxy.ended_session().await;
    assert_eq!(s.texts(), [format!("listen {channel}").as_str(), "select 1"]);
}

/// Appends a message of type `tag` to `batch`.
fn frame(tag: u8, body: &[u8], batch: &mut BytesMut) {
    batch.extend_from_slice(&[tag]);
    batch.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    batch.extend_from_slice(body);
}

/// libpq's pipeline mode, psycopg's `pipeline()` and asyncpg's `executemany` send many
/// statements before one Sync, and the database holds their answers back until it: each
/// statement is still recorded with its own time, not the first with the whole batch's.
/// Whether they come in one write (libpq, asyncpg) or each in its own (psycopg).
#[tokio::test]
async fn statements_in_one_extended_exchange_are_timed_each() {
    let mut proxy = Proxy::start().await;
    for separate_writes in [false, true] {
        let mut raw = Raw::connect(proxy.addr).await;
        raw.startup().await;
        let mut batch = BytesMut::new();
        for sql in ["select pg_sleep(0.3)", "select 2", "select pg_sleep(0.2)"] {
            frame(b'P', format!("\0{sql}\0\0\0").as_bytes(), &mut batch);
            frame(b'B', b"\0\0\0\0\0\0\0\0", &mut batch);
            frame(b'E', b"\0\0\0\0\0", &mut batch);
            if separate_writes {
                raw.send(&batch.split()).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        frame(b'S', b"", &mut batch);
        raw.send(&batch).await;
        let mut completions = 0;
        loop {
            match raw.recv().await.unwrap().tag() {
                b'C' => completions += 1,
                b'Z' => break,
                _ => {}
            }
        }
        assert_eq!(completions, 3);
        drop(raw);
        let s = proxy.ended_session().await;
        let timing: Vec<(i64, i64)> = s.statements.iter().map(|s| (s.start_us, s.duration_us)).collect();
        let [(first_start, first), (second_start, second), (third_start, third)] = timing[..] else {
            panic!("three statements: {timing:?}")
        };
        let case = if separate_writes { "each in its own write" } else { "in one write" };
        assert!((300_000..500_000).contains(&first), "{case}: the first is timed alone: {timing:?}");
        assert!(second_start >= first_start + 300_000, "{case}: the second starts when the first ended: {timing:?}");
        assert!(second < 100_000, "{case}: {timing:?}");
        // Timed from when the connector read the second's end, which on a busy machine is a few
        // milliseconds after the database began the third: a little under its 0.2 s.
        assert!(third >= 150_000 && third_start >= second_start, "{case}: {timing:?}");
    }
}

#[tokio::test]
async fn a_prepared_statement_replaced_out_of_sight_is_not_recorded_as_prepared() {
    // A DO block deallocates the client's prepared SELECT and prepares a DELETE under its
    // name; the transcript must not show the SELECT as what deleted the rows.
    let mut proxy = Proxy::start().await;
    let table = unique("victims");
    let direct = direct().await;
    direct.batch_execute(&format!("create table {table} as select generate_series(1, 5) as id")).await.unwrap();
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    let mut batch = BytesMut::new();
    frame(b'P', b"s1\0select 'harmless' as x\0\0\0", &mut batch);
    frame(b'S', b"", &mut batch);
    raw.send(&batch).await;
    while raw.recv().await.unwrap().tag() != b'Z' {}
    let swap = format!("deallocate s1; prepare s1 as delete from {table}");
    raw.query(&format!("do $$ begin execute '{swap}'; end $$")).await;
    let mut batch = BytesMut::new();
    frame(b'B', b"\0s1\0\0\0\0\0\0\0", &mut batch);
    frame(b'E', b"\0\0\0\0\0", &mut batch);
    frame(b'S', b"", &mut batch);
    raw.send(&batch).await;
    while raw.recv().await.unwrap().tag() != b'Z' {}
    drop(raw);
    let left: i64 = direct.query_one(&format!("select count(*) from {table}"), &[]).await.unwrap().get(0);
    direct.batch_execute(&format!("drop table {table}")).await.unwrap();
    assert_eq!(left, 0, "the rows were deleted");
    let s = proxy.ended_session().await;
    let ran = &s.statements[1].text;
    assert!(ran.starts_with("-- not what ran: the server answered DELETE 5."), "{ran}");
    assert!(ran.ends_with("prepared as:\nselect 'harmless' as x"), "{ran}");
}

#[tokio::test]
async fn large_statements_pipelined_behind_a_slow_one_are_held_only_in_part() {
    // 48 statements of 1 MiB behind a one-second sleep, in one extended exchange whose Sync
    // comes last: while the sleep runs the connector holds 16 MiB of their texts, not all of
    // them. The server answers the statements before the Sync only because the connector
    // flushes it: without that, client and connector would wait on each other for good.
    const STATEMENTS: usize = 48;
    let mut proxy = Proxy::start().await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    let mut batch = BytesMut::new();
    gatehouse_pgwire::Encode::encode(&gatehouse_pgwire::frontend::Query::new("select pg_sleep(1)"), &mut batch);
    let text = format!("select 1 -- {}", "x".repeat(1 << 20));
    for _ in 0..STATEMENTS {
        frame(b'P', &[b"\0", text.as_bytes(), b"\0\0\0"].concat(), &mut batch);
        frame(b'B', b"\0\0\0\0\0\0\0\0", &mut batch);
        frame(b'E', b"\0\0\0\0\0", &mut batch);
    }
    frame(b'S', b"", &mut batch);
    let (mut read, mut write) = tokio::io::split(raw.stream);
    let writer = tokio::spawn(async move {
        write.write_all(&batch).await.unwrap();
        write
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let held = proxy.counter(|m| &m.bytes_from_clients_total);
    assert!(held > 1 << 20, "the first statements were read: {held} bytes");
    assert!(held < 24 << 20, "{held} bytes read from the client while the sleep ran");

    let mut completed = 0;
    let mut ready = 0;
    while ready < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(60), raw.reader.read_message(&mut read))
            .await
            .expect("the answers come")
            .unwrap()
            .expect("the connection stays open");
        match msg.tag() {
            b'C' => completed += 1,
            b'Z' => ready += 1,
            b'E' => panic!("{:?}", msg.decode::<gatehouse_pgwire::backend::ErrorResponse>().unwrap()),
            _ => {}
        }
    }
    assert_eq!(completed, 1 + STATEMENTS);
    drop((read, writer.await.unwrap()));
    let session = proxy.ended_session().await;
    assert_eq!(session.statements.len(), 1 + STATEMENTS);
    assert!(session.statements.iter().all(|s| s.sqlstate.is_empty()), "{:?}", session.statements.last());
}

#[tokio::test]
async fn a_client_that_pipelines_and_never_reads_is_not_read_without_bound() {
    // PostgreSQL holds no more of such a client's statements than its socket buffers do; the
    // connector holds a bounded number too, not every statement the client manages to send.
    let mut proxy = Proxy::start().await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    let mut query = BytesMut::new();
    gatehouse_pgwire::Encode::encode(&gatehouse_pgwire::frontend::Query::new("select 1"), &mut query);
    let batch = query.repeat(1_000);
    let writing = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            raw.stream.write_all(&batch).await.unwrap();
        }
    })
    .await;
    assert!(writing.is_err(), "the writes never block");
    drop(raw);
    let session = proxy.ended_session().await;
    // What the socket buffers and the answers the client never read hold, and 16,384 awaiting
    // an answer; without a bound, hundreds of thousands.
    assert!(session.statements.len() < 150_000, "{} statements read", session.statements.len());
}

/// Found by a review: a client that closed (or reset) its connection right after its startup
/// packet was logged in by the database all the same (PostgreSQL counted a session on trust),
/// but the connector, hearing the client's end first, recorded nothing.
#[tokio::test]
async fn a_login_the_database_accepts_after_its_client_left_is_a_session() {
    let mut proxy = Proxy::start().await;
    for reset in [false, true] {
        let mut raw = Raw::connect(proxy.addr).await;
        let params = vec![("user".into(), "postgres".into()), ("database".into(), "test".into())];
        raw.send(StartupMessage::new(PROTOCOL_3_0, params).unwrap().frame()).await;
        if reset {
            rustix::net::sockopt::set_socket_linger(&raw.stream, Some(Duration::ZERO)).unwrap();
        }
        drop(raw);
        let s = proxy.ended_session().await;
        assert_eq!(s.start.username, "postgres", "reset: {reset}");
        assert!(s.statements.is_empty());
    }
}

/// Sends `batch` and a Sync, and reads up to its ReadyForQuery: none of it may fail.
async fn synced(raw: &mut Raw<tokio::net::TcpStream>, batch: &mut BytesMut) {
    frame(b'S', b"", batch);
    raw.send(&batch.split()).await;
    loop {
        let msg = raw.recv().await.expect("closed during an exchange");
        match msg.tag() {
            b'E' => panic!("{:?}", msg.decode::<gatehouse_pgwire::backend::ErrorResponse>().unwrap()),
            b'Z' => return,
            _ => {}
        }
    }
}

/// A Parse of `sql` as the statement `name`.
fn parse(name: &[u8], sql: &str, batch: &mut BytesMut) {
    frame(b'P', &[name, b"\0", sql.as_bytes(), b"\0\0\0"].concat(), batch);
}

/// A Bind of `portal` to `statement`, without parameters.
fn bind(portal: &[u8], statement: &[u8], batch: &mut BytesMut) {
    frame(b'B', &[portal, b"\0", statement, b"\0\0\0\0\0\0\0"].concat(), batch);
}

/// A Close of the statement (`S`) or portal (`P`) `name`.
fn close(what: u8, name: &[u8], batch: &mut BytesMut) {
    frame(b'C', &[&[what][..], name, b"\0"].concat(), batch);
}

/// An Execute of `portal`, for `max_rows` of its rows (0: all).
fn execute(portal: &[u8], max_rows: u32, batch: &mut BytesMut) {
    frame(b'E', &[portal, b"\0", &max_rows.to_be_bytes()].concat(), batch);
}

/// Found by a review: PostgreSQL looks prepared statements and portals up by the first 63
/// bytes of their names, and the connector by the whole name. Prepared under a second name
/// that shares them, a DELETE ran where the transcript showed the SELECT prepared under the
/// first.
#[tokio::test]
async fn names_sharing_their_first_63_bytes_are_one_statement_or_portal_as_in_postgresql() {
    let mut proxy = Proxy::start().await;
    let table = unique("victims");
    let direct = direct().await;
    let delete = format!("with e as (delete from {table} returning 1) select 1");
    let refill = format!("insert into {table} select generate_series(1, 5)");
    direct.batch_execute(&format!("create table {table} (id int); {refill}")).await.unwrap();
    let left =
        async || -> i64 { direct.query_one(&format!("select count(*) from {table}"), &[]).await.unwrap().get(0) };
    let mut batch = BytesMut::new();

    // Statements: the second Parse replaces the first, for the database.
    let (first, second) = (format!("s{}1", "a".repeat(70)), format!("s{}2", "a".repeat(70)));
    let (first, second) = (first.as_bytes(), second.as_bytes());
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    parse(first, "select 1", &mut batch);
    synced(&mut raw, &mut batch).await;
    close(b'S', second, &mut batch);
    parse(second, &delete, &mut batch);
    synced(&mut raw, &mut batch).await;
    bind(b"", first, &mut batch);
    execute(b"", 0, &mut batch);
    synced(&mut raw, &mut batch).await;
    drop(raw);
    assert_eq!(left().await, 0, "the rows were deleted");
    assert_eq!(proxy.ended_session().await.texts(), [delete.as_str()]);

    // Portals, in a transaction: binding the second replaces the first.
    direct.batch_execute(&refill).await.unwrap();
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    raw.query("begin").await;
    parse(b"", "select 1", &mut batch);
    bind(first, b"", &mut batch);
    synced(&mut raw, &mut batch).await;
    close(b'P', second, &mut batch);
    parse(b"", &delete, &mut batch);
    bind(second, b"", &mut batch);
    synced(&mut raw, &mut batch).await;
    execute(first, 0, &mut batch);
    synced(&mut raw, &mut batch).await;
    raw.query("commit").await;
    drop(raw);
    assert_eq!(left().await, 0, "the rows were deleted");
    assert_eq!(proxy.ended_session().await.texts(), ["begin", delete.as_str(), "commit"]);

    // Names that are not ASCII: the database cuts them as converted to its encoding (UTF-8
    // here: é takes two bytes, one in LATIN1), where the connector cannot follow for sure. It
    // records the statement by its name rather than by a text that may not be the one that ran.
    direct.batch_execute(&refill).await.unwrap();
    let (first, second) = ([&[0xe9; 40][..], b"1"].concat(), [&[0xe9; 40][..], b"2"].concat());
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    raw.query("set client_encoding to 'LATIN1'").await;
    parse(&first, "select 1", &mut batch);
    synced(&mut raw, &mut batch).await;
    close(b'S', &second, &mut batch);
    parse(&second, &delete, &mut batch);
    synced(&mut raw, &mut batch).await;
    bind(b"", &first, &mut batch);
    execute(b"", 0, &mut batch);
    synced(&mut raw, &mut batch).await;
    drop(raw);
    assert_eq!(left().await, 0, "the rows were deleted");
    let texts = proxy.ended_session().await.texts().join("\n");
    direct.batch_execute(&format!("drop table {table}")).await.unwrap();
    assert!(texts.starts_with("set client_encoding to 'LATIN1'\nEXECUTE \""), "{texts}");
}

/// Found by a review: an Execute of a portal whose rows were all fetched, which the database
/// answers `SELECT 0` without running anything, was recorded as a second statement.
#[tokio::test]
async fn a_query_fetched_a_few_rows_at_a_time_is_recorded_once_even_past_its_end() {
    let mut proxy = Proxy::start().await;
    let mut raw = Raw::connect(proxy.addr).await;
    raw.startup().await;
    let mut batch = BytesMut::new();
    parse(b"", "select generate_series(1, 5)", &mut batch);
    bind(b"c", b"", &mut batch);
    for _ in 0..4 {
        execute(b"c", 2, &mut batch);
    }
    execute(b"c", 0, &mut batch);
    synced(&mut raw, &mut batch).await;
    // Bound again, it runs again.
    bind(b"c", b"", &mut batch);
    execute(b"c", 0, &mut batch);
    synced(&mut raw, &mut batch).await;
    drop(raw);
    let s = proxy.ended_session().await;
    let got: Vec<_> = s.statements.iter().map(|s| (s.text.as_str(), s.rows)).collect();
    assert_eq!(got, [("select generate_series(1, 5)", 5), ("select generate_series(1, 5)", 5)]);
}
