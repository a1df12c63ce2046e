//! The spool on disk: records come back as written, across reopenings; torn
//! and damaged tails are dropped, never replayed; segments roll and go away
//! once acknowledged.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use gatehouse_connector::report::spool::{Limit, Recovery};
use gatehouse_connector::report::{Spool, SpoolOptions};

const ROOMY: SpoolOptions = SpoolOptions { max_bytes: 1 << 30, segment_bytes: 1 << 20 };
/// About five 100-byte records per segment.
const SMALL_SEGMENTS: SpoolOptions = SpoolOptions { max_bytes: 1 << 30, segment_bytes: 600 };

fn payloads(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(|i| format!("{i:0100}").into_bytes()).collect()
}

fn open(dir: &Path, options: SpoolOptions) -> (Spool, Recovery) {
    Spool::open(dir, options).unwrap()
}

/// Reads and acknowledges everything, in batches of `batch`.
fn drain(spool: &mut Spool, batch: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let read = spool.read(batch, usize::MAX).unwrap();
        if read.records.is_empty() {
            return out;
        }
        out.extend(read.records);
        spool.ack(read.ticket).unwrap();
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    files.sort();
    files
}

#[test]
fn records_read_back_in_order_and_the_spool_empties() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, recovery) = open(dir.path(), ROOMY);
    assert_eq!(recovery, Recovery::default());
    assert!(spool.is_empty());

    spool.append(&payloads(0..10), Limit::Soft).unwrap();
    spool.append(&payloads(10..12), Limit::Soft).unwrap();
    assert_eq!(spool.pending(), 12);

    let first = spool.read(5, usize::MAX).unwrap();
    assert_eq!(first.records, payloads(0..5));
    let again = spool.read(5, usize::MAX).unwrap();
    assert_eq!(again.records, payloads(0..5), "nothing is consumed before it is acknowledged");
    spool.ack(first.ticket).unwrap();
    assert_eq!(spool.pending(), 7);

    assert_eq!(drain(&mut spool, 4), payloads(5..12));
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    assert!(segments(dir.path()).is_empty(), "an empty spool leaves no segment behind");
    assert!(!dir.path().join("ack").exists());
}

#[test]
fn a_read_stops_at_about_max_bytes_but_returns_at_least_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path(), ROOMY);
    spool.append(&payloads(0..10), Limit::Soft).unwrap();
    assert_eq!(spool.read(100, 250).unwrap().records.len(), 3);
    assert_eq!(spool.read(100, 1).unwrap().records.len(), 1);
}

#[test]
fn records_survive_a_reopen_and_so_does_the_acknowledged_position() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut spool, _) = open(dir.path(), SMALL_SEGMENTS);
        spool.append(&payloads(0..23), Limit::Soft).unwrap();
        let read = spool.read(7, usize::MAX).unwrap();
        spool.ack(read.ticket).unwrap();
    }
    let (mut spool, recovery) = open(dir.path(), SMALL_SEGMENTS);
    assert_eq!(recovery.records, 16, "{recovery:?}");
    assert_eq!(recovery.dropped_bytes, 0);

    // New records go behind the old ones, in a new segment.
    let before = segments(dir.path());
    spool.append(&payloads(23..25), Limit::Soft).unwrap();
    assert_eq!(segments(dir.path()).len(), before.len() + 1);
    assert_eq!(drain(&mut spool, 3), payloads(7..25));
    assert!(segments(dir.path()).is_empty());
}

#[test]
fn segments_roll_and_are_deleted_once_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path(), SMALL_SEGMENTS);
    spool.append(&payloads(0..20), Limit::Soft).unwrap();
    let files = segments(dir.path());
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files.iter().all(|f| f.metadata().unwrap().len() <= 600));

    let read = spool.read(6, usize::MAX).unwrap();
    spool.ack(read.ticket).unwrap();
    assert_eq!(segments(dir.path()), files[1..], "the first segment, read to its end, is gone");
    assert_eq!(drain(&mut spool, 100), payloads(6..20));
}

#[test]
fn a_record_larger_than_a_segment_gets_one_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path(), SMALL_SEGMENTS);
    let big = vec![7u8; 2000];
    spool.append(&[b"a".to_vec(), big.clone(), b"b".to_vec()], Limit::Soft).unwrap();
    assert_eq!(segments(dir.path()).len(), 3);
    assert_eq!(drain(&mut spool, 10), [b"a".to_vec(), big, b"b".to_vec()]);
}

