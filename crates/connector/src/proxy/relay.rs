//! The hot path: one task per connection relays both directions until one side ends, the
//! session is terminated, or the connector shuts down.
//!
//! The loop selects over the connection's signal (its listener's shutdown or its session's
//! termination, and asks to announce a statement running long), the two outboxes and the two
//! readers, all cancel-safe. A read brings one or more whole messages; each is looked at where
//! it lies in the read buffer (its type byte, and the fields of the few that are recorded or
//! rewritten: authentication, BackendKeyData, and the recorder's), and then they go on to the
//! other side as one run of bytes, written straight from the read buffer when the socket takes
//! them, else kept in that side's outbox for the loop's next turns. Reading a side pauses while
//! the outbox it feeds is above its high-water mark, so a slow client holds back the server and
//! not memory.
//!
//! A framing error from either side ends this session only: FATAL 08P01 to the client, an
//! [`EndReason::Error`] end, and the connector carries on.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_pgwire::backend::{AuthenticationRequest, BackendKeyData, ErrorResponse};
use gatehouse_pgwire::frontend::{Flush, Terminate};
use gatehouse_pgwire::{
    CancelRequest, DEFAULT_MAX_MESSAGE_LEN, Encode, Filled, Message, MessageReader, StartupMessage, WireError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::ProxyContext;
use super::cancel::{self, CancelTarget};
use super::client::ClientStream;
use super::login::Identified;
use super::outbox::Outbox;
use super::recorder::Recorder;
use super::session::Session;
use super::shutdown::ConnectionStop;
use super::upstream::{self, ServerStream};
use crate::event::{EndReason, SessionStart, now_us};
use crate::live::Termination;
use crate::metrics::Metrics;
use crate::report::JournalPin;
use crate::stop::{Signal, StopReason, Stopper};
use crate::timer;

/// How long the connector waits for a side to take its last bytes when a session ends.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the statements a client left running are awaited for their outcome.
const OUTCOME_PATIENCE: Duration = Duration::from_secs(3600);
/// SQLSTATE recorded for statements still running when the session was ended by us.
const SQLSTATE_ADMIN_SHUTDOWN: &str = "57P01";
/// SQLSTATE recorded for a statement whose large message the connector had no room for.
const SQLSTATE_OUT_OF_MEMORY: &str = "53200";
/// SQLSTATE recorded for statements still running when a connection broke.
const SQLSTATE_CONNECTION_FAILURE: &str = "08006";
/// Requests of one session awaiting the server's answer, past which its client is not read
/// until answers come: what PostgreSQL's own socket buffers would hold back. Each costs a
/// statement's text here, where the database holds no more than its socket buffers.
const MAX_AWAITING: usize = 16_384;
/// Bytes of statement text those requests may hold, past which the client is not read either:
/// large statements pipelined behind a slow one.
const MAX_AWAITING_TEXT: usize = 16 * 1024 * 1024;

/// A client past its startup packet and a connection to the database.
pub(crate) struct Conn {
    pub client: ClientStream,
    pub client_reader: MessageReader,
    pub startup: StartupMessage,
    pub server: ServerStream,
    /// Empty, or what the database sent after an identity login's AuthenticationOk.
    pub server_reader: MessageReader,
    /// Set when the connector logged in itself: the session starts at once.
    pub identified: Option<Box<Identified>>,
    pub peer: SocketAddr,
    pub accepted_us: i64,
}

/// How a wait for the outcomes of a client that left ended.
enum Waited {
    /// Every statement was answered, or the database closed, or the wait ran out.
    Answered,
    ClientGone,
}

/// Why the relay stopped.
enum End {
    /// The client sent Terminate or closed the connection.
    Client,
    /// A write to the client failed: it is gone, as a database's write to a client that died
    /// fails.
    ClientGone(io::Error),
    /// The server closed the connection.
    Server,
    Terminated(Termination),
    /// The listener shut down, at this moment (the end time of all its sessions).
    Shutdown(i64),
    ClientProtocol(WireError),
    ServerProtocol(WireError),
    /// The database owed an answer during the login and gave none in time.
    LoginUnanswered(Duration),
    /// The client stopped sending a message that holds some of the large-message budget, for
    /// this long.
    ClientStalled(Duration),
    Io(io::Error),
}

impl End {
    fn client_read(error: WireError) -> Self {
        match error {
            // A client that went away without a word (a TLS session closed without
            // close_notify) left, as one that closes cleanly does.
            WireError::Io(error) if error.kind() == io::ErrorKind::UnexpectedEof => End::Client,
            // One that reset the connection (a killed process with answers unread) is gone: the
            // database would have lost what it had not read yet.
            WireError::Io(error)
                if matches!(error.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) =>
            {
                End::ClientGone(error)
            }
            // Any other failure to read it (a keepalive that timed out, a network gone) too.
            WireError::Io(error) => End::ClientGone(error),
            error => End::ClientProtocol(error),
        }
    }

    fn stopped(reason: StopReason) -> Self {
        match reason {
            StopReason::Shutdown { at_us } => End::Shutdown(at_us),
            StopReason::Terminated(termination) => End::Terminated(termination),
        }
    }

    fn server_read(error: WireError) -> Self {
        match error {
            WireError::Io(error) => End::Io(error),
            error => End::ServerProtocol(error),
        }
    }
}

/// Whether an Execute ending at `at` in the client's messages needs a Flush behind it for the
/// database to answer it as it ends: unless a Sync or a Flush of the client's own follows it in
/// what was read (or the start of one: a message split across reads), the client may send more
/// before its Sync, now or in its next writes (psycopg's pipeline writes each statement alone).
fn flush_after_execute(reader: &MessageReader, at: usize) -> bool {
    !matches!(reader.buffered_bytes().get(at), Some(b'S' | b'H'))
}

/// Relays one connection from its startup packet to its end, and reports its session.
pub(crate) async fn run(conn: Conn, ctx: Arc<ProxyContext>, stop: ConnectionStop) {
    let Conn { client, client_reader, startup, server, server_reader, identified, peer, accepted_us } = conn;
    let upstream = match server.peer_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::debug!(%error, "upstream connection lost before the relay");
            return;
        }
    };
    let mut relay = Relay {
        ctx,
        client_reader,
        server_reader,
        to_client: Outbox::new(client.is_tls()),
        client_tls: client.is_tls(),
        to_server: Outbox::new(server.is_tls()),
        recorder: Recorder::default(),
        watched: None,
        watched_journaled: None,
        session: None,
        held_for_login: false,
        large_message_seen: None,
        stopper: stop.stopper(),
        startup,
        peer,
        upstream,
        accepted_us,
        issued: None,
        backend: None,
        identified: None,
        // The database owes its answer to the startup, or after an identity login, the rest
        // of its greeting.
        login_deadline: Some(match identified {
            None => Deadline::after(upstream::FIRST_ANSWER_TIMEOUT),
            // Logged in already: the rest of the greeting is a later step.
            Some(_) => Deadline::after(upstream::LOGIN_STEP_TIMEOUT),
        }),
    };
    match identified {
        // The connector logged in itself: the client hears AuthenticationOk now.
        Some(identified) => {
            relay.to_client.push(&identified.greeting);
            relay.authenticated();
            relay.identified = Some(identified);
        }
        // The client authenticates with the database through the relay.
        None => relay.to_server.push(relay.startup.frame()),
    }
    match (client, server) {
        (ClientStream::Plain(mut client), ServerStream::Plain(mut server)) => {
            let (cr, cw) = client.split();
            let (sr, sw) = server.split();
            if relay.run(stop, cr, cw, sr, sw).await {
                reset(&server);
            }
        }
        (ClientStream::Tls(client), ServerStream::Plain(mut server)) => {
            let (cr, cw) = tokio::io::split(*client);
            let (sr, sw) = server.split();
            if relay.run(stop, cr, cw, sr, sw).await {
                reset(&server);
            }
        }
        (ClientStream::Plain(mut client), ServerStream::Tls(server)) => {
            let (cr, cw) = client.split();
            let (mut sr, mut sw) = tokio::io::split(*server);
            if relay.run(stop, cr, cw, &mut sr, &mut sw).await {
                reset(sr.unsplit(sw).get_ref().0);
            }
        }
        (ClientStream::Tls(client), ServerStream::Tls(server)) => {
            let (cr, cw) = tokio::io::split(*client);
            let (mut sr, mut sw) = tokio::io::split(*server);
            if relay.run(stop, cr, cw, &mut sr, &mut sw).await {
                reset(sr.unsplit(sw).get_ref().0);
            }
        }
    }
}

