-- The roll-ups and the tags are partitioned by generation (`PARTITION BY LIST (generation_id)`), a partition each per
-- generation, named `rollups_g<id>` and `insight_areas_g<id>`. A new generation is loaded into tables of its own, with
-- no index to maintain and no foreign key checked row by row, then indexed and checked once, whole, and attached
-- (docs/geotagging.md): that is what lets a re-tag of a million insights take seconds instead of minutes. PostgreSQL
-- only; SQLite has no partitions.
--
-- The roll-ups are rebuilt from the stored tags when the server next opens the database (as after 0008), each
-- generation into its own partition. Partitioned tables take no storage parameters: each partition gets its own
-- when it is made.

DROP TABLE rollups;
CREATE TABLE rollups (
    generation_id         BIGINT NOT NULL,
    period                TEXT NOT NULL,
    period_start          DATE NOT NULL,
    area_code             TEXT NOT NULL,
    category              TEXT NOT NULL,
    n_insights            BIGINT NOT NULL,
    n_contributors        BIGINT NOT NULL,
    feeling_safe_sum      BIGINT NOT NULL,
    feeling_safe_n        BIGINT NOT NULL,
    n_staff               BIGINT NOT NULL,
    n_barber_hairdresser  BIGINT NOT NULL,
    n_pupil               BIGINT NOT NULL,
    n_youth_worker        BIGINT NOT NULL,
    n_other_channel       BIGINT NOT NULL,
    -- The collectors with insights in the cell, each with how many: 20 bytes per collector, sorted (rollup.rs).
    contributors          BYTEA NOT NULL,
    PRIMARY KEY (generation_id, category, period, period_start, area_code)
) PARTITION BY LIST (generation_id);
CREATE INDEX rollups_by_area ON rollups (generation_id, area_code, period, period_start);
CREATE INDEX rollups_counts ON rollups (generation_id, period, period_start) INCLUDE (area_code, category, n_insights);
INSERT INTO rollups_pending (generation_id) SELECT id FROM boundary_generations ON CONFLICT DO NOTHING;

-- The tags move into a partitioned table, a partition per existing generation.
ALTER TABLE insight_areas RENAME TO insight_areas_unpartitioned;
ALTER INDEX insight_areas_pkey RENAME TO insight_areas_unpartitioned_pkey;
CREATE TABLE insight_areas (
    insight_id     UUID NOT NULL REFERENCES insights (id),
    generation_id  BIGINT NOT NULL REFERENCES boundary_generations (id),
    area_code      TEXT NOT NULL,
    near_boundary  BOOLEAN NOT NULL,
    PRIMARY KEY (insight_id, generation_id)
) PARTITION BY LIST (generation_id);
DO $$
DECLARE
    generation BIGINT;
BEGIN
    FOR generation IN SELECT id FROM boundary_generations LOOP
        EXECUTE format('CREATE TABLE insight_areas_g%s PARTITION OF insight_areas FOR VALUES IN (%s)',
                       generation, generation);
    END LOOP;
END
$$;
INSERT INTO insight_areas SELECT * FROM insight_areas_unpartitioned;
DROP TABLE insight_areas_unpartitioned;
