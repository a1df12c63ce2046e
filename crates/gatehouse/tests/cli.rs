//! The `gatehouse` binary as a user drives it: seed, keys, serve, sessions, dev.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn gatehouse() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command.env_remove("GATEHOUSE_API_KEY").env_remove("GATEHOUSE_URL").env("RUST_LOG", "warn");
    command
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("gatehouse runs");
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::blocking_get(&format!("{url}/health")).is_ok_and(|body| body == "ok\n") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} never became healthy");
}

mod reqwest {
    /// A minimal blocking GET over a raw socket; the tests need nothing more.
    pub fn blocking_get(url: &str) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
        let mut stream = std::net::TcpStream::connect(host)?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
    }
}

fn serve(data_dir: &Path) -> (Running, String) {
    serve_with(data_dir, &[])
}

/// `serve` on `data_dir` with other `flags` too, once healthy.
fn serve_with(data_dir: &Path, flags: &[&str]) -> (Running, String) {
    let port = free_port();
    let child = gatehouse()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(flags)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url);
    (Running(child), url)
}

/// A store of organization `acme` with `completed` and `active` sessions, served, and an
/// admin key for it.
fn seeded_server(completed: usize, active: usize) -> (tempfile::TempDir, Running, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (completed, active) = (completed.to_string(), active.to_string());
    run(gatehouse()
        .args(["seed", "--org", "acme", "--sessions", &completed, "--active", &active, "--data-dir"])
        .arg(data));
    let key = stdout(&run(gatehouse().args(["keys", "create", "--org", "acme", "--data-dir"]).arg(data)));
    let (server, url) = serve(data);
    (dir, server, url, key.trim().to_owned())
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn keys_serve_and_sessions_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    run(gatehouse().args(["seed", "--org", "acme", "--sessions", "300", "--active", "5", "--data-dir"]).arg(data));
    // Its sessions' resources are registered, with their sessions' server address as host, once.
    run(gatehouse().args(["seed", "--org", "acme", "--sessions", "0", "--active", "0", "--data-dir"]).arg(data));
    // Another organization seeded in the same store leaves the resources' ids to the first.
    run(gatehouse().args(["seed", "--org", "globex", "--sessions", "0", "--active", "0", "--data-dir"]).arg(data));
    let resources = json_lines(&stdout(&run(gatehouse()
        .args(["resources", "list", "--org", "acme", "-o", "jsonl", "--data-dir"])
        .arg(data))));
    assert_eq!(resources.len(), 30, "{resources:?}");
    let orders = resources.iter().find(|r| r["name"] == "orders-db-prod").unwrap();
    assert_eq!((&orders["id"], &orders["address"]), (&json!("res_0001"), &json!("10.20.1.10:5432")), "{orders}");
    // And the people and machines the sessions name, with their ids, once.
    let users = json_lines(&stdout(&run(gatehouse()
        .args(["users", "list", "--org", "acme", "-o", "jsonl", "--data-dir"])
        .arg(data))));
    let alice = users.iter().find(|u| u["user"] == "alice.smith@example.com").expect("a demo user");
    assert_eq!((&alice["id"], &alice["type"]), (&json!("user_0001"), &json!("human")), "{alice}");
    assert!(users.iter().any(|u| u["user"] == "etl-nightly" && u["type"] == "machine"), "{users:?}");
    let globex = json_lines(&stdout(&run(gatehouse()
        .args(["users", "list", "--org", "globex", "-o", "jsonl", "--data-dir"])
        .arg(data))));
    assert!(globex.is_empty(), "the ids are the first organization's");

    let created = run(gatehouse()
        .args(["keys", "create", "--org", "acme", "--role", "reader", "--name", "ci", "--data-dir"])
        .arg(data));
    let key = stdout(&created).trim().to_owned();
    assert!(key.starts_with("gh_") && key.len() > 50, "{key}");
    // A slip in an organization's name makes no new organization, nor a key for it.
    let typo = gatehouse().args(["keys", "create", "--org", "acem", "--data-dir"]).arg(data).output().unwrap();
    assert!(typo.status.code() == Some(2) && stdout(&typo).is_empty(), "{:?} {}", typo.status, stdout(&typo));
    assert!(stderr(&typo).contains("no organization named \"acem\"; did you mean \"acme\"?"), "{}", stderr(&typo));
    let typo = gatehouse().args(["keys", "list", "--org", "acem", "--data-dir"]).arg(data).output().unwrap();
    assert_eq!(typo.status.code(), Some(2), "a read of a mistyped organization is a usage error too");
    assert!(stderr(&typo).contains("no organization named \"acem\"; did you mean \"acme\"?"), "{}", stderr(&typo));
    let prefix = key.split('_').nth(1).unwrap().to_owned();
    let listed = stdout(&run(gatehouse().args(["keys", "list", "--org", "acme", "--data-dir"]).arg(data)));
    assert!(listed.contains(&prefix) && listed.contains("reader") && listed.contains("ci"), "{listed}");
    assert!(!listed.contains(&key[4 + prefix.len()..]), "keys list never shows secrets");
    // The same, for scripts: one object per line, keyed by the columns, `-` as null.
    let listed = json_lines(&stdout(&run(gatehouse()
        .args(["keys", "list", "--org", "acme", "-o", "json", "--data-dir"])
        .arg(data))));
    let ci = listed.iter().find(|k| k["prefix"] == prefix.as_str()).unwrap();
    assert_eq!(
        (&ci["name"], &ci["role"], &ci["revoked"]),
        (&json!("ci"), &json!("reader"), &Value::Null),
        "{listed:?}"
    );
    assert!(ci["last_used"].is_null() && ci["created"].as_str().unwrap().ends_with('Z'), "{ci}");
    run(gatehouse().args(["connectors", "create", "--org", "acme", "--name", "edge", "--data-dir"]).arg(data));
    let listed =
        stdout(&run(gatehouse().args(["connectors", "list", "--org", "acme", "-o", "jsonl", "--data-dir"]).arg(data)));
    let edge = &json_lines(&listed)[0];
    assert_eq!(
        (&edge["name"], &edge["last_heard"], &edge["processes"]),
        (&json!("edge"), &Value::Null, &json!(0)),
        "{edge}"
    );
    // By its id, the first column of the list, as well as by its name.
    let id = edge["id"].as_str().unwrap();
    let rotated = run(gatehouse()
        .args(["connectors", "rotate-key", id, "--org", "acme", "--overlap", "1h", "--data-dir"])
        .arg(data));
    let new_key = stdout(&rotated).trim().to_owned();
    assert!(new_key.starts_with("ghc_"), "the new key alone on stdout");
    let note = String::from_utf8_lossy(&rotated.stderr);
    assert!(note.contains("the old one works until") && note.contains("restart the connector"), "{note}");
    let listed =
        stdout(&run(gatehouse().args(["connectors", "list", "--org", "acme", "-o", "jsonl", "--data-dir"]).arg(data)));
    let edge = &json_lines(&listed)[0];
    assert_eq!(edge["old_key_prefix"].as_str().map(str::len), Some(10), "{edge}");
    assert!(edge["old_key_until"].as_str().is_some_and(|at| at.ends_with('Z') && !at.contains(' ')), "{edge}");
    // A key pasted in its stead, a leaked one's, is not repeated: only its prefix.
    let secret = |key: &str| key.rsplit('_').next().unwrap().to_owned();
    let unknown = "ghc_AAAAAAAAAA_notakeyofthisorganization";
    let refused = gatehouse().args(["connectors", "revoke", unknown, "--org", "acme", "--data-dir"]).arg(data).output();
    let refused = refused.unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("prefix \"AAAAAAAAAA\"") && !stderr(&refused).contains(&secret(unknown)));
    // Revoked by its key, it says so, with no key prefix to look for.
    let revoked = run(gatehouse().args(["connectors", "revoke", &new_key, "--org", "acme", "--data-dir"]).arg(data));
    assert!(stderr(&revoked).contains("connector \"edge\"") && !stderr(&revoked).contains(&secret(&new_key)));
    let listed =
        stdout(&run(gatehouse().args(["connectors", "list", "--org", "acme", "-o", "jsonl", "--data-dir"]).arg(data)));
    let edge = &json_lines(&listed)[0];
    assert!(edge["revoked"].as_str().is_some_and(|at| at.ends_with('Z')), "{edge}");
    assert_eq!((&edge["key_prefix"], &edge["old_key_until"]), (&Value::Null, &Value::Null), "{edge}");
    // Revoked again, it says it was already, and changes nothing.
    let again = run(gatehouse().args(["connectors", "revoke", "edge", "--org", "acme", "--data-dir"]).arg(data));
    assert!(stderr(&again).contains("was revoked already, at"), "{}", stderr(&again));
    let listed =
        stdout(&run(gatehouse().args(["connectors", "list", "--org", "acme", "-o", "jsonl", "--data-dir"]).arg(data)));
    assert_eq!(json_lines(&listed)[0]["revoked"], edge["revoked"], "the first revocation's time stays");

    let (_server, url) = serve(data);
    let client = |args: &[&str]| {
        let mut command = gatehouse();
        command.arg("sessions").args(args).env("GATEHOUSE_URL", &url).env("GATEHOUSE_API_KEY", &key);
        command
    };

    let page = json_lines(&stdout(&run(&mut client(&["list", "--limit", "5", "--output", "json"]))));
    assert_eq!(page.len(), 5);
    // An empty GATEHOUSE_CA_FILE names no CA file, as an unset one does.
    let mut empty_ca_file = client(&["list", "--limit", "1", "-o", "json"]);
    assert_eq!(json_lines(&stdout(&run(empty_ca_file.env("GATEHOUSE_CA_FILE", "")))).len(), 1);

    let all = json_lines(&stdout(&run(&mut client(&["list", "--all", "--limit", "70", "-o", "json"]))));
    let mut ids: Vec<&str> = all.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 305, "--all walks every page exactly once");

    let postgres =
        json_lines(&stdout(&run(&mut client(&["list", "--all", "-q", "technology:postgres", "-o", "json"]))));
    assert!(!postgres.is_empty() && postgres.len() < 305);
    assert!(postgres.iter().all(|s| s["resource"]["technology"] == "postgres"));
    // The query language's NOT as a leading `-` is a query, not a flag.
    let others = json_lines(&stdout(&run(&mut client(&["list", "--all", "-q", "-technology:postgres", "-o", "json"]))));
    assert_eq!(others.len() + postgres.len(), 305);

    let recent = json_lines(&stdout(&run(&mut client(&["list", "--all", "--since", "1h", "-o", "json"]))));
    assert!(recent.len() < 305 && recent.iter().any(|s| s["sessionStatus"] == "active"));

    let id = page[0]["id"].as_str().unwrap();
    let got = json_lines(&stdout(&run(&mut client(&["get", id]))));
    assert_eq!(
        got[0],
        page[0]
            .clone()
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("duration".into(), got[0]["duration"].clone());
                Value::Object(o)
            })
            .unwrap()
    );

    let table = stdout(&run(&mut client(&["list", "--limit", "3"])));
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert_eq!(table.lines().count(), 4);
    let none = run(&mut client(&["list", "-q", "user:nobody-at-all"]));
    assert_eq!(stdout(&none).lines().count(), 1, "the header");
    assert!(String::from_utf8_lossy(&none.stderr).contains("No sessions match the query"), "{none:?}");

    let bad = client(&["list", "-q", "duration:abc"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "a query the control plane cannot read is the caller's mistake");
    let error = String::from_utf8_lossy(&bad.stderr);
    assert!(error.contains("invalid_argument") && error.contains("duration"), "{error}");

    run(gatehouse().args(["keys", "revoke", &prefix, "--org", "acme", "--data-dir"]).arg(data));
    let revoked = client(&["list"]).output().unwrap();
    assert!(!revoked.status.success());
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("revoked"));
}

