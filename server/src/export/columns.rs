//! The columns of the exports (docs/exports.md is their dictionary, and a test holds the two together): every format
//! of the insight export has the same columns, in the same order, with the same meanings as the API's insight item
//! (`http::insights::InsightItem`); the roll-up table has its own. A record or a cell becomes a `Row` of typed values
//! once, here, and each writer only spells the values its way.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use grapevine_sync_proto::document::format_time;
use grapevine_sync_proto::Channel;

use crate::domain::PeriodKind;
use crate::geo::atlas::Atlas;
use crate::store::rollup::{RollupCell, ALL_CATEGORIES};
use crate::store::{Outcome, OUTSIDE_COVERAGE};
use crate::usecase::insights::InsightView;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Real,
    Boolean,
}

/// One column: its name (the CSV header, the GeoJSON property, the GeoPackage column) and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

const fn text(name: &'static str) -> Column {
    Column { name, kind: Kind::Text }
}

const fn integer(name: &'static str) -> Column {
    Column { name, kind: Kind::Integer }
}

const fn real(name: &'static str) -> Column {
    Column { name, kind: Kind::Real }
}

const fn boolean(name: &'static str) -> Column {
    Column { name, kind: Kind::Boolean }
}

/// One value of a row; `Null` is an empty cell. Text is borrowed when it is one of the program's own words (a status,
/// a category's label): a million rows make no copy of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(Cow<'static, str>),
    Integer(i64),
    Real(f64),
    Boolean(bool),
}

impl Value {
    fn text(text: Option<impl Into<Cow<'static, str>>>) -> Value {
        text.map_or(Value::Null, |text| Value::Text(text.into()))
    }

    fn real(number: Option<f64>) -> Value {
        number.map_or(Value::Null, Value::Real)
    }

    /// Whether the value may stand in a column of `kind`.
    #[must_use]
    pub fn fits(&self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Value::Null, _)
                | (Value::Text(_), Kind::Text)
                | (Value::Integer(_), Kind::Integer)
                | (Value::Real(_), Kind::Real)
                | (Value::Boolean(_), Kind::Boolean)
        )
    }
}

/// One row of an export: a value for each column, and the point a map places it at (longitude, latitude).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub values: Vec<Value>,
    pub point: Option<(f64, f64)>,
}

/// The columns of the insight export, in order.
pub const INSIGHT_COLUMNS: [Column; 33] = [
    text("id"),
    text("captured_at"),
    text("category"),
    text("category_label"),
    text("text"),
    integer("feeling_safe"),
    text("channel"),
    real("lat"),
    real("lon"),
    real("accuracy_m"),
    text("located_by"),
    text("postcode"),
    text("picked_area"),
    real("point_lat"),
    real("point_lon"),
    text("boundary_set"),
    integer("boundary_generation"),
    text("area_code"),
    text("area_name"),
    boolean("near_boundary"),
    text("areas"),
    text("status"),
    text("rejection_code"),
    text("rejection_message"),
    text("processed_at"),
    text("collector"),
    text("cohort"),
    text("triage_state"),
    integer("triage_version"),
    text("triage_updated_at"),
    text("triage_updated_by"),
    text("triage_tags"),
    text("priorities"),
];

/// What separates the items of a list held in one cell (triage tags, priorities, areas).
pub const LIST_SEPARATOR: &str = "; ";

/// Makes insight rows: the generation the export's areas are read in, and the atlas that names every area.
#[derive(Debug, Clone)]
pub struct InsightRows {
    pub atlas: Arc<Atlas>,
    pub generation_id: i64,
}

