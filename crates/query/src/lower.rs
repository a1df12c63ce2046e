//! Lowering: the grammar's untyped `UserInputAst` to our typed `Expr`.
//!
//! This is where field names are resolved, values are typed by their field's kind, operators are
//! checked against the field, and the Lucene occur markers become `And`/`Or`/`Not`.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::Bound;

use gatehouse_core::time::FineMicros;
use tantivy_query_grammar::{Delimiter, Occur, UserInputAst, UserInputBound, UserInputLeaf, UserInputLiteral};

use crate::ast::{Expr, Op, Value};
use crate::error::{QueryError, QueryErrorKind};
use crate::field::{BARE_TERM_FIELDS, Field, FieldKind};
use crate::limits::{MAX_CLAUSES, MAX_NESTING, nesting_error, too_many_clauses};
use crate::value::{DURATION_FORMS, IP_FORMS, TIME_FORMS, parse_cidr, parse_day, parse_duration, parse_ip, parse_time};

/// The values `session_status` accepts.
const SESSION_STATUSES: &[&str] = &["active", "completed"];

/// How many suggestions an unknown field gets.
const SUGGESTIONS: usize = 3;

/// Lowers a parsed query; `now_us` resolves `now` in time values.
pub(crate) fn lower(ast: UserInputAst, now_us: i64) -> Result<Expr, QueryError> {
    Lowerer { now_us, clauses: 0 }.ast(ast, 0)
}

struct Lowerer {
    now_us: i64,
    /// Leaf clauses lowered so far, for `MAX_CLAUSES`.
    clauses: usize,
}

/// A value as given, before it is compared: a time or a duration may be finer than the
/// microsecond the store keeps.
enum Given {
    Value(Value),
    Time(FineMicros),
    Duration(FineMicros),
}

impl Given {
    /// The value, a time or duration taken to a whole microsecond by `round`.
    fn rounded(self, round: fn(FineMicros) -> i64) -> Value {
        match self {
            Given::Value(value) => value,
            Given::Time(at) => Value::Time(round(at)),
            Given::Duration(span) => Value::Duration(round(span)),
        }
    }

    /// The value a stored one must equal to match it; none equals a time or duration with a
    /// fraction of a microsecond.
    fn exact(self) -> Option<Value> {
        match self {
            Given::Value(value) => Some(value),
            Given::Time(at) => at.whole().map(Value::Time),
            Given::Duration(span) => span.whole().map(Value::Duration),
        }
    }
}

/// Which end of a range a bound is.
#[derive(Clone, Copy)]
enum Side {
    Lower,
    Upper,
}

impl Lowerer {
    fn ast(&mut self, ast: UserInputAst, depth: usize) -> Result<Expr, QueryError> {
        // `limits::check_text` already bounds the parser's depth; this guards our own recursion
        // should the grammar ever nest deeper than the text suggests.
        if depth > 4 * MAX_NESTING {
            return Err(nesting_error());
        }
        match ast {
            UserInputAst::Clause(clauses) => self.clause(clauses, depth),
            // Boosts only change scores, and sessions are filtered, not scored.
            UserInputAst::Boost(inner, _) => self.ast(*inner, depth + 1),
            UserInputAst::Leaf(leaf) => self.leaf(*leaf),
        }
    }

    /// One boolean clause list, read with Lucene's occur meanings: no marker or `+` (`AND`) is
    /// required, `-` (`NOT`) is excluded, and `?` (`OR`) marks alternatives, of which one
    /// must match unless a clause is required: then they are optional, which for a filter
    /// means they change nothing (`+a OR b` is `a`). Juxtaposition arrives as explicit `AND`
    /// (see `juxtapose`), which the grammar groups, so `a b OR c` is `?(+a +b) ?c`.
    fn clause(&mut self, clauses: Vec<(Option<Occur>, UserInputAst)>, depth: usize) -> Result<Expr, QueryError> {
        let mut parts = Vec::with_capacity(clauses.len());
        let mut alternatives = Vec::new();
        let mut required = false;
        for (occur, ast) in clauses {
            let expr = self.ast(ast, depth + 1)?;
            match occur {
                None | Some(Occur::Must) => {
                    required = true;
                    parts.push(expr);
                }
                Some(Occur::MustNot) => parts.push(Expr::not(expr)),
                Some(Occur::Should) => alternatives.push(expr),
            }
        }
        if !required && !alternatives.is_empty() {
            parts.insert(0, Expr::or(alternatives));
        }
        // An empty list (the empty query) is `All`; a list of only `NOT`s is `All AND NOT …`.
        Ok(Expr::and(parts))
    }

