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
//! `SIGBUS` when a page is written; its unused tail stays zero, and a zero length ends it. That
//! holds only where pages are written in place (ext4, XFS, tmpfs): on other filesystems
//! (copy-on-write, network) each event is a `write` instead.
//!
//! A statement is also written here as it goes to the database, as a running statement that is
//! journaled only, not queued ([`Journal::append_pinned`]): if the connector dies while the
//! database runs it, the next start replays it and the control plane shows it as unreported,
//! rather than never having seen a statement that may have changed data. Its segment is pinned
//! until the statement's own event (its completion, or its announcement as long-running) is
//! journaled in turn.
//!
//! A gap's marker (`gaps.rs`: what stands for the statements a full spool dropped in fail-open
//! mode) is journaled only too, pinned, while it waits in memory for the outage to end, and
//! again each time it grows: the same (session, seq) with a larger count. The control plane
//! keeps the first statement it is sent for a (session, seq), so at the next start only the
//! last of the statements of one (session, seq) found here is moved into the spool
//! ([`superseded`]).
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

use crate::event::EventKind;

use super::convert;
use super::record::{self, RECORD_HEADER, SEGMENT_MAGIC};
use super::spool::{self, Limit, Spool, SpoolOptions};

/// A segment holds this much (some hundreds of events), or one larger event.
const SEGMENT_BYTES: usize = 64 * 1024;
/// Where the first record of a segment starts.
const FIRST_RECORD: usize = SEGMENT_MAGIC.len();
/// After a failed write, the journal is not tried again for this long: a full disk costs a few
/// system calls at most once a second, and one error in the log.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The events not yet known to be delivered or spooled.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// Whether segments are mapped (see [`maps_safely`]), else appended to with `write`.
    mapped: bool,
    /// The segment being written, once an event was.
    open: Option<Segment>,
    /// The id of the segment being written, or of the last one tried.
    segment: u64,
    /// Bytes used in the segment being written.
    written: usize,
    /// The oldest segment of this run that may still be on disk.
    oldest: u64,
    /// Set when a write failed (and was logged), until one succeeds: the next attempt waits
    /// until then.
    retry_at: Option<Instant>,
    /// An event framed for `write`.
    buf: Vec<u8>,
    /// Statements journaled only, still running, by the segment they were written to: such a
    /// segment is neither deleted nor emptied.
    /// Few segments (mostly the one being written; others only where a statement runs long),
    /// so a list, newest last: no node allocated and freed per statement as a map would.
    pins: Vec<(u64, usize)>,
}