/// Reads `gatehouse dev` output up to the curl example and returns the key it printed.
fn dev_key(child: &mut Child) -> String {
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut key = None;
    let mut lines = out.lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(k) = line.trim().strip_prefix("admin API key:") {
            key = Some(k.trim().to_owned());
        }
        if line.contains("gatehouse sessions list") {
            break;
        }
    }
    // Keep reading, so that dev never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    key.expect("dev prints the admin key")
}

#[test]
fn dev_prints_a_working_key_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let start = || {
        gatehouse()
            .args(["dev", "--demo", "--demo-sessions", "200", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = Running(start());
    let key = dev_key(&mut first.0);
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url);
    let listed = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["sessions", "list", "--all", "-o", "json"])
        .env("GATEHOUSE_URL", &url)
        .env("GATEHOUSE_API_KEY", &key)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let count = String::from_utf8_lossy(&listed.stdout).lines().count();
    assert!(count > 200, "demo sessions, active ones included: {count}");
    drop(first);

    let mut second = Running(start());
    assert_eq!(dev_key(&mut second.0), key, "a second run reuses the saved key and does not seed twice");
    wait_healthy(&url);
}

/// How many sessions the API itself walks for `query` (ListSessionsV2 over
/// Connect JSON, summing each page's `listMetadata.count`).
fn api_count(url: &str, key: &str, query: &str) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let http = ::reqwest::Client::new();
        let (mut total, mut cursor) = (0, String::new());
        loop {
            let body = serde_json::json!({"limit": 1000, "query": query, "cursor": cursor});
            let page: Value = http
                .post(format!("{url}/core.v1.SessionsService/ListSessionsV2"))
                .header("X-API-KEY", key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            total += page["listMetadata"]["count"].as_u64().unwrap_or(0) as usize;
            match page["listMetadata"]["nextCursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = next.to_owned(),
                _ => return total,
            }
        }
    })
}

