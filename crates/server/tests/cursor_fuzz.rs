//! The cursor decoder never panics and accepts nothing it did not sign.

use gatehouse_server::cursor::{CursorCodec, fingerprint};
use proptest::prelude::*;

proptest! {
    #[test]
    fn arbitrary_text_is_rejected_without_panic(text in ".{0,300}") {
        let codec = CursorCodec::new(b"key".to_vec());
        prop_assert!(codec.decode(&text, &fingerprint(&["q"])).is_err());
    }

    #[test]
    fn arbitrary_base64_is_rejected_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        use base64::Engine;
        let codec = CursorCodec::new(b"key".to_vec());
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        prop_assert!(codec.decode(&text, &fingerprint(&["q"])).is_err());
    }
}
