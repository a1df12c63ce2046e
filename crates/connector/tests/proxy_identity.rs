//! Identity logins through the proxy, against the machine's PostgreSQL and a stand-in for the
//! control plane's `VerifyIdentity`: tokens checked, refusals before any upstream connection,
//! the connector's own login upstream (trust, md5, SCRAM-SHA-256), end users, and TLS both ways.

// Tests run on runtimes of their own, with tokio's time driver.
#![allow(clippy::disallowed_methods)]

mod double;
mod proxy_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use double::Harness;
use gatehouse_connector::config::{Credential, UpstreamTls};
use gatehouse_connector::identity::{Credentials, Round, Verifier, recheck_once, throttle};
use gatehouse_connector::proxy::{IdentityOptions, TlsForIdentity, UpstreamTlsConfig, load_tls, upstream_tls};
use gatehouse_proto::gatehouse::connector::v1 as pb;
use proxy_harness::{PATIENCE, Proxy, UPSTREAM, direct, eventually};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};

const ALICE: &str = "idp:formal:human:alice@example.com";
const TOKEN: &str = "ght_alice_good_token";
/// Roles the tests log in as; created on first use.
const ANALYST: &str = "gh_id_analyst";
const SCRAM_ROLE: &str = "gh_id_scram";
const MD5_ROLE: &str = "gh_id_md5";
const SCRAM_PASSWORD: &str = "scram-secret-Ünïcode";
const MD5_PASSWORD: &str = "md5-secret";

fn allowed(role: &str, groups: &[&str]) -> pb::VerifyIdentityResponse {
    pb::VerifyIdentityResponse {
        allowed: true,
        native_role: role.into(),
        cache_seconds: 30,
        user: pb::FormalUser {
            id: "usr_alice".into(),
            name: "Alice".into(),
            email: "alice@example.com".into(),
            r#type: "human".into(),
            groups: groups.iter().map(|g| (*g).into()).collect(),
            external_ids: vec!["okta|1".into()],
            ..Default::default()
        }
        .into(),
        ..Default::default()
    }
}

fn denied(reason: &str) -> pb::VerifyIdentityResponse {
    pb::VerifyIdentityResponse { denied_reason: reason.into(), cache_seconds: 30, ..Default::default() }
}

fn identity(harness: &Harness, credentials: &[Credential]) -> IdentityOptions {
    IdentityOptions {
        verifier: Some(Arc::new(Verifier::new(harness.control(), tokio::runtime::Handle::current()))),
        credentials: Arc::new(Credentials::new(credentials)),
        ..IdentityOptions::default()
    }
}

async fn proxy(harness: &Harness, credentials: &[Credential]) -> Proxy {
    Proxy::start_full(None, UPSTREAM, None, identity(harness, credentials)).await
}

fn config(proxy: &Proxy, user: &str, password: &str) -> tokio_postgres::Config {
    let mut config = proxy.config();
    config.user(user).password(password);
    config
}

async fn login(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn code(error: &tokio_postgres::Error) -> String {
    error.as_db_error().map(|e| e.code().code().to_owned()).unwrap_or_else(|| format!("not a database error: {error}"))
}

async fn one(client: &Client, sql: &str) -> String {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Creates a login role once; concurrent tests may race, so "already exists" is fine.
async fn ensure_role(db: &Client, role: &str) {
    let sql = format!("create role {role} login");
    if let Err(error) = db.batch_execute(&sql).await {
        assert!(matches!(code(&error).as_str(), "42710" | "23505"), "{error}");
    }
}

/// A TCP port that counts the connections made to it: an upstream that must stay untouched.
async fn counting_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, count)
}

/// A database that accepts connections and never answers. Each connection's end, once the
/// connector lets go of it, comes on the receiver.
async fn silent_upstream() -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (closed, ends) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let _ = stream.read_to_end(&mut Vec::new()).await;
                let _ = closed.send(());
            });
        }
    });
    (addr, ends)
}

