//! SQL text read as PostgreSQL's lexer reads it, as far as recording needs: where string
//! literals, quoted names and comments begin and end.
//!
//! The connector uses it to take the passwords a statement sets out of what it records
//! ([`redact_passwords`]), and to find what holds no SQL in a text too long to record whole
//! ([`filler`]); the store, to take values out of statement fingerprints.

use std::borrow::Cow;
use std::ops::Range;

/// What a password taken out of a recorded statement reads as.
pub const REDACTED: &str = "[redacted]";

/// How a plain `'...'` literal reads a backslash: what the session's
/// `standard_conforming_strings` says. An `E'...'` escapes and a `U&'...'` does not, whatever
/// it says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StandardStrings {
    /// `on`, PostgreSQL's default: a backslash is a character like any other (`'a\'` is `a\`).
    On,
    /// `off`: a backslash escapes, as in `E'...'` (`'a\'` goes on past its second quote).
    Off,
    /// Not known: a server that does not report it, or a setting that may have changed since
    /// it was reported (by a statement earlier in the same pipeline, whose change is reported
    /// at its end). Text is read both ways, and only what both readings take for a password
    /// is taken out: what one reading takes for a literal, the other may run as SQL.
    #[default]
    Unknown,
}

impl StandardStrings {
    /// The setting as a server reports it in a ParameterStatus: `on` or `off`.
    pub fn reported(value: &[u8]) -> Self {
        match value {
            v if v.eq_ignore_ascii_case(b"on") => Self::On,
            v if v.eq_ignore_ascii_case(b"off") => Self::Off,
            _ => Self::Unknown,
        }
    }

    /// How a plain literal may read: one way when the setting is known.
    fn readings(self) -> &'static [Quoting] {
        match self {
            Self::On => &[Quoting::Standard],
            Self::Off => &[Quoting::Escaping],
            Self::Unknown => &[Quoting::Standard, Quoting::Escaping],
        }
    }
}

