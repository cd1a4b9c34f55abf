-- The priorities table reads one number per cell: each area's count per category over the cells that tile a period.
-- This index answers it without touching the table (an index-only scan, once vacuum has marked the pages visible),
-- where `rollups_by_period` fetched a scattered heap page per cell: about 16,000 pages for twelve months over the
-- bundled wards. It serves everything `rollups_by_period` did, which goes.
CREATE INDEX rollups_counts ON rollups (generation_id, period, period_start) INCLUDE (area_code, category, n_insights);
DROP INDEX rollups_by_period;
-- The price: with `n_insights` in an index, updating a roll-up row is no longer a heap-only (HOT) update, so each one
-- also writes index entries; docs/benchmarks.md has the fill rate beside the old one.
