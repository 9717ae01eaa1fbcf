-- Deploys taken from forge events (SQLite's 0013).
ALTER TABLE deploys ADD COLUMN event_integration TEXT;
ALTER TABLE deploys ADD COLUMN event_forge TEXT;
ALTER TABLE deploys ADD COLUMN event_kind TEXT;
ALTER TABLE deploys ADD COLUMN event_id TEXT;
ALTER TABLE deploys ADD COLUMN event_url TEXT;

CREATE TABLE forge_deploy_events (
    integration TEXT NOT NULL,
    event TEXT NOT NULL,
    service TEXT NOT NULL,
    deploy_id BIGINT NOT NULL REFERENCES deploys (id),
    PRIMARY KEY (integration, event, service)
);
