//! The client's encoding: PostgreSQL takes statement text in `client_encoding`, so a
//! transcript shows what the client meant only when the text is decoded from it. The server
//! reports the encoding in a ParameterStatus at login and again on every change.

use std::borrow::Cow;

use encoding_rs::Encoding;
use gatehouse_pgwire::escape_invalid_utf8;

/// How statement bytes become text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ClientEncoding {
    /// UTF8, and the encodings without a decoder here (SQL_ASCII passes bytes unchecked; the
    /// rare EUC_TW, JOHAB, MULE_INTERNAL, ...): a byte that is not UTF-8 is written `\xNN`,
    /// so that statements differing in such bytes (table names, on a SQL_ASCII database) read
    /// differently, as they ran.
    #[default]
    Utf8,
    /// An ISO 8859 encoding that differs from LATIN1 in a few positions only. encoding_rs reads
    /// ISO-8859-1 and -9 as their Windows supersets, which differ in 0x80..=0x9F.
    Latin(&'static [(u8, char)]),
    Other(&'static Encoding),
}

/// ISO 8859-9 (LATIN5): LATIN1 with six Turkish letters.
const LATIN5: &[(u8, char)] = &[(0xD0, 'Ğ'), (0xDD, 'İ'), (0xDE, 'Ş'), (0xF0, 'ğ'), (0xFD, 'ı'), (0xFE, 'ş')];

impl ClientEncoding {
    /// From the name PostgreSQL reports (`LATIN1`, `WIN1252`, `UTF8`, ...).
    pub(crate) fn from_name(name: &str) -> Self {
        let other = |encoding| ClientEncoding::Other(encoding);
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
            "EUC_JP" => other(encoding_rs::EUC_JP),
            "SJIS" => other(encoding_rs::SHIFT_JIS),
            // encoding_rs's EUC-KR is Windows-949, which is UHC.
            "EUC_KR" | "UHC" => other(encoding_rs::EUC_KR),
            "BIG5" => other(encoding_rs::BIG5),
            // EUC-CN is GB 2312, which GBK extends.
            "EUC_CN" | "GBK" => other(encoding_rs::GBK),
            "GB18030" => other(encoding_rs::GB18030),
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
        }
    }
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
