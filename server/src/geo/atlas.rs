//! The boundary catalogue in memory: every generation of every boundary set (docs/geotagging.md), loaded from the
//! database, and the tagging rule every insight goes through in each of them.
//!
//! The filing set (`wards` by default) is what a phone hears back: its newest generation files the insight. Every
//! other generation tags it too, so any period can be rolled up on any generation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use geo::{Coord, InteriorPoint, MultiPolygon};

use crate::domain::Scope;
use crate::geo::boundaries::{Area, Boundaries};
use crate::store::{AreaTag, GenerationInfo, Store, StoredArea, TaggableInsight, OUTSIDE_COVERAGE};

/// The set the bundled wards are generation 1 of, and the default filing set.
pub const DEFAULT_SET: &str = "wards";

/// Where the bundled generation came from, as `grapevine boundaries list` shows it.
const BUNDLED_SOURCE: &str = "bundled: Staffordshire and Stoke-on-Trent wards 2013 (ONS, Open Government Licence)";

/// How often a node looks for generations imported through another node or the command line.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// One generation of a boundary set with its index.
#[derive(Debug)]
pub struct Generation {
    pub info: GenerationInfo,
    pub boundaries: Boundaries,
}

/// Every generation, oldest first.
#[derive(Debug)]
pub struct Atlas {
    generations: Vec<Generation>,
    filing_set: String,
}

/// Where an insight is, for tagging: the point it is filed by and how much to trust it.
#[derive(Debug, Clone, PartialEq)]
pub struct Whereabouts {
    /// Latitude, longitude.
    pub point: Option<(f64, f64)>,
    /// The GPS accuracy radius; `None` for a point that is not a fix.
    pub accuracy_m: Option<f64>,
    /// An area code the person picked; filed there in any generation that has it.
    pub picked_area_code: Option<String>,
    /// The point stands for something larger (a postcode, a picked area): always near a boundary.
    pub approximate: bool,
}

impl From<&TaggableInsight> for Whereabouts {
    fn from(insight: &TaggableInsight) -> Self {
        Whereabouts {
            point: insight.tag_point,
            accuracy_m: insight.accuracy_m,
            picked_area_code: insight.picked_area_code.clone(),
            approximate: insight.postcode.is_some() || insight.picked_area_code.is_some(),
        }
    }
}

/// The tagging rule in one generation: a picked area the generation has; else the area holding the point (border rule
/// in `Boundaries::locate`), flagged `near_boundary` when the accuracy circle reaches a border or the point is
/// approximate; else outside coverage.
#[must_use]
pub fn tag_in(boundaries: &Boundaries, whereabouts: &Whereabouts) -> (String, bool) {
    if let Some(area) = whereabouts.picked_area_code.as_deref().and_then(|code| boundaries.area(code)) {
        return (area.code.clone(), false);
    }
    let Some((lat, lon)) = whereabouts.point else {
        return (OUTSIDE_COVERAGE.to_owned(), false);
    };
    let code = boundaries.locate(lon, lat).map_or_else(|| OUTSIDE_COVERAGE.to_owned(), |area| area.code.clone());
    let near = whereabouts.approximate
        || whereabouts.accuracy_m.is_some_and(|radius| radius > 0.0 && near_border(boundaries, lon, lat, radius));
    (code, near)
}

/// Metres per degree of latitude (mean Earth radius 6,371,008.8 m).
const METRES_PER_DEGREE: f64 = 111_195.08;