/// Resets the connection to the database as it is dropped (an RST, not a FIN): the database
/// fails its next read or write, as with a client that died, rather than read what is left.
fn reset(tcp: &tokio::net::TcpStream) {
    if let Err(error) = tcp.set_zero_linger() {
        tracing::debug!(%error, "cannot reset the connection to the database");
    }
}

struct Relay {
    ctx: Arc<ProxyContext>,
    client_reader: MessageReader,
    server_reader: MessageReader,
    /// Frames for the client.
    to_client: Outbox,
    /// Frames for the server.
    to_server: Outbox,
    recorder: Recorder,
    /// The statement the database is on (the recorder's number), marked with `stopper` since
    /// it has been, for the sweep that announces long ones.
    watched: Option<u64>,
    /// The statement `watched` names, written ahead to the journal before it went to the
    /// database, until its own event is.
    watched_journaled: Option<JournalPin>,
    /// Started at the database's first ReadyForQuery.
    session: Option<Session>,
    /// A message the client sent before its login completed that is not part of the login (a
    /// query pipelined behind the startup), kept in the reader, and the client not read, until
    /// the session starts: the database would run it once the login completes, and it is
    /// recorded only in a session. Passed on at once where the database asks the client for a
    /// password: it refuses anything else there, as directly.
    held_for_login: bool,
    /// Stops this connection: registered with the live sessions when the session starts, so
    /// that an administrator can terminate it; it also marks since when the database has been
    /// on the statement `watched` names, for the sweep that asks for long ones.
    stopper: Stopper,
    startup: StartupMessage,
    peer: SocketAddr,
    upstream: SocketAddr,
    accepted_us: i64,
    /// The key handed to the client, in the cancel map.
    issued: Option<BackendKeyData>,
    /// The backend's real key, to cancel its query when the session is ended here.
    backend: Option<CancelTarget>,
    /// Who the connector logged in, until the session starts.
    identified: Option<Box<Identified>>,
    /// Whether the client's connection is TLS.
    client_tls: bool,
    /// Until the session starts: when the relay gives up on a database that owes an answer
    /// ([`upstream::FIRST_ANSWER_TIMEOUT`] after the startup, [`upstream::LOGIN_STEP_TIMEOUT`]
    /// after what it last said, or after the client last spoke). `None` while the database
    /// waits for the client (a password, a SASL step): psql may be asking a person, and
    /// PostgreSQL's `authentication_timeout` bounds that.
    login_deadline: Option<Deadline>,
    /// While the client's message at the front holds some of the large-message budget: how
    /// much of it had arrived when last seen, and since when no more has.
    large_message_seen: Option<(usize, Deadline)>,
}