/// `sql` with the passwords it holds replaced by [`REDACTED`], so that a transcript, which a
/// reader key may read, never shows one:
/// - the string a `PASSWORD` option sets: `CREATE ROLE` / `ALTER ROLE` / `ALTER USER`
///   (psql's `\password` sends the hash it computed, as good as a password to an offline
///   guesser), and the `password` of a user mapping's or a server's `OPTIONS (...)`;
/// - a password inside a connection string, as `CREATE SUBSCRIPTION ... CONNECTION` or
///   `dblink_connect` take them: `password=...` and the `user:password@` of a URI;
/// - a password built up in the statement, which a connection string (or a statement built in
///   a string) leaves to what follows it (`'...password=' || quote_literal('...')`,
///   `format('...password=%s', '...')`): the string literals after it that may hold it, whole.
///
/// `sql` is read as PostgreSQL read it, plain literals as `strings` says: read another way, a
/// literal could run past its end and hide the statements after it from the transcript.
/// Read both ways when that is not known, redacting only what both readings find.
///
/// Anything else is left exactly as sent: `WHERE password = 'x'` compares, it sets nothing
/// a database login uses. Borrowed when there was nothing to take out, as almost always.
pub fn redact_passwords(sql: &str, strings: StandardStrings) -> Cow<'_, str> {
    if !may_hold_password(sql.as_bytes()) {
        return Cow::Borrowed(sql);
    }
    let mut redactions: Vec<(Range<usize>, &'static str)> = Vec::new();
    for (nth, &plain) in strings.readings().iter().enumerate() {
        let mut found = Vec::new();
        passwords(sql.as_bytes(), 0..sql.len(), plain, 0, &mut found);
        redactions = if nth == 0 { found } else { common(redactions, found) };
    }
    if redactions.is_empty() {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for (range, replacement) in disjoint(redactions) {
        out.push_str(&sql[copied..range.start]);
        out.push_str(replacement);
        copied = range.end;
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

/// Redactions as written out: in order, none within another, one that overlaps the one before
/// it joined to it (replaced as the first of them says).
fn disjoint(mut redactions: Vec<(Range<usize>, &'static str)>) -> Vec<(Range<usize>, &'static str)> {
    redactions.sort_by_key(|(range, _)| (range.start, std::cmp::Reverse(range.end)));
    let mut out: Vec<(Range<usize>, &'static str)> = Vec::with_capacity(redactions.len());
    for (range, with) in redactions {
        match out.last_mut() {
            Some((last, _)) if range.start < last.end => last.end = last.end.max(range.end),
            _ => out.push((range, with)),
        }
    }
    out
}

/// What two readings' redactions have in common: their overlaps, each replaced as the
/// redaction it is whole of says, else as [`REDACTED`].
fn common(
    a: Vec<(Range<usize>, &'static str)>,
    b: Vec<(Range<usize>, &'static str)>,
) -> Vec<(Range<usize>, &'static str)> {
    let (a, b) = (disjoint(a), disjoint(b));
    let (mut i, mut j, mut both) = (0, 0, Vec::new());
    while let (Some((x, x_with)), Some((y, y_with))) = (a.get(i), b.get(j)) {
        let overlap = x.start.max(y.start)..x.end.min(y.end);
        if !overlap.is_empty() {
            let with = match () {
                _ if overlap == *x => *x_with,
                _ if overlap == *y => *y_with,
                _ => REDACTED,
            };
            both.push((overlap, with));
        }
        if x.end <= y.end {
            i += 1;
        } else {
            j += 1;
        }
    }
    both
}

/// How deep dollar-quoted bodies inside dollar-quoted bodies are read as SQL: deeper ones
/// (a hostile nesting, which could exhaust the stack) as strings only, which redacts more.
const NESTED_BODIES_READ: usize = 4;

/// Adds the passwords in `bytes[within]`, SQL `depth` dollar-quoted bodies deep, with what
/// replaces each, to `redactions`, reading a plain literal as `plain`.
fn passwords(
    bytes: &[u8],
    within: Range<usize>,
    plain: Quoting,
    depth: usize,
    redactions: &mut Vec<(Range<usize>, &'static str)>,
) {
    let mut after_password = false;
    // Literals still to come that may hold a password one before them left to them.
    let mut chain = Chain::default();
    // The calls (and parentheses) open at each token, and the word before it.
    let (mut calls, mut word): (Vec<Call>, Option<Range<usize>>) = (Vec::new(), None);
    for Token { span, kind } in Tokens::within(bytes, within, plain) {
        if matches!(kind, Kind::Space | Kind::Comment(_)) {
            continue;
        }
        let opens = bytes[span.start] == b'(' && matches!(kind, Kind::Other);
        if opens {
            calls.push(Call::named(word.take().map(|name| &bytes[name])));
        }
        if chain.left > 0 && !chain.follow(bytes, &span, &kind, &calls) {
            chain.left = 0;
        }
        let taken = std::mem::take(&mut chain.taken);
        if bytes[span.start] == b')' && matches!(kind, Kind::Other) {
            calls.pop();
        }
        word = match &kind {
            Kind::Word(name) => Some(name.clone()),
            _ => None,
        };
        match kind {
            // Adjacent literals are one string in SQL (`'a'` newline `'b'`, which the lexer
            // reads as one literal; without the newline, an error): the password stays in
            // force for the next. A literal a password was left to is redacted whole.
            Kind::Literal(_) if after_password => {
                redactions.push((span, "'[redacted]'"));
                continue;
            }
            Kind::Literal(_) if taken => redactions.push((span, "'[redacted]'")),
            // A dollar-quoted body is mostly code (a DO block's, a function's), where a
            // password is set as anywhere else: read as SQL, only its passwords are taken out,
            // not the statements after them to the end of the body. It may run under either
            // setting of standard_conforming_strings (a function's own `SET` clause, a
            // `set_config` before its `EXECUTE`): only what both readings find is taken out.
            Kind::Literal(text) if bytes[span.start] == b'$' && depth < NESTED_BODIES_READ => {
                chain = Chain::after(literal_passwords(bytes, text.clone(), true, redactions), calls.len());
                let mut readings = [Quoting::Standard, Quoting::Escaping].map(|quoting| {
                    let mut found = Vec::new();
                    passwords(bytes, text.clone(), quoting, depth + 1, &mut found);
                    found
                });
                redactions.extend(common(std::mem::take(&mut readings[0]), std::mem::take(&mut readings[1])));
            }
            Kind::Literal(text) => chain = Chain::after(literal_passwords(bytes, text, false, redactions), calls.len()),
            // `OPTIONS ("password" '...')` names the option as a quoted identifier; postgres_fdw
            // takes the passphrase of the client's key as `sslpassword`.
            Kind::QuotedName(name) | Kind::Word(name) => {
                let name = &bytes[name];
                after_password = name.eq_ignore_ascii_case(b"password") || name.eq_ignore_ascii_case(b"sslpassword");
                continue;
            }
            // In a body read as SQL, a connection string's quoted value: `password='a b'`.
            Kind::Other if after_password && depth > 0 && bytes[span.start] == b'=' => continue,
            _ => {}
        }
        after_password = false;
    }
}

/// A parenthesis open in a statement, by the name before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `concat`, `concat_ws`, `format`: their arguments are one string.
    Joins,
    /// `quote_literal`, `quote_nullable`: their argument is the string they make.
    Quotes,
    /// Any other function, a subquery, a grouping.
    Other,
}

impl Call {
    fn named(name: Option<&[u8]>) -> Self {
        let is = |known: &[u8]| name.is_some_and(|name| name.eq_ignore_ascii_case(known));
        match () {
            _ if is(b"concat") || is(b"concat_ws") || is(b"format") => Call::Joins,
            _ if is(b"quote_literal") || is(b"quote_nullable") => Call::Quotes,
            _ => Call::Other,
        }
    }
}

/// The literals a password's start leaves its value to ([`literal_passwords`]): only those
/// joined into the same string, by `||` or as later arguments of the `concat` or `format` it
/// is an argument of (directly or through `quote_literal`). Anything else ends it: another
/// select item, another function's argument, a subquery, the next statement may each be a
/// literal of SQL that a function runs, which redaction must not take out of the transcript.
#[derive(Debug, Default)]
struct Chain {
    /// How many literals are still to be taken.
    left: usize,
    /// How many calls were open at the literal that started it, or at the call it closed.
    depth: usize,
    /// The last token put an operand of the string next: `||`, a joining `,`, a `(`.
    operand: bool,
    /// The last token read was `:` (a cast's type name may follow).
    cast: bool,
    /// The literal just read is one to take.
    taken: bool,
}

impl Chain {
    fn after(left: usize, depth: usize) -> Self {
        Self { left, depth, ..Self::default() }
    }

    /// Reads the next token of the statement, with `calls` open (after its own `(`); whether
    /// the chain goes on.
    fn follow(&mut self, bytes: &[u8], span: &Range<usize>, kind: &Kind, calls: &[Call]) -> bool {
        let at = bytes[span.start];
        let cast = std::mem::take(&mut self.cast);
        match kind {
            Kind::Literal(_) if self.operand => {
                (self.operand, self.taken, self.left) = (false, true, self.left - 1);
                true
            }
            Kind::Word(_) | Kind::QuotedName(_) if cast => true,
            // A function's name: what it is shows at its `(`.
            Kind::Word(name) if bytes.get(skip_spaces(bytes, name.end)) == Some(&b'(') => self.operand,
            // A column, a variable: an operand of the string, with no literal in it.
            Kind::Word(_) | Kind::QuotedName(_) if self.operand => {
                self.operand = false;
                true
            }
            Kind::Other if at == b'|' => {
                self.operand = bytes.get(span.start + 1) == Some(&b'|') || bytes[..span.start].ends_with(b"|");
                self.operand
            }
            // A number, a parameter (`$1`): an operand with no literal in it.
            Kind::Other if at.is_ascii_digit() || at == b'.' => std::mem::take(&mut self.operand),
            Kind::Other if at == b'$' => self.operand,
            Kind::Other if at == b':' => {
                self.cast = true;
                !self.operand
            }
            Kind::Other if at == b',' => {
                self.operand = calls.len() >= self.depth && calls.last() == Some(&Call::Joins);
                self.operand
            }
            Kind::Other if at == b'(' => {
                self.operand && calls.len() > self.depth && matches!(calls.last(), Some(Call::Joins | Call::Quotes))
            }
            Kind::Other if at == b')' => {
                // `calls` still holds the call it closes: past the one the chain began in,
                // that call's value is the operand now.
                if calls.len() <= self.depth {
                    self.depth = calls.len().saturating_sub(1);
                }
                self.operand = false;
                true
            }
            _ => false,
        }
    }
}

/// Whether `bytes` hold the word `password` in any case, or a URI: most statements do not,
/// and are then not read further.
pub fn may_hold_password(bytes: &[u8]) -> bool {
    find_ignore_case(bytes, 0, b"password").is_some() || find(bytes, 0, b"://").is_some()
}

/// Adds the passwords inside a literal whose text is at `text` in `bytes` to `redactions`:
/// - the value of a connection string's `password=` or `sslpassword=`: to the next space that
///   no backslash escapes (or `&` in a URI's query), or, quoted, to the end of the literal;
/// - a `PASSWORD` followed by a quote, as statements built in a string (`EXECUTE '...'`) hold:
///   to the end of the literal;
/// - what follows the `:` of a URI's `user:password@`.
///
/// Returns how many string literals after it may hold a password it leaves to them: one when
/// it ends at a password's start (`'...password=' || quote_literal('...')`, `'ALTER ROLE r
/// PASSWORD ' || ...`), and when the password is a placeholder of `format()`
/// (`format('...password=%s', '...')`), as many as `format()` may take up to it.
///
/// A literal `read_as_sql` as well leaves the `PASSWORD`s of the statements it holds to that
/// reading, which knows where each ends.
fn literal_passwords(
    bytes: &[u8],
    text: Range<usize>,
    read_as_sql: bool,
    redactions: &mut Vec<(Range<usize>, &'static str)>,
) -> usize {
    let inside = &bytes[..text.end];
    let mut following = 0;
    let mut found = |value: Range<usize>| {
        let password = &inside[value.clone()];
        // Nothing yet (or only its opening quote): the password follows, as a format()
        // placeholder says it does.
        let left = match password {
            _ if value.end == text.end && password.iter().all(|&b| matches!(b, b'\'' | b'\\')) => 1,
            _ if holds_placeholder(password) => format_arguments(&inside[text.start..value.end]),
            _ => 0,
        };
        following = following.max(left);
        if !value.is_empty() {
            redactions.push((value, REDACTED));
        }
    };
    let uri_start = find(inside, text.start, b"://");
    let uri = uri_start.and_then(|scheme_end| {
        let authority = scheme_end + 3;
        // A space ends a URI (one holds none: it is percent-encoded), so that the SQL of a
        // literal a function runs (`EXECUTE '... ''postgres://h:x'' OR true'`) is never taken
        // for one's password; read as SQL, so does a quote, which ends the literal it is in.
        let ends = |b: &u8| matches!(b, b'/' | b'?') || b.is_ascii_whitespace() || read_as_sql && *b == b'\'';
        let end = inside[authority..].iter().position(ends).map_or(inside.len(), |n| authority + n);
        let Some(at) = inside[authority..end].iter().rposition(|&b| b == b'@') else {
            // A connection URI the literal ends with its `user:`: the password is a string
            // joined to it (`'postgresql://u:' || 'pw' || '@h'`).
            let leaves = end == inside.len() && inside[authority..end].ends_with(b":");
            return (leaves && is_postgres_scheme(&inside[text.start..scheme_end])).then_some(end..end);
        };
        let at = at + authority;
        let colon = inside[authority..at].iter().position(|&b| b == b':')? + authority;
        Some(colon + 1..at)
    });
    if let Some(uri) = uri {
        found(uri);
    }
    let mut from = text.start;
    while let Some(at) = find_ignore_case(inside, from, b"password") {
        from = at + 8;
        if !starts_word(inside, text.start, at) {
            continue;
        }
        let mut value = past_continuation(inside, skip_literal_spaces(inside, at + 8));
        match inside.get(value) {
            Some(b'=') => value = past_continuation(inside, skip_literal_spaces(inside, value + 1)),
            _ if read_as_sql => continue,
            // `password '...'` (a statement built in a string) holds a quote here already.
            Some(b'\'') => {}
            // In an `E''` body, `password \'...\'`.
            Some(b'\\') if inside[value..].starts_with(b"\\'") => {}
            // A statement built in a string that leaves its password to what follows:
            // `'... PASSWORD ' || ...`, `format('... PASSWORD %L', ...)`.
            _ if value > at + 8 => {
                let end = value_end(inside, value, false, read_as_sql);
                found(value..if holds_placeholder(&inside[value..end]) { end } else { value });
                continue;
            }
            _ => continue,
        }
        let quoted = inside.get(value) == Some(&b'\'') || inside[value..].starts_with(b"\\'");
        let end = match quoted {
            // Read as SQL, that quote ends a literal, and what follows is SQL: left to that
            // reading, which takes out a literal after `password =`.
            true if read_as_sql => continue,
            true => quoted_value_end(inside, value, text.end),
            false => value_end(inside, value, uri_start.is_some_and(|uri| uri < at), read_as_sql),
        };
        from = end;
        found(value..end);
    }
    following
}

/// Where the value starts that follows `at` across the ends of the parts of a literal continued
/// on the next line (`'...password='` newline `' secret'`, one string to PostgreSQL), and the
/// spaces before it, as libpq skips them; `at` when no part ends there.
fn past_continuation(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at) == Some(&b'\'') {
        match continued(bytes, at + 1) {
            Some(quote) => at = skip_spaces(bytes, quote + 1),
            None => break,
        }
    }
    at
}

/// Whether a URI's scheme, the end of `before`, is a PostgreSQL connection URI's.
fn is_postgres_scheme(before: &[u8]) -> bool {
    let ends_with = |scheme: &[u8]| {
        before.len() >= scheme.len() && before[before.len() - scheme.len()..].eq_ignore_ascii_case(scheme)
    };
    ends_with(b"postgresql") || ends_with(b"postgres")
}

/// Where a password quoted inside a literal ends, its quotes at `value`: inside a single-quoted
/// DO body, `password ''x''`, one string deeper `''''x''''`. Where that is not plain (a
/// backslash, which may escape a quote; no closing run), at the literal's end: more is taken
/// out, never less.
fn quoted_value_end(bytes: &[u8], value: usize, text_end: usize) -> usize {
    let quotes = |at: usize| bytes[at..text_end].iter().take_while(|&&b| b == b'\'').count();
    let opening = quotes(value);
    if !opening.is_power_of_two() {
        return text_end;
    }
    let mut at = value + opening;
    while at < text_end {
        match bytes[at] {
            b'\\' => break,
            b'\'' => {
                // Its own quotes come in pairs of openings, then one closes it, and what is
                // left over (less than an opening) closes the strings around it.
                let run = quotes(at);
                match run % (2 * opening) {
                    0 => at += run,
                    left if left >= opening => return at + run - (left - opening),
                    _ => break,
                }
            }
            _ => at += 1,
        }
    }
    text_end
}

/// Whether `text` holds a placeholder of `format()`: `%s`, `%I`, `%L`, `%2$s`, `%-10s`, ...
fn holds_placeholder(text: &[u8]) -> bool {
    memchr::memchr_iter(b'%', text)
        .any(|at| matches!(text.get(at + 1), Some(b'0'..=b'9' | b'-' | b'*' | b's' | b'I' | b'L')))
}

/// How many arguments `format()` may take for the placeholders in `spec`
/// (`%[position$][-][width|*|*position$]type`), counted high: an explicit position as that
/// many, any other argument (a value, a `*` width) as one more.
fn format_arguments(spec: &[u8]) -> usize {
    // The position a number at `i` and a `$` after it give, and where they end.
    let position = |i: usize| {
        let digits = spec[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        (digits > 0 && spec.get(i + digits) == Some(&b'$')).then(|| {
            let n = std::str::from_utf8(&spec[i..i + digits]).ok().and_then(|n| n.parse().ok());
            (n.unwrap_or(usize::MAX), i + digits + 1)
        })
    };
    // One argument, at `i`'s position if it gives one; and where it ends.
    let argument = |i: usize| position(i).unwrap_or((1, i));
    let (mut count, mut i) = (0usize, 0);
    while let Some(n) = memchr::memchr(b'%', &spec[i..]) {
        i += n + 1;
        if spec.get(i) == Some(&b'%') {
            i += 1;
            continue;
        }
        let (value, end) = argument(i);
        i = end + spec[end..].iter().take_while(|&&b| b == b'-').count();
        count = count.saturating_add(value);
        if spec.get(i) == Some(&b'*') {
            let (width, end) = argument(i + 1);
            (count, i) = (count.saturating_add(width), end);
        }
    }
    count
}

/// Whether the word at `at` starts a word of the text that begins at `text_start`: at its
/// start, after a character no name holds, after an escape (`\n`), or as `password` in
/// `sslpassword` and in `PGPASSWORD` (a shell command's environment, `COPY ... TO PROGRAM`).
fn starts_word(bytes: &[u8], text_start: usize, at: usize) -> bool {
    let before = |n: usize| at.checked_sub(n).filter(|&i| i >= text_start).map(|i| bytes[i]);
    let boundary = |b: Option<u8>| b.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_'));
    boundary(before(1))
        || (before(2) == Some(b'\\') && before(1).is_some_and(|b| b.is_ascii_alphabetic()))
        || (at >= 3 && bytes[at - 3..at].eq_ignore_ascii_case(b"ssl") && starts_word(bytes, text_start, at - 3))
        || (at >= 2 && bytes[at - 2..at].eq_ignore_ascii_case(b"pg") && starts_word(bytes, text_start, at - 2))
}

fn skip_spaces(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// Past the spaces at `at` inside a literal, as libpq skips them around a connection string's
/// `=`: written as they are, or as an escape string writes them (`\t`, `\n`, `\r`, `\f`, or
/// their codes, `\011`, `\x09`). In a standard string, those are a backslash and more: taken
/// for spaces there, a password is taken out where there was none, never left in.
fn skip_literal_spaces(bytes: &[u8], mut at: usize) -> usize {
    while let Some(len) = space_at(bytes, at) {
        at += len;
    }
    at
}

/// The length of the space written at `at` inside a literal (see [`skip_literal_spaces`]).
fn space_at(bytes: &[u8], at: usize) -> Option<usize> {
    let first = *bytes.get(at)?;
    if first != b'\\' {
        return first.is_ascii_whitespace().then_some(1);
    }
    let escape = bytes.get(at + 1..)?;
    let code = |digits: &[u8], radix| std::str::from_utf8(digits).ok().and_then(|d| u8::from_str_radix(d, radix).ok());
    let (byte, len) = match *escape.first()? {
        b't' => (b'\t', 1),
        b'n' => (b'\n', 1),
        b'r' => (b'\r', 1),
        b'f' => (0x0c, 1),
        b'x' => {
            let digits = escape[1..].iter().take(2).take_while(|b| b.is_ascii_hexdigit()).count();
            (code(&escape[1..1 + digits], 16)?, 1 + digits)
        }
        b'0'..=b'7' => {
            let digits = escape.iter().take(3).take_while(|b| matches!(b, b'0'..=b'7')).count();
            (code(&escape[..digits], 8)?, digits)
        }
        _ => return None,
    };
    // libpq's isspace: a vertical tab too.
    (byte.is_ascii_whitespace() || byte == 0x0b).then_some(1 + len)
}

/// The end of an unquoted connection-string value starting at `start`: the first space no
/// backslash escapes, or `&` in a URI's query; in the next part of a literal continued on the
/// next line (`'...password=ab'` newline `'cd'`), as PostgreSQL joins them. In a text also
/// read as SQL, at a quote too: it ends a literal there.
fn value_end(bytes: &[u8], start: usize, in_query: bool, read_as_sql: bool) -> usize {
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' if read_as_sql => return i,
            b'\\' => i += 2,
            b'\'' if let Some(quote) = continued(bytes, i + 1) => i = quote + 1,
            b if b.is_ascii_whitespace() => return i,
            b'&' if in_query => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Whether `sql` is a `COPY` that writes out (`COPY t TO '/file'`, `TO PROGRAM`, `TO STDOUT`)
/// rather than in (`COPY t FROM ...`): it starts with the word COPY, and of FROM and TO outside
/// parentheses (a column list, a query: `COPY (SELECT ... FROM t) TO ...`), TO comes first.
pub fn is_copy_to(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let (mut i, mut depth, mut first_word) = (0, 0usize, true);
    while i < bytes.len() {
        let next = bytes.get(i + 1).copied();
        i = match bytes[i] {
            b'-' if next == Some(b'-') => find(bytes, i, b"\n").map_or(bytes.len(), |n| n + 1),
            b'/' if next == Some(b'*') => skip_block_comment(bytes, i),
            quote @ (b'\'' | b'"') => skip_quoted(bytes, i, quote),
            b'$' if !first_word => skip_dollar_quoted(sql, i).unwrap_or(i + 1),
            b'(' => {
                depth += 1;
                i + 1
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i + 1
            }
            b';' => return false,
            b if is_ident_byte(b) => {
                let end = bytes[i..].iter().position(|&b| !is_ident_byte(b)).map_or(bytes.len(), |n| i + n);
                let word = &sql[i..end];
                if std::mem::take(&mut first_word) && !word.eq_ignore_ascii_case("copy") {
                    return false;
                }
                if depth == 0 && word.eq_ignore_ascii_case("to") {
                    return true;
                }
                if depth == 0 && word.eq_ignore_ascii_case("from") {
                    return false;
                }
                end
            }
            _ => i + 1,
        };
    }
    false
}

/// Whether `b` continues (or starts) a name: PostgreSQL takes letters beyond ASCII too.
fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Whether `b` may start a name, or a dollar quote's tag, where PostgreSQL reads one: an
/// ASCII letter, `_`, a byte past ASCII; and `\`, which a recorded text writes such a byte
/// as when it is not UTF-8 (`\x80`, on a `SQL_ASCII` database). Outside a literal a `\` is
/// PostgreSQL's syntax error otherwise, so nothing that runs is read differently for it.
fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 || b == b'\\'
}

/// Where `needle` next occurs in `haystack` at or after `from`.
///
/// Every statement the connector records is looked through for `://` and `password`: the
/// needles are short, so only where their first byte is is the rest compared (a `memmem`
/// searcher costs more to set up than such a search).
fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let rest = haystack.get(from..)?;
    memchr::memchr_iter(first, rest).find(|&at| rest[at..].starts_with(needle)).map(|n| from + n)
}

/// [`find`], in any ASCII case.
fn find_ignore_case(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let rest = haystack.get(from..)?;
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), rest)
        .find(|&at| rest.get(at..at + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle)))
        .map(|n| from + n)
}

/// Index just past the quoted run starting at `start` (doubled quotes escape).
pub fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// Index just past the dollar-quoted string (`$$...$$`, `$tag$...$tag$`) starting at `start`,
/// or `None` when the `$` there starts none (a `$1` parameter).
pub fn skip_dollar_quoted(sql: &str, start: usize) -> Option<usize> {
    let bytes = sql.as_bytes();
    let tag_end = dollar_tag_end(bytes, start)?;
    let tag = &bytes[start..tag_end];
    Some(find(bytes, tag_end, tag).map_or(bytes.len(), |k| k + tag.len()))
}

/// Index just past the opening tag of a dollar-quoted string whose `$` is at `start`, or
/// `None` when that `$` opens none (a `$1` parameter, a lone `$`). A tag holds what
/// PostgreSQL's may: ASCII letters, digits but first, `_`, and any byte past ASCII, which
/// [`is_word_start`] counts `\` among.
fn dollar_tag_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if bytes.get(i).is_some_and(|&b| is_word_start(b)) {
        i += 1;
        while bytes.get(i).is_some_and(|&b| is_word_start(b) || b.is_ascii_digit()) {
            i += 1;
        }
    }
    (bytes.get(i) == Some(&b'$')).then_some(i + 1)
}

/// Index just past the block comment starting at `start`: they nest in PostgreSQL.
pub fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    block_comment_end(bytes, start).0
}

/// [`skip_block_comment`], and whether the comment was closed (rather than cut off by the end).
fn block_comment_end(bytes: &[u8], start: usize) -> (usize, bool) {
    let (mut depth, mut i) = (0usize, start);
    // Only `*` and `/` matter: a comment of padding is skipped at memchr's pace.
    while let Some(n) = memchr::memchr2(b'*', b'/', &bytes[i..]) {
        i += n;
        match bytes.get(i..i + 2) {
            Some(b"/*") => {
                depth += 1;
                i += 2;
            }
            Some(b"*/") => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return (i, true);
                }
            }
            _ => i += 1,
        }
    }
    (bytes.len(), false)
}

/// The spans of `sql`, none empty nor shorter than `min_len` bytes, that hold no SQL:
/// the text of comments, of string literals (with their prefixes and quotes outside the span,
/// dollar quotes too), of quoted names, and runs of whitespace. In ascending order, disjoint,
/// each on ASCII bytes at both edges, so on character boundaries.
///
/// What lies outside them is every token PostgreSQL runs, so a statement hidden between two
/// long comments is never inside one: the connector cuts a long text's filler first. The text
/// is read as PostgreSQL's lexer reads it, `E'...'`, `B'...'`, `U&'...'` and literals continued
/// across a newline (`E'a'` newline `'\''`) included. Whether a backslash escapes in a plain
/// `'...'` depends on `standard_conforming_strings`, which a client may change: a span is
/// filler under both readings, or not at all. (A reading that took `'a\'` as unterminated
/// would otherwise find what follows inside a literal.)
///
/// A literal's text is data to the parser, but may be SQL a function runs (`EXECUTE`, a `DO`
/// block's body): what a caller cuts out of it, it must say it cut.
pub fn filler(sql: &str, min_len: usize) -> Vec<Range<usize>> {
    let bytes = sql.as_bytes();
    let min_len = min_len.max(1);
    let standard = filler_read(bytes, Quoting::Standard, min_len);
    if memchr::memchr(b'\\', bytes).is_none() {
        return standard;
    }
    let escaping = filler_read(bytes, Quoting::Escaping, min_len);
    let (mut a, mut b, mut both) = (0, 0, Vec::new());
    while let (Some(x), Some(y)) = (standard.get(a), escaping.get(b)) {
        let span = x.start.max(y.start)..x.end.min(y.end);
        if span.end >= span.start + min_len {
            both.push(span);
        }
        if x.end < y.end {
            a += 1;
        } else {
            b += 1;
        }
    }
    both
}

/// How a literal's text is read: PostgreSQL's lexer states for each kind.
#[derive(Debug, Clone, Copy)]
enum Quoting {
    /// `'...'` with `standard_conforming_strings` on, `U&'...'`: a doubled quote escapes.
    Standard,
    /// `E'...'`, and `'...'` with `standard_conforming_strings` off: a backslash escapes too.
    Escaping,
    /// `B'...'`, `X'...'`: nothing escapes, and the next quote ends it (another right after it
    /// starts another literal).
    Bits,
}

/// [`filler`] under one reading of a plain literal, `plain`.
fn filler_read(bytes: &[u8], plain: Quoting, min_len: usize) -> Vec<Range<usize>> {
    let text = |Token { span, kind }| match kind {
        Kind::Space => Some(span),
        Kind::Comment(text) | Kind::Literal(text) | Kind::QuotedName(text) => Some(text),
        Kind::Word(_) | Kind::Other => None,
    };
    Tokens::new(bytes, plain).filter_map(text).filter(|span| span.len() >= min_len).collect()
}

/// A token of SQL text, as PostgreSQL's lexer reads it.
#[derive(Debug)]
struct Token {
    span: Range<usize>,
    kind: Kind,
}

/// What a [`Token`] is, and where the text of one that has some lies.
#[derive(Debug)]
enum Kind {
    /// A run of whitespace.
    Space,
    /// A comment: its text, without its `--` or `/*` and `*/`.
    Comment(Range<usize>),
    /// A string literal of any form (`'...'`, `E'...'`, `$$...$$`, ...), continued across a
    /// newline or not: its text, between its opening and closing quotes.
    Literal(Range<usize>),
    /// A quoted name: its text, between its quotes.
    QuotedName(Range<usize>),
    /// A name or a keyword: the whole token.
    Word(Range<usize>),
    /// A number, a parameter, an operator, punctuation.
    Other,
}

/// The tokens of `bytes`, in order, with nothing between them. Each starts where PostgreSQL
/// starts one: a prefix (`E'`) or a dollar quote counts there, not inside a name.
struct Tokens<'a> {
    bytes: &'a [u8],
    /// How a plain `'...'` (or `N'...'`) reads.
    plain: Quoting,
    at: usize,
}

