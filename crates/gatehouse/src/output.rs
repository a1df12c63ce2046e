//! Output: tables that fit the terminal, and JSONL or CSV records written
//! as they come, so an export of any size runs in constant memory.

use std::io::Write;

use serde_json::Value;
use unicode_width::UnicodeWidthStr;

/// Refuses to go on when standard output cannot take a secret about to be shown once (a new
/// key or token): `/dev/null`, or closed (`>&-`, which Rust's runtime opens on `/dev/null`),
/// or a pipe or socket whose reader is gone. Called before the secret is made, so that none is
/// made that nobody can be shown.
pub fn ensure_stdout_open(what: &str) -> anyhow::Result<()> {
    let refused =
        |why: &str| anyhow::anyhow!("standard output {why}: the new {what} would be shown nowhere, so none was made");
    #[cfg(unix)]
    {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        use rustix::fs::{FileType, fstat, stat};
        let stdout = std::io::stdout();
        if let (Ok(out), Ok(null)) = (fstat(&stdout), stat("/dev/null"))
            && FileType::from_raw_mode(out.st_mode) == FileType::CharacterDevice
            && out.st_rdev == null.st_rdev
        {
            return Err(refused("is closed or /dev/null"));
        }
        let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
        let no_wait = Timespec { tv_sec: 0, tv_nsec: 0 };
        // A pipe whose reader is gone says ERR; a socket whose peer closed, HUP.
        if poll(&mut fds, Some(&no_wait)).is_ok() && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP) {
            return Err(refused("is a pipe or socket nobody reads"));
        }
    }
    Ok(())
}

/// Writes a secret just made to standard output, or says it was made but not shown, and what
/// to do about it (`undo`).
pub fn print_secret(what: &str, secret: &str, undo: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{secret}")
        .and_then(|()| out.flush())
        .map_err(|error| anyhow::anyhow!("the new {what} was made but could not be shown ({error}): {undo}"))
}

/// How a column fares when its table is wider than the terminal, and what its cells are in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Never cut: ids and prefixes that other commands take, and short values of a fixed form
    /// (times, statuses, addresses, counts), which a cut one would make useless.
    Whole,
    /// Free text (names, emails, roles): cut with `…`, the widest first.
    Cut,
    /// A count: never cut, and a number in JSON.
    Count,
    /// Items made into one cell by [`list`]: shown joined by `,` and cut as free text, and an
    /// array in JSON.
    List,
    /// A statement's text: cut as free text, with its backslashes doubled as the transcript
    /// writes them, so that a `\n` it holds is told from a line break.
    Sql,
}

/// Separates the items of a [`Fit::List`] cell: a control character, so in no item (external
/// ids may hold a `,`).
const ITEM_END: char = '\u{1e}';

/// `items` as one [`Fit::List`] cell.
pub fn list(items: &[String]) -> String {
    if items.is_empty() { "-".to_owned() } else { items.join(&ITEM_END.to_string()) }
}

/// A cut column keeps at least this many columns of text, `…` included.
const MIN_CUT_WIDTH: usize = 8;

/// Separates a row's cells in [`Table::rows`]. A control character, so never in a cell:
/// [`gatehouse_core::display::printable`] writes those out.
const CELL_END: char = '\u{1f}';

/// A table printed with aligned columns. When stdout is a terminal, the [`Fit::Cut`] columns
/// are cut (with `…`) until the table fits; if it still does not, the columns it may do
/// without ([`droppable`](Table::droppable)) are left out, and then its lines run past the
/// edge rather than cut the others. Output to a file or a pipe is never cut.
pub struct Table {
    header: Vec<String>,
    /// Rows are JSON objects instead, one per line, keyed by [`json_key`]s of the header.
    jsonl: bool,
    fits: Vec<Fit>,
    /// Each row as one string of its cells, each ended by [`CELL_END`]: `sessions list --all`
    /// holds every row until the last page is in, and one allocation per row is a fraction of
    /// a `Vec` of `String`s.
    rows: Vec<Box<str>>,
    /// The widest cell of each column so far, in terminal columns.
    widths: Vec<usize>,
    /// Columns left out, in this order, of a table that cutting cannot fit.
    droppable: Vec<usize>,
}