    fn leaf(&mut self, leaf: UserInputLeaf) -> Result<Expr, QueryError> {
        match leaf {
            UserInputLeaf::All => Ok(Expr::All),
            UserInputLeaf::Literal(literal) => self.literal(literal),
            UserInputLeaf::Range { field, lower, upper } => {
                let Some(name) = field else {
                    return Err(QueryError::syntax(format!(
                        "a range needs a field, as in `duration:>30m`, and `{}` has none; quote it to search for the text",
                        range_text(&lower, &upper)
                    )));
                };
                let field = resolve(&name)?;
                self.count(1)?;
                let lower = self.bound(field, &name, lower, Side::Lower)?;
                let upper = self.bound(field, &name, upper, Side::Upper)?;
                match (&lower, &upper) {
                    // Lucene's `[* TO *]` means "has a value".
                    (Bound::Unbounded, Bound::Unbounded) => Ok(Expr::pred(field, Op::Exists)),
                    _ if field.kind() == FieldKind::Ip => ip_range(field, &name, lower, upper),
                    _ => Ok(Expr::pred(field, Op::Range { lower, upper })),
                }
            }
            UserInputLeaf::Set { field, elements } => {
                let name = field.ok_or_else(|| {
                    QueryError::syntax(format!(
                        "a set needs a field, as in `technology:IN [postgres mysql]`, and `IN [{}]` has none",
                        elements.join(" ")
                    ))
                })?;
                let field = resolve(&name)?;
                // Spaces separate values in this syntax (and commas, made spaces in
                // `prepare`). Escaped as a term's value is (`alice\@example.com`). The grammar
                // drops a set value's quotes, so `*` and `~` stay literal here: `IN ["db*"]` is
                // not a prefix.
                let elements: Vec<String> = elements.iter().map(|element| unescaped(element)).collect();
                self.count(elements.len().max(1))?;
                // A date is its whole day, as in a term: one range each.
                let (days, values): (Vec<String>, Vec<String>) =
                    elements.into_iter().partition(|element| whole_day(field, element).is_some());
                let given = values
                    .into_iter()
                    .map(|element| self.value(field, &name, element))
                    .collect::<Result<Vec<_>, _>>()?;
                let values: Vec<Value> = given.into_iter().filter_map(Given::exact).collect();
                if days.is_empty() {
                    return Ok(Expr::pred(field, Op::In(values)));
                }
                let set = (!values.is_empty()).then(|| Expr::pred(field, Op::In(values)));
                let days = days.iter().filter_map(|day| whole_day(field, day)).map(|op| Expr::pred(field, op));
                Ok(Expr::or(set.into_iter().chain(days).collect()))
            }
            UserInputLeaf::Exists { field } => {
                let field = resolve(&field)?;
                self.count(1)?;
                Ok(Expr::pred(field, Op::Exists))
            }
            UserInputLeaf::Regex { .. } => Err(QueryError::unsupported(
                "regular expressions (`/…/`) are not supported; use a prefix such as `user:ali*`",
            )),
        }
    }

