//! The whole system with real clients: `gatehouse serve`, `gatehouse
//! connector` in front of the machine's PostgreSQL, and `psql` sessions.

mod common;

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{Proc, active, certificates, free_port, gatehouse, output, psql, send, wait_port};
use serde_json::{Value, json};

struct System {
    dir: tempfile::TempDir,
    data: PathBuf,
    api_port: u16,
    proxy_port: u16,
    admin_key: String,
    connector_key: String,
    resource: String,
    config: PathBuf,
    lease: &'static str,
    http: reqwest::Client,
}

impl System {
    fn new(lease: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("cp");
        let store = |command: &mut Command| {
            command.arg("--data-dir").arg(&data);
            output(command)
        };
        let admin_key = store(gatehouse().args(["keys", "create", "--org", "acme", "--role", "admin"]));
        let resource =
            store(gatehouse().args(["resources", "create", "--org", "acme", "--name", "pg", "--host", "127.0.0.1"]));
        let connector_key = store(gatehouse().args(["connectors", "create", "--org", "acme", "--name", "edge"]));
        let mut system = Self {
            dir,
            data,
            api_port: free_port(),
            proxy_port: 0,
            admin_key,
            connector_key,
            resource,
            config: PathBuf::new(),
            lease,
            // No idle connections: a test may restart the control plane on the same port.
            http: reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap(),
        };
        (system.config, system.proxy_port) = system.connector_config("connector");
        system
    }

