-- Withdrawn insights (docs/data-model.md): the person who captured an insight took it back. It stays stored with the
-- status 'withdrawn', keeps no content in this table and counts nowhere.

ALTER TABLE insights DROP CONSTRAINT insights_status_check;
ALTER TABLE insights ADD CONSTRAINT insights_status_check
    CHECK (status IN ('filed', 'outside_coverage', 'rejected', 'withdrawn'));
