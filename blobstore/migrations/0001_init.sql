-- Blobs are content-addressed: hash is the BLAKE3-256 of the bytes. The bytes
-- live in chunks keyed by the blob's internal id, so they can be streamed in
-- before the hash (and so the key) is known.
CREATE SEQUENCE blob_ids;

CREATE TABLE blobs (
    id           bigint      PRIMARY KEY,
    hash         bytea       NOT NULL UNIQUE CHECK (length(hash) = 32),
    size         bigint      NOT NULL CHECK (size >= 0),
    chunk_size   integer     NOT NULL CHECK (chunk_size > 0),
    content_type text        NOT NULL,
    width        integer,
    height       integer,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- last_put_at moves when an upload of the same bytes is answered with
    -- this blob, so garbage collection never takes a blob a client was just
    -- handed.
    last_put_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chunks (
    blob_id bigint  NOT NULL REFERENCES blobs (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    seq     integer NOT NULL CHECK (seq >= 0),
    data    bytea   NOT NULL,
    PRIMARY KEY (blob_id, seq)
);
-- Images are already compressed: store chunk bytes out of line, uncompressed.
ALTER TABLE chunks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE names (
    name       text        PRIMARY KEY,
    blob_hash  bytea       NOT NULL REFERENCES blobs (hash),
    updated_at timestamptz NOT NULL
);
CREATE INDEX names_blob_hash ON names (blob_hash);

-- Every move of a name, kept for good: set (hash, previous) and delete (hash NULL).
CREATE TABLE name_history (
    id        bigserial   PRIMARY KEY,
    name      text        NOT NULL,
    blob_hash bytea,
    previous  bytea,
    at        timestamptz NOT NULL
);
CREATE INDEX name_history_name ON name_history (name, id);
CREATE INDEX name_history_blob_hash ON name_history (blob_hash);
CREATE INDEX name_history_previous ON name_history (previous);
