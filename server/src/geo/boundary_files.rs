//! Boundary files: reading GeoJSON, KML, KMZ and police.uk boundaries into areas, repairing what is safe to repair,
//! refusing what is not, and reporting overlaps and gaps between the areas.
//!
//! This module reads and checks; it writes nothing. The `grapevine boundaries import` command calls it and stores the
//! result, so an import is all or nothing: these functions return every area of the file, or an error naming the
//! first feature that could not be read.
//!
//! # API
//! - `read_boundary_file(path: &Path, options: &ReadOptions) -> Result<ImportedAreas, BoundaryFileError>` reads a
//!   file (with a progress bar on stderr when `options.progress` is set).
//! - `read_boundary_bytes(bytes: &[u8], name_hint: &str, options: &ReadOptions) -> Result<ImportedAreas, _>` does
//!   the same from memory; `name_hint` is the file name, used to detect the format and as the police.uk code.
//! - `detect(name_hint: &str, bytes: &[u8]) -> Option<BoundaryFormat>`: content first (a zip is KMZ, `<` is KML,
//!   `[` is police.uk, `{` is GeoJSON), then the extension. `ReadOptions::format` overrides it;
//!   `BoundaryFormat` parses from `geojson`, `kml`, `kmz` and `police-uk`.
//! - `ReadOptions { format, code_field, name_field, progress }` (all optional; `Default` detects everything).
//! - `ImportedAreas { format, areas: Vec<Area>, report: ValidationReport }`, the areas (`boundaries::Area`) in file
//!   order, ready for `Boundaries::new`.
//! - `ValidationReport { repairs: Vec<Repair>, normalisations: Vec<Repair>, overlaps: Vec<Overlap>, gaps: Vec<Gap>,
//!   n_slivers }`; its `Display` is the readable report. `Repair { feature_index, code, name, kind: RepairKind }`
//!   (`RepairKind::area_changed_m2`, `is_normalisation`), `Overlap { code_a, code_b, size_m2 }`,
//!   `Gap { size_m2, point, neighbours }`. Sizes are geodesic square metres on the WGS84 ellipsoid.
//! - `BoundaryFileError`, whose messages name the feature (`FeatureRef`: index, and code and name when known) and
//!   whose `code()` is one of `boundary_unreadable`, `boundary_format_unknown`, `boundary_feature_invalid`,
//!   `boundary_coordinates_out_of_range`, `boundary_code_missing`, `boundary_name_missing`,
//!   `boundary_code_duplicate`, `boundary_empty`, `boundary_too_large` (a KMZ whose KML inflates past
//!   `MAX_KML_BYTES`).
//!
//! # Codes and names
//! GeoJSON and KML features carry properties (KML: `ExtendedData`, plus the Placemark's `name` as `name`). With
//! `code_field` unset, the code is the first property present in every feature with distinct values among: ONS-style
//! `…CD` properties (`WD13CD`, `LAD22CD`), then `code`, then `id` (any case), then, in KML, the Placemark's name.
//! Numbers are read as text. The name is `name_field`, else the `…NM` partner of a `…CD` code, else `name` (any
//! case), else the code. A police.uk boundary has no properties: its code and name are the file stem.
//!
//! # Repairs, normalisations and refusals
//! Repaired and reported, each with the area it changed: unclosed rings (closed), rings with fewer than three
//! distinct points or no area (dropped; a polygon whose exterior is dropped goes with it), polygons whose rings
//! cross, touch or double back on themselves or each other, or whose holes lie outside them (rebuilt by the
//! even-odd rule, as GEOS and PostGIS `ST_MakeValid` do: `boundaries::validity`), parts of a multipolygon that
//! overlap or share an edge (merged), and points or lines mixed into a KML `MultiGeometry` or GeoJSON
//! `GeometryCollection` (dropped). Normalised, and reported apart as no repair: rings wound the other way
//! (exteriors are made counter-clockwise) and the same point twice in a row. Refused: a feature left with no
//! polygon (also once rebuilt: rings drawn out and back along themselves enclose nothing), anything still invalid
//! after the repairs, and coordinates outside longitude/latitude range (usually a file in British National Grid or
//! another projection). Validity is checked in O(n log n) (an R-tree over the segments), not `geo`'s pairwise
//! `Validation`, so a national file with million-vertex rings reads in seconds.
//!
//! # Overlaps and gaps
//! An overlap is the intersection of two areas whose bounding boxes meet, reported when it exceeds
//! `OVERLAP_TOLERANCE_M2`. A gap is a hole in the union of all areas (land enclosed by the set that belongs to no
//! area), reported when it exceeds `GAP_TOLERANCE_M2`; smaller holes are digitising slivers and are only counted.
//! Land outside the outer edge of the set is not a gap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;
use std::str::FromStr;

use geo::orient::{Direction, Orient};
use geo::{
    unary_union, BooleanOps, BoundingRect, Coord, Distance, Euclidean, GeodesicArea, InteriorPoint, LineString,
    MultiPolygon, Point, Polygon, Winding,
};
use indicatif::{ProgressBar, ProgressStyle};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, RTreeObject, AABB};

use crate::geo::boundaries::validity::{invalidities, make_valid_even_odd, split_pinched_rings, Invalidity};
use crate::geo::boundaries::Area;

/// Intersections smaller than this (square metres) are rounding between two shared edges, not overlaps.
pub const OVERLAP_TOLERANCE_M2: f64 = 1.0;

/// Holes in the union smaller than this (square metres) are slivers between edges digitised slightly apart; they
/// are counted in `ValidationReport::n_slivers` but not reported one by one. 100 m² is a 10 m square, well under
/// the accuracy of a phone's GPS fix, so no insight can be meaningfully filed into such a hole.
pub const GAP_TOLERANCE_M2: f64 = 100.0;

/// The most a KMZ's KML document may inflate to: 256 MiB. A national file of a million vertices is about 40 MB of
/// KML, so this leaves room for six times that; a zip bomb (a few hundred kilobytes that inflate to gigabytes) is
/// refused with `boundary_too_large` once this much has been inflated, whatever the zip's headers declare.
pub const MAX_KML_BYTES: u64 = 256 << 20;

/// A boundary file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundaryFormat {
    /// A GeoJSON `FeatureCollection` of `Polygon`/`MultiPolygon` features.
    GeoJson,
    /// KML Placemarks with `Polygon` or `MultiGeometry`.
    Kml,
    /// A zip holding a KML document (`doc.kml`, or the first `.kml` entry).
    Kmz,
    /// police.uk's boundary: a JSON list of `{latitude, longitude}`, one polygon.
    PoliceUk,
}

impl BoundaryFormat {
    /// The name used on the command line and in reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BoundaryFormat::GeoJson => "geojson",
            BoundaryFormat::Kml => "kml",
            BoundaryFormat::Kmz => "kmz",
            BoundaryFormat::PoliceUk => "police-uk",
        }
    }
}

impl fmt::Display for BoundaryFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BoundaryFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "geojson" | "json" => Ok(BoundaryFormat::GeoJson),
            "kml" => Ok(BoundaryFormat::Kml),
            "kmz" => Ok(BoundaryFormat::Kmz),
            "police-uk" | "policeuk" | "police.uk" => Ok(BoundaryFormat::PoliceUk),
            _ => Err(format!("unknown boundary format '{text}' (expected geojson, kml, kmz or police-uk)")),
        }
    }
}

/// The format of a boundary file, from its content, else from the extension of `name_hint`.
#[must_use]
pub fn detect(name_hint: &str, bytes: &[u8]) -> Option<BoundaryFormat> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Some(BoundaryFormat::Kmz);
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match text.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'<') => return Some(BoundaryFormat::Kml),
        Some(b'[') => return Some(BoundaryFormat::PoliceUk),
        Some(b'{') => return Some(BoundaryFormat::GeoJson),
        _ => {}
    }
    let extension = Path::new(name_hint).extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "geojson" => Some(BoundaryFormat::GeoJson),
        "kml" => Some(BoundaryFormat::Kml),
        "kmz" => Some(BoundaryFormat::Kmz),
        _ => None,
    }
}

/// How to read a boundary file; `Default` detects everything and shows no progress bar.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The format, when detection should be overridden.
    pub format: Option<BoundaryFormat>,
    /// The property holding each area's code (ignored for police.uk files).
    pub code_field: Option<String>,
    /// The property holding each area's name (ignored for police.uk files).
    pub name_field: Option<String>,
    /// Show progress bars on stderr (drawn only when stderr is a terminal).
    pub progress: bool,
}

/// Everything read from one boundary file.
#[derive(Debug, Clone)]
pub struct ImportedAreas {
    pub format: BoundaryFormat,
    /// In file order; every one is valid, oriented (exteriors counter-clockwise) and has a distinct code.
    pub areas: Vec<Area>,
    pub report: ValidationReport,
}

/// What validation repaired, normalised and found.
#[derive(Debug, Clone, Default)]
pub struct ValidationReport {
    /// Changes to geometry that was invalid or incomplete as published, in file order.
    pub repairs: Vec<Repair>,
    /// Changes that leave a valid shape as it was and only write it the conventional way (ring orientation,
    /// repeated points): not repairs, and reported apart so a clean file does not look broken.
    pub normalisations: Vec<Repair>,
    /// Sorted by the two codes.
    pub overlaps: Vec<Overlap>,
    /// Largest first.
    pub gaps: Vec<Gap>,
    /// Holes in the union below `GAP_TOLERANCE_M2`, not listed in `gaps`.
    pub n_slivers: usize,
}

impl ValidationReport {
    /// The overlaps' sizes added up, in square metres.
    #[must_use]
    pub fn total_overlap_m2(&self) -> f64 {
        self.overlaps.iter().fold(0.0, |total, overlap| total + overlap.size_m2)
    }

    /// The gaps' sizes added up, in square metres.
    #[must_use]
    pub fn total_gap_m2(&self) -> f64 {
        self.gaps.iter().fold(0.0, |total, gap| total + gap.size_m2)
    }

