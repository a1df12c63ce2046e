//! Identity logins, in the startup phase: the client's user name is an identity
//! (`idp:formal:...`), so the connector asks it for its access token
//! (AuthenticationCleartextPassword), has the control plane verify it, and logs in to the
//! database itself as the native role the control plane chose, with a password that stays on
//! the connector (cleartext, md5 or SCRAM-SHA-256 client side).
//!
//! A refusal is PostgreSQL's own FATAL 28P01 and happens before any upstream connection.
//! When the control plane cannot answer, the login fails closed (08006). Every refusal is
//! counted by reason in [`Metrics::auth_failures`] and logged with the user name, never the
//! token or a password.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::BytesMut;
use gatehouse_core::names::{self, MAX_NAME_LEN};
use gatehouse_pgwire::auth::{SCRAM_SHA_256, ScramClient, ScramError, md5_password};
use gatehouse_pgwire::backend::{AuthenticationRequest, ErrorResponse};
use gatehouse_pgwire::frontend::PasswordMessage;
use gatehouse_pgwire::{Encode, Message, MessageReader, StartupMessage, WireError};
use tokio::io::AsyncWriteExt;

use super::ProxyContext;
use super::client::ClientStream;
use super::upstream::{self, ServerStream};
use crate::config::Secret;
use crate::event::FormalUser;
use crate::identity::{Access, END_USER, IdentityName, UserType, Verdict, take_end_user, throttle};
use crate::metrics::Metrics;
use crate::timer;

/// How long the client may take to send its token. The database's part of the login has
/// bounds of its own ([`upstream::FIRST_ANSWER_TIMEOUT`], then [`upstream::LOGIN_STEP_TIMEOUT`]
/// a step): the connector answers it alone, so all of that time is the database's.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(20);
/// `options`, the startup parameter that carries `-c gatehouse.end_user=...`.
const OPTIONS: &str = "options";

/// What an identity login leaves for the relay.
pub(crate) struct Identified {
    /// For the client, in order: the database's notices and protocol negotiation, then
    /// AuthenticationOk. ParameterStatus, BackendKeyData and ReadyForQuery follow through
    /// the relay.
    pub greeting: BytesMut,
    /// The user name as the client gave it.
    pub username: String,
    pub native_role: String,
    pub database: String,
    pub user_type: UserType,
    pub formal_user: FormalUser,
    pub end_user: Option<FormalUser>,
    /// What the login was allowed with, to check again while its session lasts.
    pub access: Arc<Access>,
}

/// A logged-in identity: the client, the database connection and what it said after
/// AuthenticationOk (still buffered in the reader).
pub(crate) type LoggedIn = (ClientStream, ServerStream, MessageReader, Box<Identified>);

