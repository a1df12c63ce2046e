//! The journal: every event written ahead to a local file as it is queued, so that a connector
//! that dies before reporting it (`kill -9`, a panic, the OOM killer) still leaves it behind.
//! The next start of the connector moves what it finds into the spool, to be replayed before
//! `Hello`: a session that was let in is never missing, nor are the statements it was seen to
//! run, even when the events queued in memory are lost with the process.
//!
//! The segment being written is mapped into memory, so that writing an event is a copy, not a
//! system call: the relay writes one per statement. The pages are the file's in the page cache,
//! which outlives the process, not the machine (nothing is synced). A segment is written out
//! whole (zeros) when it is created, so that running out of disk is an error then, not a
//! `SIGBUS` when a page is first written; its unused tail stays zero, and a zero length ends it.
//!
//! Records use the spool's format (`record.rs`), so the spool's own recovery reads them once
//! the padding is cut. The report loop deletes a segment once every event in it was delivered
//! or spooled: events leave the queue in order, and an event is journaled and queued under one
//! lock, so once an event of segment `n` is safe, every event of the segments before `n` is
//! too. Once the queue is empty, every event is: the segment being written is emptied in place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use memmap2::MmapMut;

use super::record::{self, RECORD_HEADER, SEGMENT_MAGIC};
use super::spool::{self, Limit, Spool, SpoolOptions};

/// A segment holds this much (some hundreds of events), or one larger event.
const SEGMENT_BYTES: usize = 64 * 1024;
/// Where the first record of a segment starts.
const FIRST_RECORD: usize = SEGMENT_MAGIC.len();
/// After a failed segment creation, the journal is not tried again for this long: a full disk
/// costs a few system calls at most once a second, and one error in the log.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The events not yet known to be delivered or spooled.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// The segment being written, mapped, once an event was.
    open: Option<MmapMut>,
    /// The id of the segment being written, or of the last one tried.
    segment: u64,
    /// Bytes used in the segment being written.
    written: usize,
    /// The oldest segment of this run that may still be on disk.
    oldest: u64,
    /// A segment could not be created: the next attempt waits until then.
    retry_at: Option<Instant>,
    /// The last attempt failed (and was logged).
    failing: bool,
}

impl Journal {
    /// Opens the journal in `dir` (created if missing). The events an earlier run left there
    /// are appended to `spool` (and made durable), then deleted; returns how many there were.
    /// If the spool cannot take them, they stay (logged) for the next start.
    ///
    /// # Errors
    ///
    /// IO errors on the directory or reading its files.
    pub fn open(dir: &Path, spool: &mut Spool) -> io::Result<(Journal, u64)> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "seg") {
                cut_padding(&path)?;
            }
        }
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
                    "cannot move the journal's events into the spool: they stay in the journal for the next start",
                );
                moved = 0;
            }
        }
        let journal = Journal {
            dir: dir.to_owned(),
            open: None,
            segment: next - 1,
            written: 0,
            oldest: next,
            retry_at: None,
            failing: false,
        };
        Ok((journal, moved))
    }

    /// Appends one encoded event; returns the segment it went to, or `None` if it could not be
    /// written (logged; the event is still reported from memory).
    ///
    /// A copy into the mapped segment, on the caller's thread; a system call only when a
    /// segment is full.
    pub fn append(&mut self, payload: &[u8]) -> Option<u64> {
        let framed = record::framed_len(payload.len()) as usize;
        if self.open.as_ref().is_none_or(|map| self.written + framed > map.len()) {
            self.open = None;
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
            if let Err(error) = self.next_segment(framed) {
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
                if !self.failing {
                    self.failing = true;
                    tracing::error!(
                        dir = %self.dir.display(),
                        %error,
                        "cannot write to the journal: events are reported from memory only, \
                         and a crash before they are delivered loses them",
                    );
                }
                return None;
            }
            if std::mem::take(&mut self.failing) {
                tracing::info!(dir = %self.dir.display(), "the journal takes events again");
            }
        }
        let map = self.open.as_mut().expect("a segment is open");
        record::encode_into(payload, &mut map[self.written..self.written + framed]);
        self.written += framed;
        Some(self.segment)
    }

    /// Opens the next segment, with room for a record of `framed` bytes.
    fn next_segment(&mut self, framed: usize) -> io::Result<()> {
        self.segment += 1;
        self.open = Some(create_segment(&self.path(self.segment), SEGMENT_BYTES.max(FIRST_RECORD + framed))?);
        self.written = FIRST_RECORD;
        Ok(())
    }

    /// Every event of the segments before `end` is safe (delivered or spooled); `u64::MAX`:
    /// every event journaled so far is. Returns the segment files to delete, for the caller to
    /// delete once it has let go of the journal (an unlink is disk IO). The segment being
    /// written, when `end` is past it, is emptied in place instead, for the events still to
    /// come (under the caller's lock: no event may be written meanwhile).
    pub fn release_before(&mut self, end: u64) -> Vec<PathBuf> {
        let open = self.open.as_ref().map(|_| self.segment);
        let mut released = Vec::new();
        while self.oldest < end && open.is_none_or(|open| self.oldest < open) && self.oldest <= self.segment {
            released.push(self.path(self.oldest));
            self.oldest += 1;
        }
        if let (Some(open), Some(map)) = (open, &mut self.open)
            && end > open
        {
            map[FIRST_RECORD..self.written].fill(0);
            self.written = FIRST_RECORD;
        }
        released
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(spool::segment_name(id))
    }
}