impl<'a> Tokens<'a> {
    fn new(bytes: &'a [u8], plain: Quoting) -> Self {
        Self { bytes, plain, at: 0 }
    }

    /// The tokens of `bytes[within]`, spanned as in `bytes`.
    fn within(bytes: &'a [u8], within: Range<usize>, plain: Quoting) -> Self {
        Self { bytes: &bytes[..within.end], plain, at: within.start }
    }
}

impl Iterator for Tokens<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        let (bytes, i) = (self.bytes, self.at);
        let b = *bytes.get(i)?;
        let (next, after) = (bytes.get(i + 1).copied(), bytes.get(i + 2).copied());
        // The literal whose opening quote is at `quote`.
        let literal = |quote: usize, quoting: Quoting| {
            let (end, closed) = literal_end(bytes, quote, quoting);
            (end, Kind::Literal(quote + 1..if closed { end - 1 } else { end }))
        };
        let (end, kind) = match b {
            b if is_space(b) => {
                (bytes[i..].iter().position(|&b| !is_space(b)).map_or(bytes.len(), |n| i + n), Kind::Space)
            }
            b'-' if next == Some(b'-') => {
                let end = line_comment_end(bytes, i + 2);
                (end, Kind::Comment(i + 2..end))
            }
            b'/' if next == Some(b'*') => {
                let (end, closed) = block_comment_end(bytes, i);
                (end, Kind::Comment(i + 2..if closed { end - 2 } else { end }))
            }
            b'\'' => literal(i, self.plain),
            b'e' | b'E' if next == Some(b'\'') => literal(i + 1, Quoting::Escaping),
            b'b' | b'B' | b'x' | b'X' if next == Some(b'\'') => literal(i + 1, Quoting::Bits),
            b'n' | b'N' if next == Some(b'\'') => literal(i + 1, self.plain),
            b'u' | b'U' if next == Some(b'&') && after == Some(b'\'') => literal(i + 2, Quoting::Standard),
            b'"' => quoted_name(bytes, i),
            b'u' | b'U' if next == Some(b'&') && after == Some(b'"') => quoted_name(bytes, i + 2),
            b'$' => match dollar_tag_end(bytes, i) {
                Some(tag_end) => {
                    let tag = &bytes[i..tag_end];
                    let close = find(bytes, tag_end, tag);
                    let end = close.map_or(bytes.len(), |close| close + tag.len());
                    (end, Kind::Literal(tag_end..close.unwrap_or(bytes.len())))
                }
                None => (i + 1, Kind::Other),
            },
            b'0'..=b'9' => (number_end(bytes, i), Kind::Other),
            b'.' if next.is_some_and(|b| b.is_ascii_digit()) => (number_end(bytes, i), Kind::Other),
            b if is_word_start(b) => {
                let word = |&b: &u8| is_word_start(b) || b.is_ascii_digit() || b == b'$';
                let end = bytes[i..].iter().position(|b| !word(b)).map_or(bytes.len(), |n| i + n);
                (end, Kind::Word(i..end))
            }
            _ => (i + 1, Kind::Other),
        };
        self.at = end;
        Some(Token { span: i..end, kind })
    }
}

