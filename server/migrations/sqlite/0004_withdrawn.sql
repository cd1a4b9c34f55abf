-- Withdrawn insights (docs/data-model.md): the person who captured an insight took it back. It stays stored with the
-- status 'withdrawn', keeps no content in this table and counts nowhere.
--
-- SQLite cannot change a CHECK constraint in place, so `insights` is rebuilt. `insight_areas` refers to it, and
-- dropping a table with foreign keys on deletes its rows first (which the references would refuse), so the tags are
-- set aside, their table dropped, and both rebuilt in the same transaction.

CREATE TABLE insight_areas_kept AS SELECT insight_id, generation_id, area_code, near_boundary FROM insight_areas;
DROP TABLE insight_areas;

CREATE TABLE insights_rebuilt (
    id                  TEXT PRIMARY KEY,
    doc_id              TEXT NOT NULL UNIQUE REFERENCES documents (doc_id),
    collector_id        TEXT NOT NULL REFERENCES collectors (id),
    device_id           TEXT NOT NULL REFERENCES devices (id),
    captured_at         TEXT,
    captured_day        TEXT,
    campaign            TEXT,
    category            TEXT,
    text                TEXT,
    feeling_safe        INTEGER,
    channel             TEXT,
    lat                 REAL,
    lon                 REAL,
    accuracy_m          REAL,
    picked_area_code    TEXT,
    status              TEXT NOT NULL CHECK (status IN ('filed', 'outside_coverage', 'rejected', 'withdrawn')),
    area_code           TEXT,
    reject_code         TEXT,
    reject_message      TEXT,
    processed_at        TEXT NOT NULL,
    postcode            TEXT,
    tag_lat             REAL,
    tag_lon             REAL
);
INSERT INTO insights_rebuilt (id, doc_id, collector_id, device_id, captured_at, captured_day, campaign, category, text,
        feeling_safe, channel, lat, lon, accuracy_m, picked_area_code, status, area_code, reject_code, reject_message,
        processed_at, postcode, tag_lat, tag_lon)
    SELECT id, doc_id, collector_id, device_id, captured_at, captured_day, campaign, category, text, feeling_safe,
        channel, lat, lon, accuracy_m, picked_area_code, status, area_code, reject_code, reject_message, processed_at,
        postcode, tag_lat, tag_lon
    FROM insights;
DROP TABLE insights;
ALTER TABLE insights_rebuilt RENAME TO insights;

-- As in 0003.
CREATE TABLE insight_areas (
    insight_id     TEXT NOT NULL REFERENCES insights (id),
    generation_id  INTEGER NOT NULL REFERENCES boundary_generations (id),
    area_code      TEXT NOT NULL,
    near_boundary  INTEGER NOT NULL,
    PRIMARY KEY (insight_id, generation_id)
);
INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary)
    SELECT insight_id, generation_id, area_code, near_boundary FROM insight_areas_kept;
DROP TABLE insight_areas_kept;
