//! GeoJSON (RFC 7946): one `FeatureCollection`, written a feature at a time, a feature a line. Each feature is a
//! point in WGS 84 longitude, latitude (the GPS fix, else the point the insight is tagged by), or a `null` geometry
//! when the insight has neither; its properties are the export's columns, in their order.

use super::{ByteSink, Column, Cut, Row, Rows, Value};

const HEAD: &[u8] = b"{\"type\":\"FeatureCollection\",\"features\":[\n";
const TAIL: &[u8] = b"\n]}\n";

/// A value as JSON (a number that is not finite, which no column holds, would be `null`).
fn push_value(out: &mut Vec<u8>, value: &Value) -> serde_json::Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Text(text) => serde_json::to_writer(&mut *out, text)?,
        Value::Integer(number) => serde_json::to_writer(&mut *out, number)?,
        Value::Real(number) => serde_json::to_writer(&mut *out, number)?,
        Value::Boolean(flag) => serde_json::to_writer(&mut *out, flag)?,
    }
    Ok(())
}

/// One feature, without a separator.
fn push_feature(out: &mut Vec<u8>, columns: &[Column], row: &Row) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"type\":\"Feature\",\"geometry\":");
    match row.point {
        Some((lon, lat)) => {
            out.extend_from_slice(b"{\"type\":\"Point\",\"coordinates\":[");
            serde_json::to_writer(&mut *out, &lon)?;
            out.push(b',');
            serde_json::to_writer(&mut *out, &lat)?;
            out.extend_from_slice(b"]}");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"properties\":{");
    for (index, (column, value)) in columns.iter().zip(&row.values).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, column.name)?;
        out.push(b':');
        push_value(out, value)?;
    }
    out.extend_from_slice(b"}}");
    Ok(())
}

/// Writes `rows` as a feature collection of `columns`.
///
/// # Errors
/// The rows cannot be read, or the client stopped reading.
pub async fn write(columns: &'static [Column], mut rows: Rows, sink: &mut ByteSink) -> Result<(), Cut> {
    sink.write(HEAD).await?;
    let mut first = true;
    let mut out = Vec::new();
    while let Some(batch) = rows.next().await {
        out.clear();
        for row in batch? {
            if !first {
                out.extend_from_slice(b",\n");
            }
            first = false;
            push_feature(&mut out, columns, &row).map_err(|error| Cut::Failed(error.into()))?;
        }
        sink.write(&out).await?;
    }
    sink.write(TAIL).await
}

#[cfg(test)]
mod tests {
    use super::super::columns::Kind;
    use super::*;

    #[test]
    fn a_feature_is_a_point_or_null_with_its_properties_in_order() {
        let columns = [Column { name: "text", kind: Kind::Text }, Column { name: "n", kind: Kind::Integer }];
        let mut out = Vec::new();
        let row = Row { values: vec![Value::Text("a \"quote\"\nline".into()), Value::Null], point: Some((-2.5, 53.0)) };
        push_feature(&mut out, &columns, &row).unwrap();
        let feature: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(feature["geometry"]["coordinates"], serde_json::json!([-2.5, 53.0]));
        assert_eq!(feature["properties"]["text"], "a \"quote\"\nline");
        assert!(feature["properties"]["n"].is_null());
        out.clear();
        push_feature(&mut out, &columns, &Row { point: None, ..row }).unwrap();
        assert!(serde_json::from_slice::<serde_json::Value>(&out).unwrap()["geometry"].is_null());
    }
}
