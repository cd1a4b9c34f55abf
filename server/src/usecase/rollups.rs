//! Reading the neighbourhood roll-ups and priorities: counts, never insight text. A scoped principal sees only the
//! areas within its scope; any other area is answered exactly as an area that does not exist.

use std::collections::{BTreeSet, HashMap};

use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use grapevine_sync_proto::ErrorCode;

use super::{UseCaseError, UseCases};
use crate::domain::{shown, Action, DayRange, PeriodKind, Principal, Scope};
use crate::geo::atlas::{Atlas, Generation};
use crate::geo::boundaries::Area;
use crate::store::{AreaRollup, CategoryCount, CategoryPoint, SeriesPoint, OUTSIDE_COVERAGE};

/// Which areas of one generation a principal may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    All,
    Only(BTreeSet<String>),
}

impl Visible {
    /// The areas of `generation` within `principal`'s scope (`docs/access.md`, "what within means").
    #[must_use]
    pub fn of(principal: &Principal, atlas: &Atlas, generation: &Generation) -> Visible {
        match &principal.scope {
            Scope::Everything => Visible::All,
            scope @ Scope::Areas(_) => Visible::Only(atlas.areas_within(scope, generation.info.id)),
        }
    }

    #[must_use]
    pub fn contains(&self, code: &str) -> bool {
        match self {
            Visible::All => true,
            Visible::Only(codes) => codes.contains(code),
        }
    }
}

/// Every visible area of a generation with its totals over a period.
#[derive(Debug)]
pub struct AreaTotals<'g> {
    /// In the generation's order, zeros included (a map shades every area).
    pub areas: Vec<(&'g Area, AreaRollup)>,
    /// Insights outside every area: told only to an unscoped principal (it lies in nobody's scope).
    pub outside_coverage: Option<i64>,
}

/// One area in detail.
#[derive(Debug)]
pub struct AreaDetail<'g> {
    pub area: &'g Area,
    pub rollup: AreaRollup,
    /// Per period, when a period kind was asked for.
    pub series: Option<Vec<SeriesPoint>>,
}

/// Category counts for a period and the one before it, for the visible areas (or the one asked for).
#[derive(Debug)]
pub struct PriorityCounts<'g> {
    pub areas: Vec<&'g Area>,
    pub now: Vec<CategoryCount>,
    pub before: Vec<CategoryCount>,
}

/// One category of an area in the priorities table.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedCategory {
    pub slug: &'static str,
    pub label: &'static str,
    pub total: i64,
    pub previous: i64,
    pub change: i64,
    /// `None` when the previous period had none (a new concern, not an infinite rise).
    pub change_percent: Option<f64>,
}

/// One area's row of the priorities table.
#[derive(Debug, Clone)]
pub struct AreaPriorities<'g> {
    pub area: &'g Area,
    pub total: i64,
    pub previous_total: i64,
    /// The campaign's categories, most insights first (then the biggest rise, then the slug).
    pub categories: Vec<RankedCategory>,
}

impl AreaPriorities<'_> {
    /// The (up to) three categories with the most insights this period, none of them empty.
    pub fn top_concerns(&self) -> impl Iterator<Item = &RankedCategory> {
        self.categories.iter().filter(|ranked| ranked.total > 0).take(3)
    }
}

impl<'g> PriorityCounts<'g> {
    /// The priorities table (the one an analyst pastes into the Police and Crime Plan): each area with anything in
    /// either period, its categories ranked by volume with the change against the period before; busiest area first.
    /// The API and the pages both show this, so they cannot disagree.
    #[must_use]
    pub fn ranked(&self) -> Vec<AreaPriorities<'g>> {
        let (now, before) = (counts_by_area(&self.now), counts_by_area(&self.before));
        let mut areas: Vec<AreaPriorities<'g>> = self
            .areas
            .iter()
            .filter_map(|area| {
                let (current, previous) = (now.get(area.code.as_str()), before.get(area.code.as_str()));
                if current.is_none() && previous.is_none() {
                    return None;
                }
                let count = |counts: Option<&HashMap<&str, i64>>, category: &str| {
                    counts.and_then(|counts| counts.get(category)).copied().unwrap_or(0)
                };
                let mut categories: Vec<RankedCategory> = DEFAULT_CAMPAIGN
                    .categories
                    .iter()
                    .map(|category| {
                        let (total, earlier) = (count(current, category.slug), count(previous, category.slug));
                        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                        let change_percent =
                            (earlier > 0).then(|| ((total - earlier) as f64 * 1000.0 / earlier as f64).round() / 10.0);
                        RankedCategory {
                            slug: category.slug,
                            label: category.label,
                            total,
                            previous: earlier,
                            change: total - earlier,
                            change_percent,
                        }
                    })
                    .collect();
                categories.sort_by(|a, b| {
                    b.total.cmp(&a.total).then_with(|| b.change.cmp(&a.change)).then(a.slug.cmp(b.slug))
                });
                Some(AreaPriorities {
                    area,
                    total: current.map_or(0, |counts| counts.values().sum()),
                    previous_total: previous.map_or(0, |counts| counts.values().sum()),
                    categories,
                })
            })
            .collect();
        areas.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.area.code.cmp(&b.area.code)));
        areas
    }
}

/// Each area's count per category (every category, the campaign's or not, so the totals are whole).
fn counts_by_area(rows: &[CategoryCount]) -> HashMap<&str, HashMap<&str, i64>> {
    let mut areas: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
    for row in rows {
        areas.entry(row.area_code.as_str()).or_default().insert(row.category.as_str(), row.n);
    }
    areas
}

/// One area's insights per category per month.
#[derive(Debug)]
pub struct AreaTrend<'g> {
    pub area: &'g Area,
    /// Oldest first; periods and categories with none absent.
    pub points: Vec<CategoryPoint>,
}

