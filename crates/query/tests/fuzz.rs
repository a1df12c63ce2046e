//! Property tests: `parse` never panics, and what it returns keeps the `Expr` invariants.
//!
//! Inputs come from three sources: arbitrary Unicode strings, token soup built from the
//! language's own pieces (field names, operators, brackets, quotes, values), and well-formed
//! `field:value` terms whose result is known.

use std::ops::Bound;

use gatehouse_query::{Expr, Field, FieldKind, MAX_CLAUSES, Op, Value, parse};
use proptest::prelude::*;

const NOW: i64 = 1_704_067_200_000_000;

/// Pieces of the language, glued together at random by `token_soup`.
const TOKENS: &[&str] = &[
    "user",
    "user.email",
    "email",
    "status",
    "session_status",
    "sessionStatus",
    "start_time",
    "time",
    "end_time",
    "duration",
    "client_ip",
    "network.clientIpAddress",
    "group",
    "technology",
    "nope",
    "usr",
    ":",
    ": ",
    "*",
    "*:*",
    "?",
    "~",
    "~2",
    "^2",
    "-",
    "+",
    "!",
    "\\",
    "/",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    " ",
    "  ",
    "\t",
    "\n",
    "AND",
    "OR",
    "NOT",
    "IN",
    "TO",
    "&&",
    "||",
    ">",
    ">=",
    "<",
    "<=",
    "now",
    "now-24h",
    "now-99999999999d",
    "30m",
    "250ms",
    "1d",
    "abc",
    "alice",
    "active",
    "completed",
    "10.0.0.0/8",
    "10.0.0.1",
    "2001:db8::1",
    "2001\\:db8\\:\\:1",
    "::/0",
    "/33",
    "2024-01-01T00:00:00Z",
    "2024-01-01",
    "é",
    "日本",
    "\u{0}",
    "\u{200b}",
    "99999999999999999999",
    "-1",
    "1.5",
    "%",
    "_",
    "' OR 1=1 --",
    ";",
    "DROP",
    "..",
    ".",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|tokens| tokens.concat())
}

/// Keyword and text fields that take any string (`session_status` takes two).
fn string_field() -> impl Strategy<Value = Field> {
    let fields: Vec<Field> = Field::ALL
        .iter()
        .copied()
        .filter(|f| matches!(f.kind(), FieldKind::Keyword | FieldKind::Text))
        .filter(|f| keeps_spelling(*f))
        .collect();
    prop::sample::select(fields)
}

/// Whether `field` takes values exactly as typed. Fixed vocabularies (status, technology,
/// types) are lowercased and so are UUIDs and their starts: `Ab` is changed by both.
fn keeps_spelling(field: Field) -> bool {
    let parsed = parse(&format!("{}:Ab", field.name()), NOW);
    matches!(parsed, Ok(Expr::Pred(p)) if p.op == Op::Eq(Value::Str("Ab".into())))
}

/// Checks the shape `parse` promises: flattened, no stray `All`, values typed by field.
fn assert_invariants(expr: &Expr, root: bool) {
    match expr {
        Expr::All => assert!(root, "All below the root: {expr}"),
        Expr::Not(inner) => {
            assert!(!matches!(**inner, Expr::Not(_)), "double negation: {expr}");
            if !matches!(**inner, Expr::All) {
                assert_invariants(inner, false);
            }
        }
        Expr::And(children) | Expr::Or(children) => {
            assert!(children.len() >= 2, "short list: {expr}");
            for child in children {
                let same_kind = matches!((expr, child), (Expr::And(_), Expr::And(_)) | (Expr::Or(_), Expr::Or(_)));
                assert!(!same_kind, "not flattened: {expr}");
                assert_invariants(child, false);
            }
        }
        Expr::Pred(predicate) => {
            let kind = predicate.field.kind();
            let typed = |value: &Value| {
                let ok = match value {
                    Value::Str(_) => matches!(kind, FieldKind::Keyword | FieldKind::Text),
                    Value::Time(_) => kind == FieldKind::Time,
                    Value::Duration(us) => kind == FieldKind::Duration && *us >= 0,
                    Value::Ip(_) => kind == FieldKind::Ip,
                };
                assert!(ok, "{value:?} on {}", predicate.field);
            };
            match &predicate.op {
                Op::Eq(value) => typed(value),
                Op::In(values) => values.iter().for_each(typed),
                Op::Range { lower, upper } => {
                    assert!(!matches!((lower, upper), (Bound::Unbounded, Bound::Unbounded)), "open range: {expr}");
                    for bound in [lower, upper] {
                        if let Bound::Included(value) | Bound::Excluded(value) = bound {
                            typed(value);
                        }
                    }
                }
                Op::Cidr { first, last } => {
                    assert_eq!(kind, FieldKind::Ip);
                    assert_eq!(first.is_ipv4(), last.is_ipv4());
                    assert!(first <= last);
                }
                Op::Prefix(_) | Op::Contains(_) | Op::Exists => {}
            }
        }
    }
}