/// Runs an identity login; `None` when it was refused (the client has been told why).
pub(crate) async fn identity(
    mut client: ClientStream,
    reader: &mut MessageReader,
    startup: &StartupMessage,
    name: IdentityName,
    peer: SocketAddr,
    ctx: &ProxyContext,
) -> Option<LoggedIn> {
    let given = startup.user().unwrap_or_default().to_owned();
    let refusal = Refusal { ctx, peer, name: &name };
    if ctx.identity.require_tls.refuses(client.is_tls(), peer.ip()) {
        let error = ErrorResponse::fatal("28000", "Gatehouse requires TLS for identity logins")
            .with_hint("connect with sslmode=require or verify-full");
        return refusal.refuse(&mut client, "tls_required", error).await;
    }

    let token = match timer::timeout(TOKEN_TIMEOUT, read_token(&mut client, reader, &ctx.metrics)).await {
        Ok(Ok(Some(token))) => token,
        // The client left: psql does when it has no password to give, and asks for one.
        Ok(Ok(None)) => return None,
        Ok(Err(error)) => {
            let error = ErrorResponse::protocol_violation(format!("expected a password message: {error}"));
            return refusal.refuse(&mut client, "bad_password_message", error).await;
        }
        Err(_) => {
            tracing::debug!(%peer, "client sent no password in time");
            return None;
        }
    };

    let Some(verifier) = &ctx.identity.verifier else {
        let error = ErrorResponse::fatal("08006", "Gatehouse cannot verify identities: no control plane is configured");
        return refusal.refuse(&mut client, "control_plane_unavailable", error).await;
    };
    let (params, named_end_user) = upstream_params(startup, &given);
    let named_end_user = match name.user_type {
        // Trimmed once, so that what is checked is what is recorded and looked up.
        UserType::Machine => named_end_user.map(|named| named.trim().to_owned()),
        // A person speaks for themselves; the option is still kept from the database.
        UserType::Human => None,
    };
    if let Some(named) = &named_end_user
        && !is_end_user(named)
    {
        let error = ErrorResponse::fatal(
            "28000",
            format!(
                "invalid {END_USER}: use an email or a name of at most {MAX_NAME_LEN} characters, without control characters or bidirectional overrides"
            ),
        );
        return refusal.refuse(&mut client, "bad_end_user", error).await;
    }
    let refused = || ErrorResponse::invalid_password(format!("password authentication failed for user \"{given}\""));
    let throttle = &ctx.identity.throttle;
    // Answered as a wrong token is: a guesser learns nothing from it.
    let check = match throttle.admit(peer.ip(), (&given, &token)).await {
        Ok(check) => check,
        Err(nth) => return refusal.throttled(&mut client, nth, refused()).await,
    };
    let verdict = verifier.verify(&ctx.resource_id, &name, &token, named_end_user.as_deref().unwrap_or_default()).await;
    let guessed = matches!(&verdict, Ok(Verdict::Denied { reason }) if throttle::is_guess(reason));
    if check.done(guessed, Instant::now()) {
        tracing::warn!(
            %peer,
            failures = throttle::MAX_FAILURES,
            "too many failed identity logins from this address: its logins are refused unchecked while it \
             has had that many in the last {} s",
            throttle::WINDOW.as_secs(),
        );
    }
    let token = Secret::new(token);
    let (formal_user, native_role, known_end_user) = match verdict {
        Ok(Verdict::Allowed { user, native_role, end_user }) => (user, native_role, end_user),
        Ok(Verdict::Denied { reason }) => {
            let mut error = refused();
            // Only a holder of a good token hears why: they need to name one of their roles.
            if reason == "no_role" {
                error = error.with_hint(
                    "this resource has no default role and you have several: append @<role> to the user name",
                );
            }
            return refusal.refuse(&mut client, &reason, error).await;
        }
        Err(error) => {
            tracing::warn!(%peer, %error, "cannot verify an identity");
            // The control plane answered, and refused the connector's key: no use trying again.
            let message = match error.code.as_str() {
                "unauthenticated" | "permission_denied" => {
                    "Gatehouse cannot verify the identity: the control plane refuses this connector's key"
                }
                _ => "Gatehouse cannot verify the identity: the control plane is unreachable, try again later",
            };
            return refusal
                .refuse(&mut client, "control_plane_unavailable", ErrorResponse::fatal("08006", message))
                .await;
        }
    };

    let upstream_startup = match upstream_startup(startup, params, &native_role) {
        Ok(built) => built,
        Err(error) => {
            let error = ErrorResponse::protocol_violation(format!("cannot build the startup packet: {error}"));
            return refusal.refuse(&mut client, "other", error).await;
        }
    };
    let database = upstream_startup.database().unwrap_or(&native_role).to_owned();
    let access =
        Access::new(&ctx.resource_id, &name, &native_role, token, named_end_user.as_deref().unwrap_or_default());
    let access = Arc::new(access);
    let end_user = known_end_user.map(|user| *user).or_else(|| named_end_user.map(end_user_of));

    let mut server = upstream::connect_for_client(ctx, &mut client).await?;
    let password = ctx.identity.credentials.find(&ctx.resource_id, &native_role);
    let mut server_reader = MessageReader::new().with_budget(Arc::clone(&ctx.large_messages));
    let login = login_upstream(&mut server, &mut server_reader, &upstream_startup, &native_role, password.as_ref());
    let greeting = match login.await {
        Ok(greeting) => greeting,
        // The database's failure, not the identity's: no refusal is counted. The connection
        // is dropped, not shut down: a database that does not answer may not read either.
        Err(LoginError::Unanswered(waited)) => {
            client.send_error(&upstream::login_unanswered(ctx, waited)).await;
            return None;
        }
        Err(error) => {
            let _ = server.shutdown().await;
            let (reason, response) = error.for_client(&native_role);
            if let Some(reason) = reason {
                tracing::warn!(%peer, role = native_role.as_str(), %error, "the connector's login to the database failed");
                return refusal.refuse(&mut client, reason, response).await;
            }
            client.send_error(&response).await;
            return None;
        }
    };
    Metrics::add(&ctx.metrics.identity_logins_total, 1);
    tracing::info!(
        %peer,
        user_type = name.user_type.as_str(),
        user = name.user.as_str(),
        role = native_role.as_str(),
        "identity login",
    );
    let identified = Identified {
        greeting,
        username: given,
        native_role,
        database,
        user_type: name.user_type,
        formal_user,
        end_user,
        access,
    };
    Some((client, server, server_reader, Box::new(identified)))
}

