-- What a delivery made on its receiver, when it made something people open (the revision a
-- proposed revert became: `D43 https://phab.example.com/D43`).
ALTER TABLE outbox ADD COLUMN result TEXT;
