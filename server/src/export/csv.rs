//! CSV that Excel and Power BI open right: UTF-8 (with a byte-order mark when asked, which is how Excel knows it is
//! UTF-8), a header row of the column names, records ended by CRLF (RFC 4180), every field quoted as needed by the
//! `csv` crate so commas, quotes and line breaks inside text survive, and text that a spreadsheet would run as a
//! formula written with a `'` before it.

use std::borrow::Cow;

use super::{ByteSink, Column, Cut, Rows, Value};

/// The UTF-8 byte-order mark.
pub const BOM: &[u8] = "\u{feff}".as_bytes();

/// A text cell a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, a tab or a carriage return first) is
/// written with a `'` before it, so opening the file runs nothing. Numbers are numbers and left alone: `-2.17` is a
/// longitude, not a formula.
#[must_use]
pub fn guarded(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

/// Where numbers are spelt (a million rows hold a few million numbers: none is an allocation of its own).
#[derive(Default)]
struct Scratch {
    text: String,
    integer: itoa::Buffer,
    real: ryu::Buffer,
}

/// A value as a CSV field.
fn field<'a>(value: &'a Value, scratch: &'a mut Scratch) -> Cow<'a, str> {
    match value {
        Value::Null => "".into(),
        Value::Text(text) => guarded(text),
        Value::Integer(number) => scratch.integer.format(*number).into(),
        Value::Real(number) => real(*number, scratch).into(),
        Value::Boolean(flag) => if *flag { "true" } else { "false" }.into(),
    }
}

/// The shortest text that reads back as the same number, spelt as Rust's `Display` spells it (`12`, not `12.0`;
/// `0.0000001`, not `1e-7`): `ryu` finds the digits three times faster, and the rare number it writes with an
/// exponent is written again by `Display`.
fn real(number: f64, scratch: &mut Scratch) -> &str {
    let digits = scratch.real.format(number);
    if digits.contains('e') {
        use std::fmt::Write as _;
        scratch.text.clear();
        let _ = write!(scratch.text, "{number}");
        return &scratch.text;
    }
    digits.strip_suffix(".0").unwrap_or(digits)
}

fn writer(out: &mut Vec<u8>) -> csv::Writer<&mut Vec<u8>> {
    csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(out)
}

fn failed(error: impl Into<anyhow::Error>) -> Cut {
    Cut::Failed(error.into().context("writing CSV"))
}

/// Writes `rows` under a header of `columns`.
///
/// # Errors
/// The rows cannot be read, or the client stopped reading.
pub async fn write(columns: &'static [Column], mut rows: Rows, sink: &mut ByteSink, bom: bool) -> Result<(), Cut> {
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice(BOM);
    }
    {
        let mut csv = writer(&mut out);
        csv.write_record(columns.iter().map(|column| column.name)).map_err(failed)?;
        csv.flush().map_err(failed)?;
    }
    sink.write(&out).await?;
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        out.clear();
        {
            let mut csv = writer(&mut out);
            let mut scratch = Scratch::default();
            for row in &batch {
                for value in &row.values {
                    csv.write_field(field(value, &mut scratch).as_bytes()).map_err(failed)?;
                }
                csv.write_record(None::<&[u8]>).map_err(failed)?;
            }
            csv.flush().map_err(failed)?;
        }
        sink.write(&out).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{byte_channel, columns::Kind, Row};
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn text_arrives_intact_whatever_it_holds() {
        const COLUMNS: [Column; 2] =
            [Column { name: "text", kind: Kind::Text }, Column { name: "n", kind: Kind::Integer }];
        let texts = ["a, b", "she said \"run\"", "one\ntwo\r\nthree", "Mae'r plant; ŵyr", ""];
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let producer = tokio::spawn(async move {
            let rows = texts.iter().map(|text| (*text).to_owned()).collect();
            sender.send(Ok(rows)).await?;
            Ok(())
        });
        let (rows, _) = Rows::new(receiver, producer, |text: String| {
            Some(Row { values: vec![Value::Text(text.into()), Value::Integer(-1)], point: None })
        });
        let (mut sink, chunks) = byte_channel();
        write(&COLUMNS, rows, &mut sink, true).await.unwrap();
        sink.finish().await.unwrap();
        let bytes: Vec<u8> = chunks.into_stream().map(Result::unwrap).concat().await;
        assert!(bytes.starts_with(BOM) && bytes.ends_with(b"\r\n"));
        let mut reader = ::csv::Reader::from_reader(&bytes[BOM.len()..]);
        assert_eq!(reader.headers().unwrap(), vec!["text", "n"]);
        let read: Vec<Vec<String>> =
            reader.records().map(|record| record.unwrap().iter().map(str::to_owned).collect()).collect();
        let expected: Vec<Vec<String>> = texts.iter().map(|text| vec![(*text).to_owned(), "-1".to_owned()]).collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn formula_looking_text_is_guarded_and_numbers_are_not() {
        assert_eq!(guarded("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        for risky in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(guarded(risky).starts_with('\''), "{risky:?}");
        }
        assert_eq!(guarded("dealing outside the chip shop"), "dealing outside the chip shop");
        let mut scratch = Scratch::default();
        assert_eq!(field(&Value::Real(-2.16979), &mut scratch), "-2.16979");
        assert_eq!(field(&Value::Integer(-3), &mut scratch), "-3");
        assert_eq!(field(&Value::Real(52.900000000000006), &mut scratch), "52.900000000000006");
    }

    #[test]
    fn a_real_is_spelt_as_display_spells_it() {
        let mut scratch = Scratch::default();
        for number in [
            0.0,
            -0.0,
            12.0,
            -2.16979,
            52.900000000000006,
            0.1 + 0.2,
            1e-7,
            1.5e-9,
            1e16,
            2.5e300,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            assert_eq!(real(number, &mut scratch), number.to_string(), "{number:e}");
        }
    }
}
