//! Rows as PostgreSQL's binary `COPY … TO STDOUT (FORMAT binary)` sends them: one message a row, each a 16-bit
//! field count, then each field's 32-bit length (-1 for NULL) and its bytes in the type's binary form; the first
//! message begins with the header, the last is the trailer (a field count of -1). A PostgreSQL export reads its
//! insights and what lies beside them so: a row of sqlx's costs a row description, a range per column and a type
//! check per value, which for a million rows was a quarter of the server's work (docs/benchmarks.md, issue 18).

use anyhow::{bail, ensure, Context};
use time::OffsetDateTime;
use uuid::Uuid;

use super::postgres::Columns;

/// What a binary `COPY` begins with.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// One row's fields, read in order.
pub(super) struct Tuple<'a> {
    bytes: &'a [u8],
    fields_left: i16,
}

/// Takes `n` bytes off the front of `bytes`.
fn take<'a>(bytes: &mut &'a [u8], n: usize) -> anyhow::Result<&'a [u8]> {
    ensure!(bytes.len() >= n, "a binary COPY message ended inside a value");
    let (taken, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(taken)
}

fn array<const N: usize>(bytes: &[u8]) -> anyhow::Result<[u8; N]> {
    bytes.try_into().with_context(|| format!("a binary COPY value of {} bytes where {N} were expected", bytes.len()))
}

impl<'a> Tuple<'a> {
    /// The row `message` holds, after the header when it is the `first` message; `None` when it holds no row (the
    /// header alone, or the trailer).
    pub(super) fn of(mut message: &'a [u8], first: bool) -> anyhow::Result<Option<Tuple<'a>>> {
        if first {
            ensure!(message.starts_with(SIGNATURE), "a binary COPY that does not begin with its signature");
            take(&mut message, SIGNATURE.len() + 4)?; // the signature and the flags (none are defined that matter)
            let extension = u32::from_be_bytes(array(take(&mut message, 4)?)?);
            take(&mut message, usize::try_from(extension)?)?;
            if message.is_empty() {
                return Ok(None);
            }
        }
        let fields = i16::from_be_bytes(array(take(&mut message, 2)?)?);
        if fields == -1 {
            return Ok(None);
        }
        ensure!(fields >= 0, "a binary COPY row of {fields} fields");
        Ok(Some(Tuple { bytes: message, fields_left: fields }))
    }

    /// The next field's bytes; `None` for NULL.
    fn field(&mut self) -> anyhow::Result<Option<&'a [u8]>> {
        ensure!(self.fields_left > 0, "a binary COPY row has fewer fields than read");
        self.fields_left -= 1;
        let length = i32::from_be_bytes(array(take(&mut self.bytes, 4)?)?);
        if length < 0 {
            return Ok(None);
        }
        Ok(Some(take(&mut self.bytes, usize::try_from(length)?)?))
    }

    /// The next field, which is not NULL, read by `read`.
    fn required<T>(&mut self, read: fn(&mut Self) -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
        read(self)?.context("a binary COPY value is NULL where none may be")
    }

    pub(super) fn int8(&mut self) -> anyhow::Result<Option<i64>> {
        self.field()?.map(|bytes| Ok(i64::from_be_bytes(array(bytes)?))).transpose()
    }

    pub(super) fn int8_required(&mut self) -> anyhow::Result<i64> {
        self.required(Self::int8)
    }

    pub(super) fn int2(&mut self) -> anyhow::Result<Option<i16>> {
        self.field()?.map(|bytes| Ok(i16::from_be_bytes(array(bytes)?))).transpose()
    }

    pub(super) fn float8(&mut self) -> anyhow::Result<Option<f64>> {
        self.field()?.map(|bytes| Ok(f64::from_be_bytes(array(bytes)?))).transpose()
    }

    pub(super) fn uuid(&mut self) -> anyhow::Result<Option<Uuid>> {
        self.field()?.map(|bytes| Ok(Uuid::from_bytes(array(bytes)?))).transpose()
    }

    pub(super) fn int4(&mut self) -> anyhow::Result<Option<i32>> {
        self.field()?.map(|bytes| Ok(i32::from_be_bytes(array(bytes)?))).transpose()
    }

    pub(super) fn boolean(&mut self) -> anyhow::Result<Option<bool>> {
        self.field()?.map(|bytes| Ok(array::<1>(bytes)?[0] != 0)).transpose()
    }

    pub(super) fn boolean_required(&mut self) -> anyhow::Result<bool> {
        self.required(Self::boolean)
    }

    pub(super) fn text(&mut self) -> anyhow::Result<Option<String>> {
        self.field()?.map(|bytes| Ok(std::str::from_utf8(bytes)?.to_owned())).transpose()
    }

    pub(super) fn text_required(&mut self) -> anyhow::Result<String> {
        self.required(Self::text)
    }

    /// A `timestamptz`: microseconds since 2000-01-01 00:00 UTC.
    pub(super) fn timestamptz(&mut self) -> anyhow::Result<Option<OffsetDateTime>> {
        const POSTGRES_EPOCH: OffsetDateTime = time::macros::datetime!(2000-01-01 00:00 UTC);
        self.int8()?
            .map(|micros| {
                POSTGRES_EPOCH
                    .checked_add(time::Duration::microseconds(micros))
                    .with_context(|| format!("a timestamptz of {micros} µs past 2000 is out of range"))
            })
            .transpose()
    }

