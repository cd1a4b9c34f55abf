//! Whether a multipolygon is valid (OGC simple features, as GEOS and PostGIS read it), in time near-linear in its
//! vertices, and the make-valid repair of a polygon whose rings cross themselves.
//!
//! `geo`'s own `Validation` compares every segment of a ring with every other one, and every part of a multipolygon
//! with every other part: a 100,000-vertex ring takes most of a minute, a detailed national file hours. Here every
//! segment goes into one R-tree over their bounding boxes, and only segments whose boxes meet are compared, so a
//! boundary (whose segments are short and spread along its length) costs O(n log n).
//!
//! What is checked, per multipolygon:
//! - two segments of one ring may meet only where they follow each other, at their shared vertex: a ring that
//!   crosses or touches itself, or doubles back along itself (a spike), is invalid;
//! - two rings of one polygon, and two parts of a multipolygon, may touch at points but not cross nor share a
//!   stretch of edge;
//! - a hole lies inside its exterior, and not inside another hole; a part does not lie inside another part.
//!
//! Non-finite coordinates, unclosed rings and rings with too few points are the caller's business
//! (`boundary_files` drops or refuses them before it asks).

use std::fmt;

use geo::algorithm::line_intersection::{line_intersection, LineIntersection};
use geo::bool_ops::FillRule;
use geo::coordinate_position::CoordPos;
use geo::orient::{Direction, Orient};
use geo::{BooleanOps, BoundingRect, Coord, CoordinatePosition, Line, LineString, MultiPolygon, OpType, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, RTreeObject};

/// What makes a multipolygon invalid (the first such thing found for each polygon, and for the parts together).
#[derive(Debug, Clone, PartialEq)]
pub enum Invalidity {
    /// A ring crosses or touches itself, or doubles back along itself, at `at`.
    RingSelfIntersection { polygon_idx: usize, ring_idx: usize, at: Coord<f64> },
    /// Two rings of one polygon cross, or share a stretch of edge, at `at`.
    RingsIntersect { polygon_idx: usize, ring_a: usize, ring_b: usize, at: Coord<f64> },
    /// A hole (ring 1 or later) lies outside its polygon's exterior.
    HoleOutsideExterior { polygon_idx: usize, ring_idx: usize },
    /// A hole lies inside another hole of the same polygon.
    HolesNested { polygon_idx: usize, ring_a: usize, ring_b: usize },
    /// Two parts of the multipolygon overlap or share a stretch of edge (`at`, when their edges meet).
    PartsOverlap { polygon_a: usize, polygon_b: usize, at: Option<Coord<f64>> },
}

impl Invalidity {
    /// The polygon whose own rings are at fault; `None` when it is two parts together.
    #[must_use]
    pub fn polygon_at_fault(&self) -> Option<usize> {
        match self {
            Invalidity::RingSelfIntersection { polygon_idx, .. }
            | Invalidity::RingsIntersect { polygon_idx, .. }
            | Invalidity::HoleOutsideExterior { polygon_idx, .. }
            | Invalidity::HolesNested { polygon_idx, .. } => Some(*polygon_idx),
            Invalidity::PartsOverlap { .. } => None,
        }
    }
}

impl fmt::Display for Invalidity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalidity::RingSelfIntersection { polygon_idx, ring_idx, at } => write!(
                f,
                "ring {ring_idx} of polygon {polygon_idx} crosses or touches itself at ({:.6}, {:.6})",
                at.x, at.y
            ),
            Invalidity::RingsIntersect { polygon_idx, ring_a, ring_b, at } => write!(
                f,
                "rings {ring_a} and {ring_b} of polygon {polygon_idx} cross or share an edge at ({:.6}, {:.6})",
                at.x, at.y
            ),
            Invalidity::HoleOutsideExterior { polygon_idx, ring_idx } => {
                write!(f, "hole {ring_idx} of polygon {polygon_idx} lies outside its exterior")
            }
            Invalidity::HolesNested { polygon_idx, ring_a, ring_b } => {
                write!(f, "holes {ring_a} and {ring_b} of polygon {polygon_idx} lie one inside the other")
            }
            Invalidity::PartsOverlap { polygon_a, polygon_b, at: Some(at) } => {
                write!(f, "polygons {polygon_a} and {polygon_b} overlap or share an edge at ({:.6}, {:.6})", at.x, at.y)
            }
            Invalidity::PartsOverlap { polygon_a, polygon_b, at: None } => {
                write!(f, "polygon {polygon_a} lies inside polygon {polygon_b}")
            }
        }
    }
}