/// PostgreSQL's whitespace: what separates tokens, and only that.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// Where the quoted name (`"..."`) whose quote is at `quote` ends, and its text.
fn quoted_name(bytes: &[u8], quote: usize) -> (usize, Kind) {
    let mut i = quote + 1;
    while let Some(n) = memchr::memchr(b'"', &bytes[i..]) {
        i += n;
        if bytes.get(i + 1) != Some(&b'"') {
            return (i + 1, Kind::QuotedName(quote + 1..i));
        }
        i += 2;
    }
    (bytes.len(), Kind::QuotedName(quote + 1..bytes.len()))
}

/// Index just past the literal whose opening quote is at `quote`, and whether a quote closed
/// it (rather than the end of the text). A literal goes on past a closing quote that
/// whitespace holding a newline separates from another quote, read as it began: PostgreSQL's
/// `E'a'` newline `'\''` is one string.
fn literal_end(bytes: &[u8], quote: usize, quoting: Quoting) -> (usize, bool) {
    let mut i = quote + 1;
    loop {
        let found = match quoting {
            Quoting::Escaping => memchr::memchr2(b'\'', b'\\', &bytes[i..]),
            Quoting::Standard | Quoting::Bits => memchr::memchr(b'\'', &bytes[i..]),
        };
        let Some(n) = found else { return (bytes.len(), false) };
        i += n;
        if bytes[i] == b'\\' {
            i = (i + 2).min(bytes.len());
        } else if !matches!(quoting, Quoting::Bits) && bytes.get(i + 1) == Some(&b'\'') {
            i += 2;
        } else if let Some(next) = continued(bytes, i + 1) {
            i = next + 1;
        } else {
            return (i + 1, true);
        }
    }
}

