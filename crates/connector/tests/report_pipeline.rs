//! The report pipeline against a control plane that goes away and comes back:
//! every event is stored exactly once, in order, across outages and restarts.

// Tests run on runtimes of their own, with tokio's time driver.
#![allow(clippy::disallowed_methods)]

mod double;

use double::*;
use std::time::Duration;

use gatehouse_connector::report::{ReportOptions, SpoolOptions};

fn roomy() -> SpoolOptions {
    SpoolOptions::with_max_bytes(64 * 1024 * 1024)
}

fn small() -> SpoolOptions {
    SpoolOptions { max_bytes: 4096, segment_bytes: 1024 }
}

fn send_all(p: &Pipeline, events: &[gatehouse_connector::event::SessionEvent]) {
    for event in events {
        p.reporter.send(&event.session_id, event.seq, &event.kind);
    }
}

#[tokio::test]
async fn events_reach_the_control_plane_in_batches_in_order() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = ReportOptions { batch_events: 500, ..options(false) };
    let p = Pipeline::start(h.control(), dir.path(), roomy(), options);
    let events = interleave(&[session("s1", 700), session("s2", 300), session("s3", 0)]);
    send_all(&p, &events);

    eventually("every event stored", || h.plane.seen().stored.len() == events.len()).await;
    let seen = h.plane.seen();
    assert_eq!(seen.received, keys(&events), "each event once, in order");
    assert!(seen.batches.len() >= 3 && seen.batches.iter().all(|&n| n <= 500), "{:?}", seen.batches);
    assert_eq!(seen.hellos.len(), 1);
    assert_eq!(seen.hellos[0].1, 0, "Hello comes before this run's events");
    eventually("backlog drained", || p.backlog() == 0).await;
    assert!(p.hello.borrow().as_ref().is_some_and(|info| info.resources[0].id == "res_a"));
    assert_eq!(p.stop().await, 0);
    assert!(segment_files(dir.path()).is_empty(), "nothing was spooled");
}

#[tokio::test]
async fn events_arriving_within_the_batch_window_leave_together() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = ReportOptions { batch_wait: Duration::from_millis(400), ..options(false) };
    let p = Pipeline::start(h.control(), dir.path(), roomy(), options);
    eventually("hello answered", || p.hello.borrow().is_some()).await;
    let events = session("s1", 8);
    send_all(&p, &events[..1]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    send_all(&p, &events[1..]);

    eventually("every event stored", || h.plane.seen().stored.len() == events.len()).await;
    assert_eq!(h.plane.seen().batches, [events.len()], "one Report call for the window");
    assert_eq!(p.stop().await, 0);
}