    /// The area the repairs changed, added up, in square metres.
    #[must_use]
    pub fn total_repaired_m2(&self) -> f64 {
        self.repairs.iter().fold(0.0, |total, repair| total + repair.kind.area_changed_m2())
    }
}

/// One repair (or normalisation) made to one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Repair {
    /// The feature's position in the file, from 0.
    pub feature_index: usize,
    pub code: String,
    /// The feature's name, when it has one apart from its code.
    pub name: Option<String>,
    pub kind: RepairKind,
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let feature = FeatureRef { index: self.feature_index, code: Some(self.code.clone()), name: self.name.clone() };
        write!(f, "{feature}: {}", self.kind)
    }
}

/// What was repaired or normalised.
#[derive(Debug, Clone, PartialEq)]
pub enum RepairKind {
    /// A repair: rings whose last point is not their first (GeoJSON and KML require it), closed. The area the ring
    /// encloses is the same either way.
    ClosedRings { n_rings: usize },
    /// A normalisation: the same point twice in a row, once.
    RemovedDuplicatePoints { n_points: usize },
    /// A normalisation: rings reversed so exteriors run counter-clockwise and holes clockwise (RFC 7946).
    ReorientedRings { n_rings: usize },
    /// A repair: rings with fewer than three distinct points or no area, dropped; a polygon goes with its exterior.
    /// They enclose nothing, so no area changes.
    DroppedDegenerateRings { n_rings: usize },
    /// A repair: polygons whose rings cross or touch themselves or each other (or holes outside their exterior),
    /// rebuilt by the even-odd rule as GEOS and PostGIS `ST_MakeValid` do (`boundaries::validity`). The areas are
    /// geodesic: `area_as_drawn_m2` reads each ring by the shoelace formula (exterior less holes), which is what
    /// `ST_Area` gives for the invalid polygon.
    MadeValid { n_polygons: usize, area_as_drawn_m2: f64, area_after_m2: f64 },
    /// A repair: parts of a multipolygon that overlapped or shared an edge, unioned. The ground covered is the same.
    MergedParts { n_parts_before: usize, n_parts_after: usize },
    /// A repair: points or lines mixed in with the polygons, dropped. They cover no ground.
    DroppedNonPolygonParts { n_parts: usize },
}

impl RepairKind {
    /// What was done, without the counts.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            RepairKind::ClosedRings { .. } => "unclosed rings closed",
            RepairKind::RemovedDuplicatePoints { .. } => "repeated points removed",
            RepairKind::ReorientedRings { .. } => "rings reversed (exteriors counter-clockwise, holes clockwise)",
            RepairKind::DroppedDegenerateRings { .. } => "rings without an area dropped",
            RepairKind::MadeValid { .. } => "rings crossing or touching themselves rebuilt (even-odd, as ST_MakeValid)",
            RepairKind::MergedParts { .. } => "overlapping or touching parts merged",
            RepairKind::DroppedNonPolygonParts { .. } => "points and lines among the polygons dropped",
        }
    }

    /// Whether this leaves the shape as it was, only written the conventional way (so it is no repair).
    #[must_use]
    pub fn is_normalisation(&self) -> bool {
        matches!(self, RepairKind::RemovedDuplicatePoints { .. } | RepairKind::ReorientedRings { .. })
    }

    /// How much ground this added or removed, in square metres: zero for everything but a rebuilt polygon.
    #[must_use]
    pub fn area_changed_m2(&self) -> f64 {
        match self {
            RepairKind::MadeValid { area_as_drawn_m2, area_after_m2, .. } => (area_after_m2 - area_as_drawn_m2).abs(),
            _ => 0.0,
        }
    }
}

impl fmt::Display for RepairKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepairKind::ClosedRings { n_rings } => write!(f, "closed {n_rings} unclosed ring(s); no area changed"),
            RepairKind::RemovedDuplicatePoints { n_points } => {
                write!(f, "removed {n_points} repeated point(s); no area changed")
            }
            RepairKind::ReorientedRings { n_rings } => {
                write!(f, "reversed {n_rings} ring(s) to run the conventional way; no area changed")
            }
            RepairKind::DroppedDegenerateRings { n_rings } => {
                write!(f, "dropped {n_rings} ring(s) with fewer than three distinct points or no area; no area changed")
            }
            RepairKind::MadeValid { n_polygons, area_as_drawn_m2, area_after_m2 } => {
                let changed_m2 = self.area_changed_m2();
                let percent = if *area_as_drawn_m2 > 0.0 { 100.0 * changed_m2 / area_as_drawn_m2 } else { 100.0 };
                // Real files' slips change millionths of a district: say so rather than print 0.000%.
                let share = if changed_m2 == 0.0 {
                    "0%".to_owned()
                } else if percent < 0.001 {
                    "under 0.001%".to_owned()
                } else {
                    format!("{percent:.3}%")
                };
                write!(
                    f,
                    "rebuilt {n_polygons} polygon(s) whose rings cross or touch themselves or each other (even-odd \
                     rule, as ST_MakeValid): {} m² as drawn, {} m² after, {} m² changed ({share} of the area)",
                    format_m2(*area_as_drawn_m2),
                    format_m2(*area_after_m2),
                    format_m2(changed_m2),
                )
            }
            RepairKind::MergedParts { n_parts_before, n_parts_after } => write!(
                f,
                "merged {n_parts_before} overlapping or touching parts into {n_parts_after}; the ground covered is \
                 the same"
            ),
            RepairKind::DroppedNonPolygonParts { n_parts } => {
                write!(f, "dropped {n_parts} point or line part(s) that bound no area")
            }
        }
    }
}

/// Two areas covering the same ground.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlap {
    /// The smaller of the two codes.
    pub code_a: String,
    pub code_b: String,
    pub size_m2: f64,
}

/// Ground enclosed by the set that no area covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub size_m2: f64,
    /// A point inside the gap (longitude, latitude).
    pub point: Point<f64>,
    /// The codes of the areas around it, sorted.
    pub neighbours: Vec<String>,
}

/// Repairs listed one by one in the readable report; the rest are counted.
const N_REPAIRS_LISTED: usize = 30;

/// Feature codes shown per kind of normalisation; the rest are counted.
const N_NORMALISED_SHOWN: usize = 5;

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n_repaired_features = self.repairs.iter().map(|repair| repair.feature_index).collect::<BTreeSet<_>>().len();
        let n_normalised_features =
            self.normalisations.iter().map(|normalisation| normalisation.feature_index).collect::<BTreeSet<_>>().len();
        writeln!(
            f,
            "{} repair(s) in {n_repaired_features} feature(s), {} m² changed in all; {n_normalised_features} \
             feature(s) normalised (no shape changed); {} overlap(s), {} m² in all; {} gap(s), {} m² in all; {} \
             sliver(s) under {} m² ignored",
            self.repairs.len(),
            format_m2(self.total_repaired_m2()),
            self.overlaps.len(),
            format_m2(self.total_overlap_m2()),
            self.gaps.len(),
            format_m2(self.total_gap_m2()),
            self.n_slivers,
            GAP_TOLERANCE_M2,
        )?;
        if !self.repairs.is_empty() {
            writeln!(f, "Repairs (the geometry was invalid or incomplete as published):")?;
            for repair in self.repairs.iter().take(N_REPAIRS_LISTED) {
                writeln!(f, "  {repair}")?;
            }
            if self.repairs.len() > N_REPAIRS_LISTED {
                writeln!(f, "  and {} more", self.repairs.len() - N_REPAIRS_LISTED)?;
            }
        }
        if !self.normalisations.is_empty() {
            // Grouped by kind: a file wound the other way has one per feature, which would drown the rest.
            writeln!(f, "Normalised (not repairs: each shape is unchanged, only written the conventional way):")?;
            let mut groups: Vec<(&'static str, Vec<&str>)> = Vec::new();
            for normalisation in &self.normalisations {
                let label = normalisation.kind.label();
                match groups.iter_mut().find(|(group_label, _)| *group_label == label) {
                    Some((_, codes)) => codes.push(&normalisation.code),
                    None => groups.push((label, vec![&normalisation.code])),
                }
            }
            for (label, codes) in groups {
                let shown = codes.iter().take(N_NORMALISED_SHOWN).copied().collect::<Vec<_>>().join(", ");
                let more = if codes.len() > N_NORMALISED_SHOWN {
                    format!(" and {} more", codes.len() - N_NORMALISED_SHOWN)
                } else {
                    String::new()
                };
                let features = if codes.len() == 1 { "feature" } else { "features" };
                writeln!(f, "  {label}, in {} {features}: {shown}{more}", codes.len())?;
            }
        }
        if !self.overlaps.is_empty() {
            writeln!(f, "Overlaps:")?;
            for overlap in &self.overlaps {
                writeln!(f, "  {} and {}: {} m²", overlap.code_a, overlap.code_b, format_m2(overlap.size_m2))?;
            }
        }
        if !self.gaps.is_empty() {
            writeln!(f, "Gaps:")?;
            for gap in &self.gaps {
                writeln!(
                    f,
                    "  {} m² around ({:.6}, {:.6}), between {}",
                    format_m2(gap.size_m2),
                    gap.point.x(),
                    gap.point.y(),
                    gap.neighbours.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

/// Square metres: one decimal under 10 m², else whole and grouped by thousands.
fn format_m2(size_m2: f64) -> String {
    if size_m2 < 10.0 {
        return format!("{size_m2:.1}");
    }
    // Sizes fit an i64 many times over (the Earth is 5.1e14 m²), so the cast is exact after rounding.
    #[allow(clippy::cast_possible_truncation)]
    let digits = (size_m2.round() as i64).to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (idx, digit) in digits.chars().enumerate() {
        if idx > 0 && (digits.len() - idx).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// Which feature, as precisely as it is known when the error happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureRef {
    /// Position in the file, from 0.
    pub index: usize,
    pub code: Option<String>,
    pub name: Option<String>,
}

impl fmt::Display for FeatureRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "feature {}", self.index)?;
        match (&self.code, &self.name) {
            (Some(code), Some(name)) if code != name => write!(f, " ({code} '{name}')"),
            (Some(code), _) => write!(f, " ({code})"),
            (None, Some(name)) => write!(f, " ('{name}')"),
            (None, None) => Ok(()),
        }
    }
}

/// Why a boundary file was refused. Nothing of the file is kept when any of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum BoundaryFileError {
    #[error("cannot read {what}: {reason}")]
    Unreadable { what: String, reason: String },
    #[error(
        "cannot tell the format of {name}: expected GeoJSON, KML, KMZ or a police.uk boundary (a JSON list of \
         latitude/longitude points)"
    )]
    FormatUnknown { name: String },
    #[error("{feature}: {reason}")]
    FeatureInvalid { feature: FeatureRef, reason: String },
    #[error(
        "{feature}: coordinate ({x}, {y}) is not a longitude and latitude; {}",
        out_of_range_hint(*x, *y)
    )]
    CoordinatesOutOfRange { feature: FeatureRef, x: f64, y: f64 },
    #[error("{}", missing_field_message("code", feature.as_ref(), field.as_deref(), available))]
    CodeMissing { feature: Option<FeatureRef>, field: Option<String>, available: Vec<String> },
    #[error("{}", missing_field_message("name", Some(feature), Some(field), available))]
    NameMissing { feature: FeatureRef, field: String, available: Vec<String> },
    #[error("{second} has the code {code}, already used by feature {first_index}")]
    CodeDuplicate { code: String, first_index: usize, second: FeatureRef },
    #[error("{name} holds no areas")]
    Empty { name: String },
    #[error(
        "{what} inflates to more than {limit} bytes ({} MiB), the most a KMZ's KML document may hold; unzip it and \
         import the KML itself",
        limit >> 20
    )]
    TooLarge { what: String, limit: u64 },
}

