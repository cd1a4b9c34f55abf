//! Pictures drawn on the server as SVG, with no script: a line chart (an area's trend by category over months) and
//! a map of one area with a point in it (where an insight is). Each is worked out here as numbers and text, and
//! drawn by a template (`templates/chart.html`), which escapes every word. Each picture is `role="img"` with a title
//! and a description; the chart's numbers are also in a table beside it, so nothing is only in the picture.

use std::fmt::Write as _;

use geo::MultiPolygon;

/// How many line styles there are (colour, dash and marker together, so no line is told apart by colour alone).
pub(crate) const STYLES: usize = 6;

/// One tick of an axis: where, and its words.
#[derive(Debug, Clone)]
pub(crate) struct Tick {
    pub at: String,
    pub label: String,
}

/// One drawn line: its style (`chart__series--N`), the points, the markers on them, and its label at its end.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub style: usize,
    pub points: String,
    pub markers: String,
    pub label: String,
    pub label_x: String,
    pub label_y: String,
}

/// A line chart, laid out.
#[derive(Debug, Clone)]
pub(crate) struct LineChart {
    /// Prefixes the ids of the title and the description.
    pub id: &'static str,
    pub title: String,
    pub description: String,
    pub width: u32,
    pub height: u32,
    pub plot_left: String,
    pub plot_right: String,
    pub plot_bottom: String,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    /// The y of the x axis' labels.
    pub x_label_y: String,
    pub lines: Vec<Line>,
}

/// One series of a line chart: its name and a value per x.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub label: String,
    pub values: Vec<i64>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 48.0;
/// Room for the lines' labels at their right ends.
const RIGHT: f64 = 210.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;
/// The least distance between two labels at the lines' ends, so they do not overlap.
const LABEL_GAP: f64 = 16.0;

fn number(value: f64) -> String {
    format!("{value:.1}")
}

/// A round top for the y axis at or above `max`, and the step between its ticks (1, 2 or 5 times a power of ten,
/// at most five steps).
fn y_scale(max: i64) -> (i64, i64) {
    let max = max.max(1);
    let mut power = 1_i64;
    loop {
        for step in [power, power * 2, power * 5] {
            if max <= step * 5 {
                let top = (max + step - 1) / step * step;
                return (top, step);
            }
        }
        power = power.saturating_mul(10);
    }
}

/// The markers of style `style` at each point, as one path: circle, square, triangle, diamond, cross, bar.
fn markers(style: usize, points: &[(f64, f64)]) -> String {
    let mut path = String::new();
    for &(x, y) in points {
        let _ = match style % STYLES {
            0 => write!(path, "M{:.1} {:.1}a4 4 0 1 0 8 0a4 4 0 1 0 -8 0", x - 4.0, y),
            1 => write!(path, "M{:.1} {:.1}h7v7h-7z", x - 3.5, y - 3.5),
            2 => write!(path, "M{:.1} {:.1}l4.5 8h-9z", x, y - 5.0),
            3 => write!(path, "M{:.1} {:.1}l5 5l-5 5l-5 -5z", x, y - 5.0),
            4 => write!(path, "M{:.1} {:.1}l8 8m0 -8l-8 8", x - 4.0, y - 4.0),
            _ => write!(path, "M{:.1} {:.1}h9v3h-9z", x - 4.5, y - 1.5),
        };
    }
    path
}

/// Spreads label positions (wanted, in drawing order) so that no two are closer than `LABEL_GAP`, staying within
/// `[low, high]` where they can.
fn spread(wanted: &[f64], low: f64, high: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    order.sort_by(|&a, &b| wanted[a].total_cmp(&wanted[b]));
    let mut placed = vec![0.0; wanted.len()];
    let mut last = f64::NEG_INFINITY;
    for &index in &order {
        let y = wanted[index].max(last + LABEL_GAP).max(low);
        placed[index] = y;
        last = y;
    }
    // Pushed past the bottom: shift the run back up, keeping the gaps.
    let overflow = last - high;
    if overflow > 0.0 {
        let mut next = f64::INFINITY;
        for &index in order.iter().rev() {
            let y = (placed[index] - overflow).min(next - LABEL_GAP);
            placed[index] = y;
            next = y;
        }
    }
    placed
}

