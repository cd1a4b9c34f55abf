-- An analyst's list filtered to an area or two reads those areas' insights through this index and sorts the few it
-- finds, instead of walking every insight newest first until enough match (docs/benchmarks.md: at 1,000,000
-- insights, one ward, two categories and a quarter took 89 ms).
CREATE INDEX insight_areas_by_area ON insight_areas (generation_id, area_code, insight_id);