impl BoundaryFileError {
    /// The stable, machine-readable code of this error.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            BoundaryFileError::Unreadable { .. } => "boundary_unreadable",
            BoundaryFileError::FormatUnknown { .. } => "boundary_format_unknown",
            BoundaryFileError::FeatureInvalid { .. } => "boundary_feature_invalid",
            BoundaryFileError::CoordinatesOutOfRange { .. } => "boundary_coordinates_out_of_range",
            BoundaryFileError::CodeMissing { .. } => "boundary_code_missing",
            BoundaryFileError::NameMissing { .. } => "boundary_name_missing",
            BoundaryFileError::CodeDuplicate { .. } => "boundary_code_duplicate",
            BoundaryFileError::Empty { .. } => "boundary_empty",
            BoundaryFileError::TooLarge { .. } => "boundary_too_large",
        }
    }

    fn unreadable(what: impl Into<String>, reason: impl fmt::Display) -> Self {
        BoundaryFileError::Unreadable { what: what.into(), reason: reason.to_string() }
    }
}

fn out_of_range_hint(x: f64, y: f64) -> &'static str {
    // British National Grid eastings run 0–700 km and northings 0–1300 km, in metres.
    if (0.0..=700_000.0).contains(&x) && (0.0..=1_300_000.0).contains(&y) {
        "these look like British National Grid eastings and northings (EPSG:27700): reproject the file to WGS84 \
         longitude/latitude (EPSG:4326) first"
    } else {
        "the file may not be in WGS84 longitude/latitude (EPSG:4326): reproject it first"
    }
}

fn missing_field_message(
    what: &str,
    feature: Option<&FeatureRef>,
    field: Option<&str>,
    available: &[String],
) -> String {
    let available = if available.is_empty() { "none".to_owned() } else { available.join(", ") };
    match (feature, field) {
        (Some(feature), Some(field)) => {
            format!("{feature} has no {what} in property '{field}'; its properties are: {available}")
        }
        (Some(feature), None) => format!("{feature} has no {what}; its properties are: {available}"),
        (None, Some(field)) => format!("no feature has the {what} property '{field}'; properties: {available}"),
        (None, None) => format!(
            "no property can serve as the area {what} (none of the …CD, code or id properties is present in every \
             feature with distinct values); choose one of: {available}"
        ),
    }
}

/// Reads a boundary file, repairs and validates it. See the module documentation.
///
/// # Errors
/// An unreadable file, an unknown format, or any feature that cannot be read or repaired; see `BoundaryFileError`.
#[tracing::instrument(skip(options))]
pub fn read_boundary_file(path: &Path, options: &ReadOptions) -> Result<ImportedAreas, BoundaryFileError> {
    let display_name = path.display().to_string();
    let mut file = File::open(path).map_err(|error| BoundaryFileError::unreadable(&display_name, error))?;
    let n_bytes = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(n_bytes).unwrap_or(0));
    let bar = progress_bar(options.progress, n_bytes, "reading", BYTES_TEMPLATE);
    bar.wrap_read(&mut file)
        .read_to_end(&mut bytes)
        .map_err(|error| BoundaryFileError::unreadable(&display_name, error))?;
    bar.finish_and_clear();
    read_boundary_bytes(&bytes, &display_name, options)
}

/// Reads boundaries from memory; `name_hint` is the file name (for format detection, messages and the police.uk
/// code).
///
/// # Errors
/// As `read_boundary_file`.
pub fn read_boundary_bytes(
    bytes: &[u8],
    name_hint: &str,
    options: &ReadOptions,
) -> Result<ImportedAreas, BoundaryFileError> {
    let format = match options.format {
        Some(format) => format,
        None => detect(name_hint, bytes).ok_or_else(|| BoundaryFileError::FormatUnknown { name: name_hint.into() })?,
    };
    let features = match format {
        BoundaryFormat::GeoJson => parse_geojson(text_of(bytes, name_hint)?, name_hint)?,
        BoundaryFormat::Kml => parse_kml(text_of(bytes, name_hint)?, name_hint)?,
        BoundaryFormat::Kmz => parse_kml(&kml_from_kmz(bytes, name_hint, MAX_KML_BYTES)?, name_hint)?,
        BoundaryFormat::PoliceUk => parse_police_uk(text_of(bytes, name_hint)?, name_hint)?,
    };
    if features.is_empty() {
        return Err(BoundaryFileError::Empty { name: name_hint.into() });
    }
    // A police.uk file has only the `code` and `name` made from its file name, whatever fields were asked for.
    let (code_field, name_field) = match format {
        BoundaryFormat::PoliceUk => (None, None),
        _ => (options.code_field.clone(), options.name_field.clone()),
    };
    let name_required = name_field.is_some();
    let fallback = if matches!(format, BoundaryFormat::Kml | BoundaryFormat::Kmz) { Some("name") } else { None };
    let code_field = match code_field {
        Some(field) => field,
        None => detect_code_field(&features, fallback)?,
    };
    let name_field = name_field.or_else(|| detect_name_field(&features, &code_field));

    let mut areas = Vec::with_capacity(features.len());
    let mut repairs = Vec::new();
    let mut first_use: HashMap<String, usize> = HashMap::with_capacity(features.len());
    let bar = progress_bar(options.progress, features.len() as u64, "repairing", ITEMS_TEMPLATE);
    for (index, feature) in features.into_iter().enumerate() {
        let (code, name) = code_and_name(index, &feature, &code_field, name_field.as_deref(), name_required)?;
        let feature_ref = FeatureRef { index, code: Some(code.clone()), name: Some(name.clone()) };
        if let Some(&first_index) = first_use.get(&code) {
            return Err(BoundaryFileError::CodeDuplicate { code, first_index, second: feature_ref });
        }
        let shape = repair_geometry(&feature_ref, feature.geometry, &mut repairs)?;
        first_use.insert(code.clone(), index);
        areas.push(Area { code, name, shape });
        bar.inc(1);
    }
    bar.finish_and_clear();

    let started = std::time::Instant::now();
    let mut report = find_overlaps_and_gaps(&areas, options.progress);
    let (normalisations, repairs) = repairs.into_iter().partition(|repair: &Repair| repair.kind.is_normalisation());
    report.repairs = repairs;
    report.normalisations = normalisations;
    tracing::debug!(n_areas = areas.len(), elapsed = ?started.elapsed(), "checked boundaries for overlaps and gaps");
    Ok(ImportedAreas { format, areas, report })
}

const BYTES_TEMPLATE: &str = "{msg:10} [{wide_bar}] {bytes}/{total_bytes} ({eta})";
const ITEMS_TEMPLATE: &str = "{msg:10} [{wide_bar}] {pos}/{len} ({eta})";

/// A bar on stderr; indicatif draws nothing when stderr is not a terminal.
fn progress_bar(enabled: bool, len: u64, message: &'static str, template: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style).with_message(message)
}

/// One feature as read, before repair: text properties (`None` for null, boolean or nested values) and polygons
/// as lists of rings, the first ring the exterior.
struct RawFeature {
    properties: BTreeMap<String, Option<String>>,
    geometry: Result<RawGeometry, String>,
}

#[derive(Default)]
struct RawGeometry {
    polygons: Vec<Vec<Vec<Coord<f64>>>>,
    n_non_polygon_parts: usize,
}

fn text_of<'a>(bytes: &'a [u8], name_hint: &str) -> Result<&'a str, BoundaryFileError> {
    let text = std::str::from_utf8(bytes).map_err(|error| BoundaryFileError::unreadable(name_hint, error))?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