    fn literal(&mut self, literal: UserInputLiteral) -> Result<Expr, QueryError> {
        let UserInputLiteral { field_name, phrase, delimiter, slop, prefix } = literal;
        if slop > 0 {
            return Err(fuzzy_unsupported());
        }
        if delimiter == Delimiter::None {
            // The grammar reads an operator with nothing after it (`a AND`) as a search term.
            if field_name.is_none() && matches!(phrase.as_str(), "AND" | "OR" | "NOT") {
                return Err(QueryError::syntax(format!(
                    "`{phrase}` needs a term on each side; quote it to search for the word"
                )));
            }
            if field_name.is_none() && matches!(phrase.as_str(), "&&" | "||") {
                return Err(QueryError::syntax(format!("`{phrase}` is not an operator here; write AND or OR")));
            }
            // `++`, `!`: operators without a term, which the grammar takes for one.
            if field_name.is_none()
                && !phrase.is_empty()
                && phrase.chars().all(|c| matches!(c, '+' | '-' | '!' | '&' | '|'))
            {
                return Err(QueryError::syntax(format!(
                    "`{phrase}` is not a term; quote it to search for it, as in \"{phrase}\""
                )));
            }
        } else if field_name.is_none() && phrase.is_empty() {
            return Err(QueryError::syntax("an empty quoted term (`\"\"`) searches for nothing; remove it"));
        }
        let (phrase, prefix) = match delimiter {
            Delimiter::None => word(&phrase)?,
            _ => (phrase, prefix),
        };
        match field_name {
            None => self.bare(phrase, prefix),
            Some(name) => self.term(&name, phrase, prefix),
        }
    }

    /// A term without a field searches every `BARE_TERM_FIELDS` field; it counts as one clause.
    fn bare(&mut self, phrase: String, prefix: bool) -> Result<Expr, QueryError> {
        self.count(1)?;
        // A prefix is a range over the stored spelling (an upper-case start of a session id
        // matches); a substring search ignores case anyway.
        let op = |field: Field| {
            if prefix { Op::Prefix(field.stored_spelling(phrase.clone())) } else { Op::Contains(phrase.clone()) }
        };
        Ok(Expr::or(BARE_TERM_FIELDS.iter().map(|&field| Expr::pred(field, op(field))).collect()))
    }

    /// `field:value`, `field:"a phrase"`, `field:prefix*`, or `ip_field:network/len`.
    fn term(&mut self, name: &str, phrase: String, prefix: bool) -> Result<Expr, QueryError> {
        let field = resolve(name)?;
        self.count(1)?;
        let kind = field.kind();
        let op = if prefix {
            if !matches!(kind, FieldKind::Keyword | FieldKind::Text) {
                return Err(QueryError::new(
                    QueryErrorKind::InvalidValue,
                    format!(
                        "prefix search (`*`) does not apply to field `{name}`, which holds {}; {}",
                        kind_noun(kind),
                        kind_hint(kind, name)
                    ),
                ));
            }
            Op::Prefix(field.stored_spelling(phrase))
        } else if let Some(day) = whole_day(field, &phrase) {
            day
        } else if kind == FieldKind::Ip && phrase.contains('/') {
            let (first, last) =
                parse_cidr(&phrase).ok_or_else(|| QueryError::invalid_value(name, &phrase, IP_FORMS))?;
            return Ok(ip_network(field, first, last));
        } else {
            match self.value(field, name, phrase)?.exact() {
                Some(value) => Op::Eq(value),
                None => Op::In(vec![]),
            }
        };
        Ok(Expr::pred(field, op))
    }