/// Whether any area's boundary passes within `radius_m` metres of the point: measured on a local equirectangular
/// projection around it, which is well within 1 % over a few kilometres.
#[must_use]
pub fn near_border(boundaries: &Boundaries, lon: f64, lat: f64, radius_m: f64) -> bool {
    let x_scale = lat.to_radians().cos() * METRES_PER_DEGREE;
    let (dlon, dlat) = (radius_m / x_scale.max(1.0), radius_m / METRES_PER_DEGREE);
    let to_metres = |coord: Coord<f64>| ((coord.x - lon) * x_scale, (coord.y - lat) * METRES_PER_DEGREE);
    boundaries.areas_near(lon, lat, dlon, dlat).any(|area| {
        area.shape.iter().flat_map(|polygon| std::iter::once(polygon.exterior()).chain(polygon.interiors())).any(
            |ring| {
                ring.lines().any(|line| {
                    let (start, end) = (to_metres(line.start), to_metres(line.end));
                    // Most edges of a nearby area are nowhere near the circle: their bounding box says so.
                    let clear = start.0.min(end.0) > radius_m
                        || start.0.max(end.0) < -radius_m
                        || start.1.min(end.1) > radius_m
                        || start.1.max(end.1) < -radius_m;
                    !clear && distance_to_origin(start, end) <= radius_m
                })
            },
        )
    })
}

/// The distance from (0, 0) to the segment between two points.
fn distance_to_origin((x1, y1): (f64, f64), (x2, y2): (f64, f64)) -> f64 {
    let (dx, dy) = (x2 - x1, y2 - y1);
    let length_squared = dx * dx + dy * dy;
    let t = if length_squared == 0.0 { 0.0 } else { (-(x1 * dx + y1 * dy) / length_squared).clamp(0.0, 1.0) };
    (x1 + t * dx).hypot(y1 + t * dy)
}

/// An area as the database stores it.
#[must_use]
pub fn stored_area(area: &Area) -> StoredArea {
    StoredArea {
        code: area.code.clone(),
        name: area.name.clone(),
        geometry: geojson::Geometry::from(&area.shape).to_string(),
    }
}

fn area_of(stored: &StoredArea) -> anyhow::Result<Area> {
    let geometry: geojson::Geometry = stored.geometry.parse().with_context(|| format!("area {}", stored.code))?;
    let shape = match geo::Geometry::<f64>::try_from(geometry.value).with_context(|| format!("area {}", stored.code))? {
        geo::Geometry::Polygon(polygon) => MultiPolygon::new(vec![polygon]),
        geo::Geometry::MultiPolygon(multi) => multi,
        _ => anyhow::bail!("area {}: stored geometry is not a polygon", stored.code),
    };
    Ok(Area { code: stored.code.clone(), name: stored.name.clone(), shape })
}

impl Atlas {
    /// Loads every generation; on a database with none, first writes the bundled wards as generation 1 of `wards`
    /// (tagging whatever insights it already holds).
    ///
    /// # Errors
    /// The database fails, or a stored geometry cannot be read.
    pub async fn load(store: &dyn Store, filing_set: &str) -> anyhow::Result<Atlas> {
        let mut infos = store.generations().await?;
        if infos.is_empty() {
            let bundled = Boundaries::bundled();
            let areas = bundled.areas().iter().map(stored_area).collect();
            let tagger = |insight: &TaggableInsight| tag_in(&bundled, &Whereabouts::from(insight));
            store.add_first_generation(DEFAULT_SET, BUNDLED_SOURCE, areas, &tagger).await?;
            infos = store.generations().await?;
        }
        let mut generations = Vec::with_capacity(infos.len());
        for info in infos {
            let areas = store.generation_areas(info.id).await?;
            let areas = areas.iter().map(area_of).collect::<anyhow::Result<Vec<Area>>>()?;
            let boundaries = Boundaries::new(areas)
                .with_context(|| format!("generation {} of {}", info.generation, info.set_name))?;
            generations.push(Generation { info, boundaries });
        }
        anyhow::ensure!(
            generations.iter().any(|generation| generation.info.set_name == filing_set),
            "the filing set '{filing_set}' has no boundaries; import some with `grapevine boundaries import`"
        );
        Ok(Atlas { generations, filing_set: filing_set.to_owned() })
    }

    /// The bundled wards alone, as generation 1 of `wards` (what a new database starts with): for tests, fuzzing and
    /// benchmarks that decide without a database.
    #[must_use]
    pub fn bundled() -> Atlas {
        let info = GenerationInfo {
            id: 1,
            set_name: DEFAULT_SET.to_owned(),
            generation: 1,
            source: BUNDLED_SOURCE.to_owned(),
            imported_at: String::new(),
            n_areas: 0,
        };
        Atlas {
            generations: vec![Generation { info, boundaries: Boundaries::bundled() }],
            filing_set: DEFAULT_SET.into(),
        }
    }