impl Table {
    pub fn new(columns: &[(&str, Fit)]) -> Self {
        Self {
            header: columns.iter().map(|(name, _)| (*name).to_owned()).collect(),
            jsonl: false,
            fits: columns.iter().map(|(_, fit)| *fit).collect(),
            rows: Vec::new(),
            widths: columns.iter().map(|(name, _)| name.width()).collect(),
            droppable: Vec::new(),
        }
    }

    /// The same table, leaving out the columns `names`, the first first, while cutting the
    /// free text does not make it fit the terminal.
    pub fn droppable(mut self, names: &[&str]) -> Self {
        self.droppable = names.iter().filter_map(|name| self.header.iter().position(|h| h == name)).collect();
        self
    }

    /// The same table, printed as `format` says.
    pub fn in_format(mut self, format: crate::cli::ListFormat) -> Self {
        self.jsonl = format == crate::cli::ListFormat::Jsonl;
        self
    }

    /// Adds a row; its cells are printed with control characters written out
    /// ([`gatehouse_core::display::printable`]): they hold what audited users typed, which a
    /// terminal would act on.
    pub fn row(&mut self, cells: Vec<String>) {
        if self.jsonl {
            // JSON escapes what a terminal would act on.
            let object: serde_json::Map<String, Value> = self
                .header
                .iter()
                .zip(&self.fits)
                .zip(cells)
                .map(|((name, fit), cell)| (json_key(name), json_cell(*fit, cell)))
                .collect();
            self.rows.push(json_line(&Value::Object(object)).into_boxed_str());
            return;
        }
        let mut row = String::new();
        for (column, cell) in cells.iter().enumerate() {
            let joined;
            let text = match self.fits.get(column) {
                Some(Fit::List) => {
                    joined = cell.replace(ITEM_END, ",");
                    &joined
                }
                _ => cell,
            };
            let cell = match self.fits.get(column) {
                Some(Fit::Sql) => gatehouse_core::display::printable_exact(text),
                _ => gatehouse_core::display::printable(text),
            };
            if let Some(widest) = self.widths.get_mut(column) {
                *widest = (*widest).max(cell.width());
            }
            row.push_str(&cell);
            row.push(CELL_END);
        }
        self.rows.push(row.into_boxed_str());
    }

    pub fn print(&self) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        self.write(&mut out, stdout_width())?;
        out.flush()
    }

    /// Writes the table, line by line: the text of a large one is not held a second time.
    fn write(&self, out: &mut impl Write, max_width: Option<usize>) -> std::io::Result<()> {
        if self.jsonl {
            for row in &self.rows {
                out.write_all(row.as_bytes())?;
                out.write_all(b"\n")?;
            }
            return Ok(());
        }
        let widths = match max_width {
            Some(max) => self.widths_within(max),
            None => self.widths.iter().copied().map(Some).collect(),
        };
        let mut line = String::new();
        let header = self.header.iter().map(String::as_str);
        let rows = self.rows.iter().map(|row| row.split_terminator(CELL_END));
        for cells in std::iter::once(header.collect::<Vec<_>>()).chain(rows.map(Iterator::collect)) {
            line.clear();
            for (cell, width) in cells.iter().zip(&widths) {
                let Some(width) = width else { continue };
                push_fitted(&mut line, cell, *width);
                line.push_str("  ");
            }
            out.write_all(line.trim_end().as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The columns' widths once the free-text ones are cut, the widest first, until the table
    /// is `max` wide or they are all down to [`MIN_CUT_WIDTH`]; and then, while it is still
    /// wider, with the droppable columns left out (`None`), one by one.
    fn widths_within(&self, max: usize) -> Vec<Option<usize>> {
        let mut shown: Vec<bool> = vec![true; self.widths.len()];
        let mut drops = self.droppable.iter();
        loop {
            let mut widths: Vec<Option<usize>> =
                self.widths.iter().zip(&shown).map(|(width, shown)| shown.then_some(*width)).collect();
            // The shown columns and the two spaces between each two of them.
            let total = |widths: &[Option<usize>]| {
                let (sum, count) = widths.iter().flatten().fold((0, 0), |(sum, count), width| (sum + width, count + 1));
                sum + 2 * usize::saturating_sub(count, 1)
            };
            while total(&widths) > max {
                let widest = (0..widths.len())
                    .filter(|&column| {
                        matches!(self.fits[column], Fit::Cut | Fit::List | Fit::Sql)
                            && widths[column].is_some_and(|width| width > MIN_CUT_WIDTH)
                    })
                    .max_by_key(|&column| widths[column]);
                let Some(column) = widest else { break };
                widths[column] = widths[column].map(|width| width - 1);
            }
            match drops.next() {
                Some(&column) if total(&widths) > max => shown[column] = false,
                _ => return widths,
            }
        }
    }
}

/// Stdout's width when it is a terminal. Only stdout's: `terminal_size()` falls back to stderr's
/// and stdin's, which would cut a table sent to a file or a pipe from a terminal.
fn stdout_width() -> Option<usize> {
    terminal_size::terminal_size_of(std::io::stdout()).map(|(width, _)| usize::from(width.0))
}

/// A cell as JSON: `-`, the table's "none", is null (an empty list for a list); a count is a
/// number.
fn json_cell(fit: Fit, cell: String) -> Value {
    match (fit, cell.as_str()) {
        (Fit::List, "-") => Value::Array(Vec::new()),
        (Fit::List, items) => items.split(ITEM_END).map(|item| Value::String(item.to_owned())).collect(),
        (_, "-") => Value::Null,
        (Fit::Count, count) => count.parse::<u64>().map_or(Value::String(cell), Value::from),
        (Fit::Whole | Fit::Cut | Fit::Sql, _) => Value::String(cell),
    }
}

/// A column's name as a JSON key: `LAST USED` is `last_used`.
fn json_key(header: &str) -> String {
    header.to_ascii_lowercase().replace(' ', "_")
}

/// Appends `cell` padded to `width` terminal columns, or cut to them with `…`. Widths are the
/// terminal's (a CJK character takes two columns, a combining accent none), not characters.
fn push_fitted(out: &mut String, cell: &str, width: usize) {
    let mut shown = cell.width();
    if shown <= width {
        out.push_str(cell);
    } else {
        let kept = prefix_within(cell, width.saturating_sub(1));
        out.push_str(kept);
        out.push('…');
        shown = kept.width() + 1;
    }
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(shown)));
}