/// The segment being written.
#[derive(Debug)]
enum Segment {
    /// Mapped: an event is a copy. Its unused tail is zeros.
    Mapped(MmapMut),
    /// Opened for appending: an event is a `write`.
    Appended(File),
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
        let mut batch = left.read(usize::MAX, usize::MAX)?;
        superseded(&mut batch.records);
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
        let mapped = maps_safely(dir);
        if !mapped {
            tracing::info!(
                dir = %dir.display(),
                "the journal's filesystem may not write mapped pages in place: events are journaled with a system call each",
            );
        }
        let journal = Journal {
            dir: dir.to_owned(),
            mapped,
            open: None,
            segment: next - 1,
            written: 0,
            oldest: next,
            retry_at: None,
            buf: Vec::new(),
            pins: Vec::new(),
        };
        Ok((journal, moved))
    }

    /// Appends one encoded event; returns the segment it went to, or `None` if it could not be
    /// written (logged; the event is still reported from memory).
    ///
    /// On the caller's thread: a copy into the mapped segment (a system call only when a
    /// segment is full), else one `write` to the page cache.
    pub fn append(&mut self, payload: &[u8]) -> Option<u64> {
        let framed = record::framed_len(payload.len()) as usize;
        let room = match &self.open {
            Some(Segment::Mapped(map)) => self.written + framed <= map.len(),
            Some(Segment::Appended(_)) => self.written < SEGMENT_BYTES,
            None => false,
        };
        if !room {
            self.open = None;
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
            if let Err(error) = self.next_segment(framed) {
                self.failed(error);
                return None;
            }
        }
        let written = match self.open.as_mut().expect("a segment is open") {
            Segment::Mapped(map) => {
                record::encode_into(payload, &mut map[self.written..self.written + framed]);
                Ok(())
            }
            Segment::Appended(file) => {
                self.buf.clear();
                record::encode(payload, &mut self.buf);
                file.write_all(&self.buf)
            }
        };
        if let Err(error) = written {
            // A partial record may end the segment: the next event goes to a new one.
            self.open = None;
            self.failed(error);
            return None;
        }
        if self.retry_at.take().is_some() {
            tracing::info!(dir = %self.dir.display(), "the journal takes events again");
        }
        self.written += framed;
        Some(self.segment)
    }

    /// Appends an event that is not queued, and pins its segment until [`unpin`](Self::unpin).
    pub fn append_pinned(&mut self, payload: &[u8]) -> Option<u64> {
        let segment = self.append(payload)?;
        match self.pins.iter_mut().rfind(|(pinned, _)| *pinned == segment) {
            Some((_, count)) => *count += 1,
            None => self.pins.push((segment, 1)),
        }
        Some(segment)
    }

    /// What a pinned event stood for is journaled otherwise, or over: its segment may go.
    pub fn unpin(&mut self, segment: u64) {
        if let Some(at) = self.pins.iter().rposition(|(pinned, _)| *pinned == segment) {
            self.pins[at].1 -= 1;
            if self.pins[at].1 == 0 {
                self.pins.remove(at);
            }
        }
    }

    fn pinned(&self, segment: u64) -> bool {
        self.pins.iter().any(|(pinned, _)| *pinned == segment)
    }

    fn failed(&mut self, error: io::Error) {
        if self.retry_at.replace(Instant::now() + RETRY_AFTER).is_none() {
            tracing::error!(
                dir = %self.dir.display(),
                %error,
                "cannot write to the journal: events are reported from memory only, \
                 and a crash before they are delivered loses them",
            );
        }
    }

    /// Opens the next segment, with room for a record of `framed` bytes.
    fn next_segment(&mut self, framed: usize) -> io::Result<()> {
        self.segment += 1;
        let path = self.path(self.segment);
        self.open = Some(match self.mapped {
            true => Segment::Mapped(create_mapped(&path, SEGMENT_BYTES.max(FIRST_RECORD + framed))?),
            false => Segment::Appended(create_appended(&path)?),
        });
        self.written = FIRST_RECORD;
        Ok(())
    }

    /// Every event of the segments before `end` is safe (delivered or spooled); `u64::MAX`:
    /// every event journaled so far is. Returns the segment files to delete, for the caller to
    /// delete once it has let go of the journal (an unlink is disk IO). The segment being
    /// written, when `end` is past it, is emptied in place instead, for the events still to
    /// come (under the caller's lock: no event may be written meanwhile). A pinned segment
    /// stays, and so do the ones after it.
    pub fn release_before(&mut self, end: u64) -> Vec<PathBuf> {
        let open = self.open.as_ref().map(|_| self.segment);
        let mut released = Vec::new();
        while self.oldest < end
            && open.is_none_or(|open| self.oldest < open)
            && self.oldest <= self.segment
            && !self.pinned(self.oldest)
        {
            released.push(self.path(self.oldest));
            self.oldest += 1;
        }
        let Some(open) = open
            .filter(|open| end > *open && self.written > FIRST_RECORD && self.oldest == *open && !self.pinned(*open))
        else {
            return released;
        };
        match self.open.as_mut().expect("a segment is open") {
            Segment::Mapped(map) if map.len() == SEGMENT_BYTES => {
                map[FIRST_RECORD..self.written].fill(0);
                self.written = FIRST_RECORD;
            }
            // Made for one large event: not kept for the small ones to come.
            Segment::Mapped(_) => {
                self.open = None;
                released.push(self.path(open));
                self.oldest = open + 1;
            }
            Segment::Appended(file) => match file.set_len(FIRST_RECORD as u64) {
                Ok(()) => self.written = FIRST_RECORD,
                Err(error) => {
                    // Closed: deleted at the next release instead.
                    tracing::warn!(dir = %self.dir.display(), %error, "cannot empty a journal segment");
                    self.open = None;
                }
            },
        }
        released
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(spool::segment_name(id))
    }
}

