-- Deploys taken from forge events (a deployment that succeeded, a published release): the
-- event a deploy came from, for its page's link; and each (integration, event, service)
-- recorded once, so a redelivery or a second success of the same deployment adds nothing.
ALTER TABLE deploys ADD COLUMN event_integration TEXT;
ALTER TABLE deploys ADD COLUMN event_forge TEXT;        -- gogs | gitea | github | gitlab | phabricator
ALTER TABLE deploys ADD COLUMN event_kind TEXT;         -- deployment | release
ALTER TABLE deploys ADD COLUMN event_id TEXT;           -- the forge's id for it
ALTER TABLE deploys ADD COLUMN event_url TEXT;

CREATE TABLE forge_deploy_events (
    integration TEXT NOT NULL,
    event TEXT NOT NULL,                -- `deployment:145988746`, `release:1`
    service TEXT NOT NULL,
    deploy_id INTEGER NOT NULL REFERENCES deploys (id),
    PRIMARY KEY (integration, event, service)
) WITHOUT ROWID;
