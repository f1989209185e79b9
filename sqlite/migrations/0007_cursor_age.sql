-- When each catch-up cursor last moved (unix seconds), so cursors of
-- resources that never come back (generated resources) expire.
ALTER TABLE cursors ADD COLUMN updated INTEGER NOT NULL DEFAULT 0;
UPDATE cursors SET updated = CAST(strftime('%s', 'now') AS INTEGER);