/// One segment: which polygon, which ring (0 the exterior), which segment of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SegmentRef {
    polygon_idx: u32,
    ring_idx: u32,
    segment_idx: u32,
}

type SegmentBox = GeomWithData<Rectangle<[f64; 2]>, SegmentRef>;

fn ring_of(shape: &MultiPolygon<f64>, polygon_idx: usize, ring_idx: usize) -> &LineString<f64> {
    let polygon = &shape.0[polygon_idx];
    if ring_idx == 0 {
        polygon.exterior()
    } else {
        &polygon.interiors()[ring_idx - 1]
    }
}

fn segment(shape: &MultiPolygon<f64>, reference: SegmentRef) -> Line<f64> {
    let ring = ring_of(shape, reference.polygon_idx as usize, reference.ring_idx as usize);
    let start = reference.segment_idx as usize;
    Line::new(ring.0[start], ring.0[start + 1])
}

/// Everything invalid in `shape`: at most one finding per polygon for its own rings, and one per pair of parts.
/// Empty when the shape is valid. Rings must be closed and have at least four points (three distinct).
#[must_use]
pub fn invalidities(shape: &MultiPolygon<f64>) -> Vec<Invalidity> {
    let mut findings = Vec::new();
    let mut polygon_flagged = vec![false; shape.0.len()];
    let mut flagged_pairs = std::collections::BTreeSet::new();
    let mut boxes = Vec::new();
    for (polygon_idx, polygon) in shape.0.iter().enumerate() {
        for (ring_idx, ring) in std::iter::once(polygon.exterior()).chain(polygon.interiors()).enumerate() {
            for (segment_idx, line) in ring.lines().enumerate() {
                // Indices fit in u32: a file with four billion segments is refused for its size long before.
                let reference = SegmentRef {
                    polygon_idx: u32::try_from(polygon_idx).unwrap_or(u32::MAX),
                    ring_idx: u32::try_from(ring_idx).unwrap_or(u32::MAX),
                    segment_idx: u32::try_from(segment_idx).unwrap_or(u32::MAX),
                };
                let corner_a = [line.start.x, line.start.y];
                let corner_b = [line.end.x, line.end.y];
                boxes.push(GeomWithData::new(Rectangle::from_corners(corner_a, corner_b), reference));
            }
        }
    }
    let tree: RTree<SegmentBox> = RTree::bulk_load(boxes);
    for candidate in &tree {
        let this = candidate.data;
        for other in tree.locate_in_envelope_intersecting(&candidate.geom().envelope()) {
            let that = other.data;
            // Each pair once.
            if (that.polygon_idx, that.ring_idx, that.segment_idx)
                <= (this.polygon_idx, this.ring_idx, this.segment_idx)
            {
                continue;
            }
            let Some(at) = forbidden_meeting(shape, this, that) else { continue };
            let (polygon_a, polygon_b) = (this.polygon_idx as usize, that.polygon_idx as usize);
            if polygon_a == polygon_b {
                if polygon_flagged[polygon_a] {
                    continue;
                }
                polygon_flagged[polygon_a] = true;
                let (ring_a, ring_b) = (this.ring_idx as usize, that.ring_idx as usize);
                findings.push(if ring_a == ring_b {
                    Invalidity::RingSelfIntersection { polygon_idx: polygon_a, ring_idx: ring_a, at }
                } else {
                    Invalidity::RingsIntersect { polygon_idx: polygon_a, ring_a, ring_b, at }
                });
            } else if flagged_pairs.insert((polygon_a, polygon_b)) {
                findings.push(Invalidity::PartsOverlap { polygon_a, polygon_b, at: Some(at) });
            }
        }
    }
    // With no edges crossing, a ring is inside another exactly when one of its vertices off the other's boundary is.
    for (polygon_idx, polygon) in shape.0.iter().enumerate() {
        if polygon_flagged[polygon_idx] || polygon.interiors().is_empty() {
            continue;
        }
        if let Some(finding) = hole_containment(polygon_idx, polygon) {
            polygon_flagged[polygon_idx] = true;
            findings.push(finding);
        }
    }
    findings.extend(nested_parts(shape, &flagged_pairs));
    findings
}