#[tokio::test]
async fn a_database_that_never_answers_the_login_gets_the_client_a_08006_in_15_seconds() {
    // The connector's bound on the database's answers during a login.
    const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
    let harness = Harness::start().await;
    harness.plane.set_identity("alice@example.com", TOKEN, allowed(ANALYST, &[]));
    let (upstream, mut ends) = silent_upstream().await;
    let proxy = Proxy::start_full(None, &upstream, None, identity(&harness, &[])).await;

    let started = std::time::Instant::now();
    let login = tokio::time::timeout(ANSWER_TIMEOUT + PATIENCE, login(&config(&proxy, ALICE, TOKEN))).await;
    let error = login.expect("the client is answered in time").err().unwrap();
    assert!(started.elapsed() >= ANSWER_TIMEOUT - Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(code(&error), "08006", "{error}");
    let message = error.as_db_error().unwrap().message();
    assert!(message.contains("no answer from the database within"), "{message}");
    assert!(!message.contains(&upstream), "where the database is stays in the log: {message}");
    tokio::time::timeout(PATIENCE, ends.recv()).await.expect("the connector lets go of the database");
    assert_eq!(proxy.counter(|m| &m.upstream_connect_failures_total), 1, "an operator can alert on it");
    assert_eq!(proxy.metrics.auth_failures.get("upstream_login"), 0, "the database failed, not the identity");
    assert!(proxy.live.is_empty());
}

#[tokio::test]
async fn a_valid_token_logs_in_as_the_mapped_role_and_the_session_names_the_person() {
    ensure_role(&direct().await, ANALYST).await;
    let harness = Harness::start().await;
    harness.plane.set_identity("alice@example.com", TOKEN, allowed(ANALYST, &["dba", "eng"]));
    let mut proxy = proxy(&harness, &[]).await;

    let client = login(&config(&proxy, ALICE, TOKEN)).await.unwrap();
    assert_eq!(one(&client, "select current_user::text").await, ANALYST);
    assert_eq!(one(&client, "select current_database()::text").await, "test");
    // The database saw the native role only, and the application name the client gave.
    let pid: i32 = client.query_one("select pg_backend_pid()", &[]).await.unwrap().get(0);
    let row = direct()
        .await
        .query_one("select usename::text, application_name from pg_stat_activity where pid = $1", &[&pid])
        .await
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), (ANALYST.to_owned(), "gatehouse-test".to_owned()));

    let (_, start) = proxy.started_session().await;
    assert_eq!(start.username, ALICE);
    assert_eq!(start.native_username, ANALYST);
    assert_eq!(start.user_type, "human");
    assert_eq!(start.database, "test");
    let user = start.formal_user.unwrap();
    assert_eq!(
        (user.id.as_str(), user.email.as_str(), user.kind.as_str()),
        ("usr_alice", "alice@example.com", "human")
    );
    assert_eq!(user.groups, ["dba", "eng"]);
    assert_eq!(start.end_user, None);
    assert_eq!(harness.plane.seen().verifications, [("alice@example.com".to_owned(), String::new())]);
    assert_eq!(proxy.counter(|m| &m.identity_logins_total), 1);

    // Statements are recorded as for any session, and Ctrl-C still reaches the backend.
    client.simple_query("select 42").await.unwrap();
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(30)").await.map(|_| client) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(NoTls).await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(10), sleeper).await.unwrap().unwrap();
    assert_eq!(code(&cancelled.err().unwrap()), "57014");
    let recorded = proxy.ended_session().await;
    assert!(recorded.texts().contains(&"select 42"), "{:?}", recorded.texts());
}

