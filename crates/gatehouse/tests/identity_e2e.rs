//! Identity logins through the whole system: users and tokens made with the CLI, `gatehouse
//! serve` verifying them, `gatehouse connector` logging in to the machine's PostgreSQL as the
//! mapped native role (over TLS, verify-full), and real `psql` clients (over TLS too).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Proc, certificates, free_port, gatehouse, output, wait_port};
use serde_json::{Value, json};

const ORG: &str = "acme";
/// Native roles, created in the machine's PostgreSQL (trust over 127.0.0.1).
const ANALYST: &str = "gh_e2e_analyst";
const DBA: &str = "gh_e2e_dba";
/// The connector's password for ANALYST (unused with trust, but loaded, so it must not leak).
const CREDENTIAL: &str = "e2e-credential-Secret-0xC0FFEE";
/// A native role PostgreSQL logs in with its password only, which the connector reads from
/// a file (`rotating.pw`), as a mounted secret.
const ROTATING: &str = "gh_e2e_rotating";
/// Debian's PostgreSQL serves this self-signed certificate for `localhost`.
const PG_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn psql_admin(sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn ensure_role(role: &str) {
    // Concurrent tests may both try: creating a role that exists is an error, so ask first.
    let sql = format!(
        "do $$ begin if not exists (select from pg_roles where rolname = '{role}') then create role {role} login; end if; \
         exception when duplicate_object or unique_violation then null; end $$"
    );
    psql_admin(&sql);
}

/// A port that counts the connections made to it: the upstream of a resource that identity
/// refusals must never reach.
fn counting_upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, count)
}

struct System {
    dir: tempfile::TempDir,
    data: PathBuf,
    api_port: u16,
    /// In front of the machine's PostgreSQL, over TLS (verify-full).
    proxy_port: u16,
    /// In front of `guarded_upstream`; requires identities.
    guarded_port: u16,
    guarded_connections: Arc<AtomicUsize>,
    admin_port: u16,
    admin_key: String,
    config: PathBuf,
    ca: PathBuf,
    other_ca: PathBuf,
    http: reqwest::Client,
}

impl System {
    fn new() -> Self {
        ensure_role(ANALYST);
        ensure_role(DBA);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("cp");
        let admin_key = Self::cli_in(&data, &["keys", "create", "--org", ORG, "--role", "admin"]);
        let (guarded_upstream, guarded_connections) = counting_upstream();
        let guarded_port_str = guarded_upstream.to_string();
        let mut ids = Vec::new();
        for (name, host, port) in [("pg", "localhost", "5432"), ("guarded", "127.0.0.1", guarded_port_str.as_str())] {
            let args = ["resources", "create", "--org", ORG, "--name", name, "--host", host, "--port", port];
            ids.push(Self::cli_in(&data, &[&args[..], &["--default-role", ANALYST]].concat()));
            Self::cli_in(&data, &["resources", "grant", name, "--org", ORG, "--role", DBA, "--group", "dba"]);
        }
        let connector_key = Self::cli_in(&data, &["connectors", "create", "--org", ORG, "--name", "edge"]);
        let (ca, cert, key) = certificates(dir.path(), "connector");
        let (other_ca, _, _) = certificates(dir.path(), "other");
        let (api_port, proxy_port, guarded_port, admin_port) = (free_port(), free_port(), free_port(), free_port());
        let config = dir.path().join("connector.toml");
        std::fs::write(dir.path().join("rotating.pw"), "unset\n").unwrap();
        std::fs::write(
            &config,
            format!(
                r#"admin_listen = "127.0.0.1:{admin_port}"
state_dir = "{state}"

[control_plane]
url = "http://127.0.0.1:{api_port}"
key = "{connector_key}"

[tls]
cert = "{cert}"
key = "{key}"

[[listeners]]
listen = "127.0.0.1:{proxy_port}"
resource = "{pg}"
upstream_tls = "verify-full"
upstream_ca_file = "{PG_CERT}"

[[listeners]]
listen = "127.0.0.1:{guarded_port}"
resource = "{guarded}"
require_identity = true

[[credentials]]
role = "{ANALYST}"
password_env = "GH_E2E_CREDENTIAL"

[[credentials]]
role = "{ROTATING}"
password_file = "{rotating}"
"#,
                rotating = dir.path().join("rotating.pw").display(),
                state = dir.path().join("connector-state").display(),
                cert = cert.display(),
                key = key.display(),
                pg = ids[0],
                guarded = ids[1],
            ),
        )
        .unwrap();
        Self {
            dir,
            data,
            api_port,
            proxy_port,
            guarded_port,
            guarded_connections,
            admin_port,
            admin_key,
            config,
            ca,
            other_ca,
            http: reqwest::Client::new(),
        }
    }

