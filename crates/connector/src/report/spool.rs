//! The spool: events the control plane has not acknowledged yet, kept on disk
//! in append-only segment files so that neither an outage nor a restart loses
//! them. The design, recovery and trade-offs are in `README.md` beside this file.
//!
//! One owner (the report loop) appends, reads and acknowledges; the methods
//! block on file IO, so async callers run them on a blocking thread.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::record::{self, Next, SEGMENT_MAGIC};

/// Where the first record of a segment starts.
const FIRST_RECORD: u64 = SEGMENT_MAGIC.len() as u64;
const SEGMENT_SUFFIX: &str = ".seg";
const ACK_FILE: &str = "ack";

/// Whether [`Spool::append`] may go past [`SpoolOptions::max_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Append anyway (the caller refuses new sessions instead).
    Soft,
    /// Skip what does not fit (fail-open).
    Hard,
    /// Skip what would take the spool more than this many bytes past the limit: the reserve
    /// ([`SpoolOptions::reserve`]) kept for sessions' starts and ends and what a full spool
    /// must still take.
    Over(u64),
}

/// Size limits of a spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Past this many bytes on disk the spool is full (see [`Spool::is_full`]).
    pub max_bytes: u64,
    /// A segment is closed and a new one started once it would grow past this;
    /// a larger record gets a segment of its own.
    pub segment_bytes: u64,
}

impl SpoolOptions {
    /// Segments of a sixteenth of the limit, between 64 KiB and 16 MiB, so a
    /// drained segment frees a useful share of the space.
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        Self { max_bytes, segment_bytes: (max_bytes / 16).clamp(64 * 1024, 16 * 1024 * 1024) }
    }

    /// How far past [`max_bytes`](Self::max_bytes) the spool may grow: a tenth of it, and at
    /// least a segment (64 KiB by default) so that a new segment's header fits. Statements
    /// never use more than half of it (none of it in fail-open mode); the rest is for
    /// sessions' starts and ends, and the markers of the statements a full spool dropped.
    pub fn reserve(&self) -> u64 {
        (self.max_bytes / 10).max(self.segment_bytes)
    }
}

/// A place in the spool: a segment id and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Records handed out by [`Spool::read`], oldest first.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<Vec<u8>>,
    /// Records found damaged while reading, dropped (already logged).
    pub lost: u64,
    pub ticket: Ticket,
}

/// Acknowledges a [`Batch`] through [`Spool::ack`] once the control plane stored it.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    end: Position,
    records: u64,
    /// Records of the batch in the segment `end` points into.
    in_last: u64,
}

impl Ticket {
    pub fn records(&self) -> u64 {
        self.records
    }
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segments holding records to replay.
    pub segments: usize,
    /// Records to replay.
    pub records: u64,
    /// Bytes of torn or damaged tails that will not be replayed.
    pub dropped_bytes: u64,
}

/// An append that stopped part way: the first `written` records are in the
/// spool, the rest are not.
#[derive(Debug, thiserror::Error)]
#[error("cannot append to the spool after {written} records: {source}")]
pub struct AppendError {
    pub written: usize,
    #[source]
    pub source: io::Error,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// End of the records that can be read.
    len: u64,
    /// Bytes on disk, counted against the limit.
    size: u64,
    /// Records not yet acknowledged (from the read position, in the first segment).
    unacked: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    options: SpoolOptions,
    /// Oldest first. The last one is being written while `writer` is set.
    segments: VecDeque<Segment>,
    writer: Option<File>,
    next_id: u64,
    /// The first record not yet acknowledged.
    read: Position,
}