/// A new segment of `capacity` bytes at `path`, mapped for writing.
fn create_segment(path: &Path, capacity: usize) -> io::Result<MmapMut> {
    let mut file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    let mut image = vec![0u8; capacity];
    image[..FIRST_RECORD].copy_from_slice(SEGMENT_MAGIC);
    let mapped = file.write_all(&image).and_then(|()| map(&file));
    if mapped.is_err() {
        remove(path);
    }
    mapped
}

#[allow(unsafe_code)]
fn map(file: &File) -> io::Result<MmapMut> {
    // SAFETY: a mapping is unsound if the file changes size or content underneath it. This one
    // is a segment this process just created (`create_new`) in the state directory it holds
    // locked, and it is never truncated or written through the file while mapped: the mapping
    // is dropped before the file is deleted, and deleting does not unmap pages.
    unsafe { MmapMut::map_mut(file) }
}

/// Cuts a segment's unused tail, zeros from the first zero length on, so that the spool reads it
/// as one of its own. A torn record is left for the spool's recovery to find.
fn cut_padding(path: &Path) -> io::Result<()> {
    let bytes = fs::read(path)?;
    if bytes.get(..FIRST_RECORD) != Some(SEGMENT_MAGIC.as_slice()) {
        return Ok(());
    }
    let mut offset = FIRST_RECORD;
    while let Some(len) = bytes.get(offset..offset + 4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len == 0 {
            return OpenOptions::new().write(true).open(path)?.set_len(offset as u64);
        }
        offset = offset.saturating_add(RECORD_HEADER as usize + len);
    }
    Ok(())
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
    use std::io::Seek;

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
        // A crash in the middle of a copy leaves a torn record behind.
        let path = journal.path(1);
        let end = journal.written as u64;
        drop(journal);
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(io::SeekFrom::Start(end)).unwrap();
        file.write_all(&[9, 0, 0, 0, 1, 2, 3, 4, b't']).unwrap();

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
        assert!(!records_in(&open).is_empty());

        // All safe: the open segment is emptied in place, and goes on.
        remove_released(journal.release_before(u64::MAX));
        assert_eq!(segments(&journal_dir), [spool::segment_name(last)]);
        assert!(records_in(&open).is_empty());
        assert_eq!(journal.append(b"next"), Some(last));
        assert_eq!(records_in(&open), [b"next".to_vec()]);
    }

    #[test]
    fn an_event_larger_than_a_segment_gets_one_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let mut spool_ = spool(dir.path());
        let (mut journal, _) = Journal::open(&journal_dir, &mut spool_).unwrap();
        let large = vec![5u8; 3 * SEGMENT_BYTES];
        assert_eq!(journal.append(b"small"), Some(1));
        assert_eq!(journal.append(&large), Some(2));
        assert_eq!(journal.append(b"after"), Some(3));
        drop(journal);
        let (_, recovered) = Journal::open(&journal_dir, &mut spool_).unwrap();
        assert_eq!(recovered, 3);
        let records = spool_.read(10, usize::MAX).unwrap().records;
        assert_eq!(records, [b"small".to_vec(), large, b"after".to_vec()]);
    }

    #[test]
    fn a_failed_write_says_so_once_and_is_not_tried_again_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&journal_dir, &mut spool(dir.path())).unwrap();
        assert_eq!(journal.append(b"one"), Some(1));
        fs::remove_dir_all(&journal_dir).unwrap();
        journal.open = None;
        assert_eq!(journal.append(b"two"), None);
        assert!(journal.failing);
        fs::create_dir_all(&journal_dir).unwrap();
        assert_eq!(journal.append(b"three"), None, "not tried again within {RETRY_AFTER:?}");
        assert!(segments(&journal_dir).is_empty());
        journal.retry_at = Some(Instant::now());
        assert_eq!(journal.append(b"four"), Some(3));
        assert!(!journal.failing);
    }

    /// The records of a journal segment, up to its padding.
    fn records_in(path: &Path) -> Vec<Vec<u8>> {
        let bytes = fs::read(path).unwrap();
        let mut rest = &bytes[FIRST_RECORD..];
        let mut records = Vec::new();
        loop {
            let remaining = rest.len() as u64;
            match record::read_next(&mut rest, remaining) {
                Ok(record::Next::Record(payload)) => records.push(payload),
                _ => return records,
            }
        }
    }
}