#[test]
fn a_torn_tail_is_dropped_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut spool, _) = open(dir.path(), ROOMY);
        spool.append(&payloads(0..5), Limit::Soft).unwrap();
    }
    // A crash in the middle of writing the fifth record.
    let file = &segments(dir.path())[0];
    let len = file.metadata().unwrap().len();
    OpenOptions::new().write(true).open(file).unwrap().set_len(len - 30).unwrap();

    let (mut spool, recovery) = open(dir.path(), ROOMY);
    assert_eq!((recovery.records, recovery.dropped_bytes), (4, 78));
    spool.append(&payloads(5..6), Limit::Soft).unwrap();
    let mut expected = payloads(0..4);
    expected.extend(payloads(5..6));
    assert_eq!(drain(&mut spool, 2), expected);
}

#[test]
fn a_zero_filled_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut spool, _) = open(dir.path(), ROOMY);
        spool.append(&payloads(0..3), Limit::Soft).unwrap();
    }
    // Some filesystems extend a file before its data reaches the disk.
    let file = &segments(dir.path())[0];
    OpenOptions::new().append(true).open(file).unwrap().write_all(&[0u8; 4096]).unwrap();

    let (mut spool, recovery) = open(dir.path(), ROOMY);
    assert_eq!((recovery.records, recovery.dropped_bytes), (3, 4096));
    assert_eq!(drain(&mut spool, 10), payloads(0..3));
}

#[test]
fn a_checksum_mismatch_drops_the_rest_of_its_segment_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut spool, _) = open(dir.path(), SMALL_SEGMENTS);
        spool.append(&payloads(0..10), Limit::Soft).unwrap();
    }
    let files = segments(dir.path());
    assert_eq!(files.len(), 2);
    // Flip a payload byte of the third record of the first segment (five records of 108 bytes).
    let mut bytes = fs::read(&files[0]).unwrap();
    bytes[8 + 2 * 108 + 50] ^= 0xff;
    fs::write(&files[0], bytes).unwrap();

    let (mut spool, recovery) = open(dir.path(), SMALL_SEGMENTS);
    assert_eq!((recovery.records, recovery.dropped_bytes), (7, 3 * 108));
    let mut expected = payloads(0..2);
    expected.extend(payloads(5..10));
    assert_eq!(drain(&mut spool, 4), expected, "garbage is never replayed");
}

#[test]
fn damage_found_after_recovery_is_dropped_too() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path(), SMALL_SEGMENTS);
    spool.append(&payloads(0..10), Limit::Soft).unwrap();
    let file = &segments(dir.path())[0];
    let mut bytes = fs::read(file).unwrap();
    bytes[8 + 3 * 108 + 20] ^= 0x01;
    fs::write(file, bytes).unwrap();

    let read = spool.read(100, usize::MAX).unwrap();
    assert_eq!(read.lost, 2);
    let mut expected = payloads(0..3);
    expected.extend(payloads(5..10));
    assert_eq!(read.records, expected);
    spool.ack(read.ticket).unwrap();
    assert!(spool.is_empty());
}

#[test]
fn files_that_are_not_segments_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("00000000000000000007.seg"), b"not a spool segment at all").unwrap();
    fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    fs::write(dir.path().join("00000000000000000009.seg"), b"GHS").unwrap();
    let (mut spool, recovery) = open(dir.path(), ROOMY);
    assert_eq!(recovery.records, 0);
    assert!(!dir.path().join("00000000000000000009.seg").exists(), "a segment cut before its header is removed");
    spool.append(&payloads(0..1), Limit::Soft).unwrap();
    assert!(dir.path().join("00000000000000000010.seg").exists(), "new segments are numbered past every file seen");
    assert_eq!(drain(&mut spool, 1), payloads(0..1));
    assert!(dir.path().join("00000000000000000007.seg").exists() && dir.path().join("notes.txt").exists());
}

#[test]
fn the_hard_limit_skips_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions { max_bytes: 8 + 3 * 108, segment_bytes: 1 << 20 };
    let (mut spool, _) = open(dir.path(), options);
    assert_eq!(spool.append(&payloads(0..5), Limit::Hard).unwrap(), 2);
    assert!(spool.is_full());
    assert_eq!(spool.bytes(), 8 + 3 * 108);
    assert_eq!(spool.append(&payloads(5..7), Limit::Soft).unwrap(), 0, "the soft limit appends anyway");
    assert_eq!(spool.pending(), 5);
}