impl Relay {
    /// Returns whether the connection to the database is to be reset rather than closed.
    async fn run<CR, CW, SR, SW>(
        mut self,
        mut stop: ConnectionStop,
        mut cr: CR,
        mut cw: CW,
        mut sr: SR,
        mut sw: SW,
    ) -> bool
    where
        CR: AsyncRead + WaitReadable + Unpin,
        CW: AsyncWrite + Unpin,
        SR: AsyncRead + WaitReadable + Unpin,
        SW: AsyncWrite + Unpin,
    {
        let end = loop {
            // The client's next statements are read only when they can be recorded: the
            // report queue has room (it drains at the control plane's pace), and this
            // session's statements awaiting the server's answer are not piling up (a client
            // that pipelines and never reads its results). A login reports nothing until it
            // succeeds: its password is read whatever the queue holds, or the database's
            // authentication_timeout would end it.
            let reporting = self.session.is_none() || self.ctx.reporter.has_room();
            let recording = reporting && self.awaiting_has_room();
            let stall_deadline = self.large_message_stall_deadline();
            tokio::select! {
                biased;
                signal = stop.signal() => match signal {
                    Signal::Stop(reason) => break End::stopped(reason),
                    Signal::AnnounceRunning => self.announce_running(),
                },
                () = self.ctx.reporter.room(), if !reporting => {}
                () = sleep_until(self.login_deadline), if self.login_deadline.is_some() => {
                    break End::LoginUnanswered(self.login_deadline.map_or(Duration::ZERO, |d| d.patience));
                }
                () = sleep_until(stall_deadline), if stall_deadline.is_some() => {
                    break End::ClientStalled(self.ctx.large_message_stall);
                }
                written = self.to_client.drive(&mut cw), if self.to_client.wants_io() => {
                    if let Err(end) = self.written_to_client(written) {
                        break end;
                    }
                }
                written = self.to_server.drive(&mut sw), if self.to_server.wants_io() => {
                    if let Err(error) = written {
                        break End::Io(error);
                    }
                }
                read = next_batch(&mut self.server_reader, &mut sr), if self.to_client.has_room() => match read {
                    Ok(Filled::Part) => {}
                    Ok(Filled::Message) => {
                        if let Err(end) = self.server_batch(&mut cw) {
                            break end;
                        }
                        // The session started, or the database asks the client for something.
                        if self.held_for_login && !self.login_owed() {
                            self.held_for_login = false;
                            if let Err(end) = self.client_batch(&mut sw) {
                                break end;
                            }
                        }
                    }
                    Ok(Filled::Closed) => break End::Server,
                    Err(error) => break End::server_read(error),
                },
                read = next_batch(&mut self.client_reader, &mut cr),
                    if self.to_server.has_room() && recording && !self.held_for_login => match read {
                    // More of a large message: its stall deadline moves on.
                    Ok(Filled::Part) => {}
                    Ok(Filled::Message) => {
                        if let Err(end) = self.client_batch(&mut sw) {
                            break end;
                        }
                    }
                    Ok(Filled::Closed) => break End::Client,
                    // A statement sent behind the startup packet waits for the login, as it
                    // would in the database's socket buffer, and is then held to the limit of
                    // an authenticated client, not to the login's.
                    Err(WireError::TooLarge { .. }) if self.waits_for_login(0) => self.held_for_login = true,
                    Err(error) => break End::client_read(error),
                },
            }
        };
        self.finish(end, &mut stop, &mut cr, &mut cw, &mut sr, &mut sw).await
    }

    fn written_to_client(&self, written: io::Result<usize>) -> Result<(), End> {
        let n = written.map_err(End::ClientGone)?;
        Metrics::add(&self.ctx.metrics.bytes_to_clients_total, n as u64);
        Ok(())
    }

    /// Relays the messages a read from the server brought. Each is looked at where it was
    /// read, and they are passed on as one run of bytes; during the login, the messages the
    /// relay acts on (and may rewrite) are taken one by one.
    fn server_batch<W: AsyncWrite + Unpin>(&mut self, cw: &mut W) -> Result<(), End> {
        let now = now_us();
        // The run to pass on starts after the last message taken one by one.
        let (mut run_start, mut scanned) = (0, 0);
        let result = loop {
            let msg = match self.server_reader.message_at(scanned) {
                Ok(Some(msg)) => msg,
                Ok(None) => break Ok(()),
                Err(error) => break Err(End::server_read(error)),
            };
            let start = scanned;
            scanned += msg.len();
            if self.session.is_some() && msg.tag() != b'K' {
                self.recorder.on_server(msg, now);
                continue;
            }
            let owned = msg.to_message();
            self.to_client.push(&self.server_reader.buffered_bytes()[run_start..start]);
            run_start = scanned;
            if let Err(end) = self.on_login_message(&owned, now) {
                break Err(end);
            }
        };
        let written = self.to_client.relay(&mut self.server_reader, run_start..scanned, cw);
        let written = self.written_to_client(written);
        self.report_statements();
        // A server's messages only complete statements: nothing to watch for if none was on.
        if self.watched.is_some() {
            self.watch_running(now);
        }
        result.and(written)
    }

