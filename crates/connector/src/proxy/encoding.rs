//! The client's encoding: PostgreSQL takes statement text in `client_encoding`, so a
//! transcript shows what the client meant only when the text is decoded from it. The server
//! reports the encoding in a ParameterStatus at login and again on every change.

use std::borrow::Cow;
use std::fmt::Write as _;

use encoding_rs::Encoding;
use gatehouse_pgwire::escape_invalid_utf8;

mod exceptions;

/// The characters of an encoding that encoding_rs's tables read otherwise than PostgreSQL's
/// conversions (`•` for BIG5's 0xA145, `\` for SHIFT_JIS_2004's 0x815F, where encoding_rs reads
/// `‧` and `＼`), with the text PostgreSQL reads, by their bytes read as a big-endian number;
/// sorted. Generated from PostgreSQL's conversions: see `exceptions.rs`.
type Exceptions = &'static [(u32, &'static str)];

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
    /// A single-byte encoding encoding_rs reads as PostgreSQL does, but for its exceptions.
    Other(&'static Encoding, Exceptions),
    /// A multibyte encoding: read a character at a time, cut where PostgreSQL cuts them.
    Multibyte(&'static Encoding, Shape, Exceptions),
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
        let name = name.to_ascii_uppercase();
        let other = |encoding| ClientEncoding::Other(encoding, exceptions::of(&name));
        let multibyte = |encoding, shape| ClientEncoding::Multibyte(encoding, shape, exceptions::of(&name));
        match name.as_str() {
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
            ClientEncoding::Other(encoding, []) => encoding.decode_without_bom_handling(bytes).0,
            ClientEncoding::Other(encoding, exceptions) => {
                let mut text = String::with_capacity(bytes.len() * 2);
                for byte in bytes {
                    match exception(exceptions, std::slice::from_ref(byte)) {
                        Some(exception) => text.push_str(exception),
                        None => text.push_str(&encoding.decode_without_bom_handling(std::slice::from_ref(byte)).0),
                    }
                }
                Cow::Owned(text)
            }
            ClientEncoding::Multibyte(encoding, shape, exceptions) => {
                Cow::Owned(decode_multibyte(bytes, encoding, *shape, exceptions))
            }
        }
    }
}

/// What PostgreSQL reads `char` as, where encoding_rs reads it otherwise.
fn exception(exceptions: Exceptions, char: &[u8]) -> Option<&'static str> {
    let key = exception_key(char);
    exceptions.binary_search_by_key(&key, |&(bytes, _)| bytes).ok().map(|at| exceptions[at].1)
}

/// A character's bytes as [`Exceptions`] keys them: read as a big-endian number.
fn exception_key(char: &[u8]) -> u32 {
    char.iter().fold(0u32, |key, &b| key << 8 | u32::from(b))
}

