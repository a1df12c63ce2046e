//! The field table: every searchable session field, its canonical dotted name, its aliases and
//! its value type.
//!
//! Name resolution is exact and case-sensitive, with two derived spellings of every name in the
//! table: the snake_case form (`.` written as `_`, so `resource_name` is `resource.name`) and the
//! camelCase form of each segment (`sessionStatus`, `network.clientIpAddress`).

use std::fmt;

/// A searchable session field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Id,
    SessionStatus,
    StartTime,
    EndTime,
    Duration,
    ParentSessionId,
    ClientIp,
    ServerIp,
    SidecarId,
    SidecarName,
    SidecarTechnology,
    UserType,
    UserUsername,
    UserId,
    UserName,
    UserEmail,
    UserFormalType,
    UserGroups,
    UserExternalIds,
    EndUserId,
    EndUserName,
    EndUserEmail,
    EndUserType,
    EndUserGroups,
    NativeUsername,
    ResourceId,
    ResourceName,
    ResourceType,
    ResourceTechnology,
    ConnectorId,
    ConnectorName,
}

/// How a field's values are typed and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Exact string; compared case-sensitively. Keywords with a fixed lowercase vocabulary
    /// (`technology`, the types, the status) and UUID ids arrive from `parse` already in their
    /// stored spelling, so those match in any case the user types.
    Keyword,
    /// Free text; the store compares it case-insensitively.
    Text,
    /// A point in time, as microseconds since the Unix epoch.
    Time,
    /// A length of time, in microseconds.
    Duration,
    /// An IPv4 or IPv6 address.
    Ip,
}

/// The fields a bare term (one without `field:`) searches, in the order the spec lists them.
pub const BARE_TERM_FIELDS: &[Field] = &[
    Field::Id,
    Field::UserUsername,
    Field::UserEmail,
    Field::UserName,
    Field::NativeUsername,
    Field::ResourceName,
    Field::ConnectorName,
    Field::ClientIp,
];

/// How a keyword field's values are stored, which decides how a query's value is respelled to
/// match them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// As the source wrote it (names, groups, external ids): the value is kept as typed.
    AsWritten,
    /// A fixed vocabulary of lowercase words (`postgres`, `human`, `active`): lowercased.
    Vocabulary,
    /// A UUID, which the connector writes in lowercase: lowercased when the value is a UUID or
    /// the start of one, kept as typed otherwise (ids from elsewhere may be any string).
    Uuid,
}

/// One row of the field table.
struct Entry {
    field: Field,
    name: &'static str,
    kind: FieldKind,
    many_valued: bool,
    spelling: Spelling,
    aliases: &'static [&'static str],
}

