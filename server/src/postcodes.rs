//! Reading a postcode-centroid file: an ONS Postcode Directory CSV (or any CSV with its `pcds`, `lat` and `long`
//! columns), for insights located by postcode when there is no GPS fix (docs/geotagging.md).

use std::io::Read;

use crate::store::normalise_postcode;

/// What a postcode file held.
#[derive(Debug, Default, PartialEq)]
pub struct PostcodeFile {
    /// Normalised postcode, latitude, longitude.
    pub rows: Vec<(String, f64, f64)>,
    /// Rows the directory gives no position for (the ONS marks them with latitude 99.999999): left out.
    pub without_position: usize,
}

/// Why a postcode file was refused; nothing of it is imported.
#[derive(Debug, thiserror::Error)]
pub enum PostcodeFileError {
    #[error("the file is not CSV: {0}")]
    NotCsv(#[from] csv::Error),
    #[error("the header has no '{0}' column (an ONS Postcode Directory CSV has pcds, lat and long)")]
    MissingColumn(&'static str),
    #[error("line {line}: {message}")]
    BadRow { line: u64, message: String },
}

impl PostcodeFileError {
    /// The stable code for scripts.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            PostcodeFileError::NotCsv(_) => "postcodes_unreadable",
            PostcodeFileError::MissingColumn(_) => "postcodes_column_missing",
            PostcodeFileError::BadRow { .. } => "postcodes_row_invalid",
        }
    }
}

/// Reads every row, or refuses the file at its first bad row (naming the line).
///
/// # Errors
/// Not CSV, a missing column, or a row whose postcode or coordinates cannot be read.
pub fn read_postcodes(input: impl Read) -> Result<PostcodeFile, PostcodeFileError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers = reader.headers()?.clone();
    let column = |name: &'static str| {
        headers
            .iter()
            .position(|header| header.trim().eq_ignore_ascii_case(name))
            .ok_or(PostcodeFileError::MissingColumn(name))
    };
    let (postcode_at, lat_at, lon_at) = (column("pcds")?, column("lat")?, column("long")?);
    let mut file = PostcodeFile::default();
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, csv::Position::line);
        let field = |at: usize| record.get(at).unwrap_or("").trim();
        let bad = |message: String| PostcodeFileError::BadRow { line, message };
        let postcode = field(postcode_at);
        if postcode.is_empty() {
            return Err(bad("no postcode".into()));
        }
        let number = |at: usize, what: &str| {
            field(at).parse::<f64>().map_err(|_| bad(format!("{what} '{}' of {postcode} is not a number", field(at))))
        };
        let (lat, lon) = (number(lat_at, "latitude")?, number(lon_at, "longitude")?);
        if lat > 90.0 {
            file.without_position += 1;
            continue;
        }
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(bad(format!("{postcode} has no valid WGS84 position ({lat}, {lon})")));
        }
        file.rows.push((normalise_postcode(postcode), lat, lon));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ons_extract_reads_and_rows_without_a_position_are_left_out() {
        let csv = "pcd,pcd2,pcds,dointr,lat,long\n\
                   ST4 2DE,ST4  2DE,ST4 2DE,198001,53.003,-2.179\n\
                   ST17 4AB,ST17 4AB,st174ab,198001,52.80,-2.11\n\
                   ZZ9 9ZZ,ZZ9  9ZZ,ZZ9 9ZZ,198001,99.999999,0.000000\n";
        let file = read_postcodes(csv.as_bytes()).unwrap();
        assert_eq!(file.rows, vec![("ST4 2DE".to_owned(), 53.003, -2.179), ("ST17 4AB".to_owned(), 52.80, -2.11)]);
        assert_eq!(file.without_position, 1);
    }

    #[test]
    fn a_bad_file_is_refused_naming_what_is_wrong() {
        let missing = read_postcodes("postcode,lat,long\nST4 2DE,53,-2\n".as_bytes()).unwrap_err();
        assert_eq!(missing.code(), "postcodes_column_missing");
        assert!(missing.to_string().contains("'pcds'"));
        let bad = read_postcodes("pcds,lat,long\nST4 2DE,53,-2\nST5 1AA,north,-2\n".as_bytes()).unwrap_err();
        assert_eq!(bad.code(), "postcodes_row_invalid");
        assert!(bad.to_string().starts_with("line 3:"), "{bad}");
    }
}
