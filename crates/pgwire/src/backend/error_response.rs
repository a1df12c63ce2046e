//! ErrorResponse: typed fields (severity, SQLSTATE, message, ...), and the named errors a
//! proxy sends itself.
//!
//! Field values are decoded lossily: the server writes them in the client's encoding and
//! language, and the SQLSTATE must stay readable even when the message text is not UTF-8.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::put_cstr;
use crate::cursor::Cursor;
use crate::{BackendTag, Decode, Encode, WireError};

/// Severity, localized (`S`) and not (`V`, since 9.6).
pub(crate) const SEVERITY_LOCALIZED: u8 = b'S';
pub(crate) const SEVERITY: u8 = b'V';
pub(crate) const CODE: u8 = b'C';
pub(crate) const MESSAGE: u8 = b'M';
pub(crate) const DETAIL: u8 = b'D';
pub(crate) const HINT: u8 = b'H';

/// Reads `(code, value)` pairs up to the terminating zero code.
pub(crate) fn decode_fields(body: Bytes) -> Result<Vec<(u8, String)>, WireError> {
    let mut c = Cursor::new(body);
    let mut fields = Vec::new();
    loop {
        match c.u8()? {
            0 => break,
            code => fields.push((code, c.cstr_lossy()?)),
        }
    }
    c.finish()?;
    Ok(fields)
}

/// The value of the first field with `code`.
pub(crate) fn find(fields: &[(u8, String)], code: u8) -> Option<&str> {
    fields.iter().find(|(c, _)| *c == code).map(|(_, v)| v.as_str())
}

/// The non-localized severity if sent, else the localized one.
pub(crate) fn severity(fields: &[(u8, String)]) -> Option<&str> {
    find(fields, SEVERITY).or_else(|| find(fields, SEVERITY_LOCALIZED))
}

/// Severity of an error the proxy sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session continues.
    Error,
    /// The session ends.
    Fatal,
    /// Every session ends.
    Panic,
}

impl Severity {
    /// The severity as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
            Self::Panic => "PANIC",
        }
    }
}

/// An error, as a list of typed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// `(field code, value)` pairs in wire order, such as `(b'C', "57P01")`.
    pub fields: Vec<(u8, String)>,
}

impl ErrorResponse {
    /// An error with severity, SQLSTATE and message.
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        Self {
            fields: vec![
                (SEVERITY_LOCALIZED, severity.as_str().to_owned()),
                (SEVERITY, severity.as_str().to_owned()),
                (CODE, code.to_owned()),
                (MESSAGE, message.into()),
            ],
        }
    }

    /// An ERROR: the statement fails and the session goes on.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    /// A FATAL error: the server closes the connection after sending it.
    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, code, message)
    }

    /// FATAL 57P01 `admin_shutdown`: the session was terminated by an administrator.
    pub fn admin_shutdown(message: impl Into<String>) -> Self {
        Self::fatal("57P01", message)
    }

    /// FATAL 08P01 `protocol_violation`.
    pub fn protocol_violation(message: impl Into<String>) -> Self {
        Self::fatal("08P01", message)
    }

    /// FATAL 28P01 `invalid_password`.
    pub fn invalid_password(message: impl Into<String>) -> Self {
        Self::fatal("28P01", message)
    }

    /// FATAL 57P03 `cannot_connect_now`: starting up or shutting down.
    pub fn cannot_connect_now(message: impl Into<String>) -> Self {
        Self::fatal("57P03", message)
    }

    /// FATAL 53300 `too_many_connections`.
    pub fn too_many_connections(message: impl Into<String>) -> Self {
        Self::fatal("53300", message)
    }

    /// Adds a DETAIL field.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.fields.push((DETAIL, detail.into()));
        self
    }

    /// Adds a HINT field.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.fields.push((HINT, hint.into()));
        self
    }

    /// The value of a field by its code byte, such as `b'P'` for the position.
    pub fn field(&self, code: u8) -> Option<&str> {
        find(&self.fields, code)
    }

    /// `ERROR`, `FATAL` or `PANIC`, untranslated when the server sent both forms.
    pub fn severity(&self) -> Option<&str> {
        severity(&self.fields)
    }

    /// The SQLSTATE, such as `42P01`.
    pub fn code(&self) -> Option<&str> {
        self.field(CODE)
    }

    /// The primary message.
    pub fn message(&self) -> Option<&str> {
        self.field(MESSAGE)
    }

    /// The DETAIL field.
    pub fn detail(&self) -> Option<&str> {
        self.field(DETAIL)
    }

    /// The HINT field.
    pub fn hint(&self) -> Option<&str> {
        self.field(HINT)
    }

    /// Whether the server closes the session after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self.severity(), Some("FATAL" | "PANIC"))
    }

    /// Appends the error as protocol 2.0 and older wrote one, for a client that asked for
    /// such a protocol and could not read a newer error: `E`, then `SEVERITY:  message` on a
    /// line, ended by a NUL, without a length word or fields. So PostgreSQL refuses it.
    pub fn encode_protocol_2(&self, buf: &mut BytesMut) {
        buf.put_u8(BackendTag::ErrorResponse as u8);
        let severity = self.field(SEVERITY_LOCALIZED).or_else(|| self.severity()).unwrap_or("ERROR");
        let message = self.message().unwrap_or("missing error text");
        for text in [severity, ":  ", message, "\n"] {
            // A NUL would end the text early.
            buf.extend(text.bytes().filter(|&b| b != 0));
        }
        buf.put_u8(0);
    }
}

