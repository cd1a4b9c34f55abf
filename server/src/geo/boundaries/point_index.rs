//! A uniform grid over the areas' bounding box that answers most points without a polygon test.
//!
//! A cell that no area edge comes near has one answer for every point in it: no boundary runs through it, so no
//! area begins or ends inside it. Such cells are found by marking the cells each edge passes near, and their answers
//! by flood fill: neighbouring unmarked cells share a side no edge touches, so a whole connected group of them gets the
//! answer of one point tested exactly. Only points in marked cells (near a boundary) are tested against polygons,
//! and only against the areas whose bounding box reaches the cell, in code order, with the same exact test `locate`
//! has always used (`Intersects`). The grid therefore changes how fast an answer comes, never the answer.
//!
//! Cells are widened by a margin a million times the rounding of the cell arithmetic when edges are marked, so a point
//! that rounding puts in the neighbouring cell is still covered by that cell's answer.

use geo::{BoundingRect, Intersects, Point};

use super::Area;

/// Cells per area edge: more cells make fewer points land near a boundary, at the cost of memory and load time.
const CELLS_PER_EDGE: usize = 16;
/// At most 4 Mi cells (16 MiB) whatever the boundary set.
const MAX_CELLS: usize = 1 << 22;
/// How much wider than a cell the region is that an edge must miss for the cell to have a single answer.
const MARGIN: f64 = 1e-6;

/// A cell outside every area.
const OUTSIDE: u32 = u32::MAX;
/// Flag on a cell near a boundary; the rest is its index into `starts`.
const NEAR_BOUNDARY: u32 = 1 << 31;
/// A cell's answer while the grid is being built.
const UNKNOWN: u32 = u32::MAX - 1;

#[derive(Debug)]
pub(super) struct PointIndex {
    min_x: f64,
    min_y: f64,
    max_x: f64,
    max_y: f64,
    /// Cells per degree.
    x_scale: f64,
    y_scale: f64,
    nx: usize,
    ny: usize,
    /// Row by row: an area index (the whole cell is in that area), `OUTSIDE`, or `NEAR_BOUNDARY | i` where
    /// `candidates[starts[i]..starts[i + 1]]` are the areas to test, in code order.
    cells: Vec<u32>,
    starts: Vec<u32>,
    candidates: Vec<u32>,
}

impl PointIndex {
    /// Builds the grid. `areas` is sorted by code and every area has a bounding box (`Boundaries::new` checks both).
    pub(super) fn new(areas: &[Area]) -> PointIndex {
        assert!(areas.len() < NEAR_BOUNDARY as usize, "too many areas for the point index");
        let boxes: Vec<geo::Rect<f64>> =
            areas.iter().map(|area| area.shape.bounding_rect().expect("every area has an extent")).collect();
        let min_x = boxes.iter().map(|b| b.min().x).fold(f64::INFINITY, f64::min);
        let min_y = boxes.iter().map(|b| b.min().y).fold(f64::INFINITY, f64::min);
        let max_x = boxes.iter().map(|b| b.max().x).fold(f64::NEG_INFINITY, f64::max);
        let max_y = boxes.iter().map(|b| b.max().y).fold(f64::NEG_INFINITY, f64::max);
        let n_edges: usize = areas
            .iter()
            .flat_map(|area| &area.shape.0)
            .flat_map(|polygon| std::iter::once(polygon.exterior()).chain(polygon.interiors()))
            .map(|ring| ring.0.len())
            .sum();
        let (width, height) = (max_x - min_x, max_y - min_y);
        let target_cells = (n_edges * CELLS_PER_EDGE).clamp(1, MAX_CELLS);
        // Square cells (in degrees); a box with no width or no height gets one column or one row.
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (nx, ny) = if width > 0.0 && height > 0.0 {
            let side = (width * height / target_cells as f64).sqrt();
            (((width / side).ceil() as usize).max(1), ((height / side).ceil() as usize).max(1))
        } else if width > 0.0 {
            (target_cells.min(4096), 1)
        } else if height > 0.0 {
            (1, target_cells.min(4096))
        } else {
            (1, 1)
        };
        #[allow(clippy::cast_precision_loss)]
        let (x_scale, y_scale) =
            (if width > 0.0 { nx as f64 / width } else { 0.0 }, if height > 0.0 { ny as f64 / height } else { 0.0 });
        let mut index = PointIndex {
            min_x,
            min_y,
            max_x,
            max_y,
            x_scale,
            y_scale,
            nx,
            ny,
            cells: vec![UNKNOWN; nx * ny],
            starts: Vec::new(),
            candidates: Vec::new(),
        };
        index.mark_cells_near_edges(areas);
        index.list_candidates(&boxes);
        index.fill_whole_cells(areas, &boxes);
        index
    }

