//! The `gatehouse` binary: parses the command line and hands off to a
//! command. Domain logic lives in the library crates.

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
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match runtime(cli.worker_threads()) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// One thread runs everything on the caller's thread, without the
/// cross-thread wake-ups of a work-stealing scheduler.
fn runtime(workers: Option<usize>) -> io::Result<Runtime> {
    match workers {
        Some(1) => Builder::new_current_thread().enable_all().build(),
        Some(n) => Builder::new_multi_thread().worker_threads(n).enable_all().build(),
        None => Runtime::new(),
    }
}
