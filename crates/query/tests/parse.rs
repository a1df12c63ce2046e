//! Data-driven tests of `parse`: each is one `check(query, expected)` or
//! `check_err(query, expected_message_part)` line.
//!
//! Expected forms are `Expr`'s `Display`, except that a bare-term expansion (an `Or` over every
//! `BARE_TERM_FIELDS` field with the same `Contains` or `Prefix`) is written `any~"x"` or
//! `any:"x"*`; `bare_term_expands_to_every_bare_field` checks the expansion itself once.

use gatehouse_query::{BARE_TERM_FIELDS, Expr, Field, FieldKind, MAX_CLAUSES, Op, QueryErrorKind, parse};

/// "now" for every test: 2024-01-01T00:00:00Z.
const NOW: i64 = 1_704_067_200_000_000;

#[track_caller]
fn check(query: &str, expected: &str) {
    match parse(query, NOW) {
        Ok(expr) => assert_eq!(render(&expr), expected, "query: {query}"),
        Err(err) => panic!("query {query:?} failed: {err}"),
    }
}

#[track_caller]
fn check_err(query: &str, expected: &str) {
    match parse(query, NOW) {
        Ok(expr) => panic!("query {query:?} parsed as {expr}, expected an error"),
        Err(err) => assert!(
            err.message.contains(expected),
            "query {query:?}: error {:?} does not contain {expected:?}",
            err.message
        ),
    }
}

#[track_caller]
fn check_kind(query: &str, kind: QueryErrorKind) {
    let err = parse(query, NOW).expect_err(query);
    assert_eq!(err.kind, kind, "query {query:?}: {err}");
}

fn render(expr: &Expr) -> String {
    match expr {
        Expr::All => "*".to_owned(),
        Expr::Not(inner) => format!("(not {})", render(inner)),
        Expr::Pred(predicate) => predicate.to_string(),
        Expr::And(children) => list("and", &children.iter().map(render).collect::<Vec<_>>()),
        Expr::Or(children) => {
            let mut parts = Vec::new();
            let mut rest = &children[..];
            while !rest.is_empty() {
                let n = BARE_TERM_FIELDS.len();
                match rest.get(..n).and_then(bare_term) {
                    Some(part) => {
                        parts.push(part);
                        rest = &rest[n..];
                    }
                    None => {
                        parts.push(render(&rest[0]));
                        rest = &rest[1..];
                    }
                }
            }
            if parts.len() == 1 { parts.remove(0) } else { list("or", &parts) }
        }
    }
}

fn list(head: &str, parts: &[String]) -> String {
    format!("({head} {})", parts.join(" "))
}

