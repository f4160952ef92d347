package blobstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"golang.org/x/text/unicode/norm"
)

// MaxNameLen is the longest name in bytes.
const MaxNameLen = 200

// The name rules. A name is Unicode text in NFC (Normalization Form C):
// every function here takes a name in any normalization form and uses its
// NFC form, so that "café" typed as e + U+0301 (NFD) and as é (NFC) are one
// name. In that form a name is 1 to 200 bytes of UTF-8 of printable
// characters: no control characters, no white space, no '/' or '\', no
// "..", not starting with '.', and none of the characters that look like or
// normalize to a slash, a backslash or a full stop (FULLWIDTH SOLIDUS,
// DIVISION SLASH, FRACTION SLASH, ONE DOT LEADER, IDEOGRAPHIC FULL STOP and
// the like). Names appear in URL paths (/i/{name}) and file names, so
// anything a path, a browser or a later normalization could reinterpret
// as a separator is refused.

// ValidateName checks a name against the name rules.
func ValidateName(name string) error {
	_, err := NormalizeName(name)
	return err
}

// NormalizeName returns the NFC form of name, or ErrBadName when that form
// breaks the name rules.
func NormalizeName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: not UTF-8", ErrBadName)
	}
	name = norm.NFC.String(name)
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty", ErrBadName)
	case len(name) > MaxNameLen:
		return "", fmt.Errorf("%w: %d bytes, at most %d", ErrBadName, len(name), MaxNameLen)
	case strings.ContainsAny(name, "/\\"):
		return "", fmt.Errorf("%w: contains a slash", ErrBadName)
	case strings.Contains(name, ".."):
		return "", fmt.Errorf("%w: contains \"..\"", ErrBadName)
	case name[0] == '.':
		return "", fmt.Errorf("%w: starts with '.'", ErrBadName)
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError || !unicode.IsPrint(r) {
			return "", fmt.Errorf("%w: contains character %U", ErrBadName, r)
		}
		if lookAlike(r) {
			return "", fmt.Errorf("%w: contains %U, which looks like a slash or a dot", ErrBadName, r)
		}
	}
	return name, nil
}

// lookAlikes are slashes, backslashes and dots that compatibility
// normalization (NFKC) leaves alone.
var lookAlikes = map[rune]bool{
	'\u2044': true, // FRACTION SLASH
	'\u2215': true, // DIVISION SLASH
	'\u2216': true, // SET MINUS
	'\u29F5': true, // REVERSE SOLIDUS OPERATOR
	'\u29F6': true, // SOLIDUS WITH OVERBAR
	'\u29F8': true, // BIG SOLIDUS
	'\u29F9': true, // BIG REVERSE SOLIDUS
	'\u2571': true, // BOX DRAWINGS LIGHT DIAGONAL UPPER RIGHT TO LOWER LEFT
	'\u2572': true, // BOX DRAWINGS LIGHT DIAGONAL UPPER LEFT TO LOWER RIGHT
	'\u0337': true, // COMBINING SHORT SOLIDUS OVERLAY
	'\u0338': true, // COMBINING LONG SOLIDUS OVERLAY
	'\u1735': true, // PHILIPPINE SINGLE PUNCTUATION
	'\u3002': true, // IDEOGRAPHIC FULL STOP
	'\uFF61': true, // HALFWIDTH IDEOGRAPHIC FULL STOP
	'\uFE12': true, // PRESENTATION FORM FOR VERTICAL IDEOGRAPHIC FULL STOP
	'\u2E31': true, // WORD SEPARATOR MIDDLE DOT
	'\u0701': true, // SYRIAC SUPRALINEAR FULL STOP
	'\u0702': true, // SYRIAC SUBLINEAR FULL STOP
	'\uA4F8': true, // LISU LETTER TONE MYA TI
	'\u06D4': true, // ARABIC FULL STOP
}

// lookAlike reports whether r, other than '.' itself, is or normalizes
// (NFKC: FULLWIDTH SOLIDUS to '/', ONE DOT LEADER to '.') to a slash, a
// backslash or a dot.
func lookAlike(r rune) bool {
	if r < utf8.RuneSelf {
		return false
	}
	if lookAlikes[r] {
		return true
	}
	return strings.ContainsAny(norm.NFKC.String(string(r)), "/\\.")
}

// Precondition makes a name change conditional on the name's current state.
// The zero value changes the name unconditionally.
type Precondition struct {
	// IfMatch, when set, requires the name to point at this hash.
	IfMatch *Hash
	// MustExist requires the name to exist (If-Match: *).
	MustExist bool
	// MustNotExist requires the name to be new (If-None-Match: *).
	MustNotExist bool
}

// NameEvent is one move of a name. Hash is nil for a delete; Previous is nil
// when the name was created.
type NameEvent struct {
	Hash     *Hash
	Previous *Hash
	At       time.Time
}

// NameRecord is a name, the blob it points at, and its history (newest first).
type NameRecord struct {
	Name      string
	Hash      Hash
	UpdatedAt time.Time
	History   []NameEvent
}

// MaxHistory is how many events GetName returns.
const MaxHistory = 1000

