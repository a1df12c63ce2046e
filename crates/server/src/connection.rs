//! Serving accepted connections: HTTP/1.1 and HTTP/2 (gRPC) on one port, with the limits that
//! keep clients from holding connections, and so file descriptors, by saying nothing: a time for
//! the first bytes, for a request's headers and for its body, for a connection with no request,
//! for a client that stops taking its answers, and a number of connections.
//!
//! A client that stops taking its answers is seen two ways: on HTTP/1.1, its socket takes no
//! more ([`Stall`]); on HTTP/2, where flow control lets a client hold one stream's answer while
//! the connection goes on (pings and all), each answer is handed over a piece at a time and the
//! connection watches for a piece left untaken ([`Paced`]).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::{Buf, Bytes};
use http::Request;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::metrics::Metrics;

/// How long a client is waited for while it owes the server something: its first bytes, a
/// request's headers or body, or taking what the server wrote to it.
pub const CLIENT_PATIENCE: Duration = Duration::from_secs(30);
/// How long a connection with no request in flight is kept.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);
/// The most an HTTP/1.1 connection reads ahead.
const HTTP1_BUFFER: usize = 64 * 1024;
/// How often an idle HTTP/2 connection is pinged; one that does not answer is closed.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// The most of an HTTP/2 answer handed over at once: HTTP/2's default window, so that a client
/// that takes its answer at all takes a piece well within [`Limits::stall`].
const HTTP2_PIECE: usize = 64 * 1024;

/// The limits on what a client may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For a connection's first bytes, and an HTTP/1.1 request's headers.
    pub first_bytes: Duration,
    /// For a request's whole body, from its headers: every request of the API is one small
    /// message.
    pub body: Duration,
    /// For a connection with no request in flight (an HTTP/2 connection answers pings all the
    /// same). Clients open another when they need one; a connector's termination stream is a
    /// request in flight.
    pub idle: Duration,
    /// For a client that takes none of what the server writes to it: a response it does not
    /// read holds one of its organization's read slots, which it would otherwise keep for as
    /// long as its socket stays open.
    pub stall: Duration,
    /// Connections served at once; more wait to be accepted. Below the process's file
    /// descriptor limit, so that the store and the rest of the server always have some.
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            first_bytes: CLIENT_PATIENCE,
            body: CLIENT_PATIENCE,
            idle: IDLE_CONNECTION,
            stall: CLIENT_PATIENCE,
            connections: max_connections(),
        }
    }
}

/// Seven eighths of the file descriptors this process may open, and at least 64.
fn max_connections() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1024);
    usize::try_from(limit / 8 * 7).unwrap_or(usize::MAX).max(64)
}

/// The HTTP settings of every connection.
pub(crate) fn builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper's read buffer grows to 400 KiB by default, and stays so while a body is coming:
    // a request of the API is one small message, and 64 KiB is ample for its headers too.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.first_bytes).max_buf_size(HTTP1_BUFFER);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(HTTP2_KEEP_ALIVE);
    builder
}

/// Serves one connection until it ends, or until `shutdown` lets its requests in flight finish.
/// A connection whose first bytes do not come within the limit is closed, and so is one with no
/// request in flight for [`Limits::idle`], and one whose client takes nothing written to it for
/// [`Limits::stall`] (counted in `metrics`).
pub(crate) async fn serve<I>(
    io: I,
    client: SocketAddr,
    app: axum::Router,
    builder: Builder<TokioExecutor>,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(io) = first_bytes(io, limits.first_bytes).await else {
        return;
    };
    let io = Stall::new(io, limits.stall, Arc::clone(&metrics));
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let busy = Busy::new(&activity);
            let paced = request.version() == http::Version::HTTP_2;
            // No body to wait for (a GET): no timer either.
            let mut request = request.map(|body| match body.is_end_stream() {
                true => Body::new(body),
                false => Body::new(Deadline::new(body, limits.body)),
            });
            // Whose call it is, for the security log.
            request.extensions_mut().insert(ConnectInfo(client));
            let response = app.clone().oneshot(request);
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| match paced {
                    true => Body::new(Paced::new(body, busy)),
                    false => Body::new(Held::new(body, busy)),
                }))
            }
        })
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {}
            () = activity.idle_for(limits.idle), if !closing => {}
            () = activity.untaken_for(limits.stall) => {
                Metrics::add(&metrics.connections_stalled_total, 1);
                tracing::debug!(limit = ?limits.stall, "closing a connection whose client takes none of an answer");
                return;
            }
        }
        // Requests in flight finish; no new one starts.
        connection.as_mut().graceful_shutdown();
        closing = true;
    }
}

/// The requests in flight on a connection.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    changed: Notify,
    /// Since when each answer handed to its client ([`Paced`]) waits for it to take it, by
    /// request.
    untaken: Mutex<HashMap<u64, Instant>>,
    /// An answer waits where none did.
    first_untaken: Notify,
    requests: AtomicU64,
}

