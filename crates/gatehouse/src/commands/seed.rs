//! `gatehouse seed`: synthetic sessions, in batches, with progress.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gatehouse_core::time::now_micros;
use gatehouse_core::{Micros, OrgId, Session};
use gatehouse_store::{Store, StoreError};

use super::{ensure_org, open_store};
use crate::cli::SeedArgs;
use crate::demo::DemoData;

const BATCH: usize = 5_000;
/// Batches inserted at once.
const IN_FLIGHT: usize = 3;

pub async fn run(args: SeedArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(&args.store).await?;
    let org = ensure_org(store.as_ref(), &args.org).await?;
    let span = i64::from(args.days) * 86_400_000_000;
    seed(store.as_ref(), org.id, args.sessions, args.active, span, args.seed, now_micros()).await?;
    Ok(ExitCode::SUCCESS)
}

/// A demo record's creation, where one of another organization may hold its id already (ids
/// are unique across organizations: a second one seeded in a store leaves them to the first).
fn created_unless_taken(created: Result<(), StoreError>) -> Result<(), StoreError> {
    match created {
        Err(StoreError::Conflict(_)) => Ok(()),
        other => other,
    }
}

/// Inserts `count` completed and `active` running sessions, printing progress
/// to stderr. The same arguments (`now` included) make the same sessions, and a session
/// stored already is left as it is: a seeding cut short is completed by doing it again.
pub async fn seed(
    store: &dyn Store,
    org: OrgId,
    count: usize,
    active: usize,
    span: i64,
    seed: u64,
    now: Micros,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut data = DemoData::new(seed);
    // The sessions' resources are registered, as a connector's are: `resources list` shows
    // them, and the aggregations count their hosts; and the people and machines they name, as
    // the organization's users.
    let resources = store.list_resources(org).await?;
    let ids: HashSet<&str> = resources.iter().map(|r| r.id.as_str()).collect();
    for resource in data.resources(now).iter().filter(|r| !ids.contains(r.id.as_str())) {
        created_unless_taken(store.create_resource(org, resource).await)?;
    }
    let users = store.list_users(org).await?;
    let ids: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    for user in data.users(now).iter().filter(|u| !ids.contains(u.id.as_str())) {
        created_unless_taken(store.create_user(org, user).await)?;
    }
    let total = count + active;
    let (mut queued, mut done) = (0, 0);
    // Redraw one line on a terminal; in logs, a line every tenth of the way.
    let terminal = std::io::stderr().is_terminal();
    let step = (total / 10).max(BATCH);
    // A few batches in flight keep a server database busy while the next is drawn.
    let mut inflight = FuturesUnordered::new();
    // Batches walk the span from its oldest end, as a real history arrives:
    // indexes then grow at their ends rather than everywhere at once.
    let batches = count.div_ceil(BATCH).max(1) as i64;
    let mut batch_no = 0;
    while done < total {
        while queued < total && inflight.len() < IN_FLIGHT {
            let completed = BATCH.min(count.saturating_sub(queued));
            let running = if completed == 0 { active } else { 0 };
            let from = now - span + span * batch_no / batches;
            let to = now - span + span * (batch_no + 1) / batches;
            batch_no += 1;
            let batch: Vec<Session> = data.sessions(completed, running, now, from..to);
            queued += batch.len();
            inflight.push(async move { store.insert_sessions(org, &batch).await.map(|_| batch.len()) });
        }
        let Some(inserted) = inflight.next().await else { break };
        let inserted = inserted?;
        done += inserted;
        if terminal {
            progress!("\rseeding sessions: {done}/{total}");
        } else if done % step < inserted {
            note!("seeding sessions: {done}/{total}");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // On a terminal, over the progress line; in a log, a line of its own.
    let start = if terminal { "\r" } else { "" };
    note!(
        "{start}seeded {done} sessions ({count} completed, {active} active) in {secs:.1}s ({:.0}/s)",
        done as f64 / secs.max(1e-9)
    );
    // So that the first queries after a large seed are planned for its size.
    store.refresh_statistics().await?;
    Ok(())
}