    /// The index of the area containing the point by the border rule, as `Boundaries::locate` defines it.
    #[inline]
    pub(super) fn locate(&self, areas: &[Area], lon: f64, lat: f64) -> Option<usize> {
        // Written so that NaN lands outside.
        if !(lon >= self.min_x && lon <= self.max_x && lat >= self.min_y && lat <= self.max_y) {
            return None;
        }
        let cell = self.cells[self.cell_of(lon, lat)];
        if cell == OUTSIDE {
            return None;
        }
        if cell & NEAR_BOUNDARY == 0 {
            return Some(cell as usize);
        }
        let near_idx = (cell & !NEAR_BOUNDARY) as usize;
        let point = Point::new(lon, lat);
        self.candidates[self.starts[near_idx] as usize..self.starts[near_idx + 1] as usize]
            .iter()
            .map(|&area_idx| area_idx as usize)
            .find(|&area_idx| areas[area_idx].shape.intersects(&point))
    }

    /// The cell a point inside the box falls in.
    #[inline]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn cell_of(&self, x: f64, y: f64) -> usize {
        let col = (((x - self.min_x) * self.x_scale) as usize).min(self.nx - 1);
        let row = (((y - self.min_y) * self.y_scale) as usize).min(self.ny - 1);
        row * self.nx + col
    }

    /// The columns (or rows) whose cells, widened by the margin, reach `[lo, hi]`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn span(lo: f64, hi: f64, origin: f64, scale: f64, n: usize) -> (usize, usize) {
        let first = ((lo - origin) * scale - MARGIN).floor().max(0.0) as usize;
        let last = ((hi - origin) * scale + MARGIN).floor().max(0.0) as usize;
        (first.min(n - 1), last.min(n - 1))
    }

    /// The cell's corners widened by the margin: (min x, min y, max x, max y).
    #[allow(clippy::cast_precision_loss)]
    fn widened_cell(&self, col: usize, row: usize) -> (f64, f64, f64, f64) {
        let (cell_w, cell_h) = (self.inverse(self.x_scale), self.inverse(self.y_scale));
        (
            self.min_x + (col as f64 - MARGIN) * cell_w,
            self.min_y + (row as f64 - MARGIN) * cell_h,
            self.min_x + (col as f64 + 1.0 + MARGIN) * cell_w,
            self.min_y + (row as f64 + 1.0 + MARGIN) * cell_h,
        )
    }

    fn inverse(&self, scale: f64) -> f64 {
        if scale > 0.0 {
            1.0 / scale
        } else {
            // One cell across a box with no extent: any width covers it.
            (self.max_x - self.min_x).abs() + (self.max_y - self.min_y).abs() + 1.0
        }
    }

    /// Marks every cell an edge passes near as `NEAR_BOUNDARY` (its candidate list comes later).
    fn mark_cells_near_edges(&mut self, areas: &[Area]) {
        let edges = areas
            .iter()
            .flat_map(|area| &area.shape.0)
            .flat_map(|polygon| std::iter::once(polygon.exterior()).chain(polygon.interiors()))
            .flat_map(|ring| ring.lines());
        for edge in edges {
            let (a, b) = (edge.start, edge.end);
            let (first_col, last_col) = Self::span(a.x.min(b.x), a.x.max(b.x), self.min_x, self.x_scale, self.nx);
            let (first_row, last_row) = Self::span(a.y.min(b.y), a.y.max(b.y), self.min_y, self.y_scale, self.ny);
            for row in first_row..=last_row {
                for col in first_col..=last_col {
                    let (x0, y0, x1, y1) = self.widened_cell(col, row);
                    // The edge's line misses the cell when all four corners are strictly on one side of it; the
                    // margin is far wider than the rounding of this sum.
                    let side = |x: f64, y: f64| (b.x - a.x) * (y - a.y) - (b.y - a.y) * (x - a.x);
                    let corners = [side(x0, y0), side(x1, y0), side(x0, y1), side(x1, y1)];
                    if corners.iter().all(|&s| s > 0.0) || corners.iter().all(|&s| s < 0.0) {
                        continue;
                    }
                    self.cells[row * self.nx + col] = NEAR_BOUNDARY;
                }
            }
        }
    }

    /// For each cell near a boundary, the areas whose bounding box reaches it, in code order.
    fn list_candidates(&mut self, boxes: &[geo::Rect<f64>]) {
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (area_idx, bbox) in boxes.iter().enumerate() {
            let (first_col, last_col) = Self::span(bbox.min().x, bbox.max().x, self.min_x, self.x_scale, self.nx);
            let (first_row, last_row) = Self::span(bbox.min().y, bbox.max().y, self.min_y, self.y_scale, self.ny);
            for row in first_row..=last_row {
                for col in first_col..=last_col {
                    let cell_idx = row * self.nx + col;
                    if self.cells[cell_idx] == NEAR_BOUNDARY {
                        pairs.push((u32::try_from(cell_idx).unwrap(), u32::try_from(area_idx).unwrap()));
                    }
                }
            }
        }
        pairs.sort_unstable();
        self.starts.push(0);
        let mut near_idx = 0;
        for (pair_idx, &(cell_idx, area_idx)) in pairs.iter().enumerate() {
            self.candidates.push(area_idx);
            if pairs.get(pair_idx + 1).is_none_or(|next| next.0 != cell_idx) {
                self.cells[cell_idx as usize] = NEAR_BOUNDARY | near_idx;
                near_idx += 1;
                self.starts.push(u32::try_from(self.candidates.len()).unwrap());
            }
        }
    }

    /// Gives every cell no edge comes near its answer, one connected group of them at a time.
    fn fill_whole_cells(&mut self, areas: &[Area], boxes: &[geo::Rect<f64>]) {
        let mut stack = Vec::new();
        for seed in 0..self.cells.len() {
            if self.cells[seed] != UNKNOWN {
                continue;
            }
            #[allow(clippy::cast_precision_loss)]
            let centre = {
                let (x0, y0, x1, y1) = self.widened_cell(seed % self.nx, seed / self.nx);
                Point::new(f64::midpoint(x0, x1), f64::midpoint(y0, y1))
            };
            let answer = boxes
                .iter()
                .zip(areas)
                .position(|(bbox, area)| bbox.intersects(&centre) && area.shape.intersects(&centre))
                .map_or(OUTSIDE, |area_idx| u32::try_from(area_idx).unwrap());
            // Scanline fill: take the whole run of unknown cells along the row, then one seed per run of unknown
            // cells touching it in the rows above and below.
            stack.push(seed);
            while let Some(start) = stack.pop() {
                if self.cells[start] != UNKNOWN {
                    continue;
                }
                let row_start = start - start % self.nx;
                let row_end = row_start + self.nx;
                let mut left = start;
                while left > row_start && self.cells[left - 1] == UNKNOWN {
                    left -= 1;
                }
                let mut right = start + 1;
                while right < row_end && self.cells[right] == UNKNOWN {
                    right += 1;
                }
                self.cells[left..right].fill(answer);
                let above = (row_start > 0).then(|| (left - self.nx, right - self.nx));
                let below = (row_end < self.cells.len()).then_some((left + self.nx, right + self.nx));
                for (first, end) in [above, below].into_iter().flatten() {
                    for cell_idx in first..end {
                        if self.cells[cell_idx] == UNKNOWN && (cell_idx == first || self.cells[cell_idx - 1] != UNKNOWN)
                        {
                            stack.push(cell_idx);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use geo::{BoundingRect, Intersects, Point, Rect};

    use crate::geo::boundaries::Boundaries;

    /// The answer by the border rule without the grid: every area whose box holds the point, tested exactly.
    fn by_testing_every_area<'a>(
        boundaries: &'a Boundaries,
        boxes: &[Rect<f64>],
        lon: f64,
        lat: f64,
    ) -> Option<&'a str> {
        let point = Point::new(lon, lat);
        boundaries
            .areas()
            .iter()
            .zip(boxes)
            .find(|(area, bbox)| bbox.intersects(&point) && area.shape.intersects(&point))
            .map(|(area, _)| area.code.as_str())
    }

    /// A seeded sequence in [0, 1) (xorshift), so the test needs no random-number crate.
    fn unit_floats(mut state: u64) -> impl Iterator<Item = f64> {
        std::iter::repeat_with(move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            #[allow(clippy::cast_precision_loss)]
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            unit
        })
    }

    #[test]
    fn the_grid_gives_the_same_answers_as_testing_every_area() {
        let wards = Boundaries::bundled();
        let boxes: Vec<Rect<f64>> = wards.areas().iter().map(|area| area.shape.bounding_rect().unwrap()).collect();
        let index = &wards.point_index;
        let mut points = Vec::new();
        // Random points over the box, and a little beyond it.
        let (width, height) = (index.max_x - index.min_x, index.max_y - index.min_y);
        let mut unit = unit_floats(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let lon = index.min_x - 0.01 * width + 1.02 * width * unit.next().unwrap();
            let lat = index.min_y - 0.01 * height + 1.02 * height * unit.next().unwrap();
            points.push((lon, lat));
        }
        // Every vertex (exactly on a border), points a hair either side of it, and every edge's midpoint.
        for line in wards.areas().iter().flat_map(|area| &area.shape.0).flat_map(|polygon| polygon.exterior().lines()) {
            let (a, b) = (line.start, line.end);
            points.extend([
                (a.x, a.y),
                (a.x + 1e-12, a.y),
                (a.x, a.y - 1e-12),
                (f64::midpoint(a.x, b.x), f64::midpoint(a.y, b.y)),
            ]);
        }
        // Grid corners, where rounding decides which cell a point falls in.
        for cell_idx in (0..index.cells.len()).step_by(37) {
            #[allow(clippy::cast_precision_loss)]
            let (lon, lat) = (
                index.min_x + (cell_idx % index.nx) as f64 / index.x_scale,
                index.min_y + (cell_idx / index.nx) as f64 / index.y_scale,
            );
            points.push((lon, lat));
        }
        points.extend([(index.min_x, index.min_y), (index.max_x, index.max_y), (index.max_x, index.min_y)]);
        let mut n_inside = 0;
        for &(lon, lat) in &points {
            let expected = by_testing_every_area(&wards, &boxes, lon, lat);
            assert_eq!(wards.locate(lon, lat).map(|area| area.code.as_str()), expected, "at {lon},{lat}");
            n_inside += usize::from(expected.is_some());
        }
        assert!(n_inside > points.len() / 3, "the points must mostly fall in wards ({n_inside} of {})", points.len());
    }

    #[test]
    fn not_a_number_is_outside() {
        let wards = Boundaries::bundled();
        assert!(wards.locate(f64::NAN, 52.8).is_none());
        assert!(wards.locate(-2.0, f64::NAN).is_none());
        assert!(wards.locate(f64::INFINITY, 52.8).is_none());
    }
}
