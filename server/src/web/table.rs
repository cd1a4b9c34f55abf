//! A table as the pages show it (`templates/table.html` draws every one) and as its CSV download writes it: one
//! value for both, so a download holds exactly the numbers the page shows.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::export::csv::{guarded, BOM};

/// One column: its heading, and whether it holds numbers (set right-aligned, and written to a CSV as they are).
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub heading: String,
    pub numeric: bool,
}

impl Column {
    pub fn text(heading: impl Into<String>) -> Column {
        Column { heading: heading.into(), numeric: false }
    }

    pub fn number(heading: impl Into<String>) -> Column {
        Column { heading: heading.into(), numeric: true }
    }
}

/// One cell: its text, a link it may be, and whether it is shown as a tag (a triage state, a status).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cell {
    pub text: String,
    pub href: Option<String>,
    pub tag: bool,
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), ..Cell::default() }
    }

    pub fn number(number: i64) -> Cell {
        Cell::text(number.to_string())
    }

    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Cell {
        Cell { text: text.into(), href: Some(href.into()), tag: false }
    }

    pub fn tag(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), href: None, tag: true }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub caption: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    /// The first cell of each row names the row (a header cell, `scope="row"`).
    pub row_headers: bool,
}

impl Table {
    pub fn new(caption: impl Into<String>, columns: Vec<Column>) -> Table {
        Table { caption: caption.into(), columns, rows: Vec::new(), row_headers: false }
    }

    #[must_use]
    pub fn with_row_headers(mut self) -> Table {
        self.row_headers = true;
        self
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "a row has a cell for each column");
        self.rows.push(row);
    }

    /// Whether the column at `index` holds numbers (the template sets those right-aligned).
    pub fn numeric(&self, index: &usize) -> bool {
        self.columns.get(*index).is_some_and(|column| column.numeric)
    }

    /// Whether the cell at `index` of a row is the row's header.
    pub fn is_row_header(&self, index: &usize) -> bool {
        self.row_headers && *index == 0
    }

    /// The table as CSV: the headings, then each row's text, UTF-8 with a byte order mark so Excel reads it as such.
    /// A text cell a spreadsheet would take for a formula is written with a `'` first (`export::csv::guarded`).
    ///
    /// # Errors
    /// The CSV writer fails (it writes to memory, so only on a bug).
    pub fn csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut writer = csv::WriterBuilder::new().from_writer(BOM.to_vec());
        writer.write_record(self.columns.iter().map(|column| guarded(&column.heading).into_owned()))?;
        for row in &self.rows {
            writer.write_record(row.iter().zip(&self.columns).map(|(cell, column)| {
                if column.numeric {
                    cell.text.clone()
                } else {
                    guarded(&cell.text).into_owned()
                }
            }))?;
        }
        writer.into_inner().map_err(|error| csv::Error::from(error.into_error()))
    }

    /// The table as a CSV download named `file_name`.
    pub fn csv_download(&self, file_name: &str) -> Response {
        match self.csv() {
            Ok(bytes) => (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")),
                ],
                bytes,
            )
                .into_response(),
            Err(error) => super::page::PageError::internal(error.into()).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_holds_the_shown_text_with_formulas_defused_and_numbers_as_they_are() {
        let mut table = Table::new("Test", vec![Column::text("Area"), Column::number("Change")]);
        table.push(vec![Cell::link("=HYPERLINK(\"x\")", "/areas/1"), Cell::text("-3")]);
        table.push(vec![Cell::text("Stoke, \"central\"\nnorth"), Cell::number(4)]);
        let csv = String::from_utf8(table.csv().unwrap()).unwrap();
        assert_eq!(csv, "\u{feff}Area,Change\n\"'=HYPERLINK(\"\"x\"\")\",-3\n\"Stoke, \"\"central\"\"\nnorth\",4\n");
    }
}