/// The longest prefix of `text` that takes at most `width` columns. Measured on the prefix as a
/// whole, since a character's width may depend on its neighbours (emoji sequences); a
/// combining mark, of no width, stays with the letter before it.
fn prefix_within(text: &str, width: usize) -> &str {
    let mut end = 0;
    for (at, c) in text.char_indices() {
        let next = at + c.len_utf8();
        if text[..next].width() > width {
            break;
        }
        end = next;
    }
    &text[..end]
}

/// CSV columns: a name and the JSON pointer into the API's JSON form of a record.
pub type Columns = &'static [(&'static str, &'static str)];

/// The CSV columns of a session. The console's export (`console/export.js`) writes the same ones.
pub const CSV_COLUMNS: Columns = &[
    ("id", "/id"),
    ("session_status", "/sessionStatus"),
    ("start_time", "/startTime"),
    ("end_time", "/endTime"),
    ("duration_seconds", "/duration"),
    ("user_type", "/user/type"),
    ("username", "/user/username"),
    ("user_id", "/user/formal/user/id"),
    ("user_name", "/user/formal/user/name"),
    ("user_email", "/user/formal/user/email"),
    ("user_groups", "/user/formal/user/groups"),
    ("end_user_id", "/user/formal/endUser/id"),
    ("end_user_name", "/user/formal/endUser/name"),
    ("end_user_email", "/user/formal/endUser/email"),
    ("end_user_groups", "/user/formal/endUser/groups"),
    ("native_username", "/user/native/username"),
    ("resource_id", "/resource/id"),
    ("resource_name", "/resource/name"),
    ("resource_type", "/resource/type"),
    ("resource_technology", "/resource/technology"),
    ("connector_id", "/connector/id"),
    ("connector_name", "/connector/name"),
    ("client_ip", "/network/clientIpAddress"),
    ("server_ip", "/network/serverIpAddress"),
    ("parent_session_id", "/parentSessionId"),
];

/// `value` as one line of JSON, with every character a terminal would act on (see
/// [`gatehouse_core::display::needs_escape`]) written as a `\u` escape: the same JSON to a
/// reader, but a bidirectional override or an escape sequence in a recorded user name is not
/// acted on when the line reaches a terminal. (serde_json escapes only the C0 controls.)
pub fn json_line(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, TerminalSafe);
    serde::Serialize::serialize(value, &mut serializer).expect("a JSON value serializes to memory");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(gatehouse_core::display::needs_escape) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().expect("a char is found there");
            for unit in c.encode_utf16(&mut [0; 2]) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// Writes records one at a time: JSON lines, or CSV with a header row.