/// Counts, logs and answers a refused login.
struct Refusal<'a> {
    ctx: &'a ProxyContext,
    peer: SocketAddr,
    name: &'a IdentityName,
}

impl Refusal<'_> {
    async fn refuse<T>(&self, client: &mut ClientStream, reason: &str, error: ErrorResponse) -> Option<T> {
        self.ctx.metrics.auth_failures.count(reason);
        tracing::warn!(
            peer = %self.peer,
            user_type = self.name.user_type.as_str(),
            user = self.name.user.as_str(),
            role = self.name.role.as_deref().unwrap_or_default(),
            reason,
            "identity login refused",
        );
        client.send_error(&error).await;
        None
    }

    /// Refuses the `nth` login of a throttled address in its window: logged as others are up
    /// to [`throttle::LOGGED_REFUSALS`], then only counted.
    async fn throttled<T>(&self, client: &mut ClientStream, nth: u32, error: ErrorResponse) -> Option<T> {
        if nth > throttle::LOGGED_REFUSALS {
            self.ctx.metrics.auth_failures.count("throttled");
            client.send_error(&error).await;
            return None;
        }
        if nth == throttle::LOGGED_REFUSALS {
            tracing::warn!(
                peer = %self.peer,
                "{nth} identity logins from this address refused unchecked: further ones are counted, not logged, \
                 until it goes {} s without one",
                throttle::WINDOW.as_secs(),
            );
        }
        self.refuse(client, "throttled", error).await
    }
}

/// Asks for the token and reads it; `None` if the client closed instead. Counts both
/// messages in the client byte counters, as the relay counts the rest of the connection.
async fn read_token(
    client: &mut ClientStream,
    reader: &mut MessageReader,
    metrics: &Metrics,
) -> Result<Option<String>, WireError> {
    let mut buf = BytesMut::new();
    AuthenticationRequest::CleartextPassword.encode(&mut buf);
    client.write_all(&buf).await?;
    client.flush().await?;
    Metrics::add(&metrics.bytes_to_clients_total, buf.len() as u64);
    let Some(msg) = reader.read_message(client).await? else { return Ok(None) };
    Metrics::add(&metrics.bytes_from_clients_total, msg.frame().len() as u64);
    let password = msg.decode::<PasswordMessage>()?;
    Ok(Some(password.cleartext()?.to_owned()))
}

/// The startup parameters the database gets: the client's, with `database` dropped when it
/// merely repeats the identity (libpq's default), and the end user taken out, whether it
/// came in `options` (`-c gatehouse.end_user=...`) or as a parameter of its own (as drivers
/// send `server_settings`). Returns them with the end user; `user` is set later, by
/// [`upstream_startup`].
fn upstream_params(startup: &StartupMessage, given: &str) -> (Vec<(String, String)>, Option<String>) {
    let (mut in_options, mut own) = (None, None);
    let mut params = Vec::with_capacity(startup.params().len());
    for (name, value) in startup.params() {
        match name.as_str() {
            "database" if value.is_empty() || value == given => {}
            name if name.eq_ignore_ascii_case(END_USER) => own = Some(value.clone()),
            OPTIONS => {
                let (user, rest) = take_end_user(value);
                in_options = user.or(in_options);
                if !rest.is_empty() {
                    params.push((name.clone(), rest));
                }
            }
            _ => params.push((name.clone(), value.clone())),
        }
    }
    (params, in_options.or(own))
}

/// The startup the database gets: `params` with `user` the native role.
fn upstream_startup(
    startup: &StartupMessage,
    mut params: Vec<(String, String)>,
    native_role: &str,
) -> Result<StartupMessage, WireError> {
    for (name, value) in &mut params {
        if name == "user" {
            *value = native_role.to_owned();
        }
    }
    StartupMessage::new(startup.protocol(), params)
}

/// Whether a named end user can be recorded: an email or a name, printable and bounded.
fn is_end_user(named: &str) -> bool {
    names::is_label(named)
}

/// The end user a machine named: an email names a person by email, anything else by name.
fn end_user_of(named: String) -> FormalUser {
    let (name, email) = if named.contains('@') { (String::new(), named) } else { (named, String::new()) };
    FormalUser { name, email, kind: "human".into(), ..Default::default() }
}

