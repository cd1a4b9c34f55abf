-- An insight's area tags, found by the order insights arrived in. An export reads insights newest first by `seq` and
-- their tags a page at a time: keyed by the insight's id (a random UUID), each page's tags were a thousand jumps
-- across the whole index; keyed by `seq`, they lie together and are read as one range (docs/benchmarks.md, issue 18).
-- Every writer of `insight_areas` sets it.
ALTER TABLE insight_areas ADD COLUMN insight_seq INTEGER;
UPDATE insight_areas SET insight_seq = (SELECT seq FROM insights WHERE insights.id = insight_areas.insight_id);
CREATE INDEX insight_areas_by_seq ON insight_areas (insight_seq, generation_id, area_code, near_boundary);