    /// A range's bound, in whole microseconds for a time or duration given finer: the one
    /// above it for `>=` and `<`, the one below for `>` and `<=`, which select the same stored
    /// microseconds as the value given would.
    fn bound(&self, field: Field, name: &str, bound: UserInputBound, side: Side) -> Result<Bound<Value>, QueryError> {
        let (text, included) = match bound {
            UserInputBound::Inclusive(text) => (text, true),
            UserInputBound::Exclusive(text) => (text, false),
            UserInputBound::Unbounded => return Ok(Bound::Unbounded),
        };
        let text = unquote(text);
        if field.kind() == FieldKind::Time
            && let Some((day, next)) = parse_day(&text)
        {
            // A date is its whole day (UTC), as Lucene-family engines round one: `<=` and `]`
            // run through it, `>` and `{` start after it.
            return Ok(match (side, included) {
                (Side::Lower, true) => Bound::Included(Value::Time(day)),
                (Side::Lower, false) => Bound::Included(Value::Time(next)),
                (Side::Upper, true) => Bound::Excluded(Value::Time(next)),
                (Side::Upper, false) => Bound::Excluded(Value::Time(day)),
            });
        }
        let round = match (side, included) {
            (Side::Lower, true) | (Side::Upper, false) => FineMicros::ceil,
            (Side::Lower, false) | (Side::Upper, true) => FineMicros::floor,
        };
        let value = self.value(field, name, text)?.rounded(round);
        Ok(if included { Bound::Included(value) } else { Bound::Excluded(value) })
    }

    /// Types `text` by the field's kind. `name` is the field as the user wrote it, for messages.
    fn value(&self, field: Field, name: &str, text: String) -> Result<Given, QueryError> {
        let invalid = |expected: &str| QueryError::invalid_value(name, &text, expected);
        let value = match field.kind() {
            FieldKind::Keyword if field == Field::SessionStatus => {
                let status = field.stored_spelling(text.clone());
                if !SESSION_STATUSES.contains(&status.as_str()) {
                    return Err(invalid("one of `active`, `completed`"));
                }
                Value::Str(status)
            }
            FieldKind::Keyword => Value::Str(field.stored_spelling(text)),
            FieldKind::Text => Value::Str(text),
            FieldKind::Time => {
                return parse_time(&text, self.now_us).map(Given::Time).ok_or_else(|| invalid(TIME_FORMS));
            }
            FieldKind::Duration => {
                return parse_duration(&text).map(Given::Duration).ok_or_else(|| invalid(DURATION_FORMS));
            }
            FieldKind::Ip if text.contains('/') => {
                return Err(invalid(
                    "a single IP address here; a network such as 10.0.0.0/8 only works alone, \
                     as in `client_ip:10.0.0.0/8`",
                ));
            }
            FieldKind::Ip => parse_ip(&text).map(Value::Ip).ok_or_else(|| invalid(IP_FORMS))?,
        };
        Ok(Given::Value(value))
    }

    /// `limits::check_clauses` bounds the clauses as written; this bounds what lowering emits,
    /// whatever the grammar made of the text, should the two readings ever differ.
    fn count(&mut self, clauses: usize) -> Result<(), QueryError> {
        self.clauses = self.clauses.saturating_add(clauses);
        if self.clauses > MAX_CLAUSES {
            return Err(too_many_clauses());
        }
        Ok(())
    }
}

/// A range of addresses keeps to the family of its ends: `client_ip:>10.0.0.1` is the IPv4
/// addresses above it. Stored, an IPv4 address is an IPv4-mapped IPv6 one (`::ffff:10.0.0.1`),
/// so every IPv6 address outside that block would sort into one end or the other.
fn ip_range(field: Field, name: &str, lower: Bound<Value>, upper: Bound<Value>) -> Result<Expr, QueryError> {
    let stored_bound = |bound: &Bound<Value>| match bound {
        Bound::Included(Value::Ip(address)) | Bound::Excluded(Value::Ip(address)) => Some(stored(*address)),
        _ => None,
    };
    let v4_block = stored_v4_block();
    let (low, high) = (stored_bound(&lower), stored_bound(&upper));
    let v4 = match (low.map(|a| v4_block.contains(&a)), high.map(|a| v4_block.contains(&a))) {
        (Some(low), Some(high)) if low != high => {
            return Err(QueryError::new(
                QueryErrorKind::InvalidValue,
                format!("a range of `{name}` runs from an IPv4 address to an IPv6 one; give both ends in one family"),
            ));
        }
        (Some(v4), _) | (None, Some(v4)) => v4,
        (None, None) => false,
    };
    // Whether the range reaches out of its family's addresses, as stored.
    let spills = match v4 {
        true => low.is_none() || high.is_none(),
        false => low.is_none_or(|low| low <= *v4_block.end()) && high.is_none_or(|high| high >= *v4_block.start()),
    };
    let range = Expr::pred(field, Op::Range { lower, upper });
    if !spills {
        return Ok(range);
    }
    Ok(match v4 {
        true => Expr::and(vec![range, every_v4(field)]),
        false => Expr::and(vec![range, Expr::not(every_v4(field))]),
    })
}

