//! The connection to the database: plain TCP (no TLS upstream yet), no delay, keepalive.

use std::io;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream, lookup_host};

/// How long resolving and connecting to the database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `host:port`, trying each resolved address in turn.
///
/// # Errors
///
/// The last address's error, a resolution error, or [`io::ErrorKind::TimedOut`].
pub(crate) async fn connect(upstream: &str) -> io::Result<TcpStream> {
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut last = None;
        for addr in lookup_host(upstream).await? {
            let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.set_keepalive(true)?;
            match socket.connect(addr).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{upstream} resolves to nothing"))))
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {upstream} timed out")))?
}
