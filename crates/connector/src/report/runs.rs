//! The runs of a state directory: which earlier processes this one takes over from.
//!
//! Every process start is a run with its own lease at the control plane. A run that stops
//! without ending its sessions (killed, crashed, its host gone) leaves them open until its
//! lease runs out, unless the next process on the same state directory names it in its
//! `Hello`: the control plane then completes them at once. Other processes sharing the
//! connector's key, each on its own state directory, are never named, so their sessions are
//! left alone.
//!
//! The directory is locked for the life of the process: two processes on one directory
//! would interleave one spool and each take the other for its predecessor.
//!
//! A run also marks itself alive every [`ALIVE_PERIOD`] (`alive/<run id>`), whether or not
//! the control plane hears it: one that dies while the control plane is down was last heard
//! long before, and its successor says when it was last alive, for its sessions to end then.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::event::now_us;
use crate::timer;

/// The file of runs not yet handed over: one run id per line, oldest first.
const RUNS_FILE: &str = "runs";
/// Held (`flock`) while a process uses the directory.
const LOCK_FILE: &str = "lock";
/// Runs remembered at most: a process that never reached the control plane, restarted in a
/// loop, names only its latest predecessors. (The others' sessions, replayed from the spool,
/// end when their lease runs out from their latest start: the control plane records a run it
/// never heard from when it gets its sessions.)
const MAX_REMEMBERED: usize = 16;
/// The directory of the runs' alive marks: a file per run, named by its id, holding when it
/// last knew itself alive (microseconds since the epoch, in decimal, fixed width).
const ALIVE_DIR: &str = "alive";
/// How often a run marks itself alive: how much earlier, at most, than it died its sessions
/// end when the control plane did not hear it die.
pub const ALIVE_PERIOD: Duration = Duration::from_secs(1);

/// This process's hold on its state directory, and the runs it takes over from.
#[derive(Debug)]
pub struct RunLog {
    dir: PathBuf,
    /// Unlocked when dropped: keep it for as long as the process runs.
    _lock: File,
    /// The earlier runs not yet handed over, oldest first.
    pub previous: Vec<PreviousRun>,
    /// This run's alive mark.
    alive: File,
}

/// A run this one takes over from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousRun {
    pub run_id: String,
    /// When it last marked itself alive, in microseconds since the epoch; `None` if it left no
    /// mark that can be read.
    pub alive_us: Option<i64>,
}

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunLogError {
    #[error("another connector process is using it (each process needs a state directory of its own)")]
    InUse,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl RunLog {
    /// Locks `dir` for this process and records `run_id` as its latest run, behind the runs
    /// not yet handed over.
    pub fn begin(dir: &Path, run_id: &str) -> Result<RunLog, RunLogError> {
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(RunLogError::InUse),
            Err(TryLockError::Error(error)) => return Err(error.into()),
        }
        let previous = match fs::read_to_string(dir.join(RUNS_FILE)) {
            Ok(text) => remembered(&text),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        let marks = dir.join(ALIVE_DIR);
        fs::create_dir_all(&marks)?;
        let previous: Vec<PreviousRun> =
            previous.into_iter().map(|run_id| PreviousRun { alive_us: alive_mark(&marks, &run_id), run_id }).collect();
        forget_marks(&marks, &previous, run_id);
        let own = mark_path(&marks, run_id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("run id {run_id:?} names no file")))?;
        let alive = OpenOptions::new().create(true).truncate(true).write(true).open(own)?;
        let log = RunLog { dir: dir.to_owned(), _lock: lock, previous, alive };
        log.mark_alive()?;
        let mut runs: Vec<String> = log.previous.iter().map(|run| run.run_id.clone()).collect();
        runs.push(run_id.to_owned());
        log.write(&runs)?;
        Ok(log)
    }

    /// Records that this run is alive now. Not synced: the page cache outlives a killed
    /// process, and a mark a crash of the host lost (or cut) is only read as none.
    pub fn mark_alive(&self) -> io::Result<()> {
        let mut file = &self.alive;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(format!("{:020}\n", now_us()).as_bytes())
    }

    /// The control plane took `run_id` over from the earlier runs: only it remains.
    pub fn handed_over(&self, run_id: &str) -> io::Result<()> {
        self.write(&[run_id.to_owned()])
    }

    /// This run stopped cleanly and said so: the next has nothing to take over.
    pub fn ended(&self) -> io::Result<()> {
        self.write(&[])
    }

    /// Replaces the file whole, so a crash leaves the old list or the new one.
    fn write(&self, runs: &[String]) -> io::Result<()> {
        let temporary = self.dir.join(format!("{RUNS_FILE}.tmp"));
        let mut file = File::create(&temporary)?;
        for run in runs {
            writeln!(file, "{run}")?;
        }
        file.sync_all()?;
        fs::rename(&temporary, self.dir.join(RUNS_FILE))?;
        File::open(&self.dir)?.sync_all()
    }
}