    /// A message from the server before the session started, or a BackendKeyData.
    fn on_login_message(&mut self, msg: &Message, now: i64) -> Result<(), End> {
        if self.session.is_none() {
            // More is owed until ReadyForQuery, unless this asks the client for something.
            self.login_deadline = Some(Deadline::after(upstream::LOGIN_STEP_TIMEOUT));
        }
        match msg.tag() {
            b'R' if self.session.is_none() => {
                let request = msg.decode::<AuthenticationRequest>().map_err(End::ServerProtocol)?;
                if !matches!(request, AuthenticationRequest::Ok | AuthenticationRequest::SaslFinal(_)) {
                    self.login_deadline = None;
                }
                match request {
                    AuthenticationRequest::Ok => self.authenticated(),
                    // SCRAM with channel binding (`-PLUS`) binds the login to the TLS connection the
                    // database sees, which is the connector's: a client cannot complete it through
                    // the relay. Offered to a client without TLS it is worse: libpq then refuses to
                    // log in at all. Such a client is offered the mechanisms without it.
                    AuthenticationRequest::Sasl { mechanisms } if !self.client_tls => {
                        let mechanisms: Vec<String> =
                            mechanisms.into_iter().filter(|m| !m.ends_with("-PLUS")).collect();
                        AuthenticationRequest::Sasl { mechanisms }.encode(self.to_client.buf_mut());
                        return Ok(());
                    }
                    _ => {}
                }
            }
            // The login is complete only here: the database may still refuse it after
            // AuthenticationOk (no such database, too many connections), and a refused
            // login is no session.
            b'Z' if self.session.is_none() => {
                self.login_deadline = None;
                let identified = self.identified.take();
                self.start_session(identified.as_deref());
            }
            // A login the database refused is no session, but it is an attempt to touch the
            // database: counted, and logged with who tried (PostgreSQL's message names no secret).
            b'E' if self.session.is_none() => {
                Metrics::add(&self.ctx.metrics.database_login_refusals_total, 1);
                let error = msg.decode::<ErrorResponse>().ok();
                tracing::info!(
                    peer = %self.peer,
                    user = self.startup.user().unwrap_or_default(),
                    database = self.startup.database().unwrap_or_default(),
                    sqlstate = error.as_ref().and_then(ErrorResponse::code).unwrap_or_default(),
                    error = error.as_ref().and_then(ErrorResponse::message).unwrap_or_default(),
                    "the database refused a login",
                );
                self.recorder.on_server(msg.as_message_ref(), now);
            }
            b'K' => {
                let real = msg.decode::<BackendKeyData>().map_err(End::ServerProtocol)?;
                if let Some(issued) = self.issued.take() {
                    self.ctx.cancels.remove(&issued);
                }
                let ours = self.ctx.cancels.issue(self.upstream, &real);
                self.backend = Some(CancelTarget {
                    upstream: self.upstream,
                    key: CancelRequest { pid: real.pid, secret_key: real.secret_key },
                });
                ours.encode(self.to_client.buf_mut());
                self.issued = Some(ours);
                return Ok(());
            }
            _ => self.recorder.on_server(msg.as_message_ref(), now),
        }
        self.to_client.push(msg.frame());
        Ok(())
    }