/// The quote that continues a literal closed just before `i`: one after whitespace (and `--`
/// comments) holding a newline, as PostgreSQL's `{quotecontinue}` reads it.
fn continued(bytes: &[u8], mut i: usize) -> Option<usize> {
    let mut newline = false;
    loop {
        match *bytes.get(i)? {
            b'\n' | b'\r' => {
                newline = true;
                i += 1;
            }
            b if is_space(b) => i += 1,
            // Ends at its newline, which must come: one at the end continues nothing.
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = line_comment_end(bytes, i + 2),
            b'\'' if newline => return Some(i),
            _ => return None,
        }
    }
}

/// Index just past the number starting at `start` (a digit, or a `.` before one), as
/// PostgreSQL up to 14 reads one: `1`, `1.5`, `.5`, `1e5`, `1.5e-3`; `1..` is `1`, and an `e`
/// no digit follows is the next token's (`1e'x'` is `1` then `e'x'`). Later versions refuse a
/// name right after a number (`trailing junk`), so they run nothing this reads otherwise.
fn number_end(bytes: &[u8], start: usize) -> usize {
    let digits = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1) != Some(&b'.') {
        i = digits(i + 1);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
        if bytes.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i = digits(i + 1 + sign);
        }
    }
    i
}

/// The first keyword of `sql`, past whitespace, comments and opening parentheses: the command
/// a statement runs (`WITH` for one with a WITH clause). Empty when something else comes first.
pub fn first_keyword(sql: &str) -> &str {
    let bytes = sql.as_bytes();
    for Token { span, kind } in Tokens::new(bytes, Quoting::Standard) {
        match kind {
            Kind::Space | Kind::Comment(_) => {}
            Kind::Other if bytes[span.start] == b'(' => {}
            Kind::Word(word) => return &sql[word],
            _ => break,
        }
    }
    ""
}

/// The names and keywords of `sql`, in order: what lies in string literals, quoted names and
/// comments is not read as words.
pub fn words(sql: &str) -> impl Iterator<Item = &str> {
    Tokens::new(sql.as_bytes(), Quoting::Standard).filter_map(|token| match token.kind {
        Kind::Word(word) => Some(&sql[word]),
        _ => None,
    })
}