#[tokio::test]
async fn refused_identities_get_28p01_and_never_reach_the_database() {
    let harness = Harness::start().await;
    for (user, reason) in [
        ("expired@example.com", "expired_token"),
        ("revoked@example.com", "revoked_token"),
        ("disabled@example.com", "disabled_user"),
        ("alice@example.com", "role_not_allowed"),
    ] {
        harness.plane.set_identity(user, TOKEN, denied(reason));
    }
    let (upstream, connections) = counting_upstream().await;
    let mut proxy = Proxy::start_full(None, &upstream, None, identity(&harness, &[])).await;

    for (user, password) in [
        (ALICE.to_owned(), "ght_wrong"),
        ("idp:formal:human:expired@example.com".to_owned(), TOKEN),
        ("idp:formal:human:revoked@example.com".to_owned(), TOKEN),
        ("idp:formal:human:disabled@example.com".to_owned(), TOKEN),
        (format!("{ALICE}@postgres"), TOKEN),
        ("idp:formal:machine:nobody".to_owned(), TOKEN),
    ] {
        let error = login(&config(&proxy, &user, password)).await.err().unwrap();
        assert_eq!(code(&error), "28P01", "{user}: {error}");
        let message = error.as_db_error().unwrap().message().to_owned();
        assert_eq!(message, format!("password authentication failed for user \"{user}\""));
    }
    let failures = |reason| proxy.metrics.auth_failures.get(reason);
    assert_eq!(failures("bad_token"), 2);
    for reason in ["expired_token", "revoked_token", "disabled_user", "role_not_allowed"] {
        assert_eq!(failures(reason), 1, "{reason}");
    }
    assert!(proxy.metrics.render().contains("gatehouse_connector_auth_failures_total{reason=\"bad_token\"} 2"));

    // A malformed identity is refused too, without asking the control plane.
    let error = login(&config(&proxy, "idp:formal:human:not-an-email", TOKEN)).await.err().unwrap();
    assert_eq!(code(&error), "28000");
    assert_eq!(failures("bad_user_name"), 1);
    assert_eq!(harness.plane.seen().verifications.len(), 6);

    assert_eq!(connections.load(Ordering::SeqCst), 0, "the database was contacted");
    proxy.assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn answers_are_cached_briefly_and_an_unreachable_control_plane_fails_closed() {
    ensure_role(&direct().await, ANALYST).await;
    let harness = Harness::start().await;
    harness.plane.set_identity("alice@example.com", TOKEN, allowed(ANALYST, &[]));
    let uncached = pb::VerifyIdentityResponse { cache_seconds: 0, ..allowed(ANALYST, &[]) };
    harness.plane.set_identity("bob@example.com", TOKEN, uncached);
    let options = identity(&harness, &[]);
    let verifier = Arc::clone(options.verifier.as_ref().unwrap());
    let proxy = Proxy::start_full(None, UPSTREAM, None, options).await;

    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(login(&config(&proxy, ALICE, TOKEN)).await.unwrap());
        login(&config(&proxy, "idp:formal:human:bob@example.com", TOKEN)).await.unwrap();
    }
    // Checking the open sessions again, for the role they got, is answered by the login's answer.
    eventually("alice's sessions", || async { proxy.live.identities().len() >= 3 }).await;
    assert_eq!(recheck_once(&proxy.live, &verifier).await, Round::default());
    let calls = harness.plane.seen().verifications;
    assert_eq!(calls.iter().filter(|(user, _)| user == "alice@example.com").count(), 1, "{calls:?}");
    let bob_logins = calls.iter().filter(|(user, role)| user == "bob@example.com" && role.is_empty()).count();
    assert_eq!(bob_logins, 3, "{calls:?}");
    drop(open);

    harness.plane.set_down(true);
    let error = login(&config(&proxy, "idp:formal:human:bob@example.com", TOKEN)).await.err().unwrap();
    assert_eq!(code(&error), "08006", "{error}");
    assert!(error.as_db_error().unwrap().message().contains("control plane is unreachable"));
    assert_eq!(proxy.metrics.auth_failures.get("control_plane_unavailable"), 1);
}