    fn cli_in(data: &Path, args: &[&str]) -> String {
        output(gatehouse().args(args).arg("--data-dir").arg(data))
    }

    fn cli(&self, args: &[&str]) -> String {
        Self::cli_in(&self.data, args)
    }

    /// Creates a user; `who` is an email or, for a machine, its name.
    fn user(&self, who: &str, groups: &[&str]) {
        let mut args = vec!["users", "create", "--org", ORG];
        args.extend(if who.contains('@') { ["--email", who] } else { ["--machine", who] });
        for group in groups {
            args.extend(["--group", group]);
        }
        self.cli(&args);
    }

    fn token(&self, who: &str, ttl: &str) -> String {
        let token = self.cli(&["users", "token", "create", who, "--org", ORG, "--ttl", ttl]);
        assert!(token.starts_with("ght_"), "{token}");
        token
    }

    fn log(&self, name: &str) -> Stdio {
        Stdio::from(std::fs::File::create(self.dir.path().join(name)).unwrap())
    }

    fn serve(&self) -> Proc {
        let child = gatehouse()
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.api_port)])
            .arg("--data-dir")
            .arg(&self.data)
            .env("RUST_LOG", "debug")
            .stderr(self.log("serve.log"))
            .spawn()
            .unwrap();
        wait_port(self.api_port);
        Proc(child)
    }

    fn connector(&self) -> Proc {
        let child = gatehouse()
            .arg("connector")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "debug")
            .env("GH_E2E_CREDENTIAL", CREDENTIAL)
            .stderr(self.log("connector.log"))
            .spawn()
            .unwrap();
        wait_port(self.proxy_port);
        wait_port(self.guarded_port);
        Proc(child)
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for name in ["serve.log", "connector.log"] {
            std::fs::File::open(self.dir.path().join(name)).unwrap().read_to_string(&mut all).unwrap();
        }
        all
    }

    /// `psql -c sql` through a listener as `user` with `password`; `extra` adds conninfo.
    fn psql(&self, port: u16, user: &str, password: &str, extra: &str, sql: &str) -> Result<String, String> {
        let conninfo = format!("host=localhost port={port} user={user} dbname=postgres {extra}");
        let out = Command::new("psql")
            .args(["-X", "-At", "-c", sql])
            .arg(conninfo)
            .env("PGPASSWORD", password)
            .env_remove("PGOPTIONS")
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
        if out.status.success() { Ok(text(&out.stdout)) } else { Err(text(&out.stderr)) }
    }

    fn verify_full(&self) -> String {
        format!("sslmode=verify-full sslrootcert={}", self.ca.display())
    }

    async fn sessions(&self, query: &str) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/core.v1.SessionsService/ListSessionsV2", self.api_port);
        let body = json!({"query": query, "limit": 100});
        let response = self.http.post(url).header("X-API-KEY", &self.admin_key).json(&body).send().await.unwrap();
        let body: Value = response.json().await.unwrap();
        assert!(body.get("code").is_none(), "{query}: {body}");
        // An empty page has no `sessions` field at all.
        body["sessions"].as_array().cloned().unwrap_or_default()
    }

    async fn wait_sessions(&self, query: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sessions = self.sessions(query).await;
            if sessions.len() >= count {
                return sessions;
            }
            assert!(Instant::now() < deadline, "{query}: {sessions:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin_port);
        self.http.get(url).send().await.unwrap().text().await.unwrap()
    }
}

