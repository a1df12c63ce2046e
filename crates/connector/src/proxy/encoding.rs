//! The client's encoding: PostgreSQL takes statement text in `client_encoding`, so a
//! transcript shows what the client meant only when the text is decoded from it. The server
//! reports the encoding in a ParameterStatus at login and again on every change.

use std::borrow::Cow;
use std::fmt::Write as _;

use encoding_rs::Encoding;
use gatehouse_pgwire::escape_invalid_utf8;

/// How statement bytes become text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ClientEncoding {
    /// UTF8, and the encodings without a decoder here (SQL_ASCII passes bytes unchecked; the
    /// rare MULE_INTERNAL, no byte of whose characters past ASCII is ASCII): a byte that is not
    /// UTF-8 is written `\xNN`, so that statements differing in such bytes (table names, on a
    /// SQL_ASCII database) read differently, as they ran.
    #[default]
    Utf8,
    /// An ISO 8859 encoding that differs from LATIN1 in a few positions only. encoding_rs reads
    /// ISO-8859-1 and -9 as their Windows supersets, which differ in 0x80..=0x9F.
    Latin(&'static [(u8, char)]),
    /// A single-byte encoding encoding_rs reads as PostgreSQL does.
    Other(&'static Encoding),
    /// A multibyte encoding: read a character at a time, cut where PostgreSQL cuts them.
    Multibyte(&'static Encoding, Shape),
}

/// Where PostgreSQL takes a multibyte character to end (its `pg_*_mblen`), and which
/// characters encoding_rs's tables cannot be trusted with. A second byte may be ASCII (`\`
/// is one in SJIS, BIG5, GBK and UHC): it is part of its character, never a backslash, a
/// quote or a letter of the statement. A character that does not decode, or that is not read
/// here as PostgreSQL reads it, is written a byte at a time as `\xNN`, all of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// SJIS: 0xA1..=0xDF alone (half-width katakana), any other byte past ASCII and the next.
    Sjis,
    /// SHIFT_JIS_2004, as SJIS, but for the rows where JIS X 0213 and encoding_rs's Windows-31J
    /// put different characters, which are written as bytes.
    ShiftJis2004,
    /// BIG5, GBK, UHC: any byte past ASCII and the next.
    DoubleByte,
    /// GB18030: as `DoubleByte`, or four bytes when the second is a digit.
    Gb18030,
    /// EUC_JP, EUC_CN, EUC_KR: every byte of a character is past ASCII; 0x8E takes one more,
    /// 0x8F two, any other the next.
    Euc,
    /// As EUC_JP, but plane 2 of JIS X 0213 (0x8F) is not JIS X 0212, which EUC-JP has there.
    EucJis2004,
    /// No table here: as EUC, but 0x8E takes three more; every character written as bytes.
    EucTw,
    /// No table here: cut as EUC (PostgreSQL's `pg_johab_mblen`), but a second byte may be
    /// ASCII; every character written as bytes.
    Johab,
}

impl Shape {
    /// The length of the character starting with `lead`, past ASCII, followed by `next`.
    fn char_len(self, lead: u8, next: Option<u8>) -> usize {
        match self {
            Shape::Sjis | Shape::ShiftJis2004 if (0xA1..=0xDF).contains(&lead) => 1,
            Shape::Gb18030 if next.is_some_and(|b| b.is_ascii_digit()) => 4,
            Shape::EucTw if lead == 0x8E => 4,
            Shape::Euc | Shape::EucJis2004 | Shape::EucTw | Shape::Johab if lead == 0x8F => 3,
            _ => 2,
        }
    }

    /// Whether encoding_rs reads `char` as PostgreSQL does.
    fn decodes(self, char: &[u8]) -> bool {
        match self {
            Shape::ShiftJis2004 => !matches!(char[0], 0xED | 0xEE | 0xF0..),
            Shape::EucJis2004 => char[0] != 0x8F,
            Shape::EucTw | Shape::Johab => false,
            _ => true,
        }
    }
}

/// ISO 8859-9 (LATIN5): LATIN1 with six Turkish letters.
const LATIN5: &[(u8, char)] = &[(0xD0, 'Ğ'), (0xDD, 'İ'), (0xDE, 'Ş'), (0xF0, 'ğ'), (0xFD, 'ı'), (0xFE, 'ş')];

impl ClientEncoding {
    /// From the name PostgreSQL reports (`LATIN1`, `WIN1252`, `UTF8`, ...).
    pub(crate) fn from_name(name: &str) -> Self {
        let other = |encoding| ClientEncoding::Other(encoding);
        let multibyte = |encoding, shape| ClientEncoding::Multibyte(encoding, shape);
        match name.to_ascii_uppercase().as_str() {
            "LATIN1" => ClientEncoding::Latin(&[]),
            "LATIN5" => ClientEncoding::Latin(LATIN5),
            "LATIN2" => other(encoding_rs::ISO_8859_2),
            "LATIN3" => other(encoding_rs::ISO_8859_3),
            "LATIN4" => other(encoding_rs::ISO_8859_4),
            "LATIN6" => other(encoding_rs::ISO_8859_10),
            "LATIN7" => other(encoding_rs::ISO_8859_13),
            "LATIN8" => other(encoding_rs::ISO_8859_14),
            "LATIN9" => other(encoding_rs::ISO_8859_15),
            "LATIN10" => other(encoding_rs::ISO_8859_16),
            "ISO_8859_5" => other(encoding_rs::ISO_8859_5),
            "ISO_8859_6" => other(encoding_rs::ISO_8859_6),
            "ISO_8859_7" => other(encoding_rs::ISO_8859_7),
            "ISO_8859_8" => other(encoding_rs::ISO_8859_8),
            "WIN866" => other(encoding_rs::IBM866),
            "WIN874" => other(encoding_rs::WINDOWS_874),
            "WIN1250" => other(encoding_rs::WINDOWS_1250),
            "WIN1251" => other(encoding_rs::WINDOWS_1251),
            "WIN1252" => other(encoding_rs::WINDOWS_1252),
            "WIN1253" => other(encoding_rs::WINDOWS_1253),
            "WIN1254" => other(encoding_rs::WINDOWS_1254),
            "WIN1255" => other(encoding_rs::WINDOWS_1255),
            "WIN1256" => other(encoding_rs::WINDOWS_1256),
            "WIN1257" => other(encoding_rs::WINDOWS_1257),
            "WIN1258" => other(encoding_rs::WINDOWS_1258),
            "KOI8R" => other(encoding_rs::KOI8_R),
            "KOI8U" => other(encoding_rs::KOI8_U),
            "EUC_JP" => multibyte(encoding_rs::EUC_JP, Shape::Euc),
            "EUC_JIS_2004" => multibyte(encoding_rs::EUC_JP, Shape::EucJis2004),
            // Their characters are written as bytes, cut where they end.
            "EUC_TW" => multibyte(encoding_rs::EUC_JP, Shape::EucTw),
            "JOHAB" => multibyte(encoding_rs::EUC_KR, Shape::Johab),
            "SJIS" => multibyte(encoding_rs::SHIFT_JIS, Shape::Sjis),
            "SHIFT_JIS_2004" => multibyte(encoding_rs::SHIFT_JIS, Shape::ShiftJis2004),
            // encoding_rs's EUC-KR is Windows-949, which is UHC.
            "EUC_KR" => multibyte(encoding_rs::EUC_KR, Shape::Euc),
            "UHC" => multibyte(encoding_rs::EUC_KR, Shape::DoubleByte),
            "BIG5" => multibyte(encoding_rs::BIG5, Shape::DoubleByte),
            // EUC-CN is GB 2312, which GBK extends.
            "EUC_CN" => multibyte(encoding_rs::GBK, Shape::Euc),
            "GBK" => multibyte(encoding_rs::GBK, Shape::DoubleByte),
            "GB18030" => multibyte(encoding_rs::GB18030, Shape::Gb18030),
            _ => ClientEncoding::Utf8,
        }
    }

    /// As [`decode`](Self::decode), keeping the allocation of text that is UTF-8 already.
    pub(crate) fn decode_owned(&self, bytes: Vec<u8>) -> String {
        match String::from_utf8(bytes) {
            Ok(text) if matches!(self, ClientEncoding::Utf8) || text.is_ascii() => text,
            Ok(text) => self.decode(text.as_bytes()).into_owned(),
            Err(error) => self.decode(error.as_bytes()).into_owned(),
        }
    }

    /// Statement bytes as text; borrowed when they are UTF-8 already.
    pub(crate) fn decode<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        match self {
            // `from_utf8` validates a word at a time; the escaping scan only where it fails.
            ClientEncoding::Utf8 => {
                std::str::from_utf8(bytes).map_or_else(|_| Cow::Owned(escape_invalid_utf8(bytes)), Cow::Borrowed)
            }
            // ASCII is the same in every encoding here: the common case costs one scan.
            _ if bytes.is_ascii() => Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default()),
            ClientEncoding::Latin(differences) => Cow::Owned(
                bytes
                    .iter()
                    .map(|&b| differences.iter().find(|(at, _)| *at == b).map_or(char::from(b), |(_, c)| *c))
                    .collect(),
            ),
            ClientEncoding::Other(encoding) => encoding.decode_without_bom_handling(bytes).0,
            ClientEncoding::Multibyte(encoding, shape) => Cow::Owned(decode_multibyte(bytes, encoding, *shape)),
        }
    }
}