impl LineChart {
    /// Lays out `series` over the x labels `x_labels` (one value per label in each series).
    pub fn new(
        id: &'static str,
        title: String,
        description: String,
        x_labels: &[String],
        series: &[Series],
    ) -> LineChart {
        let (plot_left, plot_right, plot_top, plot_bottom) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
        let max = series.iter().flat_map(|series| series.values.iter().copied()).max().unwrap_or(0);
        let (top, step) = y_scale(max);
        #[allow(clippy::cast_precision_loss)] // counts and indexes far below 2^52
        let y_of = |value: i64| plot_bottom - (plot_bottom - plot_top) * value as f64 / top as f64;
        #[allow(clippy::cast_precision_loss)]
        let x_of = |index: usize| {
            if x_labels.len() <= 1 {
                (plot_left + plot_right) / 2.0
            } else {
                plot_left + 12.0 + (plot_right - plot_left - 24.0) * index as f64 / (x_labels.len() - 1) as f64
            }
        };
        let y_ticks = (0..=top / step)
            .map(|tick| Tick { at: number(y_of(tick * step)), label: (tick * step).to_string() })
            .collect();
        // Every label when there is room, otherwise every other one (the last always).
        let every = if x_labels.len() > 8 { 2 } else { 1 };
        let x_ticks = x_labels
            .iter()
            .enumerate()
            .filter(|(index, _)| (x_labels.len() - 1 - index).is_multiple_of(every))
            .map(|(index, label)| Tick { at: number(x_of(index)), label: label.clone() })
            .collect();
        let ends: Vec<f64> = series.iter().map(|series| y_of(series.values.last().copied().unwrap_or(0))).collect();
        let label_ys = spread(&ends, plot_top + 4.0, plot_bottom);
        let lines = series
            .iter()
            .enumerate()
            .map(|(style, series)| {
                let points: Vec<(f64, f64)> =
                    series.values.iter().enumerate().map(|(index, value)| (x_of(index), y_of(*value))).collect();
                Line {
                    style: style % STYLES,
                    points: points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" "),
                    markers: markers(style, &points),
                    label: format!("{} ({})", series.label, series.values.last().copied().unwrap_or(0)),
                    label_x: number(plot_right + 10.0),
                    label_y: number(label_ys[style] + 4.0),
                }
            })
            .collect();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small positive constants
        LineChart {
            id,
            title,
            description,
            width: WIDTH as u32,
            height: HEIGHT as u32,
            plot_left: number(plot_left),
            plot_right: number(plot_right),
            plot_bottom: number(plot_bottom),
            y_ticks,
            x_ticks,
            x_label_y: number(plot_bottom + 24.0),
            lines,
        }
    }
}

/// A map of one area with a point: the area's outline projected into the picture, and the point.
#[derive(Debug, Clone)]
pub(crate) struct AreaMap {
    pub title: String,
    pub description: String,
    pub width: String,
    pub height: String,
    /// The outline as an SVG path (every ring of every polygon; holes by the even-odd rule).
    pub outline: String,
    pub point: Option<(String, String)>,
}

/// The longest side of the map's drawing, in its own units.
const MAP_SIZE: f64 = 400.0;
const MAP_MARGIN: f64 = 12.0;

