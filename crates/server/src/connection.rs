//! Serving accepted connections: HTTP/1.1 and HTTP/2 (gRPC) on one port, with the time limits
//! that keep a client from holding a connection, and so a file descriptor, by saying nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a connection may stay silent before its first request, and an HTTP/1.1 one while
/// idle between requests or sending a request's headers.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an idle HTTP/2 connection is pinged; one that does not answer is closed.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The HTTP settings of every connection.
pub(crate) fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(IDLE_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(HTTP2_KEEP_ALIVE);
    builder
}

/// Serves one connection until it ends, or until `watcher`'s shutdown lets its requests in
/// flight finish. A connection whose first bytes do not come within [`IDLE_TIMEOUT`] is closed.
pub(crate) async fn serve<I>(io: I, app: axum::Router, builder: Builder<TokioExecutor>, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(io) = first_bytes(io).await else {
        return;
    };
    let service = TowerToHyperService::new(app);
    if let Err(error) = watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(io), service)).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Waits for the connection's first bytes: hyper reads them to tell HTTP/1.1 from HTTP/2
/// with no time limit of its own.
async fn first_bytes<I: AsyncRead + Unpin>(mut io: I) -> Option<Prefixed<I>> {
    let mut first = vec![0; 1024];
    match tokio::time::timeout(IDLE_TIMEOUT, io.read(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {
            first.truncate(n);
            Some(Prefixed { prefix: Bytes::from(first), io })
        }
        _ => None,
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
