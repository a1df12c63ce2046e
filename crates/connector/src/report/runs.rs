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

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file of runs not yet handed over: one run id per line, oldest first.
const RUNS_FILE: &str = "runs";
/// Held (`flock`) while a process uses the directory.
const LOCK_FILE: &str = "lock";
/// Runs remembered at most: a process that never reached the control plane, restarted in a
/// loop, names only its latest predecessors. (The others' sessions, replayed from the spool,
/// end when their lease runs out from their latest start: the control plane records a run it
/// never heard from when it gets its sessions.)
const MAX_REMEMBERED: usize = 16;

/// This process's hold on its state directory, and the runs it takes over from.
#[derive(Debug)]
pub struct RunLog {
    dir: PathBuf,
    /// Unlocked when dropped: keep it for as long as the process runs.
    _lock: File,
    /// The earlier runs not yet handed over, oldest first.
    pub previous: Vec<String>,
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
        let log = RunLog { dir: dir.to_owned(), _lock: lock, previous };
        let mut runs = log.previous.clone();
        runs.push(run_id.to_owned());
        log.write(&runs)?;
        Ok(log)
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

/// The run ids in `text`, the latest [`MAX_REMEMBERED`] of them.
fn remembered(text: &str) -> Vec<String> {
    let runs: Vec<String> = text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect();
    runs[runs.len().saturating_sub(MAX_REMEMBERED)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_takes_over_from_those_not_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLog::begin(dir.path(), "run-1").unwrap();
        assert!(first.previous.is_empty());
        drop(first);
        // run-2 never reached the control plane: run-3 takes over from both.
        let second = RunLog::begin(dir.path(), "run-2").unwrap();
        assert_eq!(second.previous, ["run-1"]);
        drop(second);
        let third = RunLog::begin(dir.path(), "run-3").unwrap();
        assert_eq!(third.previous, ["run-1", "run-2"]);
        third.handed_over("run-3").unwrap();
        drop(third);
        let fourth = RunLog::begin(dir.path(), "run-4").unwrap();
        assert_eq!(fourth.previous, ["run-3"]);
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
        assert_eq!(RunLog::begin(dir.path(), "run-3").unwrap().previous, ["run-1"]);
    }

    #[test]
    fn only_the_latest_runs_are_remembered() {
        let text: String = (0..40).map(|i| format!("run-{i}\n\n")).collect();
        let runs = remembered(&text);
        assert_eq!(runs.len(), MAX_REMEMBERED);
        assert_eq!(runs.last().map(String::as_str), Some("run-39"));
    }
}