    /// Whether every field was read.
    pub(super) fn finish(self) -> anyhow::Result<()> {
        if self.fields_left != 0 || !self.bytes.is_empty() {
            bail!("a binary COPY row has more fields than read");
        }
        Ok(())
    }
}

/// A binary `COPY` row is read front to back: each column where its position says it is.
impl Columns for Tuple<'_> {
    fn int8(&mut self, _: usize) -> anyhow::Result<Option<i64>> {
        Tuple::int8(self)
    }
    fn int2(&mut self, _: usize) -> anyhow::Result<Option<i16>> {
        Tuple::int2(self)
    }
    fn float8(&mut self, _: usize) -> anyhow::Result<Option<f64>> {
        Tuple::float8(self)
    }
    fn text(&mut self, _: usize) -> anyhow::Result<Option<String>> {
        Tuple::text(self)
    }
    fn uuid(&mut self, _: usize) -> anyhow::Result<Option<Uuid>> {
        Tuple::uuid(self)
    }
    fn timestamptz(&mut self, _: usize) -> anyhow::Result<Option<OffsetDateTime>> {
        Tuple::timestamptz(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary COPY message of `fields` (`None` for NULL), after the header when `first`.
    fn message(first: bool, fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        if first {
            bytes.extend_from_slice(SIGNATURE);
            bytes.extend_from_slice(&0u32.to_be_bytes());
            bytes.extend_from_slice(&3u32.to_be_bytes());
            bytes.extend_from_slice(b"ext");
        }
        bytes.extend_from_slice(&i16::try_from(fields.len()).unwrap().to_be_bytes());
        for field in fields {
            match field {
                Some(value) => {
                    bytes.extend_from_slice(&i32::try_from(value.len()).unwrap().to_be_bytes());
                    bytes.extend_from_slice(value);
                }
                None => bytes.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        bytes
    }

    #[test]
    fn a_row_is_read_field_by_field_after_the_header() {
        let id = Uuid::new_v4();
        let micros: i64 = 818_121_600_000_000; // 2025-12-04 00:00 UTC
        let first = message(
            true,
            &[
                Some(&42i64.to_be_bytes()),
                Some(id.as_bytes()),
                Some("Mae'r plant, \"ŵyr\"".as_bytes()),
                None,
                Some(&(-2.5f64).to_be_bytes()),
                Some(&(-300i16).to_be_bytes()),
                Some(&[1]),
                Some(&micros.to_be_bytes()),
                Some(&7i32.to_be_bytes()),
            ],
        );
        let mut tuple = Tuple::of(&first, true).unwrap().unwrap();
        assert_eq!(tuple.int8_required().unwrap(), 42);
        assert_eq!(tuple.uuid().unwrap(), Some(id));
        assert_eq!(tuple.text().unwrap().as_deref(), Some("Mae'r plant, \"ŵyr\""));
        assert_eq!(tuple.text().unwrap(), None);
        assert_eq!(tuple.float8().unwrap(), Some(-2.5));
        assert_eq!(tuple.int2().unwrap(), Some(-300));
        assert!(tuple.boolean_required().unwrap());
        assert_eq!(tuple.timestamptz().unwrap(), Some(time::macros::datetime!(2025-12-04 00:00 UTC)));
        assert_eq!(tuple.int4().unwrap(), Some(7));
        tuple.finish().unwrap();

        let next = message(false, &[None]);
        let mut tuple = Tuple::of(&next, false).unwrap().unwrap();
        assert!(tuple.int8_required().is_err(), "NULL where none may be");
        assert!(Tuple::of(&(-1i16).to_be_bytes(), false).unwrap().is_none(), "the trailer");
        let header_alone = &first[..SIGNATURE.len() + 11];
        assert!(Tuple::of(header_alone, true).unwrap().is_none(), "a header alone");
        assert!(Tuple::of(&next, true).is_err(), "a first message without the signature");
    }

    #[test]
    fn a_row_that_is_not_what_was_asked_is_an_error_not_a_guess() {
        let row = message(false, &[Some(&42i32.to_be_bytes()), Some(b"x")]);
        assert!(Tuple::of(&row, false).unwrap().unwrap().int8().is_err(), "four bytes are no int8");
        let mut tuple = Tuple::of(&row, false).unwrap().unwrap();
        tuple.int4().unwrap();
        assert!(tuple.finish().is_err(), "a field left unread");
        let mut tuple = Tuple::of(&row, false).unwrap().unwrap();
        tuple.int4().unwrap();
        tuple.text().unwrap();
        assert!(tuple.text().is_err(), "more fields read than the row has");
        assert!(Tuple::of(&row[..row.len() - 1], false).unwrap().unwrap().int4().is_ok());
        let mut cut = Tuple::of(&row[..row.len() - 1], false).unwrap().unwrap();
        cut.int4().unwrap();
        assert!(cut.text().is_err(), "a message that ends inside a value");
        let not_utf8 = message(false, &[Some(&[0xff, 0xfe])]);
        assert!(Tuple::of(&not_utf8, false).unwrap().unwrap().text().is_err());
    }
}
