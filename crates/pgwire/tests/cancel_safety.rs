//! `MessageReader::read_message` raced against a timer in `tokio::select!` must not lose or
//! reorder bytes, however the writer splits them.

use std::time::Duration;

use bytes::BytesMut;
use gatehouse_pgwire::frontend::Query;
use gatehouse_pgwire::{Encode, Message, MessageReader};
use tokio::io::AsyncWriteExt;

#[tokio::test(start_paused = true)]
async fn select_with_timer_loses_no_bytes() {
    let expected: Vec<Message> =
        (0..200).map(|i| Query::new(format!("SELECT {i}, '{}'", "x".repeat(i % 37))).to_message()).collect();
    let mut wire = BytesMut::new();
    for m in &expected {
        wire.extend_from_slice(m.frame());
    }

    // A small pipe and uneven chunks with pauses: reads often stop inside a frame, and the
    // timer often fires while a read is pending.
    let (mut writer, mut reader_side) = tokio::io::duplex(16);
    let write = tokio::spawn(async move {
        for (i, chunk) in wire.chunks(7).enumerate() {
            writer.write_all(chunk).await.unwrap();
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
    });

    let mut reader = MessageReader::new();
    let mut got = Vec::new();
    let mut timeouts = 0;
    loop {
        tokio::select! {
            read = reader.read_message(&mut reader_side) => match read.unwrap() {
                Some(m) => got.push(m),
                None => break,
            },
            () = tokio::time::sleep(Duration::from_millis(1)) => timeouts += 1,
        }
    }
    write.await.unwrap();

    assert!(timeouts > 10, "the timer never interrupted a read: {timeouts}");
    assert_eq!(got, expected);
}

#[tokio::test]
async fn try_next_drains_a_batch_after_one_read() {
    let mut wire = BytesMut::new();
    for i in 0..5 {
        Query::new(format!("SELECT {i}")).encode(&mut wire);
    }
    let mut r = &wire[..];
    let mut reader = MessageReader::new();
    let mut batch = vec![reader.read_message(&mut r).await.unwrap().unwrap()];
    while let Some(m) = reader.try_next().unwrap() {
        batch.push(m);
    }
    assert_eq!(batch.len(), 5);
    let relayed: Vec<u8> = batch.iter().flat_map(|m| m.frame().to_vec()).collect();
    assert_eq!(relayed, &wire[..]);
}