impl InsightRows {
    /// An insight as a row of `INSIGHT_COLUMNS`.
    #[must_use]
    pub fn row(&self, view: InsightView) -> Row {
        let InsightView { record, collector } = view;
        let row = record.row;
        let located_by = row.located_by();
        // The map's point: the GPS fix, else the point the insight is tagged by (a postcode's centroid, a picked
        // area's interior point).
        let point = row.gps.map(|(lat, lon, _)| (lat, lon)).or(row.tag_point);
        let generation = self.atlas.generation_by_id(self.generation_id);
        let here = row.tags.iter().find(|tag| tag.generation_id == self.generation_id);
        let inside = here.filter(|tag| tag.area_code != OUTSIDE_COVERAGE);
        let mut areas = String::new();
        for tag in &row.tags {
            let Some(generation) = self.atlas.generation_by_id(tag.generation_id) else { continue };
            if !areas.is_empty() {
                areas.push_str(LIST_SEPARATOR);
            }
            let _ = write!(areas, "{}/{}={}", generation.info.set_name, generation.info.generation, tag.area_code);
        }
        let (rejection_code, rejection_message) = match &row.outcome {
            Outcome::Rejected { code, message } => (Some(code.as_str().to_owned()), Some(message.clone())),
            _ => (None, None),
        };
        let category_label =
            row.category.as_deref().and_then(|slug| DEFAULT_CAMPAIGN.category(slug)).map(|category| category.label);
        let triage = record.triage;
        let values = vec![
            Value::Text(row.id.to_string().into()),
            Value::text(row.captured_at.map(format_time)),
            Value::text(row.category),
            Value::text(category_label),
            Value::text(row.text),
            row.feeling_safe.map_or(Value::Null, |score| Value::Integer(score.into())),
            Value::text(row.channel),
            Value::real(row.gps.map(|(lat, _, _)| lat)),
            Value::real(row.gps.map(|(_, lon, _)| lon)),
            Value::real(row.gps.map(|(_, _, accuracy)| accuracy)),
            Value::text(located_by),
            Value::text(row.postcode),
            Value::text(row.picked_area_code),
            Value::real(point.map(|(lat, _)| lat)),
            Value::real(point.map(|(_, lon)| lon)),
            Value::text(generation.map(|generation| generation.info.set_name.clone())),
            generation.map_or(Value::Null, |generation| Value::Integer(generation.info.generation)),
            Value::text(inside.map(|tag| tag.area_code.clone())),
            Value::text(inside.and_then(|tag| {
                generation
                    .and_then(|generation| generation.boundaries.area(&tag.area_code))
                    .map(|area| area.name.clone())
            })),
            here.map_or(Value::Null, |tag| Value::Boolean(tag.near_boundary)),
            Value::text((!areas.is_empty()).then_some(areas)),
            Value::Text(row.outcome.status().into()),
            Value::text(rejection_code),
            Value::text(rejection_message),
            Value::Text(format_time(row.processed_at).into()),
            Value::Text(collector.into()),
            Value::text(record.cohort),
            Value::Text(triage.state.as_str().into()),
            Value::Integer(triage.version),
            Value::text(triage.updated_at.map(format_time)),
            Value::text(triage.updated_by),
            Value::text((!triage.tags.is_empty()).then(|| triage.tags.join(LIST_SEPARATOR))),
            Value::text((!triage.priorities.is_empty()).then(|| triage.priorities.join(LIST_SEPARATOR))),
        ];
        Row { values, point: point.map(|(lat, lon)| (lon, lat)) }
    }
}

/// The columns of the roll-up table: one row per area, category and period.
pub const ROLLUP_COLUMNS: [Column; 19] = [
    text("boundary_set"),
    integer("boundary_generation"),
    text("area_code"),
    text("area_name"),
    text("period"),
    text("period_start"),
    text("period_last_day"),
    text("category"),
    text("category_label"),
    integer("insights"),
    integer("contributors"),
    integer("feeling_safe_n"),
    integer("feeling_safe_sum"),
    real("feeling_safe_mean"),
    integer("channel_staff"),
    integer("channel_barber_hairdresser"),
    integer("channel_pupil"),
    integer("channel_youth_worker"),
    integer("channel_other"),
];

/// The category the roll-up table names the all-categories cells by.
pub const ALL_CATEGORIES_NAME: &str = "all";

