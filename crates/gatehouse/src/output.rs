//! Terminal output: tables that fit the terminal.

/// A table printed with aligned columns. On a terminal, the widest columns
/// are cut (with `…`) until the table fits; piped output is never cut.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let width = terminal_size::terminal_size().map(|(w, _)| w.0 as usize);
        print!("{}", self.render(width));
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
                    widths.iter().enumerate().max_by_key(|(_, w)| **w).map(|(i, w)| (i, *w)).unwrap_or((0, 0));
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
}
