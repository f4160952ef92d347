-- Derived variants of image blobs (resized, cropped, re-encoded). A variant
-- is a function of its source and its normalised options, so it is
-- rendered once, stored as an ordinary blob, and found again here. Rows go
-- with their source (ON DELETE CASCADE); GC then collects the variant blob
-- once nothing else keeps it.
CREATE TABLE variants (
    source_id  bigint      NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
    options    text        NOT NULL CHECK (length(options) BETWEEN 1 AND 200),
    variant_id bigint      NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, options)
);
-- GC asks, per candidate, whether it is some live source's variant.
CREATE INDEX variants_variant_id ON variants (variant_id);

-- The placeholder (BlurHash) of an image blob, computed when it was
-- validated at upload.
CREATE TABLE placeholders (
    blob_id     bigint PRIMARY KEY REFERENCES blobs (id) ON DELETE CASCADE,
    placeholder text   NOT NULL CHECK (length(placeholder) BETWEEN 1 AND 200)
);
