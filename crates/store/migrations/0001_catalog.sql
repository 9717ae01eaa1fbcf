-- The service catalog: which services, environments, versions and operations have been seen,
-- and when first and last. `GET /api/v1/services` reads it; inferred deploys (the first spans
-- of a new `service.version` in an environment) will be read from `service_versions`.
-- Absent environment or version is stored as '' so the primary keys stay total.
CREATE TABLE service_versions (
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    version TEXT NOT NULL,
    first_seen_unix_nanos INTEGER NOT NULL,
    last_seen_unix_nanos INTEGER NOT NULL,
    num_spans INTEGER NOT NULL,
    PRIMARY KEY (service, environment, version)
) WITHOUT ROWID;

CREATE TABLE service_operations (
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    span_kind TEXT NOT NULL,
    first_seen_unix_nanos INTEGER NOT NULL,
    last_seen_unix_nanos INTEGER NOT NULL,
    num_spans INTEGER NOT NULL,
    PRIMARY KEY (service, operation, span_kind)
) WITHOUT ROWID;