/// Where two segments meet in a way a valid shape forbids, if they do.
fn forbidden_meeting(shape: &MultiPolygon<f64>, this: SegmentRef, that: SegmentRef) -> Option<Coord<f64>> {
    let meeting = line_intersection(segment(shape, this), segment(shape, that))?;
    match meeting {
        // Sharing a stretch of edge is never valid: a spike in one ring, or two rings or parts along one line.
        LineIntersection::Collinear { intersection } if intersection.start != intersection.end => {
            Some(intersection.start)
        }
        LineIntersection::Collinear { intersection } => touching(shape, this, that, intersection.start),
        LineIntersection::SinglePoint { is_proper: true, intersection } => Some(intersection),
        LineIntersection::SinglePoint { is_proper: false, intersection } => touching(shape, this, that, intersection),
    }
}

/// Two segments touching at one point: allowed between rings and between parts; within a ring only where one
/// segment follows the other.
fn touching(shape: &MultiPolygon<f64>, this: SegmentRef, that: SegmentRef, at: Coord<f64>) -> Option<Coord<f64>> {
    if (this.polygon_idx, this.ring_idx) != (that.polygon_idx, that.ring_idx) {
        return None;
    }
    let n_segments = ring_of(shape, this.polygon_idx as usize, this.ring_idx as usize).0.len() - 1;
    let (first, second) =
        (this.segment_idx.min(that.segment_idx) as usize, this.segment_idx.max(that.segment_idx) as usize);
    let follows = second == first + 1 || (first == 0 && second == n_segments - 1);
    if follows {
        None
    } else {
        Some(at)
    }
}

/// A vertex of `ring` that is not on `other`'s boundary, with where it lies relative to `other`.
fn probe(ring: &LineString<f64>, other: &Polygon<f64>) -> Option<CoordPos> {
    ring.0.iter().map(|coord| other.coordinate_position(coord)).find(|position| *position != CoordPos::OnBoundary)
}

fn hole_containment(polygon_idx: usize, polygon: &Polygon<f64>) -> Option<Invalidity> {
    let exterior = Polygon::new(polygon.exterior().clone(), vec![]);
    let exterior_rect = exterior.bounding_rect()?;
    let holes: Vec<Polygon<f64>> = polygon.interiors().iter().map(|hole| Polygon::new(hole.clone(), vec![])).collect();
    for (hole_idx, hole) in holes.iter().enumerate() {
        let rect = hole.bounding_rect()?;
        let within_box = exterior_rect.min().x <= rect.min().x
            && exterior_rect.min().y <= rect.min().y
            && rect.max().x <= exterior_rect.max().x
            && rect.max().y <= exterior_rect.max().y;
        if !within_box || probe(hole.exterior(), &exterior) == Some(CoordPos::Outside) {
            return Some(Invalidity::HoleOutsideExterior { polygon_idx, ring_idx: hole_idx + 1 });
        }
    }
    let hole_boxes: Vec<GeomWithData<Rectangle<[f64; 2]>, usize>> = holes
        .iter()
        .enumerate()
        .filter_map(|(hole_idx, hole)| {
            let rect = hole.bounding_rect()?;
            Some(GeomWithData::new(Rectangle::from_corners(rect.min().into(), rect.max().into()), hole_idx))
        })
        .collect();
    let tree = RTree::bulk_load(hole_boxes);
    for candidate in &tree {
        for other in tree.locate_in_envelope_intersecting(&candidate.geom().envelope()) {
            let (hole_a, hole_b) = (candidate.data, other.data);
            if hole_a != hole_b && probe(holes[hole_a].exterior(), &holes[hole_b]) == Some(CoordPos::Inside) {
                let (ring_a, ring_b) = (hole_a.min(hole_b) + 1, hole_a.max(hole_b) + 1);
                return Some(Invalidity::HolesNested { polygon_idx, ring_a, ring_b });
            }
        }
    }
    None
}

