//! `gatehouse users`, `users token`, `resources grant` and `apply` as an
//! administrator drives them, and a token issued by the CLI verified by a
//! running control plane.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn gatehouse(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command
        .env_remove("GATEHOUSE_API_KEY")
        .env_remove("GATEHOUSE_URL")
        .env_remove("GATEHOUSE_DATABASE_URL")
        .env("GATEHOUSE_DATA_DIR", data)
        .env("RUST_LOG", "warn");
    command
}

/// Runs `gatehouse ARGS` on the data directory; panics unless it succeeds.
fn ok(data: &Path, args: &[&str]) -> (String, String) {
    let output = gatehouse(data).args(args).output().expect("gatehouse runs");
    let (out, err) = texts(&output);
    assert!(output.status.success(), "{args:?} failed: {err}");
    (out, err)
}

/// Runs `gatehouse ARGS`; panics unless it fails. Returns stderr.
fn fails(data: &Path, args: &[&str]) -> String {
    let output = gatehouse(data).args(args).output().expect("gatehouse runs");
    let (out, err) = texts(&output);
    assert!(!output.status.success(), "{args:?} succeeded: {out}");
    err
}

/// Runs `gatehouse ARGS`; panics unless it exits 2, a mistake in the call. Returns stderr.
fn misused(data: &Path, args: &[&str]) -> String {
    let output = gatehouse(data).args(args).output().expect("gatehouse runs");
    let (out, err) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {out} {err}");
    err
}

fn texts(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The table row with `key` in one of its first three cells, as cells.
fn row(table: &str, key: &str) -> Vec<String> {
    table
        .lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells.iter().take(3).any(|c| c == key))
        .unwrap_or_else(|| panic!("no row for {key} in:\n{table}"))
}

fn is_token(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("ght_") else { return false };
    let Some((prefix, secret)) = rest.split_once('_') else { return false };
    prefix.len() == 10 && secret.len() == 40 && prefix.chars().chain(secret.chars()).all(|c| c.is_ascii_alphanumeric())
}

