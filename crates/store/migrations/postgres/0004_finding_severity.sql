-- A regression or improvement whose interval excludes no change but whose size is under the
-- materiality floors is `minor`; incidents, alerts and comments leave minor ones out.
ALTER TABLE findings ADD COLUMN severity TEXT NOT NULL DEFAULT 'major';
