-- Each roll-up cell keeps its contributors in its own row (docs/geotagging.md, "Distinct contributors"): the
-- collectors with insights in the cell and how many each, as one compact sorted set, instead of a row per collector
-- and cell in `rollup_contributors`. A generation then writes about a third of the rows it did (a million insights
-- from 2,000 collectors: 1.2 million cells where there were 4.5 million rows), which is what lets a re-tag finish in
-- seconds.
--
-- The sets are not computed here: the server rebuilds the roll-ups of every generation listed in `rollups_pending`
-- from the stored tags when it next opens the database, before it serves anything.
ALTER TABLE rollups ADD COLUMN contributors BYTEA NOT NULL DEFAULT ''::bytea;
ALTER TABLE rollups ALTER COLUMN contributors DROP DEFAULT;
-- Sets are UUIDs and counts, which do not compress: store them uncompressed (in the row while they are small).
ALTER TABLE rollups ALTER COLUMN contributors SET STORAGE EXTERNAL;

CREATE TABLE rollups_pending (
    generation_id  BIGINT PRIMARY KEY REFERENCES boundary_generations (id)
);
INSERT INTO rollups_pending (generation_id) SELECT id FROM boundary_generations;
TRUNCATE rollups;
DROP TABLE rollup_contributors;