#[test]
fn export_jsonl_and_csv_walk_every_page() {
    let (_dir, _server, url, key) = seeded_server(450, 7);
    let key = key.as_str();
    let export = |query: &str, format: &str| {
        let mut command = gatehouse();
        command
            .args(["sessions", "list", "--all", "--limit", "60", "-q", query, "--output", format])
            .env("GATEHOUSE_URL", &url)
            .env("GATEHOUSE_API_KEY", key);
        stdout(&run(&mut command))
    };

    for query in ["", "technology:postgres", "session_status:active"] {
        let expected = api_count(&url, key, query);
        assert!(expected > 0, "{query:?} matches something");

        let jsonl = json_lines(&export(query, "jsonl"));
        assert_eq!(jsonl.len(), expected, "jsonl rows for {query:?}");
        let ids = |lines: &[Value]| lines.iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        // Ids, not whole objects: an active session's duration grows between two walks.
        assert_eq!(ids(&json_lines(&export(query, "json"))), ids(&jsonl), "json is an alias of jsonl");

        let text = export(query, "csv");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(&header[..4], ["id", "session_status", "start_time", "end_time"]);
        let rows: Vec<csv::StringRecord> = reader.records().map(|row| row.expect("CSV parses")).collect();
        assert_eq!(rows.len(), expected, "csv rows for {query:?}");
        let column = |name: &str| header.iter().position(|h| h == name).unwrap();
        // Same sessions in the same order, each field flattened from the JSON form.
        for (row, json) in rows.iter().zip(&jsonl) {
            assert_eq!(row.len(), header.len());
            assert_eq!(&row[column("id")], json["id"].as_str().unwrap());
            assert_eq!(&row[column("user_email")], json["user"]["formal"]["user"]["email"].as_str().unwrap_or(""));
            assert_eq!(&row[column("resource_technology")], json["resource"]["technology"].as_str().unwrap());
        }
        if query == "technology:postgres" {
            assert!(rows.iter().all(|row| &row[column("resource_technology")] == "postgres"));
            assert!(expected < 457);
        }
        if query == "session_status:active" {
            assert_eq!(expected, 7);
            assert!(rows.iter().all(|row| row[column("end_time")].is_empty()));
        }
    }
}