/// Parts lying inside another part (their edges need not meet). Pairs already found overlapping are skipped.
fn nested_parts(
    shape: &MultiPolygon<f64>,
    flagged_pairs: &std::collections::BTreeSet<(usize, usize)>,
) -> Vec<Invalidity> {
    let part_boxes: Vec<GeomWithData<Rectangle<[f64; 2]>, usize>> = shape
        .0
        .iter()
        .enumerate()
        .filter_map(|(polygon_idx, polygon)| {
            let rect = polygon.bounding_rect()?;
            Some(GeomWithData::new(Rectangle::from_corners(rect.min().into(), rect.max().into()), polygon_idx))
        })
        .collect();
    let tree = RTree::bulk_load(part_boxes);
    let mut findings = Vec::new();
    for candidate in &tree {
        for other in tree.locate_in_envelope_intersecting(&candidate.geom().envelope()) {
            let (inner, outer) = (candidate.data, other.data);
            let pair = (inner.min(outer), inner.max(outer));
            if inner == outer || flagged_pairs.contains(&pair) {
                continue;
            }
            if probe(shape.0[inner].exterior(), &shape.0[outer]) == Some(CoordPos::Inside) {
                findings.push(Invalidity::PartsOverlap { polygon_a: inner, polygon_b: outer, at: None });
            }
        }
    }
    findings
}

/// The polygon rebuilt valid by the even-odd rule over all its rings, as GEOS's `MakeValid` (PostGIS
/// `ST_MakeValid`, the "linework" method) does: a ring that crosses itself becomes one polygon per lobe, a spike
/// that doubles back is dropped, and a hole outside its exterior becomes land of its own. Ground covered by an odd
/// number of rings stays, the rest goes. Exteriors counter-clockwise, holes clockwise.
///
/// The boolean operations round every vertex to a grid (about a 2^29th of the polygon's extent); each vertex that
/// was in the input is put back exactly where it was, so an edge the polygon shares with a neighbour stays shared
/// and the repair opens no sliver nor overlap along it. Only the new vertices where rings crossed are rounded.
#[must_use]
pub fn make_valid_even_odd(polygon: &Polygon<f64>) -> MultiPolygon<f64> {
    let nothing = MultiPolygon::<f64>::new(vec![]);
    let rebuilt = split_pinched_rings(&polygon.boolean_op_with_fill_rule(&nothing, OpType::Union, FillRule::EvenOdd));
    let restored = restore_input_vertices(&rebuilt, polygon);
    // Putting a vertex back moves it by less than a millimetre; should that ever make a crossing, the rounded
    // rebuild stands.
    if invalidities(&restored).is_empty() {
        restored
    } else {
        rebuilt
    }
}

