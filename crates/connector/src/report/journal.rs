//! The journal: each session start written ahead to a local file as it is queued, so that a
//! connector that dies before reporting it (`kill -9`, a panic, the OOM killer) still leaves it
//! behind. The next start of the connector moves what it finds into the spool, to be replayed
//! before `Hello`: a session that was let in is never missing, even when the events queued in
//! memory are lost with the process.
//!
//! Only starts are journaled: one write per connection, never one per statement. The writes
//! are not synced; the page cache outlives the process, not the machine.
//!
//! Segments use the spool's format (`record.rs`), so the spool's own recovery reads them. The
//! report loop deletes a segment once every start in it was delivered or spooled: events leave
//! the queue in order, and a start is journaled and queued under one lock, so once a start of
//! segment `n` is safe, every start of the segments before `n` is too. Once the queue is empty,
//! every start is: the segment being written is emptied in place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::record::{self, SEGMENT_MAGIC};
use super::spool::{self, Limit, Spool, SpoolOptions};

/// A segment is closed once it holds this much (some hundreds of starts).
const SEGMENT_BYTES: u64 = 64 * 1024;
/// Where the first record of a segment starts.
const FIRST_RECORD: u64 = SEGMENT_MAGIC.len() as u64;
/// After a failed write, the journal is not tried again for this long: a full disk costs a
/// system call per login at most once a second, and one error in the log.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The session starts not yet known to be delivered or spooled.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// The segment being written (opened for appending), once a start was.
    writer: Option<File>,
    /// The id of the segment being written, or of the last one tried.
    segment: u64,
    /// Bytes in the segment being written.
    written: u64,
    /// The oldest segment of this run that may still be on disk.
    oldest: u64,
    /// A write failed: the next attempt waits until then.
    retry_at: Option<Instant>,
    buf: Vec<u8>,
}

impl Journal {
    /// Opens the journal in `dir` (created if missing). The starts an earlier run left there
    /// are appended to `spool` (and made durable), then deleted; returns how many there were.
    /// If the spool cannot take them, they stay (logged) for the next start.
    ///
    /// # Errors
    ///
    /// IO errors on the directory or reading its files.
    pub fn open(dir: &Path, spool: &mut Spool) -> io::Result<(Journal, u64)> {
        let (mut left, _) = Spool::open(dir, SpoolOptions::with_max_bytes(u64::MAX))?;
        // Numbered past every file there, so that none is written over.
        let next = left.next_segment_id();
        let batch = left.read(usize::MAX, usize::MAX)?;
        let mut moved = batch.records.len() as u64;
        match spool.append(&batch.records, Limit::Soft) {
            // Acknowledging everything deletes every segment.
            Ok(_) => left.ack(batch.ticket)?,
            Err(error) => {
                tracing::error!(
                    dir = %dir.display(),
                    %error,
                    "cannot move the journal's session starts into the spool: they stay in the journal for the next start",
                );
                moved = 0;
            }
        }
        let journal = Journal {
            dir: dir.to_owned(),
            writer: None,
            segment: next - 1,
            written: 0,
            oldest: next,
            retry_at: None,
            buf: Vec::new(),
        };
        Ok((journal, moved))
    }

    /// Appends one encoded start; returns the segment it went to, or `None` if it could not be
    /// written (logged; the start is still reported from memory).
    ///
    /// One `write` to the page cache, on the caller's thread: it outlives the process.
    pub fn append(&mut self, payload: &[u8]) -> Option<u64> {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        match self.write(payload) {
            Ok(segment) => {
                if self.retry_at.take().is_some() {
                    tracing::info!(dir = %self.dir.display(), "the journal takes session starts again");
                }
                Some(segment)
            }
            Err(error) => {
                // A partial record may sit at the end: the next start goes to a new segment.
                self.writer = None;
                if self.retry_at.replace(Instant::now() + RETRY_AFTER).is_none() {
                    tracing::error!(
                        dir = %self.dir.display(),
                        %error,
                        "cannot write to the journal: session starts are reported from memory only, \
                         and a crash before they are delivered loses them",
                    );
                }
                None
            }
        }
    }

    fn write(&mut self, payload: &[u8]) -> io::Result<u64> {
        self.buf.clear();
        let new_segment = self.writer.is_none() || self.written >= SEGMENT_BYTES;
        if new_segment {
            self.buf.extend_from_slice(SEGMENT_MAGIC);
        }
        record::encode(payload, &mut self.buf);
        if !new_segment {
            let file = self.writer.as_mut().expect("a segment is open");
            file.write_all(&self.buf)?;
            self.written += self.buf.len() as u64;
            return Ok(self.segment);
        }
        self.writer = None;
        self.segment += 1;
        let path = self.path(self.segment);
        let mut file = OpenOptions::new().append(true).create_new(true).open(&path)?;
        if let Err(error) = file.write_all(&self.buf) {
            remove(&path);
            return Err(error);
        }
        self.written = self.buf.len() as u64;
        self.writer = Some(file);
        Ok(self.segment)
    }

