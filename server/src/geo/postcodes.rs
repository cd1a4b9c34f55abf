//! Reading a postcode-centroid file: an ONS Postcode Directory CSV (or any CSV with its `pcds`, `lat` and `long`
//! columns), for insights located by postcode when there is no GPS fix (docs/geotagging.md).

use std::collections::HashMap;
use std::io::Read;

use crate::store::normalise_postcode;

/// The latitude the ONS Postcode Directory gives a postcode it has no position for (with longitude 0).
pub const ONS_NO_POSITION_LATITUDE: f64 = 99.999_999;

/// What a postcode file held.
#[derive(Debug, Default, PartialEq)]
pub struct PostcodeFile {
    /// Normalised postcode, latitude, longitude: one row per postcode, in the order the file first gives them.
    pub rows: Vec<(String, f64, f64)>,
    /// Rows the directory gives no position for (the ONS marks them with latitude 99.999999): left out.
    pub without_position: usize,
    /// Rows that repeat a postcode given earlier in the file with the same position: counted once.
    pub duplicates: usize,
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
    #[error(
        "line {line}: {postcode} has latitude {lat}, longitude {lon}, outside WGS84 (latitude -90 to 90, longitude \
         -180 to 180); only the ONS marker of a postcode without a position (latitude 99.999999) is left out"
    )]
    OutOfRange { line: u64, postcode: String, lat: f64, lon: f64 },
    #[error(
        "line {line}: {postcode} is also on line {first_line} with another position ({first_lat}, {first_lon} there, \
         {lat}, {lon} here); the file cannot say which is right"
    )]
    ConflictingDuplicate {
        line: u64,
        first_line: u64,
        postcode: String,
        first_lat: f64,
        first_lon: f64,
        lat: f64,
        lon: f64,
    },
}

impl PostcodeFileError {
    /// The stable code for scripts.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            PostcodeFileError::NotCsv(_) => "postcodes_unreadable",
            PostcodeFileError::MissingColumn(_) => "postcodes_column_missing",
            PostcodeFileError::BadRow { .. } => "postcodes_row_invalid",
            PostcodeFileError::OutOfRange { .. } => "postcodes_position_out_of_range",
            PostcodeFileError::ConflictingDuplicate { .. } => "postcodes_duplicate_conflict",
        }
    }
}

/// Reads every row, or refuses the file at its first bad row (naming the line). A postcode given twice with the
/// same position is kept once and counted in `duplicates`; given twice with different positions, the file is
/// refused, naming both lines (an operator would not want either silently chosen).
///
/// # Errors
/// Not CSV, a missing column, a row whose postcode or coordinates cannot be read, a position outside WGS84 other
/// than the ONS marker for "no position", or a postcode given twice with different positions.
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
    // Each postcode's first line and index in `file.rows`, to tell a repeated row from a conflicting one.
    let mut seen: HashMap<String, (u64, usize)> = HashMap::new();
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
        if (lat - ONS_NO_POSITION_LATITUDE).abs() < 1e-9 {
            file.without_position += 1;
            continue;
        }
        // A negated range check, so NaN is refused too.
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(PostcodeFileError::OutOfRange { line, postcode: postcode.to_owned(), lat, lon });
        }
        let postcode = normalise_postcode(postcode);
        if let Some(&(first_line, index)) = seen.get(&postcode) {
            let (_, first_lat, first_lon) = file.rows[index];
            if (first_lat, first_lon) == (lat, lon) {
                file.duplicates += 1;
                continue;
            }
            return Err(PostcodeFileError::ConflictingDuplicate {
                line,
                first_line,
                postcode,
                first_lat,
                first_lon,
                lat,
                lon,
            });
        }
        seen.insert(postcode.clone(), (line, file.rows.len()));
        file.rows.push((postcode, lat, lon));
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
        assert_eq!(file.duplicates, 0);
    }

    #[test]
    fn a_repeated_row_is_kept_once_and_counted_and_a_conflicting_one_refuses_the_file() {
        let repeated = "pcds,lat,long\nST4 2DE,53.003,-2.179\nST5 1AA,53.0,-2.2\nst42de,53.003,-2.179\n";
        let file = read_postcodes(repeated.as_bytes()).unwrap();
        assert_eq!(file.rows.len(), 2);
        assert_eq!(file.duplicates, 1);
        let conflicting = "pcds,lat,long\nST4 2DE,53.003,-2.179\nST5 1AA,53.0,-2.2\nST4 2DE,52.9,-2.179\n";
        let error = read_postcodes(conflicting.as_bytes()).unwrap_err();
        assert_eq!(error.code(), "postcodes_duplicate_conflict");
        assert!(error.to_string().starts_with("line 4: ST4 2DE is also on line 2"), "{error}");
    }

    #[test]
    fn a_position_outside_wgs84_is_refused_naming_its_line_but_the_ons_marker_is_left_out() {
        for (bad, line) in
            [("ST4 2DE,95,-2.1", 3), ("ST4 2DE,53,181", 3), ("ST4 2DE,NaN,-2.1", 3), ("ST4 2DE,-91,0", 3)]
        {
            let csv = format!("pcds,lat,long\nST5 1AA,53.0,-2.2\n{bad}\n");
            let error = read_postcodes(csv.as_bytes()).unwrap_err();
            assert_eq!(error.code(), "postcodes_position_out_of_range", "{bad}");
            assert!(error.to_string().starts_with(&format!("line {line}: ST4 2DE has latitude")), "{error}");
        }
        let marker = read_postcodes("pcds,lat,long\nZZ9 9ZZ,99.999999,0.000000\n".as_bytes()).unwrap();
        assert_eq!((marker.rows.len(), marker.without_position), (0, 1));
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