    /// Relays the messages a read from the client brought, looked at where they were read and
    /// passed on as one run of bytes.
    fn client_batch<W: AsyncWrite + Unpin>(&mut self, sw: &mut W) -> Result<(), End> {
        let now = now_us();
        // The run to pass on starts after the last Flush put in.
        let (mut run_start, mut scanned) = (0, 0);
        let result = loop {
            // Before its length is checked, which is against the login's limit until then.
            if self.waits_for_login(scanned) {
                self.held_for_login = true;
                break Ok(());
            }
            match self.client_reader.message_at(scanned) {
                Ok(Some(msg)) => {
                    let tag = msg.tag();
                    scanned += msg.len();
                    self.recorder.on_client(msg, now);
                    if tag == b'X' {
                        break Err(End::Client);
                    }
                    // In a pipeline the database holds every answer back until the Sync, and
                    // each statement would seem to end when the last one did: a Flush after
                    // each Execute not followed by a Sync has it answer each as it ends. (A
                    // Flush during a COPY FROM STDIN is ignored, as after an error.)
                    if tag == b'E' && self.session.is_some() && flush_after_execute(&self.client_reader, scanned) {
                        self.to_server.push(&self.client_reader.buffered_bytes()[run_start..scanned]);
                        Flush.encode(self.to_server.buf_mut());
                        run_start = scanned;
                    }
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(End::client_read(error)),
            }
        };
        Metrics::add(&self.ctx.metrics.bytes_from_clients_total, scanned as u64);
        if self.session.is_none() && scanned > 0 {
            // The client answered: the database owes the next word.
            self.login_deadline = Some(Deadline::after(upstream::LOGIN_STEP_TIMEOUT));
        }
        // A client's messages only add statements behind the one the server is on.
        if self.watched.is_none() {
            self.watch_running(now);
        }
        let written = self.to_server.relay(&mut self.client_reader, run_start..scanned, sw);
        if !self.awaiting_has_room() {
            // The client is not read until answers come, but in an extended exchange the
            // server holds its answers back until the Sync the client has yet to send: a
            // Flush (no answer of its own, ignored in COPY and after an error) sends them.
            Flush.encode(self.to_server.buf_mut());
        }
        result.and(written.map(drop).map_err(End::Io))
    }

    /// When a client that stopped sending a message holding some of the large-message budget
    /// is given up on: [`ProxyContext::large_message_stall`] after its last bytes came.
    fn large_message_stall_deadline(&mut self) -> Option<Deadline> {
        if !self.client_reader.holds_budget() {
            self.large_message_seen = None;
            return None;
        }
        let arrived = self.client_reader.buffered();
        match self.large_message_seen {
            Some((seen, deadline)) if seen == arrived => Some(deadline),
            _ => {
                let deadline = Deadline::after(self.ctx.large_message_stall);
                self.large_message_seen = Some((arrived, deadline));
                Some(deadline)
            }
        }
    }

    /// Whether the requests awaiting the server's answers leave room to read the client.
    fn awaiting_has_room(&self) -> bool {
        self.recorder.awaiting() < MAX_AWAITING && self.recorder.awaiting_text_len() < MAX_AWAITING_TEXT
    }

    /// AuthenticationOk, the database's or the connector's after an identity login.
    fn authenticated(&mut self) {
        // Statements may be as large as the reader allows.
        self.client_reader.set_max_message_len(DEFAULT_MAX_MESSAGE_LEN);
    }

    /// The database's first ReadyForQuery: the connection becomes a session.
    fn start_session(&mut self, identified: Option<&Identified>) {
        let mut start = SessionStart {
            start_us: self.accepted_us,
            resource_id: self.ctx.resource_id.clone(),
            client_ip: self.peer.ip().to_canonical().to_string(),
            server_ip: self.upstream.ip().to_canonical().to_string(),
            application_name: self.startup.application_name().unwrap_or_default().to_owned(),
            ..SessionStart::default()
        };
        match identified {
            Some(identified) => {
                start.username = identified.username.clone();
                start.native_username = identified.native_role.clone();
                start.database = identified.database.clone();
                start.user_type = identified.user_type.as_str().to_owned();
                start.formal_user = Some(Box::new(identified.formal_user.clone()));
                start.end_user = identified.end_user.clone().map(Box::new);
            }
            None => {
                let user = as_postgres_reads(self.startup.user().unwrap_or_default());
                start.native_username = user.clone();
                start.username = user;
                start.database = as_postgres_reads(self.startup.database().unwrap_or_default());
                start.user_type = "native".to_owned();
            }
        }
        let session = Session::start(self.ctx.reporter.clone(), start);
        let access = identified.map(|identified| Arc::clone(&identified.access));
        self.ctx.live.register(session.id(), self.stopper.clone(), access);
        tracing::debug!(session = session.id(), peer = %self.peer, "session started");
        self.session = Some(session);
    }

    fn report_statements(&mut self) {
        if !self.recorder.has_done() {
            return;
        }
        let done = self.recorder.done();
        match &mut self.session {
            Some(session) => {
                for statement in done {
                    Metrics::add(&self.ctx.metrics.statements_total, 1);
                    session.statement(statement);
                }
            }
            None => drop(done),
        }
    }

    /// Marks since when the database has been on its statement, when that changed at `now`:
    /// sent then, or next in line after the one before.
    fn watch_running(&mut self, now: i64) {
        let nth = self.recorder.running_nth();
        if nth != self.watched {
            self.watched = nth;
            self.stopper.set_running_since(if nth.is_some() { now } else { 0 });
            // Before it reaches the database: a crash of the connector while the database runs
            // it must not leave a statement that may have changed data unrecorded. The one
            // before it was recorded already (`report_statements`).
            self.watched_journaled = match (&self.session, self.recorder.running()) {
                (Some(session), Some((start_us, text))) => session.journal_running(start_us, &text),
                _ => None,
            };
        }
    }

    /// Whether the database owes what a client that left waits for: the outcome of a statement
    /// it runs or has queued, the rest of a login, or with `every_answer`, any answer at all.
    /// (It answers, or closes once it reads the end of what the client sent.)
    fn owed(&self, every_answer: bool) -> bool {
        self.recorder.is_running() || self.login_owed() || (every_answer && self.recorder.awaiting() > 0)
    }

    /// Whether the client's message at `offset` in its reader waits for the login to complete:
    /// anything but an answer to the database's request for a password, while it owes the rest
    /// of the login.
    fn waits_for_login(&self, offset: usize) -> bool {
        self.login_owed() && self.client_reader.buffered_bytes().get(offset).is_some_and(|&tag| tag != b'p')
    }

    /// Whether the database owes the rest of a login: no session yet, and nothing asked of
    /// the client (a password) since the startup packet or its last answer.
    fn login_owed(&self) -> bool {
        self.session.is_none() && self.login_deadline.is_some()
    }

    /// The sweep found the statement marked running long: it is announced, once.
    fn announce_running(&mut self) {
        if let (Some(session), Some((start_us, text))) = (&mut self.session, self.recorder.running()) {
            session.running(start_us, &text);
            self.watched_journaled = None;
        }
    }

    /// Ends the session the way `end` requires: reports its end first (so that an abort after
    /// the shutdown grace period loses no event), then tells the client, stops the backend
    /// where we end it, and closes both sides.
    async fn finish<CR, CW, SR, SW>(
        mut self,
        mut end: End,
        stop: &mut ConnectionStop,
        cr: &mut CR,
        cw: &mut CW,
        sr: &mut SR,
        sw: &mut SW,
    ) -> bool
    where
        CR: AsyncRead + Unpin,
        CW: AsyncWrite + Unpin,
        SR: AsyncRead + WaitReadable + Unpin,
        SW: AsyncWrite + Unpin,
    {
        // The session ends when the client left, or when the statements it left running
        // finished: never before its statements.
        let mut client_left_us = now_us();
        // A client gone (not just done sending) is to the database as a dead client's socket
        // is: once what the database runs now has nowhere to go, the connection is reset, so
        // that it runs no more of what it has read (a dead client's pipelined COMMIT).
        let gone = matches!(end, End::ClientGone(_));
        // So is a client whose next message cannot be read: the database runs what came before
        // it, and answers it, before it reads the message that ends the session.
        let left = gone || matches!(end, End::Client | End::ClientProtocol(_));
        let mut reset = false;
        // A login the database is still answering may yet succeed (a client that closed right
        // after its startup packet, on trust): the database counts it as a session, and so it
        // is recorded, started and ended, once the database has accepted it.
        // One whose next message cannot be read is answered all it sent before it, as directly
        // (a Parse's error, a Sync's ReadyForQuery): it may still be reading.
        let every_answer = matches!(end, End::ClientProtocol(_));
        if left && self.owed(every_answer) {
            if gone && self.recorder.queued_behind_a_write() {
                // Directly, the database's answer to the statement running now would fail to
                // reach it, and what it sent after that would be lost with it.
                reset = true;
            } else {
                // What a client that left cleanly sent reaches the database.
                if !gone {
                    self.flush_server(sw).await;
                }
                // The database reads the end of the client's messages, as it would have
                // directly: it finishes what it has read (an extended exchange without its Sync
                // is rolled back), then closes.
                let _ = timer::timeout(FLUSH_TIMEOUT, sw.shutdown()).await;
                match self.await_outcomes(stop, cr, cw, sr, gone, every_answer).await {
                    Ok(Waited::Answered) => {}
                    Ok(Waited::ClientGone) => reset = true,
                    Err(reason) => end = End::stopped(reason),
                }
                client_left_us = now_us();
            }
        }
        let metrics = Arc::clone(&self.ctx.metrics);
        let (reason, end_us) = match &end {
            End::Client | End::ClientGone(_) => (EndReason::Client, client_left_us),
            End::Server | End::LoginUnanswered(_) => (EndReason::Server, now_us()),
            End::Terminated(Termination::AccessRevoked { .. }) => (EndReason::Revoked, now_us()),
            End::Terminated(Termination::Requested { .. }) => (EndReason::Terminated, now_us()),
            // Not an administrator's doing: the connector could not go on recording it.
            End::Terminated(Termination::SpoolFull) => (EndReason::Error, now_us()),
            End::Shutdown(at) => (EndReason::Shutdown, *at),
            End::ClientProtocol(_) | End::ServerProtocol(_) | End::Io(_) | End::ClientStalled(_) => {
                (EndReason::Error, now_us())
            }
        };
        match reason {
            EndReason::Terminated => Metrics::add(&metrics.sessions_terminated_total, 1),
            EndReason::Revoked => Metrics::add(&metrics.sessions_revoked_total, 1),
            EndReason::Error => Metrics::add(&metrics.errors_total, 1),
            _ => {}
        }
        let sqlstate = match (&end, reason) {
            // What the client is told (57P01, or 53100 for a full spool).
            (End::Terminated(termination), _) => termination.sqlstate(),
            (_, EndReason::Terminated | EndReason::Revoked | EndReason::Shutdown) => SQLSTATE_ADMIN_SHUTDOWN,
            (
                End::ClientProtocol(WireError::OverBudget { .. }) | End::ServerProtocol(WireError::OverBudget { .. }),
                _,
            ) => SQLSTATE_OUT_OF_MEMORY,
            _ => SQLSTATE_CONNECTION_FAILURE,
        };
        self.recorder.abandon(end_us, sqlstate, matches!(end, End::Client));
        if let End::ClientProtocol(WireError::OverBudget { len }) = &end {
            self.recorder.refused(self.client_reader.pending_tag(), *len, end_us, SQLSTATE_OUT_OF_MEMORY);
        }
        self.report_statements();
        if let Some(session) = self.session.take() {
            self.ctx.live.remove(session.id());
            tracing::debug!(session = session.id(), reason = reason.as_str(), "session ended");
            session.end(end_us, reason);
        }
        if let Some(issued) = self.issued.take() {
            self.ctx.cancels.remove(&issued);
        }

        match end {
            End::Terminated(termination) => {
                let error = ErrorResponse::fatal(termination.sqlstate(), termination.client_message());
                self.stop_backend(error, cw, sr, sw).await;
            }
            End::Shutdown(_) => {
                let message = "terminating connection: the connector is shutting down";
                self.stop_backend(ErrorResponse::admin_shutdown(message), cw, sr, sw).await;
            }
            End::Client => {
                self.flush_server(sw).await;
                self.flush_client(cw).await;
            }
            End::Server => self.flush_client(cw).await,
            End::ClientStalled(waited) => {
                tracing::info!(peer = %self.peer, ?waited, "the client stopped sending a large message");
                let message = format!(
                    "terminating connection: the client sent nothing of its message for {} s, while it held \
                     memory the Gatehouse connector's other connections share",
                    waited.as_secs()
                );
                ErrorResponse::protocol_violation(message).encode(self.to_client.buf_mut());
                self.flush_client(cw).await;
            }
            End::LoginUnanswered(waited) => {
                upstream::login_unanswered(&self.ctx, waited).encode(self.to_client.buf_mut());
                self.flush_client(cw).await;
            }
            End::ClientProtocol(error) => {
                tracing::info!(peer = %self.peer, %error, "protocol error from the client");
                refusal(&error, "invalid message from the client").encode(self.to_client.buf_mut());
                self.flush_client(cw).await;
                Terminate.encode(self.to_server.buf_mut());
                self.flush_server(sw).await;
            }
            End::ServerProtocol(error) => {
                tracing::warn!(upstream = %self.upstream, %error, "protocol error from the database");
                refusal(&error, "invalid message from the database").encode(self.to_client.buf_mut());
                self.flush_client(cw).await;
            }
            End::ClientGone(error) => tracing::debug!(peer = %self.peer, %error, "the client is gone"),
            End::Io(error) => tracing::debug!(peer = %self.peer, %error, "connection failed"),
        }
        let _ = timer::timeout(FLUSH_TIMEOUT, cw.shutdown()).await;
        if !reset {
            let _ = timer::timeout(FLUSH_TIMEOUT, sw.shutdown()).await;
        }
        reset
    }

    /// The client left while statements ran. PostgreSQL finishes what it has read (and
    /// commits it) before it notices, so the statements' real outcome is awaited, for as long
    /// as the database runs them (up to [`OUTCOME_PATIENCE`]): the session is still working
    /// meanwhile, and can be terminated. What is still running after that is recorded as cut
    /// off. The answers go to the client as the relay's loop sends them (a login still under
    /// way completes and starts the session, its key rewritten), as PostgreSQL sends them to a
    /// client that sent Terminate or half-closed after its queries, as long as it takes them.
    /// A client `gone` (or found gone by a failed write) takes none: the wait goes on for an
    /// outcome until the database, directly, would have written to it with more to run (see
    /// [`SendBuffer`]): its write would have failed there, and it would have stopped. With
    /// `every_answer`, the wait is for every answer owed (see [`Relay::owed`]).
    async fn await_outcomes<CR, CW, SR>(
        &mut self,
        stop: &mut ConnectionStop,
        cr: &mut CR,
        cw: &mut CW,
        sr: &mut SR,
        mut gone: bool,
        every_answer: bool,
    ) -> Result<Waited, StopReason>
    where
        CR: AsyncRead + Unpin,
        CW: AsyncWrite + Unpin,
        SR: AsyncRead + WaitReadable + Unpin,
    {
        let patience = timer::sleep(OUTCOME_PATIENCE);
        let mut patience = std::pin::pin!(patience);
        // A client that sent Terminate may still reset its connection: then it is gone. (After
        // its end, only a write can tell.)
        let (mut watching, mut unread) = (!gone, [0u8; 64]);
        let mut send_buffer = SendBuffer::default();
        while self.owed(every_answer) {
            tokio::select! {
                biased;
                signal = stop.signal() => match signal {
                    Signal::Stop(reason) => return Err(reason),
                    Signal::AnnounceRunning => self.announce_running(),
                },
                () = &mut patience => break,
                () = sleep_until(self.login_deadline), if self.login_owed() => break,
                read = cr.read(&mut unread), if watching => match read {
                    Ok(0) => watching = false,
                    // Sent after Terminate: nothing the database reads.
                    Ok(_) => {}
                    Err(_) => {
                        (gone, watching) = (true, false);
                        if self.recorder.queued_behind_a_write() {
                            return Ok(Waited::ClientGone);
                        }
                    }
                },
                written = self.to_client.drive(cw), if !gone && self.to_client.wants_io() => {
                    if self.written_to_client(written).is_err() {
                        gone = true;
                        if self.recorder.queued_behind_a_write() {
                            return Ok(Waited::ClientGone);
                        }
                    }
                }
                read = next_batch(&mut self.server_reader, sr), if gone || self.to_client.has_room() => match read {
                    Ok(Filled::Part) => {}
                    Ok(Filled::Message) => {
                        let written = send_buffer.writes(&self.server_reader);
                        let relayed = match gone {
                            true => self.server_batch(&mut tokio::io::sink()),
                            false => self.server_batch(cw),
                        };
                        match relayed {
                            Ok(()) => {}
                            Err(End::ClientGone(_)) => gone = true,
                            Err(_) => break,
                        }
                        let lost = written || self.recorder.queued_behind_a_write();
                        if gone && self.recorder.is_running() && lost {
                            return Ok(Waited::ClientGone);
                        }
                    }
                    // The database closed: what it had not answered, it never will.
                    Ok(Filled::Closed) | Err(_) => break,
                },
            }
        }
        Ok(if gone { Waited::ClientGone } else { Waited::Answered })
    }

    /// Ending the session here: the client hears why while the backend is stopped. Whatever
    /// it runs is cancelled (PostgreSQL does not notice a closed socket during a long query)
    /// and it is told to terminate; its output is read and dropped meanwhile, since a backend
    /// blocked writing to us (a client that stopped reading) acts on neither until its
    /// output moves. All at once, so that such a client does not keep the backend running
    /// for the flush timeout.
    async fn stop_backend<CW, SR, SW>(&mut self, error: ErrorResponse, cw: &mut CW, sr: &mut SR, sw: &mut SW)
    where
        CW: AsyncWrite + Unpin,
        SR: AsyncRead + Unpin,
        SW: AsyncWrite + Unpin,
    {
        error.encode(self.to_client.buf_mut());
        Terminate.encode(self.to_server.buf_mut());
        let backend = self.backend.take();
        let to_server = &mut self.to_server;
        let stop = async {
            if let Some(backend) = &backend {
                cancel::send(backend).await;
            }
            drain_for_a_while(to_server, sw).await;
            // On the heap: held across an await, an array would be part of every connection's
            // future, idle ones included, for the few that ever come here.
            let mut sink = vec![0u8; 8192];
            let discard = async { while matches!(sr.read(&mut sink).await, Ok(n) if n > 0) {} };
            let _ = timer::timeout(FLUSH_TIMEOUT, discard).await;
        };
        let (told, ()) = tokio::join!(drain_for_a_while(&mut self.to_client, cw), stop);
        Metrics::add(&self.ctx.metrics.bytes_to_clients_total, told as u64);
    }

    async fn flush_client<CW: AsyncWrite + Unpin>(&mut self, cw: &mut CW) {
        let n = drain_for_a_while(&mut self.to_client, cw).await;
        Metrics::add(&self.ctx.metrics.bytes_to_clients_total, n as u64);
    }

    async fn flush_server<SW: AsyncWrite + Unpin>(&mut self, sw: &mut SW) {
        drain_for_a_while(&mut self.to_server, sw).await;
    }
}

/// The database's output to a client, as PostgreSQL writes it: held in its 8 KiB send buffer
/// until a ReadyForQuery, an error or a notice, a COPY awaiting the client's data, or a full
/// buffer sends it. The connector has it write sooner (a Flush after each Execute, to time each
/// statement); for a client that is gone, only where the database would have written on its
/// own would its write have failed, and what it ran until then stands (a pipeline's COMMIT
/// before its Sync).
#[derive(Default)]
struct SendBuffer {
    held: usize,
}

impl SendBuffer {
    /// PostgreSQL's `PqSendBufferSize`.
    const SIZE: usize = 8192;

