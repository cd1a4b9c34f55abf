-- Boundary sets and generations, every insight tagged in every generation, and roll-ups per generation and calendar
-- period with contributors and channel mix (docs/geotagging.md). The old roll-up tables are dropped: the server
-- rebuilds the roll-ups from the insights when it writes the first generation (the bundled wards) on start.

CREATE TABLE boundary_generations (
    id           INTEGER PRIMARY KEY,
    set_name     TEXT NOT NULL,
    generation   INTEGER NOT NULL,
    source       TEXT NOT NULL,
    imported_at  TEXT NOT NULL,
    UNIQUE (set_name, generation)
);

CREATE TABLE boundary_areas (
    generation_id  INTEGER NOT NULL REFERENCES boundary_generations (id),
    code           TEXT NOT NULL,
    name           TEXT NOT NULL,
    geometry       TEXT NOT NULL,      -- a GeoJSON geometry, WGS84
    PRIMARY KEY (generation_id, code)
);

-- Where each insight lies in each generation ('' = outside every area).
CREATE TABLE insight_areas (
    insight_id     TEXT NOT NULL REFERENCES insights (id),
    generation_id  INTEGER NOT NULL REFERENCES boundary_generations (id),
    area_code      TEXT NOT NULL,
    near_boundary  INTEGER NOT NULL,
    PRIMARY KEY (insight_id, generation_id)
);

-- The point an insight is tagged by (GPS fix, postcode centroid or picked area's interior point), and its postcode.
ALTER TABLE insights ADD COLUMN postcode TEXT;
ALTER TABLE insights ADD COLUMN tag_lat REAL;
ALTER TABLE insights ADD COLUMN tag_lon REAL;
UPDATE insights SET tag_lat = lat, tag_lon = lon;

-- Counts per generation × period × area × category ('*' = every category). `period` is day, week (ISO, from
-- Monday), month, quarter or year; `period_start` its first day.
CREATE TABLE rollups (
    generation_id         INTEGER NOT NULL,
    period                TEXT NOT NULL,
    period_start          TEXT NOT NULL,
    area_code             TEXT NOT NULL,
    category              TEXT NOT NULL,
    n_insights            INTEGER NOT NULL,
    n_contributors        INTEGER NOT NULL,
    feeling_safe_sum      INTEGER NOT NULL,
    feeling_safe_n        INTEGER NOT NULL,
    n_staff               INTEGER NOT NULL,
    n_barber_hairdresser  INTEGER NOT NULL,
    n_pupil               INTEGER NOT NULL,
    n_youth_worker        INTEGER NOT NULL,
    n_other_channel       INTEGER NOT NULL,
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
    generation_id  INTEGER NOT NULL,
    period         TEXT NOT NULL,
    period_start   TEXT NOT NULL,
    area_code      TEXT NOT NULL,
    category       TEXT NOT NULL,
    collector_id   TEXT NOT NULL,
    n_insights     INTEGER NOT NULL,
    PRIMARY KEY (generation_id, category, period, period_start, area_code, collector_id)
);

CREATE INDEX rollup_contributors_by_area ON rollup_contributors (generation_id, area_code, period, period_start);

DROP TABLE rollup_daily;
DROP TABLE rollup_monthly;

-- Postcode centroids (ONS Postcode Directory), for insights located by postcode.
CREATE TABLE postcodes (
    postcode  TEXT PRIMARY KEY,        -- normalised: upper case, one space before the inward code
    lat       REAL NOT NULL,
    lon       REAL NOT NULL
);
