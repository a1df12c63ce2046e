//! The `gatehouse` binary: parses the command line and hands off to a
//! command. Domain logic lives in the library crates.

/// `eprintln!`, without its panic when stderr is gone (`2>&1 | head`): a message nobody is
/// reading any more is no reason to fail.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!`, likewise: the control plane keeps running when whoever read its banner
/// (`| head`, a test) has stopped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprint!`, likewise: progress on one line.
macro_rules! progress {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod address;
mod cli;
mod commands;
mod demo;
mod output;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use tokio::runtime::{Builder, Runtime};

// The relay and ingestion allocate small buffers at a high rate; glibc's
// allocator spent a tenth of the control plane's CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // What this process writes (the store, a connector's journal and spool, key files) holds
    // transcripts or secrets: for its owner only. Output redirected by a shell is the shell's.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match runtime(cli.relay_workers()) {
        Ok(runtime) => runtime,
        Err(err) => {
            note!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    return_freed_memory();
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        // Whoever read the output stopped (`| head`): nothing went wrong.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            note!("error: {}", message(&err));
            if err.is::<commands::UsageError>() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// How often memory freed since is handed back to the system.
const MEMORY_RETURN_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Hands memory the allocator holds free back to the system every [`MEMORY_RETURN_PERIOD`].
/// mimalloc does so a moment after a free, but only when the process allocates again: a
/// connector that relayed a few huge messages (a client may send 1 GiB) and then went idle kept
/// that memory resident, however long it stayed idle.
#[allow(unsafe_code)]
fn return_freed_memory() {
    let spawned = std::thread::Builder::new().name("memory-return".into()).spawn(|| {
        loop {
            std::thread::sleep(MEMORY_RETURN_PERIOD);
            // Safety: takes no pointer; mimalloc's collection is safe from any thread.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
    if let Err(error) = spawned {
        tracing::debug!(%error, "no thread to return freed memory: it returns at the next allocation");
    }
}

/// The error and its causes on one line, each said once: many errors
/// already include their source's text, which `{:#}` would repeat.
fn message(err: &anyhow::Error) -> String {
    without_stutter(&gatehouse_tls::chain(err.as_ref()))
}

/// `text` with a part that follows itself said once: some errors repeat their source's
/// prefix in their own text (sqlx: `error with configuration: error with configuration: ...`),
/// where the chain's own check for repeated causes cannot see it.
fn without_stutter(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    // The writers of JSON and CSV keep the IO error inside their own.
    let kind = |cause: &(dyn std::error::Error + 'static)| {
        if let Some(e) = cause.downcast_ref::<io::Error>() {
            Some(e.kind())
        } else if let Some(e) = cause.downcast_ref::<serde_json::Error>() {
            e.io_error_kind()
        } else if let Some(csv::ErrorKind::Io(e)) = cause.downcast_ref::<csv::Error>().map(csv::Error::kind) {
            Some(e.kind())
        } else {
            None
        }
    };
    err.chain().any(|cause| kind(cause) == Some(io::ErrorKind::BrokenPipe))
}

/// The connector's relay runtime: one thread runs everything on the caller's thread, without
/// the cross-thread wake-ups of a work-stealing scheduler; and without tokio's time driver,
/// whose work each time the runtime parks cost 8% of a relayed transaction (its timers
/// are on a thread of their own, see `gatehouse_connector::timer`). Other commands get
/// tokio's default.
fn runtime(relay_workers: Option<usize>) -> io::Result<Runtime> {
    match relay_workers {
        Some(1) => Builder::new_current_thread().enable_io().build(),
        Some(n) => Builder::new_multi_thread().worker_threads(n).enable_io().build(),
        None => Runtime::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_that_follows_itself_is_said_once() {
        assert_eq!(
            without_stutter(
                "cannot open the PostgreSQL store at db:5432/x: error with configuration: error with configuration: \
                 unknown value \"bogus\" for `ssl_mode`"
            ),
            "cannot open the PostgreSQL store at db:5432/x: error with configuration: unknown value \"bogus\" for `ssl_mode`"
        );
        assert_eq!(without_stutter("a: b: a: b"), "a: b: a: b", "only neighbours are the same");
    }
}