impl UseCases {
    /// The areas of `generation` the principal may choose among for `action` (to filter by, to open). Boundaries are
    /// reference data, so only a refusal is recorded, as `verb`.
    ///
    /// # Errors
    /// `Forbidden` (recorded) for a role that may not take `action`; the refusal cannot be recorded.
    pub async fn areas_in_scope<'g>(
        &self,
        principal: &Principal,
        atlas: &Atlas,
        generation: &'g Generation,
        action: Action,
        verb: &str,
    ) -> Result<Vec<&'g Area>, UseCaseError> {
        self.authorize_audited(principal, action, verb, "areas").await?;
        let visible = Visible::of(principal, atlas, generation);
        Ok(generation.boundaries.areas().iter().filter(|area| visible.contains(&area.code)).collect())
    }

    /// One area's insights per category per month over `days` (the months that start in it): its trend.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound` (`area_not_found`) for an area that does not exist or lies outside the scope, alike;
    /// the store fails.
    pub async fn area_trend<'g>(
        &self,
        principal: &Principal,
        atlas: &Atlas,
        generation: &'g Generation,
        code: &str,
        days: DayRange,
    ) -> Result<AreaTrend<'g>, UseCaseError> {
        self.authorize_audited(principal, Action::ReadRollups, "rollups.read", &shown(code)).await?;
        let area = visible_area(principal, atlas, generation, code)?;
        let points = self.store.category_series(generation.info.id, &area.code, PeriodKind::Month, days).await?;
        Ok(AreaTrend { area, points })
    }

    /// `GET /api/v1/areas`.
    ///
    /// # Errors
    /// `Forbidden` for a role that does not read roll-ups; the store fails.
    pub async fn area_totals<'g>(
        &self,
        principal: &Principal,
        atlas: &Atlas,
        generation: &'g Generation,
        days: DayRange,
    ) -> Result<AreaTotals<'g>, UseCaseError> {
        self.authorize_audited(principal, Action::ReadRollups, "rollups.read", "areas").await?;
        let visible = Visible::of(principal, atlas, generation);
        let mut rollups = self.store.rollup(generation.info.id, days, None, false, false).await?;
        let outside =
            rollups.iter().find(|rollup| rollup.area_code == OUTSIDE_COVERAGE).map_or(0, |rollup| rollup.all.n);
        let areas = generation
            .boundaries
            .areas()
            .iter()
            .filter(|area| visible.contains(&area.code))
            .map(|area| {
                let found = rollups.iter().position(|rollup| rollup.area_code == area.code);
                let rollup = found.map(|at| rollups.swap_remove(at)).unwrap_or_else(|| AreaRollup {
                    area_code: area.code.clone(),
                    contributors: Some(0),
                    ..AreaRollup::default()
                });
                (area, rollup)
            })
            .collect();
        Ok(AreaTotals { areas, outside_coverage: (visible == Visible::All).then_some(outside) })
    }

    /// `GET /api/v1/areas/{code}`.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound` (`area_not_found`) for an area that does not exist or lies outside the scope, alike;
    /// the store fails.
    pub async fn area_detail<'g>(
        &self,
        principal: &Principal,
        atlas: &Atlas,
        generation: &'g Generation,
        code: &str,
        days: DayRange,
        period: Option<PeriodKind>,
    ) -> Result<AreaDetail<'g>, UseCaseError> {
        self.authorize_audited(principal, Action::ReadRollups, "rollups.read", &shown(code)).await?;
        let area = visible_area(principal, atlas, generation, code)?;
        let id = generation.info.id;
        let rollup =
            self.store.rollup(id, days, Some(&area.code), true, true).await?.into_iter().next().unwrap_or_default();
        let series = match period {
            Some(kind) => Some(self.store.series(id, &area.code, kind, days).await?),
            None => None,
        };
        Ok(AreaDetail { area, rollup, series })
    }

    /// `GET /api/v1/priorities`: the counts per category in `days` and in `previous`.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound` for an area asked for that does not exist or lies outside the scope; the store fails.
    pub async fn priority_counts<'g>(
        &self,
        principal: &Principal,
        atlas: &Atlas,
        generation: &'g Generation,
        area: Option<&str>,
        days: DayRange,
        previous: DayRange,
    ) -> Result<PriorityCounts<'g>, UseCaseError> {
        self.authorize_audited(
            principal,
            Action::ReadPriorities,
            "priorities.read",
            &area.map_or_else(|| "areas".to_owned(), shown),
        )
        .await?;
        let areas: Vec<&Area> = match area {
            Some(code) => vec![visible_area(principal, atlas, generation, code)?],
            None => {
                let visible = Visible::of(principal, atlas, generation);
                generation.boundaries.areas().iter().filter(|area| visible.contains(&area.code)).collect()
            }
        };
        let code = area.map(|_| areas[0].code.as_str());
        let id = generation.info.id;
        // Both periods at once, on two connections.
        let (now, before) = tokio::try_join!(
            self.store.category_counts(id, days, code),
            self.store.category_counts(id, previous, code)
        )?;
        Ok(PriorityCounts { areas, now, before })
    }
}

/// The area `code` of `generation` if it exists and lies within the principal's scope; otherwise the one answer
/// for both.
fn visible_area<'g>(
    principal: &Principal,
    atlas: &Atlas,
    generation: &'g Generation,
    code: &str,
) -> Result<&'g Area, UseCaseError> {
    generation
        .boundaries
        .area(code)
        .filter(|area| Visible::of(principal, atlas, generation).contains(&area.code))
        .ok_or_else(|| UseCaseError::NotFound {
            code: ErrorCode::AreaNotFound,
            message: format!("no area has the code '{}'", shown(code)),
        })
}
