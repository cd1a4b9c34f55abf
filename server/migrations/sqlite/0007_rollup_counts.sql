-- The priorities table reads one number per cell: each area's count per category over the cells that tile a period.
-- This covering index answers it without touching the table, where `rollups_by_period` looked up a table row per
-- cell. It serves everything `rollups_by_period` did, which goes.
CREATE INDEX rollups_counts ON rollups (generation_id, period, period_start, area_code, category, n_insights);
DROP INDEX rollups_by_period;