/// `bytes` in a multibyte encoding, a character at a time, as [`Shape`] says.
fn decode_multibyte(bytes: &[u8], encoding: &'static Encoding, shape: Shape, exceptions: Exceptions) -> String {
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
        let decoded = match exception(exceptions, char) {
            Some(text) => Some(Cow::Borrowed(text)),
            None if shape.decodes(char) => encoding.decode_without_bom_handling_and_without_replacement(char),
            None => None,
        };
        match decoded {
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
        // PostgreSQL reads this character as a backslash, which escapes the quote after it.
        assert_eq!(ClientEncoding::from_name("SHIFT_JIS_2004").decode(b"E'\x81\x5f'x'"), "E'\\'x'");
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

    /// Every encoding read here other than UTF8, with the characters to try in it: a byte past
    /// ASCII for a single-byte one, every lead and second byte for a multibyte one (and the
    /// three-byte EUC_JP and four-byte GB18030 ranges PostgreSQL converts by table).
    fn characters_to_try() -> Vec<(&'static str, Vec<Vec<u8>>)> {
        let single = (0x80..=0xFFu8).map(|b| vec![b]).collect::<Vec<_>>();
        let pairs = |leads: std::ops::RangeInclusive<u8>, seconds: std::ops::RangeInclusive<u8>| {
            leads.flat_map(move |a| seconds.clone().map(move |b| vec![a, b])).collect::<Vec<_>>()
        };
        let euc = || [pairs(0xA1..=0xFE, 0xA1..=0xFE), pairs(0x8E..=0x8E, 0xA1..=0xDF)].concat();
        let double = || pairs(0x81..=0xFE, 0x40..=0xFE);
        let gb18030_bmp = (0x81..=0x84u8)
            .flat_map(|a| (0x30..=0x39u8).flat_map(move |b| (0x81..=0xFEu8).map(move |c| [a, b, c])))
            .flat_map(|[a, b, c]| (0x30..=0x39u8).map(move |d| vec![a, b, c, d]));
        let euc_jp_plane2 = pairs(0xA1..=0xFE, 0xA1..=0xFE).into_iter().map(|char| [&[0x8F][..], &char].concat());
        let mut all: Vec<(&'static str, Vec<Vec<u8>>)> = [
            "LATIN1",
            "LATIN2",
            "LATIN3",
            "LATIN4",
            "LATIN5",
            "LATIN6",
            "LATIN7",
            "LATIN8",
            "LATIN9",
            "LATIN10",
            "ISO_8859_5",
            "ISO_8859_6",
            "ISO_8859_7",
            "ISO_8859_8",
            "WIN866",
            "WIN874",
            "WIN1250",
            "WIN1251",
            "WIN1252",
            "WIN1253",
            "WIN1254",
            "WIN1255",
            "WIN1256",
            "WIN1257",
            "WIN1258",
            "KOI8R",
            "KOI8U",
        ]
        .into_iter()
        .map(|name| (name, single.clone()))
        .collect();
        all.extend([
            ("SJIS", [double(), pairs(0xA1..=0xDF, 0x20..=0x20)].concat()),
            ("SHIFT_JIS_2004", double()),
            ("BIG5", double()),
            ("GBK", double()),
            ("UHC", double()),
            ("GB18030", double().into_iter().chain(gb18030_bmp).collect()),
            ("EUC_JP", euc().into_iter().chain(euc_jp_plane2).collect()),
            ("EUC_JIS_2004", euc()),
            ("EUC_KR", euc()),
            ("EUC_CN", euc()),
        ]);
        all
    }

    /// Found by a review: encoding_rs's tables (the WHATWG's) differ from PostgreSQL's in some
    /// hundreds of characters, one of them SHIFT_JIS_2004's 0x815F, which PostgreSQL reads as a
    /// backslash and encoding_rs as `＼`: `E'\'password'` was read as a literal that ended
    /// early, and the password after it was left in clear. Every character is read here as
    /// PostgreSQL reads it, or written as its bytes when PostgreSQL reads it as no ASCII.
    ///
    /// Run with `GATEHOUSE_WRITE_EXCEPTIONS=1`, it writes the exceptions to `exceptions.rs`.
    #[tokio::test]
    async fn characters_decode_as_postgresql_decodes_them() {
        let url = "host=127.0.0.1 port=5432 user=postgres dbname=test";
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("PostgreSQL");
        tokio::spawn(connection);
        client
            .batch_execute(
                "CREATE FUNCTION pg_temp.decoded(b bytea, e name) RETURNS text LANGUAGE plpgsql AS \
                 $$BEGIN RETURN convert_from(b, e); EXCEPTION WHEN others THEN RETURN NULL; END$$",
            )
            .await
            .unwrap();
        let write = std::env::var_os("GATEHOUSE_WRITE_EXCEPTIONS").is_some();
        let (mut wrong, mut table) = (Vec::new(), String::new());
        for (name, characters) in characters_to_try() {
            let mut exceptions = Vec::new();
            for chunk in characters.chunks(50_000) {
                let rows = client
                    .query(
                        "SELECT pg_temp.decoded(b, $2) FROM unnest($1::bytea[]) WITH ORDINALITY u(b, n) ORDER BY n",
                        &[&chunk, &name],
                    )
                    .await
                    .unwrap();
                for (bytes, row) in chunk.iter().zip(rows) {
                    let Some(theirs) = row.get::<_, Option<String>>(0) else { continue };
                    let ours = match ClientEncoding::from_name(name) {
                        encoding if !write => encoding.decode(bytes).into_owned(),
                        ClientEncoding::Other(encoding, _) => {
                            ClientEncoding::Other(encoding, &[]).decode(bytes).into_owned()
                        }
                        ClientEncoding::Multibyte(encoding, shape, _) => {
                            ClientEncoding::Multibyte(encoding, shape, &[]).decode(bytes).into_owned()
                        }
                        encoding => encoding.decode(bytes).into_owned(),
                    };
                    let as_bytes: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
                    if ours == theirs || ours == as_bytes && !theirs.chars().any(|c| c.is_ascii()) {
                        continue;
                    }
                    wrong.push(format!("{name} {as_bytes}: PostgreSQL {theirs:?}, here {ours:?}"));
                    exceptions.push((exception_key(bytes), theirs));
                }
            }
            exceptions.sort();
            let exceptions: Vec<_> = exceptions.iter().map(|(key, text)| format!("(0x{key:x}, {text:?})")).collect();
            if !exceptions.is_empty() {
                let lines: Vec<_> = exceptions.chunks(6).map(|line| line.join(", ")).collect();
                table += &format!("    (\"{name}\", &[\n        {},\n    ]),\n", lines.join(",\n        "));
            }
        }
        if write {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/proxy/encoding/exceptions.rs");
            let file = std::fs::read_to_string(path).unwrap();
            let head = &file[..file.find("const EXCEPTIONS").unwrap()];
            std::fs::write(path, format!("{head}const EXCEPTIONS: &[(&str, super::Exceptions)] = &[\n{table}];\n"))
                .unwrap();
            return;
        }
        assert!(wrong.is_empty(), "{} characters read otherwise than PostgreSQL:\n{}", wrong.len(), wrong.join("\n"));
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