/// Marks this run alive every [`ALIVE_PERIOD`] until `stop`, and once more then. A mark that
/// cannot be written is logged once until one can.
pub async fn keep_alive(runs: Arc<RunLog>, stop: CancellationToken) {
    let mut ticker = timer::interval_at(tokio::time::Instant::now() + ALIVE_PERIOD, ALIVE_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            _ = ticker.tick() => false,
        };
        match runs.mark_alive() {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                tracing::warn!(%error, "cannot mark this run alive in the state directory: if it dies while the \
                    control plane is down, its sessions end when the control plane last heard it");
                failing = true;
            }
            Err(_) => {}
        }
        if stopping {
            return;
        }
    }
}

/// The file of run `run_id`'s alive mark, if the id can name one (ours are UUIDs; the runs
/// file is read as it is found).
fn mark_path(marks: &Path, run_id: &str) -> Option<PathBuf> {
    let plain = !run_id.is_empty() && run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    plain.then(|| marks.join(run_id))
}

/// When run `run_id` last marked itself alive, if it left a mark that can be read.
fn alive_mark(marks: &Path, run_id: &str) -> Option<i64> {
    let text = fs::read_to_string(mark_path(marks, run_id)?).ok()?;
    text.trim().parse().ok().filter(|us| *us > 0)
}

/// Removes the marks of runs no later run will name: all but those of `previous` and `run_id`.
/// Best effort: a mark left behind is a few bytes, removed at a later start.
fn forget_marks(marks: &Path, previous: &[PreviousRun], run_id: &str) {
    let Ok(entries) = fs::read_dir(marks) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let kept = name == run_id || previous.iter().any(|run| name == run.run_id.as_str());
        if !kept {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The run ids in `text`, the latest [`MAX_REMEMBERED`] of them.
fn remembered(text: &str) -> Vec<String> {
    let runs: Vec<String> = text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect();
    runs[runs.len().saturating_sub(MAX_REMEMBERED)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(log: &RunLog) -> Vec<&str> {
        log.previous.iter().map(|run| run.run_id.as_str()).collect()
    }

    #[test]
    fn each_run_takes_over_from_those_not_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLog::begin(dir.path(), "run-1").unwrap();
        assert!(first.previous.is_empty());
        drop(first);
        // run-2 never reached the control plane: run-3 takes over from both.
        let second = RunLog::begin(dir.path(), "run-2").unwrap();
        assert_eq!(ids(&second), ["run-1"]);
        drop(second);
        let third = RunLog::begin(dir.path(), "run-3").unwrap();
        assert_eq!(ids(&third), ["run-1", "run-2"]);
        third.handed_over("run-3").unwrap();
        drop(third);
        let fourth = RunLog::begin(dir.path(), "run-4").unwrap();
        assert_eq!(ids(&fourth), ["run-3"]);
        // run-4 stopped cleanly: nothing to take over.
        fourth.ended().unwrap();
        drop(fourth);
        assert!(RunLog::begin(dir.path(), "run-5").unwrap().previous.is_empty());
    }

    #[test]
    fn a_directory_serves_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = RunLog::begin(dir.path(), "run-1").unwrap();
        assert!(matches!(RunLog::begin(dir.path(), "run-2"), Err(RunLogError::InUse)));
        drop(held);
        assert_eq!(ids(&RunLog::begin(dir.path(), "run-3").unwrap()), ["run-1"]);
    }

    /// Each run taken over comes with when it last marked itself alive; the marks of runs no
    /// later run names are removed.
    #[test]
    fn runs_taken_over_say_when_they_were_last_alive() {
        let dir = tempfile::tempdir().unwrap();
        let marks = || {
            let mut names: Vec<String> = fs::read_dir(dir.path().join(ALIVE_DIR))
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        let before = now_us();
        let first = RunLog::begin(dir.path(), "run-1").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let marked = now_us();
        first.mark_alive().unwrap();
        drop(first);
        let second = RunLog::begin(dir.path(), "run-2").unwrap();
        let alive = second.previous[0].alive_us.unwrap();
        assert!((marked..=now_us()).contains(&alive), "the last mark: {alive}, marked from {marked}");
        assert!(alive > before);
        second.handed_over("run-2").unwrap();
        drop(second);
        // A mark that cannot be read is none.
        fs::write(dir.path().join(ALIVE_DIR).join("run-2"), "cut").unwrap();
        let third = RunLog::begin(dir.path(), "run-3").unwrap();
        assert_eq!(third.previous, [PreviousRun { run_id: "run-2".into(), alive_us: None }]);
        assert_eq!(marks(), ["run-2", "run-3"], "run-1 was handed over: no one names it again");
    }

    #[test]
    fn only_the_latest_runs_are_remembered() {
        let text: String = (0..40).map(|i| format!("run-{i}\n\n")).collect();
        let runs = remembered(&text);
        assert_eq!(runs.len(), MAX_REMEMBERED);
        assert_eq!(runs.last().map(String::as_str), Some("run-39"));
    }
}