/// Whether pages of a file in `dir` that were written out once are written in place ever after
/// (ext4, XFS, tmpfs), so that writing to them through a mapping cannot fault for want of disk
/// space. Copy-on-write filesystems (btrfs, ZFS) find new blocks at every writeback, and a full
/// disk there makes a write to a mapped page a `SIGBUS`; network and FUSE filesystems may not
/// map shared files at all.
fn maps_safely(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        const EXT4: u64 = 0xef53;
        const XFS: u64 = 0x5846_5342;
        const TMPFS: u64 = 0x0102_1994;
        rustix::fs::statfs(dir).is_ok_and(|stat| matches!(stat.f_type as u64, EXT4 | XFS | TMPFS))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
    }
}

/// Creates segment file `path`, and its directory if it is gone (deleted under a running
/// connector).
fn create_file(path: &Path, options: &OpenOptions) -> io::Result<File> {
    match options.open(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            options.open(path)
        }
        opened => opened,
    }
}

/// A new segment of `capacity` bytes at `path`, mapped for writing. It is written out whole
/// first, so that running out of disk is an error here, not a `SIGBUS` at a page's first write.
fn create_mapped(path: &Path, capacity: usize) -> io::Result<MmapMut> {
    let mut file = create_file(path, OpenOptions::new().read(true).write(true).create_new(true))?;
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
    // is dropped before the file is deleted, and deleting does not unmap pages. Its blocks were
    // written out on a filesystem that writes them in place (`maps_safely`), so a write to a
    // page cannot fault for want of space.
    unsafe { MmapMut::map_mut(file) }
}

/// A new segment at `path`, opened for appending.
fn create_appended(path: &Path) -> io::Result<File> {
    let mut file = create_file(path, OpenOptions::new().append(true).create_new(true))?;
    if let Err(error) = file.write_all(SEGMENT_MAGIC) {
        remove(path);
        return Err(error);
    }
    Ok(file)
}

/// Cuts a mapped segment's unused tail, zeros from the first zero length on, so that the spool
/// reads it as one of its own. A torn record is left for the spool's recovery to find.
fn cut_padding(path: &Path) -> io::Result<()> {
    let bytes = fs::read(path)?;
    if bytes.get(..FIRST_RECORD) != Some(SEGMENT_MAGIC.as_slice()) {
        return Ok(());
    }
    let mut offset = FIRST_RECORD;
    while let Some(rest) = bytes.get(offset..).filter(|rest| !rest.is_empty()) {
        // Less than a length left is padding if it is zeros, else a torn record.
        let len = match rest.get(..4) {
            Some(len) => u32::from_le_bytes([len[0], len[1], len[2], len[3]]),
            None if rest.iter().all(|byte| *byte == 0) => 0,
            None => break,
        };
        if len == 0 {
            return OpenOptions::new().write(true).open(path)?.set_len(offset as u64);
        }
        offset = offset.saturating_add(RECORD_HEADER as usize).saturating_add(len as usize);
    }
    Ok(())
}

