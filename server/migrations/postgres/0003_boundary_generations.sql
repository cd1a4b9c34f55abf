-- As server/migrations/sqlite/0003_boundary_generations.sql (read its notes), with PostgreSQL's types. Roll-up rows
-- are counters updated in place: room for HOT updates and eager autovacuum, as in 0001.

CREATE TABLE boundary_generations (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    set_name     TEXT NOT NULL,
    generation   BIGINT NOT NULL,
    source       TEXT NOT NULL,
    imported_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (set_name, generation)
);

CREATE TABLE boundary_areas (
    generation_id  BIGINT NOT NULL REFERENCES boundary_generations (id),
    code           TEXT NOT NULL,
    name           TEXT NOT NULL,
    geometry       TEXT NOT NULL,      -- a GeoJSON geometry, WGS84
    PRIMARY KEY (generation_id, code)
);

-- Where each insight lies in each generation ('' = outside every area).
CREATE TABLE insight_areas (
    insight_id     UUID NOT NULL REFERENCES insights (id),
    generation_id  BIGINT NOT NULL REFERENCES boundary_generations (id),
    area_code      TEXT NOT NULL,
    near_boundary  BOOLEAN NOT NULL,
    PRIMARY KEY (insight_id, generation_id)
);

-- The point an insight is tagged by (GPS fix, postcode centroid or picked area's interior point), and its postcode.
ALTER TABLE insights ADD COLUMN postcode TEXT;
ALTER TABLE insights ADD COLUMN tag_lat DOUBLE PRECISION;
ALTER TABLE insights ADD COLUMN tag_lon DOUBLE PRECISION;
UPDATE insights SET tag_lat = lat, tag_lon = lon;

-- Counts per generation × period × area × category ('*' = every category). `period` is day, week (ISO, from
-- Monday), month, quarter or year; `period_start` its first day.
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
    PRIMARY KEY (generation_id, category, period, period_start, area_code)
);

-- The key serves "every area over a period" (the all-categories rows of the tiling cells, one range scan per run of
-- periods); these indexes serve one area's categories, and every area's categories (priorities). Counters are in no
-- index, so updating a cell never touches one.
CREATE INDEX rollups_by_area ON rollups (generation_id, area_code, period, period_start);
CREATE INDEX rollups_by_period ON rollups (generation_id, period, period_start);

-- One row per collector with insights in a cell: distinct contributors cannot be summed across periods, but they can
-- be counted over the rows of the cells that tile a period.
CREATE TABLE rollup_contributors (
    generation_id  BIGINT NOT NULL,
    period         TEXT NOT NULL,
    period_start   DATE NOT NULL,
    area_code      TEXT NOT NULL,
    category       TEXT NOT NULL,
    collector_id   UUID NOT NULL,
    n_insights     BIGINT NOT NULL,
    PRIMARY KEY (generation_id, category, period, period_start, area_code, collector_id)
);

CREATE INDEX rollup_contributors_by_area ON rollup_contributors (generation_id, area_code, period, period_start);

DROP TABLE rollup_daily;
DROP TABLE rollup_monthly;

-- Postcode centroids (ONS Postcode Directory), for insights located by postcode.
CREATE TABLE postcodes (
    postcode  TEXT PRIMARY KEY,        -- normalised: upper case, one space before the inward code
    lat       DOUBLE PRECISION NOT NULL,
    lon       DOUBLE PRECISION NOT NULL
);

ALTER TABLE rollups SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE rollup_contributors SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02);
