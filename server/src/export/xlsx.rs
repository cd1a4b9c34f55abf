//! XLSX through `rust_xlsxwriter` in its constant-memory mode (each row goes to a temporary file as it is written,
//! so a sheet of a million rows never sits in memory), on a blocking thread: one sheet, a bold header row frozen
//! above the rows, numbers as numbers, true and false as Excel's booleans, and text as text (a cell written as a
//! string is never run as a formula, so nothing needs guarding). The file is then zipped straight into the response.

use rust_xlsxwriter::{Format, Workbook, XlsxError};

use super::{BlockingWriter, ByteSink, Column, Cut, Kind, Rows, Value};

/// The rows a sheet holds: 1,048,576, the first of them the header.
pub const MAX_DATA_ROWS: u64 = 1_048_575;

/// The longest text a cell holds, in characters; longer text is cut there.
const MAX_CELL_CHARS: usize = 32_767;

/// Whether `n_rows` rows fit in one sheet under the header.
///
/// # Errors
/// The number of rows, when they do not.
pub fn check_rows(n_rows: u64) -> Result<(), u64> {
    if n_rows <= MAX_DATA_ROWS {
        Ok(())
    } else {
        Err(n_rows)
    }
}

/// How wide a column is drawn, in characters.
fn width(column: &Column) -> f64 {
    match (column.name, column.kind) {
        ("text" | "rejection_message", _) => 60.0,
        ("id", _) => 37.0,
        (_, Kind::Text) => 20.0,
        _ => 12.0,
    }
}

fn failed(error: XlsxError) -> Cut {
    Cut::Failed(anyhow::Error::new(error).context("writing the XLSX file"))
}

/// Writes the sheet and the file; runs on a blocking thread.
fn write_blocking(
    columns: &[Column],
    rows: &mut Rows,
    sink: &mut ByteSink,
    runtime: &tokio::runtime::Handle,
) -> Result<(), Cut> {
    let mut workbook = Workbook::new();
    {
        let sheet = workbook.add_worksheet_with_constant_memory().map_err(failed)?;
        sheet.set_name("Insights").map_err(failed)?;
        let bold = Format::new().set_bold();
        for (at, column) in (0u16..).zip(columns) {
            sheet.set_column_width(at, width(column)).map_err(failed)?;
            sheet.write_string_with_format(0, at, column.name, &bold).map_err(failed)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(failed)?;
        let mut row_at: u32 = 0;
        while let Some(batch) = runtime.block_on(rows.next()) {
            if sink.is_closed() {
                return Err(Cut::ClientGone);
            }
            for row in batch? {
                row_at += 1;
                if u64::from(row_at) > MAX_DATA_ROWS {
                    return Err(Cut::Failed(anyhow::anyhow!("more rows than a sheet holds arrived after the count")));
                }
                for (at, value) in (0u16..).zip(&row.values) {
                    match value {
                        Value::Null => continue,
                        Value::Text(text) if text.chars().count() > MAX_CELL_CHARS => {
                            sheet.write_string(row_at, at, text.chars().take(MAX_CELL_CHARS).collect::<String>())
                        }
                        Value::Text(text) => sheet.write_string(row_at, at, text.as_ref()),
                        #[allow(clippy::cast_precision_loss)] // counts and scores far below 2^52
                        Value::Integer(number) => sheet.write_number(row_at, at, *number as f64),
                        Value::Real(number) => sheet.write_number(row_at, at, *number),
                        Value::Boolean(flag) => sheet.write_boolean(row_at, at, *flag),
                    }
                    .map_err(failed)?;
                }
            }
        }
    }
    match workbook.save_to_writer(BlockingWriter(sink)) {
        Ok(()) => Ok(()),
        Err(_) if sink.is_closed() => Err(Cut::ClientGone),
        Err(error) => Err(failed(error)),
    }
}

/// Writes `rows` as a sheet of `columns`, handing the sink back to be finished (on failure it is dropped, and the
/// client sees the download fail).
///
/// # Errors
/// The rows cannot be read, the file cannot be written, or the client stopped reading.
pub async fn write(columns: &'static [Column], mut rows: Rows, mut sink: ByteSink) -> Result<ByteSink, Cut> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || write_blocking(columns, &mut rows, &mut sink, &runtime).map(|()| sink))
        .await
        .map_err(|panicked| Cut::Failed(anyhow::anyhow!("the XLSX writer stopped: {panicked}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sheet_holds_rows_up_to_excels_limit_under_its_header() {
        assert_eq!(check_rows(0), Ok(()));
        assert_eq!(check_rows(1_048_575), Ok(()));
        assert_eq!(check_rows(1_048_576), Err(1_048_576));
        assert_eq!(check_rows(u64::MAX), Err(u64::MAX));
    }
}