/// `rebuilt` with each vertex that lies within rounding distance of one of `input`'s vertices moved onto it.
fn restore_input_vertices(rebuilt: &MultiPolygon<f64>, input: &Polygon<f64>) -> MultiPolygon<f64> {
    use geo::{CoordsIter, MapCoords};
    let Some(rect) = input.bounding_rect() else { return rebuilt.clone() };
    // Eight grid steps of the boolean operations (which scale the larger half-extent to 2^29).
    let tolerance = rect.width().max(rect.height()) * (2.0_f64).powi(-26);
    let tree: RTree<[f64; 2]> = RTree::bulk_load(input.coords_iter().map(|coord| [coord.x, coord.y]).collect());
    rebuilt.map_coords(|coord| match tree.nearest_neighbor(&[coord.x, coord.y]) {
        Some(&[x, y]) if (x - coord.x).hypot(y - coord.y) <= tolerance => Coord { x, y },
        _ => coord,
    })
}

/// The same ground with every ring simple. The boolean operations may return a ring that comes back to one of its
/// own vertices (a pinch: a hole touching its exterior at a point, or two lobes meeting at one), which OGC forbids;
/// GEOS writes such a ring as two. Each ring is cut at its repeated vertices into simple loops; counter-clockwise
/// loops become exteriors and clockwise ones holes of the smallest exterior around them. The result is oriented.
#[must_use]
pub fn split_pinched_rings(shape: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    let oriented = shape.orient(Direction::Default);
    let mut loops = Vec::new();
    let mut n_rings = 0;
    for polygon in &oriented.0 {
        for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
            n_rings += 1;
            loops.extend(simple_loops(ring));
        }
    }
    if loops.len() == n_rings {
        return oriented;
    }
    let (exteriors, holes): (Vec<LineString<f64>>, Vec<LineString<f64>>) = loops.into_iter().partition(|ring| {
        use geo::Winding;
        ring.is_ccw()
    });
    let mut polygons: Vec<(Polygon<f64>, Vec<LineString<f64>>)> =
        exteriors.into_iter().map(|exterior| (Polygon::new(exterior, vec![]), Vec::new())).collect();
    let boxes: Vec<GeomWithData<Rectangle<[f64; 2]>, usize>> = polygons
        .iter()
        .enumerate()
        .filter_map(|(polygon_idx, (polygon, _))| {
            let rect = polygon.bounding_rect()?;
            Some(GeomWithData::new(Rectangle::from_corners(rect.min().into(), rect.max().into()), polygon_idx))
        })
        .collect();
    let tree = RTree::bulk_load(boxes);
    for hole in holes {
        let Some(rect) = hole.bounding_rect() else { continue };
        let envelope = rstar::AABB::from_corners(rect.min().into(), rect.max().into());
        let around = tree
            .locate_in_envelope_intersecting(&envelope)
            .map(|candidate| candidate.data)
            .filter(|&polygon_idx| probe(&hole, &polygons[polygon_idx].0) == Some(CoordPos::Inside))
            .min_by(|&a, &b| {
                use geo::Area;
                polygons[a].0.unsigned_area().total_cmp(&polygons[b].0.unsigned_area())
            });
        // A clockwise loop inside no exterior encloses nothing that was land: leaving it out changes no ground.
        if let Some(polygon_idx) = around {
            polygons[polygon_idx].1.push(hole);
        }
    }
    MultiPolygon::new(
        polygons.into_iter().map(|(polygon, holes)| Polygon::new(polygon.exterior().clone(), holes)).collect(),
    )
}