#[tokio::test]
async fn open_sessions_end_when_their_access_is_revoked_and_outlive_an_outage() {
    ensure_role(&direct().await, ANALYST).await;
    let other_role = "gh_id_other";
    ensure_role(&direct().await, other_role).await;
    let harness = Harness::start().await;
    let uncached = |response| pb::VerifyIdentityResponse { cache_seconds: 0, ..response };
    for user in ["alice", "bob", "carol", "dave"] {
        harness.plane.set_identity(&format!("{user}@example.com"), TOKEN, uncached(allowed(ANALYST, &[])));
    }
    let options = identity(&harness, &[]);
    let verifier = Arc::clone(options.verifier.as_ref().unwrap());
    let proxy = Proxy::start_full(None, UPSTREAM, None, options).await;
    let mut clients = Vec::new();
    for user in ["alice", "bob", "carol", "dave"] {
        let client = login(&config(&proxy, &format!("idp:formal:human:{user}@example.com"), TOKEN)).await.unwrap();
        clients.push(client);
    }
    // A plain login has nothing to check again.
    let plain = login(&proxy.config()).await.unwrap();
    eventually("five live sessions", || async { proxy.live.len() == 5 }).await;
    let pids = {
        let mut pids = Vec::new();
        for client in &clients {
            pids.push(client.query_one("select pg_backend_pid()", &[]).await.unwrap().get::<_, i32>(0));
        }
        pids
    };

    // The control plane cannot answer: an outage is no revocation.
    harness.plane.set_down(true);
    let round = recheck_once(&proxy.live, &verifier).await;
    assert_eq!((round.revoked, round.unchecked), (0, 4), "{round:?}");
    harness.plane.set_down(false);
    assert_eq!(recheck_once(&proxy.live, &verifier).await, Round::default());
    // Asked for the role each session has, not for what a login naming none would get now.
    let asked = harness.plane.seen().verifications;
    assert!(asked.contains(&("alice@example.com".to_owned(), ANALYST.to_owned())), "{asked:?}");

    // Three of them run a statement; their access goes.
    let mut clients = clients.into_iter();
    let alice = clients.next().unwrap();
    let sleepers: Vec<_> =
        clients.map(|client| tokio::spawn(async move { client.simple_query("select pg_sleep(30)").await })).collect();
    let db = direct().await;
    eventually("the statements to run", || async { backends(&db, &pids[1..], "active").await == 3 }).await;
    harness.plane.set_identity("bob@example.com", TOKEN, uncached(denied("disabled_user")));
    harness.plane.set_identity("carol@example.com", TOKEN, uncached(denied("revoked_token")));
    // Another role than the session's: its grant was revoked, another one applies now.
    harness.plane.set_identity("dave@example.com", TOKEN, uncached(allowed(other_role, &[])));
    assert_eq!(recheck_once(&proxy.live, &verifier).await.revoked, 3);

    for (sleeper, why) in sleepers.into_iter().zip([
        "the user was disabled",
        "the access token was revoked",
        "role \"gh_id_analyst\" is no longer granted",
    ]) {
        let error = sleeper.await.unwrap().err().unwrap();
        assert_eq!(code(&error), "57P01", "{error}");
        let message = error.as_db_error().unwrap().message();
        assert_eq!(message, format!("terminating connection: access revoked: {why}"));
    }
    // Their backends are gone too; the others carry on.
    eventually("the revoked sessions' backends to end", || async { backends(&db, &pids[1..], "").await == 0 }).await;
    assert_eq!(one(&alice, "select 1::text").await, "1");
    assert_eq!(one(&plain, "select 1::text").await, "1");
    assert_eq!(proxy.live.len(), 2);
    assert_eq!(proxy.counter(|m| &m.sessions_revoked_total), 3);
    assert_eq!(proxy.counter(|m| &m.sessions_terminated_total), 0, "no administrator's");
}

#[tokio::test]
async fn a_credential_refused_anywhere_is_trusted_nowhere() {
    ensure_role(&direct().await, ANALYST).await;
    let harness = Harness::start().await;
    harness.plane.set_identity("alice@example.com", TOKEN, allowed(ANALYST, &[]));
    let options = identity(&harness, &[]);
    let verifier = Arc::clone(options.verifier.as_ref().unwrap());
    let proxy = Proxy::start_full(None, UPSTREAM, None, options).await;
    let session = login(&config(&proxy, ALICE, TOKEN)).await.unwrap();
    eventually("alice's session", || async { proxy.live.len() == 1 }).await;

    // Revoked: the answers kept for 30 s still let the token in, until a login the cache does
    // not answer (for another role) hears otherwise.
    harness.plane.set_identity("alice@example.com", TOKEN, denied("revoked_token"));
    login(&config(&proxy, ALICE, TOKEN)).await.unwrap();
    assert_eq!(recheck_once(&proxy.live, &verifier).await, Round::default());
    let other_role = config(&proxy, &format!("{ALICE}@gh_id_other"), TOKEN);
    assert_eq!(code(&login(&other_role).await.err().unwrap()), "28P01");
    // From then on nothing kept is trusted: logins and the open session are refused, and the
    // sessions' check was asked to run at once.
    tokio::time::timeout(Duration::from_secs(1), verifier.access_changed()).await.expect("a check is asked for");
    assert_eq!(code(&login(&config(&proxy, ALICE, TOKEN)).await.err().unwrap()), "28P01");
    assert_eq!(recheck_once(&proxy.live, &verifier).await.revoked, 1);
    assert!(session.simple_query("select 1").await.is_err());
}