/// Found by a review: a connector replaying a long backlog into a control plane slowed by
/// load sent full batches that took longer than the call's time limit, again and again, and
/// fell minutes behind. A batch that times out makes the next ones smaller.
#[tokio::test]
async fn batches_the_control_plane_is_too_slow_for_are_cut_until_they_go_through() {
    let h = Harness::start().await;
    // 1 ms an event: a batch of 2,000 or more outlasts the double's 2 s limit.
    h.plane.report_us_per_event.store(1000, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(h.control(), dir.path(), roomy(), options(false));
    let events = session("s1", 3000);
    send_all(&p, &events);
    // Two batches time out (2 s each), before the ones cut short go through.
    for _ in 0..600 {
        if h.plane.seen().stored.len() == events.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = h.plane.seen();
    assert_eq!(seen.stored, keys(&events), "each event once, in order: batches {:?}", seen.batches);
    assert!(seen.batches.iter().any(|&n| n < 2000), "{:?}", seen.batches);
}

#[tokio::test]
async fn an_outage_loses_nothing_and_duplicates_nothing() {
    let h = Harness::start().await;
    h.plane.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(h.control(), dir.path(), roomy(), options(false));
    let events = interleave(&[session("a", 400), session("b", 250), session("c", 3)]);
    let (first, second) = events.split_at(300);

    send_all(&p, first);
    eventually("first part spooled", || spooled_records(dir.path()) == first.len()).await;
    send_all(&p, second);
    eventually("all spooled", || spooled_records(dir.path()) == events.len()).await;
    assert_eq!(p.backlog(), events.len() as u64, "spooled events are backlog");
    let spooled = || p.metrics.spool_bytes.load(std::sync::atomic::Ordering::Relaxed);
    eventually("the spool's size shown", || spooled() > 0).await;
    let seen = h.plane.seen();
    assert!(seen.stored.is_empty() && seen.hellos.is_empty());

    h.plane.set_down(false);
    eventually("every event stored", || h.plane.seen().stored.len() == events.len()).await;
    let seen = h.plane.seen();
    assert_eq!(seen.received, keys(&events), "each event once, in order");
    assert_eq!(seen.hellos.len(), 1);
    eventually("backlog drained", || p.backlog() == 0).await;
    eventually("spool deleted", || segment_files(dir.path()).is_empty()).await;
    eventually("the spool shown empty", || spooled() == 0).await;

    // Reporting is direct again, behind what was spooled.
    let later = session("d", 2);
    send_all(&p, &later);
    eventually("later events stored", || h.plane.seen().stored.len() == events.len() + later.len()).await;
    assert_eq!(&h.plane.seen().received[events.len()..], keys(&later));
    let dropped = p.dropped();
    assert_eq!(p.stop().await, 0);
    assert_eq!(dropped, 0);
}

#[tokio::test]
async fn the_spool_survives_a_restart_and_is_replayed_before_hello() {
    let h = Harness::start().await;
    h.plane.set_down(true);
    let dir = tempfile::tempdir().unwrap();

    // First run: the control plane never answers; one session is cut by the restart.
    let p1 = Pipeline::start(h.control(), dir.path(), roomy(), options(false));
    let mut cut = session("cut", 5);
    cut.pop();
    let earlier = interleave(&[cut, session("done", 40)]);
    send_all(&p1, &earlier);
    eventually("spooled", || spooled_records(dir.path()) == earlier.len()).await;
    let left = p1.stop().await;
    assert_eq!(left, earlier.len() as u64, "a shutdown while down leaves the events in the spool");

    // Second run, control plane back.
    h.plane.set_down(false);
    let p2 = Pipeline::start(h.control(), dir.path(), roomy(), options(false));
    let now = session("new", 10);
    send_all(&p2, &now);
    let all: Vec<_> = earlier.iter().chain(&now).cloned().collect();
    eventually("every event stored", || h.plane.seen().stored.len() == all.len()).await;

    let seen = h.plane.seen();
    assert_eq!(seen.received, keys(&all), "each event once, in order, earlier run first");
    assert_eq!(seen.hellos.len(), 1);
    assert_eq!(seen.hellos[0].1, earlier.len(), "Hello only after the earlier run's events");
    let run_of = |id: &str| seen.start_runs.iter().find(|(s, _)| s == id).unwrap().1.clone();
    assert_eq!(run_of("cut"), run_of("done"));
    assert_ne!(run_of("cut"), run_of("new"), "spooled starts keep the run that produced them");
    assert_eq!(run_of("new"), seen.hellos[0].0);
    eventually("backlog drained", || p2.backlog() == 0).await;
    assert_eq!(p2.stop().await, 0);
    assert!(segment_files(dir.path()).is_empty());
}

fn on_disk(dir: &std::path::Path) -> u64 {
    segment_files(dir).iter().map(|f| f.metadata().map_or(0, |m| m.len())).sum()
}

/// Fail-closed: a full spool refuses new sessions and ends the open ones (FATAL 53100), whose
/// statements could not be recorded any more; the spool stays within its limit and reserve,
/// and each session's end is kept.
#[tokio::test]
async fn a_full_spool_refuses_new_sessions_and_ends_the_running_ones() {
    use gatehouse_connector::live::{LiveSessions, Termination};
    use gatehouse_connector::stop::{self, StopReason};
    let h = Harness::start().await;
    h.plane.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let live = std::sync::Arc::new(LiveSessions::new());
    let (stopper, stopped) = stop::signal();
    live.register("long", stopper, None);
    let p = Pipeline::start_ending(h.control(), dir.path(), small(), options(false), Some(live.clone()));
    assert!(p.reporter.admits_new_sessions());

    // A session that goes on and on (a pool's connection), past the limit.
    let mut events = session("long", 2000);
    let end = events.pop().unwrap();
    send_all(&p, &events);
    let reason = tokio::time::timeout(Duration::from_secs(10), stopped).await.expect("the session is ended");
    assert_eq!(reason, StopReason::Terminated(Termination::SpoolFull));
    assert_eq!(Termination::SpoolFull.sqlstate(), "53100");
    assert!(!p.reporter.admits_new_sessions(), "new sessions refused");
    // Its relay records its end.
    send_all(&p, std::slice::from_ref(&end));
    eventually("every event spooled or dropped", || {
        spooled_records(dir.path()) as u64 + p.dropped() >= events.len() as u64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reserve = small().reserve();
    assert!(on_disk(dir.path()) <= 4096 + reserve, "within the limit and its reserve: {}", on_disk(dir.path()));
    assert!(p.dropped() > 0, "statements past the reserve's half are dropped");

    h.plane.set_down(false);
    eventually("new sessions admitted again", || p.reporter.admits_new_sessions()).await;
    eventually("backlog drained", || p.backlog() == 0).await;
    let seen = h.plane.seen();
    assert!(seen.stored.contains(&("long".to_owned(), end.seq)), "the end is kept");
    let markers: Vec<_> = seen.statements.iter().filter(|(_, _, text)| text.starts_with("-- ")).collect();
    assert_eq!(markers.len(), 1, "one marker for the session's gap: {markers:?}");
    assert_eq!(p.stop().await, 0);
}

/// Fail-closed, as the relays run it: a relay reads its client's next statement only while
/// the report queue has room. However long the report loop holds events when the control plane
/// goes away (a batch gathered for `batch_wait`, then a call that fails), every statement the
/// session ran before a full spool ended it is recorded: none dropped, no marker.
#[tokio::test]
async fn a_full_spool_ends_the_sessions_before_they_run_what_it_could_not_record() {
    use gatehouse_connector::event::{EventKind, SessionEnd, Statement};
    use gatehouse_connector::live::LiveSessions;
    use gatehouse_connector::stop;
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let live = std::sync::Arc::new(LiveSessions::new());
    let (stopper, mut stopped) = stop::signal();
    live.register("busy", stopper, None);
    let p = Pipeline::start_ending(h.control(), dir.path(), small(), options(false), Some(live.clone()));
    eventually("hello answered", || p.hello.borrow().is_some()).await;
    send_all(&p, &session("busy", 0)[..1]);
    h.plane.set_down(true);

    // The relay: a statement whenever the queue has room, until the session is ended.
    let mut ran = 0;
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            () = p.reporter.room() => {
                ran += 1;
                let statement = Statement { start_us: 1_000 + ran as i64, text: format!("select {ran}"), ..Default::default() };
                p.reporter.send("busy", ran, &EventKind::Statement(statement));
                tokio::task::yield_now().await;
            }
        }
        assert!(ran < 1_000_000, "the session is never ended");
    }
    let end = SessionEnd { end_us: 9_000, reason: gatehouse_connector::event::EndReason::Error };
    p.reporter.send("busy", ran + 1, &EventKind::End(end));
    assert!(!p.reporter.admits_new_sessions());

    h.plane.set_down(false);
    eventually("the end stored", || h.plane.seen().stored.contains(&("busy".to_owned(), ran + 1))).await;
    eventually("backlog drained", || p.backlog() == 0).await;
    let seen = h.plane.seen();
    let markers: Vec<_> = seen.statements.iter().filter(|(_, _, text)| text.starts_with("-- ")).collect();
    assert!(markers.is_empty(), "statements it ran were dropped: {markers:?}");
    assert_eq!(p.dropped(), 0);
    assert_eq!(seen.statements.len() as u64, ran, "every statement it ran is recorded");
    assert_eq!(p.stop().await, 0);
}

/// Fail-open: many sessions whose statements overflow the spool. Statements stop at the
/// limit; starts, ends and one marker per session stay within the reserve.
#[tokio::test]
async fn fail_open_keeps_the_spool_within_its_limit_and_reserve() {
    let h = Harness::start().await;
    h.plane.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(h.control(), dir.path(), small(), options(true));
    let sessions: Vec<_> = (0..40).map(|i| session(&format!("s{i}"), 100)).collect();
    let events = interleave(&sessions);
    for chunk in events.chunks(97) {
        send_all(&p, chunk);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    eventually("every event spooled or dropped", || {
        p.dropped() > 0 && spooled_records(dir.path()) as u64 + p.dropped() >= events.len() as u64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reserve = small().reserve();
    assert!(on_disk(dir.path()) <= 4096 + reserve, "within the limit and its reserve: {}", on_disk(dir.path()));
    assert!(p.reporter.admits_new_sessions());
    assert_eq!(p.stop().await as usize, spooled_records(dir.path()));
    assert!(on_disk(dir.path()) <= 4096 + reserve, "at shutdown too: {}", on_disk(dir.path()));
}

#[tokio::test]
async fn fail_open_admits_sessions_and_counts_what_it_drops() {
    let h = Harness::start().await;
    h.plane.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(h.control(), dir.path(), small(), options(true));

    let events = session("long", 200);
    send_all(&p, &events);
    // What was dropped is replaced by one marker.
    eventually("every event spooled or dropped", || {
        p.dropped() > 0 && spooled_records(dir.path()) as u64 + p.dropped() >= events.len() as u64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kept = spooled_records(dir.path());
    assert!(kept > 0, "kept {kept}, dropped {}", p.dropped());
    assert!(p.reporter.admits_new_sessions(), "fail-open never refuses");
    let on_disk: u64 = segment_files(dir.path()).iter().map(|f| f.metadata().unwrap().len()).sum();
    // Statements stop at the limit (segment headers included); the session's end and the
    // markers go past it.
    assert!(on_disk <= 4096 + 1024, "the limit holds: {on_disk} bytes");
    assert_eq!(p.backlog(), kept as u64, "dropped events leave the backlog, markers join it");

    h.plane.set_down(false);
    eventually("kept events stored", || h.plane.seen().stored.len() == kept).await;
    let seen = h.plane.seen();
    let received = &seen.received;
    assert_eq!(received[..20], keys(&events[..20]), "the oldest events are kept");
    assert!(received.iter().any(|key| *key == keys(&events).last().unwrap().clone()), "the end is never dropped");
    // Every statement sent is either stored or counted by a marker, which takes the number of
    // the first statement it stands for.
    let markers: Vec<(u64, u64)> = seen
        .statements
        .iter()
        .filter_map(|(_, seq, text)| {
            let n = text.strip_prefix("-- ")?.split(' ').next()?.parse().ok()?;
            assert!(text.ends_with("not recorded here: the connector's spool was full"), "{text}");
            Some((*seq, n))
        })
        .collect();
    assert_eq!(markers.len(), 1, "a marker says statements are missing: {markers:?}");
    let recorded = seen.statements.len() - markers.len();
    let missing: u64 = markers.iter().map(|(_, n)| n).sum();
    assert_eq!(recorded as u64 + missing, 200, "{markers:?}");
    assert_eq!(missing, p.dropped());
    let mut seqs: Vec<u64> = seen.statements.iter().map(|(_, seq, _)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), seen.statements.len(), "a marker takes a number no statement has");
    eventually("backlog drained", || p.backlog() == 0).await;
    assert_eq!(p.stop().await, 0);
}

/// Fail-open: a session whose statements one outage drops append after append (a spool at
/// its limit, with room for a start or an end but not for them) gets one marker for them all,
/// whether it ends during the outage or goes on after it; a session that lost none gets none.
#[tokio::test]
async fn fail_open_marks_each_sessions_gap_once_per_outage() {
    let h = Harness::start().await;
    h.plane.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(h.control(), dir.path(), small(), options(true));
    let mut stays = session("stays", 150);
    let later = stays.split_off(120);
    let events = interleave(&[session("ends", 150), stays]);
    // A few events at a time, each an append of its own.
    for chunk in events.chunks(5) {
        send_all(&p, chunk);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    eventually("every event spooled or dropped", || {
        p.dropped() > 0 && spooled_records(dir.path()) as u64 + p.dropped() >= events.len() as u64
    })
    .await;

    h.plane.set_down(false);
    eventually("backlog drained", || p.backlog() == 0).await;
    send_all(&p, &later);
    eventually("every event stored", || h.plane.seen().stored.iter().any(|(s, seq)| s == "stays" && *seq == 151)).await;
    let seen = h.plane.seen();
    for id in ["ends", "stays"] {
        let markers: Vec<u64> = seen
            .statements
            .iter()
            .filter(|(session, _, _)| session == id)
            .filter_map(|(_, _, text)| text.strip_prefix("-- ")?.split(' ').next()?.parse().ok())
            .collect();
        assert_eq!(markers.len(), 1, "one marker for {id}'s gap: {markers:?}");
        let recorded = seen.statements.iter().filter(|(session, _, _)| session == id).count() as u64 - 1;
        assert_eq!(recorded + markers[0], 150, "{id}: every statement recorded or counted");
    }
    let missing = seen.statements.iter().filter(|(_, _, text)| text.starts_with("-- ")).count();
    assert_eq!(missing, 2);
    assert_eq!(p.stop().await, 0);
}

/// Fail-open: the marker of a gap still growing (the session open, the outage not over) is in
/// the journal, so that a connector killed mid-outage does not leave a session that reads as
/// complete: the next run replays one marker for it, counting at least what was dropped.
#[tokio::test]
async fn a_crash_mid_outage_keeps_the_sessions_gap_marker() {
    let h = Harness::start().await;
    h.plane.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let p1 = Pipeline::start(h.control(), dir.path(), small(), options(true));
    // Open through the crash: no end, so its gap is still pending.
    // Journal segments enough that the older ones go while the outage lasts.
    let mut events = session("open", 3000);
    events.pop();
    for chunk in events.chunks(100) {
        send_all(&p1, chunk);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    eventually("every event spooled or dropped", || {
        p1.dropped() > 0 && spooled_records(dir.path()) as u64 + p1.dropped() >= events.len() as u64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dropped = p1.dropped();
    // The marker journaled again as the gap grows: its pin holds back no older segment.
    let journal = segment_files(&journal_dir(dir.path())).len();
    assert!(journal <= 2, "{journal} journal segments");
    p1.crash().await;

    h.plane.set_down(false);
    let p2 = Pipeline::start(h.control(), dir.path(), small(), options(true));
    eventually("replayed", || !h.plane.seen().hellos.is_empty() && p2.backlog() == 0).await;
    let seen = h.plane.seen();
    let markers: Vec<(u64, u64)> = seen
        .statements
        .iter()
        .filter(|(session, _, _)| session == "open")
        .filter_map(|(_, seq, text)| Some((*seq, text.strip_prefix("-- ")?.split(' ').next()?.parse().ok()?)))
        .collect();
    assert_eq!(markers.len(), 1, "one marker for the gap: {markers:?}");
    assert!(markers[0].1 >= dropped, "the marker counts {} of {dropped} dropped", markers[0].1);
    let recorded = seen.statements.iter().filter(|(session, _, _)| session == "open").count() as u64 - 1;
    assert!(recorded + markers[0].1 >= 3000, "{recorded} recorded, {markers:?}");
    assert_eq!(p2.stop().await, 0);
}

#[tokio::test]
async fn a_refused_event_is_dropped_without_blocking_the_rest() {
    let h = Harness::start().await;
    h.plane.refuse_seq.store(13, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(h.control(), dir.path(), roomy(), options(false));
    let events = session("s", 40);
    send_all(&p, &events);

    eventually("the others stored", || h.plane.seen().stored.len() == events.len() - 1).await;
    let expected: Vec<_> = keys(&events).into_iter().filter(|(_, seq)| *seq != 13).collect();
    assert_eq!(h.plane.seen().received, expected);
    eventually("counted", || p.dropped() == 1 && p.backlog() == 0).await;
    assert_eq!(p.stop().await, 0);
}

#[tokio::test]
async fn stopping_flushes_what_is_queued() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(h.control(), dir.path(), roomy(), options(false));
    let events = interleave(&[session("x", 1500), session("y", 700)]);
    send_all(&p, &events);
    assert_eq!(p.stop().await, 0);
    assert_eq!(h.plane.seen().received, keys(&events));
}

/// A process killed before its batch went out loses none of its events: they were journaled,
/// and the next run replays them before its `Hello`, which completes their sessions.
#[tokio::test]
async fn a_crash_loses_no_event_it_queued() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The first run's batch waits long enough for the crash to come first.
    let slow = ReportOptions { batch_wait: Duration::from_secs(60), ..options(false) };
    let p1 = Pipeline::start(h.control(), dir.path(), roomy(), slow);
    eventually("hello answered", || p1.hello.borrow().is_some()).await;
    let lost = interleave(&[session("a", 3), session("b", 0)]);
    send_all(&p1, &lost);
    assert_eq!(segment_files(&journal_dir(dir.path())).len(), 1);
    p1.crash().await;

    let p2 = Pipeline::start(h.control(), dir.path(), roomy(), options(false));
    let now = session("c", 1);
    send_all(&p2, &now);
    eventually("every event stored", || h.plane.seen().stored.len() == lost.len() + now.len()).await;
    let seen = h.plane.seen();
    let expected: Vec<_> = keys(&lost).into_iter().chain(keys(&now)).collect();
    assert_eq!(seen.received, expected, "the first run's events, once, then the new run's");
    assert_eq!(seen.hellos.len(), 2);
    assert_eq!(seen.hellos[1].1, lost.len(), "the second Hello only after the first run's events");
    let run_of = |id: &str| seen.start_runs.iter().find(|(s, _)| s == id).unwrap().1.clone();
    assert_eq!(run_of("a"), seen.hellos[0].0, "a start keeps the run that produced it");
    assert_eq!(p2.stop().await, 0);
    assert_eq!(spooled_records(&journal_dir(dir.path())), 0, "every event is delivered");
    assert!(segment_files(dir.path()).is_empty());
}

/// The journal holds only events not yet delivered: a segment goes once a later one's event
/// is delivered, and the one being written is emptied when nothing is left to deliver.
#[tokio::test]
async fn the_journal_keeps_only_what_is_not_delivered() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(h.control(), dir.path(), roomy(), options(false));
    let sessions: Vec<_> = (0..3000).map(|i| session(&format!("session-{i:04}"), 0)).collect();
    let events = interleave(&sessions);
    send_all(&p, &events);
    eventually("every event stored", || h.plane.seen().stored.len() == events.len()).await;
    eventually("older segments deleted", || segment_files(&journal_dir(dir.path())).len() == 1).await;
    let name = segment_files(&journal_dir(dir.path()))[0].file_name().unwrap().to_owned();
    assert_ne!(name, "00000000000000000001.seg", "3,000 starts fill more than one segment");
    assert_eq!(p.stop().await, 0);
    assert_eq!(spooled_records(&journal_dir(dir.path())), 0);
}

/// A control plane that takes connections and never answers: each call waits out its timeout.
async fn silent_control_plane() -> gatehouse_connector::report::ControlPlane {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    gatehouse_connector::report::ControlPlane::new(&url, KEY, None).unwrap().with_timeout(Duration::from_secs(2))
}

/// Queues 100 kB statements until the queue has no room; returns how many.
fn fill_the_queue(p: &Pipeline) -> u64 {
    let statement = |seq: u64| {
        gatehouse_connector::event::EventKind::Statement(gatehouse_connector::event::Statement {
            text: format!("select '{}' -- {seq}", "x".repeat(100_000)),
            ..Default::default()
        })
    };
    let mut sent = 0;
    while p.reporter.has_room() {
        sent += 1;
        p.reporter.send("s1", sent, &statement(sent));
        assert!(sent < 1_000, "the queue never fills");
    }
    sent
}

#[tokio::test]
async fn a_control_plane_that_does_not_answer_holds_the_clients_not_the_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(silent_control_plane().await, dir.path(), roomy(), options(false));
    let sent = fill_the_queue(&p);
    // About the bound's worth, held while the call waits: a relay would stop reading its client.
    let bound = gatehouse_connector::report::QUEUE_MAX_BYTES as u64;
    assert!(sent * 100_000 >= bound && sent * 100_000 <= bound + 200_000, "{sent} statements queued");
    let room = tokio::spawn({
        let reporter = p.reporter.clone();
        async move { reporter.room().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!room.is_finished(), "no room while the control plane holds the call");
    // The call times out; the queue goes to the spool, and the relays go on.
    tokio::time::timeout(Duration::from_secs(10), room).await.expect("room once the events are spooled").unwrap();
    eventually("all spooled", || spooled_records(dir.path()) == sent as usize).await;
    p.crash().await;
}

#[tokio::test]
async fn relays_waiting_for_room_go_on_when_the_loop_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(silent_control_plane().await, dir.path(), roomy(), options(false));
    fill_the_queue(&p);
    let reporter = p.reporter.clone();
    let room = tokio::spawn(async move { reporter.room().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!room.is_finished());
    p.crash().await;
    tokio::time::timeout(Duration::from_secs(1), room).await.expect("no relay waits for good").unwrap();
}

/// The reviewer's stuck connector, as far as the pipeline goes: a run that replays an earlier
/// run's spool, and then loses the first replica while the second lives, moves its reports to
/// the second (and shows it in `/metrics`).
#[tokio::test]
async fn after_a_spool_replay_reports_move_to_the_replica_that_lives() {
    use std::sync::atomic::Ordering::Relaxed;
    let (first, second) = (Harness::start().await, Harness::start().await);
    let urls = format!("{}, {}", first.url, second.url);
    let control = || {
        gatehouse_connector::report::ControlPlane::new(&urls, KEY, None).unwrap().with_timeout(Duration::from_secs(2))
    };
    let dir = tempfile::tempdir().unwrap();
    first.plane.set_down(true);
    second.plane.set_down(true);
    let p1 = Pipeline::start(control(), dir.path(), roomy(), options(false));
    let earlier = session("earlier", 300);
    send_all(&p1, &earlier);
    eventually("spooled", || spooled_records(dir.path()) == earlier.len()).await;
    p1.crash().await;

    first.plane.set_down(false);
    second.plane.set_down(false);
    let metrics = std::sync::Arc::new(gatehouse_connector::metrics::Metrics::default());
    let c2 = control().with_metrics(std::sync::Arc::clone(&metrics));
    let p2 = Pipeline::start(c2.clone(), dir.path(), roomy(), options(false));
    eventually("the spool replayed to the first replica", || first.plane.seen().hellos.len() == 1).await;
    assert_eq!(first.plane.seen().stored.len(), earlier.len());
    let before = session("before", 3);
    send_all(&p2, &before);
    eventually("reported to the first", || first.plane.seen().stored.len() == earlier.len() + before.len()).await;
    assert_eq!((c2.current_replica(), metrics.control_plane_replica.load(Relaxed)), (0, 0));

    // kill -9 of the first replica: its port refuses connections.
    drop(first);
    let after = session("after", 3);
    send_all(&p2, &after);
    // The double stores the events before the connector has its answer and shows the move.
    eventually("reported to the second, and shown", || {
        second.plane.seen().stored.len() == after.len() && metrics.control_plane_replica.load(Relaxed) == 1
    })
    .await;
    assert_eq!((c2.current_replica(), metrics.control_plane_replica.load(Relaxed)), (1, 1));
    assert_eq!(metrics.control_plane_reachable.load(Relaxed), 1);
    assert_eq!(second.plane.seen().received, keys(&after));
    assert_eq!(p2.stop().await, 0);
}

/// A replica on another store refuses the key the other takes: the key is not refused, and the
/// sessions are reported where it is taken.
#[tokio::test]
async fn a_key_refused_by_one_replica_and_taken_by_another_is_not_refused() {
    use std::sync::atomic::Ordering::SeqCst;
    let (wrong, right) = (Harness::start().await, Harness::start().await);
    wrong.plane.refuse_key.store(true, SeqCst);
    let urls = format!("{}, {}", wrong.url, right.url);
    let control =
        gatehouse_connector::report::ControlPlane::new(&urls, KEY, None).unwrap().with_timeout(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::start(control.clone(), dir.path(), roomy(), options(false));
    let events = session("s", 3);
    send_all(&p, &events);
    eventually("reported to the replica that takes the key", || right.plane.seen().stored.len() == events.len()).await;
    assert!(p.reporter.admits_new_sessions(), "{:?}", p.reporter.refusal());
    assert_eq!(right.plane.seen().hellos.len(), 1);
    // Heartbeats too: they stay on the replica that takes the key.
    control.heartbeat("run", Duration::from_secs(2)).await.unwrap();
    assert_eq!(control.current_replica(), 1);

    // The right one goes away: a replica that answers refuses, none takes it: refused, and
    // the refusal names the replica.
    right.plane.set_down(true);
    let error = control.heartbeat("run", Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(error.code, connectrpc::ErrorCode::Unauthenticated, "{error:?}");
    let message = error.message.clone().unwrap_or_default();
    assert!(message.contains(&wrong.url) && message.contains("different store"), "{message}");
    let more = session("t", 2);
    send_all(&p, &more);
    eventually("the key counts as refused", || !p.reporter.admits_new_sessions()).await;
    let health = p.reporter.health_message(p.reporter.refusal().unwrap(), true);
    assert!(health.contains(&wrong.url) && !health.contains("(revoked or rotated)"), "{health}");

    // It comes back: the key is taken again.
    right.plane.set_down(false);
    eventually("admitted again", || p.reporter.admits_new_sessions()).await;
    p.stop().await;
}