impl Decode for ErrorResponse {
    const TAG: u8 = BackendTag::ErrorResponse as u8;

    fn decode_body(body: Bytes) -> Result<Self, WireError> {
        Ok(Self { fields: decode_fields(body)? })
    }
}

impl Encode for ErrorResponse {
    const TAG: u8 = BackendTag::ErrorResponse as u8;

    fn encode_body(&self, buf: &mut BytesMut) {
        for (code, value) in &self.fields {
            // A zero code would end the list early.
            if *code != 0 {
                buf.put_u8(*code);
                put_cstr(buf, value);
            }
        }
        buf.put_u8(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_server_error() {
        let e = ErrorResponse::decode_body(Bytes::from_static(
            b"SERROR\0VERROR\0C42P01\0Mrelation \"nope\" does not exist\0P15\0Fparse_relation.c\0\0",
        ))
        .unwrap();
        assert_eq!(e.severity(), Some("ERROR"));
        assert_eq!(e.code(), Some("42P01"));
        assert_eq!(e.message(), Some("relation \"nope\" does not exist"));
        assert_eq!(e.field(b'P'), Some("15"));
        assert_eq!(e.detail(), None);
        assert!(!e.is_fatal());
    }

    #[test]
    fn prefers_the_untranslated_severity() {
        let e = ErrorResponse::decode_body(Bytes::from_static(b"SFEHLER\0VERROR\0C22012\0\0")).unwrap();
        assert_eq!(e.severity(), Some("ERROR"));
        let e = ErrorResponse::decode_body(Bytes::from_static(b"SFATAL\0\0")).unwrap();
        assert_eq!(e.severity(), Some("FATAL"));
    }

    #[test]
    fn non_utf8_text_keeps_the_code() {
        let e = ErrorResponse::decode_body(Bytes::from_static(b"C23505\0Mdoppelt \xe4\0\0")).unwrap();
        assert_eq!(e.code(), Some("23505"));
        assert_eq!(e.message(), Some("doppelt \u{fffd}"));
    }

    #[test]
    fn rejects_bad_bodies() {
        for body in [&b""[..], b"C23505\0", b"C23505", b"\0x"] {
            assert!(ErrorResponse::decode_body(Bytes::from_static(body)).is_err(), "{body:?}");
        }
    }

    #[test]
    fn named_constructors() {
        for (e, code) in [
            (ErrorResponse::admin_shutdown("terminated"), "57P01"),
            (ErrorResponse::protocol_violation("bad"), "08P01"),
            (ErrorResponse::invalid_password("no"), "28P01"),
            (ErrorResponse::cannot_connect_now("starting"), "57P03"),
            (ErrorResponse::too_many_connections("full"), "53300"),
            (ErrorResponse::fatal("58000", "x"), "58000"),
        ] {
            assert_eq!(e.code(), Some(code));
            assert_eq!(e.severity(), Some("FATAL"));
            assert!(e.is_fatal());
        }
        assert!(!ErrorResponse::error("42601", "syntax").is_fatal());
    }

    #[test]
    fn encodes_the_wire_layout() {
        let msg = ErrorResponse::admin_shutdown("bye").to_message();
        assert_eq!(&msg.frame()[..], b"E\0\0\0\x1fSFATAL\0VFATAL\0C57P01\0Mbye\0\0");
    }

    #[test]
    fn encodes_the_layout_of_protocol_2() {
        let mut buf = BytesMut::new();
        ErrorResponse::fatal("0A000", "unsupported frontend protocol 2.0").encode_protocol_2(&mut buf);
        assert_eq!(&buf[..], b"EFATAL:  unsupported frontend protocol 2.0\n\0");
    }

    #[test]
    fn round_trips_with_detail_and_hint() {
        let e = ErrorResponse::protocol_violation("unexpected message")
            .with_detail("got 'x'")
            .with_hint("upgrade the driver");
        let decoded = e.to_message().decode::<ErrorResponse>().unwrap();
        assert_eq!(decoded, e);
        assert_eq!(decoded.detail(), Some("got 'x'"));
        assert_eq!(decoded.hint(), Some("upgrade the driver"));
    }
}