fn parse_geojson(text: &str, name_hint: &str) -> Result<Vec<RawFeature>, BoundaryFileError> {
    let features = match text.parse::<geojson::GeoJson>() {
        Ok(geojson::GeoJson::FeatureCollection(collection)) => collection.features,
        Ok(geojson::GeoJson::Feature(feature)) => vec![feature],
        Ok(geojson::GeoJson::Geometry(_)) => {
            return Err(BoundaryFileError::unreadable(
                name_hint,
                "it is a bare GeoJSON geometry; expected a FeatureCollection whose features carry a code",
            ))
        }
        Err(error) => return Err(BoundaryFileError::unreadable(name_hint, error)),
    };
    Ok(features
        .into_iter()
        .map(|feature| {
            let properties = feature
                .properties
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| {
                    let text = match value {
                        serde_json::Value::String(text) => Some(text.trim().to_owned()).filter(|t| !t.is_empty()),
                        serde_json::Value::Number(number) => Some(number.to_string()),
                        _ => None,
                    };
                    (key, text)
                })
                .collect();
            let geometry = match feature.geometry {
                Some(geometry) => {
                    let mut raw = RawGeometry::default();
                    geojson_polygons(&geometry.value, &mut raw).map(|()| raw)
                }
                None => Err("has no geometry".to_owned()),
            };
            RawFeature { properties, geometry }
        })
        .collect())
}

fn geojson_polygons(value: &geojson::Value, raw: &mut RawGeometry) -> Result<(), String> {
    let ring = |positions: &Vec<geojson::Position>| -> Result<Vec<Coord<f64>>, String> {
        positions
            .iter()
            .map(|position| match position.as_slice() {
                [x, y, ..] => Ok(Coord { x: *x, y: *y }),
                _ => Err("has a position with fewer than two numbers".to_owned()),
            })
            .collect()
    };
    let polygon = |rings: &Vec<Vec<geojson::Position>>| rings.iter().map(ring).collect::<Result<Vec<_>, _>>();
    match value {
        geojson::Value::Polygon(rings) => raw.polygons.push(polygon(rings)?),
        geojson::Value::MultiPolygon(polygons) => {
            for rings in polygons {
                raw.polygons.push(polygon(rings)?);
            }
        }
        geojson::Value::GeometryCollection(geometries) => {
            for geometry in geometries {
                geojson_polygons(&geometry.value, raw)?;
            }
        }
        geojson::Value::Point(_)
        | geojson::Value::MultiPoint(_)
        | geojson::Value::LineString(_)
        | geojson::Value::MultiLineString(_) => raw.n_non_polygon_parts += 1,
    }
    Ok(())
}