#[test]
fn a_page_as_large_as_the_limit_allows_and_errors_that_say_what_to_do() {
    // Over 4 MiB in one response, connectrpc's default limit for a client.
    let (_dir, _server, url, key) = seeded_server(15000, 0);
    let key = key.as_str();
    let client = |url: &str, args: &[&str]| {
        let mut command = gatehouse();
        command.arg("sessions").args(args).env("GATEHOUSE_URL", url).env("GATEHOUSE_API_KEY", key);
        command.output().unwrap()
    };

    let page = client(&url, &["list", "--limit", "15000", "-o", "jsonl"]);
    assert!(page.status.success(), "{}", String::from_utf8_lossy(&page.stderr));
    assert_eq!(json_lines(&stdout(&page)).len(), 15000);

    // A cut export says so, as the table does.
    let cut = client(&url, &["list", "--limit", "10", "-o", "csv"]);
    assert!(cut.status.success());
    assert_eq!(stdout(&cut).lines().count(), 11);
    assert!(String::from_utf8_lossy(&cut.stderr).contains("More sessions match"));

    let closed = format!("http://127.0.0.1:{}", free_port());
    // Connections are taken (by the kernel's backlog) and never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", silent.local_addr().unwrap());
    // A failure exits 1; a mistake in the call (the URL, the key, the query typed) exits 2.
    for (url, args, code, expected) in [
        (closed.as_str(), &["list"][..], 1, format!("cannot reach the control plane at {closed}")),
        (
            silent.as_str(),
            &["list", "--timeout", "1s"],
            1,
            format!("no answer from the control plane at {silent} within 1s"),
        ),
        ("127.0.0.1:7400", &["list"], 2, "must start with http://".to_owned()),
        ("ftp://127.0.0.1:7400", &["list"], 2, "must start with http:// or https://".to_owned()),
        ("http://", &["list"], 2, "is not a URL such as http://127.0.0.1:7400".to_owned()),
        (url.as_str(), &["list", "-q", "NOT"], 2, "quote it: \"NOT\"".to_owned()),
        (url.as_str(), &["list", "-q", "(a OR"], 2, "invalid query: ".to_owned()),
        (url.as_str(), &["list", "-q", "nosuchfield:x"], 2, "invalid query: ".to_owned()),
        (url.as_str(), &["watch", "-q", "nosuchfield:x"], 2, "invalid query: ".to_owned()),
        (url.as_str(), &["list", "--api-key", "gh_a\nb"], 2, "characters no key has".to_owned()),
    ] {
        let out = client(url, args);
        let error = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {error}");
        assert!(error.starts_with("error: ") && error.contains(&expected), "{url} {args:?}: {error}");
        // Nothing listening gets a line of advice.
        let advice = url == closed;
        assert_eq!(error.lines().count(), 1 + usize::from(advice), "{error}");
        assert_eq!(error.contains("is the control plane running"), advice, "{error}");
    }
    let mut no_key = gatehouse();
    no_key.args(["sessions", "list"]).env("GATEHOUSE_URL", &url);
    let out = no_key.output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("set GATEHOUSE_API_KEY or pass --api-key"));
    assert_eq!(out.status.code(), Some(2), "no key given is a mistake in the call");

    // The transcript of a session with no statements says so, on stderr only.
    let id = json_lines(&stdout(&page))[0]["id"].as_str().unwrap().to_owned();
    let transcript = client(&url, &["transcript", &id]);
    assert!(transcript.status.success() && transcript.stdout.is_empty());
    assert!(String::from_utf8_lossy(&transcript.stderr).contains("no statements recorded"));
}