/// A network keeps to its family as a range does: an IPv6 network that holds the block IPv4
/// addresses are stored in (`::/0`, `::/8`) holds no IPv4 address. A network inside that block
/// (`::ffff:10.0.0.0/104`) is IPv4's, as the address `::ffff:10.0.0.1` is `10.0.0.1`: that is
/// how a dual-stack socket shows an IPv4 client, which the connector records as IPv4.
fn ip_network(field: Field, first: IpAddr, last: IpAddr) -> Expr {
    let network = Expr::pred(field, Op::Cidr { first, last });
    let v4_block = stored_v4_block();
    let (first, last) = (stored(first), stored(last));
    let is_v4 = v4_block.contains(&first) && v4_block.contains(&last);
    // Networks nest or are apart: one that reaches into the block and is not in it holds it.
    let holds_v4 = !is_v4 && first <= *v4_block.end() && last >= *v4_block.start();
    match holds_v4 {
        true => Expr::and(vec![network, Expr::not(every_v4(field))]),
        false => network,
    }
}

/// An address as stored: an IPv4 address as IPv4-mapped IPv6 (`::ffff:10.0.0.1`), so that
/// both families share one order.
fn stored(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The IPv4 addresses as stored: the block `::ffff:0:0/96`.
fn stored_v4_block() -> std::ops::RangeInclusive<u128> {
    stored(IpAddr::V4(Ipv4Addr::UNSPECIFIED))..=stored(IpAddr::V4(Ipv4Addr::BROADCAST))
}

/// Every IPv4 address: `0.0.0.0/0`.
fn every_v4(field: Field) -> Expr {
    let (first, last) = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V4(Ipv4Addr::BROADCAST));
    Expr::pred(field, Op::Cidr { first, last })
}

/// A range or comparison bound as written. Quoted (`>"2001:db8::1"`), the grammar keeps the
/// quotes there, where a term's value would have lost them, and the `\` escapes inside. Out of
/// quotes, an escaped punctuation mark is that mark, as in a term's value (`<=okta\|00u1` is
/// `okta|00u1`).
fn unquote(text: String) -> String {
    let quoted = text.len() >= 2 && ['"', '\''].into_iter().any(|q| text.starts_with(q) && text.ends_with(q));
    if !quoted {
        return unescaped(&text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text[1..text.len() - 1].chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap_or(c) } else { c });
    }
    out
}

fn resolve(name: &str) -> Result<Field, QueryError> {
    Field::lookup(name).ok_or_else(|| QueryError::unknown_field(name, &Field::suggest(name, SUGGESTIONS)))
}

fn fuzzy_unsupported() -> QueryError {
    QueryError::unsupported(
        "fuzzy and proximity search (`~N`) are not supported; \
         escape a literal `~` as `\\~`",
    )
}