/// Every byte the store wrote, to look for secrets in.
fn store_bytes(data: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn users_tokens_and_grants_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (id, _) = ok(
        d,
        &[
            "users",
            "create",
            "--org",
            "acme",
            "--email",
            "alice@example.com",
            "--name",
            "Alice",
            "--group",
            "dba",
            "--group",
            "sre",
            "--external-id",
            "okta|00u1",
        ],
    );
    assert!(id.trim().starts_with("usr_"), "{id}");
    ok(d, &["users", "create", "--org", "acme", "--machine", "etl-nightly", "--group", "etl"]);
    let err = fails(d, &["users", "create", "--org", "acme", "--email", "ALICE@example.com"]);
    assert!(err.contains("exists already"), "{err}");
    let err = misused(d, &["users", "create", "--org", "acme", "--email", "not-an-email"]);
    assert!(err.contains("\"not-an-email\" is not an email address"), "{err}");
    misused(d, &["users", "create", "--org", "acme", "--machine", "bad@name"]);
    misused(d, &["users", "create", "--org", "acme", "--machine", "etl-2", "--name", "ETL"]);
    misused(d, &["users", "create", "--org", "acme", "--email", "x@example.com", "--group", " "]);
    fails(d, &["users", "create", "--org", "acme"]);
    fails(d, &["users", "create", "--org", "acme", "--email", "x@example.com", "--machine", "x"]);

    let (list, _) = ok(d, &["users", "list", "--org", "acme"]);
    let alice = row(&list, "alice@example.com");
    assert_eq!(alice[0], id.trim());
    assert_eq!(&alice[1..7], ["human", "alice@example.com", "Alice", "dba,sre", "okta|00u1", "enabled"]);
    let etl = row(&list, "etl-nightly");
    assert_eq!(&etl[1..6], ["machine", "etl-nightly", "-", "etl", "-"]);

    let (_, said) = ok(
        d,
        &["users", "update", "Alice@Example.com", "--org", "acme", "--add-group", "oncall", "--remove-group", "sre"],
    );
    assert!(!said.contains("nothing to remove"), "{said}");
    let (_, said) = ok(d, &["users", "update", "alice@example.com", "--org", "acme", "--remove-group", "sre"]);
    assert!(said.contains("is not in group \"sre\": nothing to remove"), "{said}");
    ok(d, &["users", "disable", "etl-nightly", "--org", "acme"]);
    let (list, _) = ok(d, &["users", "list", "--org", "acme"]);
    assert_eq!(row(&list, "alice@example.com")[4], "dba,oncall");
    assert_eq!(row(&list, "etl-nightly")[6], "disabled");
    ok(d, &["users", "update", "etl-nightly", "--org", "acme", "--enable"]);
    let (list, _) = ok(d, &["users", "list", "--org", "acme"]);
    assert_eq!(row(&list, "etl-nightly")[6], "enabled");
    fails(d, &["users", "update", "nobody@example.com", "--org", "acme", "--disable"]);

    // Tokens: printed once, stored only as a hash, listed without secrets.
    let before = std::time::SystemTime::now();
    let (token, err) = ok(d, &["users", "token", "create", "alice@example.com", "--org", "acme", "--ttl", "12h"]);
    let token = token.trim().to_owned();
    assert!(is_token(&token), "{token}");
    assert!(err.contains("expires: "), "the expiry is printed: {err}");
    let expires = err.split("expires: ").nth(1).unwrap().trim();
    let year = before.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 31_557_600 + 1970;
    assert!(expires.starts_with(&year.to_string()) || expires.starts_with(&(year + 1).to_string()), "{expires}");
    let prefix = &token[4..14];
    let secret = &token[15..];
    let (tokens, _) = ok(d, &["users", "token", "list", "alice@example.com", "--org", "acme"]);
    assert_eq!(row(&tokens, prefix).last().unwrap(), "active");
    assert!(!tokens.contains(secret), "token list never shows secrets");
    ok(d, &["users", "disable", "alice@example.com", "--org", "acme"]);
    let (tokens, _) = ok(d, &["users", "token", "list", "alice@example.com", "--org", "acme"]);
    assert!(row(&tokens, prefix).join(" ").ends_with("unusable: user disabled"), "{tokens}");
    ok(d, &["users", "update", "alice@example.com", "--org", "acme", "--enable"]);
    assert!(!contains(&store_bytes(d), secret), "the store keeps only the token's hash");
    misused(d, &["users", "token", "create", "alice@example.com", "--org", "acme", "--ttl", "0s"]);
    let err = misused(d, &["users", "token", "create", "alice@example.com", "--org", "acme", "--ttl", "400d"]);
    assert!(err.contains("\"400d\" is longer than a token may live, 366d"), "{err}");
    ok(d, &["users", "token", "create", "alice@example.com", "--org", "acme", "--ttl", "366d"]);
    fails(d, &["users", "token", "create", "nobody@example.com", "--org", "acme", "--ttl", "1h"]);

    ok(d, &["users", "token", "revoke", prefix, "--org", "acme"]);
    let (tokens, _) = ok(d, &["users", "token", "list", "alice@example.com", "--org", "acme"]);
    assert_eq!(row(&tokens, prefix)[5], "revoked");
    let (_, again) = ok(d, &["users", "token", "revoke", prefix, "--org", "acme"]);
    assert!(again.contains(&format!("Token {prefix} was revoked already, at ")), "{again}");
    fails(d, &["users", "token", "revoke", prefix, "--org", "globex"]);
    let unknown = fails(d, &["users", "token", "revoke", "AAAAAAAAAA", "--org", "acme"]);
    assert!(unknown.contains("no token with prefix \"AAAAAAAAAA\""), "{unknown}");

    // Default roles and grants.
    ok(
        d,
        &[
            "resources",
            "create",
            "--org",
            "acme",
            "--name",
            "orders-db",
            "--host",
            "127.0.0.1",
            "--default-role",
            "app_ro",
        ],
    );
    fails(d, &["resources", "create", "--org", "acme", "--name", "x-db", "--host", "h", "--default-role", "bad role"]);
    ok(d, &["resources", "grant", "orders-db", "--org", "acme", "--role", "app_rw", "--group", "dba"]);
    ok(d, &["resources", "grant", "orders-db", "--org", "acme", "--role", "admin", "--user", "alice@example.com"]);
    let (_, err) =
        ok(d, &["resources", "grant", "orders-db", "--org", "acme", "--role", "admin", "--user", "alice@example.com"]);
    assert!(err.contains("already"), "{err}");
    fails(d, &["resources", "grant", "orders-db", "--org", "acme", "--role", "admin"]);
    fails(
        d,
        &["resources", "grant", "orders-db", "--org", "acme", "--role", "admin", "--user", "a@b.c", "--group", "g"],
    );
    fails(d, &["resources", "grant", "orders-db", "--org", "acme", "--role", "admin", "--user", "nobody@example.com"]);
    fails(d, &["resources", "grant", "no-such-db", "--org", "acme", "--role", "admin", "--group", "dba"]);
    let (resources, _) = ok(d, &["resources", "list", "--org", "acme"]);
    let orders = row(&resources, "orders-db");
    assert_eq!((orders[4].as_str(), orders[5].as_str()), ("app_ro", "2"), "{resources}");
    // Who may be which role, one row each.
    let (grants, _) = ok(d, &["resources", "grants", "orders-db", "--org", "acme"]);
    let lines: Vec<Vec<&str>> =
        grants.lines().map(|l| l.split("  ").filter(|c| !c.is_empty()).map(str::trim).collect()).collect();
    assert_eq!(
        lines,
        [
            vec!["RESOURCE", "ROLE", "KIND", "WHO", "NOTE"],
            vec!["orders-db", "app_ro", "default", "everyone"],
            vec!["orders-db", "app_rw", "group", "dba", "1 member"],
            vec!["orders-db", "admin", "human", "alice@example.com"],
        ],
        "{grants}"
    );
    assert_eq!(ok(d, &["resources", "grants", "--org", "acme"]).0, grants, "every resource: this one only");
    let (jsonl, _) = ok(d, &["resources", "grants", "orders-db", "--org", "acme", "--output", "jsonl"]);
    let rows: Vec<serde_json::Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows[2]["kind"], "human", "{jsonl}");
    assert_eq!(rows[2]["who"], "alice@example.com", "{jsonl}");
    fails(d, &["resources", "grants", "no-such-db", "--org", "acme"]);
    ok(d, &["resources", "revoke-grant", "orders-db", "--org", "acme", "--role", "app_rw", "--group", "dba"]);
    fails(d, &["resources", "revoke-grant", "orders-db", "--org", "acme", "--role", "app_rw", "--group", "dba"]);
    let (resources, _) = ok(d, &["resources", "list", "--org", "acme"]);
    assert_eq!(row(&resources, "orders-db")[5], "1");
    // A group nobody is in (a slip of the keyboard) gives nobody anything: the listing says so.
    ok(d, &["resources", "grant", "orders-db", "--org", "acme", "--role", "app_rw", "--group", "dbas"]);
    let (jsonl, _) = ok(d, &["resources", "grants", "orders-db", "--org", "acme", "--output", "jsonl"]);
    assert!(jsonl.lines().any(|l| l.contains(r#""who":"dbas""#) && l.contains(r#""note":"no members""#)), "{jsonl}");
}

const FILE: &str = r#"
users:
  - email: alice@example.com
    name: Alice
    groups: [dba, sre]
    external_ids: ["okta|00u1"]
  - email: bob@example.com
    groups: [dev]
  - machine: etl-nightly
    groups: [etl]
    disabled: true
resources:
  - name: orders-db
    default_role: app_ro
    grants:
      - { role: app_rw, group: dba }
      - { role: admin, user: alice@example.com }
"#;

#[test]
fn apply_is_idempotent_and_a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("identities.yaml");
    std::fs::write(&file, FILE).unwrap();
    let file = file.to_str().unwrap();
    ok(d, &["resources", "create", "--org", "acme", "--name", "orders-db", "--host", "127.0.0.1"]);

    let expected = [
        "+ user alice@example.com (name \"Alice\"; groups dba, sre; external ids okta|00u1)",
        "+ user bob@example.com (groups dev)",
        "+ user etl-nightly (groups etl; disabled)",
        "~ resource orders-db: default role app_ro",
        "+ grant orders-db: admin to user alice@example.com",
        "+ grant orders-db: app_rw to group dba",
    ];
    let (planned, _) = ok(d, &["apply", "-f", file, "--org", "acme", "--dry-run"]);
    assert_eq!(planned.lines().collect::<Vec<_>>(), expected);
    let (list, _) = ok(d, &["users", "list", "--org", "acme"]);
    assert_eq!(list.lines().count(), 1, "a dry run creates nobody:\n{list}");
    let (resources, _) = ok(d, &["resources", "list", "--org", "acme"]);
    assert_eq!(&row(&resources, "orders-db")[4..6], ["-", "0"], "a dry run sets no role");

    let (applied, _) = ok(d, &["apply", "-f", file, "--org", "acme"]);
    assert_eq!(applied.lines().collect::<Vec<_>>(), expected);
    let (list, _) = ok(d, &["users", "list", "--org", "acme"]);
    assert_eq!(&row(&list, "alice@example.com")[3..7], ["Alice", "dba,sre", "okta|00u1", "enabled"]);
    assert_eq!(row(&list, "etl-nightly")[6], "disabled");
    let (resources, _) = ok(d, &["resources", "list", "--org", "acme"]);
    assert_eq!(&row(&resources, "orders-db")[4..6], ["app_ro", "2"]);

    let (again, err) = ok(d, &["apply", "-f", file, "--org", "acme"]);
    assert_eq!(again, "", "a second apply changes nothing");
    assert!(err.contains("Nothing to change"), "{err}");

    // Changes made elsewhere are put back, and edits show as changes.
    ok(d, &["users", "update", "bob@example.com", "--org", "acme", "--add-group", "ops"]);
    let edited = FILE
        .replace("groups: [dev]", "groups: [dev, dba]")
        .replace(
            "      - { role: admin, user: alice@example.com }\n",
            "      - { role: reader, user: bob@example.com }\n",
        )
        .replace("default_role: app_ro", "default_role: app_rw");
    std::fs::write(d.join("identities.yaml"), &edited).unwrap();
    let (changed, _) = ok(d, &["apply", "-f", file, "--org", "acme", "--dry-run"]);
    let changes = [
        "~ user bob@example.com: groups +dba -ops",
        "~ resource orders-db: default role app_ro -> app_rw",
        "- grant orders-db: admin to user alice@example.com",
        "+ grant orders-db: reader to user bob@example.com",
    ];
    assert_eq!(changed.lines().collect::<Vec<_>>(), changes);
    let (applied, _) = ok(d, &["apply", "-f", file, "--org", "acme"]);
    assert_eq!(applied.lines().collect::<Vec<_>>(), changes);
    let (list, _) = ok(d, &["users", "list", "--org", "acme"]);
    assert_eq!(row(&list, "bob@example.com")[4], "dba,dev");
    let (again, err) = ok(d, &["apply", "-f", file, "--org", "acme"]);
    assert_eq!(again, "");
    assert!(!err.contains("Not in"), "{err}");

    // A user whose line is deleted keeps their access: said, not done.
    std::fs::write(d.join("alice.yaml"), "users:\n  - email: alice@example.com\n").unwrap();
    let (_, err) = ok(d, &["apply", "-f", d.join("alice.yaml").to_str().unwrap(), "--org", "acme", "--dry-run"]);
    assert!(err.contains("kept as they are, enabled: bob@example.com (to stop one"), "{err}");

    // A mistake anywhere in the file changes nothing.
    let broken = edited.replace("groups: [dev, dba]", "groups: [dev]") + "  - name: no-such-db\n";
    std::fs::write(d.join("identities.yaml"), broken).unwrap();
    let err = fails(d, &["apply", "-f", file, "--org", "acme"]);
    assert!(err.contains("no-such-db"), "{err}");
    let (list, _) = ok(d, &["users", "list", "--org", "acme"]);
    assert_eq!(row(&list, "bob@example.com")[4], "dba,dev", "nothing was applied");
    std::fs::write(d.join("identities.yaml"), "users:\n  - email: a@example.com\n    grups: [x]\n").unwrap();
    let err = fails(d, &["apply", "-f", file, "--org", "acme"]);
    assert!(err.contains("grups"), "unknown fields are refused: {err}");
}

/// A child process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// POSTs Connect JSON over a plain socket (HTTP/1.0: no chunked body to
/// decode); returns (status, body).
fn post(addr: &str, path: &str, key: &str, body: &Value) -> std::io::Result<(u16, Value)> {
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-API-KEY: {key}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

#[test]
fn a_token_from_the_cli_verifies_until_it_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["users", "create", "--org", "acme", "--email", "alice@example.com", "--group", "dba"]);
    let (resource, _) = ok(
        d,
        &["resources", "create", "--org", "acme", "--name", "orders-db", "--host", "h", "--default-role", "app_ro"],
    );
    ok(d, &["resources", "grant", "orders-db", "--org", "acme", "--role", "app_rw", "--group", "dba"]);
    let (key, _) = ok(d, &["connectors", "create", "--org", "acme", "--name", "edge"]);
    let (token, _) = ok(d, &["users", "token", "create", "alice@example.com", "--org", "acme", "--ttl", "1h"]);
    let token = token.trim();

    let addr = format!("127.0.0.1:{}", TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let _server = Running(
        gatehouse(d).args(["serve", "--listen", &addr]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    );
    let path = "/gatehouse.connector.v1.ConnectorService/VerifyIdentity";
    let request = |role: &str| {
        json!({"resourceId": resource.trim(), "userType": "human", "user": "alice@example.com", "token": token,
               "requestedRole": role})
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        match post(&addr, path, key.trim(), &request("app_rw")) {
            Ok(answer) => break answer,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the server never answered: {e}"),
        }
    };
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["allowed"], true, "{}", answer.1);
    assert_eq!(answer.1["nativeRole"], "app_rw");
    assert_eq!(answer.1["user"]["email"], "alice@example.com");
    assert_eq!(answer.1["user"]["groups"], json!(["dba"]));
    let (_, denied) = post(&addr, path, key.trim(), &request("admin")).unwrap();
    assert_eq!(denied["deniedReason"], "role_not_allowed", "{denied}");

    ok(d, &["users", "token", "revoke", &token[4..14], "--org", "acme"]);
    let (_, revoked) = post(&addr, path, key.trim(), &request("")).unwrap();
    assert_eq!(revoked["allowed"], Value::Null, "false is omitted in JSON: {revoked}");
    assert_eq!(revoked["deniedReason"], "revoked_token", "{revoked}");
}

/// Runs `gatehouse ARGS` with `input` on its standard input.
fn with_input(data: &Path, args: &[&str], input: &str) -> Output {
    let mut command = gatehouse(data);
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_dry_run_changes_nothing_not_even_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("nowhere");
    let file = d.join("identities.yaml");
    std::fs::write(&file, "users:\n  - email: alice@example.com\n").unwrap();
    let file = file.to_str().unwrap();

    let err = fails(d, &["apply", "-f", file, "--org", "acme", "--dry-run", "--data-dir", missing.to_str().unwrap()]);
    assert!(err.contains("there is no store at"), "{err}");
    assert!(!missing.exists(), "a dry run creates no store");

    ok(d, &["keys", "create", "--org", "other"]);
    let (planned, err) = ok(d, &["apply", "-f", file, "--org", "acme", "--dry-run"]);
    assert_eq!(planned, "+ user alice@example.com\n");
    assert!(err.contains("Organization \"acme\" does not exist yet: applying creates it"), "{err}");
    assert!(fails(d, &["users", "list", "--org", "acme"]).contains("no organization named \"acme\""));

    // A store that needs a migration is left for `gatehouse migrate`.
    let sql = "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)";
    let status = Command::new("sqlite3").arg(d.join("gatehouse.db")).arg(sql).status();
    assert!(status.expect("sqlite3 (scripts/test installs it)").success());
    let err = fails(d, &["apply", "-f", file, "--org", "other", "--dry-run"]);
    assert!(err.contains("the store has 1 migration(s) to apply first"), "{err}");
    let check = gatehouse(d).args(["migrate", "--check"]).output().expect("gatehouse runs");
    assert!(!check.status.success(), "a migration is pending");
    assert!(texts(&check).0.contains("pending: "), "the migration still to apply is listed on stdout");
}

#[test]
fn apply_names_the_organization_and_the_input_as_other_commands_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for blank in ["", "  "] {
        let err = fails(d, &["apply", "-f", "-", "--org", blank]);
        assert!(err.contains("must not be empty"), "{blank:?}: {err}");
    }

    let created = with_input(d, &["apply", "-f", "-", "--org", "acme"], "users:\n  - machine: etl\n");
    let (out, err) = texts(&created);
    assert!(created.status.success(), "{err}");
    assert_eq!(out, "+ user etl\n");
    assert!(err.contains("Created organization \"acme\": it did not exist yet."), "{err}");

    let again = with_input(d, &["apply", "-f", "-", "--org", "acme"], "users:\n  - machine: etl\n");
    assert!(texts(&again).1.contains("Nothing to change: standard input is applied."), "{}", texts(&again).1);

    let list = with_input(d, &["apply", "-f", "-", "--org", "acme"], "- machine: etl\n");
    let err = texts(&list).1;
    assert!(!list.status.success());
    assert!(err.contains("the YAML from standard input is not valid"), "{err}");
    assert!(err.contains("expected a mapping of `users:` and `resources:` lists") && !err.contains("Spec"), "{err}");
}