/// `gatehouse ARGS` with neither store variable set, whatever the test runner's environment.
fn gatehouse_without_store_variables(args: &[&str]) -> Command {
    let mut command = gatehouse();
    command.args(args).env_remove("GATEHOUSE_DATA_DIR").env_remove("GATEHOUSE_DATABASE_URL");
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_store_flag_wins_over_the_other_stores_variable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Nothing listens on port 9: the PostgreSQL store was chosen if the error says so.
    let url = "postgres://gatehouse@127.0.0.1:9/gatehouse";

    let postgres = gatehouse_without_store_variables(&["migrate", "--check", "--database-url", url])
        .env("GATEHOUSE_DATA_DIR", data)
        .output()
        .unwrap();
    assert!(stderr(&postgres).contains("cannot open the PostgreSQL store at 127.0.0.1:9"), "{}", stderr(&postgres));

    let sqlite = gatehouse_without_store_variables(&["migrate", "--check", "--data-dir", data])
        .env("GATEHOUSE_DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(stderr(&sqlite).contains(&format!("no SQLite store at {data}")), "{}", stderr(&sqlite));

    let flags = gatehouse_without_store_variables(&["migrate", "--check", "--data-dir", data, "--database-url", url])
        .output()
        .unwrap();
    assert_eq!(flags.status.code(), Some(2));
    assert!(stderr(&flags).contains("--data-dir (SQLite) and --database-url (PostgreSQL) name two stores"));

    let variables = gatehouse_without_store_variables(&["migrate", "--check"])
        .env("GATEHOUSE_DATA_DIR", data)
        .env("GATEHOUSE_DATABASE_URL", url)
        .output()
        .unwrap();
    assert_eq!(variables.status.code(), Some(2));
    assert!(
        stderr(&variables).contains("GATEHOUSE_DATA_DIR (SQLite) and GATEHOUSE_DATABASE_URL (PostgreSQL) are both set")
    );
}

/// Runs `shell` on a pseudo-terminal of 40 columns (util-linux `script`, which scripts/test
/// installs), returning what the terminal showed.
fn on_a_terminal(shell: &str) -> String {
    let output = Command::new("script")
        .args(["-q", "-e", "-c", &format!("stty cols 40 rows 20; {shell}"), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` (scripts/test installs it)");
    assert!(output.status.success(), "{shell}: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stdout).replace('\r', "")
}

#[test]
fn tables_are_cut_for_a_terminal_on_stdout_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let name = "the nightly billing export's read-only key";
    run(gatehouse_without_store_variables(&["keys", "create", "--org", "acme", "--name", name, "--data-dir"]).arg(data));
    let list =
        format!("RUST_LOG=warn {} keys list --org acme --data-dir {}", env!("CARGO_BIN_EXE_gatehouse"), data.display());
    let file = data.join("keys.txt");
    let shown = on_a_terminal(&format!("{list}; {list} > {}", file.display()));
    assert!(shown.contains('…') && !shown.contains(name), "cut on the terminal:\n{shown}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains(name), "stdin and stderr are a terminal, stdout a file: not cut:\n{written}");
}

/// A web server on a free port that answers every request with `response`, as many times as
/// asked.
fn answering(response: &'static [u8], times: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(times) {
            use std::io::{Read, Write};
            let mut stream = stream.unwrap();
            let _ = stream.read(&mut [0; 4096]);
            let _ = stream.write_all(response);
        }
    });
    format!("http://{address}")
}

#[test]
fn a_server_that_is_not_the_control_plane_is_named_in_one_line() {
    let html = answering(
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 63\r\nConnection: close\r\n\r\n\
          <html>\n<head><title>502 Bad Gateway</title></head>\n<body></body>",
        1,
    );
    let postgres = answering(b"E\0\0\0\x10SFATAL\0C08P01\0\0", 1);
    let web_app = answering(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 27\r\nConnection: close\r\n\r\n\
          <html><p>Sign in</p></html>",
        1,
    );
    for (url, expected) in [
        (
            &web_app,
            format!("the server at {web_app} answered an HTML page, not the Gatehouse API: is {web_app} the control"),
        ),
        (
            &html,
            format!(
                "the server at {html} answered HTTP 502 with an HTML page, not the Gatehouse API: is {html} the control \
                 plane's address?"
            ),
        ),
        (&postgres, "does not speak HTTP: it may be another service (a database".to_owned()),
    ] {
        let out = gatehouse()
            .args(["sessions", "list", "--url", url, "--api-key", "gh_x_y", "--timeout", "5s"])
            .output()
            .unwrap();
        let error = stderr(&out);
        assert!(error.contains(&expected), "{error}");
        assert!(!error.contains("<html>") && !error.contains("<title>"), "{error}");
        assert!(error.lines().count() <= 2, "{error}");
    }
}

#[test]
fn of_commands_racing_to_create_an_organization_one_says_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    run(gatehouse().args(["migrate", "--data-dir"]).arg(data));
    // The race is between looking for the organization and inserting it: several rounds, so
    // that without one insert deciding it, some round has two commands claim it.
    for org in ["race-1", "race-2", "race-3", "race-4"] {
        let racing: Vec<Child> = (0..6)
            .map(|_| {
                gatehouse()
                    .args(["keys", "create", "--org", org, "--data-dir"])
                    .arg(data)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let said: Vec<String> = racing
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().unwrap();
                assert!(out.status.success(), "{}", stderr(&out));
                stderr(&out)
            })
            .collect();
        let created = said.iter().filter(|said| said.contains("Created organization")).count();
        assert_eq!(created, 1, "{org}: {said:?}");
    }
}

#[test]
fn a_store_address_where_no_postgresql_answers_is_named_in_plain_words() {
    let http = answering(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", 10);
    let address = http.trim_start_matches("http://");
    let url = format!("postgres://postgres@{address}/r1_gh");
    let out =
        gatehouse_without_store_variables(&["keys", "list", "--org", "acme", "--database-url", &url]).output().unwrap();
    let error = stderr(&out);
    assert!(
        error.contains(&format!(
            "cannot open the PostgreSQL store at {address}/r1_gh: the server there does not speak the PostgreSQL protocol"
        )),
        "{error}"
    );
    assert!(!error.contains("internal") && !error.contains("sqlx"), "{error}");
}

#[test]
fn addresses_are_checked_and_host_names_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let port = free_port();
    let _server = Running(
        gatehouse_without_store_variables(&["serve", "--listen", &format!("localhost:{port}"), "--data-dir"])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_healthy(&format!("http://127.0.0.1:{port}"));

    let refused = gatehouse_without_store_variables(&[
        "resources",
        "create",
        "--org",
        "acme",
        "--name",
        "db",
        "--host",
        "not a host!",
        "--data-dir",
    ])
    .arg(data)
    .output()
    .unwrap();
    assert!(stderr(&refused).contains("\"not a host!\" is not a host name or an IP address"), "{}", stderr(&refused));

    // An IPv6 address is written with its port as a URL or a connector's `upstream` takes it.
    let create = |name: &str, host: &str| {
        let args = ["resources", "create", "--org", "acme", "--name", name, "--host", host, "--data-dir"];
        stderr(&run(gatehouse_without_store_variables(&args).arg(data)))
    };
    let said = create("v6", "::1");
    assert!(said.contains("resource \"v6\" at [::1]:5432."), "{said}");
    let said = create("v4", "127.0.0.1");
    assert!(said.contains("resource \"v4\" at 127.0.0.1:5432."), "{said}");
    let listed = stdout(&run(
        gatehouse_without_store_variables(&["resources", "list", "--org", "acme", "--data-dir"]).arg(data)
    ));
    assert!(listed.contains(" [::1]:5432 ") && listed.contains(" 127.0.0.1:5432 "), "{listed}");
    let listed = json_lines(&stdout(&run(gatehouse_without_store_variables(&[
        "resources",
        "list",
        "--org",
        "acme",
        "-o",
        "jsonl",
        "--data-dir",
    ])
    .arg(data))));
    let address = |name: &str| listed.iter().find(|r| r["name"] == name).map(|r| r["address"].clone());
    assert_eq!((address("v6"), address("v4")), (Some(json!("[::1]:5432")), Some(json!("127.0.0.1:5432"))));

    // Something accepts connections as the database; the port the connector would take is taken.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let dev_dir = data.join("dev");
    let upstream_address = upstream.local_addr().unwrap().to_string();
    let dev_with = |flags: &[&str]| {
        let mut args = vec!["dev", "--listen", "127.0.0.1:0", "--upstream", &upstream_address];
        args.extend_from_slice(flags);
        args.push("--data-dir");
        gatehouse_without_store_variables(&args).arg(&dev_dir).output().unwrap()
    };
    let taken_address = taken.local_addr().unwrap().to_string();
    let dev = dev_with(&["--proxy-listen", &taken_address]);
    assert!(stderr(&dev).contains("for the dev connector (--proxy-listen chooses another)"), "{}", stderr(&dev));
    assert!(!dev_dir.join("gatehouse.db").exists(), "a taken port fails before the store is made");
    // Its health and metrics' port too, when chosen.
    let free = format!("127.0.0.1:{}", free_port());
    let dev = dev_with(&["--proxy-listen", &free, "--proxy-metrics-listen", &taken_address]);
    let said = stderr(&dev);
    assert!(said.contains("health and metrics (--proxy-metrics-listen chooses another)"), "{said}");
    assert!(!dev_dir.join("gatehouse.db").exists(), "a taken port fails before the store is made");
}

/// `dev --proxy-metrics-listen` puts the dev connector's /health and /metrics where it says,
/// and the banner says where.
#[test]
fn dev_serves_its_connectors_metrics_where_asked() {
    let help = stdout(&run(gatehouse().args(["dev", "--help"])));
    assert!(help.contains("--proxy-metrics-listen <ADDR>") && help.contains("127.0.0.1:6480"), "{help}");
    let dir = tempfile::tempdir().unwrap();
    // Something accepts connections as the database: the connector starts in front of it.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut dev = Running(
        gatehouse_without_store_variables(&[
            "dev",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--upstream",
            &upstream.local_addr().unwrap().to_string(),
            "--proxy-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--proxy-metrics-listen",
            &metrics,
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let mut lines = BufReader::new(dev.0.stdout.take().unwrap()).lines();
    let banner = lines.by_ref().map(Result::unwrap).find(|line| line.contains("Prometheus metrics")).unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    assert!(banner.contains(&format!("http://{metrics}/health, http://{metrics}/metrics")), "{banner}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match reqwest::blocking_get(&format!("http://{metrics}/metrics")) {
            Ok(body) if body.contains("gatehouse_connector_connections_total") => break,
            answer => assert!(Instant::now() < deadline, "{answer:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cli_words_for_cli_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let seeded =
        run(gatehouse_without_store_variables(&["seed", "--sessions", "10", "--active", "0", "--data-dir"]).arg(data));
    assert!(!stderr(&seeded).contains('\r'), "no progress redraws off a terminal: {:?}", stderr(&seeded));

    for (args, expected) in [
        (&["sessions", "list", "--sort", "name"][..], "\"name\" is not start_time, end_time or duration"),
        (&["sessions", "terminate", "x", "--connector", " "], "'--connector <CONNECTOR>': must not be empty"),
        (
            &["sessions", "list", "--from", "2026-12-06", "--to", "2026-12-01"],
            "--from (2026-12-06T00:00:00Z) is after --to (2026-12-01T00:00:00Z)",
        ),
        (&["keys", "list", "--org", "acme", "--database-url", "mysql://root@db/x"], "is not a PostgreSQL URL"),
        // Before the year 1: said of --since, not of the time the control plane would be sent.
        (
            &["sessions", "list", "--since", "1000000d"],
            "'--since <DURATION>': \"1000000d\" reaches back past the year 1",
        ),
        (&["connector"], "no configuration: pass --config FILE"),
        // A name a listener would read as another resource's id.
        (
            &["resources", "create", "--org", "acme", "--name", "res_01a251c4", "--host", "db"],
            "must not start with res_, as resource ids do",
        ),
    ] {
        let out = gatehouse().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(expected) && !stderr(&out).contains("sort_by"), "{}", stderr(&out));
    }
    let help = stdout(&run(gatehouse().args(["sessions", "list", "--help"])));
    assert!(!help.contains("[default: ]") && help.contains("jsonl and csv stream page by page"), "{help}");
}

/// The store holds transcripts and key hashes: its directory and files are its owner's only.
#[cfg(unix)]
#[test]
fn the_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(gatehouse().args(["keys", "create", "--org", "acme"]).env("GATEHOUSE_DATA_DIR", &data));
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path) & 0o077, 0, "{} is open to others", path.display());
    }
}

/// Found by a review: a data directory others may write to was used without a word, though
/// they can delete or replace the store in it.
#[cfg(unix)]
#[test]
fn a_data_directory_others_may_write_to_is_warned_of() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let open = run(gatehouse().args(["keys", "create", "--org", "acme"]).env("GATEHOUSE_DATA_DIR", &data));
    assert!(stderr(&open).contains("may write to the data directory") && stderr(&open).contains("chmod 700"));
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let open = run(gatehouse().args(["keys", "create", "--org", "acme"]).env("GATEHOUSE_DATA_DIR", &data));
    assert!(!stderr(&open).contains("may write to the data directory"), "{}", stderr(&open));
}

#[test]
fn a_secret_nobody_can_be_shown_is_never_made() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_gatehouse");
    // Standard output closed, or sent to /dev/null.
    for redirect in [">&-", ">/dev/null"] {
        let shell = format!("'{bin}' keys create --org acme --data-dir '{data}' {redirect}");
        let output = Command::new("sh").arg("-c").arg(&shell).env("RUST_LOG", "warn").output().unwrap();
        let said = stderr(&output);
        assert!(!output.status.success(), "{said}");
        assert!(said.contains("standard output is closed or /dev/null: the new key would be shown nowhere"), "{said}");
    }
    // A pipe whose reader is gone.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output =
        gatehouse().args(["keys", "create", "--org", "acme", "--data-dir", data]).stdout(writer).output().unwrap();
    let said = stderr(&output);
    assert!(said.contains("standard output is a pipe or socket nobody reads"), "{said}");
    assert!(!Path::new(data).exists(), "nothing was made, not even the store");
}

/// `serve` on a directory with no store says it made a new, empty one (a mistyped
/// `--data-dir` otherwise shows only as keys that are "not valid"); on a port already in use
/// it fails before making one.
#[test]
fn serve_says_when_it_starts_a_new_store_and_makes_none_when_it_cannot_listen() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = gatehouse()
        .args(["serve", "--listen", &taken.local_addr().unwrap().to_string(), "--data-dir"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("cannot listen on"), "{}", stderr(&refused));
    assert!(!dir.path().join("a").exists(), "no store made for a server that never ran");
    // A retention of minutes (`5m` typed for months) would delete the audit trail at once.
    let refused =
        gatehouse().args(["serve", "--retention", "5m", "--data-dir"]).arg(dir.path().join("a")).output().unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("the least is 1d"), "{}", stderr(&refused));
    assert!(!dir.path().join("a").exists());

    let port = free_port();
    let mut child = gatehouse()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("b"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let _server = Running(child);
    let said = lines.find(|line| line.as_ref().is_ok_and(|l| l.contains("new, empty store"))).unwrap().unwrap();
    assert!(said.contains("gatehouse keys create --org NAME --data-dir"), "{said}");
}

/// Runs `sql` on the SQLite store in `data` with the `sqlite3` shell.
/// A connector lease shorter than a live connector can go unheard, with nothing failing, is
/// refused at start, saying the least and why (it would complete live sessions over and over);
/// the least is served.
#[test]
fn a_connector_lease_too_short_to_be_kept_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for lease in ["1s", "9s", "9999ms"] {
        let mut serving = Running(
            gatehouse()
                .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--connector-lease", lease])
                .arg("--data-dir")
                .arg(dir.path().join("a"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // A lease taken is a server that runs on: waited for a while, not for ever.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = serving.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{lease} was taken: serve runs with it");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "{lease} was taken");
        let mut said = String::new();
        std::io::Read::read_to_string(&mut serving.0.stderr.take().unwrap(), &mut said).unwrap();
        assert!(said.contains(&format!("{lease:?} is too short to be kept: the least is 10s")), "{said}");
        assert!(said.contains("a live connector can go unheard for seconds with nothing failing"), "{said}");
        assert!(!dir.path().join("a").exists(), "no store made for a server that never ran");
    }
    let _served = serve_with(&dir.path().join("b"), &["--connector-lease", "10s"]);
}

fn sqlite3(data: &Path, sql: &str) {
    let status = Command::new("sqlite3").arg(data.join("gatehouse.db")).arg(sql).status();
    assert!(status.expect("sqlite3 (scripts/test installs it)").success(), "{sql}");
}

/// A store a newer Gatehouse wrote (a migration this one does not know) is refused by every
/// command that opens it, `migrate` and `migrate --check` included, in the same plain words
/// rather than sqlx's, and nothing is changed.
#[test]
fn a_store_from_a_newer_gatehouse_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    run(gatehouse().args(["keys", "create", "--org", "x", "--data-dir"]).arg(data));
    sqlite3(
        data,
        "INSERT INTO _sqlx_migrations SELECT 99, 'future thing', installed_on, 1, checksum, 1 \
         FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    );
    let known = "newer than this gatehouse knows (up to 16): upgrade gatehouse";
    let port = free_port().to_string();
    for args in [
        &["migrate", "--check"][..],
        &["migrate"],
        &["keys", "list", "--org", "x"],
        &["keys", "create", "--org", "x"],
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
    ] {
        let out = gatehouse().args(args).arg("--data-dir").arg(data).output().unwrap();
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains(&format!("{}: its schema is version 99, {known}", data.join("gatehouse.db").display())),
            "{args:?}: {said}"
        );
        assert!(!said.contains("up to date") && !said.contains("missing in the resolved"), "{args:?}: {said}");
    }
}

/// A data directory this user cannot read is said to be unreadable, not to hold no store, and
/// `migrate --check` lists no migration as pending in it.
#[cfg(unix)]
#[test]
fn a_store_in_a_directory_the_user_cannot_read_is_named_as_unreadable() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(gatehouse().args(["keys", "create", "--org", "x", "--data-dir"]).arg(&data));
    // Root reads any directory: it runs the commands as nobody, on its own directory of mode
    // 700; another user takes every permission away from its own.
    let root = std::fs::metadata(&data).unwrap().uid() == 0;
    let as_user = |args: &[&str]| {
        let mut command = match root {
            true => {
                let mut command = Command::new("setpriv");
                command.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
                command.arg(env!("CARGO_BIN_EXE_gatehouse"));
                command
            }
            false => Command::new(env!("CARGO_BIN_EXE_gatehouse")),
        };
        command.env("RUST_LOG", "warn").env_remove("GATEHOUSE_DATABASE_URL").args(args).arg("--data-dir").arg(&data);
        command.output().unwrap()
    };
    let mode = if root { 0o700 } else { 0o000 };
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(mode)).unwrap();
    // Only the data directory is out of reach, as another user's in a shared one.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [&["keys", "list", "--org", "x"][..], &["keys", "create", "--org", "x"], &["migrate", "--check"]] {
        let out = as_user(args);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains(&format!("cannot read {}: Permission denied", data.join("gatehouse.db").display())),
            "{args:?}: {said}"
        );
        assert!(!said.contains("no store") && stdout(&out).is_empty(), "{args:?}: {said} {}", stdout(&out));
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A command that brings an older store up to date says so, once: the store changes under
/// whoever else uses it with an older binary.
#[test]
fn applying_pending_migrations_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let created = run(gatehouse().args(["keys", "create", "--org", "x", "--data-dir"]).arg(data));
    assert!(!stderr(&created).contains("migration"), "a new store is no migration: {}", stderr(&created));
    // The store as the Gatehouse before the last migration left it.
    // (The last one only mends folds, which it may do again.)
    sqlite3(data, "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)");
    let listed = run(gatehouse().args(["keys", "list", "--org", "x", "--data-dir"]).arg(data));
    assert_eq!(
        stderr(&listed).matches("Applied 1 pending migration(s) to the store.").count(),
        1,
        "{}",
        stderr(&listed)
    );
    let again = run(gatehouse().args(["keys", "list", "--org", "x", "--data-dir"]).arg(data));
    assert!(!stderr(&again).contains("migration"), "{}", stderr(&again));
}

/// The lines `gatehouse dev` prints up to `until`, then kills it.
fn dev_banner(args: &[&str], data: &Path, until: &str) -> Vec<String> {
    let mut child = Running(
        gatehouse_without_store_variables(&["dev", "--upstream", "127.0.0.1:1"])
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = Vec::new();
    for line in BufReader::new(child.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains(until);
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("dev never said {until:?}: {lines:?}");
}

/// The commands `dev` suggests act on its store and address, run as its other lines say.
#[test]
fn devs_hints_keep_the_flags_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let listen = format!("127.0.0.1:{}", free_port());
    let banner = dev_banner(&["--listen", &listen], data, "The store is empty");
    let list = banner.iter().find_map(|line| line.trim().strip_suffix(" sessions list --since 24h")).unwrap();
    let hint = banner.last().unwrap();
    let expected = format!("run `{list} dev --demo --data-dir {} --listen {listen}`", data.display());
    assert!(hint.contains(&expected), "{hint}\n{expected}");

    dev_banner(&["--listen", &listen, "--demo", "--demo-sessions", "10"], data, "sessions list --since 24h");
    let banner = dev_banner(&["--listen", &listen, "--demo"], data, "already holds sessions");
    let expected = format!("(`{list} seed --data-dir {}` adds more)", data.display());
    assert!(banner.last().unwrap().contains(&expected), "{banner:?}\n{expected}");
}

/// A `dev --demo` stopped while it seeds (Ctrl-C) says so, and the next one adds the rest
/// of the same demo, rather than take the store for one that holds sessions of its own.
#[test]
fn an_interrupted_demo_is_completed_by_the_next_dev_demo() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut first = gatehouse_without_store_variables(&["dev", "--upstream", "127.0.0.1:1", "--listen", &listen])
        .args(["--demo", "--demo-sessions", "30000", "--data-dir"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(first.stderr.take().unwrap()).lines().map(Result::unwrap);
    assert!(said.by_ref().any(|line| line.starts_with("seeding sessions: ")), "seeding began");
    let _ = Command::new("kill").args(["-INT", &first.id().to_string()]).status();
    let rest: Vec<String> = said.collect();
    assert_eq!(first.wait().unwrap().code(), Some(130), "{rest:?}");
    assert!(
        rest.iter().any(|line| line.contains("Stopped with the demo partly added") && line.contains("adds the rest"))
    );
    let count = || {
        let sql = "SELECT count(*) FROM sessions";
        let out = Command::new("sqlite3").arg(data.join("gatehouse.db")).arg(sql).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().parse::<usize>().unwrap()
    };
    let partial = count();
    assert!(partial < 30_036, "{partial}");

    let banner = dev_banner(&["--listen", &listen, "--demo"], data, "sessions list --since 24h");
    assert!(banner.iter().any(|line| line.contains("adding the rest")), "{banner:?}");
    assert_eq!(count(), 30_036, "the demo's 30000 completed and 36 active sessions, each once");
    let banner = dev_banner(&["--listen", &listen, "--demo"], data, "already holds sessions");
    assert!(!banner.iter().any(|line| line.contains("adding the rest")), "{banner:?}");
}

/// `serve` on an address other hosts reach, without TLS, warns that keys cross the network in
/// cleartext; on loopback it does not.
#[test]
fn serve_without_tls_off_loopback_warns_of_cleartext_keys() {
    let dir = tempfile::tempdir().unwrap();
    for (ip, warns) in [("0.0.0.0", true), ("127.0.0.1", false)] {
        let port = free_port();
        let mut child = Running(
            gatehouse()
                .args(["serve", "--listen", &format!("{ip}:{port}"), "--data-dir"])
                .arg(dir.path().join(ip))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        wait_healthy(&format!("http://127.0.0.1:{port}"));
        let _ = child.0.kill();
        let mut said = String::new();
        std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut said).unwrap();
        assert_eq!(
            said.contains("API keys, connector keys and the sessions reported cross the network in cleartext"),
            warns,
            "{ip}: {said}"
        );
    }
}
