//! Arbitrary bytes fed to the framers and to every typed view return a value or an error,
//! never a panic, and framing does not depend on how the input is split.

use bytes::{Bytes, BytesMut};
use gatehouse_pgwire::backend::{
    AuthenticationRequest, BackendKeyData, CommandComplete, CopyBothResponse, CopyInResponse, CopyOutResponse, DataRow,
    ErrorResponse, NoticeResponse, NotificationResponse, ParameterStatus, ReadyForQuery, RowDescription,
};
use gatehouse_pgwire::frontend::{Bind, Close, Describe, Execute, Parse, PasswordMessage, Query, Sync, Terminate};
use gatehouse_pgwire::{
    CANCEL_REQUEST_CODE, Decode, Filled, GSSENC_REQUEST_CODE, Message, MessageReader, PROTOCOL_3_0, PROTOCOL_3_2,
    SSL_REQUEST_CODE, try_frame, try_startup,
};
use proptest::prelude::*;

fn decode_all(body: &Bytes) {
    fn one<T: Decode>(body: &Bytes) {
        let _ = T::decode_body(body.clone());
    }
    one::<Query>(body);
    one::<Parse>(body);
    one::<Bind>(body);
    one::<Execute>(body);
    one::<Close>(body);
    one::<Describe>(body);
    one::<Sync>(body);
    one::<Terminate>(body);
    one::<PasswordMessage>(body);
    one::<AuthenticationRequest>(body);
    one::<BackendKeyData>(body);
    one::<ParameterStatus>(body);
    one::<ReadyForQuery>(body);
    one::<CommandComplete>(body);
    one::<ErrorResponse>(body);
    one::<NoticeResponse>(body);
    one::<DataRow>(body);
    one::<RowDescription>(body);
    one::<CopyInResponse>(body);
    one::<CopyOutResponse>(body);
    one::<CopyBothResponse>(body);
    one::<NotificationResponse>(body);
    if let Ok(c) = CommandComplete::decode_body(body.clone()) {
        let _ = (c.rows(), c.command());
    }
}

/// Frames everything `try_frame` accepts, returning the frames and what was left.
fn frame_all(mut buf: BytesMut, max: usize) -> (Vec<Message>, Option<BytesMut>) {
    let mut out = Vec::new();
    loop {
        match try_frame(&mut buf, max) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return (out, Some(buf)),
            Err(_) => return (out, None),
        }
    }
}

/// Bodies that often get past the first field: short, and rich in NULs and small counts.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(b'S'), any::<u8>()], 0..64),
    ]
}

fn startup_code() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(SSL_REQUEST_CODE),
        Just(GSSENC_REQUEST_CODE),
        Just(CANCEL_REQUEST_CODE),
        Just(PROTOCOL_3_0),
        Just(PROTOCOL_3_2),
        any::<u32>(),
    ]
}

proptest! {
    #[test]
    fn typed_views_never_panic(body in body()) {
        decode_all(&Bytes::from(body));
    }

    #[test]
    fn framing_never_panics_and_frames_are_exact(input in body(), max in 4usize..128) {
        let (frames, rest) = frame_all(BytesMut::from(&input[..]), max);
        let framed: Vec<u8> = frames.iter().flat_map(|m| m.frame().to_vec()).collect();
        prop_assert_eq!(&input[..framed.len()], &framed[..]);
        for m in &frames {
            prop_assert!(m.len() - 1 <= max);
            decode_all(&m.payload_bytes());
        }
        if let Some(rest) = rest {
            prop_assert_eq!(framed.len() + rest.len(), input.len());
        }
    }

    #[test]
    fn framing_does_not_depend_on_chunking(input in body(), split in 0usize..64) {
        let whole = frame_all(BytesMut::from(&input[..]), 64).0;
        let split = split.min(input.len());
        let mut buf = BytesMut::from(&input[..split]);
        let mut pieces = frame_all_into(&mut buf);
        buf.extend_from_slice(&input[split..]);
        pieces.extend(frame_all_into(&mut buf));
        // An error stops framing in both runs at the same frame.
        prop_assert_eq!(pieces, whole);
    }

    #[test]
    fn frames_read_in_place_are_the_frames_split_off(input in body()) {
        let split = frame_all(BytesMut::from(&input[..]), 64).0;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let in_place = rt.block_on(async {
            let mut r = &input[..];
            let mut reader = MessageReader::with_max_message_len(64);
            let mut frames = Vec::new();
            while let Ok(Filled::Message) = reader.fill_message(&mut r).await {
                let mut end = 0;
                while let Ok(Some(m)) = reader.message_at(end) {
                    frames.push(m.to_message());
                    end += m.len();
                }
                reader.consume(end);
            }
            frames
        });
        prop_assert_eq!(in_place, split);
    }

    #[test]
    fn startup_never_panics(input in body(), code in startup_code(), len in -2i32..80) {
        let _ = try_startup(&mut BytesMut::from(&input[..]));
        // A known code with a length near the real sizes reaches the per-code checks.
        let mut packet = BytesMut::new();
        packet.extend_from_slice(&len.to_be_bytes());
        packet.extend_from_slice(&code.to_be_bytes());
        packet.extend_from_slice(&input);
        let _ = try_startup(&mut packet);
    }

    #[test]
    fn read_startup_and_read_message_never_panic(input in body()) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut r = &input[..];
            let mut reader = MessageReader::with_max_message_len(64);
            if reader.read_startup(&mut r).await.is_ok() {
                while let Ok(Some(_)) = reader.read_message(&mut r).await {}
            }
            let mut r = &input[..];
            let mut reader = MessageReader::new();
            while let Ok(Some(_)) = reader.read_message(&mut r).await {}
        });
    }
}

/// Like `frame_all` but keeps the buffer, so framing can resume after more input arrives.
fn frame_all_into(buf: &mut BytesMut) -> Vec<Message> {
    std::iter::from_fn(|| try_frame(buf, 64).ok().flatten()).collect()
}
