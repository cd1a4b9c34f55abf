-- An insight's area tags, found by the order insights arrived in. An export reads insights newest first by `seq` and
-- their tags a page at a time: found by the insights' ids (random UUIDs), a page's tags were a thousand probes of the
-- whole index; by `seq`, they lie together and are read as one range (docs/benchmarks.md, issue 18). Every writer
-- of `insight_areas` sets it; a generation's partition made later gets the column and the index from the parent.
ALTER TABLE insight_areas ADD COLUMN insight_seq BIGINT;
UPDATE insight_areas AS a SET insight_seq = i.seq FROM insights AS i WHERE i.id = a.insight_id;
CREATE INDEX insight_areas_by_seq ON insight_areas (insight_seq);