#[tokio::test]
async fn an_address_that_keeps_failing_is_refused_unchecked() {
    ensure_role(&direct().await, ANALYST).await;
    let harness = Harness::start().await;
    harness.plane.set_identity("alice@example.com", TOKEN, allowed(ANALYST, &[]));
    harness.plane.set_identity("carol@example.com", TOKEN, denied("revoked_token"));
    let proxy = proxy(&harness, &[]).await;
    // A real credential refused (a pool retrying a revoked token) is no guess: nobody else
    // behind the address is held back for it.
    for _ in 0..=throttle::MAX_FAILURES {
        let carol = config(&proxy, "idp:formal:human:carol@example.com", TOKEN);
        assert_eq!(code(&login(&carol).await.err().unwrap()), "28P01");
    }
    login(&config(&proxy, ALICE, TOKEN)).await.unwrap();
    let base = harness.plane.seen().verifications.len();
    let guess = |i: u32| config(&proxy, ALICE, &format!("ght_guess_{i}"));
    for i in 0..throttle::MAX_FAILURES {
        assert_eq!(code(&login(&guess(i)).await.err().unwrap()), "28P01");
    }
    let checked = harness.plane.seen().verifications.len();
    assert_eq!(checked - base, throttle::MAX_FAILURES as usize);
    // Then even the right token gets the same answer, and the control plane is not asked.
    for config in [guess(99), config(&proxy, ALICE, TOKEN)] {
        let error = login(&config).await.err().unwrap();
        assert_eq!(code(&error), "28P01");
        assert!(error.as_db_error().unwrap().message().contains("password authentication failed"), "{error}");
    }
    assert_eq!(harness.plane.seen().verifications.len(), checked);
    assert_eq!(proxy.metrics.auth_failures.get("throttled"), 2);
    assert_eq!(proxy.metrics.auth_failures.get("bad_token"), u64::from(throttle::MAX_FAILURES));
}

#[tokio::test]
async fn guesses_sent_at_once_are_checked_no_more_than_one_at_a_time() {
    ensure_role(&direct().await, ANALYST).await;
    let harness = Harness::start().await;
    harness.plane.set_identity("alice@example.com", TOKEN, allowed(ANALYST, &[]));
    let proxy = proxy(&harness, &[]).await;
    // The same guess again (libpq's sslmode=prefer retrying without TLS) counts once.
    let again = config(&proxy, ALICE, "ght_typo");
    for _ in 0..throttle::MAX_FAILURES {
        assert_eq!(code(&login(&again).await.err().unwrap()), "28P01");
    }
    login(&config(&proxy, ALICE, TOKEN)).await.expect("one guess, not 20");
    let base = harness.plane.seen().verifications.len();
    // Three times the limit at once: the checks under way count against it, so only as many
    // as it leaves are checked, and the rest are refused unchecked once they failed.
    let guesses = (0..3 * throttle::MAX_FAILURES).map(|i| {
        let config = config(&proxy, ALICE, &format!("ght_guess_{i}"));
        async move { code(&login(&config).await.err().unwrap()) }
    });
    let codes = futures::future::join_all(guesses).await;
    assert!(codes.iter().all(|code| code == "28P01"), "{codes:?}");
    let checked = harness.plane.seen().verifications.len() - base;
    assert_eq!(checked, throttle::MAX_FAILURES as usize - 1, "the typo was the first guess");
    assert_eq!(proxy.metrics.auth_failures.get("throttled"), u64::from(2 * throttle::MAX_FAILURES + 1));
}

/// How many of the backends `pids` there are, in `state` (any when empty).
async fn backends(db: &Client, pids: &[i32], state: &str) -> i64 {
    let sql = "select count(*) from pg_stat_activity where pid = any($1) and ($2 = '' or state = $2)";
    db.query_one(sql, &[&pids, &state]).await.unwrap().get(0)
}