/// Index of the newline that ends the `--` comment whose text starts at `from`, or the end:
/// PostgreSQL ends one at `\r` as well as at `\n`.
pub fn line_comment_end(bytes: &[u8], from: usize) -> usize {
    memchr::memchr2(b'\n', b'\r', &bytes[from..]).map_or(bytes.len(), |n| from + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_keyword_and_the_words_are_read_past_comments_and_strings() {
        assert_eq!(first_keyword("-- c\n /* a /* nested */ b */ ( WITH x"), "WITH");
        // PostgreSQL ends a line comment at a carriage return too.
        assert_eq!(first_keyword("-- note\rdelete from t"), "delete");
        assert_eq!(first_keyword("'select'"), "");
        assert_eq!(first_keyword("  "), "");
        let words: Vec<&str> = words("rollback; select 'to x' /* to */ \"to\" -- to\nto").collect();
        assert_eq!(words, ["rollback", "select", "to"]);
    }

    #[test]
    fn a_copy_to_is_told_from_a_copy_from() {
        for sql in [
            "copy t to '/tmp/x'",
            "COPY (select a from t where b = 'from') TO PROGRAM 'gzip > /tmp/x'",
            "/* from */ copy t (\"from\", b) -- from\n to stdout",
            "copy \"from\" to '/tmp/x'",
        ] {
            assert!(is_copy_to(sql), "{sql}");
        }
        for sql in [
            "copy t from '/tmp/x'",
            "copy t (a, b) from program 'cat /tmp/x'",
            "copy (select 1) ; copy t to '/tmp/x'",
            "select 'copy t to x'",
            "insert into t select * from u",
            "copy",
        ] {
            assert!(!is_copy_to(sql), "{sql}");
        }
    }

    /// `sql` redacted, read both ways a backslash may be.
    fn redacted(sql: &str) -> String {
        redact_passwords(sql, StandardStrings::Unknown).into_owned()
    }

    #[test]
    fn a_password_option_is_redacted() {
        for (sql, expected) in [
            ("ALTER ROLE app PASSWORD 'hunter2'", "ALTER ROLE app PASSWORD '[redacted]'"),
            (
                "create user x with login encrypted password 'a b' valid until 'infinity'",
                "create user x with login encrypted password '[redacted]' valid until 'infinity'",
            ),
            ("alter user x password E'it\\'s'", "alter user x password '[redacted]'"),
            ("alter user x password $p$it's$p$;", "alter user x password '[redacted]';"),
            ("alter user x password /* why */ 'a''b' -- c\n", "alter user x password /* why */ '[redacted]' -- c\n"),
            ("alter user x password U&'d\\0061t'", "alter user x password '[redacted]'"),
            (
                "ALTER USER \"Bob\" PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$aGFzaA==:a2V5'",
                "ALTER USER \"Bob\" PASSWORD '[redacted]'",
            ),
            (
                "create user mapping for app server s options (user 'u', password 'p')",
                "create user mapping for app server s options (user 'u', password '[redacted]')",
            ),
            (
                "select 1; alter role a password 'x'; select 'password'",
                "select 1; alter role a password '[redacted]'; select 'password'",
            ),
        ] {
            assert_eq!(redacted(sql), expected, "{sql}");
        }
    }

    /// Found by a review: passwords that got past the first version.
    #[test]
    fn what_postgresql_reads_as_one_password_is_redacted_whole() {
        // With standard_conforming_strings off, `\'` is a quote inside the string.
        for sql in [r"ALTER ROLE r PASSWORD 'ab\'S3cret42';", r"ALTER ROLE r PASSWORD 'zz\' S3cret63 ';"] {
            assert_eq!(redact_passwords(sql, StandardStrings::Off), "ALTER ROLE r PASSWORD '[redacted]';");
        }
        // On, a quoted value's `\'` is a backslash and the end of that value, not of the literal.
        let sql = r"SELECT 'host=x password=''ab\'' S3cret101'' dbname=y'";
        assert_eq!(redact_passwords(sql, StandardStrings::On), "SELECT 'host=x password=[redacted]'");
        for (sql, secret) in [
            // Adjacent literals are one string, comments or not between them.
            ("ALTER ROLE r PASSWORD 'S3cret15'\n  'continued16';", "continued16"),
            ("ALTER ROLE r PASSWORD 'S3cret116' -- c\n'cont117';", "cont117"),
            (r#"ALTER USER MAPPING FOR u SERVER s OPTIONS (ADD "password" 'S3cret21')"#, "S3cret21"),
            (r"SELECT 'host=x password=ab\ S3cret100 dbname=y'", "S3cret100"),
            ("SELECT $$password=S3cret141$$", "S3cret141"),
            (r"SELECT E'host=x\npassword=S3cret108'", "S3cret108"),
            ("SELECT 'host=x sslpassword=S3cret104'", "S3cret104"),
            ("DO $$BEGIN EXECUTE 'ALTER ROLE a PASSWORD ''S3cret34'''; END$$;", "S3cret34"),
            // A `--` comment ends at a carriage return too.
            ("SELECT 1 -- note\rALTER ROLE r PASSWORD 'S3cret35';", "S3cret35"),
            // A tag may hold any character past ASCII, not only letters.
            ("ALTER ROLE r PASSWORD $€$S3cret36$€$;", "S3cret36"),
        ] {
            let got = redacted(sql);
            assert!(!got.contains(secret) && got.contains(REDACTED), "{sql} -> {got}");
        }
        // What follows a password is kept where it can be told apart.
        assert_eq!(redacted("SELECT $$host=x password=S3cret140$$ AS a"), "SELECT $$host=x password=[redacted]$$ AS a");
        assert_eq!(
            redacted("SELECT 'postgres://h/db?sslmode=require&password=S3cret103&user=u'"),
            "SELECT 'postgres://h/db?sslmode=require&password=[redacted]&user=u'"
        );
    }

    /// Found by a review (rv37): a user mapping's `sslpassword`, spaces around `=` written as an
    /// escape string's escapes, and a shell command's `PGPASSWORD`.
    #[test]
    fn other_spellings_of_a_password_are_redacted() {
        for (sql, secret) in [
            ("create user mapping for u server s options (user 'x', sslpassword 'S3cret201')", "S3cret201"),
            ("alter user mapping for u server s options (set SSLPASSWORD 'S3cret202')", "S3cret202"),
            (r#"alter server s options (add "sslpassword" 'S3cret203')"#, "S3cret203"),
            (r"select dblink_connect('c', E'host=h password\t=\tS3cret204 dbname=d')", "S3cret204"),
            (r"select dblink_connect('c', E'host=h password\x09=\011S3cret205')", "S3cret205"),
            (r"select dblink_connect('c', E'host=h password\n=\r\fS3cret206')", "S3cret206"),
            ("copy (select 1) to program 'PGPASSWORD=S3cret207 psql -h h -c x'", "S3cret207"),
            ("select 'pgpassword=S3cret208'", "S3cret208"),
        ] {
            let got = redacted(sql);
            assert!(!got.contains(secret) && got.contains(REDACTED), "{sql} -> {got}");
        }
        // An escape that writes no space is no space: what follows `password` is no value.
        assert_eq!(redacted(r"select E'password\x41=x'"), r"select E'password\x41=x'");
        // Nor is a word that only ends in `pgpassword`.
        assert_eq!(redacted("select 'mypgpassword=x'"), "select 'mypgpassword=x'");
    }

    /// Found by a review: read both ways, `'a\'` was redacted as the reading that has a
    /// backslash escape found it, on past the statements after it, which ran.
    #[test]
    fn a_plain_literal_is_read_as_the_session_reads_a_backslash() {
        use StandardStrings::{Off, On};
        let sql = r"alter role me password 'a\'; create table t(); select 'c'";
        assert_eq!(redact_passwords(sql, On), r"alter role me password '[redacted]'; create table t(); select 'c'");
        // Off, that is one literal, and the password: nothing ran (`c'` is a syntax error).
        assert_eq!(redact_passwords(sql, Off), "alter role me password '[redacted]'c'");
        let sql = r"ALTER ROLE r PASSWORD 'ab\'S3cret42';";
        assert_eq!(redact_passwords(sql, Off), "ALTER ROLE r PASSWORD '[redacted]';");
        // On, the password is `ab\`, and what follows a syntax error that set nothing.
        assert_eq!(redact_passwords(sql, On), "ALTER ROLE r PASSWORD '[redacted]'S3cret42';");
        // An E'...' escapes whatever the setting, and so does its continuation on the next line.
        for (sql, strings, expected) in [
            (r"alter role me password E'a\'; create table t(); select '", On, "alter role me password '[redacted]'"),
            (
                "alter role me password E'a'\n'\\'; create table t(); select '",
                On,
                "alter role me password '[redacted]'",
            ),
            (
                "alter role me password 'a'\n'\\'; create table t(); select 'b'",
                On,
                "alter role me password '[redacted]'; create table t(); select 'b'",
            ),
            (
                r"alter role me password U&'a\0061'; create table t(); select 'b'",
                Off,
                "alter role me password '[redacted]'; create table t(); select 'b'",
            ),
        ] {
            assert_eq!(redact_passwords(sql, strings), expected, "{sql} with {strings:?}");
        }
        assert_eq!(StandardStrings::reported(b"on"), On);
        assert_eq!(StandardStrings::reported(b"off"), Off);
        assert_eq!(StandardStrings::reported(b"maybe"), StandardStrings::Unknown);
    }

    #[test]
    fn a_connection_strings_password_is_redacted() {
        for (sql, expected) in [
            (
                "CREATE SUBSCRIPTION s CONNECTION 'host=db user=rep password=s3cret dbname=x' PUBLICATION p",
                "CREATE SUBSCRIPTION s CONNECTION 'host=db user=rep password=[redacted] dbname=x' PUBLICATION p",
            ),
            // A quoted value is redacted to its closing quote, read at its literal's level.
            (
                "select dblink_connect('password = ''a b'' host=h')",
                "select dblink_connect('password = [redacted] host=h')",
            ),
            ("select dblink_connect('dbname=x password=p')", "select dblink_connect('dbname=x password=[redacted]')"),
            (
                "select dblink_connect('postgresql://rep:s3cret@db:5432/x?sslmode=require')",
                "select dblink_connect('postgresql://rep:[redacted]@db:5432/x?sslmode=require')",
            ),
        ] {
            assert_eq!(redacted(sql), expected, "{sql}");
        }
    }

    /// Found by a review: a connection string that leaves its password to what follows it in
    /// the statement had only its own text redacted, and the password was recorded in clear.
    #[test]
    fn a_password_built_up_in_sql_is_redacted() {
        for (sql, expected) in [
            (
                "select dblink_connect(format('host=127.0.0.1 dbname=test user=u password=%s', 'SUPERSECRET50'))",
                "select dblink_connect(format('host=127.0.0.1 dbname=test user=u password=[redacted]', '[redacted]'))",
            ),
            (
                "select dblink_connect('host=127.0.0.1 dbname=test user=u password=' || quote_literal('SUPERSECRET53'))",
                "select dblink_connect('host=127.0.0.1 dbname=test user=u password=' || quote_literal('[redacted]'))",
            ),
            (
                "select dblink_connect(concat('host=127.0.0.1 dbname=test user=u password=', E'SUPERSECRET44'))",
                "select dblink_connect(concat('host=127.0.0.1 dbname=test user=u password=', '[redacted]'))",
            ),
            (
                "select dblink_connect('c', 'user=u password= ' || $$S3cret1$$), dblink_exec('c', 'drop table t')",
                "select dblink_connect('c', 'user=u password= ' || '[redacted]'), dblink_exec('c', 'drop table t')",
            ),
            // Each argument format() may take up to the password's placeholder, counted high.
            (
                "select format('host=%s user=%2$s password=%L dbname=d', 'h', 'u', 'S3cret2', 'x', 'y')",
                "select format('host=%s user=%2$s password=[redacted] dbname=d', '[redacted]', '[redacted]', \
                 '[redacted]', '[redacted]', 'y')",
            ),
            (
                "select format('postgresql://u:%s@h/db', 'S3cret3')",
                "select format('postgresql://u:[redacted]@h/db', '[redacted]')",
            ),
            // Found by a review (rv28): a URI whose `@` a string joined to it brings.
            (
                "select dblink_connect('postgresql://u:' || 'S3cret6' || '@h/db')",
                "select dblink_connect('postgresql://u:' || '[redacted]' || '@h/db')",
            ),
            (
                "select dblink_connect(concat('postgresql://u:', 'S3cret7', '@h/db'))",
                "select dblink_connect(concat('postgresql://u:', '[redacted]', '@h/db'))",
            ),
            // A URI's port is no password, and what follows a space no part of the URI: a
            // literal may be SQL a function runs (rv29).
            ("select 'postgresql://localhost:5432'", "select 'postgresql://localhost:5432'"),
            ("select 'http://example.com:8080'", "select 'http://example.com:8080'"),
            (
                "DO $$ BEGIN EXECUTE 'DELETE FROM t WHERE note = ''postgres://h:x'' OR note <> ''a@b'''; END $$",
                "DO $$ BEGIN EXECUTE 'DELETE FROM t WHERE note = ''postgres://h:x'' OR note <> ''a@b'''; END $$",
            ),
            // Found by a review (rv28): a literal continued on the next line is one string, its
            // password in the next part.
            (
                "select dblink_connect('host=db password='\n'S3cret9 dbname=x')",
                "select dblink_connect('host=db password='\n'[redacted] dbname=x')",
            ),
            (
                "select dblink_connect('host=db password='\n''\n' S3cret11 dbname=x')",
                "select dblink_connect('host=db password='\n''\n' [redacted] dbname=x')",
            ),
            (
                "DO $$ BEGIN EXECUTE 'ALTER ROLE r PASSWORD '\n'''S3cret10'''; END $$",
                "DO $$ BEGIN EXECUTE 'ALTER ROLE r PASSWORD '\n'[redacted]'; END $$",
            ),
            (
                "select format('host=h password=''%s''', 'S3cret4')",
                "select format('host=h password=[redacted]', '[redacted]')",
            ),
            (
                "select 'host=h password=''' || 'S3cret5' || ''''",
                "select 'host=h password=[redacted]' || '[redacted]' || ''''",
            ),
            // A statement built in a string, to run with psql's \gexec.
            (
                "select format('ALTER ROLE %I PASSWORD %L', 'me', 'S3cret6')",
                "select format('ALTER ROLE %I PASSWORD [redacted]', '[redacted]', '[redacted]')",
            ),
            (
                "select 'ALTER ROLE me PASSWORD ' || quote_literal('S3cret7')",
                "select 'ALTER ROLE me PASSWORD ' || quote_literal('[redacted]')",
            ),
            // A literal continued on the next line is one string.
            ("select 'host=h password=ab'\n'S3cret8 dbname=d'", "select 'host=h password=[redacted] dbname=d'"),
            // Not past the statement's end.
            (
                "select concat('user=u password=', pw) from t; select 'kept'",
                "select concat('user=u password=', pw) from t; select 'kept'",
            ),
            (
                "select format('port=%s password=%s', 5432, 'S3cret9')",
                "select format('port=%s password=[redacted]', 5432, '[redacted]')",
            ),
            (
                "select concat('user=u password=', x)::text || 'S3cret10'",
                "select concat('user=u password=', x)::text || '[redacted]'",
            ),
        ] {
            assert_eq!(redacted(sql), expected, "{sql}");
        }
    }

    /// Found by a review: a literal that ends where a password starts had the next literal of
    /// the statement redacted, whatever it was: SQL a function runs (`query_to_xml`'s, an
    /// `EXECUTE` wrapper's) went out of the transcript with it. Only literals joined into the
    /// same string are taken.
    #[test]
    fn only_literals_joined_to_a_passwords_start_are_taken_for_it() {
        for sql in [
            "select 'password=', query_to_xml('select v from victim', true, true, '')",
            "select 'password=', exec('delete from victim where id=1')",
            "select 'password=' || (select exec('delete from victim'))::text",
            "select 'password=' as a, 'delete from victim' as b",
            "select 'password=' from t where x = 'delete from victim'",
            "select concat('password=', exec('delete from victim'))",
        ] {
            assert_eq!(redacted(sql), sql);
        }
        for (sql, expected) in [
            (
                "select format('%s%s%s password=%s', 'a', 'b', 'c', exec('delete from victim')::text)",
                "select format('%s%s%s password=[redacted]', '[redacted]', '[redacted]', '[redacted]', \
                 exec('delete from victim')::text)",
            ),
            (
                "select 'password=' || quote_nullable('S3cret11'), exec('delete from victim')",
                "select 'password=' || quote_nullable('[redacted]'), exec('delete from victim')",
            ),
        ] {
            assert_eq!(redacted(sql), expected, "{sql}");
        }
    }

    /// Found by reading the leftovers: a DO block's body (or a function's) was read as one
    /// string, so a password set in it was taken out with every statement after it to the end
    /// of the body, and one built up in it (`format(... %L ...)`) was recorded in clear.
    #[test]
    fn a_password_set_in_a_dollar_quoted_body_is_redacted_as_in_sql() {
        for (sql, expected) in [
            (
                "DO $$BEGIN ALTER ROLE a PASSWORD 'S3cret70'; CREATE TABLE t(); END$$",
                "DO $$BEGIN ALTER ROLE a PASSWORD '[redacted]'; CREATE TABLE t(); END$$",
            ),
            (
                "DO $$BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', 'a', 'S3cret71'); DROP TABLE t; END$$",
                "DO $$BEGIN EXECUTE format('ALTER ROLE %I PASSWORD [redacted]', '[redacted]', '[redacted]'); \
                 DROP TABLE t; END$$",
            ),
            (
                "DO $do$BEGIN PERFORM dblink_connect('user=u password=' || quote_literal('S3cret72')); END$do$",
                "DO $do$BEGIN PERFORM dblink_connect('user=u password=' || quote_literal('[redacted]')); END$do$",
            ),
            (
                "CREATE FUNCTION f() RETURNS void AS $f$BEGIN EXECUTE $e$ALTER ROLE a PASSWORD 'S3cret73'$e$; \
                 DELETE FROM t; END$f$ LANGUAGE plpgsql",
                "CREATE FUNCTION f() RETURNS void AS $f$BEGIN EXECUTE $e$ALTER ROLE a PASSWORD '[redacted]'$e$; \
                 DELETE FROM t; END$f$ LANGUAGE plpgsql",
            ),
            // A connection string in a dollar-quoted string is still one.
            ("SELECT $$host=x password=S3cret74 dbname=y$$", "SELECT $$host=x password=[redacted] dbname=y$$"),
            ("SELECT $$host=x password='S3 cret76' dbname=y$$", "SELECT $$host=x password='[redacted]' dbname=y$$"),
            // But read as SQL, a quote ends the literal a value or a URI is in.
            (
                "DO $$BEGIN PERFORM dblink_connect('password=S3cret77');DELETE/**/FROM/**/t; END$$",
                "DO $$BEGIN PERFORM dblink_connect('password=[redacted]');DELETE/**/FROM/**/t; END$$",
            ),
            (
                "DO $$BEGIN PERFORM dblink_connect('postgres://u:S3cret78@h');DELETE FROM t; PERFORM 'a@b'; END$$",
                "DO $$BEGIN PERFORM dblink_connect('postgres://u:[redacted]@h');DELETE FROM t; PERFORM 'a@b'; END$$",
            ),
        ] {
            assert_eq!(redacted(sql), expected, "{sql}");
        }
        // A body may run under either setting (a function's own `SET` clause, a `set_config`
        // before its `EXECUTE`): only what both readings find is taken out.
        let sql = r"do $a$ begin perform set_config('standard_conforming_strings', 'on', true); \
                   execute $b$alter role r password 'a\'; delete from victim where id=7; select '1'$b$; end $a$";
        for strings in [StandardStrings::On, StandardStrings::Off] {
            let got = redact_passwords(sql, strings);
            assert!(got.contains("delete from victim where id=7") && got.contains(REDACTED), "{strings:?}: {got}");
        }
        // Bodies nested deeper than they are read as SQL are read as strings: more is taken out.
        let depth = 10_000;
        let tags: Vec<String> = (0..depth).map(|n| format!("$t{n}$")).collect();
        let sql = format!(
            "DO {} ALTER ROLE a PASSWORD 'S3cret75' {}",
            tags.concat(),
            tags.iter().rev().cloned().collect::<String>()
        );
        let got = redacted(&sql);
        assert!(!got.contains("S3cret75") && got.contains(REDACTED));
    }

    /// Found by a review: in a single-quoted body, a password's quotes are doubled, and it was
    /// taken out with everything after it to the body's end, the statements it ran too.
    #[test]
    fn a_password_quoted_in_a_single_quoted_body_ends_where_its_quotes_do() {
        for (sql, expected) in [
            (
                "DO 'BEGIN ALTER ROLE a PASSWORD ''S3cret80''; DELETE FROM t; END'",
                "DO 'BEGIN ALTER ROLE a PASSWORD [redacted]; DELETE FROM t; END'",
            ),
            (
                "DO 'BEGIN ALTER ROLE a PASSWORD ''S3''''cret81''''''; DELETE FROM t; END'",
                "DO 'BEGIN ALTER ROLE a PASSWORD [redacted]; DELETE FROM t; END'",
            ),
            (
                "DO 'BEGIN EXECUTE ''ALTER ROLE a PASSWORD ''''S3cret82''''''; DELETE FROM t; END'",
                "DO 'BEGIN EXECUTE ''ALTER ROLE a PASSWORD [redacted]''; DELETE FROM t; END'",
            ),
            (
                "DO $$BEGIN EXECUTE 'ALTER ROLE a PASSWORD ''S3cret83'''; DELETE FROM t; END$$",
                "DO $$BEGIN EXECUTE 'ALTER ROLE a PASSWORD [redacted]'; DELETE FROM t; END$$",
            ),
            // Not plain: to the end of the body, as before.
            (
                "DO 'BEGIN ALTER ROLE a PASSWORD ''S3\\cret84''; DELETE FROM t; END'",
                "DO 'BEGIN ALTER ROLE a PASSWORD [redacted]'",
            ),
            ("DO 'BEGIN ALTER ROLE a PASSWORD ''S3cret85 END'", "DO 'BEGIN ALTER ROLE a PASSWORD [redacted]'"),
            (
                "DO E'BEGIN ALTER ROLE a PASSWORD \\'S3cret86\\'; DELETE FROM t; END'",
                "DO E'BEGIN ALTER ROLE a PASSWORD [redacted]'",
            ),
        ] {
            assert_eq!(redacted(sql), expected, "{sql}");
        }
    }

    #[test]
    fn what_sets_no_password_is_left_as_sent() {
        for sql in [
            "select * from users where password = 'x'",
            "update users set password = crypt('x', gen_salt('bf'))",
            "insert into t (password) values ('x')",
            "select 'no password here', \"password\" from t",
            "select $1 from t where password_hash = $2",
            "select 'password', 'mypassword=1'",
            "-- password 'x'\nselect 1",
            "alter role x password null",
            "select 'http://user@host/password'",
        ] {
            assert!(
                matches!(redact_passwords(sql, StandardStrings::Unknown), Cow::Borrowed(_)),
                "{sql}: {}",
                redacted(sql)
            );
        }
    }

    #[test]
    fn text_that_does_not_end_is_read_to_its_end() {
        assert_eq!(redacted("alter role a password 'unterminated"), "alter role a password '[redacted]'");
        assert_eq!(redacted("alter role a password E'x\\"), "alter role a password '[redacted]'");
        assert_eq!(redacted("alter role a password"), "alter role a password");
        assert_eq!(redacted("/* /* nested */ password 'x' */ select 1"), "/* /* nested */ password 'x' */ select 1");
        assert_eq!(redacted("select 'password="), "select 'password=");
        assert_eq!(redacted("alter role é password 'ü'"), "alter role é password '[redacted]'");
    }

    /// Every cut of these pieces, unclosed strings and characters of several bytes among them:
    /// the connector runs this on whatever a client sends.
    #[test]
    fn any_text_is_read_without_a_panic() {
        let pieces = [
            "password",
            "=",
            " ",
            "'",
            "''",
            "\\",
            "$$",
            "$t$",
            "E'",
            "U&'",
            "\"",
            "é",
            "€x",
            "://",
            "u:",
            "@",
            "&",
            "/*",
            "*/",
            "--",
            "\n",
            "sslpassword=",
            "ssl",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in ["", "'", "é", "$$"] {
                        let sql = format!("{a}{b}{c}{d}");
                        let redacted = redact_passwords(&sql, StandardStrings::Unknown);
                        assert!(redacted.len() <= sql.len() + 4 * REDACTED.len() + 8, "{sql:?} -> {redacted:?}");
                    }
                }
            }
        }
    }

    /// The filler of `sql` of two bytes or more, as the texts it spans.
    fn fill(sql: &str) -> Vec<&str> {
        filler(sql, 2).into_iter().map(|span| &sql[span]).collect()
    }

    /// Whether filler spans of `sql` take in more of its first `needle` than its whitespace.
    fn hides(sql: &str, needle: &str) -> bool {
        let at = sql.find(needle).expect("the needle is in the text");
        let words = (at..at + needle.len()).filter(|&i| !is_space(sql.as_bytes()[i]));
        words.into_iter().any(|i| filler(sql, 1).iter().any(|span| span.contains(&i)))
    }

    #[test]
    fn filler_is_the_text_of_comments_literals_and_names_and_whitespace() {
        let sql = "select 'ab''c', E'd\\'e' -- fg\rfrom \"h\"\"i\" /* j /* k */ l */ where x = $t$ m $u$ n $t$ \
                   || $$oo$$ || U&'pq' || B'rs' || X'tu' || N'vw' || U&\"xy\"  ;";
        assert_eq!(
            fill(sql),
            ["ab''c", "d\\'e", " fg", "h\"\"i", " j /* k */ l ", " m $u$ n ", "oo", "pq", "rs", "tu", "vw", "xy", "  "]
        );
        let pad = "x".repeat(1000);
        let sql = format!("select 1 /* {pad} */ ; drop table victim ; select 2 /* {pad} */;");
        let spans = filler(&sql, 100);
        let body = format!(" {pad} ");
        assert_eq!(spans.iter().map(|span| &sql[span.clone()]).collect::<Vec<_>>(), [body.as_str(); 2]);
    }

    #[test]
    fn filler_is_filler_whether_a_backslash_escapes_or_not() {
        // With standard_conforming_strings on (the default), `'a\'` ends at its second quote
        // and the DROP runs; off, it is inside a literal.
        let sql = "select 'a\\' , 'b' ; drop table t ; select 'c'";
        assert!(!hides(sql, "drop table t"), "{:?}", filler(sql, 1));
        let escaping = filler_read(sql.as_bytes(), Quoting::Escaping, 1);
        assert!(escaping.iter().any(|span| sql[span.clone()].contains("drop table t")), "{escaping:?}");
        assert!(fill(sql).contains(&"a\\"));
        // An E'...' escapes either way, and so does its continuation after a newline.
        assert_eq!(fill("select E'a\\'b' , 1"), ["a\\'b"]);
        assert!(hides("select E'a'\n'\\' ; drop table t ; select '", "drop table t"));
        assert!(!hides("select 'a'\n'\\' ; drop table t ; select 'b'", "drop table t"));
        // A continuation needs a newline, which a comment may precede.
        assert_eq!(fill("select E'ab' -- c\n 'd\\'e'"), ["ab' -- c\n 'd\\'e"]);
        assert_eq!(fill("select E'ab' 'cd'"), ["ab", "cd"]);
        // A bit string's quote ends it: a second one starts a literal of its own.
        assert_eq!(filler("select b'01''x'", 1).into_iter().map(|r| r.len()).collect::<Vec<_>>(), [1, 2, 1]);
    }

    #[test]
    fn prefixes_and_dollar_quotes_count_where_postgresql_starts_a_token() {
        // After a number, E' starts an escaping literal; inside a name, the quote is plain.
        assert!(fill("select 1e5E'a\\'b' ; x").contains(&"a\\'b"));
        assert!(fill("select 1E'a\\'b' ; x").contains(&"a\\'b"));
        assert!(fill("select abcE'a\\'b' ; x").contains(&"a\\"));
        assert!(!fill("select abcE'a\\'b' ; x").contains(&"a\\'b"));
        // After a parameter, a dollar quote; inside a name, none.
        assert!(hides("select $1$a$ ; drop table t ; $a$", "drop table t"));
        assert!(!hides("select abc$a$ ; drop table t ; $a$", "drop table t"));
        assert!(!hides("select 1 -- a\rdrop table t", "drop table t"));
        // A tag may hold any character past ASCII, and a byte a recorded text escaped.
        assert!(!hides("select $€$ ' $€$ ; drop table t ; select 'x'", "drop table t"));
        assert!(!hides("select $\\x80$ ' $\\x80$ ; drop table t ; select 'x'", "drop table t"));
        assert!(!hides("select \\x80$a$ ; drop table t ; $a$", "drop table t"));
        assert_eq!(fill("select $a$ $b$ $a$"), [" $b$ "]);
    }

    #[test]
    fn what_does_not_end_is_filler_to_the_end() {
        for (sql, text) in [
            ("select 1 /* ab /* */", " ab /* */"),
            ("select 'ab", "ab"),
            ("select E'ab\\", "ab\\"),
            ("select $x$ab", "ab"),
            ("select \"ab", "ab"),
            ("select 1 --ab", "ab"),
            ("select 'ab'\n'cd", "ab'\n'cd"),
        ] {
            assert_eq!(fill(sql), [text], "{sql:?}");
        }
    }

    /// Every cut of these pieces: spans stay in order, on character boundaries, and filler
    /// under both readings.
    #[test]
    fn filler_spans_any_text_in_order_on_character_boundaries() {
        let pieces = [
            "'", "''", "\\", "$$", "$t$", "$é$", "E'", "b'", "U&'", "U&\"", "\"", "é", "€x", "/*", "*/", "--", "\n",
            "\r", "  ", "1e", "x", ";",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in ["", "'", "é", "$$", " é "] {
                        let sql = format!("{a}{b}{c}{d}");
                        let spans = filler(&sql, 1);
                        let readings =
                            [Quoting::Standard, Quoting::Escaping].map(|q| filler_read(sql.as_bytes(), q, 1));
                        for span in &spans {
                            assert!(!span.is_empty() && span.end <= sql.len(), "{sql:?}: {spans:?}");
                            assert!(sql.is_char_boundary(span.start) && sql.is_char_boundary(span.end));
                            for reading in &readings {
                                assert!(reading.iter().any(|r| r.start <= span.start && span.end <= r.end), "{sql:?}");
                            }
                        }
                        assert!(spans.windows(2).all(|w| w[0].end <= w[1].start), "{sql:?}: {spans:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn dollar_quotes_and_parameters() {
        assert_eq!(skip_dollar_quoted("$$a$$ b", 0), Some(5));
        assert_eq!(skip_dollar_quoted("$t$a$$t$ b", 0), Some(8));
        assert_eq!(skip_dollar_quoted("$1", 0), None);
        assert_eq!(skip_dollar_quoted("$", 0), None);
        assert_eq!(skip_block_comment(b"/* a /* b */ c */ d", 0), 17);
    }
}
