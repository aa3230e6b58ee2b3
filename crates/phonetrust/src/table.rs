//! Plain-text tables for the `show` and `list` commands: each column as wide as its
//! widest cell (so long names never run into the next column), two spaces between
//! columns, no trailing blanks. Dates in tables are `2026-12-01T10:00:00Z`
//! ([`phonetrust_store::model::format_time`]) everywhere.

/// A table being built.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row (missing cells are empty, extra cells are dropped).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rendered table, one line per row after the heading.
    pub(crate) fn render(&self) -> String {
        let n = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let mut l = String::new();
            for (i, w) in width.iter().enumerate() {
                let cell = line.get(i).map(String::as_str).unwrap_or("");
                l.push_str(cell);
                if i + 1 < n {
                    l.push_str(&" ".repeat(w - cell.chars().count() + 2));
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_never_overlap() {
        let mut t = Table::new(&["Trust Store", "Name", "Expiration"]);
        t.row(vec![
            "CallManager-trust".into(),
            "a-very-long-certificate-name-from-a-public-ca-that-goes-on.pem".into(),
            "2030-01-01T00:00:00Z".into(),
        ]);
        t.row(vec![
            "CAPF-trust".into(),
            "x.pem".into(),
            "2031-01-01T00:00:00Z".into(),
        ]);
        let s = t.render();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3);
        // The third column starts at the same place on every line, after the longest name.
        let at: Vec<usize> = lines.iter().map(|l| l.rfind("  ").unwrap() + 2).collect();
        assert!(at.iter().all(|&a| a == at[0]), "{s}");
        assert!(lines[1].contains("goes-on.pem  2030"), "{s}");
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
    }
}
