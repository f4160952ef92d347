-- Names are compared in their NFC form (NormalizeName). Rewrite the names
-- stored in another form, and their history; where several spellings of one
-- name exist, the one moved last stays. Only UTF-8 databases can hold other
-- forms (and normalize only works there).
DO $$
BEGIN
    IF current_setting('server_encoding') <> 'UTF8' THEN
        RETURN;
    END IF;
    CREATE TEMP TABLE name_spellings ON COMMIT DROP AS
        SELECT name, normalize(name, NFC) AS nfc, updated_at FROM names WHERE name IS NOT NFC NORMALIZED;
    INSERT INTO name_spellings
        SELECT n.name, n.name, n.updated_at FROM names n WHERE n.name IN (SELECT nfc FROM name_spellings);
    DELETE FROM names WHERE name IN (
        SELECT name FROM (
            SELECT name, row_number() OVER (PARTITION BY nfc ORDER BY updated_at DESC, name DESC) AS r
            FROM name_spellings) s
        WHERE r > 1);
    UPDATE names SET name = normalize(name, NFC) WHERE name IS NOT NFC NORMALIZED;
    UPDATE name_history SET name = normalize(name, NFC) WHERE name IS NOT NFC NORMALIZED;
END $$;