    /// Every generation, oldest first.
    #[must_use]
    pub fn generations(&self) -> &[Generation] {
        &self.generations
    }

    /// The newest generation of the filing set: what phones are told.
    ///
    /// # Panics
    /// Never: `load` refuses an atlas without the filing set.
    #[must_use]
    pub fn filing(&self) -> &Generation {
        self.newest_of(&self.filing_set).expect("the atlas holds the filing set")
    }

    /// The newest generation of a set.
    #[must_use]
    pub fn newest_of(&self, set_name: &str) -> Option<&Generation> {
        self.generations.iter().rev().find(|generation| generation.info.set_name == set_name)
    }

    /// A set's generation, by number; the newest when `generation` is `None`; the filing set when `set` is `None`.
    #[must_use]
    pub fn find(&self, set_name: Option<&str>, generation: Option<i64>) -> Option<&Generation> {
        let set_name = set_name.unwrap_or(&self.filing_set);
        match generation {
            None => self.newest_of(set_name),
            Some(number) => self
                .generations
                .iter()
                .find(|candidate| candidate.info.set_name == set_name && candidate.info.generation == number),
        }
    }

    /// The insight's tag in every generation.
    #[must_use]
    pub fn tag_everywhere(&self, whereabouts: &Whereabouts) -> Vec<AreaTag> {
        self.generations
            .iter()
            .map(|generation| {
                let (area_code, near_boundary) = tag_in(&generation.boundaries, whereabouts);
                AreaTag { generation_id: generation.info.id, area_code, near_boundary }
            })
            .collect()
    }

    /// The codes of the areas of generation `target_generation_id` that lie within `scope` (docs/access.md, "Scopes:
    /// what within means"): every area for a scope of everything; an area of the scope's own set is itself (by code);
    /// an area of another set lies within a scope area when its interior point (`InteriorPoint`, the point a picked
    /// area is filed by elsewhere) is located in that scope area, in the generation it was granted in, under the
    /// border rule of `Boundaries::locate`. Deterministic and cheap: a ward straddling a district border belongs to
    /// the one district holding its interior point. An unknown target generation has no areas.
    #[must_use]
    pub fn areas_within(&self, scope: &Scope, target_generation_id: i64) -> BTreeSet<String> {
        let Some(target) = self.generation_by_id(target_generation_id) else {
            return BTreeSet::new();
        };
        let areas = match scope {
            Scope::Everything => return target.boundaries.areas().iter().map(|area| area.code.clone()).collect(),
            Scope::Areas(areas) => areas,
        };
        let mut within = BTreeSet::new();
        // Scope areas of other sets, by the generation they were granted in (the newest, if never granted).
        let mut elsewhere: BTreeMap<i64, (&Generation, BTreeSet<&str>)> = BTreeMap::new();
        for area in areas {
            let granted = match area.generation_id {
                Some(id) => self.generation_by_id(id),
                None => self.newest_of(&area.set),
            };
            let Some(granted) = granted.filter(|granted| granted.info.set_name == area.set) else { continue };
            if granted.info.set_name == target.info.set_name {
                if target.boundaries.area(&area.code).is_some() {
                    within.insert(area.code.clone());
                }
            } else {
                elsewhere.entry(granted.info.id).or_insert_with(|| (granted, BTreeSet::new())).1.insert(&area.code);
            }
        }
        if elsewhere.is_empty() {
            return within;
        }
        for candidate in target.boundaries.areas() {
            let Some(point) = candidate.shape.interior_point() else { continue };
            let inside = elsewhere.values().any(|(granted, codes)| {
                granted
                    .boundaries
                    .locate(point.x(), point.y())
                    .is_some_and(|holder| codes.contains(holder.code.as_str()))
            });
            if inside {
                within.insert(candidate.code.clone());
            }
        }
        within
    }