/// A file that is not YAML is told as such, where, rather than as the shape its first
/// characters began.
#[test]
fn apply_names_a_yaml_syntax_error_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (input, line) in [("[unclosed", "line 2"), ("users:\n  - email: a@example.com\n    groups: [x\n", "line 4")] {
        let out = with_input(d, &["apply", "-f", "-", "--org", "acme"], input);
        let err = texts(&out).1;
        assert!(!out.status.success(), "{input:?}");
        assert!(err.contains("the YAML from standard input is not valid"), "{input:?}: {err}");
        assert!(err.contains(line) && !err.contains("invalid type"), "{input:?}: {err}");
    }
}

/// `apply` to a new organization creates it only when the file applies: one that names a
/// resource the organization cannot have yet, or nothing at all, leaves no empty
/// organization behind.
#[test]
fn a_failed_apply_creates_no_organization() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["keys", "create", "--org", "acme"]);
    let file = d.join("access.yaml");
    std::fs::write(&file, "users:\n  - email: a@example.com\nresources:\n  - name: orders-db\n").unwrap();
    let err = fails(d, &["apply", "-f", file.to_str().unwrap(), "--org", "newco"]);
    assert!(err.contains("no resource \"orders-db\"") && !err.contains("Created organization"), "{err}");
    let err = misused(d, &["users", "list", "--org", "newco"]);
    assert!(err.contains("no organization named \"newco\""), "{err}");

    std::fs::write(&file, "users: []\n").unwrap();
    let (_, err) = ok(d, &["apply", "-f", file.to_str().unwrap(), "--org", "newco"]);
    assert!(err.contains("organization \"newco\" was not created"), "{err}");
    misused(d, &["users", "list", "--org", "newco"]);

    // A slip for an existing organization is told before the file is looked at.
    let err = misused(d, &["apply", "-f", file.to_str().unwrap(), "--org", "amce"]);
    assert!(err.contains("did you mean \"acme\"?"), "{err}");

    std::fs::write(&file, "users:\n  - email: a@example.com\n").unwrap();
    let (out, err) = ok(d, &["apply", "-f", file.to_str().unwrap(), "--org", "newco"]);
    assert_eq!(out, "+ user a@example.com\n");
    assert!(err.contains("Created organization \"newco\""), "{err}");
    ok(d, &["users", "list", "--org", "newco"]);
}

/// What `apply` refuses in its file (an invalid email, machine name or role name, a user
/// listed twice) is a mistake in what it was given: exit 2, as `users create --email bad`.
#[test]
fn a_file_apply_cannot_apply_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["resources", "create", "--org", "acme", "--name", "orders-db", "--host", "127.0.0.1"]);
    for (yaml, said) in [
        ("users:\n  - email: not-an-email\n", "users[0]: "),
        ("users:\n  - machine: \"etl nightly\"\n", "users[0]: "),
        ("resources:\n  - name: orders-db\n    default_role: \"app ro\"\n", "resources[0].default_role: "),
        ("resources:\n  - name: orders-db\n    grants:\n      - { role: \"a b\", group: dba }\n", "grants[0]: "),
        ("users:\n  - machine: etl\n  - machine: etl\n", "appears twice"),
        ("users:\n  - email: a@example.com\n    grups: [x]\n", "unknown field `grups`"),
    ] {
        let out = with_input(d, &["apply", "-f", "-", "--org", "acme"], yaml);
        let (_, err) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(err.contains(said), "{yaml}: {err}");
    }
    let err = misused(d, &["users", "create", "--org", "acme", "--email", "not-an-email"]);
    assert!(!err.is_empty());
}