// SetName points name at an existing blob, subject to pre, and records the
// move in the name's history. It returns the hash the name pointed at before
// (nil if it was new). Errors: ErrBadName, ErrNotFound (no such blob),
// ErrConflict (the precondition failed).
func (s *Store) SetName(ctx context.Context, name string, h Hash, pre Precondition) (previous *Hash, err error) {
	defer s.observe("name_set", time.Now(), 0)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if name, err = NormalizeName(name); err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockName(ctx, tx, name)
		if err != nil {
			return err
		}
		if err := pre.check(cur); err != nil {
			return err
		}
		previous = cur
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM blobs WHERE hash = $1 FOR KEY SHARE)", h[:]).Scan(&exists); err != nil {
			return fmt.Errorf("looking up blob: %w", err)
		}
		if !exists {
			return fmt.Errorf("blob %s: %w", h, ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO names (name, blob_hash, updated_at) VALUES ($1, $2, clock_timestamp())
			ON CONFLICT (name) DO UPDATE SET blob_hash = excluded.blob_hash, updated_at = excluded.updated_at`, name, h[:]); err != nil {
			return fmt.Errorf("setting name: %w", err)
		}
		return recordMove(ctx, tx, name, &h, cur)
	})
	if err != nil {
		return nil, fmt.Errorf("set name %q: %w", name, err)
	}
	return previous, nil
}

// DeleteName removes a name (its blob stays until garbage collection) and
// records the removal. Errors: ErrBadName, ErrNotFound, ErrConflict.
func (s *Store) DeleteName(ctx context.Context, name string, pre Precondition) (previous Hash, err error) {
	defer s.observe("name_delete", time.Now(), 0)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if name, err = NormalizeName(name); err != nil {
		return previous, err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := lockName(ctx, tx, name)
		if err != nil {
			return err
		}
		if cur == nil {
			return ErrNotFound
		}
		if err := pre.check(cur); err != nil {
			return err
		}
		previous = *cur
		if _, err := tx.Exec(ctx, "DELETE FROM names WHERE name = $1", name); err != nil {
			return fmt.Errorf("deleting name: %w", err)
		}
		return recordMove(ctx, tx, name, nil, cur)
	})
	if err != nil {
		return previous, fmt.Errorf("delete name %q: %w", name, err)
	}
	return previous, nil
}

// LookupName returns a name with its history, or ErrNotFound.
func (s *Store) LookupName(ctx context.Context, name string) (NameRecord, error) {
	defer s.observe("name_lookup", time.Now(), 0)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rec := NameRecord{Name: name}
	name, err := NormalizeName(name)
	if err != nil {
		return rec, err
	}
	rec.Name = name
	var hash []byte
	err = s.pool.QueryRow(ctx, "SELECT blob_hash, updated_at FROM names WHERE name = $1", name).Scan(&hash, &rec.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return rec, fmt.Errorf("name %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("name %q: %w", name, err)
	}
	copy(rec.Hash[:], hash)
	rows, err := s.pool.Query(ctx, "SELECT blob_hash, previous, at FROM name_history WHERE name = $1 ORDER BY id DESC LIMIT $2", name, MaxHistory)
	if err != nil {
		return rec, fmt.Errorf("name %q history: %w", name, err)
	}
	var h, p []byte
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&h, &p, &at}, func() error {
		rec.History = append(rec.History, NameEvent{Hash: hashOrNil(h), Previous: hashOrNil(p), At: at})
		return nil
	})
	if err != nil {
		return rec, fmt.Errorf("name %q history: %w", name, err)
	}
	return rec, nil
}

// ResolveName returns the hash a name points at, or ErrNotFound.
func (s *Store) ResolveName(ctx context.Context, name string) (Hash, error) {
	defer s.observe("name_resolve", time.Now(), 0)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var h Hash
	name, err := NormalizeName(name)
	if err != nil {
		return h, err
	}
	var b []byte
	err = s.pool.QueryRow(ctx, "SELECT blob_hash FROM names WHERE name = $1", name).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, fmt.Errorf("name %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return h, fmt.Errorf("name %q: %w", name, err)
	}
	copy(h[:], b)
	return h, nil
}

// lockName serializes changes to one name for the rest of the transaction
// (an advisory lock also covers a name that does not exist yet) and returns
// what it points at now.
func lockName(ctx context.Context, tx pgx.Tx, name string) (*Hash, error) {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name); err != nil {
		return nil, fmt.Errorf("locking name: %w", err)
	}
	var b []byte
	err := tx.QueryRow(ctx, "SELECT blob_hash FROM names WHERE name = $1", name).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading name: %w", err)
	}
	return hashOrNil(b), nil
}

func recordMove(ctx context.Context, tx pgx.Tx, name string, to, from *Hash) error {
	if _, err := tx.Exec(ctx, "INSERT INTO name_history (name, blob_hash, previous, at) VALUES ($1, $2, $3, clock_timestamp())",
		name, hashBytes(to), hashBytes(from)); err != nil {
		return fmt.Errorf("recording history: %w", err)
	}
	return nil
}

func (p Precondition) check(cur *Hash) error {
	switch {
	case p.MustNotExist && cur != nil:
		return fmt.Errorf("%w: name exists (at %s)", ErrConflict, *cur)
	case p.MustExist && cur == nil:
		return fmt.Errorf("%w: name does not exist", ErrConflict)
	case p.IfMatch != nil && cur == nil:
		return fmt.Errorf("%w: name does not exist", ErrConflict)
	case p.IfMatch != nil && *cur != *p.IfMatch:
		return fmt.Errorf("%w: name is at %s", ErrConflict, *cur)
	}
	return nil
}

func hashOrNil(b []byte) *Hash {
	if len(b) != len(Hash{}) {
		return nil
	}
	var h Hash
	copy(h[:], b)
	return &h
}

func hashBytes(h *Hash) []byte {
	if h == nil {
		return nil
	}
	return h[:]
}