/// `any~"x"` if `group` is the expansion of a bare term.
fn bare_term(group: &[Expr]) -> Option<String> {
    let ops: Vec<&Op> = group
        .iter()
        .zip(BARE_TERM_FIELDS)
        .map(|(expr, field)| match expr {
            Expr::Pred(p) if p.field == *field => Some(&p.op),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if ops.iter().any(|op| *op != ops[0]) {
        return None;
    }
    match ops[0] {
        Op::Contains(text) => Some(format!("any~{text:?}")),
        Op::Prefix(text) => Some(format!("any:{text:?}*")),
        _ => None,
    }
}

// The spec's syntax table, one test per row.

#[test]
fn syntax_term() {
    check("user.email:alice@example.com", r#"user.formal.user.email="alice@example.com""#);
    check("sidecar.id:sc-1", r#"sidecar.id="sc-1""#);
    check("user : alice", r#"user.username="alice""#);
}

#[test]
fn syntax_bare_term() {
    check("alice", r#"any~"alice""#);
    check("10.0.0.1", r#"any~"10.0.0.1""#);
    check("alice bob", r#"(and any~"alice" any~"bob")"#);
    check("-alice", r#"(not any~"alice")"#);
    check("NOT alice", r#"(not any~"alice")"#);
    check("alice*", r#"any:"alice"*"#);
    check(r#""prod db""#, r#"any~"prod db""#);
    check(r#""prod db"*"#, r#"any:"prod db"*"#);
    check(r#""AND""#, r#"any~"AND""#);
    check(r#""2001:db8::1""#, r#"any~"2001:db8::1""#);
}

#[test]
fn bare_term_expands_to_every_bare_field() {
    let expected = [
        r#"id~"alice""#,
        r#"user.username~"alice""#,
        r#"user.formal.user.email~"alice""#,
        r#"user.formal.user.name~"alice""#,
        r#"user.native.username~"alice""#,
        r#"resource.name~"alice""#,
        r#"connector.name~"alice""#,
        r#"network.client_ip_address~"alice""#,
    ];
    let expr = parse("alice", NOW).unwrap();
    assert_eq!(expr.to_string(), format!("(or {})", expected.join(" ")));
}

#[test]
fn syntax_phrase() {
    check(r#"resource.name:"prod db""#, r#"resource.name="prod db""#);
    check("resource.name:'prod db'", r#"resource.name="prod db""#);
    check(r#"resource:"say \"hi\"""#, r#"resource.name="say \"hi\"""#);
    check(r#"user:"""#, r#"user.username="""#);
}

#[test]
fn syntax_prefix() {
    check("user.email:alice*", r#"user.formal.user.email:"alice"*"#);
    check(r#"resource:"prod d"*"#, r#"resource.name:"prod d"*"#);
    check("group:eng*", r#"user.formal.user.groups:"eng"*"#);
    check("status:act*", r#"session_status:"act"*"#);
    check("status:ACT*", r#"session_status:"act"*"#);
}

#[test]
fn syntax_boolean() {
    check("a AND b", r#"(and any~"a" any~"b")"#);
    check("a OR b", r#"(or any~"a" any~"b")"#);
    check("NOT a", r#"(not any~"a")"#);
    check("-a", r#"(not any~"a")"#);
    check("+a", r#"any~"a""#);
    check("+a +b", r#"(and any~"a" any~"b")"#);
    check("(a OR b) AND c", r#"(and (or any~"a" any~"b") any~"c")"#);
    check("a b", r#"(and any~"a" any~"b")"#);
}

#[test]
fn syntax_range() {
    check(
        "start_time:[2024-01-01T00:00:00Z TO 2024-02-01T00:00:00Z}",
        "start_time:[2024-01-01T00:00:00Z TO 2024-02-01T00:00:00Z}",
    );
    check("duration:[1m TO 1h]", "duration:[1m TO 1h]");
    check("duration:{1m TO 1h}", "duration:{1m TO 1h}");
    check("duration:{1m TO 1h]", "duration:{1m TO 1h]");
    check("duration:[1m TO 1h}", "duration:[1m TO 1h}");
    check("duration:[1m TO *]", "duration:[1m TO *}");
    check("duration:[* TO 1h]", "duration:{* TO 1h]");
    check("duration:{* TO 1h}", "duration:{* TO 1h}");
    check("duration:[* TO *]", "duration:*");
}

#[test]
fn syntax_comparison() {
    check("duration:>30m", "duration:{30m TO *}");
    check("duration:>=30m", "duration:[30m TO *}");
    check("duration:<30m", "duration:{* TO 30m}");
    check("duration:<=30m", "duration:{* TO 30m]");
    check("duration: > 30m", "duration:{30m TO *}");
    check("start_time:>=now-24h", "start_time:[2023-12-31T00:00:00Z TO *}");
}

#[test]
fn syntax_set() {
    check("technology:IN [postgres mysql]", r#"resource.technology:IN ["postgres" "mysql"]"#);
    check(r#"resource:IN ["prod db" dev]"#, r#"resource.name:IN ["prod db" "dev"]"#);
    check("technology: IN [postgres]", r#"resource.technology:IN ["postgres"]"#);
    check("technology:IN []", "resource.technology:IN []");
    // Commas separate values too, as many write them.
    check("technology:IN [postgres, mysql]", r#"resource.technology:IN ["postgres" "mysql"]"#);
    check("technology:IN [postgres,mysql,]", r#"resource.technology:IN ["postgres" "mysql"]"#);
    // A comma quoted or escaped is the value's (a review found `IN ["Alice Smith,Bob Jones"]`
    // matching both).
    check(r#"user.name:IN ["Alice Smith,Bob Jones"]"#, r#"user.formal.user.name:IN ["Alice Smith,Bob Jones"]"#);
    check(r"resource:IN [a\,b, c]", r#"resource.name:IN ["a,b" "c"]"#);
    // Escaped as in a term; `*` and `~` are literal in a set, quoted or not.
    check(r"email:IN [alice\@example.com bob]", r#"user.formal.user.email:IN ["alice@example.com" "bob"]"#);
    check(r"native_user:IN [app\_rw]", r#"user.native.username:IN ["app_rw"]"#);
    check(r"user:IN [a\* DOMAIN\svc]", r#"user.username:IN ["a*" "DOMAIN\\svc"]"#);
    check(r#"resource:IN ["db*" "v~1" "a b"]"#, r#"resource.name:IN ["db*" "v~1" "a b"]"#);
}

#[test]
fn syntax_exists() {
    check("end_time:*", "end_time:*");
    check("end_time: *", "end_time:*");
    check("-end_time:*", "(not end_time:*)");
    check("group:*", "user.formal.user.groups:*");
}

#[test]
fn syntax_cidr() {
    check("client_ip:10.0.0.0/8", "network.client_ip_address:10.0.0.0/8");
    check("client_ip:10.1.2.3/8", "network.client_ip_address:10.0.0.0/8");
    check("client_ip:1.2.3.4/32", "network.client_ip_address:1.2.3.4/32");
    check("server_ip:0.0.0.0/0", "network.server_ip_address:0.0.0.0/0");
    check(r#"client_ip:"2001:db8::/32""#, "network.client_ip_address:2001:db8::/32");
    check(r"client_ip:2001\:db8\:\:/32", "network.client_ip_address:2001:db8::/32");
    // An IPv6 network keeps to its family: IPv4 addresses are stored in `::ffff:0:0/96`.
    check(r#"client_ip:"::/0""#, "(and network.client_ip_address:::/0 (not network.client_ip_address:0.0.0.0/0))");
    check(r#"client_ip:"::/8""#, "(and network.client_ip_address:::/8 (not network.client_ip_address:0.0.0.0/0))");
    check(
        r#"client_ip:"::fffe:0:0/95""#,
        "(and network.client_ip_address:::fffe:0:0/95 (not network.client_ip_address:0.0.0.0/0))",
    );
    check(r#"client_ip:"::/96""#, "network.client_ip_address:::/96");
    // IPv4-mapped networks are IPv4's, as the mapped addresses are.
    check(r#"client_ip:"::ffff:0:0/96""#, "network.client_ip_address:::ffff:0.0.0.0/96");
    check(r#"client_ip:"::ffff:10.0.0.0/104""#, "network.client_ip_address:::ffff:10.0.0.0/104");
}

#[test]
fn cidr_bounds_are_the_first_and_last_address() {
    let expr = parse("client_ip:10.0.0.0/8", NOW).unwrap();
    let Expr::Pred(predicate) = expr else { panic!("{expr}") };
    assert_eq!(predicate.op, Op::Cidr { first: "10.0.0.0".parse().unwrap(), last: "10.255.255.255".parse().unwrap() });
}

// Precedence and the mapping of the grammar's occur markers.

#[test]
fn precedence() {
    check("a OR b AND c", r#"(or any~"a" (and any~"b" any~"c"))"#);
    check("a AND b OR c", r#"(or (and any~"a" any~"b") any~"c")"#);
    check("a AND b OR c AND d", r#"(or (and any~"a" any~"b") (and any~"c" any~"d"))"#);
    check("a OR b OR c", r#"(or any~"a" any~"b" any~"c")"#);
    check("a AND b AND c", r#"(and any~"a" any~"b" any~"c")"#);
    check("a AND (b OR c)", r#"(and any~"a" (or any~"b" any~"c"))"#);
    check("(a AND (b AND c))", r#"(and any~"a" any~"b" any~"c")"#);
    check("((a))", r#"any~"a""#);
}

#[test]
fn juxtaposition_is_and_and_binds_tighter_than_or() {
    check("a b OR c", r#"(or (and any~"a" any~"b") any~"c")"#);
    check("a OR b c", r#"(or any~"a" (and any~"b" any~"c"))"#);
    check("a OR b c OR d", r#"(or any~"a" (and any~"b" any~"c") any~"d")"#);
    check("a b OR c d", r#"(or (and any~"a" any~"b") (and any~"c" any~"d"))"#);
    check("a AND b c", r#"(and any~"a" any~"b" any~"c")"#);
    check("a OR b -c", r#"(or any~"a" (and any~"b" (not any~"c")))"#);
    check("a (b OR c)", r#"(and any~"a" (or any~"b" any~"c"))"#);
    check(
        "user:(alice bob) OR user:carol",
        r#"(or (and user.username="alice" user.username="bob") user.username="carol")"#,
    );
}

#[test]
fn quoted_bounds_lose_their_quotes() {
    check(r#"client_ip:>"2001:db8::1""#, "network.client_ip_address:{2001:db8::1 TO *}");
    check(
        r#"client_ip:>"::1""#,
        "(and network.client_ip_address:{::1 TO *} (not network.client_ip_address:0.0.0.0/0))",
    );
    check(r#"duration:>="30m""#, "duration:[30m TO *}");
    check(r#"user.email:["x" TO *]"#, r#"user.formal.user.email:["x" TO *}"#);
}

#[test]
fn a_quoted_bound_is_the_whole_value() {
    // As the same value escaped reads, which the grammar keeps whole.
    for (quoted, escaped) in [
        (r#"user.name:>"Bob Jones""#, r"user.name:>Bob\ Jones"),
        (r#"user.name:>"Bob Jones" OR technology:redis"#, r"user.name:>Bob\ Jones OR technology:redis"),
        (r#"resource.name:<"orders db""#, r"resource.name:<orders\ db"),
        (r#"resource.name:<= 'orders db' -a"#, r"resource.name:<=orders\ db -a"),
        (r#"user.name:["Bob Jones" TO "Carol Garcia"]"#, r"user.name:[Bob\ Jones TO Carol\ Garcia]"),
        (r#"user.name:{"a b" TO *]"#, r"user.name:{a\ b TO *]"),
        (r#"(user.name:>"a b")"#, r"user.name:>a\ b"),
        (r#"start_time:>"2026-12-01 00:00:00Z""#, r"start_time:>2026-12-01\ 00:00:00Z"),
    ] {
        assert_eq!(parse(quoted, NOW), parse(escaped, NOW), "{quoted}");
    }
    check(r#"user.name:>"Bob Jones""#, r#"user.formal.user.name:{"Bob Jones" TO *}"#);
    check(r#"start_time:>"2026-12-01 00:00:00Z""#, "start_time:{2026-12-01T00:00:00Z TO *}");
    check(r#"user.name:["Bob Jones" TO "Carol Garcia"]"#, r#"user.formal.user.name:["Bob Jones" TO "Carol Garcia"]"#);
    // What would end the grammar's word, or be read as an escape, is the value's.
    check(r#"user.name:["a]b" TO "c}d)"]"#, r#"user.formal.user.name:["a]b" TO "c}d)"]"#);
    check(r#"user.name:>"a) b""#, r#"user.formal.user.name:{"a) b" TO *}"#);
    check(r#"user.name:>"a\"b\\c\*""#, r#"user.formal.user.name:{"a\"b\\c*" TO *}"#);
    check("user.name:>\"a\tb\"", r#"user.formal.user.name:{"a\tb" TO *}"#);
    // Out of quotes, an escaped punctuation mark is that mark, as in a term (a review found
    // `<=okta\|00u1` compared with the backslash in, and no error).
    for (escaped, plain) in [
        (r"user.formal.user.external_ids:<=okta\|00u1", r#"user.formal.user.external_ids:<="okta|00u1""#),
        (
            r"user.formal.user.external_ids:[okta\|1 TO okta\|2}",
            r#"user.formal.user.external_ids:["okta|1" TO "okta|2"}"#,
        ),
        (r"user.name:>a\@b", r#"user.name:>"a@b""#),
    ] {
        assert_eq!(parse(escaped, NOW), parse(plain, NOW), "{escaped}");
    }
    check(r"user:>DOMAIN\user", r#"user.username:{"DOMAIN\\user" TO *}"#);
    // Never a value with its quotes in: what follows the quote is refused.
    check_err(r#"user.name:>"Bob Jones"x"#, "syntax error at position 22: a quoted bound ends at its closing quote");
    check_err(r#"user.name:["a" TO "b"c]"#, "syntax error at position 21: a quoted bound");
    check_err(r#"user.name:["a TO b]"#, "syntax error at position 11: this quote is never closed");
    // Positions after a rewritten bound are still the text's.
    check_err(r#"user.name:>"a b c" x:("#, "syntax error at position 22");
}

#[test]
fn a_required_clause_makes_alternatives_optional_as_in_lucene() {
    check("+a OR b", r#"any~"a""#);
    check("a OR +b", r#"any~"b""#);
    check("+a OR +b", r#"(and any~"a" any~"b")"#);
}

#[test]
fn syntax_errors_point_into_the_text_as_written() {
    // Positions count characters of the query as sent, whatever `AND`s were written in.
    let error = parse("a b c:(", NOW).unwrap_err();
    assert!(error.to_string().contains("position"), "{error}");
}

#[test]
fn negation() {
    check("-a -b", r#"(and (not any~"a") (not any~"b"))"#);
    check("a -b", r#"(and any~"a" (not any~"b"))"#);
    check("a NOT b", r#"(and any~"a" (not any~"b"))"#);
    check("a AND NOT b", r#"(and any~"a" (not any~"b"))"#);
    check("a AND -b", r#"(and any~"a" (not any~"b"))"#);
    check("NOT a AND b", r#"(and (not any~"a") any~"b")"#);
    check("a OR NOT b", r#"(or any~"a" (not any~"b"))"#);
    check("a OR -b", r#"(or any~"a" (not any~"b"))"#);
    check("NOT NOT a", r#"any~"a""#);
    check("-(a OR b)", r#"(not (or any~"a" any~"b"))"#);
    check("NOT status:active", r#"(not session_status="active")"#);
    check(
        "user.email:alice@example.com -status:active",
        r#"(and user.formal.user.email="alice@example.com" (not session_status="active"))"#,
    );
}

#[test]
fn field_groups() {
    check("user:(alice OR bob)", r#"(or user.username="alice" user.username="bob")"#);
    check("user:(alice bob)", r#"(and user.username="alice" user.username="bob")"#);
    check("user:(alice -bob)", r#"(and user.username="alice" (not user.username="bob"))"#);
    check("duration:(>1m AND <1h)", "(and duration:{1m TO *} duration:{* TO 1h})");
    check("user:(*)", "user.username:*");
}

#[test]
fn empty_and_all() {
    check("", "*");
    check("   \t\n", "*");
    check("*", "*");
    check("(*)", "*");
    check("* AND user:a", r#"user.username="a""#);
    check("* OR user:a", "*");
    // Lucene's match-all.
    check("*:*", "*");
    check("(*:*)", "*");
    check("*:* user:a", r#"user.username="a""#);
    check("*:* OR user:a", "*");
}

#[test]
fn boosts_are_ignored() {
    check("user:alice^2", r#"user.username="alice""#);
    check("(a OR b)^3", r#"(or any~"a" any~"b")"#);
}

// Field names: every canonical name, alias, snake_case and camelCase spelling.

#[test]
fn canonical_names() {
    for field in Field::ALL {
        let query = format!("{}:*", field.name());
        check(&query, &format!("{}:*", field.name()));
    }
}

#[test]
fn aliases() {
    for (alias, canonical) in [
        ("session_id", "id"),
        ("status", "session_status"),
        ("time", "start_time"),
        ("client_ip", "network.client_ip_address"),
        ("server_ip", "network.server_ip_address"),
        ("sidecar", "sidecar.name"),
        ("user", "user.username"),
        ("user.id", "user.formal.user.id"),
        ("user.name", "user.formal.user.name"),
        ("user.email", "user.formal.user.email"),
        ("email", "user.formal.user.email"),
        ("group", "user.formal.user.groups"),
        ("end_user.email", "user.formal.end_user.email"),
        ("end_user.name", "user.formal.end_user.name"),
        ("end_user.id", "user.formal.end_user.id"),
        ("end_user.type", "user.formal.end_user.type"),
        ("end_user.groups", "user.formal.end_user.groups"),
        ("native_user", "user.native.username"),
        ("resource", "resource.name"),
        ("technology", "resource.technology"),
        ("protocol", "resource.technology"),
        ("connector", "connector.name"),
    ] {
        check(&format!("{alias}:*"), &format!("{canonical}:*"));
    }
}

#[test]
fn snake_case_names() {
    check("network_client_ip_address:*", "network.client_ip_address:*");
    check("resource_name:x", r#"resource.name="x""#);
    check("user_formal_user_email:x", r#"user.formal.user.email="x""#);
    check("user_formal_end_user_groups:x", r#"user.formal.end_user.groups="x""#);
    check("user_email:x", r#"user.formal.user.email="x""#);
    check("end_user_name:x", r#"user.formal.end_user.name="x""#);
}

#[test]
fn camel_case_names() {
    check("sessionStatus:active", r#"session_status="active""#);
    check("sessionId:abc", r#"id="abc""#);
    check("startTime:>now-1h", "start_time:{2023-12-31T23:00:00Z TO *}");
    check("endTime:*", "end_time:*");
    check("parentSessionId:*", "parent_session_id:*");
    check("network.clientIpAddress:1.2.3.4", "network.client_ip_address=1.2.3.4");
    check("network.serverIpAddress:1.2.3.4", "network.server_ip_address=1.2.3.4");
    check("clientIp:1.2.3.4", "network.client_ip_address=1.2.3.4");
    check("user.formal.user.externalIds:x", r#"user.formal.user.external_ids="x""#);
    check("user.formal.endUser.email:x", r#"user.formal.end_user.email="x""#);
    check("endUser.email:x", r#"user.formal.end_user.email="x""#);
    check("nativeUser:x", r#"user.native.username="x""#);
    check("resource.technology:postgres", r#"resource.technology="postgres""#);
}

#[test]
fn names_are_case_sensitive() {
    check_err("USER:alice", "unknown field `USER`");
    check_err("User:alice", "unknown field `User`");
    check_err("clientIP:1.2.3.4", "unknown field `clientIP`");
}

#[test]
fn field_kinds_and_many_valued() {
    assert_eq!(Field::UserEmail.kind(), FieldKind::Text);
    assert_eq!(Field::SessionStatus.kind(), FieldKind::Keyword);
    assert_eq!(Field::StartTime.kind(), FieldKind::Time);
    assert_eq!(Field::Duration.kind(), FieldKind::Duration);
    assert_eq!(Field::ServerIp.kind(), FieldKind::Ip);
    assert_eq!(Field::EndUserName.kind(), FieldKind::Text);
    assert_eq!(Field::EndUserId.kind(), FieldKind::Keyword);
    let many: Vec<_> = Field::ALL.iter().filter(|f| f.is_many_valued()).collect();
    assert_eq!(many, [&Field::UserGroups, &Field::UserExternalIds, &Field::EndUserGroups]);
    assert_eq!(Field::lookup("email"), Some(Field::UserEmail));
    assert_eq!(Field::lookup("nope"), None);
}

#[test]
fn many_valued_fields() {
    check("group:admins", r#"user.formal.user.groups="admins""#);
    check("user.formal.user.external_ids:okta-1", r#"user.formal.user.external_ids="okta-1""#);
    check("user.formal.end_user.groups:ops", r#"user.formal.end_user.groups="ops""#);
    check("group:IN [admins ops]", r#"user.formal.user.groups:IN ["admins" "ops"]"#);
}

// Values typed by field kind.

#[test]
fn keyword_and_text_values() {
    check("id:0192-abc", r#"id="0192-abc""#);
    check("user:Alice", r#"user.username="Alice""#);
    check("user.id:U-Dave", r#"user.formal.user.id="U-Dave""#);
    check("group:DBA", r#"user.formal.user.groups="DBA""#);
    check("user:-alice", r#"user.username="-alice""#);
    check("user:42", r#"user.username="42""#);
    check("user:AND", r#"user.username="AND""#);
    check("user:caf\u{e9}", "user.username=\"caf\u{e9}\"");
}

#[test]
fn session_status_values() {
    check("status:active", r#"session_status="active""#);
    check("status:completed", r#"session_status="completed""#);
    check("status:ACTIVE", r#"session_status="active""#);
    check("status:IN [active completed]", r#"session_status:IN ["active" "completed"]"#);
    check_err("status:running", "invalid value `running` for field `status`: expected one of `active`, `completed`");
    check_err("status:IN [active done]", "invalid value `done`");
}

#[test]
fn fixed_vocabularies_and_uuids_take_their_stored_lowercase() {
    check("technology:PostgreSQL", r#"resource.technology="postgresql""#);
    check("protocol:POSTGRES", r#"resource.technology="postgres""#);
    check("sidecar.technology:Multi", r#"sidecar.technology="multi""#);
    check("user.type:HUMAN", r#"user.type="human""#);
    check("user.formal.user.type:MACHINE", r#"user.formal.user.type="machine""#);
    check("end_user.type:Customer", r#"user.formal.end_user.type="customer""#);
    check("resource.type:AWS", r#"resource.type="aws""#);
    check("technology:POST*", r#"resource.technology:"post"*"#);
    check("technology:IN [Postgres MYSQL]", r#"resource.technology:IN ["postgres" "mysql"]"#);
    check("resource.type:[A TO Z]", r#"resource.type:["a" TO "z"]"#);
    let uuid = "0190C2A4-7B1E-7C3D-9A2B-1F2E3D4C5B6A";
    let lower = uuid.to_ascii_lowercase();
    check(&format!("id:{uuid}"), &format!("id={lower:?}"));
    check(&format!("session_id:IN [{uuid}]"), &format!("id:IN [{lower:?}]"));
    check(&format!("parent_session_id:{uuid}"), &format!("parent_session_id={lower:?}"));
    check("id:0190C2A4*", r#"id:"0190c2a4"*"#);
    // Ids that are not UUIDs may be any string, and keep their case.
    check("id:S07", r#"id="S07""#);
}

#[test]
fn time_values() {
    check(r#"start_time:"2024-01-01T00:00:00Z""#, "start_time=2024-01-01T00:00:00Z");
    check(r"start_time:2024-01-01T00\:00\:00Z", "start_time=2024-01-01T00:00:00Z");
    check("start_time:>=2024-06-01T12:30:00+02:00", "start_time:[2024-06-01T10:30:00Z TO *}");
    check("start_time:>=2024-06-01T12:30:00.5Z", "start_time:[2024-06-01T12:30:00.500Z TO *}");
    // A date is its whole day.
    check("start_time:2024-06-01", "start_time:[2024-06-01T00:00:00Z TO 2024-06-02T00:00:00Z}");
    check("start_time:<=2024-06-01", "start_time:{* TO 2024-06-02T00:00:00Z}");
    check("start_time:>2024-06-01", "start_time:[2024-06-02T00:00:00Z TO *}");
    check("start_time:[2024-12-31 TO 2024-12-31]", "start_time:[2024-12-31T00:00:00Z TO 2025-01-01T00:00:00Z}");
    check(
        "start_time:IN [2024-06-01 2024-06-03T10:00:00Z]",
        "(or start_time:IN [2024-06-03T10:00:00Z] start_time:[2024-06-01T00:00:00Z TO 2024-06-02T00:00:00Z})",
    );
    // Unquoted, as in a comparison: a `:` in a time's value is not a field's.
    check("start_time:2024-01-01T00:00:00Z", "start_time=2024-01-01T00:00:00Z");
    check("end_time:2024-06-01T12:30:00+02:00 OR a", r#"(or end_time=2024-06-01T10:30:00Z any~"a")"#);
    check("time:IN [2024-01-01T00:00:00Z now]", "start_time:IN [2024-01-01T00:00:00Z 2024-01-01T00:00:00Z]");
    check_err("start_time:2024-01-01T00:00:00", "invalid value `2024-01-01T00:00:00` for field `start_time`");
    check("time:now", "start_time=2024-01-01T00:00:00Z");
    check("end_time:<now-15m", "end_time:{* TO 2023-12-31T23:45:00Z}");
    check("end_time:<now-7d", "end_time:{* TO 2023-12-25T00:00:00Z}");
    check("end_time:<now+1h", "end_time:{* TO 2024-01-01T01:00:00Z}");
    check("start_time:[now-1d TO now]", "start_time:[2023-12-31T00:00:00Z TO 2024-01-01T00:00:00Z]");
    check("start_time:[2023-01-01 TO *]", "start_time:[2023-01-01T00:00:00Z TO *}");
    check("time:IN [now now-1h]", "start_time:IN [2024-01-01T00:00:00Z 2023-12-31T23:00:00Z]");
}

#[test]
fn bounds_finer_than_a_microsecond_compare_exactly() {
    // Stored times are whole microseconds: `>=` and `<` take the one above a finer bound,
    // `>` and `<=` the one below, and nothing stored equals it.
    check("start_time:>=2026-12-06T15:08:52.702869001Z", "start_time:[2026-12-06T15:08:52.702870Z TO *}");
    check("start_time:>2026-12-06T15:08:52.702869001Z", "start_time:{2026-12-06T15:08:52.702869Z TO *}");
    check("start_time:<2026-12-06T15:08:52.702869001Z", "start_time:{* TO 2026-12-06T15:08:52.702870Z}");
    check("start_time:<=2026-12-06T15:08:52.702869001Z", "start_time:{* TO 2026-12-06T15:08:52.702869Z]");
    check(
        "end_time:[2026-12-06T15:08:52.7028691Z TO 2026-12-06T15:09:54.0832459Z}",
        "end_time:[2026-12-06T15:08:52.702870Z TO 2026-12-06T15:09:54.083246Z}",
    );
    check(
        "end_time:{2026-12-06T15:08:52.7028691Z TO 2026-12-06T15:09:54.0832459Z]",
        "end_time:{2026-12-06T15:08:52.702869Z TO 2026-12-06T15:09:54.083245Z]",
    );
    check(r#"start_time:"2026-12-06T15:08:52.702869001Z""#, "start_time:IN []");
    check(r#"start_time:"2026-12-06T15:08:52.702869000Z""#, "start_time=2026-12-06T15:08:52.702869Z");
    check("start_time:>now-0.5us", "start_time:{2023-12-31T23:59:59.999999Z TO *}");
    check("start_time:>=now-0.5us", "start_time:[2024-01-01T00:00:00Z TO *}");
    check("duration:>=61.380376001s", "duration:[61380377us TO *}");
    check("duration:>61.380376001s", "duration:{61380376us TO *}");
    check("duration:<61.380376001s", "duration:{* TO 61380377us}");
    check("duration:<=61.380376001s", "duration:{* TO 61380376us]");
    check("duration:61.3803761s", "duration:IN []");
    check("duration:IN [1s 1.0000001s 2s]", "duration:IN [1s 2s]");
}

#[test]
fn duration_values() {
    check("duration:250ms", "duration=250ms");
    check("duration:30s", "duration=30s");
    check("duration:10m", "duration=10m");
    check("duration:2h", "duration=2h");
    check("duration:1d", "duration=1d");
    check("duration:1h30m", "duration=90m");
    check("duration:>=1500ms", "duration:[1500ms TO *}");
    check("duration:IN [1s 2s]", "duration:IN [1s 2s]");
}

#[test]
fn ip_values() {
    check("client_ip:10.0.0.1", "network.client_ip_address=10.0.0.1");
    check(r#"client_ip:"2001:db8::1""#, "network.client_ip_address=2001:db8::1");
    check(r"client_ip:2001\:db8\:\:1", "network.client_ip_address=2001:db8::1");
    check("client_ip:'::1'", "network.client_ip_address=::1");
    check("client_ip:[10.0.0.1 TO 10.0.0.9]", "network.client_ip_address:[10.0.0.1 TO 10.0.0.9]");
    check("client_ip:[::1 TO ::ff]", "network.client_ip_address:[::1 TO ::ff]");
    check(
        "client_ip:>=10.0.0.1",
        "(and network.client_ip_address:[10.0.0.1 TO *} network.client_ip_address:0.0.0.0/0)",
    );
    // An address range keeps to its family: IPv4 addresses are stored in `::ffff:0:0/96`.
    check(
        r#"client_ip:<"2001:db8::""#,
        "(and network.client_ip_address:{* TO 2001:db8::} (not network.client_ip_address:0.0.0.0/0))",
    );
    check("client_ip:[2001:db8:: TO 2001:db8::ff]", "network.client_ip_address:[2001:db8:: TO 2001:db8::ff]");
    check_err("client_ip:[10.0.0.1 TO ::1]", "runs from an IPv4 address to an IPv6 one");
    check(r#"server_ip:IN [10.0.0.1 "::1"]"#, "network.server_ip_address:IN [10.0.0.1 ::1]");
}

#[test]
fn string_ranges_on_keyword_and_text() {
    check("user:[a TO m}", r#"user.username:["a" TO "m"}"#);
    check("id:>abc", r#"id:{"abc" TO *}"#);
}

#[test]
fn hostile_values_stay_plain_strings() {
    check(r#"user:"x' OR 1=1 --""#, r#"user.username="x' OR 1=1 --""#);
    check(r#"user:"'; DROP TABLE sessions; --""#, r#"user.username="'; DROP TABLE sessions; --""#);
    check("resource:'a\"b'", r#"resource.name="a\"b""#);
    check(r#"user:"%_\\""#, r#"user.username="%_\\""#);
    check(r#""x' OR '1'='1""#, r#"any~"x' OR '1'='1""#);
    check("user:\"line\nbreak\"", r#"user.username="line\nbreak""#);
}

// Errors.

#[test]
fn syntax_errors_give_the_position() {
    check_err("user:", "syntax error at position 5: expected a value");
    check_err("(user:a", "syntax error at position 7: expected ')'");
    let range = "a range is written `[low TO high]`, with `*` for an open end";
    check_err("start_time:[2026-11-10T00:00:00Z TO]", &format!("syntax error at position 33: {range}"));
    check_err("duration:[1s 2s]", &format!("syntax error at position 13: {range}"));
    check_err("user:a)", "syntax error at position 6: unparsed end of query");
    check_err(r#"user:"abc"#, "syntax error at position 5: this quote is never closed");
    check_err(r#"--""#, "syntax error at position 2: this quote is never closed");
    check_err(r#"user:alice""#, "syntax error at position 10: a `\"` inside a value");
    check_err(r"\", r"syntax error at position 0: a `\` at the end escapes nothing");
    check_err(r"user:alice\", r"syntax error at position 10: a `\` at the end escapes nothing");
    check_err("OR technology:postgres", "syntax error at position 0: `OR` needs a term on each side");
    // Doubled operators name the one out of place.
    check_err("a OR OR b", "syntax error at position 5: `OR` needs a term on each side");
    check_err("a AND AND b", "syntax error at position 6: `AND` needs a term on each side");
    check_err("a NOT OR b", "syntax error at position 6: `OR` needs a term on each side");
    check_err("a || || b", "syntax error at position 5: `||` needs a term on each side");
    check_err("(OR a)", "syntax error at position 1: `OR` needs a term on each side");
    check_err("a OR (AND b)", "syntax error at position 6: `AND` needs a term on each side");
    check_err("(a OR) b", "syntax error at position 3: `OR` needs a term on each side");
    check_err("(a NOT)", "syntax error at position 3: `NOT` needs a term after it");
    check_err(r#""""#, "an empty quoted term");
    check_err("++", "`+` is not a term");
    check_err("!", "`!` is not a term");
    check_err(r#"user:a-"b c""#, "syntax error at position 7: a `\"` inside a value");
    // A quote inside a word is part of it.
    check("user:jean-'luc", r#"user.username="jean-'luc""#);
    check_err(
        "NOT",
        "syntax error at position 0: `NOT` needs something to join; to search for the word, quote it: \"NOT\"",
    );
    check_err("duration:[1m TO", "syntax error at position 15");
    check_err("client_ip:2001:db8::1", "syntax error at position 10: unexpected `:` in a value; quote it");
    check_err("user:a:b", "syntax error at position 5: unexpected `:` in a value; quote it");
    // Positions count characters, not bytes.
    check_err("é:", "syntax error at position 2");
    let err = parse("user:", NOW).unwrap_err();
    assert_eq!((err.kind, err.position), (QueryErrorKind::Syntax, Some(5)));
}

#[test]
fn a_nul_character_is_refused_where_it_is() {
    check_err("user:a\0b", "syntax error at position 6: a NUL character");
    check_err("\"\0\"", "syntax error at position 1: a NUL character");
}

#[test]
fn dangling_operators() {
    check_err("a AND", "syntax error at position 2: `AND` needs a term on each side");
    check_err("a b NOT", "syntax error at position 4: `NOT` needs a term after it");
    check_err("a OR OR b", "`OR` needs a term on each side");
    check_err("AND", "`AND` needs a term on each side");
    check_err("a || b", "write AND or OR");
    check_err("a && b", "write AND or OR");
    check_err("!technology:postgres", "syntax error at position 0: `!` is not an operator here; write NOT or `-`");
    check_err("a OR !status:active", "syntax error at position 5: `!` is not an operator here");
}

#[test]
fn two_signs_on_one_term_are_refused_not_searched_for() {
    for query in [
        "--alice",
        "-+alice",
        "+-alice",
        "++alice",
        "NOT -alice",
        "NOT +alice",
        "a NOT -technology:postgres",
        "-NOT technology:postgres",
        "- -technology:postgres",
    ] {
        check_err(query, "two operators on one term; write one");
    }
    check_err("x NOT -alice", "syntax error at position 6: two operators");
    // One sign, or a value that starts with one, quoted.
    check("-alice", r#"(not any~"alice")"#);
    check(r#"user:"-alice""#, r#"user.username="-alice""#);
    check(r#"NOT "-alice""#, r#"(not any~"-alice")"#);
}

#[test]
fn unknown_fields_get_suggestions() {
    check_err("usr:alice", "unknown field `usr`; did you mean `user`?");
    check_err("emial:x", "unknown field `emial`; did you mean `email`?");
    check_err("user.emial:x", "did you mean `user.email`?");
    check_err("clientip:1.2.3.4", "did you mean `client_ip`?");
    check_err("stat:active", "did you mean `status`?");
    check_err("network:x", "did you mean `network.client_ip_address` or `network.server_ip_address`?");
    check_err("network.client_ip:1.2.3.4", "did you mean `network.client_ip_address`?");
    check_err("USER:a", "did you mean `user`?");
    check_err(
        "user.formal.user.emails:a",
        "did you mean `user.formal.user.email`, `user.formal.end_user.email`, or `user.formal.user.groups`?",
    );
    check_err("user.nam:x", "did you mean `user.name`?");
    // Nothing close: the three closest names all the same.
    check_err("xyzzy:1", "unknown field `xyzzy`; did you mean `email`, `group`, or `id`?");
    check_err("nope:*", "unknown field `nope`");
    check_err("nope:[a TO b]", "unknown field `nope`");
    check_err("nope:IN [a]", "unknown field `nope`");
    check_err("nope:(a b)", "unknown field `nope`");
    check_kind("nope:x", QueryErrorKind::UnknownField);
}

#[test]
fn wrong_value_types() {
    check_err("duration:abc", "invalid value `abc` for field `duration`: expected a duration such as 250ms");
    check_err("duration:30", "expected a duration");
    check_err("duration:-5m", "expected a duration");
    check_err("duration:>abc", "invalid value `abc` for field `duration`");
    check_err("client_ip:not-an-ip", "invalid value `not-an-ip` for field `client_ip`: expected an IP address");
    check_err("client_ip:10.0.0.0/33", "invalid value `10.0.0.0/33`");
    check_err("client_ip:[10.0.0.0/8 TO *]", "a network such as 10.0.0.0/8 only works alone");
    check_err("client_ip:IN [10.0.0.0/8]", "only works alone");
    check_err("start_time:yesterday", "invalid value `yesterday` for field `start_time`: expected an RFC 3339 time");
    check_err("time:>yesterday", "for field `time`");
    check_err("start_time:now-99999999999d", "invalid value `now-99999999999d`");
    check_err("start_time:>now-99999999999999999999d", "expected an RFC 3339 time");
    check_err("duration:99999999999999d", "expected a duration");
    check_err("start_time:[now TO tomorrow]", "invalid value `tomorrow`");
    check_kind("duration:abc", QueryErrorKind::InvalidValue);
}

#[test]
fn operators_that_do_not_fit_the_field() {
    check_err(
        "duration:30*",
        "prefix search (`*`) does not apply to field `duration`, which holds durations; use a range such as `duration:>30m`",
    );
    check_err("start_time:2024*", "use a range such as `start_time:>=now-24h`");
    check_err("client_ip:10.0.*", "use a network such as `client_ip:10.0.0.0/8`");
    check_kind("client_ip:10.*", QueryErrorKind::InvalidValue);
}

#[test]
fn fieldless_ranges_and_sets() {
    check_err(">5", "a range needs a field, as in `duration:>30m`, and `>5` has none");
    check_err("[a TO b]", "`[a TO b]` has none");
    check_err("<script>alert(1)</script>", "`<script>alert` has none; quote it");
    check_err("IN [a b]", "a set needs a field, as in `technology:IN [postgres mysql]`, and `IN [a b]` has none");
}

#[test]
fn unsupported_lucene_features() {
    check_err("user:/al.ce/", "regular expressions");
    check_err(r#"resource:"prod db"~2"#, "fuzzy and proximity search");
    check_err("alice~1", "fuzzy and proximity search");
    check_err("user:alice~", "fuzzy and proximity search");
    check(r#"user:"alice~1""#, r#"user.username="alice~1""#);
    check("user:a~b", r#"user.username="a~b""#);
    // An escaped punctuation mark is that mark (a letter keeps its backslash).
    check(r"user:alice\*", r#"user.username="alice*""#);
    check(r"user:ali\**", r#"user.username:"ali*"*"#);
    check(r"user:alice\~1", r#"user.username="alice~1""#);
    check(r"user.email:alice.smith\@example.com", r#"user.formal.user.email="alice.smith@example.com""#);
    check(r"user:DOMAIN\user", r#"user.username="DOMAIN\\user""#);
    check(r"user:a\\", r#"user.username="a\\""#);
    check_err("user:alice**", "wildcards are only supported at the end");
    check_err("user:a*b", "wildcards are only supported at the end");
    check_err("user:*alice", "wildcards are only supported at the end");
    check_err("*alice", "wildcards are only supported at the end");
    check(r#"user:"a*b""#, r#"user.username="a*b""#);
    // Lucene's one-character wildcard, refused as the inner `*` is; escaped or quoted, a `?`.
    check_err("email:al?ce.smith@example.com", "the one-character wildcard `?` is not supported");
    check_err("user:alice?", "escape a literal `?` as `\\?`");
    check_err("al?ce", "the one-character wildcard `?`");
    check_kind("user:a?c", QueryErrorKind::Unsupported);
    check(r"email:al\?ce", r#"user.formal.user.email="al?ce""#);
    check(r#"email:"al?ce""#, r#"user.formal.user.email="al?ce""#);
    check(r"user:IN [a?]", r#"user.username:IN ["a?"]"#);
    check_kind("user:/x/", QueryErrorKind::Unsupported);
}

// Limits.

#[test]
fn length_limit() {
    let long = format!("user:{}", "a".repeat(4096));
    check_err(&long, "query is too long: 4101 bytes, the limit is 4096");
    let just_fits = format!("user:{}", "a".repeat(4096 - 5));
    assert!(parse(&just_fits, NOW).is_ok());
    check_kind(&long, QueryErrorKind::TooLarge);
}

#[test]
fn clause_limit() {
    // Distinct terms: the grammar drops repeated identical clauses.
    let terms = |n: usize, form: &str| -> Vec<String> { (0..n).map(|i| form.replace('N', &i.to_string())).collect() };
    let at_limit = terms(MAX_CLAUSES, "u:N").join(" OR ").replace("u:", "user:");
    assert!(parse(&at_limit, NOW).is_ok());
    let over = terms(MAX_CLAUSES + 1, "u:N").join(" ").replace("u:", "user:");
    check_err(&over, "query has too many clauses: the limit is 256");
    // A bare term counts once although it searches eight fields.
    let bare = terms(MAX_CLAUSES, "aN").join(" ");
    assert!(parse(&bare, NOW).is_ok());
    let bare_over = terms(MAX_CLAUSES + 1, "aN").join(" ");
    check_err(&bare_over, "too many clauses");
    // A set counts once per element.
    let set = format!("user:IN [{}]", terms(MAX_CLAUSES + 1, "aN").join(" "));
    check_err(&set, "too many clauses");
    // Clauses count as written, although the grammar keeps one of identical siblings.
    let repeated = |n: usize, clause: &str| vec![clause; n].join(" OR ");
    assert!(parse(&repeated(MAX_CLAUSES, "id:a"), NOW).is_ok());
    check_err(&repeated(MAX_CLAUSES + 1, "id:a"), "too many clauses");
    check_err(&repeated(400, "id:a"), "too many clauses");
    check_err(&repeated(MAX_CLAUSES + 1, "a"), "too many clauses");
    check_err(&repeated(MAX_CLAUSES / 2 + 1, "(a b)"), "too many clauses");
    check_err(&repeated(MAX_CLAUSES / 2 + 1, "user:IN [a b]"), "too many clauses");
}

#[test]
fn nesting_limit() {
    let ok = format!("{}user:a{}", "(".repeat(64), ")".repeat(64));
    check(&ok, r#"user.username="a""#);
    let deep = format!("{}user:a{}", "(".repeat(65), ")".repeat(65));
    check_err(&deep, "query is nested too deeply: the limit is 64 levels");
    check_err(&format!("{}a", "a:(".repeat(1000)), "nested too deeply");
    check_err(&format!("{}a", "NOT ".repeat(1000)), "nested too deeply");
    check_err(&format!("{}a", "-(".repeat(1000)), "nested too deeply");
    check(&format!("{}a", "NOT ".repeat(64)), r#"any~"a""#);
}

#[test]
fn whitespace_of_any_kind_separates_terms() {
    check("user:a\nstatus:active", r#"(and user.username="a" session_status="active")"#);
    check("user:a\tOR\r\nuser:b", r#"(or user.username="a" user.username="b")"#);
    check("user:a\u{a0}user:b", r#"(and user.username="a" user.username="b")"#);
    check("\n\t", "*");
    check_err("user:\n", "syntax error at position 6");
    check("user:o'brien\tstatus:active", r#"(and user.username="o'brien" session_status="active")"#);
}

/// A native role's name may hold any character PostgreSQL takes in a quoted name: a quoted
/// value is that name exactly, with its tab, line break or no-break space.
#[test]
fn a_quoted_value_keeps_its_whitespace() {
    check("user:\"a\tb\"\tstatus:active", r#"(and user.username="a\tb" session_status="active")"#);
    check("user:'a\u{a0}b'", r#"user.username="a\u{a0}b""#);
    check("user:\"a\\\"\nb\"\nuser:c", r#"(and user.username="a\"\nb" user.username="c")"#);
    check("user:(\"a\r\nb\" OR c)", r#"(or user.username="a\r\nb" user.username="c")"#);
}

#[test]
fn slash_limit() {
    check(r#"resource:"https://db.example.com""#, r#"resource.name="https://db.example.com""#);
    check("resource:a/b", r#"resource.name="a/b""#);
    check_err(&"/".repeat(40), "query has too many `//`: the limit is 16");
    check_err(&"a //".repeat(17), "too many `//`");
    check_kind(&"/".repeat(4096), QueryErrorKind::TooLarge);
}

#[test]
fn pathological_inputs_parse_quickly() {
    let inputs = [
        "ab\n".repeat(1365),
        "a\t".repeat(2048),
        "ab\u{a0}".repeat(1000),
        "/".repeat(4096),
        "//\n".repeat(1365),
        "/a\n".repeat(1365),
        "/x//x/".repeat(680),
        "(".repeat(64) + &"a ".repeat(1900),
        "a:[".repeat(1365),
        "\"".repeat(4096),
        "\"ab\n".repeat(1365),
        "a:\"".to_owned() + &"b\n".repeat(2040),
        "a:'".to_owned() + &"b\t".repeat(2040),
    ];
    for input in inputs {
        let start = std::time::Instant::now();
        let _ = parse(&input, NOW);
        // A generous bound for debug builds on a busy machine; the bad cases took seconds.
        let elapsed = start.elapsed();
        assert!(elapsed.as_millis() < 500, "{elapsed:?} for {:?}", &input[..8]);
    }
}

#[test]
fn error_messages_are_single_sentences() {
    for query in ["user:", "usr:x", "duration:abc", "user:/x/", "a AND", "[a TO b]"] {
        let err = parse(query, NOW).unwrap_err();
        assert!(!err.message.ends_with('.'), "{err}");
        assert_eq!(err.to_string(), err.message);
    }
}