/// `bytes` in a multibyte encoding, a character at a time, as [`Shape`] says.
fn decode_multibyte(bytes: &[u8], encoding: &'static Encoding, shape: Shape) -> String {
    let mut text = String::with_capacity(bytes.len() * 3 / 2);
    let mut i = 0;
    while i < bytes.len() {
        let ascii = bytes[i..].iter().position(|b| !b.is_ascii()).map_or(bytes.len(), |n| i + n);
        text.push_str(std::str::from_utf8(&bytes[i..ascii]).unwrap_or_default());
        if ascii == bytes.len() {
            break;
        }
        let len = shape.char_len(bytes[ascii], bytes.get(ascii + 1).copied()).min(bytes.len() - ascii);
        let char = &bytes[ascii..ascii + len];
        let decoded = shape.decodes(char).then(|| encoding.decode_without_bom_handling_and_without_replacement(char));
        match decoded.flatten() {
            Some(decoded) => text.push_str(&decoded),
            None => char.iter().for_each(|byte| _ = write!(text, "\\x{byte:02x}")),
        }
        i = ascii + len;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_encodings_keep_c1_controls_where_windows_ones_have_letters() {
        let latin1 = ClientEncoding::from_name("LATIN1");
        assert_eq!(latin1.decode(b"select 'caf\xe9'"), "select 'café'");
        assert_eq!(latin1.decode(b"\x80"), "\u{80}");
        assert_eq!(ClientEncoding::from_name("WIN1252").decode(b"\x80"), "€");
        assert_eq!(ClientEncoding::from_name("latin5").decode(b"\xdd\xfd\xe9"), "İıé");
    }

    #[test]
    fn multibyte_encodings_decode() {
        assert_eq!(ClientEncoding::from_name("SJIS").decode(b"\x93\xfa\x96\x7b"), "日本");
        assert_eq!(ClientEncoding::from_name("KOI8R").decode(b"\xf0\xf2\xe9"), "ПРИ");
        assert_eq!(ClientEncoding::from_name("EUC_CN").decode(b"\xd6\xd0"), "中");
    }

    /// Found by a review: SHIFT_JIS_2004 was read as UTF-8, so the second byte of `表`
    /// (0x95 0x5C) was a backslash, which in `E'表'` escaped the closing quote: the literal ran
    /// on over the statements after it, and redaction took them out of the transcript.
    #[test]
    fn a_second_byte_is_never_read_as_ascii() {
        let table = b"select E'\x95\x5c' as a";
        for name in ["SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030"] {
            let text = ClientEncoding::from_name(name).decode(table);
            assert!(text.ends_with("' as a") && !text.contains("\\'"), "{name}: {text}");
        }
        assert_eq!(ClientEncoding::from_name("SHIFT_JIS_2004").decode(b"E'\x95\x5c'"), "E'表'");
        // A character the table here does not have, or has otherwise than PostgreSQL: its
        // bytes, all of them, its ASCII second byte included.
        assert_eq!(ClientEncoding::from_name("SHIFT_JIS_2004").decode(b"'\xed\x5c'"), "'\\xed\\x5c'");
        assert_eq!(ClientEncoding::from_name("SJIS").decode(b"'\x85\x5c'"), "'\\x85\\x5c'");
        // EUC: every byte of a character is past ASCII; plane 2 of JIS X 0213 is no JIS X 0212.
        assert_eq!(ClientEncoding::from_name("EUC_JIS_2004").decode(b"\xc9\xbd'"), "表'");
        assert_eq!(ClientEncoding::from_name("EUC_JIS_2004").decode(b"\x8f\xa1\xa1'"), "\\x8f\\xa1\\xa1'");
        assert_eq!(ClientEncoding::from_name("EUC_TW").decode(b"\x8e\xa2\xa1\xa1'"), "\\x8e\\xa2\\xa1\\xa1'");
        assert_eq!(ClientEncoding::from_name("JOHAB").decode(b"'\x88\x5c'"), "'\\x88\\x5c'");
        // GB18030's four bytes, two of them digits.
        assert_eq!(ClientEncoding::from_name("GB18030").decode(b"\x81\x30\x81\x30"), "\u{80}");
    }

    #[test]
    fn utf8_and_unknown_encodings_write_invalid_bytes_as_escapes() {
        for name in ["UTF8", "SQL_ASCII", "MULE_INTERNAL"] {
            let encoding = ClientEncoding::from_name(name);
            assert_eq!(encoding, ClientEncoding::Utf8);
            assert_eq!(encoding.decode("é\u{1F600}".as_bytes()), "é\u{1F600}");
            // Two tables a SQL_ASCII database tells apart stay apart.
            assert_eq!(encoding.decode(b"drop table \"t\xff\""), "drop table \"t\\xff\"");
            assert_eq!(encoding.decode(b"drop table \"t\xfe\""), "drop table \"t\\xfe\"");
            // A sequence cut short is escaped byte by byte, and what follows it read again.
            assert_eq!(encoding.decode(b"\xe2\x82a\xc3\xa9"), "\\xe2\\x82aé");
            assert_eq!(encoding.decode_owned(b"a\xffb".to_vec()), "a\\xffb");
        }
    }
}