    /// A generation by its id.
    #[must_use]
    pub fn generation_by_id(&self, generation_id: i64) -> Option<&Generation> {
        self.generations.iter().find(|generation| generation.info.id == generation_id)
    }

    fn newest_id(&self) -> i64 {
        self.generations.last().map_or(0, |generation| generation.info.id)
    }
}

/// The atlas a server uses, swapped whole when a generation is imported.
#[derive(Debug, Clone)]
pub struct SharedAtlas {
    current: Arc<RwLock<Arc<Atlas>>>,
}

impl SharedAtlas {
    #[must_use]
    pub fn new(atlas: Atlas) -> Self {
        SharedAtlas { current: Arc::new(RwLock::new(Arc::new(atlas))) }
    }

    /// The atlas now (a request keeps the one it started with).
    ///
    /// # Panics
    /// If a thread panicked while swapping the atlas (it never holds the lock across anything that can).
    #[must_use]
    pub fn get(&self) -> Arc<Atlas> {
        self.current.read().expect("the atlas lock is never poisoned").clone()
    }

    /// Reloads when the database holds a generation this node has not loaded.
    ///
    /// # Errors
    /// The database fails or a new generation cannot be read; the current atlas stays.
    pub async fn refresh(&self, store: &dyn Store) -> anyhow::Result<bool> {
        let current = self.get();
        let newest = store.newest_generation_id().await?.unwrap_or(0);
        if newest == current.newest_id() {
            return Ok(false);
        }
        let atlas = Atlas::load(store, &current.filing_set).await?;
        *self.current.write().expect("the atlas lock is never poisoned") = Arc::new(atlas);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_distance_is_to_the_nearest_point() {
        assert!((distance_to_origin((-1.0, 2.0), (1.0, 2.0)) - 2.0).abs() < 1e-12);
        assert!((distance_to_origin((3.0, 4.0), (6.0, 8.0)) - 5.0).abs() < 1e-12);
        assert!((distance_to_origin((0.0, 0.0), (0.0, 0.0))).abs() < 1e-12);
    }

    #[test]
    fn an_accuracy_circle_across_a_border_is_flagged_and_a_small_one_inside_is_not() {
        let wards = Boundaries::bundled();
        let area = wards.area("E05008714").unwrap();
        // A vertex of the ward's outline is on its border: any positive accuracy reaches it.
        let vertex = area.shape.0[0].exterior().0[0];
        assert!(near_border(&wards, vertex.x, vertex.y, 1.0));
        // 30 m west of that vertex, a 100 m circle must reach it.
        let west = vertex.x - 30.0 / (vertex.y.to_radians().cos() * METRES_PER_DEGREE);
        assert!(near_border(&wards, west, vertex.y, 100.0));
        // Far from every ward (central London), nothing is near.
        assert!(!near_border(&wards, -0.1246, 51.5007, 500.0));
    }

    #[test]
    fn a_picked_area_files_where_the_generation_has_it_and_by_point_elsewhere() {
        let wards = Boundaries::bundled();
        let picked = Whereabouts {
            point: Some((53.05, -2.15)),
            accuracy_m: None,
            picked_area_code: Some("E05008714".into()),
            approximate: true,
        };
        assert_eq!(tag_in(&wards, &picked), ("E05008714".to_owned(), false));
        let unknown = Whereabouts { picked_area_code: Some("X1".into()), ..picked.clone() };
        let (_, near) = tag_in(&wards, &unknown);
        assert!(near, "an approximate point is always near a boundary");
        let nowhere = Whereabouts { point: None, accuracy_m: None, picked_area_code: None, approximate: false };
        assert_eq!(tag_in(&wards, &nowhere), (OUTSIDE_COVERAGE.to_owned(), false));
    }

    fn generation(id: i64, set_name: &str, boundaries: Boundaries) -> Generation {
        let info = GenerationInfo {
            id,
            set_name: set_name.into(),
            generation: 1,
            source: String::new(),
            imported_at: String::new(),
            n_areas: 0,
        };
        Generation { info, boundaries }
    }

    /// The bundled wards (generation 1, `wards`) and the ONS districts of 2022 (generation 2, `districts`).
    fn wards_and_districts() -> Atlas {
        let districts_file =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/boundaries/uk-local-authority-districts-2022.geojson");
        let districts = std::fs::read_to_string(districts_file).unwrap();
        let districts = Boundaries::from_geojson(&districts, "LAD22CD", "LAD22NM").unwrap();
        Atlas {
            generations: vec![generation(1, DEFAULT_SET, Boundaries::bundled()), generation(2, "districts", districts)],
            filing_set: DEFAULT_SET.into(),
        }
    }

    /// Each bundled ward's district, as the ward file itself records it (`LADCD`).
    fn ward_districts() -> BTreeMap<String, String> {
        let text = include_str!("../../data/boundaries/staffordshire-wards-2013.geojson");
        let wards: serde_json::Value = serde_json::from_str(text).unwrap();
        wards["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|feature| {
                let properties = &feature["properties"];
                (properties["WD13CD"].as_str().unwrap().to_owned(), properties["LADCD"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    fn granted(text: &str, generation_id: i64) -> Scope {
        let Scope::Areas(areas) = Scope::parse_list(text).unwrap() else { unreachable!() };
        Scope::Areas(
            areas
                .into_iter()
                .map(|area| crate::domain::AreaRef { generation_id: Some(generation_id), ..area })
                .collect(),
        )
    }

    #[test]
    fn a_district_scope_covers_the_wards_inside_it_and_not_its_neighbours() {
        let atlas = wards_and_districts();
        let ward_districts = ward_districts();
        // Stafford, Newcastle-under-Lyme and Stoke-on-Trent share borders.
        for district in ["E07000197", "E07000195", "E06000021"] {
            let within = atlas.areas_within(&granted(&format!("districts:{district}"), 2), 1);
            let recorded: BTreeSet<String> = ward_districts
                .iter()
                .filter(|(_, lad)| lad.as_str() == district)
                .map(|(ward, _)| ward.clone())
                .collect();
            assert!(!within.is_empty(), "{district}");
            assert_eq!(within, recorded, "{district}: the wards the ward file places in it, no more and no fewer");
        }
        let stafford = atlas.areas_within(&granted("districts:E07000197", 2), 1);
        let newcastle = atlas.areas_within(&granted("districts:E07000195", 2), 1);
        assert!(stafford.is_disjoint(&newcastle), "a ward lies within one district");
        let both = atlas.areas_within(&granted("districts:E07000197,districts:E07000195", 2), 1);
        assert_eq!(both, stafford.union(&newcastle).cloned().collect());
    }

    #[test]
    fn every_bundled_ward_lies_within_exactly_the_district_its_file_names() {
        let atlas = wards_and_districts();
        let ward_districts = ward_districts();
        let districts: BTreeSet<&String> = ward_districts.values().collect();
        let mut seen = BTreeSet::new();
        for district in districts {
            for ward in atlas.areas_within(&granted(&format!("districts:{district}"), 2), 1) {
                assert_eq!(&ward_districts[&ward], district, "{ward}");
                assert!(seen.insert(ward), "a ward in two districts");
            }
        }
        assert_eq!(seen.len(), 211, "every ward lies within some district");
    }

    #[test]
    fn a_scope_of_its_own_set_is_itself_and_everything_is_every_area() {
        let atlas = wards_and_districts();
        let one_ward = atlas.areas_within(&granted("wards:E05008714", 1), 1);
        assert_eq!(one_ward, BTreeSet::from(["E05008714".to_owned()]));
        assert!(atlas.areas_within(&granted("wards:NOPE", 1), 1).is_empty());
        assert_eq!(atlas.areas_within(&Scope::Everything, 1).len(), 211);
        assert!(atlas.areas_within(&Scope::Everything, 99).is_empty(), "an unknown generation has no areas");
        // A ward scope seen on the districts: a district is within a ward only if its interior point is, and no
        // Staffordshire district fits inside one ward.
        assert!(atlas.areas_within(&granted("wards:E05008714", 1), 2).is_empty());
    }
}