const fn entry(field: Field, name: &'static str, kind: FieldKind, aliases: &'static [&'static str]) -> Entry {
    Entry { field, name, kind, many_valued: false, spelling: Spelling::AsWritten, aliases }
}

const fn many(field: Field, name: &'static str, aliases: &'static [&'static str]) -> Entry {
    Entry { field, name, kind: FieldKind::Keyword, many_valued: true, spelling: Spelling::AsWritten, aliases }
}

/// A keyword whose values come from a fixed lowercase vocabulary.
const fn vocab(field: Field, name: &'static str, aliases: &'static [&'static str]) -> Entry {
    Entry { field, name, kind: FieldKind::Keyword, many_valued: false, spelling: Spelling::Vocabulary, aliases }
}

/// A keyword holding a UUID.
const fn uuid(field: Field, name: &'static str, aliases: &'static [&'static str]) -> Entry {
    Entry { field, name, kind: FieldKind::Keyword, many_valued: false, spelling: Spelling::Uuid, aliases }
}

use FieldKind::{Duration as Dur, Ip, Keyword as Kw, Text, Time};

/// The table, in `Field` declaration order (`Field::entry` relies on that).
#[rustfmt::skip]
const TABLE: &[Entry] = &[
    uuid(Field::Id,                      "id",                                   &["session_id"]),
    vocab(Field::SessionStatus,          "session_status",                       &["status"]),
    entry(Field::StartTime,              "start_time",                     Time, &["time"]),
    entry(Field::EndTime,                "end_time",                       Time, &[]),
    entry(Field::Duration,               "duration",                       Dur,  &[]),
    uuid(Field::ParentSessionId,         "parent_session_id",                    &[]),
    entry(Field::ClientIp,               "network.client_ip_address",      Ip,   &["client_ip"]),
    entry(Field::ServerIp,               "network.server_ip_address",      Ip,   &["server_ip"]),
    entry(Field::SidecarId,              "sidecar.id",                     Kw,   &[]),
    entry(Field::SidecarName,            "sidecar.name",                   Kw,   &["sidecar"]),
    vocab(Field::SidecarTechnology,      "sidecar.technology",                   &[]),
    vocab(Field::UserType,               "user.type",                            &[]),
    entry(Field::UserUsername,           "user.username",                  Text, &["user"]),
    entry(Field::UserId,                 "user.formal.user.id",            Kw,   &["user.id"]),
    entry(Field::UserName,               "user.formal.user.name",          Text, &["user.name"]),
    entry(Field::UserEmail,              "user.formal.user.email",         Text, &["user.email", "email"]),
    vocab(Field::UserFormalType,         "user.formal.user.type",                &[]),
    many(Field::UserGroups,              "user.formal.user.groups",              &["group"]),
    many(Field::UserExternalIds,         "user.formal.user.external_ids",        &[]),
    entry(Field::EndUserId,              "user.formal.end_user.id",        Kw,   &["end_user.id"]),
    entry(Field::EndUserName,            "user.formal.end_user.name",      Text, &["end_user.name"]),
    entry(Field::EndUserEmail,           "user.formal.end_user.email",     Text, &["end_user.email"]),
    vocab(Field::EndUserType,            "user.formal.end_user.type",            &["end_user.type"]),
    many(Field::EndUserGroups,           "user.formal.end_user.groups",          &["end_user.groups"]),
    entry(Field::NativeUsername,         "user.native.username",           Text, &["native_user"]),
    entry(Field::ResourceId,             "resource.id",                    Kw,   &[]),
    entry(Field::ResourceName,           "resource.name",                  Text, &["resource"]),
    vocab(Field::ResourceType,           "resource.type",                        &[]),
    vocab(Field::ResourceTechnology,     "resource.technology",                  &["technology", "protocol"]),
    entry(Field::ConnectorId,            "connector.id",                   Kw,   &[]),
    entry(Field::ConnectorName,          "connector.name",                 Text, &["connector"]),
];

impl Field {
    /// Every field, in declaration order.
    pub const ALL: &'static [Field] = &[
        Field::Id,
        Field::SessionStatus,
        Field::StartTime,
        Field::EndTime,
        Field::Duration,
        Field::ParentSessionId,
        Field::ClientIp,
        Field::ServerIp,
        Field::SidecarId,
        Field::SidecarName,
        Field::SidecarTechnology,
        Field::UserType,
        Field::UserUsername,
        Field::UserId,
        Field::UserName,
        Field::UserEmail,
        Field::UserFormalType,
        Field::UserGroups,
        Field::UserExternalIds,
        Field::EndUserId,
        Field::EndUserName,
        Field::EndUserEmail,
        Field::EndUserType,
        Field::EndUserGroups,
        Field::NativeUsername,
        Field::ResourceId,
        Field::ResourceName,
        Field::ResourceType,
        Field::ResourceTechnology,
        Field::ConnectorId,
        Field::ConnectorName,
    ];

    fn entry(self) -> &'static Entry {
        // `TABLE` is in declaration order; a unit test checks that it stays so.
        &TABLE[self as usize]
    }

    /// How the field's values are typed.
    pub fn kind(self) -> FieldKind {
        self.entry().kind
    }

    /// `text`, a value of this field as the user typed it, in the spelling the store holds, so
    /// that `technology:POSTGRES` and an upper-case session UUID match. Done once here, so
    /// that every store compares plainly (and can use its indexes).
    pub fn stored_spelling(self, text: String) -> String {
        match self.entry().spelling {
            Spelling::AsWritten => text,
            Spelling::Vocabulary => text.to_ascii_lowercase(),
            Spelling::Uuid if is_uuid_or_start_of_one(&text) => text.to_ascii_lowercase(),
            Spelling::Uuid => text,
        }
    }

    /// Whether the field holds a list; a predicate matches if any element matches.
    pub fn is_many_valued(self) -> bool {
        self.entry().many_valued
    }

    /// The canonical dotted name, e.g. `user.formal.user.email`.
    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// The short aliases of the field, e.g. `email` and `user.email`.
    pub fn aliases(self) -> &'static [&'static str] {
        self.entry().aliases
    }

    /// Resolves a name as a user may write it: the dotted name, an alias, either in snake_case
    /// (`resource_name`) or camelCase (`sessionStatus`, `network.clientIpAddress`).
    /// Names are otherwise case-sensitive: `USER` is not `user`.
    pub fn lookup(name: &str) -> Option<Field> {
        lookup_exact(name).or_else(|| lookup_exact(&decamel(name)?))
    }

    /// Up to `limit` names closest to `name` by edit distance, at most one per field, best first.
    ///
    /// When some names are close enough to be a likely typo (`emial` for `email`), only those
    /// are returned, so that an obvious fix is not buried among unrelated names.
    pub fn suggest(name: &str, limit: usize) -> Vec<&'static str> {
        let wanted = decamel(name).unwrap_or_else(|| name.to_lowercase());
        // The best spelling of each field, so that `email` and `user.email` do not both take a slot.
        let mut best: Vec<(usize, &'static str)> = TABLE
            .iter()
            .filter_map(|entry| {
                std::iter::once(&entry.name)
                    .chain(entry.aliases)
                    .map(|spelling| {
                        // A name cut short at a word's end (`network.client_ip`) is that field.
                        let cut_short =
                            spelling.strip_prefix(wanted.as_str()).is_some_and(|rest| rest.starts_with('_'));
                        (if cut_short { 1 } else { strsim::levenshtein(&wanted, spelling) }, *spelling)
                    })
                    .min()
            })
            .collect();
        best.sort_unstable();
        // The start of dotted names (`network`), not a field in another case: the fields under it.
        let under = format!("{wanted}.");
        let fields_under: Vec<&'static str> =
            TABLE.iter().map(|entry| entry.name).filter(|n| n.starts_with(&under)).take(limit).collect();
        if !fields_under.is_empty() && best.first().is_none_or(|(distance, _)| *distance > 0) {
            return fields_under;
        }
        let typo_distance = (wanted.chars().count() / 3).max(2);
        let close = best.iter().take_while(|(distance, _)| *distance <= typo_distance).count();
        best.into_iter().take(if close > 0 { close.min(limit) } else { limit }).map(|(_, spelling)| spelling).collect()
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Finds the field one of whose table spellings equals `name`, reading `_` in `name` as either
/// `_` or `.` so that snake_case forms of dotted names match.
fn lookup_exact(name: &str) -> Option<Field> {
    let same = |spelling: &str| {
        spelling.len() == name.len()
            && spelling.bytes().zip(name.bytes()).all(|(s, n)| s == n || (s == b'.' && n == b'_'))
    };
    TABLE
        .iter()
        .find(|entry| same(entry.name) || entry.aliases.iter().any(|alias| same(alias)))
        .map(|entry| entry.field)
}

/// Whether `text` is a hyphenated UUID (`0190c2a4-7b1e-7c3d-9a2b-1f2e3d4c5b6a`) or the start
/// of one, in any case.
fn is_uuid_or_start_of_one(text: &str) -> bool {
    const HYPHENS: [usize; 4] = [8, 13, 18, 23];
    !text.is_empty()
        && text.len() <= 36
        && text.bytes().enumerate().all(|(i, b)| if HYPHENS.contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() })
}

/// Turns `clientIpAddress` into `client_ip_address`.
///
/// Returns `None` when there is nothing to convert or when the name is not camelCase: an
/// uppercase letter must follow a lowercase letter or a digit, so `User` and `IP` stay unknown
/// (names are case-sensitive).
fn decamel(name: &str) -> Option<String> {
    if !name.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev: Option<char> = None;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => {
                    out.push('_');
                    out.push(c.to_ascii_lowercase());
                }
                _ => return None,
            }
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_declaration_order() {
        assert_eq!(TABLE.len(), Field::ALL.len());
        for (i, field) in Field::ALL.iter().enumerate() {
            assert_eq!(*field as usize, i);
            assert_eq!(TABLE[i].field, *field);
        }
    }

    #[test]
    fn every_spelling_resolves_to_its_own_field() {
        for entry in TABLE {
            for spelling in std::iter::once(&entry.name).chain(entry.aliases) {
                assert_eq!(Field::lookup(spelling), Some(entry.field), "{spelling}");
                let snake = spelling.replace('.', "_");
                assert_eq!(Field::lookup(&snake), Some(entry.field), "{snake}");
            }
        }
    }

    #[test]
    fn every_camel_case_spelling_resolves_to_its_own_field() {
        let camel = |spelling: &str| {
            let mut out = String::new();
            let mut upper = false;
            for c in spelling.chars() {
                match c {
                    '_' => upper = true,
                    '.' => {
                        upper = false;
                        out.push(c);
                    }
                    _ if upper => {
                        out.push(c.to_ascii_uppercase());
                        upper = false;
                    }
                    _ => out.push(c),
                }
            }
            out
        };
        for entry in TABLE {
            for spelling in std::iter::once(&entry.name).chain(entry.aliases) {
                let spelling = camel(spelling);
                assert_eq!(Field::lookup(&spelling), Some(entry.field), "{spelling}");
            }
        }
        assert_eq!(camel("network.client_ip_address"), "network.clientIpAddress");
    }

    #[test]
    fn values_take_the_stored_spelling() {
        let spelled = |field: Field, text: &str| field.stored_spelling(text.to_owned());
        assert_eq!(spelled(Field::ResourceTechnology, "PostGres"), "postgres");
        assert_eq!(spelled(Field::EndUserType, "CUSTOMER"), "customer");
        let uuid = "0190C2A4-7B1E-7C3D-9A2B-1F2E3D4C5B6A";
        assert_eq!(spelled(Field::Id, uuid), uuid.to_ascii_lowercase());
        assert_eq!(spelled(Field::ParentSessionId, "0190C2A4-7B"), "0190c2a4-7b");
        // Not UUIDs, or fields whose values are free-form: as typed.
        assert_eq!(spelled(Field::Id, "S07"), "S07");
        assert_eq!(spelled(Field::Id, "0190C2A47B1E"), "0190C2A47B1E");
        assert_eq!(spelled(Field::Id, &format!("{uuid}0")), format!("{uuid}0"));
        assert_eq!(spelled(Field::UserId, uuid), uuid);
        assert_eq!(spelled(Field::UserGroups, "DBA"), "DBA");
        assert_eq!(spelled(Field::UserName, "Alice"), "Alice");
    }

    #[test]
    fn decamel_rules() {
        assert_eq!(decamel("sessionStatus").as_deref(), Some("session_status"));
        assert_eq!(decamel("network.clientIpAddress").as_deref(), Some("network.client_ip_address"));
        assert_eq!(decamel("session_status"), None);
        assert_eq!(decamel("User"), None);
        assert_eq!(decamel("clientIP"), None);
        assert_eq!(decamel("a.B"), None);
    }
}