impl Spool {
    /// Opens the spool in `dir` (created if missing) and recovers what an
    /// earlier run left: every segment is checked record by record, and
    /// reading a segment stops at its first torn or damaged record, with a
    /// warning. New records always go to a new segment.
    ///
    /// # Errors
    ///
    /// IO errors on the directory or its files.
    pub fn open(dir: &Path, options: SpoolOptions) -> io::Result<(Spool, Recovery)> {
        fs::create_dir_all(dir)?;
        let ack = read_ack(dir);
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)).and_then(|n| n.parse().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let mut spool = Spool {
            dir: dir.to_owned(),
            options,
            segments: VecDeque::new(),
            writer: None,
            next_id: ids.last().map_or(1, |last| last + 1),
            read: Position { segment: 0, offset: FIRST_RECORD },
        };
        let mut recovery = Recovery::default();
        for id in ids {
            let path = spool.segment_path(id);
            if ack.is_some_and(|ack| id < ack.segment) {
                remove(&path);
                continue;
            }
            let start = ack.filter(|ack| ack.segment == id).map_or(FIRST_RECORD, |ack| ack.offset);
            let Some(scan) = scan(&path, start)? else {
                tracing::warn!(path = %path.display(), "ignoring a file that is not a spool segment");
                continue;
            };
            if let Some(problem) = scan.problem {
                tracing::warn!(
                    path = %path.display(),
                    problem,
                    dropped_bytes = scan.size - scan.len,
                    "spool segment damaged: its records from there on are dropped",
                );
                recovery.dropped_bytes += scan.size - scan.len;
            }
            if scan.unacked == 0 {
                remove(&path);
                continue;
            }
            if spool.segments.is_empty() {
                spool.read = Position { segment: id, offset: scan.start };
            }
            recovery.segments += 1;
            recovery.records += scan.unacked;
            spool.segments.push_back(Segment { id, len: scan.len, size: scan.size, unacked: scan.unacked });
        }
        if spool.segments.is_empty() {
            remove(&dir.join(ACK_FILE));
        }
        Ok((spool, recovery))
    }

    /// The id the next segment will have: past every segment file seen.
    pub fn next_segment_id(&self) -> u64 {
        self.next_id
    }

    /// Records not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.segments.iter().map(|s| s.unacked).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.pending() == 0
    }

    /// Bytes on disk, acknowledged records of a segment still in use included.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// At or past [`SpoolOptions::max_bytes`].
    pub fn is_full(&self) -> bool {
        self.bytes() >= self.options.max_bytes
    }

    pub fn options(&self) -> SpoolOptions {
        self.options
    }

    /// Segment files present.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Appends the payloads, in order, and makes them durable (`fdatasync`)
    /// before returning. With [`Limit::Hard`], a payload that would take the
    /// spool past [`SpoolOptions::max_bytes`] (segment headers included) is
    /// skipped; returns how many were.
    ///
    /// # Errors
    ///
    /// An [`AppendError`] saying how many payloads made it. A failed write is
    /// cut off the segment and the next append starts a new one, so a partial
    /// record never sits before good ones.
    pub fn append(&mut self, payloads: &[impl AsRef<[u8]>], limit: Limit) -> Result<usize, AppendError> {
        Ok(self.append_each(payloads, |_| limit)?.len())
    }

    /// [`append`](Self::append) with a limit per payload, by its index; returns the indices
    /// of those skipped.
    pub fn append_each(
        &mut self,
        payloads: &[impl AsRef<[u8]>],
        limit: impl Fn(usize) -> Limit,
    ) -> Result<Vec<usize>, AppendError> {
        let mut written = 0;
        let mut skipped = Vec::new();
        let mut buf = Vec::new();
        let mut in_buf = 0;
        let fail = |written, source| AppendError { written, source };
        for (i, payload) in payloads.iter().enumerate() {
            let payload = payload.as_ref();
            let framed = record::framed_len(payload.len());
            let used = match (&self.writer, self.segments.back()) {
                (Some(_), Some(segment)) => segment.len + buf.len() as u64,
                _ => 0,
            };
            let roll = used == 0 || (used > FIRST_RECORD && used + framed > self.options.segment_bytes);
            let need = framed + if roll { FIRST_RECORD } else { 0 };
            let cap = match limit(i) {
                Limit::Soft => u64::MAX,
                Limit::Hard => self.options.max_bytes,
                Limit::Over(margin) => self.options.max_bytes.saturating_add(margin),
            };
            if self.bytes() + buf.len() as u64 + need > cap {
                skipped.push(i);
                continue;
            }
            if roll {
                if in_buf > 0 {
                    self.write(&buf, in_buf as u64).map_err(|e| fail(written, e))?;
                    written += in_buf;
                    buf.clear();
                    in_buf = 0;
                }
                self.writer = None;
                self.create_segment().map_err(|e| fail(written, e))?;
            }
            record::encode(payload, &mut buf);
            in_buf += 1;
        }
        if in_buf > 0 {
            self.write(&buf, in_buf as u64).map_err(|e| fail(written, e))?;
        }
        Ok(skipped)
    }

    /// Reads up to `max_records` records (and about `max_bytes` of payload,
    /// at least one record) from the first unacknowledged one, without
    /// consuming them: the same records come back until [`Spool::ack`].
    ///
    /// # Errors
    ///
    /// IO errors reading a segment.
    pub fn read(&mut self, max_records: usize, max_bytes: usize) -> io::Result<Batch> {
        let mut records = Vec::new();
        let mut bytes = 0;
        let mut lost = 0;
        let mut pos = self.read;
        let mut in_last = 0;
        let full = |records: &Vec<Vec<u8>>, bytes| records.len() >= max_records || bytes >= max_bytes;
        for index in 0..self.segments.len() {
            if full(&records, bytes) {
                break;
            }
            let (id, len) = (self.segments[index].id, self.segments[index].len);
            if id < pos.segment {
                continue;
            }
            if id > pos.segment {
                pos = Position { segment: id, offset: FIRST_RECORD };
                in_last = 0;
            }
            if pos.offset >= len {
                continue;
            }
            let path = self.segment_path(id);
            let mut file = BufReader::new(File::open(&path)?);
            file.seek(SeekFrom::Start(pos.offset))?;
            while pos.offset < len && !full(&records, bytes) {
                match record::read_next(&mut file, len - pos.offset)? {
                    Next::Record(payload) => {
                        pos.offset += record::framed_len(payload.len());
                        bytes += payload.len();
                        records.push(payload);
                        in_last += 1;
                    }
                    Next::End => break,
                    damage @ (Next::Torn | Next::Corrupt(_)) => {
                        // Checked at recovery or written by us: damage since then is rare, but is
                        // handled like damage found at recovery.
                        let segment = &mut self.segments[index];
                        tracing::warn!(path = %path.display(), ?damage, "spool segment damaged: its records from there on are dropped");
                        lost += segment.unacked - in_last;
                        segment.unacked = in_last;
                        segment.len = pos.offset;
                        if index + 1 == self.segments.len() {
                            self.writer = None;
                        }
                        break;
                    }
                }
            }
        }
        let records_len = records.len() as u64;
        Ok(Batch { records, lost, ticket: Ticket { end: pos, records: records_len, in_last } })
    }

    /// Acknowledges a batch: its records are never read again, segments fully
    /// read are deleted, and the read position is saved for the next start.
    ///
    /// # Errors
    ///
    /// IO errors saving the read position (deleting files only logs).
    pub fn ack(&mut self, ticket: Ticket) -> io::Result<()> {
        while self.segments.front().is_some_and(|s| s.id < ticket.end.segment) {
            self.pop_front();
        }
        if let Some(first) = self.segments.front_mut().filter(|s| s.id == ticket.end.segment) {
            first.unacked -= ticket.in_last.min(first.unacked);
        }
        self.read = ticket.end;
        if self.is_empty() {
            self.writer = None;
            while !self.segments.is_empty() {
                self.pop_front();
            }
            remove(&self.dir.join(ACK_FILE));
            return Ok(());
        }
        // A segment read to its end and closed for writing is done.
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.unacked == 0) {
            self.pop_front();
            let next = self.segments.front().map_or(0, |s| s.id);
            self.read = Position { segment: next, offset: FIRST_RECORD };
        }
        write_ack(&self.dir, self.read)
    }

    fn pop_front(&mut self) {
        if let Some(segment) = self.segments.pop_front() {
            remove(&self.segment_path(segment.id));
        }
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(segment_name(id))
    }

    fn create_segment(&mut self) -> io::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let path = self.segment_path(id);
        let created = OpenOptions::new().write(true).create_new(true).open(&path).and_then(|mut file| {
            file.write_all(SEGMENT_MAGIC)?;
            file.sync_data()?;
            sync_dir(&self.dir)?;
            Ok(file)
        });
        let file = match created {
            Ok(file) => file,
            Err(error) => {
                remove(&path);
                return Err(error);
            }
        };
        if self.segments.is_empty() {
            self.read = Position { segment: id, offset: FIRST_RECORD };
        }
        self.segments.push_back(Segment { id, len: FIRST_RECORD, size: FIRST_RECORD, unacked: 0 });
        self.writer = Some(file);
        Ok(())
    }

    /// Writes framed records to the open segment and syncs them.
    fn write(&mut self, buf: &[u8], records: u64) -> io::Result<()> {
        let (Some(file), Some(segment)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("no open spool segment (a bug in the spool)"));
        };
        match file.write_all(buf).and_then(|()| file.sync_data()) {
            Ok(()) => {
                segment.len += buf.len() as u64;
                segment.size += buf.len() as u64;
                segment.unacked += records;
                Ok(())
            }
            Err(error) => {
                // Cut the partial write off; if even that fails, the reader stops there.
                if file.set_len(segment.len).is_err() {
                    segment.size = file.metadata().map_or(segment.size, |m| m.len());
                }
                self.writer = None;
                Err(error)
            }
        }
    }
}