/// Why the connector's own login to the database failed. Holds no password.
#[derive(Debug, thiserror::Error)]
enum LoginError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("the database refused the login: {}", .0.message().unwrap_or_default())]
    Refused(ErrorResponse),
    #[error("the database asks for a password and the connector has none for this role")]
    NoPassword,
    #[error("the database asks for an authentication method the connector does not support ({0})")]
    Unsupported(&'static str),
    #[error("SCRAM: {0}")]
    Scram(#[from] ScramError),
    #[error("the database closed the connection during the login")]
    Closed,
    #[error("unexpected message {:?} during the login", char::from(*.0))]
    Unexpected(u8),
    #[error("the database did not answer within {} s", .0.as_secs())]
    Unanswered(Duration),
}

impl LoginError {
    /// The failure reason to count (`None`: not an authentication failure, such as a database
    /// that does not exist) and what the client is told.
    fn for_client(&self, role: &str) -> (Option<&'static str>, ErrorResponse) {
        match self {
            Self::Refused(error) if !error.code().is_some_and(|code| code.starts_with("28")) => (None, error.clone()),
            Self::NoPassword => (
                Some("no_credentials"),
                ErrorResponse::fatal("28000", format!("Gatehouse has no credentials for role \"{role}\""))
                    .with_hint("add a [[credentials]] entry for this role to the connector's configuration"),
            ),
            _ => (
                Some("upstream_login"),
                ErrorResponse::fatal("28000", format!("Gatehouse could not log in to the database as role \"{role}\"")),
            ),
        }
    }
}

/// Sends the startup and answers the database's authentication until AuthenticationOk.
/// Returns what the client must see before the relay starts.
async fn login_upstream(
    server: &mut ServerStream,
    reader: &mut MessageReader,
    startup: &StartupMessage,
    role: &str,
    password: Option<&Secret>,
) -> Result<BytesMut, LoginError> {
    server.write_all(startup.frame()).await.map_err(WireError::Io)?;
    server.flush().await.map_err(WireError::Io)?;
    let mut greeting = BytesMut::new();
    let mut scram: Option<ScramClient> = None;
    let mut patience = upstream::FIRST_ANSWER_TIMEOUT;
    loop {
        let read = timer::timeout(patience, reader.read_message(server));
        let msg: Message = read.await.map_err(|_| LoginError::Unanswered(patience))??.ok_or(LoginError::Closed)?;
        patience = upstream::LOGIN_STEP_TIMEOUT;
        let reply = match msg.tag() {
            b'R' => match msg.decode::<AuthenticationRequest>()? {
                AuthenticationRequest::Ok => {
                    AuthenticationRequest::Ok.encode(&mut greeting);
                    return Ok(greeting);
                }
                AuthenticationRequest::CleartextPassword => {
                    PasswordMessage::password(password.ok_or(LoginError::NoPassword)?.expose())
                }
                AuthenticationRequest::Md5Password { salt } => {
                    let password = password.ok_or(LoginError::NoPassword)?.expose();
                    PasswordMessage::password(&md5_password(role, password, salt))
                }
                AuthenticationRequest::Sasl { mechanisms } => {
                    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(LoginError::Unsupported("SASL without SCRAM-SHA-256"));
                    }
                    let password = password.ok_or(LoginError::NoPassword)?.expose();
                    let nonce = STANDARD.encode(rand::random::<[u8; 18]>());
                    // PostgreSQL takes the user from the startup packet, so the SCRAM one is empty.
                    let client = ScramClient::new("", password, &nonce);
                    let first = PasswordMessage::sasl_initial(SCRAM_SHA_256, client.client_first().as_bytes());
                    scram = Some(client);
                    first
                }
                AuthenticationRequest::SaslContinue(data) => {
                    let client = scram.as_mut().ok_or(LoginError::Unexpected(b'R'))?;
                    PasswordMessage::sasl_response(client.client_final(&data)?.as_bytes())
                }
                AuthenticationRequest::SaslFinal(data) => {
                    scram.as_ref().ok_or(LoginError::Unexpected(b'R'))?.verify_server_final(&data)?;
                    continue;
                }
                AuthenticationRequest::KerberosV5 => return Err(LoginError::Unsupported("Kerberos")),
                AuthenticationRequest::Gss | AuthenticationRequest::GssContinue(_) => {
                    return Err(LoginError::Unsupported("GSSAPI"));
                }
                AuthenticationRequest::Sspi => return Err(LoginError::Unsupported("SSPI")),
            },
            b'E' => return Err(LoginError::Refused(msg.decode::<ErrorResponse>()?)),
            // Meant for the client, which sent the protocol version and options.
            b'v' | b'N' => {
                greeting.extend_from_slice(msg.frame());
                continue;
            }
            tag => return Err(LoginError::Unexpected(tag)),
        };
        let mut buf = BytesMut::new();
        reply.encode(&mut buf);
        server.write_all(&buf).await.map_err(WireError::Io)?;
        server.flush().await.map_err(WireError::Io)?;
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_pgwire::PROTOCOL_3_0;

    use super::*;

    fn startup(params: &[(&str, &str)]) -> StartupMessage {
        StartupMessage::new(PROTOCOL_3_0, params.iter().map(|(n, v)| ((*n).into(), (*v).into())).collect()).unwrap()
    }

    #[test]
    fn the_database_gets_the_native_role_and_no_gatehouse_option() {
        let given = "idp:formal:machine:etl@loader";
        let client = startup(&[
            ("user", given),
            ("database", "orders"),
            ("application_name", "etl"),
            ("options", "-c gatehouse.end_user=alice@example.com -c search_path=app"),
        ]);
        let (params, end_user) = upstream_params(&client, given);
        let sent = upstream_startup(&client, params, "loader").unwrap();
        assert_eq!(
            sent.params(),
            [
                ("user".to_owned(), "loader".to_owned()),
                ("database".to_owned(), "orders".to_owned()),
                ("application_name".to_owned(), "etl".to_owned()),
                ("options".to_owned(), "-c search_path=app".to_owned()),
            ]
        );
        assert_eq!(end_user.as_deref(), Some("alice@example.com"));
        assert!(!String::from_utf8_lossy(sent.frame()).contains("gatehouse"));
    }

    #[test]
    fn a_database_that_repeats_the_identity_becomes_the_roles_default() {
        let given = "idp:formal:human:alice@example.com";
        let client = startup(&[("user", given), ("database", given), ("options", "-c gatehouse.end_user=x")]);
        let (params, end_user) = upstream_params(&client, given);
        let sent = upstream_startup(&client, params, "analyst").unwrap();
        assert_eq!(sent.params(), [("user".to_owned(), "analyst".to_owned())]);
        assert_eq!(sent.database(), Some("analyst"));
        assert_eq!(end_user.as_deref(), Some("x"));
    }

    #[test]
    fn an_end_user_sent_as_a_parameter_of_its_own_is_taken_out_too() {
        let given = "idp:formal:machine:etl";
        let own = startup(&[("user", given), ("gatehouse.end_user", "bob@example.com"), ("search_path", "app")]);
        let (params, end_user) = upstream_params(&own, given);
        assert_eq!(params, [("user".to_owned(), given.to_owned()), ("search_path".to_owned(), "app".to_owned())]);
        assert_eq!(end_user.as_deref(), Some("bob@example.com"));
        // Named both ways: `options` wins, whatever the order.
        let both = startup(&[("user", given), ("options", "-c gatehouse.end_user=a@x"), ("Gatehouse.End_User", "b@x")]);
        assert_eq!(upstream_params(&both, given).1.as_deref(), Some("a@x"));
    }

    #[test]
    fn end_users_are_printable_and_bounded() {
        assert!(is_end_user("bob@example.com") && is_end_user("Bob Smith") && !is_end_user(" bob"));
        assert!(is_end_user(&"é".repeat(MAX_NAME_LEN)), "characters are counted, not bytes");
        for bad in ["", "  ", "bob\nINFO fake", "a\u{1b}[31m", "\u{202e}evil", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(!is_end_user(bad), "{bad:?}");
        }
    }

    #[test]
    fn end_users_are_people_by_email_or_name() {
        assert_eq!(end_user_of("bob@example.com".into()).email, "bob@example.com");
        let named = end_user_of("Bob Smith".into());
        assert_eq!((named.name.as_str(), named.email.as_str(), named.kind.as_str()), ("Bob Smith", "", "human"));
    }

    #[test]
    fn only_authentication_errors_are_hidden_from_the_client() {
        let no_db = ErrorResponse::fatal("3D000", "database \"x\" does not exist");
        let (reason, sent) = LoginError::Refused(no_db.clone()).for_client("analyst");
        assert_eq!((reason, sent), (None, no_db));
        let bad_pw = ErrorResponse::fatal("28P01", "password authentication failed for user \"analyst\"");
        let (reason, sent) = LoginError::Refused(bad_pw).for_client("analyst");
        assert_eq!((reason, sent.code()), (Some("upstream_login"), Some("28000")));
        assert_eq!(LoginError::NoPassword.for_client("analyst").0, Some("no_credentials"));
    }
}