impl Activity {
    /// Returns once no request has been in flight for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let changed = self.changed.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                let deadline = Instant::now() + limit;
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return,
                    () = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }

    /// Returns once an answer has waited `limit` for its client to take it.
    async fn untaken_for(&self, limit: Duration) {
        loop {
            let first = self.first_untaken.notified();
            let mut first = std::pin::pin!(first);
            // Registered before the look, so an answer handed between the two is not missed.
            first.as_mut().enable();
            let oldest = self.untaken.lock().unwrap_or_else(|e| e.into_inner()).values().min().copied();
            match oldest {
                Some(since) if since.elapsed() >= limit => return,
                Some(since) => tokio::time::sleep_until(since + limit).await,
                None => first.await,
            }
        }
    }
}

/// A request in flight, from its headers to the end of its response's body.
struct Busy {
    activity: Arc<Activity>,
    request: u64,
}

impl Busy {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.changed.notify_waiters();
        let request = activity.requests.fetch_add(1, Ordering::Relaxed);
        Self { activity: Arc::clone(activity), request }
    }

    /// Its answer waits for the client to take what it was handed (`true`), or no longer.
    fn untaken(&self, waits: bool) {
        let mut untaken = self.activity.untaken.lock().unwrap_or_else(|e| e.into_inner());
        match waits {
            true if untaken.is_empty() => {
                untaken.insert(self.request, Instant::now());
                self.activity.first_untaken.notify_waiters();
            }
            true => drop(untaken.insert(self.request, Instant::now())),
            false => drop(untaken.remove(&self.request)),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.activity.changed.notify_waiters();
    }
}

/// An HTTP/2 response body handed over [`HTTP2_PIECE`] at a time: hyper asks for the next
/// piece once the client's window took the one before, so a piece not asked for within the
/// limit is an answer the client does not take, while it keeps its connection busy.
struct Paced {
    body: Body,
    /// What of the inner body's last frame is still to be handed over.
    rest: Bytes,
    busy: Busy,
    /// A piece was handed over, and the next not yet asked for.
    handed: bool,
}

impl Paced {
    fn new(body: Body, busy: Busy) -> Self {
        Self { body, rest: Bytes::new(), busy, handed: false }
    }
}

impl Drop for Paced {
    /// An answer dropped (sent, or its stream reset) waits for nobody.
    fn drop(&mut self) {
        if self.handed {
            self.busy.untaken(false);
        }
    }
}

impl HttpBody for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if std::mem::take(&mut this.handed) {
            this.busy.untaken(false);
        }
        if this.rest.is_empty() {
            match std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    // Trailers (gRPC's status).
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                done => return Poll::Ready(done),
            }
        }
        let piece = this.rest.split_to(this.rest.len().min(HTTP2_PIECE));
        this.handed = true;
        this.busy.untaken(true);
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let (inner, rest) = (self.body.size_hint(), self.rest.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

/// A response body, holding `guard` (its request in flight, a permit) until it is sent or
/// dropped: a client that reads slowly holds it that long.
pub(crate) struct Held<G> {
    body: Body,
    _guard: G,
}

impl<G> Held<G> {
    pub(crate) fn new(body: Body, guard: G) -> Self {
        Self { body, _guard: guard }
    }
}

impl<G: Unpin + Send + 'static> HttpBody for Held<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that must arrive whole within its limit: a client that sends the headers
/// and then too little gets an error and its connection closed.
struct Deadline {
    body: Incoming,
    timer: Pin<Box<Sleep>>,
    limit: Duration,
}

impl Deadline {
    fn new(body: Incoming, limit: Duration) -> Self {
        Self { body, timer: Box::pin(tokio::time::sleep(limit)), limit }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(io::Error::other)));
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let message = format!("the request's body did not arrive within {} s", self.limit.as_secs());
                Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, message))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Waits for the connection's first bytes: hyper reads them to tell HTTP/1.1 from HTTP/2
/// with no time limit of its own.
async fn first_bytes<I: AsyncRead + Unpin>(mut io: I, limit: Duration) -> Option<Prefixed<I>> {
    let mut first = vec![0; 1024];
    match tokio::time::timeout(limit, io.read(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {
            first.truncate(n);
            Some(Prefixed { prefix: Bytes::from(first), io })
        }
        _ => None,
    }
}

/// A connection whose writes fail once the client has taken none of them for `limit`: hyper
/// then closes it, and the responses it was sending are dropped with what they hold.
struct Stall<I> {
    io: I,
    limit: Duration,
    /// Set while a write waits for the client to take what was written before.
    waiting: Option<Pin<Box<Sleep>>>,
    stalled: bool,
    metrics: Arc<Metrics>,
}

impl<I: AsyncWrite + Unpin> Stall<I> {
    fn new(io: I, limit: Duration, metrics: Arc<Metrics>) -> Self {
        Self { io, limit, waiting: None, stalled: false, metrics }
    }

    /// Passes on what a write of the connection came to, unless it has waited past the limit.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let limit = self.limit;
        let waiting = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if waiting.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if !self.stalled {
            self.stalled = true;
            Metrics::add(&self.metrics.connections_stalled_total, 1);
            tracing::debug!(limit = ?self.limit, "closing a connection whose client takes nothing written to it");
        }
        let message = format!("the client took nothing written to it for {} s", self.limit.as_secs());
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, message)))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Stall<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Stall<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A stream whose first bytes were already read: they are read again first.
struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