fn kml_from_kmz(bytes: &[u8], name_hint: &str, max_kml_bytes: u64) -> Result<String, BoundaryFileError> {
    let unreadable = |error: &dyn fmt::Display| BoundaryFileError::unreadable(name_hint, format!("not a KMZ: {error}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|error| unreadable(&error))?;
    let kml_names: Vec<String> =
        archive.file_names().filter(|name| name.to_ascii_lowercase().ends_with(".kml")).map(str::to_owned).collect();
    // The KMZ convention: the main document is doc.kml, else the first KML file in the archive.
    let chosen = kml_names
        .iter()
        .find(|name| name.eq_ignore_ascii_case("doc.kml"))
        .or_else(|| kml_names.first())
        .ok_or_else(|| unreadable(&"it holds no .kml file"))?
        .clone();
    let too_large = || BoundaryFileError::TooLarge { what: format!("{name_hint}: {chosen}"), limit: max_kml_bytes };
    let entry = archive.by_name(&chosen).map_err(|error| unreadable(&error))?;
    // The declared size refuses an honest bomb before any inflating; a dishonest one is stopped by the bounded read.
    if entry.size() > max_kml_bytes {
        return Err(too_large());
    }
    let kml = read_bounded(entry, max_kml_bytes).map_err(|error| match error {
        BoundedReadError::TooLarge => too_large(),
        BoundedReadError::Io(error) => unreadable(&error),
    })?;
    String::from_utf8(kml).map_err(|error| unreadable(&error))
}

#[derive(Debug)]
enum BoundedReadError {
    TooLarge,
    Io(std::io::Error),
}

/// Everything `reader` yields, or `TooLarge` as soon as it has yielded more than `limit` bytes: at most `limit`
/// plus one read's worth is ever held, however much the reader has left.
fn read_bounded(reader: impl Read, limit: u64) -> Result<Vec<u8>, BoundedReadError> {
    let mut bytes = Vec::new();
    let n_read = reader.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(BoundedReadError::Io)?;
    if n_read as u64 > limit {
        return Err(BoundedReadError::TooLarge);
    }
    Ok(bytes)
}

fn parse_kml(text: &str, name_hint: &str) -> Result<Vec<RawFeature>, BoundaryFileError> {
    let document: kml::Kml<f64> = text.parse().map_err(|error| BoundaryFileError::unreadable(name_hint, error))?;
    let mut placemarks = Vec::new();
    collect_placemarks(document, &mut placemarks);
    Ok(placemarks
        .into_iter()
        .map(|placemark| {
            let mut properties = BTreeMap::new();
            for child in &placemark.children {
                if child.name == "ExtendedData" {
                    collect_extended_data(child, &mut properties);
                }
            }
            let placemark_name = placemark.name.map(|name| name.trim().to_owned()).filter(|name| !name.is_empty());
            properties.entry("name".to_owned()).or_insert(placemark_name);
            let geometry = match placemark.geometry {
                Some(geometry) => {
                    let mut raw = RawGeometry::default();
                    kml_polygons(geometry, &mut raw);
                    Ok(raw)
                }
                None => Err("has no geometry".to_owned()),
            };
            RawFeature { properties, geometry }
        })
        .collect())
}

fn collect_placemarks(element: kml::Kml<f64>, placemarks: &mut Vec<kml::types::Placemark<f64>>) {
    match element {
        kml::Kml::Placemark(placemark) => placemarks.push(placemark),
        kml::Kml::KmlDocument(kml::KmlDocument { elements, .. })
        | kml::Kml::Document { elements, .. }
        | kml::Kml::Folder(kml::types::Folder { elements, .. }) => {
            for element in elements {
                collect_placemarks(element, placemarks);
            }
        }
        _ => {}
    }
}

/// `<SimpleData name="k">v</SimpleData>` (inside `SchemaData`) and `<Data name="k"><value>v</value></Data>`.
fn collect_extended_data(element: &kml::types::Element, properties: &mut BTreeMap<String, Option<String>>) {
    for child in &element.children {
        match child.name.as_str() {
            "SchemaData" => collect_extended_data(child, properties),
            "SimpleData" | "Data" => {
                let Some(key) = child.attrs.get("name") else { continue };
                let value = if child.name == "Data" {
                    child.children.iter().find(|grandchild| grandchild.name == "value").and_then(|v| v.content.clone())
                } else {
                    child.content.clone()
                };
                properties.insert(key.clone(), value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()));
            }
            _ => {}
        }
    }
}

fn kml_polygons(geometry: kml::types::Geometry<f64>, raw: &mut RawGeometry) {
    let ring = |ring: kml::types::LinearRing<f64>| ring.coords.iter().map(|c| Coord { x: c.x, y: c.y }).collect();
    match geometry {
        kml::types::Geometry::Polygon(polygon) => {
            let mut rings = vec![ring(polygon.outer)];
            rings.extend(polygon.inner.into_iter().map(ring));
            raw.polygons.push(rings);
        }
        kml::types::Geometry::MultiGeometry(multi) => {
            for geometry in multi.geometries {
                kml_polygons(geometry, raw);
            }
        }
        _ => raw.n_non_polygon_parts += 1,
    }
}

fn parse_police_uk(text: &str, name_hint: &str) -> Result<Vec<RawFeature>, BoundaryFileError> {
    let stem = Path::new(name_hint)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .filter(|stem| !stem.is_empty())
        .unwrap_or("boundary")
        .to_owned();
    let points: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|error| BoundaryFileError::unreadable(name_hint, error))?;
    if points.is_empty() {
        return Ok(Vec::new());
    }
    let number = |point: &serde_json::Value, key: &str| match point.get(key) {
        Some(serde_json::Value::Number(number)) => number.as_f64(),
        Some(serde_json::Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    };
    let ring: Result<Vec<Coord<f64>>, String> = points
        .iter()
        .enumerate()
        .map(|(point_idx, point)| match (number(point, "longitude"), number(point, "latitude")) {
            (Some(x), Some(y)) => Ok(Coord { x, y }),
            _ => Err(format!("point {point_idx} has no numeric latitude and longitude: {point}")),
        })
        .collect();
    let properties = BTreeMap::from([("code".to_owned(), Some(stem.clone())), ("name".to_owned(), Some(stem))]);
    let geometry = ring.map(|ring| RawGeometry { polygons: vec![vec![ring]], n_non_polygon_parts: 0 });
    Ok(vec![RawFeature { properties, geometry }])
}

/// Every property name seen, sorted.
fn property_names(features: &[RawFeature]) -> Vec<String> {
    let names: BTreeSet<&String> = features.iter().flat_map(|feature| feature.properties.keys()).collect();
    names.into_iter().cloned().collect()
}

fn detect_code_field(features: &[RawFeature], fallback: Option<&str>) -> Result<String, BoundaryFileError> {
    let names = property_names(features);
    let has_partner = |name: &&String| ons_name_partner(name).is_some_and(|partner| names.contains(&partner));
    let is_ons_code = |name: &&String| ons_name_partner(name).is_some();
    let candidates = names
        .iter()
        .filter(|name| has_partner(name))
        .chain(names.iter().filter(|name| is_ons_code(name) && !has_partner(name)))
        .chain(names.iter().filter(|name| name.eq_ignore_ascii_case("code")))
        .chain(names.iter().filter(|name| name.eq_ignore_ascii_case("id")))
        .chain(names.iter().filter(|name| Some(name.as_str()) == fallback));
    for candidate in candidates {
        let mut seen = HashMap::with_capacity(features.len());
        let identifies_all = features.iter().all(|feature| match feature.properties.get(candidate) {
            Some(Some(value)) => seen.insert(value.as_str(), ()).is_none(),
            _ => false,
        });
        if identifies_all {
            return Ok(candidate.clone());
        }
    }
    Err(BoundaryFileError::CodeMissing { feature: None, field: None, available: names })
}

fn detect_name_field(features: &[RawFeature], code_field: &str) -> Option<String> {
    let names = property_names(features);
    ons_name_partner(code_field)
        .filter(|partner| names.contains(partner))
        .or_else(|| names.iter().find(|name| name.eq_ignore_ascii_case("name")).cloned())
}

/// The ONS name property that goes with a code property: `WD13NM` for `WD13CD`, `lad22nm` for `lad22cd`.
fn ons_name_partner(code_field: &str) -> Option<String> {
    let stem = code_field.strip_suffix("CD").map(|stem| (stem, "NM"));
    let (stem, suffix) = stem.or_else(|| code_field.strip_suffix("cd").map(|stem| (stem, "nm")))?;
    (!stem.is_empty()).then(|| format!("{stem}{suffix}"))
}

fn code_and_name(
    index: usize,
    feature: &RawFeature,
    code_field: &str,
    name_field: Option<&str>,
    name_required: bool,
) -> Result<(String, String), BoundaryFileError> {
    let available = || feature.properties.keys().cloned().collect();
    let value = |field: &str| feature.properties.get(field).cloned().flatten();
    let name = name_field.and_then(value);
    let Some(code) = value(code_field) else {
        return Err(BoundaryFileError::CodeMissing {
            feature: Some(FeatureRef { index, code: None, name }),
            field: Some(code_field.to_owned()),
            available: available(),
        });
    };
    let name = match (name, name_field) {
        (Some(name), _) => name,
        (None, Some(field)) if name_required => {
            return Err(BoundaryFileError::NameMissing {
                feature: FeatureRef { index, code: Some(code), name: None },
                field: field.to_owned(),
                available: available(),
            })
        }
        (None, _) => code.clone(),
    };
    Ok((code, name))
}

/// Repairs what is safe to repair (recording each repair), and refuses the rest naming the feature.
fn repair_geometry(
    feature: &FeatureRef,
    geometry: Result<RawGeometry, String>,
    repairs: &mut Vec<Repair>,
) -> Result<MultiPolygon<f64>, BoundaryFileError> {
    let invalid = |reason: String| BoundaryFileError::FeatureInvalid { feature: feature.clone(), reason };
    let geometry = geometry.map_err(invalid)?;
    let mut record = |kind: RepairKind| {
        let code = feature.code.clone().unwrap_or_default();
        let name = feature.name.clone().filter(|name| *name != code);
        repairs.push(Repair { feature_index: feature.index, code, name, kind });
    };
    if geometry.polygons.is_empty() {
        return Err(invalid("has no polygon (empty geometry, or only points and lines)".to_owned()));
    }
    if geometry.n_non_polygon_parts > 0 {
        record(RepairKind::DroppedNonPolygonParts { n_parts: geometry.n_non_polygon_parts });
    }
    for coord in geometry.polygons.iter().flatten().flatten() {
        if !coord.x.is_finite() || !coord.y.is_finite() || coord.x.abs() > 180.0 || coord.y.abs() > 90.0 {
            return Err(BoundaryFileError::CoordinatesOutOfRange { feature: feature.clone(), x: coord.x, y: coord.y });
        }
    }

    let (mut n_duplicates, mut n_closed, mut n_dropped, mut n_reoriented) = (0, 0, 0, 0);
    let mut polygons = Vec::with_capacity(geometry.polygons.len());
    for rings in geometry.polygons {
        let n_rings = rings.len();
        let mut cleaned = Vec::with_capacity(n_rings);
        for (ring_idx, mut coords) in rings.into_iter().enumerate() {
            let n_before = coords.len();
            coords.dedup();
            n_duplicates += n_before - coords.len();
            if coords.len() > 1 && coords.first() != coords.last() {
                coords.push(coords[0]);
                n_closed += 1;
            }
            let mut ring = LineString::new(coords);
            let degenerate = ring.0.len() < 4 || is_collinear(&ring.0);
            if degenerate {
                if ring_idx == 0 {
                    // Without its exterior the polygon's holes mean nothing: drop them too.
                    n_dropped += n_rings;
                    break;
                }
                n_dropped += 1;
                continue;
            }
            // Exteriors counter-clockwise and holes clockwise: the convention of GeoJSON (RFC 7946) and of the
            // union below, which reads the fill from the winding.
            let wrong_way = if ring_idx == 0 { ring.is_cw() } else { ring.is_ccw() };
            if wrong_way {
                ring.0.reverse();
                n_reoriented += 1;
            }
            cleaned.push(ring);
        }
        if !cleaned.is_empty() {
            let exterior = cleaned.remove(0);
            polygons.push(Polygon::new(exterior, cleaned));
        }
    }
    for (n, kind) in [
        (n_closed, RepairKind::ClosedRings { n_rings: n_closed }),
        (n_duplicates, RepairKind::RemovedDuplicatePoints { n_points: n_duplicates }),
        (n_reoriented, RepairKind::ReorientedRings { n_rings: n_reoriented }),
        (n_dropped, RepairKind::DroppedDegenerateRings { n_rings: n_dropped }),
    ] {
        if n > 0 {
            record(kind);
        }
    }
    if polygons.is_empty() {
        return Err(invalid("has no polygon with three distinct points and an area (empty geometry)".to_owned()));
    }

    let mut shape = MultiPolygon::new(polygons);
    let mut findings = invalidities(&shape);
    let at_fault: BTreeSet<usize> = findings.iter().filter_map(Invalidity::polygon_at_fault).collect();
    if !at_fault.is_empty() {
        // Each polygon whose own rings are at fault is rebuilt alone, as ST_MakeValid does, so the repair cannot
        // move ground between the parts; the parts are merged afterwards if the rebuilt ones now overlap.
        let (mut area_as_drawn_m2, mut area_after_m2) = (0.0, 0.0);
        let mut rebuilt = Vec::with_capacity(shape.0.len());
        for (polygon_idx, polygon) in shape.0.into_iter().enumerate() {
            if at_fault.contains(&polygon_idx) {
                let valid = make_valid_even_odd(&polygon);
                area_as_drawn_m2 += area_as_drawn_m2_of(&polygon);
                area_after_m2 += valid.geodesic_area_unsigned();
                rebuilt.extend(valid.0);
            } else {
                rebuilt.push(polygon);
            }
        }
        record(RepairKind::MadeValid { n_polygons: at_fault.len(), area_as_drawn_m2, area_after_m2 });
        if rebuilt.is_empty() {
            let reason = "its rings enclose no area once rebuilt (every ring crosses itself back onto itself)";
            return Err(invalid(reason.to_owned()));
        }
        shape = MultiPolygon::new(rebuilt);
        findings = invalidities(&shape);
    }
    let parts_only = findings.iter().all(|finding| finding.polygon_at_fault().is_none());
    if !findings.is_empty() && parts_only {
        // The parts are each valid and cover the same ground once merged: the union changes no point's area.
        let n_parts_before = shape.0.len();
        let merged = split_pinched_rings(&unary_union(&shape.0));
        record(RepairKind::MergedParts { n_parts_before, n_parts_after: merged.0.len() });
        shape = merged;
        findings = invalidities(&shape);
    }
    if findings.is_empty() {
        return Ok(shape);
    }
    let reasons: Vec<String> = findings.iter().take(3).map(ToString::to_string).collect();
    let more = if findings.len() > 3 { format!(" (and {} more problems)", findings.len() - 3) } else { String::new() };
    Err(invalid(format!("invalid geometry that could not be made valid: {}{more}", reasons.join("; "))))
}

/// The geodesic area a polygon's rings enclose as drawn, each read by the shoelace formula whatever it crosses:
/// the exterior less the holes. This is what `ST_Area` reports for an invalid polygon, and the "before" of a
/// make-valid repair.
fn area_as_drawn_m2_of(polygon: &Polygon<f64>) -> f64 {
    let ring_m2 = |ring: &LineString<f64>| Polygon::new(ring.clone(), vec![]).geodesic_area_signed().abs();
    polygon.interiors().iter().fold(ring_m2(polygon.exterior()), |total, hole| total - ring_m2(hole))
}

/// Whether every point lies on one line (such a ring bounds no area). Exact: nearly collinear rings are left to
/// validation, which sees whether they cross themselves.
fn is_collinear(coords: &[Coord<f64>]) -> bool {
    let first = coords[0];
    let Some(second) = coords.iter().find(|coord| **coord != first) else { return true };
    let (dx, dy) = (second.x - first.x, second.y - first.y);
    coords.iter().all(|coord| dx * (coord.y - first.y) - dy * (coord.x - first.x) == 0.0)
}

/// The geodesic area in square metres. Oriented first: the geodesic area of a clockwise ring is the rest of the
/// Earth, and the boolean operations do not promise a winding.
fn geodesic_m2(shape: &MultiPolygon<f64>) -> f64 {
    shape.orient(Direction::Default).geodesic_area_unsigned()
}

fn find_overlaps_and_gaps(areas: &[Area], progress: bool) -> ValidationReport {
    let boxes: Vec<_> = areas
        .iter()
        .enumerate()
        .filter_map(|(area_idx, area)| {
            let rect = area.shape.bounding_rect()?;
            Some(GeomWithData::new(Rectangle::from_corners(rect.min().into(), rect.max().into()), area_idx))
        })
        .collect();
    let tree = RTree::bulk_load(boxes);

    let bar = progress_bar(progress, areas.len() as u64, "overlaps", ITEMS_TEMPLATE);
    let mut overlaps = Vec::new();
    for candidate in &tree {
        let area_idx = candidate.data;
        let envelope = candidate.geom().envelope();
        for other in tree.locate_in_envelope_intersecting(&envelope) {
            let other_idx = other.data;
            if other_idx <= area_idx {
                continue;
            }
            let (area, other_area) = (&areas[area_idx], &areas[other_idx]);
            let size_m2 = geodesic_m2(&area.shape.intersection(&other_area.shape));
            if size_m2 > OVERLAP_TOLERANCE_M2 {
                let (code_a, code_b) = if area.code <= other_area.code {
                    (area.code.clone(), other_area.code.clone())
                } else {
                    (other_area.code.clone(), area.code.clone())
                };
                overlaps.push(Overlap { code_a, code_b, size_m2 });
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    overlaps.sort_by(|a, b| (&a.code_a, &a.code_b).cmp(&(&b.code_a, &b.code_b)));

    let union = unary_union(areas.iter().map(|area| &area.shape));
    let mut gaps = Vec::new();
    let mut n_slivers = 0;
    for hole in union.iter().flat_map(Polygon::interiors) {
        let hole = Polygon::new(hole.clone(), vec![]);
        let size_m2 = geodesic_m2(&MultiPolygon::new(vec![hole.clone()]));
        if size_m2 < GAP_TOLERANCE_M2 {
            n_slivers += 1;
            continue;
        }
        let point = hole.interior_point().unwrap_or_else(|| hole.exterior().0[0].into());
        gaps.push(Gap { size_m2, point, neighbours: neighbours(&tree, areas, &hole) });
    }
    gaps.sort_by(|a, b| b.size_m2.total_cmp(&a.size_m2));
    ValidationReport { repairs: Vec::new(), normalisations: Vec::new(), overlaps, gaps, n_slivers }
}

/// The areas touching a gap. The union's hole edges can differ from the areas' edges in the last bits, so
/// "touching" is "within about a millimetre" (1e-8 degrees).
fn neighbours(
    tree: &RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>,
    areas: &[Area],
    hole: &Polygon<f64>,
) -> Vec<String> {
    const TOUCH_DEGREES: f64 = 1e-8;
    let Some(rect) = hole.bounding_rect() else { return Vec::new() };
    let envelope = AABB::from_corners(
        [rect.min().x - TOUCH_DEGREES, rect.min().y - TOUCH_DEGREES],
        [rect.max().x + TOUCH_DEGREES, rect.max().y + TOUCH_DEGREES],
    );
    let mut codes: Vec<String> = tree
        .locate_in_envelope_intersecting(&envelope)
        .map(|candidate| &areas[candidate.data])
        .filter(|area| area.shape.iter().any(|polygon| Euclidean.distance(polygon, hole) <= TOUCH_DEGREES))
        .map(|area| area.code.clone())
        .collect();
    codes.sort();
    codes
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use geo::Validation;

    use serde_json::{json, Value};

    use super::*;

    /// A closed, counter-clockwise rectangle as GeoJSON polygon coordinates.
    fn rectangle(lon0: f64, lat0: f64, dlon: f64, dlat: f64) -> Value {
        json!([[[lon0, lat0], [lon0 + dlon, lat0], [lon0 + dlon, lat0 + dlat], [lon0, lat0 + dlat], [lon0, lat0]]])
    }

    fn feature(properties: Value, coordinates: Value) -> Value {
        let geometry = json!({"type": "Polygon", "coordinates": coordinates});
        json!({"type": "Feature", "properties": properties, "geometry": geometry})
    }

    fn collection(features: Vec<Value>) -> Vec<u8> {
        json!({"type": "FeatureCollection", "features": features}).to_string().into_bytes()
    }

    fn read(bytes: &[u8], name_hint: &str) -> Result<ImportedAreas, BoundaryFileError> {
        read_boundary_bytes(bytes, name_hint, &ReadOptions::default())
    }

    fn codes(imported: &ImportedAreas) -> Vec<&str> {
        imported.areas.iter().map(|area| area.code.as_str()).collect()
    }

    /// The area of a small longitude/latitude rectangle on the WGS84 ellipsoid, by hand: its sides are the
    /// meridian radius of curvature M and the parallel's radius N·cos φ at the middle latitude, times the angles.
    fn hand_computed_m2(dlon: f64, dlat: f64, mid_lat: f64) -> f64 {
        let a = 6_378_137.0_f64;
        let flattening = 1.0 / 298.257_223_563;
        let e2 = flattening * (2.0 - flattening);
        let phi = mid_lat.to_radians();
        let w = (1.0 - e2 * phi.sin().powi(2)).sqrt();
        let meridian_radius = a * (1.0 - e2) / w.powi(3);
        let prime_vertical_radius = a / w;
        dlat.to_radians() * meridian_radius * dlon.to_radians() * prime_vertical_radius * phi.cos()
    }

    fn assert_within_one_percent(actual: f64, expected: f64) {
        assert!((actual - expected).abs() / expected < 0.01, "{actual} m² is not within 1% of {expected} m²");
    }

    #[test]
    fn formats_are_detected_from_content_then_extension() {
        assert_eq!(detect("x.json", b"  {\"type\": \"FeatureCollection\"}"), Some(BoundaryFormat::GeoJson));
        assert_eq!(detect("x.json", b"\xEF\xBB\xBF[{\"latitude\": 1}]"), Some(BoundaryFormat::PoliceUk));
        assert_eq!(detect("x.xml", b"<?xml version=\"1.0\"?><kml/>"), Some(BoundaryFormat::Kml));
        assert_eq!(detect("x.bin", b"PK\x03\x04rest"), Some(BoundaryFormat::Kmz));
        assert_eq!(detect("wards.GeoJSON", b""), Some(BoundaryFormat::GeoJson));
        assert_eq!(detect("wards.txt", b"hello"), None);
        assert_eq!("police-uk".parse::<BoundaryFormat>(), Ok(BoundaryFormat::PoliceUk));
        let error = read(b"hello", "wards.txt").unwrap_err();
        assert_eq!(error.code(), "boundary_format_unknown");
    }

    #[test]
    fn geojson_with_ons_fields_takes_the_unique_code_and_its_name() {
        // LADCD sorts before WD13CD and has an NM partner too, but it repeats, so it cannot be the code.
        let ward = |code: &str, name: &str| {
            let (district_code, district_name) = ("E07000192", "Cannock Chase");
            json!({"LADCD": district_code, "LADNM": district_name, "WD13CD": code, "WD13NM": name})
        };
        let bytes = collection(vec![
            feature(ward("E05005041", "Hednesford North"), rectangle(-2.0, 52.7, 0.01, 0.01)),
            feature(ward("E05005042", "Hednesford South"), rectangle(-1.9, 52.7, 0.01, 0.01)),
        ]);
        let imported = read(&bytes, "wards.geojson").unwrap();
        assert_eq!(imported.format, BoundaryFormat::GeoJson);
        assert_eq!(codes(&imported), ["E05005041", "E05005042"]);
        assert_eq!(imported.areas[1].name, "Hednesford South");
        assert!(imported.report.repairs.is_empty() && imported.report.overlaps.is_empty());
        assert!(imported.report.gaps.is_empty());

        let by_district = ReadOptions {
            code_field: Some("WD13CD".into()),
            name_field: Some("LADNM".into()),
            ..ReadOptions::default()
        };
        let imported = read_boundary_bytes(&bytes, "wards.geojson", &by_district).unwrap();
        assert_eq!(imported.areas[0].name, "Cannock Chase");
    }

    #[test]
    fn numbers_are_accepted_as_codes() {
        let bytes = collection(vec![
            feature(json!({"id": 17, "Name": "North"}), rectangle(-2.0, 52.7, 0.01, 0.01)),
            feature(json!({"id": 18}), rectangle(-1.9, 52.7, 0.01, 0.01)),
        ]);
        let imported = read(&bytes, "areas.geojson").unwrap();
        assert_eq!(codes(&imported), ["17", "18"]);
        assert_eq!(imported.areas[0].name, "North");
        assert_eq!(imported.areas[1].name, "18", "a feature without a name is named by its code");

        let lower_case = collection(vec![feature(
            json!({"lad22cd": "E07000198", "lad22nm": "Staffordshire Moorlands", "objectid": 4}),
            rectangle(-2.0, 53.1, 0.01, 0.01),
        )]);
        let imported = read(&lower_case, "districts.geojson").unwrap();
        assert_eq!(
            (imported.areas[0].code.as_str(), imported.areas[0].name.as_str()),
            ("E07000198", "Staffordshire Moorlands")
        );
    }

    const KML: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2">
  <Document>
    <name>Staffordshire neighbourhoods</name>
    <Folder>
      <Placemark>
        <name>Hanley Park</name>
        <ExtendedData><SchemaData schemaUrl="#nbhd">
          <SimpleData name="code">NH01</SimpleData>
        </SchemaData></ExtendedData>
        <Polygon><outerBoundaryIs><LinearRing><coordinates>
          -2.18,53.01,0 -2.17,53.01,0 -2.17,53.02,0 -2.18,53.02,0 -2.18,53.01,0
        </coordinates></LinearRing></outerBoundaryIs></Polygon>
      </Placemark>
      <Placemark>
        <name>Two Islands</name>
        <ExtendedData><Data name="code"><value>NH02</value></Data></ExtendedData>
        <MultiGeometry>
          <Point><coordinates>-2.15,53.015</coordinates></Point>
          <Polygon><outerBoundaryIs><LinearRing><coordinates>
            -2.16,53.01 -2.15,53.01 -2.15,53.02 -2.16,53.02 -2.16,53.01
          </coordinates></LinearRing></outerBoundaryIs></Polygon>
          <Polygon><outerBoundaryIs><LinearRing><coordinates>
            -2.14,53.01 -2.13,53.01 -2.13,53.02 -2.14,53.02 -2.14,53.01
          </coordinates></LinearRing></outerBoundaryIs></Polygon>
        </MultiGeometry>
      </Placemark>
    </Folder>
  </Document>
</kml>"##;

    #[test]
    fn kml_placemarks_take_their_code_from_extended_data_and_name_from_name() {
        let imported = read(KML.as_bytes(), "neighbourhoods.kml").unwrap();
        assert_eq!(imported.format, BoundaryFormat::Kml);
        assert_eq!(codes(&imported), ["NH01", "NH02"]);
        assert_eq!(imported.areas[0].name, "Hanley Park");
        assert_eq!(imported.areas[1].shape.0.len(), 2, "both polygons of the MultiGeometry are kept");
        assert_eq!(
            imported.report.repairs,
            [Repair {
                feature_index: 1,
                code: "NH02".into(),
                name: Some("Two Islands".into()),
                kind: RepairKind::DroppedNonPolygonParts { n_parts: 1 }
            }]
        );
    }

    #[test]
    fn kml_without_a_code_property_is_coded_by_placemark_name() {
        // The extended data is still there, under a name that is no code: the Placemark names are used.
        let without_codes = KML.replace(r#"name="code""#, r#"name="notes""#);
        let imported = read(without_codes.as_bytes(), "neighbourhoods.kml").unwrap();
        assert_eq!(codes(&imported), ["Hanley Park", "Two Islands"]);
    }

    #[test]
    fn kmz_reads_the_kml_inside() {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        writer.start_file("files/legend.txt", deflated).unwrap();
        writer.write_all(b"not a boundary").unwrap();
        writer.start_file("doc.kml", deflated).unwrap();
        writer.write_all(KML.as_bytes()).unwrap();
        let bytes = writer.finish().unwrap().into_inner();

        let imported = read(&bytes, "neighbourhoods.kmz").unwrap();
        assert_eq!(imported.format, BoundaryFormat::Kmz);
        assert_eq!(codes(&imported), ["NH01", "NH02"]);

        let error = read(b"PK\x03\x04 truncated", "broken.kmz").unwrap_err();
        assert_eq!(error.code(), "boundary_unreadable");
        assert!(error.to_string().contains("broken.kmz"), "{error}");
    }

    fn kmz_of(kml: &[u8]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        writer.start_file("doc.kml", deflated).unwrap();
        writer.write_all(kml).unwrap();
        writer.finish().unwrap().into_inner()
    }

    /// Overwrites the uncompressed size that a zip's local and central headers declare for every entry.
    fn declare_uncompressed_size(kmz: &mut [u8], size: u32) {
        for (signature, offset) in [(b"PK\x03\x04", 22), (b"PK\x01\x02", 24)] {
            let mut at = 0;
            while let Some(found) = kmz[at..].windows(4).position(|window| window == signature) {
                let field = at + found + offset;
                kmz[field..field + 4].copy_from_slice(&size.to_le_bytes());
                at += found + 4;
            }
        }
    }

    #[test]
    fn a_kmz_inflating_past_the_cap_is_refused_whatever_its_headers_declare() {
        // 2 MiB of KML padding deflates to a few kilobytes; the cap here is 1 MiB.
        let padding = format!("{KML}<!--{}-->", " ".repeat(2 << 20));
        let honest = kmz_of(padding.as_bytes());
        assert!(honest.len() < 64 << 10, "a bomb is small: {} bytes", honest.len());
        let error = kml_from_kmz(&honest, "bomb.kmz", 1 << 20).unwrap_err();
        assert_eq!(error.code(), "boundary_too_large");
        assert_eq!(
            error.to_string(),
            "bomb.kmz: doc.kml inflates to more than 1048576 bytes (1 MiB), the most a KMZ's KML document may hold; \
             unzip it and import the KML itself"
        );

        // Headers that claim 100 bytes are not believed: the inflating stops at the cap all the same.
        let mut lying = honest.clone();
        declare_uncompressed_size(&mut lying, 100);
        let error = kml_from_kmz(&lying, "bomb.kmz", 1 << 20).unwrap_err();
        assert_eq!(error.code(), "boundary_too_large", "{error}");

        // Under the cap the same file reads.
        assert!(kml_from_kmz(&honest, "fine.kmz", 4 << 20).unwrap().starts_with("<?xml"));
        const { assert!(MAX_KML_BYTES <= 256 << 20, "the real cap stays well under a gibibyte") };
    }

    #[test]
    fn a_bounded_read_of_an_endless_stream_stops_after_the_limit() {
        // An entry that never ends: reading it whole would never return.
        let error = read_bounded(std::io::repeat(b'x'), 1 << 20).unwrap_err();
        assert!(matches!(error, BoundedReadError::TooLarge), "{error:?}");
        assert_eq!(read_bounded(&b"short"[..], 5).unwrap(), b"short");
    }

    #[test]
    fn police_uk_boundary_is_one_polygon_named_after_the_file() {
        let bytes = br#"[
            {"latitude": "52.80", "longitude": "-2.10"},
            {"latitude": "52.80", "longitude": "-2.09"},
            {"latitude": 52.81, "longitude": -2.09},
            {"latitude": 52.81, "longitude": -2.10}
        ]"#;
        let imported = read(bytes, "staffordshire/NH12.json").unwrap();
        assert_eq!(imported.format, BoundaryFormat::PoliceUk);
        assert_eq!(codes(&imported), ["NH12"]);
        assert_eq!(imported.areas[0].name, "NH12");
        assert_eq!(imported.areas[0].shape.0[0].exterior().0.len(), 5);
        // police.uk lists the ring without repeating the first point; closing it is a recorded repair.
        assert_eq!(imported.report.repairs[0].kind, RepairKind::ClosedRings { n_rings: 1 });

        let error = read(br#"[{"latitude": "north", "longitude": "-2.1"}]"#, "NH13.json").unwrap_err();
        assert_eq!(error.code(), "boundary_feature_invalid");
        assert!(error.to_string().contains("point 0"), "{error}");
    }

    #[test]
    fn safe_repairs_are_made_and_recorded() {
        // Clockwise, unclosed, a repeated point, and a hole of two distinct points.
        let coordinates = json!([
            [[-2.0, 52.8], [-2.0, 52.81], [-2.0, 52.81], [-1.99, 52.81], [-1.99, 52.8]],
            [[-1.995, 52.805], [-1.994, 52.805], [-1.995, 52.805]]
        ]);
        let bytes = collection(vec![feature(json!({"code": "A1", "name": "Repaired"}), coordinates)]);
        let imported = read(&bytes, "a.geojson").unwrap();
        let kinds: Vec<&RepairKind> = imported.report.repairs.iter().map(|repair| &repair.kind).collect();
        assert_eq!(
            kinds,
            [&RepairKind::ClosedRings { n_rings: 1 }, &RepairKind::DroppedDegenerateRings { n_rings: 1 }]
        );
        let kinds: Vec<&RepairKind> = imported.report.normalisations.iter().map(|repair| &repair.kind).collect();
        assert_eq!(
            kinds,
            [&RepairKind::RemovedDuplicatePoints { n_points: 1 }, &RepairKind::ReorientedRings { n_rings: 1 }],
            "a repeated point and a clockwise exterior are written differently, not wrong"
        );
        let polygon = &imported.areas[0].shape.0[0];
        assert!(polygon.exterior().is_ccw() && polygon.interiors().is_empty() && polygon.is_valid());
        assert_eq!(polygon.exterior().0.len(), 5);
        let text = imported.report.to_string();
        assert!(
            text.starts_with("2 repair(s) in 1 feature(s), 0.0 m² changed in all; 1 feature(s) normalised"),
            "{text}"
        );
        assert!(text.contains("\n  feature 0 (A1 'Repaired'): closed 1 unclosed ring(s); no area changed\n"), "{text}");
        assert!(text.contains("\n  repeated points removed, in 1 feature: A1\n"), "{text}");
    }

    #[test]
    fn a_self_intersecting_ring_is_made_valid_and_the_area_it_changed_reported() {
        // A bow tie whose right lobe is drawn clockwise: the shoelace formula reads the two lobes as cancelling
        // (no area), the even-odd rule keeps both.
        let bow_tie = json!([[[-2.0, 52.8], [-1.99, 52.81], [-1.99, 52.8], [-2.0, 52.81], [-2.0, 52.8]]]);
        let bytes = collection(vec![
            feature(json!({"code": "OK1", "name": "Fine"}), rectangle(-2.1, 52.8, 0.01, 0.01)),
            feature(json!({"code": "BOW2", "name": "Bow Tie"}), bow_tie),
        ]);
        let imported = read(&bytes, "a.geojson").unwrap();
        let [repair] = imported.report.repairs.as_slice() else { panic!("{}", imported.report) };
        assert_eq!((repair.feature_index, repair.code.as_str(), repair.name.as_deref()), (1, "BOW2", Some("Bow Tie")));
        let RepairKind::MadeValid { n_polygons, area_as_drawn_m2, area_after_m2 } = repair.kind else {
            panic!("{repair:?}")
        };
        assert_eq!(n_polygons, 1);
        assert!(area_as_drawn_m2.abs() < 1.0, "the lobes cancel as drawn: {area_as_drawn_m2}");
        // Two triangles, each a quarter of the 0.01° square.
        assert_within_one_percent(area_after_m2, hand_computed_m2(0.01, 0.01, 52.805) / 2.0);
        let shape = &imported.areas[1].shape;
        assert_eq!(shape.0.len(), 2);
        assert!(shape.is_valid() && shape.0.iter().all(|polygon| polygon.exterior().is_ccw()));
        let line = format!("  {repair}\n");
        assert!(line.starts_with("  feature 1 (BOW2 'Bow Tie'): rebuilt 1 polygon(s) whose rings cross"), "{line}");
        assert!(line.contains(" m² after, ") && line.ends_with(" m² changed (100.000% of the area)\n"), "{line}");
        assert!(imported.report.to_string().contains(&line), "{}", imported.report);
    }

    #[test]
    fn a_ring_that_encloses_nothing_once_made_valid_is_refused_naming_the_feature() {
        // Out to two corners and back the same way: every stretch is drawn twice, so no ground is inside.
        let there_and_back = json!([[[-2.0, 52.8], [-1.99, 52.81], [-1.99, 52.8], [-1.99, 52.81], [-2.0, 52.8]]]);
        let bytes = collection(vec![
            feature(json!({"code": "OK1", "name": "Fine"}), rectangle(-2.1, 52.8, 0.01, 0.01)),
            feature(json!({"code": "BAD2", "name": "Nothing"}), there_and_back),
        ]);
        let error = read(&bytes, "a.geojson").unwrap_err();
        assert_eq!(error.code(), "boundary_feature_invalid");
        let message = error.to_string();
        assert!(message.starts_with("feature 1 (BAD2 'Nothing'): "), "{message}");
        assert!(message.contains("enclose no area once rebuilt"), "{message}");
    }

    #[test]
    fn british_national_grid_coordinates_are_refused_with_a_hint() {
        let bytes = collection(vec![feature(json!({"code": "E1"}), rectangle(398_000.0, 312_000.0, 1000.0, 1000.0))]);
        let error = read(&bytes, "bng.geojson").unwrap_err();
        assert_eq!(error.code(), "boundary_coordinates_out_of_range");
        let message = error.to_string();
        assert!(message.contains("feature 0 (E1)") && message.contains("British National Grid"), "{message}");
    }

    #[test]
    fn a_missing_code_is_refused_listing_the_properties() {
        let bytes = collection(vec![
            feature(json!({"colour": "red", "shape": "square"}), rectangle(-2.0, 52.8, 0.01, 0.01)),
            feature(json!({"colour": "blue", "shape": "square"}), rectangle(-1.9, 52.8, 0.01, 0.01)),
        ]);
        let error = read(&bytes, "a.geojson").unwrap_err();
        assert_eq!(error.code(), "boundary_code_missing");
        assert!(error.to_string().ends_with("choose one of: colour, shape"), "{error}");

        let named = ReadOptions { code_field: Some("WD13CD".into()), ..ReadOptions::default() };
        let error = read_boundary_bytes(&bytes, "a.geojson", &named).unwrap_err();
        assert_eq!(error.code(), "boundary_code_missing");
        assert_eq!(error.to_string(), "feature 0 has no code in property 'WD13CD'; its properties are: colour, shape");

        let named = ReadOptions {
            name_field: Some("title".into()),
            code_field: Some("colour".into()),
            ..ReadOptions::default()
        };
        let error = read_boundary_bytes(&bytes, "a.geojson", &named).unwrap_err();
        assert_eq!(error.code(), "boundary_name_missing");
        assert!(error.to_string().starts_with("feature 0 (red) has no name in property 'title'"), "{error}");
    }

    #[test]
    fn a_duplicate_code_or_an_empty_file_is_refused() {
        let bytes = collection(vec![
            feature(json!({"code": "A", "name": "First"}), rectangle(-2.0, 52.8, 0.01, 0.01)),
            feature(json!({"code": "A", "name": "Second"}), rectangle(-1.9, 52.8, 0.01, 0.01)),
        ]);
        let named = ReadOptions { code_field: Some("code".into()), ..ReadOptions::default() };
        let error = read_boundary_bytes(&bytes, "a.geojson", &named).unwrap_err();
        assert_eq!(error.code(), "boundary_code_duplicate");
        assert_eq!(error.to_string(), "feature 1 (A 'Second') has the code A, already used by feature 0");

        assert_eq!(read(&collection(vec![]), "a.geojson").unwrap_err().code(), "boundary_empty");
        assert_eq!(read(b"[]", "NH1.json").unwrap_err().code(), "boundary_empty");
        let no_geometry = json!({"type": "Feature", "properties": {"code": "Z"}, "geometry": null});
        let error = read(&collection(vec![no_geometry]), "a.geojson").unwrap_err();
        assert_eq!(error.to_string(), "feature 0 (Z): has no geometry");
    }

    #[test]
    fn an_overlap_is_reported_with_its_size() {
        // Two squares of about 1 km at 52.8°N; B starts 0.0015° (about 100 m) before A ends.
        let (dlon, dlat, strip) = (0.015, 0.009, 0.0015);
        let bytes = collection(vec![
            feature(json!({"code": "B"}), rectangle(-2.0 + dlon - strip, 52.8, dlon, dlat)),
            feature(json!({"code": "A"}), rectangle(-2.0, 52.8, dlon, dlat)),
        ]);
        let imported = read(&bytes, "a.geojson").unwrap();
        let [overlap] = imported.report.overlaps.as_slice() else { panic!("{}", imported.report) };
        assert_eq!((overlap.code_a.as_str(), overlap.code_b.as_str()), ("A", "B"));
        let expected = hand_computed_m2(strip, dlat, 52.8 + dlat / 2.0);
        assert!((90_000.0..110_000.0).contains(&expected), "the strip is about 100 m by 1 km");
        assert_within_one_percent(overlap.size_m2, expected);
        assert!(imported.report.gaps.is_empty());
        assert!(imported.report.to_string().contains("A and B: "), "{}", imported.report);
    }

    #[test]
    fn a_gap_enclosed_by_areas_is_reported_with_its_size_and_neighbours() {
        // A ring of eight 0.01° cells around an empty ninth; the cells share edges exactly, so nothing overlaps.
        let cell = 0.01;
        let mut features = Vec::new();
        for row in 0..3 {
            for column in 0..3 {
                if (row, column) != (1, 1) {
                    let lon0 = -2.0 + f64::from(column) * cell;
                    let lat0 = 52.8 + f64::from(row) * cell;
                    features
                        .push(feature(json!({"code": format!("C{row}{column}")}), rectangle(lon0, lat0, cell, cell)));
                }
            }
        }
        let imported = read(&collection(features), "ring.geojson").unwrap();
        assert!(imported.report.overlaps.is_empty(), "{}", imported.report);
        let [gap] = imported.report.gaps.as_slice() else { panic!("{}", imported.report) };
        assert_within_one_percent(gap.size_m2, hand_computed_m2(cell, cell, 52.815));
        assert!((gap.point.x() - (-1.985)).abs() < cell / 2.0 && (gap.point.y() - 52.815).abs() < cell / 2.0);
        assert_eq!(gap.neighbours, ["C00", "C01", "C02", "C10", "C12", "C20", "C21", "C22"]);
        assert_eq!(imported.report.n_slivers, 0);
        let text = imported.report.to_string();
        assert!(text.contains("m² around (-1.98"), "{text}");
        assert!(text.contains(", between C00, C01, C02, C10, C12, C20, C21, C22\n"), "{text}");
    }

    #[test]
    fn a_sliver_under_the_tolerance_is_counted_not_listed() {
        // Two cells 1e-6° apart (about 7 cm), closed above and below by wide cells: a hole of about 80 m².
        let cell = 0.01;
        let features = vec![
            feature(json!({"code": "W"}), rectangle(-2.0, 52.8, cell, cell)),
            feature(json!({"code": "E"}), rectangle(-2.0 + cell + 1e-6, 52.8, cell, cell)),
            feature(json!({"code": "S"}), rectangle(-2.0, 52.8 - cell, 3.0 * cell, cell)),
            feature(json!({"code": "N"}), rectangle(-2.0, 52.8 + cell, 3.0 * cell, cell)),
        ];
        let imported = read(&collection(features), "slivers.geojson").unwrap();
        assert!(imported.report.gaps.is_empty(), "{}", imported.report);
        assert_eq!(imported.report.n_slivers, 1);
    }

    #[test]
    fn parts_of_one_area_sharing_an_edge_are_merged() {
        let coordinates = json!([rectangle(-2.0, 52.8, 0.01, 0.01), rectangle(-1.99, 52.8, 0.01, 0.01)]);
        let geometry = json!({"type": "MultiPolygon", "coordinates": coordinates});
        let multi = json!({"type": "Feature", "properties": {"code": "M"}, "geometry": geometry});
        let imported = read(&collection(vec![multi]), "a.geojson").unwrap();
        assert_eq!(imported.report.repairs[0].kind, RepairKind::MergedParts { n_parts_before: 2, n_parts_after: 1 });
        let shape = &imported.areas[0].shape;
        assert!(shape.is_valid() && shape.0[0].exterior().is_ccw());
        assert_within_one_percent(shape.geodesic_area_unsigned(), hand_computed_m2(0.02, 0.01, 52.805));
    }

    #[test]
    fn the_bundled_wards_read_and_validate() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/boundaries/staffordshire-wards-2013.geojson");
        let imported = read_boundary_file(&path, &ReadOptions::default()).unwrap();
        assert_eq!(imported.areas.len(), 211);
        let abbey = imported.areas.iter().find(|area| area.code == "E05008714").unwrap();
        assert_eq!(abbey.name, "Abbey Hulton and Townsend");
        assert!(imported.areas.iter().all(|area| area.shape.is_valid()));
        // The wards share their edges exactly and cover the county without holes; the file winds its exteriors
        // clockwise (the shapefile convention), so each one is reversed. That is a normalisation, not a repair: the
        // report must not make a clean file look broken.
        let report = &imported.report;
        assert!(report.overlaps.is_empty() && report.gaps.is_empty() && report.n_slivers == 0, "{report}");
        assert_eq!(report.repairs, []);
        assert_eq!(report.normalisations.len(), 211);
        assert!(report.normalisations.iter().all(|repair| repair.kind == RepairKind::ReorientedRings { n_rings: 1 }));
        let text = report.to_string();
        assert!(
            text.starts_with(
                "0 repair(s) in 0 feature(s), 0.0 m² changed in all; 211 feature(s) normalised (no shape changed);"
            ),
            "{text}"
        );
        assert!(!text.contains("Repairs"), "{text}");
        assert!(text.contains("\nNormalised (not repairs: each shape is unchanged, only written the conventional way):\n  rings reversed (exteriors counter-clockwise, holes clockwise), in 211 features: E05008714, "), "{text}");
    }
}