/// (One writer per command: the CSV writer's size does not matter, so it is not boxed.)
#[allow(clippy::large_enum_variant)]
pub enum RecordWriter<W: Write> {
    Jsonl(W),
    /// The columns, and whether cells are written for a terminal (with what it would act on
    /// written out, as tables are), not for a file.
    Csv(csv::Writer<W>, Columns, bool),
}

impl<W: Write> RecordWriter<W> {
    pub fn jsonl(out: W) -> Self {
        Self::Jsonl(out)
    }

    /// A CSV writer of `columns`, for a terminal or not; the header row is written at once, so
    /// even an empty export says what its columns are.
    pub fn csv(out: W, columns: Columns, to_terminal: bool) -> anyhow::Result<Self> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(columns.iter().map(|(name, _)| *name))?;
        Ok(Self::Csv(writer, columns, to_terminal))
    }

    pub fn write(&mut self, record: &Value) -> anyhow::Result<()> {
        match self {
            Self::Jsonl(out) => writeln!(out, "{}", json_line(record))?,
            Self::Csv(writer, columns, to_terminal) => writer.write_record(columns.iter().map(|(name, at)| {
                let cell = defused(csv_cell(name, record.pointer(at)));
                if *to_terminal { gatehouse_core::display::printable(&cell).into_owned() } else { cell }
            }))?,
        }
        Ok(())
    }

    /// Pushes what was written so far out, e.g. after each page.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Jsonl(out) => out.flush(),
            Self::Csv(writer, ..) => writer.flush(),
        }
    }
}

/// One flat cell: strings as they are, lists joined with `;`, durations
/// (`"3.5s"` in JSON) as plain seconds.
fn csv_cell(column: &str, value: Option<&Value>) -> String {
    match value {
        // The API's JSON leaves zeros out, as proto3's JSON does.
        None | Some(Value::Null) if COUNTS.contains(&column) => "0".to_owned(),
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) if column == "duration_seconds" => text.trim_end_matches('s').to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => {
            items.iter().map(|item| csv_cell(column, Some(item))).collect::<Vec<_>>().join(";")
        }
        Some(other) => other.to_string(),
    }
}

/// Columns that count something: a zero the API's JSON leaves out is written `0`, not nothing.
const COUNTS: [&str; 3] = ["rows", "rows_changed", "bytes_sent"];

