//! Message type bytes, one table per direction.
//!
//! The tables are separate because the letters collide: `C` is Close from the client and
//! CommandComplete from the server, and likewise `D` (Describe, DataRow), `E` (Execute,
//! ErrorResponse), `S` (Sync, ParameterStatus) and `H` (Flush, CopyOutResponse).
//! Only the caller knows which side a [`Message`](crate::Message) came from.

/// Declares a `#[repr(u8)]` enum whose discriminants are the type bytes, with `from_u8`.
macro_rules! tags {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $byte:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $byte,)*
        }

        impl $name {
            /// The tag for a type byte, or `None` if this direction has no such message.
            pub fn from_u8(byte: u8) -> Option<Self> {
                match byte {
                    $($byte => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The type byte on the wire.
            pub fn as_u8(self) -> u8 {
                self as u8
            }
        }

        impl From<$name> for u8 {
            fn from(tag: $name) -> u8 {
                tag as u8
            }
        }
    };
}

tags! {
    /// Type bytes of messages sent by the client.
    FrontendTag {
        /// Bind a prepared statement to a portal.
        Bind = b'B',
        /// Close a statement or portal.
        Close = b'C',
        /// COPY data.
        CopyData = b'd',
        /// COPY finished.
        CopyDone = b'c',
        /// COPY failed.
        CopyFail = b'f',
        /// Describe a statement or portal.
        Describe = b'D',
        /// Execute a portal.
        Execute = b'E',
        /// Flush output.
        Flush = b'H',
        /// Fast-path function call.
        FunctionCall = b'F',
        /// Prepare a statement.
        Parse = b'P',
        /// Simple query.
        Query = b'Q',
        /// End of an extended-query exchange.
        Sync = b'S',
        /// Close the connection.
        Terminate = b'X',
        /// PasswordMessage, GSSResponse, SASLInitialResponse and SASLResponse share this byte.
        Password = b'p',
    }
}

tags! {
    /// Type bytes of messages sent by the server.
    BackendTag {
        /// An authentication request or result.
        Authentication = b'R',
        /// Process id and cancel key.
        BackendKeyData = b'K',
        /// Bind succeeded.
        BindComplete = b'2',
        /// Close succeeded.
        CloseComplete = b'3',
        /// A command finished.
        CommandComplete = b'C',
        /// COPY data.
        CopyData = b'd',
        /// COPY finished.
        CopyDone = b'c',
        /// The server is ready to receive COPY data.
        CopyInResponse = b'G',
        /// The server is about to send COPY data.
        CopyOutResponse = b'H',
        /// Streaming replication COPY in both directions.
        CopyBothResponse = b'W',
        /// One result row.
        DataRow = b'D',
        /// Response to an empty query string.
        EmptyQueryResponse = b'I',
        /// An error.
        ErrorResponse = b'E',
        /// Result of a fast-path function call.
        FunctionCallResponse = b'V',
        /// The server does not support the requested minor version or options.
        NegotiateProtocolVersion = b'v',
        /// The statement returns no rows.
        NoData = b'n',
        /// A notice.
        NoticeResponse = b'N',
        /// A LISTEN/NOTIFY notification.
        NotificationResponse = b'A',
        /// Parameter types of a prepared statement.
        ParameterDescription = b't',
        /// A run-time parameter's value.
        ParameterStatus = b'S',
        /// Parse succeeded.
        ParseComplete = b'1',
        /// Execute stopped at its row limit.
        PortalSuspended = b's',
        /// The server is ready for a new query.
        ReadyForQuery = b'Z',
        /// Column descriptions of a result.
        RowDescription = b'T',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_letters_map_per_direction() {
        assert_eq!(FrontendTag::from_u8(b'C'), Some(FrontendTag::Close));
        assert_eq!(BackendTag::from_u8(b'C'), Some(BackendTag::CommandComplete));
        assert_eq!(FrontendTag::from_u8(b'S'), Some(FrontendTag::Sync));
        assert_eq!(BackendTag::from_u8(b'S'), Some(BackendTag::ParameterStatus));
        assert_eq!(FrontendTag::from_u8(b'H'), Some(FrontendTag::Flush));
        assert_eq!(BackendTag::from_u8(b'H'), Some(BackendTag::CopyOutResponse));
    }

    #[test]
    fn unknown_bytes_are_none() {
        assert_eq!(FrontendTag::from_u8(b'Z'), None);
        assert_eq!(BackendTag::from_u8(b'Q'), None);
        assert_eq!(BackendTag::from_u8(0), None);
    }

    #[test]
    fn from_u8_inverts_as_u8() {
        for byte in 0..=u8::MAX {
            if let Some(tag) = FrontendTag::from_u8(byte) {
                assert_eq!(tag.as_u8(), byte);
            }
            if let Some(tag) = BackendTag::from_u8(byte) {
                assert_eq!(u8::from(tag), byte);
            }
        }
    }
}