/// The file name of segment `id`: numbered so that names sort as ids do.
pub(super) fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

struct Scan {
    /// End of the valid records.
    len: u64,
    size: u64,
    /// The offset replay starts from: the saved read position if it is a
    /// record boundary, else the first record.
    start: u64,
    unacked: u64,
    problem: Option<&'static str>,
}

/// Checks a segment record by record; `None` if it is not a segment at all.
fn scan(path: &Path, start: u64) -> io::Result<Option<Scan>> {
    let mut file = BufReader::new(File::open(path)?);
    let size = file.get_ref().metadata()?.len();
    if size < FIRST_RECORD {
        // Created, then cut short by a crash before its header was written.
        return Ok(Some(Scan { len: size, size, start: FIRST_RECORD, unacked: 0, problem: None }));
    }
    let mut magic = [0u8; SEGMENT_MAGIC.len()];
    io::Read::read_exact(&mut file, &mut magic)?;
    if &magic != SEGMENT_MAGIC {
        return Ok(None);
    }
    let mut offset = FIRST_RECORD;
    let (mut total, mut after_start) = (0u64, 0u64);
    let mut start_seen = start == FIRST_RECORD;
    let problem = loop {
        start_seen |= offset == start;
        match record::read_next(&mut file, size - offset)? {
            Next::Record(payload) => {
                total += 1;
                if start_seen {
                    after_start += 1;
                }
                offset += record::framed_len(payload.len());
            }
            Next::End => break None,
            Next::Torn => break Some("torn tail"),
            Next::Corrupt(why) => break Some(why),
        }
    };
    if !start_seen {
        tracing::warn!(path = %path.display(), start, "saved spool position is not a record boundary: replaying the whole segment");
        return Ok(Some(Scan { len: offset, size, start: FIRST_RECORD, unacked: total, problem }));
    }
    Ok(Some(Scan { len: offset, size, start, unacked: after_start, problem }))
}

/// The saved read position: `"<segment> <offset>\n"`.
fn read_ack(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join(ACK_FILE)).ok()?;
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Some(Position { segment, offset }),
        _ => {
            tracing::warn!(dir = %dir.display(), "ignoring an unreadable spool ack file: replaying from the oldest segment");
            None
        }
    }
}

/// Saves the read position, atomically (write, then rename). Not synced: a
/// lost update only means records are sent again, which the control plane
/// deduplicates.
fn write_ack(dir: &Path, position: Position) -> io::Result<()> {
    let tmp = dir.join("ack.tmp");
    fs::write(&tmp, format!("{} {}\n", position.segment, position.offset))?;
    fs::rename(&tmp, dir.join(ACK_FILE))
}

fn remove(path: &Path) {
    if let Err(error) = fs::remove_file(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "cannot delete a spool file");
    }
}

/// Makes a new file's directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