/// A text a spreadsheet would run as a formula (a role named `=HYPERLINK(...)`, say) gets a
/// leading `'`, as OWASP advises for CSV files; the console's export does the same.
fn defused(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Fit::{Count, Cut, List, Sql, Whole};

    impl Table {
        fn render(&self, max_width: Option<usize>) -> String {
            let mut out = Vec::new();
            self.write(&mut out, max_width).unwrap();
            String::from_utf8(out).unwrap()
        }
    }

    /// The terminal columns each line of `text` takes.
    fn line_widths(text: &str) -> Vec<usize> {
        text.lines().map(UnicodeWidthStr::width).collect()
    }

    #[test]
    fn cuts_free_text_to_fit() {
        let mut table = Table::new(&[("ID", Whole), ("USER", Cut)]);
        table.row(vec!["1".into(), "alice.smith@example.com".into()]);
        let text = table.render(Some(20));
        assert!(line_widths(&text).iter().all(|w| *w <= 20), "{text}");
        assert!(text.contains('…'));
        assert!(table.render(None).contains("alice.smith@example.com"));
    }

    #[test]
    fn columns_that_may_go_are_left_out_when_cutting_is_not_enough() {
        let mut table = Table::new(&[("ID", Whole), ("USER", Cut), ("CLIENT IP", Whole), ("CONNECTOR", Cut)])
            .droppable(&["CONNECTOR", "CLIENT IP"]);
        table.row(vec![
            "0123456789".into(),
            "alice@example.com".into(),
            "192.168.10.183".into(),
            "connector-eu".into(),
        ]);
        let whole = table.render(None);
        assert!(whole.contains("connector-eu") && whole.contains("192.168.10.183"), "{whole}");
        // Cutting the free text fits it: nothing left out.
        let cut = table.render(Some(line_widths(&whole)[1] - 6));
        assert!(cut.contains("CONNECTOR") && cut.contains("192.168.10.183"), "{cut}");
        // Narrower: the connector goes first, then the client address.
        let narrow = table.render(Some(40));
        assert!(!narrow.contains("CONNECTOR") && narrow.contains("192.168.10.183"), "{narrow}");
        let narrower = table.render(Some(25));
        assert!(!narrower.contains("CLIENT IP") && narrower.contains("0123456789"), "{narrower}");
        assert!(line_widths(&narrower).iter().all(|w| *w <= 25), "{narrower}");
    }

    #[test]
    fn ids_times_and_addresses_are_never_cut() {
        let id = "01a24365-338e-7200-9c11-7bb3987f5ac9";
        let mut table = Table::new(&[
            ("ID", Whole),
            ("STATUS", Whole),
            ("START", Whole),
            ("USER", Cut),
            ("RESOURCE", Cut),
            ("CLIENT IP", Whole),
        ]);
        let cells =
            [id, "completed", "2026-12-05T10:37:41Z", "yusuf.rossi@example.com", "orders-db-eu-prod", "192.168.10.183"];
        table.row(cells.iter().map(|c| (*c).to_owned()).collect());
        let natural = table.render(None);
        let full_width = line_widths(&natural)[1];

        // Narrower: the names give way, down to 8 columns each.
        let text = table.render(Some(full_width - 10));
        assert!(line_widths(&text).iter().all(|w| *w <= full_width - 10), "{text}");
        let row = text.lines().nth(1).unwrap();
        for whole in [id, "completed", "2026-12-05T10:37:41Z", "192.168.10.183"] {
            assert!(row.contains(whole), "{whole} is kept whole: {text}");
        }
        assert!(!row.contains("yusuf.rossi@example.com") && !row.contains("orders-db-eu-prod"), "{text}");

        // Narrower still: the line runs long rather than cut the rest.
        let text = table.render(Some(40));
        let row = text.lines().nth(1).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            [id, "completed", "2026-12-05T10:37:41Z", "yusuf.r…", "orders-…", "192.168.10.183"]
        );
    }

    #[test]
    fn wide_and_combining_characters_are_measured_as_a_terminal_shows_them() {
        let names = [
            "山田太郎",                       // two columns each
            "e\u{301}mile",                   // é as e and a combining accent: 5 columns
            "\u{1f469}\u{200d}\u{1f4bb} dev", // 👩‍💻, one emoji of two columns
            "plain",
        ];
        let mut table = Table::new(&[("USER", Cut), ("ROLE", Whole)]);
        for name in names {
            table.row(vec![name.into(), "analyst".into()]);
        }
        let text = table.render(None);
        // Aligned: ROLE starts at the same column on every line.
        let role_at: Vec<usize> = text
            .lines()
            .map(|line| line[..line.find("ROLE").or_else(|| line.find("analyst")).unwrap()].width())
            .collect();
        assert!(role_at.iter().all(|at| *at == role_at[0]), "{role_at:?}\n{text}");
        assert_eq!(role_at[0], "山田太郎".width() + 2);

        // Cut to columns, never mid-character, the accent kept with its letter.
        assert_eq!(prefix_within("山田太郎", 5), "山田");
        assert_eq!(prefix_within("e\u{301}mile", 1), "e\u{301}");
        let mut cut = String::new();
        push_fitted(&mut cut, "山田太郎さん", 8);
        assert_eq!((cut.as_str(), cut.width()), ("山田太… ", 8));
    }

    #[test]
    fn cells_are_printed_escaped() {
        let mut table = Table::new(&[("ID", Whole), ("USER", Cut)]);
        table.row(vec!["1".into(), "esc\u{1b}[31mred\u{1b}[0m\nsecond line\u{202e}\u{1f}".into()]);
        let text = table.render(None);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("esc\\x1b[31mred\\x1b[0m\\nsecond line\\u{202e}\\x1f"), "{text}");
        // A statement's `\n` is told from its line break; a user's `DOMAIN\user` reads as is.
        let mut table = Table::new(&[("USER", Cut), ("TEXT", Sql)]);
        table.row(vec!["DOMAIN\\user".into(), "select E'a\\nb'\nselect 1".into()]);
        let text = table.render(None);
        assert!(text.contains("DOMAIN\\user  select E'a\\\\nb'\\nselect 1"), "{text}");
    }

    #[test]
    fn json_rows_hold_counts_as_numbers_and_lists_as_arrays() {
        let columns = [("NAME", Cut), ("GRANTS", Count), ("GROUPS", List), ("LAST USED", Whole)];
        let mut table = Table::new(&columns).in_format(crate::cli::ListFormat::Jsonl);
        table.row(vec!["a".into(), "2".into(), list(&["dba".into(), "x,y".into()]), "-".into()]);
        table.row(vec!["b".into(), "0".into(), list(&[]), "2024-01-01T00:00:00Z".into()]);
        assert_eq!(
            table.render(None),
            "{\"grants\":2,\"groups\":[\"dba\",\"x,y\"],\"last_used\":null,\"name\":\"a\"}\n\
             {\"grants\":0,\"groups\":[],\"last_used\":\"2024-01-01T00:00:00Z\",\"name\":\"b\"}\n"
        );
        let mut table = Table::new(&columns);
        table.row(vec!["a".into(), "2".into(), list(&["dba".into(), "ops".into()]), "-".into()]);
        assert_eq!(table.render(None), "NAME  GRANTS  GROUPS   LAST USED\na     2       dba,ops  -\n");
    }

    #[test]
    fn empty_cells_keep_their_column() {
        let mut table = Table::new(&[("ID", Whole), ("NAME", Cut), ("ROLE", Whole)]);
        table.row(vec!["1".into(), String::new(), String::new()]);
        table.row(vec!["2".into(), String::new(), "admin".into()]);
        assert_eq!(table.render(None), "ID  NAME  ROLE\n1\n2         admin\n");
    }

    #[test]
    fn csv_rows_are_flat_and_quoted() {
        let session = serde_json::json!({
            "id": "s1",
            "duration": "3.5s",
            "user": {"formal": {
                "user": {"name": "O'Hara, \"Kim\"", "groups": ["dba", "sre"]},
                "endUser": {"id": "usr_2", "name": "Bob Smith", "groups": ["ops"]},
            }},
            "resource": {"name": "line\nbreak"},
            "connector": {"name": "=HYPERLINK(\"http://evil\",\"x\")"},
            "network": {"clientIpAddress": "@SUM(1)"},
        });
        let mut writer = RecordWriter::csv(Vec::new(), CSV_COLUMNS, false).unwrap();
        writer.write(&session).unwrap();
        writer.flush().unwrap();
        let RecordWriter::Csv(writer, ..) = writer else { unreachable!() };
        let bytes = writer.into_inner().unwrap();
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(header.len(), CSV_COLUMNS.len());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        let cell = |name: &str| rows[0][header.iter().position(|h| h == name).unwrap()].to_owned();
        assert_eq!(cell("id"), "s1");
        assert_eq!(cell("duration_seconds"), "3.5");
        assert_eq!(cell("user_name"), "O'Hara, \"Kim\"");
        assert_eq!(cell("user_groups"), "dba;sre");
        // An end user named by a machine, with no email, is still named.
        assert_eq!(
            (cell("end_user_id"), cell("end_user_name"), cell("end_user_email")),
            ("usr_2".into(), "Bob Smith".into(), String::new())
        );
        assert_eq!(cell("end_user_groups"), "ops");
        assert_eq!(cell("resource_name"), "line\nbreak");
        assert_eq!(cell("end_time"), "");
        assert_eq!(cell("connector_name"), "'=HYPERLINK(\"http://evil\",\"x\")");
        assert_eq!(cell("client_ip"), "'@SUM(1)");

        // For a terminal, what it would act on is written out, as in tables.
        let mut writer = RecordWriter::csv(Vec::new(), CSV_COLUMNS, true).unwrap();
        writer.write(&serde_json::json!({"id": "s\u{1b}]0;x\u{7}\u{202e}1"})).unwrap();
        let RecordWriter::Csv(writer, ..) = writer else { unreachable!() };
        let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        assert!(text.contains("s\\x1b]0;x\\x07\\u{202e}1"), "{text}");
    }

    #[test]
    fn json_lines_escape_what_a_terminal_would_act_on() {
        let value = serde_json::json!({"user": "a\u{1b}[31m\u{202e}b\u{85}c\u{1F600}", "n": 1});
        let line = json_line(&value);
        // Escapes for the controls and the override; the emoji as it is.
        assert_eq!(line, "{\"n\":1,\"user\":\"a\\u001b[31m\\u202eb\\u0085c\u{1F600}\"}");
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), value, "the same JSON to a reader");
    }
}
