//! `gatehouse seed`: synthetic sessions, in batches, with progress.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use gatehouse_core::time::now_micros;
use gatehouse_core::{OrgId, Session};
use gatehouse_store::Store;

use super::open_store;
use crate::cli::SeedArgs;
use crate::demo::DemoData;

const BATCH: usize = 5_000;

pub async fn run(args: SeedArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(&args.store).await?;
    let org = store.ensure_org(&args.org).await?;
    let span = i64::from(args.days) * 86_400_000_000;
    seed(store.as_ref(), org.id, args.sessions, args.active, span, args.seed).await?;
    Ok(ExitCode::SUCCESS)
}

/// Inserts `count` completed and `active` running sessions, printing progress
/// to stderr.
pub async fn seed(
    store: &dyn Store,
    org: OrgId,
    count: usize,
    active: usize,
    span: i64,
    seed: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let now = now_micros();
    let mut data = DemoData::new(seed);
    let mut done = 0;
    // Redraw one line on a terminal; in logs, a line every tenth of the way.
    let terminal = std::io::stderr().is_terminal();
    let step = ((count + active) / 10).max(BATCH);
    while done < count + active {
        let completed = BATCH.min(count.saturating_sub(done));
        let running = if completed == 0 { active } else { 0 };
        let batch: Vec<Session> = data.sessions(completed, running, now, span);
        store.insert_sessions(org, &batch).await?;
        done += batch.len();
        if terminal {
            eprint!("\rseeding sessions: {done}/{}", count + active);
            let _ = std::io::stderr().flush();
        } else if done % step < batch.len() {
            eprintln!("seeding sessions: {done}/{}", count + active);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("\rseeded {done} sessions in {secs:.1}s ({:.0}/s)", done as f64 / secs.max(1e-9));
    Ok(())
}