    /// Takes in the messages `reader` holds, and returns whether the database would have
    /// written to the client by their end.
    fn writes(&mut self, reader: &MessageReader) -> bool {
        let (mut at, mut written) = (0, false);
        while let Ok(Some(msg)) = reader.message_at(at) {
            at += msg.len();
            self.held += msg.len();
            if matches!(msg.tag(), b'Z' | b'E' | b'N' | b'G' | b'W') || self.held > Self::SIZE {
                (self.held, written) = (0, true);
            }
        }
        written
    }
}

/// Writes what `outbox` holds, for at most [`FLUSH_TIMEOUT`]: a side that has stopped
/// reading does not hold up the end of a session. Returns the bytes written, 0 if it failed.
async fn drain_for_a_while<W: AsyncWrite + Unpin>(outbox: &mut Outbox, w: &mut W) -> usize {
    match timer::timeout(FLUSH_TIMEOUT, outbox.drain(w)).await {
        Ok(Ok(n)) => n,
        _ => 0,
    }
}

/// What the client hears when a side's message ends the session: PostgreSQL's
/// `out_of_memory` for a large message the connector has no room for now, else a protocol
/// violation.
fn refusal(error: &WireError, what: &str) -> ErrorResponse {
    match error {
        WireError::OverBudget { .. } => ErrorResponse::fatal(
            SQLSTATE_OUT_OF_MEMORY,
            format!(
                "out of memory: {error} (the Gatehouse connector holds at most {} MiB of messages over 1 MiB \
                 at once, for all its connections); this connection is closed: reconnect to send it again",
                super::LARGE_MESSAGE_BUDGET >> 20
            ),
        ),
        // PostgreSQL's words, which clients and their users may know.
        WireError::UnknownTag(tag) => ErrorResponse::protocol_violation(format!("invalid frontend message type {tag}")),
        _ => ErrorResponse::protocol_violation(format!("{what}: {error}")),
    }
}

/// When the relay gives up on a side that owes it something (the database, an answer during
/// the login; a client, the rest of a large message), and how long it will have waited then.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    patience: Duration,
}

