-- Latency sketches with span and error counts per series and minute (resolution 1) or, once
-- rolled up, per hour (resolution 60). `stats` is analysis::WindowStats::encode.
CREATE TABLE sketches (
    service TEXT NOT NULL,
    environment TEXT NOT NULL,          -- '' when the spans name none
    unix_minute INTEGER NOT NULL,       -- the bucket's first minute since the epoch
    resolution_minutes INTEGER NOT NULL,
    operation TEXT NOT NULL,
    span_kind TEXT NOT NULL,
    version TEXT NOT NULL,              -- '' when the spans name none
    spans INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    stats BLOB NOT NULL,
    PRIMARY KEY (service, environment, unix_minute, resolution_minutes, operation, span_kind, version)
) WITHOUT ROWID;
CREATE INDEX sketches_by_age ON sketches (resolution_minutes, unix_minute);

-- The newest WAL segment whose spans `sketches` holds: recovery adds only later segments.
CREATE TABLE sketch_watermark (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    wal_segment INTEGER NOT NULL
);
