-- The phone's enrolment (docs/sync-protocol.md, "Enrolment"): the device token a redeemed invitation gave it, and the
-- server it came from, so later syncs need neither. At most one row; enrolling again replaces it.
CREATE TABLE enrolment (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    server_url    TEXT NOT NULL,          -- the server's HTTP base URL, e.g. https://grapevine.example.org
    device_id     TEXT NOT NULL,
    collector_id  TEXT NOT NULL,
    token         TEXT NOT NULL,          -- the device's bearer token; it never leaves this file but to the server
    enrolled_at   TEXT NOT NULL
);