/// Takes out of `records` (a journal's, in order) every statement that a later statement of
/// the same session and seq supersedes: the markers a gap's growth journaled again (the last
/// counts the most), and the first statement a marker stands for, which the marker takes the
/// number of. No other event is journaled twice; records that do not decode are kept.
fn superseded(records: &mut Vec<Vec<u8>>) {
    let keys: Vec<Option<(String, u64)>> = records
        .iter()
        .map(|bytes| match convert::decode(bytes) {
            Ok(event) if matches!(event.kind, EventKind::Statement(_)) => Some((event.session_id, event.seq)),
            _ => None,
        })
        .collect();
    let mut later = std::collections::HashSet::new();
    let mut keep = vec![true; records.len()];
    for (i, key) in keys.into_iter().enumerate().rev() {
        if let Some(key) = key {
            keep[i] = later.insert(key);
        }
    }
    if keep.iter().all(|kept| *kept) {
        return;
    }
    let mut kept = keep.into_iter();
    records.retain(|_| kept.next().unwrap_or(true));
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

    /// Runs `test` on a journal of each kind: mapped, and written with `write`.
    fn each_kind(test: impl Fn(&Path, Journal, Spool)) {
        for mapped in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut spool_ = spool(dir.path());
            let (mut journal, recovered) = Journal::open(&dir.path().join("journal"), &mut spool_).unwrap();
            assert_eq!(recovered, 0);
            journal.mapped = mapped;
            test(dir.path(), journal, spool_);
        }
    }

    #[test]
    fn what_a_run_left_moves_into_the_spool_and_the_journal_starts_empty() {
        each_kind(|dir, mut journal, mut spool_| {
            let journal_dir = dir.join("journal");
            assert_eq!(journal.append(b"first"), Some(1));
            assert_eq!(journal.append(b"second"), Some(1));
            // A crash in the middle of a copy or a write leaves a torn record behind.
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
        });
    }

    #[test]
    fn segments_are_released_once_their_events_are_safe() {
        each_kind(|dir, mut journal, _| {
            let journal_dir = dir.join("journal");
            let event = vec![7u8; 1000];
            let tags: Vec<u64> = (0..200).map(|_| journal.append(&event).unwrap()).collect();
            let last = *tags.last().unwrap();
            assert!(last >= 3, "a segment closes at {SEGMENT_BYTES} bytes: {last}");
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
        });
    }

    #[test]
    fn a_pinned_segment_stays_until_unpinned_and_holds_back_the_ones_after_it() {
        each_kind(|dir, mut journal, mut spool_| {
            let journal_dir = dir.join("journal");
            let running = journal.append_pinned(b"running").unwrap();
            assert_eq!(journal.append(b"queued"), Some(running));
            // Every queued event safe: the segment holding the running statement stays whole.
            remove_released(journal.release_before(u64::MAX));
            assert_eq!(records_in(&journal.path(running)), [b"running".to_vec(), b"queued".to_vec()]);
            let event = vec![7u8; 1000];
            let last = (0..200).map(|_| journal.append(&event).unwrap()).last().unwrap();
            remove_released(journal.release_before(last));
            assert_eq!(segments(&journal_dir).len() as u64, last - running + 1, "none released past the pin");

            journal.unpin(running);
            remove_released(journal.release_before(last));
            assert_eq!(segments(&journal_dir), [spool::segment_name(last)]);
            // A crash while pinned leaves the running statement for the next start.
            let pinned_again = journal.append_pinned(b"running again").unwrap();
            remove_released(journal.release_before(u64::MAX));
            drop(journal);
            let (_, recovered) = Journal::open(&journal_dir, &mut spool_).unwrap();
            let records = spool_.read(usize::MAX, usize::MAX).unwrap().records;
            assert_eq!(pinned_again, last);
            assert_eq!(records.last(), Some(&b"running again".to_vec()), "{recovered} recovered");
        });
    }

    #[test]
    fn an_event_larger_than_a_segment_is_kept_whole() {
        each_kind(|dir, mut journal, mut spool_| {
            let large = vec![5u8; 3 * SEGMENT_BYTES];
            let tags = [journal.append(b"small"), journal.append(&large), journal.append(b"after")];
            assert!(tags.iter().all(Option::is_some), "{tags:?}");
            drop(journal);
            let (_, recovered) = Journal::open(&dir.join("journal"), &mut spool_).unwrap();
            assert_eq!(recovered, 3);
            let records = spool_.read(10, usize::MAX).unwrap().records;
            assert_eq!(records, [b"small".to_vec(), large, b"after".to_vec()]);
        });
    }

    #[test]
    fn a_mapped_segment_made_for_a_large_event_is_not_kept() {
        each_kind(|dir, mut journal, _| {
            if !journal.mapped {
                return;
            }
            assert_eq!(journal.append(b"small"), Some(1));
            assert_eq!(journal.append(&vec![5u8; 3 * SEGMENT_BYTES]), Some(2), "a segment of its own");
            remove_released(journal.release_before(u64::MAX));
            assert!(segments(&dir.join("journal")).is_empty());
            assert_eq!(journal.append(b"next"), Some(3));
            assert_eq!(fs::metadata(journal.path(3)).unwrap().len(), SEGMENT_BYTES as u64);
        });
    }

    #[test]
    fn a_failed_write_says_so_once_and_is_not_tried_again_at_once() {
        each_kind(|dir, mut journal, _| {
            let journal_dir = dir.join("journal");
            assert_eq!(journal.append(b"one"), Some(1));
            // No directory to create segments in.
            fs::remove_dir_all(&journal_dir).unwrap();
            fs::write(&journal_dir, b"").unwrap();
            journal.open = None;
            assert_eq!(journal.append(b"two"), None);
            assert!(journal.retry_at.is_some(), "failing");
            fs::remove_file(&journal_dir).unwrap();
            assert_eq!(journal.append(b"three"), None, "not tried again within {RETRY_AFTER:?}");
            assert!(!journal_dir.exists());
            journal.retry_at = Some(Instant::now());
            // The directory is made again.
            assert_eq!(journal.append(b"four"), Some(3));
            assert!(journal.retry_at.is_none(), "not failing");
            assert_eq!(records_in(&journal.path(3)), [b"four".to_vec()]);
        });
    }

    #[test]
    fn a_statement_journaled_again_under_its_number_supersedes_the_earlier_one() {
        use crate::event::{RunningStatement, Statement};
        let statement = |text: &str| EventKind::Statement(Statement { text: text.into(), ..Default::default() });
        let running = EventKind::Running(RunningStatement { start_us: 1, text: "select 9".into() });
        let records: Vec<Vec<u8>> = [
            ("a", 4, statement("select 4")),
            ("a", 4, statement("-- 1 statement not recorded here")),
            ("b", 4, statement("select 4")),
            ("a", 5, running.clone()),
            ("a", 4, statement("-- 3 statements not recorded here")),
            ("a", 5, statement("select 5")),
        ]
        .iter()
        .map(|(session, seq, kind)| convert::encode(session, *seq, kind, "").to_vec())
        .collect();
        let mut kept = records.clone();
        kept.push(b"not an event".to_vec());
        superseded(&mut kept);
        // The last marker of a's gap; another session's statement, and an announcement, stay.
        let expected = [&records[2], &records[3], &records[4], &records[5]];
        assert_eq!(kept[..4], expected.map(Vec::clone));
        assert_eq!(kept[4], b"not an event");
    }

    #[test]
    fn padding_is_cut_and_a_torn_tail_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut image = SEGMENT_MAGIC.to_vec();
        record::encode(b"kept", &mut image);
        let end = image.len() as u64;
        for (tail, cut) in [(&[0u8; 100][..], true), (&[0, 0], true), (&[0, 1], false), (&[3, 0, 0, 0, 1], false)] {
            let path = dir.path().join("1.seg");
            fs::write(&path, [image.as_slice(), tail].concat()).unwrap();
            cut_padding(&path).unwrap();
            let len = fs::metadata(&path).unwrap().len();
            assert_eq!(len == end, cut, "tail {tail:?}: {len} bytes");
        }
        fs::write(dir.path().join("2.seg"), b"GHSP").unwrap();
        cut_padding(&dir.path().join("2.seg")).unwrap();
        assert_eq!(fs::read(dir.path().join("2.seg")).unwrap(), b"GHSP", "not a segment: left alone");
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
