//! Output: tables that fit the terminal, and JSONL or CSV records written
//! as they come, so an export of any size runs in constant memory.

use std::io::Write;

use serde_json::Value;

/// A table printed with aligned columns. On a terminal, the widest columns
/// are cut (with `…`) until the table fits; piped output is never cut. The
/// first column is never cut: it names the row (an id or a prefix that other
/// commands take), and a cut one could not be copied.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    /// Adds a row; its cells are printed with control characters written out
    /// ([`gatehouse_core::display::printable`]): they hold what audited users typed, which a
    /// terminal would act on.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(|cell| gatehouse_core::display::printable(&cell).into_owned()).collect());
    }

    pub fn print(&self) -> std::io::Result<()> {
        let width = terminal_size::terminal_size().map(|(w, _)| w.0 as usize);
        std::io::stdout().lock().write_all(self.render(width).as_bytes())
    }

    fn render(&self, max_width: Option<usize>) -> String {
        let len = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| len(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(len(cell));
            }
        }
        if let Some(max) = max_width {
            let gaps = 2 * widths.len().saturating_sub(1);
            while widths.iter().sum::<usize>() + gaps > max {
                let (widest, w) =
                    widths.iter().enumerate().skip(1).max_by_key(|(_, w)| **w).map(|(i, w)| (i, *w)).unwrap_or((0, 0));
                if w <= 8 {
                    break;
                }
                widths[widest] = w - 1;
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| fit(cell, *w)).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

fn fit(cell: &str, width: usize) -> String {
    let count = cell.chars().count();
    if count <= width {
        format!("{cell:width$}")
    } else {
        let cut: String = cell.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The CSV columns: a name and the JSON pointer into the API's JSON form of a
/// session. The console's export (`console/export.js`) writes the same ones.
pub const CSV_COLUMNS: &[(&str, &str)] = &[
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
    ("end_user_email", "/user/formal/endUser/email"),
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

/// Writes records one at a time: JSON lines, or CSV with a header row.
/// (One writer per command: the CSV writer's size does not matter, so it is not boxed.)
#[allow(clippy::large_enum_variant)]
pub enum RecordWriter<W: Write> {
    Jsonl(W),
    Csv(csv::Writer<W>),
}

impl<W: Write> RecordWriter<W> {
    pub fn jsonl(out: W) -> Self {
        Self::Jsonl(out)
    }

    /// A CSV writer; the header row is written at once, so even an empty
    /// export says what its columns are.
    pub fn csv(out: W) -> anyhow::Result<Self> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(CSV_COLUMNS.iter().map(|(name, _)| *name))?;
        Ok(Self::Csv(writer))
    }

    pub fn write(&mut self, record: &Value) -> anyhow::Result<()> {
        match self {
            Self::Jsonl(out) => {
                serde_json::to_writer(&mut *out, record)?;
                out.write_all(b"\n")?;
            }
            Self::Csv(writer) => {
                writer.write_record(CSV_COLUMNS.iter().map(|(name, at)| defused(csv_cell(name, record.pointer(at)))))?
            }
        }
        Ok(())
    }

    /// Pushes what was written so far out, e.g. after each page.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Jsonl(out) => out.flush(),
            Self::Csv(writer) => writer.flush(),
        }
    }
}

/// One flat cell: strings as they are, lists joined with `;`, durations
/// (`"3.5s"` in JSON) as plain seconds.
fn csv_cell(column: &str, value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) if column == "duration_seconds" => text.trim_end_matches('s').to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => {
            items.iter().map(|item| csv_cell(column, Some(item))).collect::<Vec<_>>().join(";")
        }
        Some(other) => other.to_string(),
    }
}

/// A text a spreadsheet would run as a formula (a role named `=HYPERLINK(...)`, say) gets a
/// leading `'`, as OWASP advises for CSV files; the console's export does the same.
fn defused(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_widest_column_to_fit() {
        let mut table = Table::new(&["ID", "USER"]);
        table.row(vec!["1".into(), "alice.smith@example.com".into()]);
        let text = table.render(Some(20));
        assert!(text.lines().all(|l| l.chars().count() <= 20), "{text}");
        assert!(text.contains('…'));
        assert!(table.render(None).contains("alice.smith@example.com"));
    }

    #[test]
    fn the_first_column_is_never_cut() {
        let id = "01a24365-338e-7200-9c11-7bb3987f5ac9";
        let mut table = Table::new(&["ID", "USER", "ROLE"]);
        table.row(vec![id.into(), "alice.smith@example.com".into(), "a-very-long-role-name".into()]);
        for width in [20, 60, 80] {
            let text = table.render(Some(width));
            assert!(text.lines().nth(1).unwrap().starts_with(&format!("{id}  ")), "{width}: {text}");
        }
        assert!(table.render(Some(60)).contains('…'), "the others are cut instead");
    }

    #[test]
    fn cells_are_printed_escaped() {
        let mut table = Table::new(&["ID", "USER"]);
        table.row(vec!["1".into(), "esc\u{1b}[31mred\u{1b}[0m\nsecond line\u{202e}".into()]);
        let text = table.render(None);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("esc\\x1b[31mred\\x1b[0m\\nsecond line\\u{202e}"), "{text}");
    }

    #[test]
    fn csv_rows_are_flat_and_quoted() {
        let session = serde_json::json!({
            "id": "s1",
            "duration": "3.5s",
            "user": {"formal": {"user": {"name": "O'Hara, \"Kim\"", "groups": ["dba", "sre"]}}},
            "resource": {"name": "line\nbreak"},
            "connector": {"name": "=HYPERLINK(\"http://evil\",\"x\")"},
            "network": {"clientIpAddress": "@SUM(1)"},
        });
        let mut writer = RecordWriter::csv(Vec::new()).unwrap();
        writer.write(&session).unwrap();
        writer.flush().unwrap();
        let RecordWriter::Csv(writer) = writer else { unreachable!() };
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
        assert_eq!(cell("resource_name"), "line\nbreak");
        assert_eq!(cell("end_time"), "");
        assert_eq!(cell("connector_name"), "'=HYPERLINK(\"http://evil\",\"x\")");
        assert_eq!(cell("client_ip"), "'@SUM(1)");
    }
}
