-- What a delivery made on its receiver (SQLite's 0014).
ALTER TABLE outbox ADD COLUMN result TEXT;