impl AreaMap {
    /// Projects `shape` (and `point`, latitude then longitude) simply: longitude scaled by the cosine of the middle
    /// latitude, so the area keeps its shape at a neighbourhood's scale, fitted into `MAP_SIZE`. Vertices closer than
    /// half a unit to the last one drawn are left out, which changes nothing one can see.
    pub fn new(title: String, description: String, shape: &MultiPolygon<f64>, point: Option<(f64, f64)>) -> AreaMap {
        use geo::CoordsIter;
        let mut lons: Vec<f64> = shape.coords_iter().map(|coord| coord.x).collect();
        let mut lats: Vec<f64> = shape.coords_iter().map(|coord| coord.y).collect();
        if let Some((lat, lon)) = point {
            lons.push(lon);
            lats.push(lat);
        }
        let bounds = |values: &[f64]| {
            values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| (low.min(*value), high.max(*value)))
        };
        let ((west, east), (south, north)) = (bounds(&lons), bounds(&lats));
        let squeeze = ((south + north) / 2.0).to_radians().cos().max(0.01);
        let (span_x, span_y) = (((east - west) * squeeze).max(1e-9), (north - south).max(1e-9));
        let scale = MAP_SIZE / span_x.max(span_y);
        let project =
            |lon: f64, lat: f64| (MAP_MARGIN + (lon - west) * squeeze * scale, MAP_MARGIN + (north - lat) * scale);
        let mut outline = String::new();
        for polygon in shape {
            for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
                let mut last: Option<(f64, f64)> = None;
                for coord in ring.coords() {
                    let (x, y) = project(coord.x, coord.y);
                    let far = last.is_none_or(|(last_x, last_y)| (x - last_x).abs() + (y - last_y).abs() >= 0.5);
                    if far {
                        let _ = write!(outline, "{}{x:.1} {y:.1}", if last.is_none() { "M" } else { "L" });
                        last = Some((x, y));
                    }
                }
                outline.push('Z');
            }
        }
        let point = point.map(|(lat, lon)| {
            let (x, y) = project(lon, lat);
            (number(x), number(y))
        });
        AreaMap {
            title,
            description,
            width: number(span_x * scale + 2.0 * MAP_MARGIN),
            height: number(span_y * scale + 2.0 * MAP_MARGIN),
            outline,
            point,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{polygon, MultiPolygon};

    #[test]
    fn the_y_axis_ends_on_a_round_number_in_at_most_five_steps() {
        assert_eq!(y_scale(0), (1, 1));
        assert_eq!(y_scale(3), (3, 1));
        assert_eq!(y_scale(7), (8, 2));
        assert_eq!(y_scale(12), (15, 5));
        assert_eq!(y_scale(48), (50, 10));
        assert_eq!(y_scale(1234), (1500, 500));
    }

    #[test]
    fn labels_at_the_lines_ends_never_overlap() {
        let placed = spread(&[100.0, 101.0, 99.0, 300.0], 20.0, 296.0);
        let mut sorted = placed.clone();
        sorted.sort_by(f64::total_cmp);
        assert!(sorted.windows(2).all(|pair| pair[1] - pair[0] >= LABEL_GAP - 1e-9), "{placed:?}");
        assert!(sorted.last().unwrap() <= &296.0, "{placed:?}");
        assert!((placed[3] - 296.0).abs() < 1e-9 || placed[3] <= 296.0, "{placed:?}");
    }

    #[test]
    fn a_chart_puts_the_biggest_value_at_the_top_and_zero_at_the_bottom() {
        let months: Vec<String> = ["Jan", "Feb", "Mar"].map(str::to_owned).to_vec();
        let series = [
            Series { label: "Drugs".into(), values: vec![0, 5, 10] },
            Series { label: "Other".into(), values: vec![1, 1, 1] },
        ];
        let chart = LineChart::new("t", "t".into(), "d".into(), &months, &series);
        assert_eq!(chart.lines.len(), 2);
        let first = chart.lines[0].points.split(' ').next().unwrap();
        assert_eq!(first.split(',').nth(1).unwrap(), chart.plot_bottom, "0 sits on the axis");
        let last = chart.lines[0].points.split(' ').next_back().unwrap();
        assert_eq!(last.split(',').nth(1).unwrap(), number(TOP), "the top of the scale is 10");
        assert_eq!(chart.lines[0].label, "Drugs (10)");
        assert_eq!(chart.y_ticks.last().unwrap().label, "10");
    }

    #[test]
    fn a_map_keeps_the_areas_shape_and_puts_the_point_inside_it() {
        let square = MultiPolygon::new(vec![polygon![
            (x: -2.0, y: 53.0), (x: -1.9, y: 53.0), (x: -1.9, y: 53.1), (x: -2.0, y: 53.1), (x: -2.0, y: 53.0)
        ]]);
        let map = AreaMap::new("t".into(), "d".into(), &square, Some((53.05, -1.95)));
        // A tenth of a degree of longitude at 53° is about 0.6 of a tenth of latitude.
        let (width, height): (f64, f64) = (map.width.parse().unwrap(), map.height.parse().unwrap());
        assert!((width - 2.0 * MAP_MARGIN) / (height - 2.0 * MAP_MARGIN) - 0.6 < 0.01, "{width} × {height}");
        assert!(map.outline.starts_with('M') && map.outline.ends_with('Z'), "{}", map.outline);
        let (x, y) = map.point.unwrap();
        let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
        assert!((x - width / 2.0).abs() < 0.2 && (y - height / 2.0).abs() < 0.2, "({x}, {y}) in {width} × {height}");
    }
}