    /// Every start of the segments before `end` is safe (delivered or spooled); `u64::MAX`:
    /// every start journaled so far is. Returns the segment files to delete, for the caller to
    /// delete once it has let go of the journal (an unlink is disk IO). The segment being
    /// written, when `end` is past it, is emptied in place instead, for the starts still to
    /// come (under the caller's lock: no start may be written meanwhile).
    pub fn release_before(&mut self, end: u64) -> Vec<PathBuf> {
        let open = self.writer.as_ref().map(|_| self.segment);
        let mut released = Vec::new();
        while self.oldest < end && open.is_none_or(|open| self.oldest < open) && self.oldest <= self.segment {
            released.push(self.path(self.oldest));
            self.oldest += 1;
        }
        if let (Some(open), Some(file)) = (open, &self.writer)
            && end > open
            && self.written > FIRST_RECORD
        {
            match file.set_len(FIRST_RECORD) {
                Ok(()) => self.written = FIRST_RECORD,
                Err(error) => {
                    // Closed: deleted at the next release instead.
                    tracing::warn!(dir = %self.dir.display(), %error, "cannot empty a journal segment");
                    self.writer = None;
                }
            }
        }
        released
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(spool::segment_name(id))
    }
}

/// Deletes segment files [`Journal::release_before`] released.
pub fn remove_released(paths: Vec<PathBuf>) {
    for path in paths {
        remove(&path);
    }
}

fn remove(path: &Path) {
    if let Err(error) = fs::remove_file(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "cannot delete a journal segment");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".seg"))
            .collect();
        names.sort();
        names
    }

    fn spool(dir: &Path) -> Spool {
        Spool::open(&dir.join("spool"), SpoolOptions::with_max_bytes(1 << 20)).unwrap().0
    }

    #[test]
    fn what_a_run_left_moves_into_the_spool_and_the_journal_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let mut spool_ = spool(dir.path());
        let (mut journal, recovered) = Journal::open(&journal_dir, &mut spool_).unwrap();
        assert_eq!(recovered, 0);
        assert_eq!(journal.append(b"first"), Some(1));
        assert_eq!(journal.append(b"second"), Some(1));
        // A crash in the middle of a write leaves a torn record behind.
        let path = journal.path(1);
        drop(journal);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[9, 0, 0]).unwrap();

        let (mut journal, recovered) = Journal::open(&journal_dir, &mut spool_).unwrap();
        assert_eq!(recovered, 2);
        assert!(segments(&journal_dir).is_empty(), "the recovered segments are deleted");
        let batch = spool_.read(10, 1 << 20).unwrap();
        assert_eq!(batch.records, [b"first".to_vec(), b"second".to_vec()]);
        assert_eq!(journal.append(b"third"), Some(2), "numbered past every file seen");
    }

    #[test]
    fn segments_are_released_once_their_starts_are_safe() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&journal_dir, &mut spool(dir.path())).unwrap();
        let start = vec![7u8; 1000];
        let tags: Vec<u64> = (0..200).map(|_| journal.append(&start).unwrap()).collect();
        let last = *tags.last().unwrap();
        assert!(last >= 3, "a segment closes past {SEGMENT_BYTES} bytes: {last}");
        assert!(tags.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(segments(&journal_dir).len() as u64, last);

        remove_released(journal.release_before(2));
        assert_eq!(segments(&journal_dir).len() as u64, last - 1);
        remove_released(journal.release_before(last));
        assert_eq!(segments(&journal_dir), [spool::segment_name(last)], "the open segment stays");
        let open = journal.path(last);
        assert!(fs::metadata(&open).unwrap().len() > FIRST_RECORD);

        // All safe: the open segment is emptied in place, and goes on.
        remove_released(journal.release_before(u64::MAX));
        assert_eq!(segments(&journal_dir), [spool::segment_name(last)]);
        assert_eq!(fs::metadata(&open).unwrap().len(), FIRST_RECORD);
        assert_eq!(journal.append(b"next"), Some(last));
        let (mut left, _) = Spool::open(&journal_dir, SpoolOptions::with_max_bytes(1 << 20)).unwrap();
        assert_eq!(left.read(10, 1 << 20).unwrap().records, [b"next".to_vec()]);
    }

    #[test]
    fn a_failed_write_says_so_once_and_is_not_tried_again_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&journal_dir, &mut spool(dir.path())).unwrap();
        assert_eq!(journal.append(b"one"), Some(1));
        fs::remove_dir_all(&journal_dir).unwrap();
        journal.writer = None;
        assert_eq!(journal.append(b"two"), None);
        fs::create_dir_all(&journal_dir).unwrap();
        assert_eq!(journal.append(b"three"), None, "not tried again within {RETRY_AFTER:?}");
        assert!(segments(&journal_dir).is_empty());
        journal.retry_at = Some(Instant::now());
        assert_eq!(journal.append(b"four"), Some(3));
        assert!(journal.retry_at.is_none());
    }
}
