//! The proxy bench's floor: a relay that copies bytes between a client and its own connection
//! to the database and does nothing else (no parsing, no recording, no TLS). What it costs
//! over a direct connection is what any proxy in one more hop costs on this machine, so the
//! connector's figures can be read against it.
//!
//! Two ways to wait for sockets, as the bench compares them:
//! - `tokio`: a current-thread tokio runtime and `copy_bidirectional`, on the same IO driver
//!   (epoll) as the connector: a read, a write and a readiness wait per message.
//! - `uring`: one io_uring, with every connection's next receive posted in advance; one system
//!   call submits all the sends and receives that completions called for and waits for the
//!   next, across all connections.
//!
//! Usage: `bare-relay --listen 127.0.0.1:6500 --upstream 127.0.0.1:5432 --io uring`

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
enum Io {
    Tokio,
    Uring,
}

#[derive(Parser)]
struct Args {
    /// Address to accept clients on
    #[arg(long)]
    listen: SocketAddr,
    /// The database each client is relayed to
    #[arg(long)]
    upstream: SocketAddr,
    #[arg(long, value_enum, default_value = "uring")]
    io: Io,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener =
        std::net::TcpListener::bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    match args.io {
        Io::Tokio => tokio_relay::run(listener, args.upstream),
        Io::Uring => uring_relay::run(listener, args.upstream),
    }
}

mod tokio_relay {
    use std::net::SocketAddr;

    use tokio::net::{TcpListener, TcpStream};

    pub fn run(listener: std::net::TcpListener, upstream: SocketAddr) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        runtime.block_on(async move {
            listener.set_nonblocking(true)?;
            let listener = TcpListener::from_std(listener)?;
            loop {
                let (mut client, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    _ = client.set_nodelay(true);
                    _ = server.set_nodelay(true);
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        })
    }
}

#[allow(unsafe_code)]
mod uring_relay {
    //! Each connection has two pipes (client to server, server to client), each a buffer with
    //! at most one operation in flight: a receive into the buffer, or a send of what it holds.
    //! Soundness of the buffers handed to the kernel: each is a boxed slice owned by its
    //! connection, which is dropped only once no operation on it is in flight, and a box's
    //! contents do not move when the slab of connections grows.

    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::os::fd::{AsRawFd, FromRawFd};

    use anyhow::Context;
    use io_uring::{IoUring, opcode, squeue, types};

    const BUFFER: usize = 64 * 1024;
    const ACCEPT: u64 = u64::MAX;

    /// One direction: receives from `from`, sends to `to`.
    struct Pipe {
        buf: Box<[u8]>,
        /// Bytes received and not yet sent: `buf[sent..len]`.
        len: usize,
        sent: usize,
    }

    struct Conn {
        client: TcpStream,
        server: TcpStream,
        /// [client to server, server to client]
        pipes: [Pipe; 2],
        in_flight: u8,
        closing: bool,
    }

    impl Conn {
        fn fds(&self, pipe: usize) -> (types::Fd, types::Fd) {
            let (c, s) = (types::Fd(self.client.as_raw_fd()), types::Fd(self.server.as_raw_fd()));
            if pipe == 0 { (c, s) } else { (s, c) }
        }

        fn recv(&mut self, id: usize, pipe: usize) -> squeue::Entry {
            let (from, _) = self.fds(pipe);
            let p = &mut self.pipes[pipe];
            (p.len, p.sent) = (0, 0);
            self.in_flight += 1;
            opcode::Recv::new(from, p.buf.as_mut_ptr(), p.buf.len() as u32)
                .build()
                .user_data(user_data(id, pipe, false))
        }

        fn send(&mut self, id: usize, pipe: usize) -> squeue::Entry {
            let (_, to) = self.fds(pipe);
            let p = &self.pipes[pipe];
            let pending = &p.buf[p.sent..p.len];
            self.in_flight += 1;
            opcode::Send::new(to, pending.as_ptr(), pending.len() as u32).build().user_data(user_data(id, pipe, true))
        }

        /// Wakes the operations still in flight: a shut socket completes its receives.
        fn close(&mut self) {
            if !self.closing {
                self.closing = true;
                _ = self.client.shutdown(Shutdown::Both);
                _ = self.server.shutdown(Shutdown::Both);
            }
        }
    }

    fn user_data(id: usize, pipe: usize, send: bool) -> u64 {
        ((id as u64) << 2) | ((pipe as u64) << 1) | u64::from(send)
    }

    pub fn run(listener: TcpListener, upstream: SocketAddr) -> anyhow::Result<()> {
        let mut ring = IoUring::new(4096).context("cannot set up an io_uring")?;
        let mut conns: Vec<Option<Conn>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut next: Vec<squeue::Entry> = Vec::new();
        let mut done: Vec<(u64, i32)> = Vec::new();
        let accept = opcode::Accept::new(types::Fd(listener.as_raw_fd()), std::ptr::null_mut(), std::ptr::null_mut())
            .build()
            .user_data(ACCEPT);
        next.push(accept.clone());
        loop {
            // SAFETY: every entry points into a buffer of a live connection (see the module doc).
            unsafe { ring.submission().push_multiple(&next).context("submission queue full")? };
            next.clear();
            ring.submit_and_wait(1)?;
            done.extend(ring.completion().map(|cqe| (cqe.user_data(), cqe.result())));
            for (data, result) in done.drain(..) {
                if data == ACCEPT {
                    next.push(accept.clone());
                    if result < 0 {
                        continue;
                    }
                    // SAFETY: a completed accept hands over a new socket, owned from here on.
                    let client = unsafe { TcpStream::from_raw_fd(result) };
                    let Ok(server) = TcpStream::connect(upstream) else { continue };
                    _ = client.set_nodelay(true);
                    _ = server.set_nodelay(true);
                    let pipe = || Pipe { buf: vec![0; BUFFER].into_boxed_slice(), len: 0, sent: 0 };
                    let mut conn = Conn { client, server, pipes: [pipe(), pipe()], in_flight: 0, closing: false };
                    let id = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    next.push(conn.recv(id, 0));
                    next.push(conn.recv(id, 1));
                    conns[id] = Some(conn);
                    continue;
                }
                let (id, pipe, send) = ((data >> 2) as usize, ((data >> 1) & 1) as usize, data & 1 == 1);
                let Some(conn) = conns[id].as_mut() else { continue };
                conn.in_flight -= 1;
                if result <= 0 || conn.closing {
                    conn.close();
                } else if send {
                    let p = &mut conn.pipes[pipe];
                    p.sent += result as usize;
                    next.push(if p.sent < p.len { conn.send(id, pipe) } else { conn.recv(id, pipe) });
                } else {
                    conn.pipes[pipe].len = result as usize;
                    next.push(conn.send(id, pipe));
                }
                if conn.closing && conn.in_flight == 0 {
                    conns[id] = None;
                    free.push(id);
                }
            }
        }
    }
}