fn failures(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("gatehouse_connector_auth_failures_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn people_and_machines_log_in_with_tokens_and_sessions_name_them() {
    let system = System::new();
    system.user("alice@example.com", &["dba", "eng"]);
    system.user("etl", &["jobs"]);
    let alice = system.token("alice@example.com", "12h");
    let etl = system.token("etl", "12h");
    let _server = system.serve();
    let _connector = system.connector();
    let human = "idp:formal:human:alice@example.com";

    // Over TLS both ways: psql verifies the connector, the connector verifies PostgreSQL.
    let sql = "select current_user || ' ' || (select ssl from pg_stat_ssl where pid = pg_backend_pid())";
    let got = system.psql(system.proxy_port, &format!("{human}@{DBA}"), &alice, &system.verify_full(), sql);
    assert_eq!(got.unwrap(), format!("{DBA} true"));
    let got = system.psql(system.proxy_port, human, &alice, &system.verify_full(), "select current_user");
    assert_eq!(got.unwrap(), ANALYST);
    let wrong_ca = format!("sslmode=verify-full sslrootcert={}", system.other_ca.display());
    let refused = system.psql(system.proxy_port, human, &alice, &wrong_ca, "select 1").unwrap_err();
    assert!(refused.contains("certificate verify failed"), "{refused}");

    // A machine names its end user with a startup option, which PostgreSQL never sees.
    let sql = "select current_user || ' ' || coalesce(current_setting('gatehouse.end_user', true), 'unset')";
    let extra = "sslmode=require options='-c gatehouse.end_user=carol@example.com'";
    let got = system.psql(system.proxy_port, "idp:formal:machine:etl", &etl, extra, sql);
    assert_eq!(got.unwrap(), format!("{ANALYST} unset"));

    // The database saw native roles only.
    let seen = psql_admin("select count(*) from pg_stat_activity where usename like 'idp:%'");
    assert_eq!(seen, "0");

    let sessions = system.wait_sessions("group:dba AND technology:postgres", 2).await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for session in &sessions {
        let user = &session["user"];
        assert_eq!(user["type"], "human", "{session}");
        assert_eq!(user["formal"]["user"]["email"], "alice@example.com", "{session}");
        let groups = user["formal"]["user"]["groups"].as_array().unwrap();
        assert!(groups.contains(&json!("dba")) && groups.contains(&json!("eng")), "{session}");
    }
    let mapped: Vec<(&str, &str)> = sessions
        .iter()
        .map(|s| (s["user"]["username"].as_str().unwrap(), s["user"]["native"]["username"].as_str().unwrap()))
        .collect();
    assert!(mapped.contains(&(format!("{human}@{DBA}").as_str(), DBA)), "{mapped:?}");
    assert!(mapped.contains(&(human, ANALYST)), "{mapped:?}");

    let machines = system.wait_sessions("end_user.email:carol@example.com", 1).await;
    let user = &machines[0]["user"];
    assert_eq!((user["type"].as_str(), user["native"]["username"].as_str()), (Some("machine"), Some(ANALYST)));
    assert_eq!(user["formal"]["user"]["name"], "etl");
    assert_eq!(user["formal"]["endUser"]["email"], "carol@example.com");
    assert_eq!(user["formal"]["endUser"]["type"], "human");

    // Naming a user of the organization: the end user is that user, id and groups included.
    let extra = "sslmode=require options='-c gatehouse.end_user=Alice@Example.com'";
    system.psql(system.proxy_port, "idp:formal:machine:etl", &etl, extra, "select 1").unwrap();
    let known = system.wait_sessions("user.formal.end_user.groups:dba", 1).await;
    let end_user = &known[0]["user"]["formal"]["endUser"];
    assert_eq!(end_user["email"], "alice@example.com", "{end_user}");
    assert!(end_user["id"].as_str().is_some_and(|id| !id.is_empty()), "{end_user}");
    assert_eq!(known[0]["user"]["formal"]["user"]["name"], "etl");

    let metrics = system.metrics().await;
    assert!(metrics.contains("gatehouse_connector_identity_logins_total 4"), "{metrics}");
    let logs = system.logs();
    for secret in [alice.as_str(), etl.as_str(), CREDENTIAL] {
        assert!(!logs.contains(secret), "a secret is in the logs");
    }
    assert!(logs.contains("identity login"), "the logs say nothing of identity logins");
}

/// A renewed certificate is served after SIGHUP, without a restart: connections made after it
/// get the new one. A pair that does not belong together is not taken.
#[tokio::test]
async fn a_renewed_certificate_is_served_after_sighup() {
    let system = System::new();
    system.user("alice@example.com", &["dba"]);
    let alice = system.token("alice@example.com", "12h");
    let _server = system.serve();
    let connector = system.connector();
    let human = "idp:formal:human:alice@example.com";
    let with_ca = |ca: &std::path::Path| format!("sslmode=verify-full sslrootcert={}", ca.display());
    let login = |ca: &std::path::Path| system.psql(system.proxy_port, human, &alice, &with_ca(ca), "select 1");
    assert_eq!(login(&system.ca).unwrap(), "1");
    assert!(login(&system.other_ca).is_err(), "signed by the first CA");

    let hangup =
        || assert!(Command::new("kill").args(["-HUP", &connector.0.id().to_string()]).status().unwrap().success());
    let dir = system.dir.path();
    // Half renewed (the certificate without its key): the pair in use stays.
    std::fs::copy(dir.join("other.pem"), dir.join("connector.pem")).unwrap();
    hangup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(login(&system.ca).unwrap(), "1", "still the first pair");
    std::fs::copy(dir.join("other.key"), dir.join("connector.key")).unwrap();
    hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while login(&system.other_ca).is_err() {
        assert!(Instant::now() < deadline, "the renewed certificate is not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(login(&system.ca).is_err(), "the first certificate is no longer offered");
    let log = std::fs::read_to_string(dir.join("connector.log")).unwrap();
    assert!(log.contains("kept the TLS certificate in use") && log.contains("TLS certificate read again"), "{log}");
}

/// Lets [`ROTATING`] log in over TCP with `password` only: a line at the top of pg_hba.conf
/// (trust for everyone else stays), put there once and checked each time, since other tests
/// write that file too.
fn password_only_role(password: &str) {
    ensure_role(ROTATING);
    psql_admin(&format!("set password_encryption = 'scram-sha-256'; alter role {ROTATING} password '{password}'"));
    let hba = psql_admin("show hba_file");
    let line = format!("host all {ROTATING} all scram-sha-256\n");
    for _ in 0..10 {
        let text = std::fs::read_to_string(&hba).unwrap();
        if !text.contains(&line) {
            let tmp = format!("{hba}.gatehouse-{}", std::process::id());
            std::fs::write(&tmp, format!("{line}{text}")).unwrap();
            std::fs::rename(&tmp, &hba).unwrap();
        }
        psql_admin("select pg_reload_conf()");
        std::thread::sleep(Duration::from_millis(300));
        let wrong = Command::new("psql")
            .args(["-X", "-h", "127.0.0.1", "-U", ROTATING, "-d", "postgres", "-c", "select 1"])
            .env("PGPASSWORD", "wrong")
            .output()
            .unwrap();
        if !wrong.status.success() {
            return;
        }
    }
    panic!("PostgreSQL still lets {ROTATING} in without its password");
}

/// A rotated password (the role's new one in its `password_file`) is used from the next login
/// after SIGHUP, without a restart; a configuration file that cannot be used then changes
/// nothing, and settings that take a restart are named.
#[tokio::test]
async fn a_rotated_password_is_used_after_sighup() {
    password_only_role("first-Secret-1");
    let system = System::new();
    let dir = system.dir.path();
    std::fs::write(dir.join("rotating.pw"), "first-Secret-1\n").unwrap();
    system.user("alice@example.com", &["dba"]);
    system.cli(&["resources", "grant", "pg", "--org", ORG, "--role", ROTATING, "--group", "dba"]);
    let alice = system.token("alice@example.com", "12h");
    let _server = system.serve();
    let connector = system.connector();
    let user = format!("idp:formal:human:alice@example.com@{ROTATING}");
    let login = || system.psql(system.proxy_port, &user, &alice, "sslmode=require", "select current_user");
    assert_eq!(login().unwrap(), ROTATING);

    psql_admin(&format!("set password_encryption = 'scram-sha-256'; alter role {ROTATING} password 'second-Secret-2'"));
    let refused = login().unwrap_err();
    assert!(refused.contains(ROTATING), "the connector's login fails: {refused}");
    std::fs::write(dir.join("rotating.pw"), "second-Secret-2\n").unwrap();
    let hangup =
        || assert!(Command::new("kill").args(["-HUP", &connector.0.id().to_string()]).status().unwrap().success());
    hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while login().is_err() {
        assert!(Instant::now() < deadline, "the rotated password is not used");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A file that cannot be used (a stray line): the passwords in use stay.
    let config = std::fs::read_to_string(&system.config).unwrap();
    std::fs::write(&system.config, format!("{config}\n[[credentials]\n")).unwrap();
    hangup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(login().unwrap(), ROTATING);
    // One that moves the admin port: read, but that takes a restart.
    let moved = config.replace(&format!("127.0.0.1:{}", system.admin_port), "127.0.0.1:1");
    std::fs::write(&system.config, moved).unwrap();
    hangup();
    let log = dir.join("connector.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log).unwrap().contains("apply at the next restart") {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(login().unwrap(), ROTATING);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("kept the passwords in use") && log.contains("passwords read again"), "{log}");
    assert!(log.contains("admin_listen") && !log.contains("listeners,"), "only the admin port changed: {log}");
    for secret in ["first-Secret-1", "second-Secret-2"] {
        assert!(!system.logs().contains(secret), "a password is in the logs");
    }
}

#[tokio::test]
async fn refused_identities_get_28p01_and_never_reach_the_database() {
    let system = System::new();
    for user in ["alice@example.com", "bob@example.com", "erin@example.com"] {
        system.user(user, &[]);
    }
    let good = system.token("alice@example.com", "12h");
    let expired = system.token("erin@example.com", "1s");
    let revoked = system.token("alice@example.com", "12h");
    let prefix = revoked.strip_prefix("ght_").unwrap().split('_').next().unwrap().to_owned();
    system.cli(&["users", "token", "revoke", &prefix, "--org", ORG]);
    let disabled = system.token("bob@example.com", "12h");
    system.cli(&["users", "disable", "bob@example.com", "--org", ORG]);
    std::thread::sleep(Duration::from_millis(1500));
    let _server = system.serve();
    let _connector = system.connector();

    let alice = "idp:formal:human:alice@example.com";
    let cases = [
        ("wrong token", alice.to_owned(), format!("{good}x"), "bad_token"),
        ("expired token", "idp:formal:human:erin@example.com".to_owned(), expired.clone(), "expired_token"),
        ("revoked token", alice.to_owned(), revoked.clone(), "revoked_token"),
        ("disabled user", "idp:formal:human:bob@example.com".to_owned(), disabled.clone(), "disabled_user"),
        ("role not allowed", format!("{alice}@postgres"), good.clone(), "role_not_allowed"),
        ("native user", "postgres".to_owned(), String::new(), "identity_required"),
    ];
    for (case, user, password, reason) in &cases {
        let error = system.psql(system.guarded_port, user, password, "sslmode=require", "select 1").unwrap_err();
        // A refused identity is told nothing more than a wrong password is; a plain login is
        // told it needs an identity (no password was checked).
        let expected = match *reason {
            "identity_required" => format!("FATAL:  Gatehouse accepts only identity logins here, not user \"{user}\""),
            _ => format!("FATAL:  password authentication failed for user \"{user}\""),
        };
        assert!(error.contains(&expected), "{case}: {error}");
    }
    assert_eq!(system.guarded_connections.load(Ordering::SeqCst), 0, "a refused login reached the database");

    let metrics = system.metrics().await;
    for (case, _, _, reason) in &cases {
        assert_eq!(failures(&metrics, reason), 1, "{case}: {metrics}");
    }
    // The good token works; only here does the connector open the (counting) upstream.
    let _ = system.psql(system.guarded_port, alice, &good, "sslmode=require", "select 1");
    assert_eq!(system.guarded_connections.load(Ordering::SeqCst), 1);

    let logs = system.logs();
    assert!(logs.contains("identity login refused"), "refusals are not logged");
    for secret in [good.as_str(), expired.as_str(), revoked.as_str(), disabled.as_str(), CREDENTIAL] {
        assert!(!logs.contains(secret), "a secret is in the logs");
    }
    // A login the database refuses is logged with what the client sent, and a line break in it
    // writes no line of the client's into the log.
    let user = b"gh_e2e_nobody\n2026-01-01T00:00:00Z ERROR forged: admin login ok";
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for part in [&b"user"[..], user, b"database", b"postgres", b""] {
        body.extend_from_slice(part);
        body.push(0);
    }
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", system.proxy_port)).unwrap();
    raw.write_all(&(body.len() as u32 + 4).to_be_bytes()).unwrap();
    raw.write_all(&body).unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).contains("does not exist"), "{answer:?}");
    let logs = system.logs();
    assert!(logs.contains("the database refused a login"), "{logs}");
    assert!(!logs.lines().any(|line| line.starts_with("2026-01-01T00:00:00Z")), "a forged line: {logs}");
    let none = system.sessions("").await;
    assert!(none.is_empty(), "refused logins left sessions: {none:?}");
}

#[tokio::test]
async fn a_revoked_token_stops_working_within_30_seconds_and_ends_its_sessions() {
    let system = System::new();
    system.user("alice@example.com", &[]);
    let token = system.token("alice@example.com", "12h");
    let _server = system.serve();
    let _connector = system.connector();
    let alice = "idp:formal:human:alice@example.com";
    assert_eq!(system.psql(system.proxy_port, alice, &token, "sslmode=require", "select 1").unwrap(), "1");
    // A session open with the token, running a statement.
    let open = Command::new("psql")
        .args(["-X", "-At", "-c", "select pg_sleep(120)"])
        .arg(format!("host=localhost port={} user={alice} dbname=postgres sslmode=require", system.proxy_port))
        .env("PGPASSWORD", &token)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    system.wait_sessions("session_status:active", 1).await;

    let prefix = token.strip_prefix("ght_").unwrap().split('_').next().unwrap().to_owned();
    system.cli(&["users", "token", "revoke", &prefix, "--org", ORG]);
    let revoked_at = Instant::now();
    let ended = tokio::task::spawn_blocking(move || open.wait_with_output().unwrap());
    loop {
        match system.psql(system.proxy_port, alice, &token, "sslmode=require", "select 1") {
            Ok(_) => assert!(revoked_at.elapsed() < Duration::from_secs(30), "the revoked token still works"),
            Err(error) => {
                assert!(error.contains("password authentication failed"), "{error}");
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(revoked_at.elapsed() <= Duration::from_secs(31));
    let ended = tokio::time::timeout(Duration::from_secs(30), ended).await.expect("the open session lasts").unwrap();
    let said = String::from_utf8_lossy(&ended.stderr);
    assert!(said.contains("access revoked: the access token was revoked"), "{said}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !system.sessions("session_status:active").await.is_empty() {
        assert!(Instant::now() < deadline, "the terminated session is still active");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
