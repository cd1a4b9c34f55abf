//! Areas and point → area: the bundled Staffordshire wards (or any GeoJSON polygons), an R-tree over their bounding
//! boxes and an exact point-in-polygon test.
//!
//! The border rule: a point counts as inside an area when it is inside the polygon or on its boundary
//! (`Intersects`). A point on a border shared by several areas is filed under the one with the smallest code, so the
//! same point always lands in the same area, on every node and after every restart.

mod point_index;
pub mod validity;

use std::collections::HashMap;

use anyhow::{bail, Context};
use geo::{BoundingRect, MultiPolygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::RTree;

use point_index::PointIndex;

/// The bundled ward boundaries (OGL; attribution in `server/data/boundaries/LICENCE.md`).
const BUNDLED_WARDS: &str = include_str!("../../data/boundaries/staffordshire-wards-2013.geojson");

/// One area: a ward or a policing neighbourhood.
#[derive(Debug, Clone)]
pub struct Area {
    pub code: String,
    pub name: String,
    pub shape: MultiPolygon<f64>,
}

/// A set of areas with a spatial index.
#[derive(Debug)]
pub struct Boundaries {
    /// Sorted by code.
    areas: Vec<Area>,
    by_code: HashMap<String, usize>,
    tree: RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>,
    /// Answers `locate` (a grid over the same areas; see `point_index.rs`).
    point_index: PointIndex,
}

impl Boundaries {
    /// The bundled Staffordshire and Stoke-on-Trent wards (2013).
    ///
    /// # Panics
    /// Never: the bundled file is checked by the test suite.
    #[must_use]
    pub fn bundled() -> Self {
        Boundaries::from_geojson(BUNDLED_WARDS, "WD13CD", "WD13NM").expect("the bundled ward boundaries are valid")
    }

    /// Reads a GeoJSON `FeatureCollection` of `Polygon`/`MultiPolygon` features, taking each area's code and name from
    /// the named properties.
    ///
    /// # Errors
    /// Not a feature collection, a feature without a polygon or without the code and name, or a code seen twice.
    pub fn from_geojson(text: &str, code_field: &str, name_field: &str) -> anyhow::Result<Self> {
        let geojson: geojson::GeoJson = text.parse().context("not GeoJSON")?;
        let geojson::GeoJson::FeatureCollection(collection) = geojson else {
            bail!("expected a GeoJSON FeatureCollection");
        };
        let mut areas = Vec::with_capacity(collection.features.len());
        for (index, feature) in collection.features.iter().enumerate() {
            let text_property = |field: &str| {
                feature
                    .property(field)
                    .and_then(|value| value.as_str())
                    .map(str::to_owned)
                    .with_context(|| format!("feature {index} has no text property '{field}'"))
            };
            let code = text_property(code_field)?;
            let name = text_property(name_field)?;
            let geometry = feature.geometry.as_ref().with_context(|| format!("area {code} has no geometry"))?;
            let shape = match geo::Geometry::<f64>::try_from(&geometry.value)
                .with_context(|| format!("area {code}: unreadable geometry"))?
            {
                geo::Geometry::Polygon(polygon) => MultiPolygon::new(vec![polygon]),
                geo::Geometry::MultiPolygon(multi) => multi,
                _ => bail!("area {code}: expected a Polygon or MultiPolygon"),
            };
            areas.push(Area { code, name, shape });
        }
        Boundaries::new(areas)
    }

    /// Indexes a list of areas.
    ///
    /// # Errors
    /// Two areas with one code, or an area with no extent.
    pub fn new(mut areas: Vec<Area>) -> anyhow::Result<Self> {
        areas.sort_by(|a, b| a.code.cmp(&b.code));
        let mut by_code = HashMap::with_capacity(areas.len());
        let mut boxes = Vec::with_capacity(areas.len());
        for (area_idx, area) in areas.iter().enumerate() {
            if by_code.insert(area.code.clone(), area_idx).is_some() {
                bail!("area code {} appears twice", area.code);
            }
            let rect = area.shape.bounding_rect().with_context(|| format!("area {} is empty", area.code))?;
            let rectangle = Rectangle::from_corners([rect.min().x, rect.min().y], [rect.max().x, rect.max().y]);
            boxes.push(GeomWithData::new(rectangle, area_idx));
        }
        let point_index = PointIndex::new(&areas);
        Ok(Boundaries { areas, by_code, tree: RTree::bulk_load(boxes), point_index })
    }

    /// All areas, sorted by code.
    #[must_use]
    pub fn areas(&self) -> &[Area] {
        &self.areas
    }

    /// The area with this code.
    #[must_use]
    pub fn area(&self, code: &str) -> Option<&Area> {
        self.by_code.get(code).map(|&area_idx| &self.areas[area_idx])
    }

    /// The areas whose bounding boxes reach within `dlon` × `dlat` degrees of a point: the candidates for "is a border
    /// near".
    pub fn areas_near(&self, lon: f64, lat: f64, dlon: f64, dlat: f64) -> impl Iterator<Item = &Area> {
        let envelope = rstar::AABB::from_corners([lon - dlon, lat - dlat], [lon + dlon, lat + dlat]);
        self.tree.locate_in_envelope_intersecting(&envelope).map(|candidate| &self.areas[candidate.data])
    }

    /// The area containing the point (longitude, latitude in WGS84), by the border rule above.
    #[must_use]
    pub fn locate(&self, lon: f64, lat: f64) -> Option<&Area> {
        self.point_index.locate(&self.areas, lon, lat).map(|area_idx| &self.areas[area_idx])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{polygon, Polygon};

    fn square(code: &str, x0: f64, y0: f64) -> Area {
        let shape: Polygon<f64> =
            polygon![(x: x0, y: y0), (x: x0 + 1.0, y: y0), (x: x0 + 1.0, y: y0 + 1.0), (x: x0, y: y0 + 1.0)];
        Area { code: code.into(), name: format!("Square {code}"), shape: MultiPolygon::new(vec![shape]) }
    }

    #[test]
    fn the_bundled_wards_load() {
        let wards = Boundaries::bundled();
        assert_eq!(wards.areas().len(), 211);
        assert_eq!(wards.area("E05008714").map(|a| a.name.as_str()), Some("Abbey Hulton and Townsend"));
    }

    #[test]
    fn points_inside_outside_and_on_a_shared_border() {
        let boundaries = Boundaries::new(vec![square("B", 1.0, 0.0), square("A", 0.0, 0.0)]).unwrap();
        assert_eq!(boundaries.locate(0.5, 0.5).map(|a| a.code.as_str()), Some("A"));
        assert_eq!(boundaries.locate(1.5, 0.5).map(|a| a.code.as_str()), Some("B"));
        assert_eq!(
            boundaries.locate(1.0, 0.5).map(|a| a.code.as_str()),
            Some("A"),
            "a shared border goes to the smaller code"
        );
        assert_eq!(boundaries.locate(2.0, 0.5).map(|a| a.code.as_str()), Some("B"), "an outer edge is inside");
        assert!(boundaries.locate(2.5, 0.5).is_none());
        assert!(boundaries.locate(0.5, -0.0001).is_none());
    }

    #[test]
    fn duplicate_codes_are_refused() {
        let error = Boundaries::new(vec![square("A", 0.0, 0.0), square("A", 5.0, 5.0)]).unwrap_err();
        assert!(error.to_string().contains("appears twice"));
    }
}
