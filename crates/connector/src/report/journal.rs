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
//! segment `n` is safe, every start of the segments before `n` is too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::{self, SEGMENT_MAGIC};
use super::spool::{self, Limit, Spool, SpoolOptions};

/// A segment is closed once it holds this much (some hundreds of starts).
const SEGMENT_BYTES: u64 = 64 * 1024;

/// The session starts not yet known to be delivered or spooled.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// The segment being written, once a start was.
    writer: Option<File>,
    /// The id of the last segment created (0 before the first).
    segment: u64,
    /// Bytes in the segment being written.
    written: u64,
    /// The oldest segment that may still be on disk.
    oldest: u64,
    /// The last append failed: said once, until one succeeds.
    failing: bool,
    buf: Vec<u8>,
}

impl Journal {
    /// Opens the journal in `dir` (created if missing). The starts an earlier run left there
    /// are appended to `spool` (and made durable), then deleted; returns how many there were.
    ///
    /// # Errors
    ///
    /// IO errors on the directory, its files or the spool: the starts stay where they are.
    pub fn open(dir: &Path, spool: &mut Spool) -> io::Result<(Journal, u64)> {
        let (mut left, _) = Spool::open(dir, SpoolOptions::with_max_bytes(u64::MAX))?;
        let batch = left.read(usize::MAX, usize::MAX)?;
        let recovered = batch.records.len() as u64;
        if recovered > 0 {
            spool.append(&batch.records, Limit::Soft).map_err(|error| error.source)?;
        }
        // Acknowledging everything deletes every segment.
        left.ack(batch.ticket)?;
        let journal = Journal {
            dir: dir.to_owned(),
            writer: None,
            segment: 0,
            written: 0,
            oldest: 1,
            failing: false,
            buf: Vec::new(),
        };
        Ok((journal, recovered))
    }

    /// Appends one encoded start; returns the segment it went to, or `None` if it could not be
    /// written (logged; the start is still reported from memory).
    pub fn append(&mut self, payload: &[u8]) -> Option<u64> {
        match self.write(payload) {
            Ok(segment) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(dir = %self.dir.display(), "the journal takes session starts again");
                }
                Some(segment)
            }
            Err(error) => {
                // A partial record may sit at the end: the next start goes to a new segment.
                self.writer = None;
                if !std::mem::replace(&mut self.failing, true) {
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
        if self.writer.is_none() || self.written >= SEGMENT_BYTES {
            self.writer = None;
            self.segment += 1;
            let path = self.path(self.segment);
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
            file.write_all(SEGMENT_MAGIC)?;
            self.written = SEGMENT_MAGIC.len() as u64;
            self.writer = Some(file);
        }
        self.buf.clear();
        record::encode(payload, &mut self.buf);
        let file = self.writer.as_mut().expect("a segment is open");
        file.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        Ok(self.segment)
    }

    /// Every start of the segments before `segment` was delivered or spooled: deletes them. The
    /// segment being written stays, for the starts still to come.
    pub fn release_before(&mut self, segment: u64) {
        self.delete_before(segment.min(self.segment));
    }

    /// Every start journaled so far was delivered or spooled: deletes every segment.
    pub fn release_all(&mut self) {
        self.writer = None;
        self.delete_before(self.segment + 1);
    }

    fn delete_before(&mut self, end: u64) {
        while self.oldest < end {
            remove(&self.path(self.oldest));
            self.oldest += 1;
        }
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(spool::segment_name(id))
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
        assert_eq!(journal.append(b"third"), Some(1), "numbering starts again in an empty directory");
    }

    #[test]
    fn segments_are_deleted_once_their_starts_are_safe() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&journal_dir, &mut spool(dir.path())).unwrap();
        let start = vec![7u8; 1000];
        let tags: Vec<u64> = (0..200).map(|_| journal.append(&start).unwrap()).collect();
        let last = *tags.last().unwrap();
        assert!(last >= 3, "a segment closes past {SEGMENT_BYTES} bytes: {last}");
        assert!(tags.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(segments(&journal_dir).len() as u64, last);

        journal.release_before(2);
        assert_eq!(segments(&journal_dir).len() as u64, last - 1);
        journal.release_before(last + 5);
        assert_eq!(segments(&journal_dir), [spool::segment_name(last)], "the open segment stays");
        journal.release_all();
        assert!(segments(&journal_dir).is_empty());
        assert_eq!(journal.append(&start), Some(last + 1));
        assert_eq!(segments(&journal_dir), [spool::segment_name(last + 1)]);
    }

    #[test]
    fn a_failed_write_says_so_and_the_next_goes_to_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&journal_dir, &mut spool(dir.path())).unwrap();
        assert_eq!(journal.append(b"one"), Some(1));
        fs::remove_dir_all(&journal_dir).unwrap();
        journal.writer = None;
        assert_eq!(journal.append(b"two"), None);
        assert!(journal.failing);
        fs::create_dir_all(&journal_dir).unwrap();
        assert_eq!(journal.append(b"three"), Some(3));
        assert!(!journal.failing);
    }
}
