-- An analyst's list filtered to an area reads that area's insights through this index and sorts the few it finds,
-- instead of walking every insight newest first until enough match (docs/benchmarks.md).
CREATE INDEX insight_areas_by_area ON insight_areas (generation_id, area_code, insight_id);