#[tokio::test]
async fn listeners_can_require_identities_and_tls() {
    let harness = Harness::start().await;
    harness.plane.set_identity("alice@example.com", TOKEN, allowed(ANALYST, &[]));
    let (upstream, connections) = counting_upstream().await;
    let options =
        IdentityOptions { require_identity: true, require_tls: TlsForIdentity::Always, ..identity(&harness, &[]) };
    let proxy = Proxy::start_full(None, &upstream, None, options).await;

    let error = login(&config(&proxy, "postgres", "")).await.err().unwrap();
    assert_eq!(code(&error), "28000", "a rule's refusal, no password's: {error}");
    assert_eq!(proxy.metrics.auth_failures.get("identity_required"), 1);
    let error = login(&config(&proxy, ALICE, TOKEN)).await.err().unwrap();
    assert_eq!(code(&error), "28000", "{error}");
    assert_eq!(proxy.metrics.auth_failures.get("tls_required"), 1);
    // Refused before the token was asked for: the control plane was not called.
    assert!(harness.plane.seen().verifications.is_empty());
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_machine_names_its_end_user_and_the_option_never_reaches_the_database() {
    ensure_role(&direct().await, ANALYST).await;
    let harness = Harness::start().await;
    let machine = pb::VerifyIdentityResponse {
        user: pb::FormalUser {
            id: "usr_etl".into(),
            name: "etl".into(),
            r#type: "machine".into(),
            ..Default::default()
        }
        .into(),
        ..allowed(ANALYST, &[])
    };
    harness.plane.set_identity("etl", TOKEN, machine);
    let mut proxy = proxy(&harness, &[]).await;

    let mut config = config(&proxy, &format!("idp:formal:machine:etl@{ANALYST}"), TOKEN);
    config.options("-c gatehouse.end_user=bob@example.com -c search_path=pg_catalog");
    let client = login(&config).await.unwrap();
    assert_eq!(one(&client, "show search_path").await, "pg_catalog");
    let placeholder: Option<String> =
        client.query_one("select current_setting('gatehouse.end_user', true)", &[]).await.unwrap().get(0);
    assert_eq!(placeholder, None);

    let (_, start) = proxy.started_session().await;
    assert_eq!((start.user_type.as_str(), start.native_username.as_str()), ("machine", ANALYST));
    assert_eq!(start.formal_user.unwrap().name, "etl");
    let end_user = start.end_user.unwrap();
    assert_eq!((end_user.email.as_str(), end_user.kind.as_str()), ("bob@example.com", "human"));
    assert_eq!(harness.plane.seen().verifications, [("etl".to_owned(), ANALYST.to_owned())]);

    // One that would print as another is refused, and counted as such.
    config.options("-c gatehouse.end_user=\u{202e}moc.elpmaxe@bob");
    let error = login(&config).await.err().unwrap();
    assert_eq!(code(&error), "28000", "{error}");
    assert_eq!(proxy.metrics.auth_failures.get("bad_end_user"), 1);
}

/// Lets `SCRAM_ROLE` and `MD5_ROLE` log in over 127.0.0.1 only with their passwords: adds
/// two lines at the top of pg_hba.conf once (trust for everyone else stays as it is), sets the
/// passwords, reloads, and waits until a wrong password is refused.
async fn password_roles() {
    let db = direct().await;
    ensure_role(&db, SCRAM_ROLE).await;
    ensure_role(&db, MD5_ROLE).await;
    // One test at a time: PostgreSQL refuses to alter a role another transaction is altering
    // ("tuple concurrently updated").
    db.batch_execute(&format!(
        "begin; select pg_advisory_xact_lock(hashtext('gatehouse password_roles'));
         set local password_encryption = 'scram-sha-256'; alter role {SCRAM_ROLE} password '{SCRAM_PASSWORD}';
         set local password_encryption = 'md5'; alter role {MD5_ROLE} password '{MD5_PASSWORD}'; commit;"
    ))
    .await
    .unwrap();
    let hba: String = db.query_one("show hba_file", &[]).await.unwrap().get(0);
    let text = std::fs::read_to_string(&hba).unwrap();
    let lines = format!(
        "# gatehouse connector tests: password logins for two test roles\n\
         host all {SCRAM_ROLE} 127.0.0.1/32 scram-sha-256\nhost all {MD5_ROLE} 127.0.0.1/32 md5\n"
    );
    if !text.contains(&lines) {
        let tmp = format!("{hba}.gatehouse-{}", std::process::id());
        std::fs::write(&tmp, format!("{lines}{text}")).unwrap_or_else(|e| panic!("cannot write {tmp}: {e}"));
        std::fs::rename(&tmp, &hba).unwrap();
    }
    db.batch_execute("select pg_reload_conf()").await.unwrap();
    eventually("pg_hba.conf to be reloaded", || async {
        let wrong = format!("host=127.0.0.1 port=5432 user={SCRAM_ROLE} password=wrong dbname=test");
        tokio_postgres::connect(&wrong, NoTls).await.is_err()
    })
    .await;
}

#[tokio::test]
async fn the_connector_logs_in_upstream_with_scram_and_md5_using_its_own_credentials() {
    password_roles().await;
    let harness = Harness::start().await;
    harness.plane.set_identity("alice@example.com", TOKEN, allowed(SCRAM_ROLE, &[]));
    harness.plane.set_identity("md5@example.com", TOKEN, allowed(MD5_ROLE, &[]));
    harness.plane.set_identity("nocreds@example.com", TOKEN, allowed(SCRAM_ROLE, &[]));
    let credentials = [
        Credential::new(Some(proxy_harness::RESOURCE), SCRAM_ROLE, SCRAM_PASSWORD),
        Credential::new(None, MD5_ROLE, MD5_PASSWORD),
    ];
    let proxy = proxy(&harness, &credentials).await;

    let client = login(&config(&proxy, ALICE, TOKEN)).await.unwrap();
    assert_eq!(one(&client, "select current_user::text").await, SCRAM_ROLE);
    let client = login(&config(&proxy, "idp:formal:human:md5@example.com", TOKEN)).await.unwrap();
    assert_eq!(one(&client, "select current_user::text").await, MD5_ROLE);

    // Wrong or missing credentials: the client hears it is the connector's login that failed.
    let wrong = proxy_with_password(&harness, SCRAM_ROLE, "not-the-password").await;
    let error = login(&config(&wrong, ALICE, TOKEN)).await.err().unwrap();
    assert_eq!(code(&error), "28000", "{error}");
    assert!(error.as_db_error().unwrap().message().contains(SCRAM_ROLE));
    assert_eq!(wrong.metrics.auth_failures.get("upstream_login"), 1);
    let none = self::proxy(&harness, &[]).await;
    let error = login(&config(&none, "idp:formal:human:nocreds@example.com", TOKEN)).await.err().unwrap();
    assert_eq!(code(&error), "28000", "{error}");
    assert_eq!(none.metrics.auth_failures.get("no_credentials"), 1);
}

async fn proxy_with_password(harness: &Harness, role: &str, password: &str) -> Proxy {
    proxy(harness, &[Credential::new(None, role, password)]).await
}

/// The snakeoil certificate Debian's PostgreSQL serves (self-signed, for `localhost`).
const PG_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

async fn ssl_of_backend(client: &Client) -> bool {
    client.query_one("select ssl from pg_stat_ssl where pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

fn tls_to(mode: UpstreamTls, ca: Option<&std::path::Path>, upstream: &str) -> Option<UpstreamTlsConfig> {
    upstream_tls(mode, ca, upstream).unwrap()
}

#[tokio::test]
async fn tls_to_the_database_with_and_without_verification() {
    let ssl: String = direct().await.query_one("show ssl", &[]).await.unwrap().get(0);
    assert_eq!(ssl, "on", "these tests need PostgreSQL with ssl = on (Debian's default)");

    let upstream = "localhost:5432";
    let verified = tls_to(UpstreamTls::VerifyFull, Some(std::path::Path::new(PG_CERT)), upstream);
    let proxy = Proxy::start_full(None, upstream, verified, IdentityOptions::default()).await;
    let (client, _connection) = proxy.connect().await;
    assert!(ssl_of_backend(&client).await);

    let required = tls_to(UpstreamTls::Require, None, UPSTREAM);
    let proxy = Proxy::start_full(None, UPSTREAM, required, IdentityOptions::default()).await;
    let (client, _connection) = proxy.connect().await;
    assert!(ssl_of_backend(&client).await);

    let plain = Proxy::start().await;
    let (client, _connection) = plain.connect().await;
    assert!(!ssl_of_backend(&client).await);

    // Another CA: the certificate does not verify, and the client hears so.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("other-ca.pem");
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let wrong = tls_to(UpstreamTls::VerifyFull, Some(&ca), upstream);
    let proxy = Proxy::start_full(None, upstream, wrong, IdentityOptions::default()).await;
    let error = proxy.config().connect(NoTls).await.err().unwrap();
    assert_eq!(code(&error), "08006", "{error}");
}

/// Over TLS the database offers SCRAM with channel binding (`SCRAM-SHA-256-PLUS`), which binds
/// to the connector's TLS connection and cannot pass through it; libpq refuses outright to log
/// in over a plain connection where it is offered. The connector offers a client without TLS
/// plain SCRAM, which passes through.
#[tokio::test]
async fn scram_passes_through_to_a_database_over_tls() {
    password_roles().await;
    let required = tls_to(UpstreamTls::Require, None, UPSTREAM);
    let mut proxy = Proxy::start_full(None, UPSTREAM, required, IdentityOptions::default()).await;
    let port = proxy.addr.port();
    let psql = |password: &'static str| {
        let conninfo = format!("host=127.0.0.1 port={port} user={SCRAM_ROLE} dbname=test sslmode=disable");
        tokio::process::Command::new("psql")
            .args([
                conninfo.as_str(),
                "-XAtc",
                "select current_user || ' ' || (select ssl from pg_stat_ssl where pid = pg_backend_pid())",
            ])
            .env("PGPASSWORD", password)
            .output()
    };
    let out = psql(SCRAM_PASSWORD).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{SCRAM_ROLE} true"));
    let session = proxy.ended_session().await;
    assert_eq!(session.start.native_username, SCRAM_ROLE);

    let out = psql("wrong").await.unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed"), "{out:?}");
}

/// A CA, and a certificate for `localhost` it signed, written as PEM files in `dir`.
fn ca_and_server_cert(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let paths =
        (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}-cert.pem")), dir.join(format!("{name}-key.pem")));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

async fn psql(conninfo: &str, password: &str) -> std::process::Output {
    tokio::process::Command::new("psql")
        .args(["-X", "-At", "-c", "select current_user"])
        .arg(conninfo)
        .env("PGPASSWORD", password)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn psql_verifies_the_connectors_certificate_and_logs_in_with_a_token() {
    ensure_role(&direct().await, ANALYST).await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_server_cert(dir.path(), "good");
    let (other_ca, _, _) = ca_and_server_cert(dir.path(), "other");
    let harness = Harness::start().await;
    harness.plane.set_identity("alice@example.com", TOKEN, allowed(ANALYST, &[]));
    let options = IdentityOptions { require_tls: TlsForIdentity::Always, ..identity(&harness, &[]) };
    let proxy = Proxy::start_full(Some(load_tls(&cert, &key).unwrap().config()), UPSTREAM, None, options).await;
    let port = proxy.addr.port();

    for host in ["localhost", "127.0.0.1"] {
        let conninfo = format!(
            "host={host} port={port} user={ALICE} dbname=test sslmode=verify-full sslrootcert={}",
            ca.display()
        );
        let out = psql(&conninfo, TOKEN).await;
        assert!(out.status.success(), "{host}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ANALYST);
    }
    let out = psql(&format!("host=localhost port={port} user={ALICE} dbname=test sslmode=require"), TOKEN).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let conninfo = format!(
        "host=localhost port={port} user={ALICE} dbname=test sslmode=verify-full sslrootcert={}",
        other_ca.display()
    );
    let out = psql(&conninfo, TOKEN).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate verify failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without TLS the token is not even asked for.
    let out = psql(&format!("host=127.0.0.1 port={port} user={ALICE} dbname=test sslmode=disable"), TOKEN).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires TLS"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(harness.plane.seen().verifications.len(), 1, "one verification, then the cache");
}