fn count_leaves(expr: &Expr) -> usize {
    match expr {
        Expr::All => 0,
        Expr::Not(inner) => count_leaves(inner),
        Expr::And(children) | Expr::Or(children) => children.iter().map(count_leaves).sum(),
        Expr::Pred(_) => 1,
    }
}

/// The whole contract for one input.
fn check_any(text: &str) {
    match parse(text, NOW) {
        Ok(expr) => {
            assert_invariants(&expr, true);
            // A bare term is eight leaves but one clause; a set is one leaf.
            assert!(count_leaves(&expr) <= 8 * MAX_CLAUSES, "{expr}");
            // Surrounding whitespace never changes the meaning. A trailing `\` would escape the
            // added space, so such texts are left out.
            if !text.ends_with('\\') {
                let padded = parse(&format!(" {text} "), NOW);
                assert_eq!(padded.as_ref(), Ok(&expr), "padding changed {text:?}");
            }
        }
        Err(err) => {
            assert!(!err.message.is_empty());
            if let Some(position) = err.position {
                assert!(position <= text.chars().count(), "{err}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_any(&text);
    }

    #[test]
    fn printable_text_never_panics(text in "[ -~]{0,80}") {
        check_any(&text);
    }

    #[test]
    fn token_soup_never_panics(text in token_soup()) {
        check_any(&text);
    }

    #[test]
    fn quoted_strings_are_taken_verbatim(
        field in string_field(),
        // NUL is refused in any query (`a_nul_character_is_refused_where_it_is`).
        value in "[^\"\\\\\\x00]{0,30}",
    ) {
        let expr = parse(&format!("{}:\"{value}\"", field.name()), NOW).unwrap();
        let Expr::Pred(predicate) = expr else { panic!("{expr}") };
        prop_assert_eq!(predicate.field, field);
        prop_assert_eq!(predicate.op, Op::Eq(Value::Str(value.clone())));
    }

    #[test]
    fn any_string_can_be_quoted(field in string_field(), value in any::<String>()) {
        // A backslash before `"` and `\` is all the quoting a client needs; whitespace of any
        // kind stays as it is.
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        prop_assume!(escaped.len() < 4000 && !value.contains('\0'));
        let expr = parse(&format!("{}:\"{escaped}\"", field.name()), NOW).unwrap();
        let Expr::Pred(predicate) = expr else { panic!("{expr}") };
        prop_assert_eq!(predicate.op, Op::Eq(Value::Str(value.clone())));
    }

    #[test]
    fn any_string_can_be_a_quoted_bound(field in string_field(), value in any::<String>()) {
        // The same quoting as a term's: a bound's spaces and brackets are the value's too.
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        prop_assume!(escaped.len() < 1000 && !value.contains('\0'));
        let name = field.name();
        let expr = parse(&format!("{name}:>\"{escaped}\""), NOW).unwrap();
        let Expr::Pred(predicate) = expr else { panic!("{expr}") };
        let given = || Value::Str(value.clone());
        prop_assert_eq!(predicate.op, Op::Range { lower: Bound::Excluded(given()), upper: Bound::Unbounded });
        let expr = parse(&format!("{name}:[\"{escaped}\" TO \"{escaped}\"}}"), NOW).unwrap();
        let Expr::Pred(predicate) = expr else { panic!("{expr}") };
        prop_assert_eq!(predicate.op, Op::Range { lower: Bound::Included(given()), upper: Bound::Excluded(given()) });
    }

    #[test]
    fn durations_are_exact(
        amount in 0i64..1_000_000,
        (unit, scale) in prop::sample::select(&[
            ("us", 1i64), ("ms", 1_000), ("s", 1_000_000), ("m", 60_000_000),
            ("h", 3_600_000_000), ("d", 86_400_000_000),
        ][..]),
    ) {
        let expr = parse(&format!("duration:>={amount}{unit}"), NOW).unwrap();
        let Expr::Pred(predicate) = expr else { panic!("{expr}") };
        let expected = Op::Range {
            lower: Bound::Included(Value::Duration(amount * scale)),
            upper: Bound::Unbounded,
        };
        prop_assert_eq!(predicate.op, expected);
    }

    #[test]
    fn ip_addresses_round_trip(address in any::<std::net::IpAddr>()) {
        let expr = parse(&format!("client_ip:\"{address}\""), NOW).unwrap();
        prop_assert_eq!(expr.to_string(), format!("network.client_ip_address={address}"));
    }

    #[test]
    fn now_offsets_never_overflow(now in any::<i64>(), days in any::<u64>()) {
        if let Ok(expr) = parse(&format!("start_time:>now-{days}d"), now) {
            assert_invariants(&expr, true);
        }
    }
}