    /// Writes a configuration for a connector process of its own (ports and state directory)
    /// with the connector's key; returns it and its listener's port.
    fn connector_config(&self, name: &str) -> (PathBuf, u16) {
        let proxy_port = free_port();
        let config = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "admin_listen = \"127.0.0.1:{}\"\nstate_dir = \"{}\"\n\n[control_plane]\nurl = \"http://127.0.0.1:{}\"\n\
                 key = \"{}\"\n\n[[listeners]]\nlisten = \"127.0.0.1:{proxy_port}\"\nresource = \"{}\"\n",
                free_port(),
                self.dir.path().join(format!("{name}-state")).display(),
                self.api_port,
                self.connector_key,
                self.resource,
            ),
        )
        .unwrap();
        (config, proxy_port)
    }

    fn serve(&self) -> Proc {
        let child = gatehouse()
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.api_port), "--connector-lease", self.lease])
            .arg("--data-dir")
            .arg(&self.data)
            .spawn()
            .unwrap();
        wait_port(self.api_port);
        Proc(child)
    }

    /// Runs `sessions terminate ID --wait WAIT`, which must succeed; what it said.
    fn terminate(&self, id: &str, wait: &str) -> String {
        let out = gatehouse()
            .args(["sessions", "terminate", id, "--wait", wait])
            .env("GATEHOUSE_URL", format!("http://127.0.0.1:{}", self.api_port))
            .env("GATEHOUSE_API_KEY", &self.admin_key)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{said}");
        said
    }

    fn connector(&self) -> Proc {
        connector(&self.config, self.proxy_port)
    }

    async fn call(&self, method: &str, body: Value) -> Value {
        let url = format!("http://127.0.0.1:{}/core.v1.SessionsService/{method}", self.api_port);
        let response = self.http.post(url).header("X-API-KEY", &self.admin_key).json(&body).send().await.unwrap();
        response.json().await.unwrap()
    }

    async fn sessions(&self) -> Vec<Value> {
        self.call("ListSessionsV2", json!({})).await["sessions"].as_array().cloned().unwrap_or_default()
    }

    /// Polls until `check` holds for the session list, or fails after 10 s.
    async fn wait_for(&self, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        // Past the shortest lease (10 s) and the sweep's next pass.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let sessions = self.sessions().await;
            if check(&sessions) {
                return sessions;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {sessions:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn transcript(&self, id: &str) -> Vec<String> {
        let body = self.call("GetSessionTranscript", json!({"session_id": id})).await;
        body["transcript"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_once('\t').unwrap().1.to_owned())
            .collect()
    }

    /// An interactive psql through the connector, seen active after its first statement: the
    /// session's id, psql and its input.
    async fn active_psql(&self) -> (String, Proc, ChildStdin) {
        let (psql, mut stdin) = self.psql();
        send(&mut stdin, "select 1;");
        let sessions = self.wait_for("an active session", |s| active(s).len() == 1).await;
        (active(&sessions)[0]["id"].as_str().unwrap().to_owned(), psql, stdin)
    }

    /// An interactive psql through the connector.
    fn psql(&self) -> (Proc, ChildStdin) {
        psql(self.proxy_port)
    }

    async fn status(&self, id: &str) -> Value {
        self.call("GetSession", json!({"session_id": id})).await["session"]["sessionStatus"].clone()
    }
}

/// `gatehouse connector` with `config`, once it listens on `port`.
fn connector(config: &Path, port: u16) -> Proc {
    let child = gatehouse().arg("connector").arg("--config").arg(config).spawn().unwrap();
    wait_port(port);
    Proc(child)
}

/// `gatehouse sessions watch -o FORMAT` polling every 200 ms, and the lines it writes.
fn watch(system: &System, format: &str) -> (Proc, Receiver<String>) {
    let mut child = gatehouse()
        .args(["sessions", "watch", "--interval", "200ms", "-o", format])
        .args(["--url", &format!("http://127.0.0.1:{}", system.api_port), "--api-key", &system.admin_key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap());
    let (send, receive) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(lines).map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    (Proc(child), receive)
}

/// The event and the session id of a `watch -o jsonl` line.
fn event(line: String) -> (String, String) {
    let event: Value = serde_json::from_str(&line).unwrap();
    (event["event"].as_str().unwrap().to_owned(), event["session"]["id"].as_str().unwrap().to_owned())
}

/// A session the control plane hears of only when its connector replays its spool, long after
/// it ended, is still shown starting and ending.
#[tokio::test]
async fn sessions_watch_shows_a_session_reported_late() {
    let system = System::new("60s");
    let server = system.serve();
    let _connector = system.connector();
    let (_watch, events) = watch(&system, "jsonl");
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(server);
    let ran = Command::new("psql")
        .args(["-X", "-q", "-c", "select 1"])
        .arg(format!("host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable", system.proxy_port))
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    // Ended well before the control plane is back, and reported when the spool is replayed.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let _server = system.serve();
    let (started, id) = event(events.recv_timeout(Duration::from_secs(30)).unwrap());
    assert_eq!(started, "started");
    assert_eq!(event(events.recv_timeout(Duration::from_secs(5)).unwrap()), ("ended".to_owned(), id));
}

/// `sessions watch` in both formats: the session running when it starts as active, then a
/// session starting and ending, each once.
#[tokio::test]
async fn sessions_watch_shows_each_session_start_and_end_once() {
    let system = System::new("60s");
    let _server = system.serve();
    let _connector = system.connector();
    let (_before, mut before_stdin) = system.psql();
    send(&mut before_stdin, "select 1;");
    let first = system.wait_for("the first session", |s| active(s).len() == 1).await;
    let first_id = active(&first)[0]["id"].as_str().unwrap().to_owned();

    let next = |lines: &Receiver<String>| lines.recv_timeout(Duration::from_secs(10)).unwrap();
    let (_jsonl, events) = watch(&system, "jsonl");
    let (_lines, text) = watch(&system, "lines");
    assert_eq!(event(next(&events)), ("active".to_owned(), first_id.clone()));
    let line = next(&text);
    assert!(line.contains("  active   ") && line.contains(&first_id), "{line}");
    assert!(line.ends_with("postgres on pg (postgres) from 127.0.0.1 via edge"), "{line}");

    let (mut second, mut stdin) = system.psql();
    send(&mut stdin, "select 2;");
    let (started, second_id) = event(next(&events));
    assert_eq!(started, "started");
    assert_ne!(second_id, first_id);
    send(&mut stdin, "\\q");
    drop(stdin);
    let _ = second.0.wait();
    assert_eq!(event(next(&events)), ("ended".to_owned(), second_id.clone()));
    let started = next(&text);
    let ended = next(&text);
    assert!(started.contains("  started  ") && started.contains(&second_id), "{started}");
    assert!(ended.contains("  ended    ") && ended.contains(&second_id) && ended.contains(", after "), "{ended}");
    // Each change once.
    assert!(events.recv_timeout(Duration::from_secs(1)).is_err(), "one line per change");
}

#[tokio::test]
async fn a_psql_session_is_recorded_live_and_completed() {
    let system = System::new("60s");
    let _server = system.serve();
    let _connector = system.connector();
    let (mut psql, mut stdin) = system.psql();
    let statements = [
        "select 1 as one;",
        "create temp table t (n int);",
        "insert into t select generate_series(1, 5);",
        "select count(*) from t;",
        "select 1/0;",
    ];
    for sql in statements {
        send(&mut stdin, sql);
    }
    let sessions = system.wait_for("an active session", |s| active(s).len() == 1).await;
    let session = active(&sessions)[0].clone();
    let id = session["id"].as_str().unwrap().to_owned();
    assert_eq!(session["user"]["username"], "postgres");
    assert_eq!(session["resource"]["name"], "pg");
    assert_eq!(session["connector"]["name"], "edge");
    assert_eq!(session["network"]["clientIpAddress"], "127.0.0.1");

    let deadline = Instant::now() + Duration::from_secs(5);
    let expected: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
    while system.transcript(&id).await != expected {
        assert!(Instant::now() < deadline, "transcript {:?}", system.transcript(&id).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What each did, from the CLI: rows sent, bytes, the SQLSTATE of the error.
    let url = format!("http://127.0.0.1:{}", system.api_port);
    let listed = output(gatehouse().args([
        "sessions",
        "statements",
        &id,
        "-o",
        "jsonl",
        "--url",
        &url,
        "--api-key",
        &system.admin_key,
    ]));
    let listed: Vec<Value> = listed.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let outcome = |s: &Value| {
        let (rows, changed) = (s["rows"].clone(), s["rowsChanged"].clone());
        (s["seq"].clone(), s["text"].clone(), rows, changed, s["sqlstate"].clone(), s["status"].clone())
    };
    // Counts are numbers, each of them there (zeros too), as the registry's lists write them.
    let none = Value::Null;
    let completed = json!("completed");
    assert_eq!(
        listed.iter().map(outcome).collect::<Vec<_>>(),
        [
            (json!(1), json!("select 1 as one;"), json!(1), json!(0), none.clone(), completed.clone()),
            (json!(2), json!("create temp table t (n int);"), json!(0), json!(0), none.clone(), completed.clone()),
            (
                json!(3),
                json!("insert into t select generate_series(1, 5);"),
                json!(0),
                json!(5),
                none.clone(),
                completed.clone()
            ),
            (json!(4), json!("select count(*) from t;"), json!(1), json!(0), none.clone(), completed.clone()),
            (json!(5), json!("select 1/0;"), json!(0), json!(0), json!("22012"), completed),
        ]
    );
    assert!(listed.iter().all(|s| s["bytesSent"].as_u64().unwrap() > 0), "{listed:?}");
    let table =
        output(gatehouse().args(["sessions", "statements", &id, "--url", &url, "--api-key", &system.admin_key]));
    assert!(table.starts_with("SEQ") && table.contains("22012") && table.lines().count() == 6, "{table}");
    let csv = output(gatehouse().args([
        "sessions",
        "statements",
        &id,
        "-o",
        "csv",
        "--url",
        &url,
        "--api-key",
        &system.admin_key,
    ]));
    let create = csv.lines().find(|line| line.contains("create temp table")).unwrap();
    assert!(create.split(',').nth(3) == Some("0"), "no rows is 0, not nothing: {csv}");

    send(&mut stdin, "\\q");
    drop(stdin);
    let _ = psql.0.wait();
    let sessions = system
        .wait_for("the session to complete", |s| {
            s.iter().any(|s| s["id"] == id.as_str() && s["sessionStatus"] == "completed")
        })
        .await;
    let done = sessions.iter().find(|s| s["id"] == id.as_str()).unwrap();
    assert!(done["endTime"].as_str().unwrap() >= done["startTime"].as_str().unwrap());
}

#[tokio::test]
async fn a_long_statement_shows_in_the_transcript_while_it_runs() {
    let system = System::new("60s");
    let _server = system.serve();
    let _connector = system.connector();
    let (_psql, mut stdin) = system.psql();
    send(&mut stdin, "select 1 as first;");
    let sessions = system.wait_for("an active session", |s| active(s).len() == 1).await;
    let id = active(&sessions)[0]["id"].as_str().unwrap().to_owned();
    let sent = Instant::now();
    send(&mut stdin, "select pg_sleep(8) as long;");
    let expected = ["select 1 as first;", "select pg_sleep(8) as long;"];
    loop {
        let transcript = system.transcript(&id).await;
        if transcript == expected {
            break;
        }
        // The sleep ends after 8 s: seen before that, the statement was shown running.
        assert!(sent.elapsed() < Duration::from_secs(7), "transcript while it runs: {transcript:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Completed, it is there once, and the next statement follows it.
    send(&mut stdin, "select 2 as after;");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut transcript = system.transcript(&id).await;
    while transcript.len() < 3 {
        assert!(Instant::now() < deadline, "transcript after it completed: {transcript:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        transcript = system.transcript(&id).await;
    }
    assert_eq!(transcript, ["select 1 as first;", "select pg_sleep(8) as long;", "select 2 as after;"]);
}

#[tokio::test]
async fn terminating_a_live_psql_session_ends_it() {
    let system = System::new("60s");
    let _server = system.serve();
    let _connector = system.connector();
    let (mut psql, mut stdin) = system.psql();
    send(&mut stdin, "select pg_sleep(30);");
    let sessions = system.wait_for("an active session", |s| active(s).len() == 1).await;
    let id = active(&sessions)[0]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let said = system.terminate(&id, "5s");
    assert!(said.contains(&format!("Session {id} ended at ")), "{said}");
    let asked = Instant::now();
    let status = psql.0.wait().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5), "psql ended {:?} after the termination", asked.elapsed());
    drop(stdin);
    let mut stderr = String::new();
    std::io::Read::read_to_string(psql.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("terminat"), "psql saw: {stderr} ({status})");
    system
        .wait_for("the terminated session to complete", |s| {
            s.iter().any(|s| s["id"] == id.as_str() && s["sessionStatus"] == "completed")
        })
        .await;
    let again = system
        .call(
            "CreateSessionTermination",
            json!({"session_id": id, "connector_id": active(&sessions)[0]["connector"]["id"]}),
        )
        .await;
    assert_eq!(again["code"], "failed_precondition");
}

#[tokio::test]
async fn nothing_is_lost_while_the_control_plane_is_down() {
    let system = System::new("60s");
    let server = system.serve();
    let _connector = system.connector();
    let (mut psql, mut stdin) = system.psql();
    send(&mut stdin, "select 'before' as phase;");
    let sessions = system.wait_for("an active session", |s| active(s).len() == 1).await;
    let id = active(&sessions)[0]["id"].as_str().unwrap().to_owned();

    server.stop("-TERM");
    for i in 0..5 {
        send(&mut stdin, &format!("select {i} as during_outage;"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _server = system.serve();

    let mut expected = vec!["select 'before' as phase;".to_owned()];
    expected.extend((0..5).map(|i| format!("select {i} as during_outage;")));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let transcript = system.transcript(&id).await;
        if transcript == expected {
            break;
        }
        assert!(Instant::now() < deadline, "transcript after the outage: {transcript:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(&mut stdin, "\\q");
    let _ = psql.0.wait();
}

#[tokio::test]
async fn a_killed_connector_leaves_no_ghost_session() {
    let system = System::new("10s");
    let _server = system.serve();
    let connector = system.connector();
    let (id, _psql, _stdin) = system.active_psql().await;
    connector.stop("-KILL");
    let killed = Instant::now();
    system
        .wait_for("the ghost session to complete", |s| {
            s.iter().any(|s| s["id"] == id.as_str() && s["sessionStatus"] == "completed")
        })
        .await;
    // Heard at most a heartbeat (a sixth of the lease) before it was killed.
    assert!(killed.elapsed() >= Duration::from_secs(8), "completed before the lease ran out");
    // For all the control plane knows the connector is cut off, the session live behind it: a
    // termination is taken, and the CLI says what ended the session so far.
    let said = system.terminate(&id, "1s");
    assert!(said.contains(&format!("Session {id} was completed at ")), "{said}");
    assert!(said.contains("lease ran out") && said.contains("heard again"), "{said}");
}

/// The API records a termination whether or not the connector is there to act on it; the CLI
/// says which it saw.
#[tokio::test]
async fn terminating_a_session_whose_connector_is_down_says_it_is_still_active() {
    let system = System::new("60s");
    let _server = system.serve();
    let connector = system.connector();
    let (id, _psql, _stdin) = system.active_psql().await;
    connector.stop("-KILL");
    let said = system.terminate(&id, "1s");
    assert!(said.contains(&format!("Session {id} is still active after 1.000 s")), "{said}");
    assert!(said.contains("lease"), "{said}");
}

/// A connector stopped with SIGTERM ends its sessions then, not when its lease runs out, and
/// its process is no longer counted.
#[tokio::test]
async fn a_connector_stopped_with_sigterm_ends_its_sessions_and_its_run() {
    let system = System::new("60s");
    let _server = system.serve();
    let connector = system.connector();
    let (id, _psql, _stdin) = system.active_psql().await;
    let processes = || {
        let listed = output(gatehouse().args(["connectors", "list", "--org", "acme", "--data-dir"]).arg(&system.data));
        listed.lines().nth(1).unwrap().rsplit(' ').next().unwrap().to_owned()
    };
    assert_eq!(processes(), "1");

    connector.stop("-TERM");
    let ended = system.sessions().await;
    let session = ended.iter().find(|s| s["id"] == id.as_str()).unwrap();
    assert_eq!(session["sessionStatus"], "completed", "ended before the connector exited: {session}");
    assert_eq!(processes(), "0", "a process that stopped cleanly is not counted");
}

/// Two processes with one connector key (replicas, each on its own state directory) are two
/// runs, each with its own lease: one starting, or dying, never ends the other's sessions.
#[tokio::test]
async fn two_processes_with_one_key_keep_their_own_sessions() {
    let system = System::new("10s");
    let _server = system.serve();
    let _first = system.connector();
    let (_psql, mut stdin) = system.psql();
    send(&mut stdin, "select 'first' as process;");
    let sessions = system.wait_for("the first process's session", |s| active(s).len() == 1).await;
    let first = active(&sessions)[0]["id"].as_str().unwrap().to_owned();

    let (config, port) = system.connector_config("replica");
    let replica = connector(&config, port);
    let (_replica_psql, mut replica_stdin) = psql(port);
    send(&mut replica_stdin, "select 'replica' as process;");
    // The replica's session is reported after its Hello.
    let sessions = system.wait_for("the replica's session", |s| active(s).len() == 2).await;
    let second = active(&sessions).into_iter().find(|s| s["id"] != first.as_str()).unwrap()["id"].clone();
    let listed = output(gatehouse().args(["connectors", "list", "--org", "acme", "--data-dir"]).arg(&system.data));
    let header = listed.lines().next().unwrap();
    assert!(header.ends_with("PROCESSES"), "{listed}");
    assert!(listed.lines().nth(1).unwrap().ends_with(" 2"), "two processes: {listed}");

    replica.stop("-KILL");
    let second = second.as_str().unwrap();
    system
        .wait_for("the replica's session to end with its lease", |s| {
            s.iter().any(|s| s["id"] == second && s["sessionStatus"] == "completed")
        })
        .await;
    // Another lease later, the first process's session is still live, and still recorded.
    tokio::time::sleep(Duration::from_secs(10)).await;
    send(&mut stdin, "select 'still here' as process;");
    let deadline = Instant::now() + Duration::from_secs(10);
    while system.transcript(&first).await.len() < 2 {
        assert!(Instant::now() < deadline, "the first process's statement was not recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(system.status(&first).await, "active");
}

/// A connector restarted on its state directory completes what its killed predecessor left
/// open at once, not when the lease runs out.
#[tokio::test]
async fn a_restarted_connector_completes_its_predecessors_sessions() {
    let system = System::new("60s");
    let _server = system.serve();
    let killed = system.connector();
    let (id, _psql, _stdin) = system.active_psql().await;
    // A second process on the same state directory is refused: it would take the first for
    // its predecessor.
    let out = gatehouse().arg("connector").arg("--config").arg(&system.config).output().unwrap();
    let error = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{error}");
    assert!(error.contains("is in use by another connector process"), "{error}");
    assert_eq!(system.status(&id).await, "active");

    killed.stop("-KILL");
    let _restarted = system.connector();
    // Within wait_for's 20 s: well inside the 60 s lease.
    system
        .wait_for("the ghost session to complete", |s| {
            s.iter().any(|s| s["id"] == id.as_str() && s["sessionStatus"] == "completed")
        })
        .await;
}

/// A connector killed before it reported a session (its report still in memory) has journaled
/// the session and its statements: restarted, it reports them, and completes the session with
/// the run.
#[tokio::test]
async fn a_session_a_killed_connector_never_reported_is_recorded_after_its_restart() {
    let system = System::new("60s");
    let server = system.serve();
    let killed = system.connector();
    let (reported, _psql, _stdin) = system.active_psql().await;

    // The control plane stops answering, so the connector's next report waits in memory; it
    // is killed before it reads that report, and so is the connector.
    let pid = server.0.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let answer = output(
        Command::new("psql")
            .args(["-X", "-A", "-t", "-c", "select 'served'"])
            .arg(format!("host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable", system.proxy_port)),
    );
    assert_eq!(answer.trim(), "served");
    killed.stop("-KILL");
    server.stop("-KILL");

    let _server = system.serve();
    let _restarted = system.connector();
    let sessions = system
        .wait_for("both sessions, completed", |s| s.len() == 2 && s.iter().all(|s| s["sessionStatus"] == "completed"))
        .await;
    let unreported = sessions.iter().find(|s| s["id"] != reported.as_str()).unwrap();
    assert_eq!(unreported["user"]["username"], "postgres", "{unreported}");
    assert_eq!(unreported["network"]["clientIpAddress"], "127.0.0.1", "{unreported}");
    assert_eq!(system.transcript(unreported["id"].as_str().unwrap()).await, ["select 'served'"]);
    assert_eq!(system.transcript(&reported).await, ["select 1;"]);
}

/// A statement the database was running when the connector was killed, too soon for it to be
/// announced as a long one, was written ahead: the restarted connector reports it, unreported,
/// as it may have changed data.
#[tokio::test]
async fn a_statement_running_when_the_connector_is_killed_is_recorded() {
    let system = System::new("60s");
    let _server = system.serve();
    let killed = system.connector();
    let (id, _psql, mut stdin) = system.active_psql().await;
    send(&mut stdin, "select pg_sleep(5) as cut_short;");
    // Well within the second after which a running statement is announced.
    tokio::time::sleep(Duration::from_millis(300)).await;
    killed.stop("-KILL");
    let _restarted = system.connector();
    system
        .wait_for("the session to complete", |s| {
            s.iter().any(|s| s["id"] == id.as_str() && s["sessionStatus"] == "completed")
        })
        .await;
    assert_eq!(system.transcript(&id).await, ["select 1;", "select pg_sleep(5) as cut_short;"]);
}

/// A connector killed while the control plane was down was never heard while its session ran:
/// restarted, it says when its predecessor last knew itself alive, and the session it left
/// open ends then, with the statement it was running, rather than when the control plane
/// last heard from it.
#[tokio::test]
async fn a_connector_killed_while_the_control_plane_is_down_ends_its_session_when_it_died() {
    let system = System::new("60s");
    let server = system.serve();
    let killed = system.connector();
    let (id, _psql, mut stdin) = system.active_psql().await;
    server.stop("-KILL");
    for _ in 0..3 {
        send(&mut stdin, "select 1;");
    }
    send(&mut stdin, "select pg_sleep(30);");
    // Marked alive every second: the statement's last second before the kill may be lost.
    tokio::time::sleep(Duration::from_secs(4)).await;
    killed.stop("-KILL");

    let _server = system.serve();
    let _restarted = system.connector();
    let sessions = system
        .wait_for("the session to complete", |s| {
            s.iter().any(|s| s["id"] == id.as_str() && s["sessionStatus"] == "completed")
        })
        .await;
    let session = sessions.iter().find(|s| s["id"] == id.as_str()).unwrap();
    assert!(seconds(&session["duration"]) >= 2.0, "it ran for over 4 s: {session}");
    let url =
        format!("http://127.0.0.1:{}/gatehouse.sessions.v1.StatementsService/ListSessionStatements", system.api_port);
    let response = system.http.post(url).header("X-API-KEY", &system.admin_key).json(&json!({"session_id": id}));
    let listed: Value = response.send().await.unwrap().json().await.unwrap();
    let statements = listed["statements"].as_array().unwrap();
    let cut = statements.last().unwrap();
    assert_eq!((&cut["text"], &cut["status"]), (&json!("select pg_sleep(30);"), &json!("unreported")), "{listed}");
    assert!(seconds(&cut["duration"]) >= 2.0, "it ran for 4 s before the connector died: {listed}");
}

/// A `google.protobuf.Duration` in JSON (`"3.5s"`), in seconds; absent is 0.
fn seconds(duration: &Value) -> f64 {
    duration.as_str().map_or(0.0, |d| d.strip_suffix('s').unwrap().parse().unwrap())
}

#[tokio::test]
async fn pgbench_sessions_are_recorded_with_their_statements() {
    let system = System::new("60s");
    let _server = system.serve();
    let _connector = system.connector();
    let database = format!("gh_pgbench_{}", std::process::id());
    let direct = |sql: &str| {
        output(Command::new("psql").args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ]))
    };
    direct(&format!("DROP DATABASE IF EXISTS {database}"));
    direct(&format!("CREATE DATABASE {database}"));
    let port = system.proxy_port.to_string();
    let pgbench = |args: &[&str]| {
        output(
            Command::new("pgbench")
                .env("PGSSLMODE", "disable")
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .args(args)
                .arg(&database),
        )
    };
    pgbench(&["-i", "-q", "-s", "1"]);
    let report = pgbench(&["-n", "-S", "-c", "2", "-j", "1", "-t", "25"]);
    assert!(report.contains("number of transactions actually processed: 50/50"), "{report}");
    direct(&format!("DROP DATABASE {database} WITH (FORCE)"));

    // The initialization's session, the run's own (pgbench reads the scale before it starts
    // its clients) and one per client, each with its statements, all ended by now: wait for
    // the connector's report of the last end, not merely for most of them.
    let sessions = system
        .wait_for("four completed pgbench sessions and none active", |s| {
            s.iter().filter(|s| s["sessionStatus"] == "completed").count() >= 4
                && s.iter().all(|s| s["sessionStatus"] == "completed")
        })
        .await;
    let mut selects = 0;
    for session in &sessions {
        let transcript = system.transcript(session["id"].as_str().unwrap()).await;
        selects += transcript.iter().filter(|t| t.starts_with("SELECT abalance FROM pgbench_accounts")).count();
    }
    assert_eq!(selects, 50, "every pgbench transaction is in a transcript");
}

/// A key the control plane refuses (unknown, or an API key, which cannot report sessions) is a
/// configuration error: the connector says so and exits, rather than retry for ever.
#[tokio::test]
async fn a_connector_with_a_refused_key_exits_at_start() {
    let system = System::new("60s");
    let _serve = system.serve();
    let config = std::fs::read_to_string(&system.config).unwrap();
    let connector_key = config.lines().find_map(|l| l.strip_prefix("key = \"")).unwrap().trim_end_matches('"');
    for key in ["ghc_nosuchkey_nosuchsecret", system.admin_key.as_str()] {
        std::fs::write(&system.config, config.replace(connector_key, key)).unwrap();
        let started = Instant::now();
        let out = gatehouse().arg("connector").arg("--config").arg(&system.config).output().unwrap();
        let error = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{error}");
        assert!(error.contains("refused this connector's key") && !error.contains(key), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

/// A connector whose key is revoked while it runs refuses new sessions, saying why, and its
/// `/health` says so too; the session it carries goes on, its events spooled.
#[tokio::test]
async fn a_connector_whose_key_is_revoked_refuses_new_sessions() {
    // Its open session's next statement is the next report, which the control plane refuses.
    revoked_key_refuses_new_sessions("60s", true, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_connector_whose_key_is_revoked_notices_at_its_next_heartbeat() {
    // The shortest lease, 10 s: a heartbeat every 1.7 s, and nothing to report.
    revoked_key_refuses_new_sessions("10s", false, Duration::from_secs(10)).await;
}

/// With nothing to report and 10 s between heartbeats, the termination stream, whose key the
/// control plane checks every 5 s, is refused first: the heartbeat asks at once.
#[tokio::test]
async fn a_quiet_connector_whose_key_is_revoked_notices_through_its_termination_stream() {
    revoked_key_refuses_new_sessions("60s", false, Duration::from_secs(7)).await;
}

/// Revokes the key of a connector with an open psql session (which runs one more statement
/// when `nudge`): new sessions are refused `within` that long, with `/health` saying why, and
/// the open one goes on.
async fn revoked_key_refuses_new_sessions(lease: &'static str, nudge: bool, within: Duration) {
    let system = System::new(lease);
    let _serve = system.serve();
    let _connector = system.connector();
    let config = std::fs::read_to_string(&system.config).unwrap();
    let admin = config.lines().find_map(|l| l.strip_prefix("admin_listen = \"")).unwrap().trim_end_matches('"');
    let health = format!("http://{admin}/health");
    let (mut open, mut stdin) = system.psql();
    send(&mut stdin, "select 1;");
    system.wait_for("an active session", |s| active(s).len() == 1).await;
    assert_eq!(system.http.get(&health).send().await.unwrap().status(), 200);

    output(gatehouse().args(["connectors", "revoke", "edge", "--org", "acme", "--data-dir"]).arg(&system.data));
    if nudge {
        send(&mut stdin, "select 2;");
    }
    let deadline = Instant::now() + within;
    loop {
        let response = system.http.get(&health).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        if status == 503 {
            assert!(body.contains("refuses this connector's key"), "{body}");
            // What to do about a revoked key: a new one, not the one `connectors create` printed.
            assert!(body.contains("was revoked") && body.contains("`gatehouse connectors rotate-key`"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "/health still says {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = std::process::Command::new("psql")
        .args(["-X", "-Atc", "select 1"])
        .arg(format!("host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable", system.proxy_port))
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(error.contains("the control plane refuses this connector's key"), "{error}");
    send(&mut stdin, "select 3;");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(open.0.try_wait().unwrap().is_none(), "the open session goes on");
}

/// The control plane over HTTPS (`serve --tls-cert --tls-key`) with a certificate from a
/// private CA: the connector reports to its `https://` URL (`ca_file`), and the CLI reads the
/// session back with `--ca-file`. Without the CA the certificate is refused, and plain http
/// to the TLS port gets nowhere.
#[tokio::test]
async fn the_control_plane_over_https() {
    let system = System::new("60s");
    let (ca, cert, key) = certificates(system.dir.path(), "api");
    let url = format!("https://localhost:{}", system.api_port);
    let plain_url = format!("http://127.0.0.1:{}", system.api_port);
    let config = std::fs::read_to_string(&system.config).unwrap();
    let config = config.replace(&format!("url = \"{plain_url}\""), &format!("url = \"{url}\"\nca_file = {:?}", ca));
    std::fs::write(&system.config, config).unwrap();
    let _server = Proc(
        gatehouse()
            .args(["serve", "--listen", &format!("127.0.0.1:{}", system.api_port), "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--data-dir")
            .arg(&system.data)
            .spawn()
            .unwrap(),
    );
    wait_port(system.api_port);
    let _connector = system.connector();
    let (mut psql, mut stdin) = system.psql();
    send(&mut stdin, "select 42 as answer;");
    send(&mut stdin, "\\q");
    drop(stdin);
    let _ = psql.0.wait();

    let list = |url: &str, extra: &[&str]| {
        gatehouse()
            .args(["sessions", "list", "--output", "jsonl", "--timeout", "5s", "--url", url])
            .args(["--api-key", &system.admin_key])
            .args(extra)
            .output()
            .unwrap()
    };
    let trusted = ["--ca-file", ca.to_str().unwrap()];
    let deadline = Instant::now() + Duration::from_secs(10);
    let session = loop {
        let out = list(&url, &trusted);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sessions: Vec<Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if let Some(done) = sessions.into_iter().find(|s| s["sessionStatus"] == "completed") {
            break done;
        }
        assert!(Instant::now() < deadline, "the session never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let transcript = gatehouse()
        .args(["sessions", "transcript", session["id"].as_str().unwrap(), "--url", &url])
        .args(["--api-key", &system.admin_key])
        .args(trusted)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&transcript.stdout).contains("select 42 as answer;"));

    let untrusted = list(&url, &[]);
    let error = String::from_utf8_lossy(&untrusted.stderr);
    assert!(!untrusted.status.success() && error.contains("UnknownIssuer") && error.contains("--ca-file"), "{error}");
    let plain = list(&plain_url, &[]);
    let error = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success() && error.contains("use an https:// URL"), "{error}");
}

/// A control-plane URL that reaches another kind of HTTP server (one that answers 404 to
/// everything, as another connector's admin port does) is named as such at start, in the CLI's
/// words and once; the connector keeps retrying, since it may be a proxy still starting.
#[test]
fn a_connector_pointed_at_another_http_server_says_so_once() {
    use std::io::{BufRead, Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let foreign = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", foreign.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in foreign.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.read(&mut [0; 8192]);
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                // What the request still sends is read, so that closing resets nothing.
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("connector.toml");
    std::fs::write(
        &config,
        format!(
            "admin_listen = \"127.0.0.1:{}\"\nstate_dir = \"{}\"\n\n[control_plane]\nurl = \"{url}\"\n\
             key = \"ghc_AAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\"\n\n[[listeners]]\n\
             listen = \"127.0.0.1:{}\"\nresource = \"res_x\"\n",
            free_port(),
            dir.path().join("state").display(),
            free_port(),
        ),
    )
    .unwrap();
    let mut child =
        gatehouse().arg("connector").arg("--config").arg(&config).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let _connector = Proc(child);
    let (send, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|line| _ = send.send(line)));
    let said = format!(
        "the server at {url} answered HTTP 404 with a response of no stated type, not the Gatehouse API: is {url} \
         the control plane's address?"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    // Until it has been said and the connector has tried again a few times.
    while Instant::now() < deadline
        && !(log.iter().any(|l: &String| l.contains(&said)) && requests.load(Ordering::Relaxed) >= 4)
    {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            log.push(line);
        }
    }
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(300)) {
        log.push(line);
    }
    let log = log.join("\n");
    assert_eq!(log.matches(&said).count(), 1, "said once: {log}");
    assert!(requests.load(Ordering::Relaxed) >= 4, "retried: {log}");
    assert!(!log.contains("unimplemented: HTTP error 404"), "{log}");
}

/// What `gatehouse connector --config CONFIG` logs (at warn) until a line holds `needle`, or
/// 20 s have passed; it is stopped then.
fn connector_log_until(config: &Path, env: &[(&str, &str)], needle: &str) -> String {
    let mut command = gatehouse();
    command.arg("connector").arg("--config").arg(config).envs(env.iter().copied());
    let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let _connector = Proc(child);
    let (send, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        std::io::BufRead::lines(stderr).map_while(Result::ok).for_each(|line| _ = send.send(line))
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    while Instant::now() < deadline && !log.iter().any(|line: &String| line.contains(needle)) {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            log.push(line);
        }
    }
    log.join("\n")
}

/// GATEHOUSE_CONNECTOR_LISTENERS, which replaces the file's [[listeners]], says so at start,
/// as GATEHOUSE_URL does.
#[test]
fn listeners_from_the_environment_that_replace_the_files_are_warned_of() {
    let system = System::new("60s");
    let listeners = format!("127.0.0.1:{}={}", free_port(), system.resource);
    let said = "GATEHOUSE_CONNECTOR_LISTENERS replaces [[listeners]] from the configuration file";
    let log = connector_log_until(&system.config, &[("GATEHOUSE_CONNECTOR_LISTENERS", &listeners)], said);
    assert!(log.contains(said) && log.contains(&format!("127.0.0.1:{}", system.proxy_port)), "{log}");
}

/// A `[[credentials]]` naming no resource of the connector's is warned of at start, with the
/// resources it has, as a listener's unknown resource is named.
#[test]
fn credentials_for_an_unknown_resource_are_warned_of() {
    let system = System::new("60s");
    let _server = system.serve();
    let mut config = std::fs::read_to_string(&system.config).unwrap();
    config.push_str("\n[[credentials]]\nresource = \"nosuch\"\nrole = \"analyst\"\npassword_env = \"PW\"\n");
    config.push_str("\n[[credentials]]\nresource = \"pg\"\nrole = \"analyst\"\npassword_env = \"PW\"\n");
    std::fs::write(&system.config, config).unwrap();
    let said = "credentials[1]: resource `pg` is not the id";
    let log = connector_log_until(&system.config, &[("PW", "secret")], said);
    assert!(
        log.contains("credentials[0]: resource `nosuch` is not the id of one of this connector's resources: its password is never used"),
        "{log}"
    );
    assert!(log.contains(&format!("pg ({})", system.resource)), "the known resources are named: {log}");
    assert!(
        log.contains(&format!(
            "{said} of one of this connector's resources: credentials name a resource by its id: write `{}`",
            system.resource
        )),
        "{log}"
    );
}
