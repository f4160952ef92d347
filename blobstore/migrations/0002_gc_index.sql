-- Garbage collection looks for blobs not re-uploaded within the grace
-- period; on a large store that is a range over last_put_at, not a scan.
CREATE INDEX blobs_last_put_at ON blobs (last_put_at);