/// A closed ring cut at every vertex it comes back to, as closed simple loops; loops without an area are left out.
fn simple_loops(ring: &LineString<f64>) -> Vec<LineString<f64>> {
    let key = |coord: &Coord<f64>| (coord.x.to_bits(), coord.y.to_bits());
    let open = ring.0.split_last().map_or(&[][..], |(_, rest)| rest);
    let mut loops = Vec::new();
    let mut stack: Vec<Coord<f64>> = Vec::with_capacity(open.len());
    let mut position_on_stack: std::collections::HashMap<(u64, u64), usize> = std::collections::HashMap::new();
    let mut emit = |mut coords: Vec<Coord<f64>>| {
        if coords.len() >= 3 {
            coords.push(coords[0]);
            let ring = LineString::new(coords);
            let area = Polygon::new(ring.clone(), vec![]);
            if geo::Area::unsigned_area(&area) > 0.0 {
                loops.push(ring);
            }
        }
    };
    for coord in open {
        if let Some(&at) = position_on_stack.get(&key(coord)) {
            let closed_loop: Vec<Coord<f64>> = stack.drain(at..).collect();
            for dropped in &closed_loop[1..] {
                position_on_stack.remove(&key(dropped));
            }
            emit(closed_loop);
            stack.push(*coord);
        } else {
            position_on_stack.insert(key(coord), stack.len());
            stack.push(*coord);
        }
    }
    emit(stack);
    loops
}

#[cfg(test)]
mod tests {
    use geo::{polygon, Area};

    use super::*;

    fn one(polygon: Polygon<f64>) -> MultiPolygon<f64> {
        MultiPolygon::new(vec![polygon])
    }

    #[test]
    fn a_square_with_a_hole_is_valid() {
        let square = polygon!(
            exterior: [(x: 0.0, y: 0.0), (x: 4.0, y: 0.0), (x: 4.0, y: 4.0), (x: 0.0, y: 4.0)],
            interiors: [[(x: 1.0, y: 1.0), (x: 1.0, y: 2.0), (x: 2.0, y: 2.0), (x: 2.0, y: 1.0)]],
        );
        assert_eq!(invalidities(&one(square)), []);
    }

    #[test]
    fn a_bow_tie_crosses_itself_and_is_rebuilt_as_two_triangles() {
        let bow_tie = polygon![(x: 0.0, y: 0.0), (x: 2.0, y: 2.0), (x: 2.0, y: 0.0), (x: 0.0, y: 2.0)];
        let found = invalidities(&one(bow_tie.clone()));
        assert_eq!(
            found,
            [Invalidity::RingSelfIntersection { polygon_idx: 0, ring_idx: 0, at: Coord { x: 1.0, y: 1.0 } }]
        );
        let repaired = make_valid_even_odd(&bow_tie);
        assert_eq!(repaired.0.len(), 2);
        assert!((repaired.unsigned_area() - 2.0).abs() < 1e-9, "two triangles of area 1");
        assert_eq!(invalidities(&repaired), []);
    }

    #[test]
    fn a_spike_doubling_back_is_invalid_and_dropped_by_the_repair() {
        let spiked = polygon![(x: 0.0, y: 0.0), (x: 2.0, y: 0.0), (x: 3.0, y: 1.0), (x: 2.0, y: 0.0), (x: 2.0, y: 2.0), (x: 0.0, y: 2.0)];
        let found = invalidities(&one(spiked.clone()));
        assert!(
            matches!(found.as_slice(), [Invalidity::RingSelfIntersection { polygon_idx: 0, ring_idx: 0, .. }]),
            "{found:?}"
        );
        let repaired = make_valid_even_odd(&spiked);
        assert_eq!(invalidities(&repaired), []);
        assert!((repaired.unsigned_area() - 4.0).abs() < 1e-9);
    }

    #[test]
    fn a_ring_touching_itself_at_a_vertex_is_invalid() {
        // The exterior comes back to (2, 0) from above: an inverted hole, which OGC forbids.
        let pinched = polygon![(x: 0.0, y: 0.0), (x: 2.0, y: 0.0), (x: 3.0, y: 1.0), (x: 2.5, y: 1.0), (x: 2.0, y: 0.0), (x: 2.0, y: 2.0), (x: 0.0, y: 2.0)];
        assert!(matches!(invalidities(&one(pinched)).as_slice(), [Invalidity::RingSelfIntersection { .. }]));
    }