impl Deadline {
    fn after(patience: Duration) -> Self {
        Self { at: Instant::now() + patience, patience }
    }
}

/// Fires at `deadline`. An async fn, so that the timer is made only when polled: the loop
/// builds its branches on every turn, and only a login (or a large message) polls this one.
async fn sleep_until(deadline: Option<Deadline>) {
    match deadline {
        Some(deadline) => timer::sleep_until(deadline.at).await,
        None => std::future::pending().await,
    }
}

/// A read side that can wait for bytes before a buffer is given to it.
pub(crate) trait WaitReadable {
    /// Returns once a read may not block (possibly spuriously). Streams that cannot tell
    /// return at once and keep their buffer while they wait.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl WaitReadable for tokio::net::tcp::ReadHalf<'_> {
    /// The stream's own read-readiness slot, which this task alone polls: unlike `readable()`,
    /// no shared waiter list to join and leave (a lock each) on every turn of the loop.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        let stream: &tokio::net::TcpStream = self.as_ref();
        std::future::poll_fn(move |cx| stream.poll_read_ready(cx))
    }
}

/// TLS may hold decrypted bytes the socket's readiness does not show.
impl<T: WaitReadable> WaitReadable for &mut T {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        (**self).readable()
    }
}

impl<T> WaitReadable for tokio::io::ReadHalf<T> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Reads from `r` until a whole message is buffered, or more of a large one (see
/// [`MessageReader::fill_message`]), or the stream ended cleanly. With nothing buffered, waits for the stream to become readable before reading, holding no
/// buffer meanwhile: most connections are idle most of the time, and each would otherwise
/// keep two read buffers.
///
/// Cancel-safe: waiting for readiness consumes nothing, and so is reading.
async fn next_batch<R>(reader: &mut MessageReader, r: &mut R) -> Result<Filled, WireError>
where
    R: AsyncRead + WaitReadable + Unpin,
{
    if reader.buffered() == 0 {
        reader.release_if_empty();
        r.readable().await?;
    }
    reader.fill_message(r).await
}

/// A user or database name as PostgreSQL reads it from a startup message: its first 63 bytes
/// (NAMEDATALEN - 1). A client that sends 8 kB whose start names a role logs in as that role,
/// and is recorded so.
fn as_postgres_reads(name: &str) -> String {
    name[..name.floor_char_boundary(63)].to_owned()
}