/// Makes roll-up rows for one generation and period kind.
#[derive(Debug, Clone)]
pub struct RollupRows {
    pub atlas: Arc<Atlas>,
    pub generation_id: i64,
    pub kind: PeriodKind,
}

impl RollupRows {
    /// A cell as a row of `ROLLUP_COLUMNS`.
    #[must_use]
    pub fn row(&self, cell: RollupCell) -> Row {
        let generation = self.atlas.generation_by_id(self.generation_id);
        let area_name =
            generation.and_then(|generation| generation.boundaries.area(&cell.area_code)).map(|area| area.name.clone());
        let (category, label) = if cell.category == ALL_CATEGORIES {
            (ALL_CATEGORIES_NAME.into(), Some("All categories"))
        } else {
            let label = DEFAULT_CAMPAIGN.category(&cell.category).map(|category| category.label);
            (cell.category.into(), label)
        };
        let last_day = self.kind.end_of(cell.period_start).previous_day().unwrap_or(cell.period_start);
        let sums = cell.sums;
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let mean = (sums.feeling_safe_n > 0).then(|| sums.feeling_safe_sum as f64 / sums.feeling_safe_n as f64);
        let mut values = vec![
            Value::text(generation.map(|generation| generation.info.set_name.clone())),
            generation.map_or(Value::Null, |generation| Value::Integer(generation.info.generation)),
            Value::text((cell.area_code != OUTSIDE_COVERAGE).then_some(cell.area_code)),
            Value::text(area_name),
            Value::Text(self.kind.as_str().into()),
            Value::Text(cell.period_start.to_string().into()),
            Value::Text(last_day.to_string().into()),
            Value::Text(category),
            Value::text(label),
            Value::Integer(sums.n),
            Value::Integer(cell.contributors),
            Value::Integer(sums.feeling_safe_n),
            Value::Integer(sums.feeling_safe_sum),
            Value::real(mean),
        ];
        debug_assert_eq!(Channel::ALL.len(), sums.channels.len());
        values.extend(sums.channels.iter().map(|&n| Value::Integer(n)));
        Row { values, point: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_columns_follow_the_channels_order() {
        let names: Vec<String> = Channel::ALL
            .iter()
            .map(|channel| format!("channel_{}", channel.as_str().replace('-', "_").replace("_channel", "")))
            .collect();
        let columns: Vec<&str> = ROLLUP_COLUMNS[14..].iter().map(|column| column.name).collect();
        assert_eq!(names, columns);
    }

    /// The rows of the table between `<!-- NAME -->` and `<!-- /NAME -->` in docs/exports.md: (column, type).
    fn documented(name: &str) -> Vec<(String, String)> {
        let text = include_str!("../../../docs/exports.md");
        let body = text.split(&format!("<!-- {name} -->")).nth(1).unwrap().split(&format!("<!-- /{name} -->")).next();
        body.unwrap()
            .lines()
            .filter(|line| line.starts_with('|'))
            .skip(2)
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
                (cells[0].trim_matches('`').to_owned(), cells[1].to_owned())
            })
            .collect()
    }

    #[test]
    fn the_column_dictionary_lists_every_column_in_order_with_its_type() {
        for (name, columns) in [("insight-columns", &INSIGHT_COLUMNS[..]), ("rollup-columns", &ROLLUP_COLUMNS[..])] {
            let code: Vec<(String, String)> = columns
                .iter()
                .map(|column| {
                    let kind = match column.kind {
                        Kind::Text => "text",
                        Kind::Integer => "integer",
                        Kind::Real => "real",
                        Kind::Boolean => "boolean",
                    };
                    (column.name.to_owned(), kind.to_owned())
                })
                .collect();
            assert_eq!(documented(name), code, "docs/exports.md, {name}");
        }
    }

    #[test]
    fn column_names_are_unique_and_plain() {
        for columns in [&INSIGHT_COLUMNS[..], &ROLLUP_COLUMNS[..]] {
            let mut names: Vec<&str> = columns.iter().map(|column| column.name).collect();
            assert!(names.iter().all(|name| name.bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'_')));
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), columns.len());
        }
    }
}