    #[test]
    fn a_ring_pinched_at_a_vertex_is_split_into_an_exterior_and_a_hole() {
        // One ring that runs round the square, then round a triangle inside it from the corner (0, 0): the
        // triangle is a hole touching the exterior at one point, written as one ring.
        let pinched = Polygon::new(
            LineString::from(vec![
                (0.0, 0.0),
                (4.0, 0.0),
                (4.0, 4.0),
                (0.0, 4.0),
                (0.0, 0.0),
                (1.0, 2.0),
                (2.0, 1.0),
                (0.0, 0.0),
            ]),
            vec![],
        );
        assert!(matches!(invalidities(&one(pinched.clone())).as_slice(), [Invalidity::RingSelfIntersection { .. }]));
        let split = split_pinched_rings(&one(pinched));
        assert_eq!(invalidities(&split), []);
        assert_eq!((split.0.len(), split.0[0].interiors().len()), (1, 1));
        assert!((split.unsigned_area() - 14.5).abs() < 1e-9, "16 less the triangle's 1.5");
    }

    #[test]
    fn holes_outside_or_nested_and_parts_inside_parts_are_found() {
        let square = |x0: f64, y0: f64, side: f64| {
            LineString::from(vec![(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side), (x0, y0)])
        };
        let hole_outside = Polygon::new(square(0.0, 0.0, 4.0), vec![square(5.0, 5.0, 1.0)]);
        assert_eq!(invalidities(&one(hole_outside)), [Invalidity::HoleOutsideExterior { polygon_idx: 0, ring_idx: 1 }]);
        let nested_holes = Polygon::new(square(0.0, 0.0, 4.0), vec![square(1.0, 1.0, 2.0), square(1.5, 1.5, 0.5)]);
        assert_eq!(
            invalidities(&one(nested_holes)),
            [Invalidity::HolesNested { polygon_idx: 0, ring_a: 1, ring_b: 2 }]
        );
        let part_in_part = MultiPolygon::new(vec![
            Polygon::new(square(0.0, 0.0, 4.0), vec![]),
            Polygon::new(square(1.0, 1.0, 1.0), vec![]),
        ]);
        assert_eq!(invalidities(&part_in_part), [Invalidity::PartsOverlap { polygon_a: 1, polygon_b: 0, at: None }]);
        // An island in a lake is fine.
        let island_in_lake = MultiPolygon::new(vec![
            Polygon::new(square(0.0, 0.0, 4.0), vec![square(1.0, 1.0, 2.0)]),
            Polygon::new(square(1.5, 1.5, 1.0), vec![]),
        ]);
        assert_eq!(invalidities(&island_in_lake), []);
        // Parts sharing an edge overlap on a line; parts touching at a corner do not.
        let sharing = MultiPolygon::new(vec![
            Polygon::new(square(0.0, 0.0, 1.0), vec![]),
            Polygon::new(square(1.0, 0.0, 1.0), vec![]),
        ]);
        assert!(matches!(
            invalidities(&sharing).as_slice(),
            [Invalidity::PartsOverlap { polygon_a: 0, polygon_b: 1, at: Some(_) }]
        ));
        let corner = MultiPolygon::new(vec![
            Polygon::new(square(0.0, 0.0, 1.0), vec![]),
            Polygon::new(square(1.0, 1.0, 1.0), vec![]),
        ]);
        assert_eq!(invalidities(&corner), []);
    }

    #[test]
    fn a_long_valid_ring_is_valid() {
        // 100,000 vertices on a circle: geo's pairwise check compares 1e10 pairs and takes most of a minute.
        let n_vertices = 100_000;
        let mut coords: Vec<Coord<f64>> = (0..n_vertices)
            .map(|vertex_idx| {
                let angle = std::f64::consts::TAU * f64::from(vertex_idx) / f64::from(n_vertices);
                Coord { x: angle.cos(), y: angle.sin() }
            })
            .collect();
        coords.push(coords[0]);
        let circle = Polygon::new(LineString::new(coords), vec![]);
        assert_eq!(invalidities(&one(circle)), []);
    }
}
