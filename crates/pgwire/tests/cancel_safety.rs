//! `MessageReader::read_message` raced against a timer in `tokio::select!` must not lose or
//! reorder bytes, however the writer splits them.

use std::time::Duration;

use bytes::BytesMut;
use gatehouse_pgwire::frontend::Query;
use gatehouse_pgwire::{Encode, Filled, Message, MessageReader};
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
async fn a_batch_is_read_in_place_and_consumed_whole() {
    let mut wire = BytesMut::new();
    for i in 0..5 {
        Query::new(format!("SELECT {i}")).encode(&mut wire);
    }
    // All but the last 3 bytes: four whole messages and the start of the fifth.
    let (first, last) = wire.split_at(wire.len() - 3);
    let mut reader = MessageReader::new();
    assert_eq!(reader.fill_message(&mut &first[..]).await.unwrap(), Filled::Message);
    let mut end = 0;
    while let Some(m) = reader.message_at(end).unwrap() {
        assert_eq!((m.tag(), m.frame()), (b'Q', &first[end..end + m.len()]));
        end += m.len();
    }
    let fifth = wire.len() / 5 * 4;
    assert_eq!(end, fifth, "four whole messages");
    reader.consume(end);
    assert_eq!(reader.buffered_bytes(), &first[fifth..], "the start of the fifth stays");

    assert_eq!(reader.fill_message(&mut &last[..]).await.unwrap(), Filled::Message);
    assert_eq!(reader.message_at(0).unwrap().unwrap().frame(), &wire[fifth..]);
    assert_eq!(reader.split_to(wire.len() - fifth), &wire[fifth..]);
    assert_eq!(reader.fill_message(&mut &b""[..]).await.unwrap(), Filled::Closed, "a clean end between messages");
}