/// An unquoted value as the grammar leaves it, read as Lucene reads it. The grammar removes
/// the `\` of the escapes it needs (`\ `, `\:`, `\(`) and keeps the others (`\*`, `\@`),
/// so that what a `\` escapes stays known here: an escaped punctuation mark is that mark,
/// literally (a letter keeps its `\`, as in `DOMAIN\user`). An unescaped `*` at the end is a
/// prefix search (the grammar leaves it in the value), anywhere else unsupported, and so are an
/// unescaped `?` (Lucene's one-character wildcard) and a fuzzy `~` or `~N` at the end. Returns
/// the value and whether it is a prefix. (The grammar has turned an escaped backslash into one
/// backslash already, so `CORP\\_svc` reads as `CORP_svc`: quote such a value.)
fn word(phrase: &str) -> Result<(String, bool), QueryError> {
    let mut value = String::with_capacity(phrase.len());
    let mut chars = phrase.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(unescape(c, &mut chars)),
            '*' if chars.peek().is_none() => return Ok((value, true)),
            '*' => {
                return Err(QueryError::unsupported(
                    "wildcards are only supported at the end of a value, as in `user:ali*`; \
                     escape a literal `*` as `\\*`",
                ));
            }
            // Lucene's one-character wildcard: taken literally, `al?ce` would find nothing
            // where a Lucene user expects `alice`.
            '?' => {
                return Err(QueryError::unsupported(
                    "the one-character wildcard `?` is not supported; search by prefix, as in \
                     `user:ali*`, or escape a literal `?` as `\\?`",
                ));
            }
            '~' if chars.clone().all(|d| d.is_ascii_digit()) => return Err(fuzzy_unsupported()),
            c => value.push(c),
        }
    }
    Ok((value, false))
}

/// `text` with each escaped punctuation mark read as that mark (see [`unescape`]).
fn unescaped(text: &str) -> String {
    let mut chars = text.chars().peekable();
    std::iter::from_fn(|| chars.next().map(|c| unescape(c, &mut chars))).collect()
}

/// `c`, or when it is a `\` before a punctuation mark, that mark (taken from `rest`): a letter
/// keeps its `\`, as in `DOMAIN\user`.
fn unescape(c: char, rest: &mut std::iter::Peekable<std::str::Chars<'_>>) -> char {
    match c {
        '\\' => rest.next_if(char::is_ascii_punctuation).unwrap_or(c),
        c => c,
    }
}

/// A bare date given to a time field, as the range of its whole day (UTC).
fn whole_day(field: Field, text: &str) -> Option<Op> {
    if field.kind() != FieldKind::Time {
        return None;
    }
    let (day, next) = parse_day(text)?;
    Some(Op::Range { lower: Bound::Included(Value::Time(day)), upper: Bound::Excluded(Value::Time(next)) })
}

fn kind_noun(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Keyword => "keywords",
        FieldKind::Text => "text",
        FieldKind::Time => "times",
        FieldKind::Duration => "durations",
        FieldKind::Ip => "IP addresses",
    }
}

fn kind_hint(kind: FieldKind, name: &str) -> String {
    match kind {
        FieldKind::Time => format!("use a range such as `{name}:>=now-24h`"),
        FieldKind::Duration => format!("use a range such as `{name}:>30m`"),
        FieldKind::Ip => format!("use a network such as `{name}:10.0.0.0/8`"),
        FieldKind::Keyword | FieldKind::Text => String::new(),
    }
}

/// A range as it was written, near enough to find it in the query: `<x`, `>=y`, `[a TO b}`.
fn range_text(lower: &UserInputBound, upper: &UserInputBound) -> String {
    match (lower, upper) {
        (UserInputBound::Unbounded, UserInputBound::Exclusive(v)) => format!("<{v}"),
        (UserInputBound::Unbounded, UserInputBound::Inclusive(v)) => format!("<={v}"),
        (UserInputBound::Exclusive(v), UserInputBound::Unbounded) => format!(">{v}"),
        (UserInputBound::Inclusive(v), UserInputBound::Unbounded) => format!(">={v}"),
        _ => {
            let side = |bound: &UserInputBound| match bound {
                UserInputBound::Inclusive(v) | UserInputBound::Exclusive(v) => v.clone(),
                UserInputBound::Unbounded => "*".to_owned(),
            };
            let open = if matches!(lower, UserInputBound::Exclusive(_)) { '{' } else { '[' };
            let close = if matches!(upper, UserInputBound::Exclusive(_)) { '}' } else { ']' };
            format!("{open}{} TO {}{close}", side(lower), side(upper))
        }
    }
}
