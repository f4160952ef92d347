package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/text/unicode/norm"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"logo.png", true},
		{"products_42-large", true},
		{"café", true},
		{"", false},
		{strings.Repeat("a", 200), true},
		{strings.Repeat("a", 201), false},
		{"a/b", false},
		{"a\\b", false},
		{"..", false},
		{"a..b", false},
		{".hidden", false},
		{"nul\x00byte", false},
		{"tab\tname", false},
		{"space name", false},
		{"bad\xffutf8", false},
		{"bidi\u202e", false},
		{"cafe\u0301", true}, // NFD, stored as its NFC form
		{"l\u00b7l", true},   // MIDDLE DOT is not a full stop
		{"a\uff0fb", false},  // FULLWIDTH SOLIDUS
		{"a\u2215b", false},  // DIVISION SLASH
		{"a\u2044b", false},  // FRACTION SLASH
		{"a\u29f8b", false},  // BIG SOLIDUS
		{"a\uff3cb", false},  // FULLWIDTH REVERSE SOLIDUS
		{"a\ufe68b", false},  // SMALL REVERSE SOLIDUS
		{"a\u0338b", false},  // COMBINING LONG SOLIDUS OVERLAY
		{"a\uff0eb", false},  // FULLWIDTH FULL STOP
		{"a\u2024b", false},  // ONE DOT LEADER
		{"a\u2025", false},   // TWO DOT LEADER
		{"a\u2026", false},   // HORIZONTAL ELLIPSIS
		{"a\ufe52b", false},  // SMALL FULL STOP
		{"a\u3002b", false},  // IDEOGRAPHIC FULL STOP
		{"\uff0ehidden", false},
		{strings.Repeat("e\u0301", 66), true},  // 198 bytes as NFD, 132 as NFC
		{strings.Repeat("\u00e9", 101), false}, // 202 bytes in NFC
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateName(tc.name)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadName) {
				t.Fatalf("error %v is not ErrBadName", err)
			}
		})
	}
}

func TestNormalizeName(t *testing.T) {
	nfd, nfc := "cafe\u0301", "caf\u00e9"
	for _, in := range []string{nfd, nfc} {
		if got, err := NormalizeName(in); err != nil || got != nfc {
			t.Fatalf("NormalizeName(%q) = %q, %v; want %q", in, got, err, nfc)
		}
	}
	// Hangul and other compositions: NFC, not NFKC (a ligature stays).
	if got, _ := NormalizeName("\ufb01le"); got != "\ufb01le" {
		t.Fatalf("NormalizeName changed a compatibility character: %q", got)
	}
}

// TestNameSpellingsAreOneName: NFC and NFD spellings of a name reach the
// same name, whichever was used to create it (issue 12, item 15).
func TestNameSpellingsAreOneName(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	b1, _, err := s.Put(ctx, strings.NewReader("v1"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b2, _, err := s.Put(ctx, strings.NewReader("v2"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nfd, nfc := "cafe\u0301", "caf\u00e9"
	if _, err := s.SetName(ctx, nfd, b1.Hash, Precondition{MustNotExist: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetName(ctx, nfc, b2.Hash, Precondition{MustNotExist: true}); !errors.Is(err, ErrConflict) {
		t.Fatalf("creating the NFC spelling of an existing NFD name: %v, want ErrConflict", err)
	}
	if prev, err := s.SetName(ctx, nfc, b2.Hash, Precondition{IfMatch: &b1.Hash}); err != nil || prev == nil || *prev != b1.Hash {
		t.Fatalf("CAS through the other spelling: %v, %v", prev, err)
	}
	for _, spelling := range []string{nfd, nfc} {
		rec, err := s.LookupName(ctx, spelling)
		if err != nil || rec.Name != nfc || rec.Hash != b2.Hash || len(rec.History) != 2 {
			t.Fatalf("LookupName(%q) = %+v, %v", spelling, rec, err)
		}
		if h, err := s.ResolveName(ctx, spelling); err != nil || h != b2.Hash {
			t.Fatalf("ResolveName(%q) = %v, %v", spelling, h, err)
		}
	}
	if _, err := s.DeleteName(ctx, nfd, Precondition{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveName(ctx, nfc); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after deleting the NFD spelling: %v", err)
	}
}

func TestNamesCASAndHistory(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	put := func(data string) Hash {
		b, _, err := s.Put(ctx, strings.NewReader(data), PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return b.Hash
	}
	v1, v2, v3 := put("one"), put("two"), put("three")

	if prev, err := s.SetName(ctx, "logo", v1, Precondition{MustNotExist: true}); err != nil || prev != nil {
		t.Fatalf("create: %v, %v", prev, err)
	}
	if _, err := s.SetName(ctx, "logo", v2, Precondition{MustNotExist: true}); !errors.Is(err, ErrConflict) {
		t.Fatalf("create over existing: %v", err)
	}
	if _, err := s.SetName(ctx, "logo", v2, Precondition{IfMatch: &v3}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if prev, err := s.SetName(ctx, "logo", v2, Precondition{IfMatch: &v1}); err != nil || *prev != v1 {
		t.Fatalf("CAS v1→v2: %v, %v", prev, err)
	}
	if _, err := s.SetName(ctx, "logo", Sum([]byte("not stored")), Precondition{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("name to unknown blob: %v", err)
	}
	if _, err := s.SetName(ctx, "other", v1, Precondition{MustExist: true}); !errors.Is(err, ErrConflict) {
		t.Fatalf("If-Match * on a missing name: %v", err)
	}
	if _, err := s.SetName(ctx, "logo", v3, Precondition{}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.LookupName(ctx, "logo")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Hash != v3 || len(rec.History) != 3 {
		t.Fatalf("record = %+v", rec)
	}
	// Newest first: v2→v3, v1→v2, create v1.
	h := rec.History
	if *h[0].Hash != v3 || *h[0].Previous != v2 || *h[1].Hash != v2 || *h[1].Previous != v1 || *h[2].Hash != v1 || h[2].Previous != nil {
		t.Fatalf("history = %+v", h)
	}
	if !h[0].At.After(h[1].At) || !h[1].At.After(h[2].At) {
		t.Errorf("history times not increasing: %v", h)
	}
	if _, err := s.DeleteName(ctx, "logo", Precondition{IfMatch: &v1}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale delete: %v", err)
	}
	if prev, err := s.DeleteName(ctx, "logo", Precondition{IfMatch: &v3}); err != nil || prev != v3 {
		t.Fatalf("delete: %v, %v", prev, err)
	}
	if _, err := s.LookupName(ctx, "logo"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := s.DeleteName(ctx, "logo", Precondition{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	// The blob outlives its name.
	if _, err := s.Stat(ctx, v3); err != nil {
		t.Fatal(err)
	}
	// Recreating keeps the whole history, delete included.
	s.SetName(ctx, "logo", v1, Precondition{})
	rec, _ = s.LookupName(ctx, "logo")
	if len(rec.History) != 5 || rec.History[1].Hash != nil {
		t.Fatalf("history after delete and recreate: %+v", rec.History)
	}
}

func TestConcurrentCASLosesNoEdit(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	base, _, _ := s.Put(ctx, strings.NewReader("base"), PutOptions{})
	s.SetName(ctx, "n", base.Hash, Precondition{})
	var wg sync.WaitGroup
	wins := make(chan Hash, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _, err := s.Put(ctx, bytes.NewReader([]byte{byte(i)}), PutOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := s.SetName(ctx, "n", b.Hash, Precondition{IfMatch: &base.Hash}); err == nil {
				wins <- b.Hash
			} else if !errors.Is(err, ErrConflict) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d concurrent compare-and-swaps from the same base won, want 1", n)
	}
}

func TestGC(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	put := func(data string) Hash {
		b, _, err := s.Put(ctx, strings.NewReader(data), PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return b.Hash
	}
	named, orphan, moved := put("named"), put("orphan"), put("moved-away")
	s.SetName(ctx, "keep", named, Precondition{})
	s.SetName(ctx, "edited", moved, Precondition{})
	s.SetName(ctx, "edited", named, Precondition{})

	// Within the grace period nothing goes.
	if res, err := s.GC(ctx, time.Hour, GCOptions{}); err != nil || res.Blobs != 0 {
		t.Fatalf("GC(1h) = %+v, %v", res, err)
	}
	time.Sleep(10 * time.Millisecond)
	res, err := s.GC(ctx, 0, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Blobs != 2 || res.Bytes != int64(len("orphan")+len("moved-away")) {
		t.Fatalf("GC(0) = %+v", res)
	}
	for _, h := range []Hash{orphan, moved} {
		if _, err := s.Stat(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s survived GC: %v", h, err)
		}
	}
	if _, err := s.Stat(ctx, named); err != nil {
		t.Fatalf("named blob collected: %v", err)
	}
	if _, chunks := rowCounts(t, s); chunks != 1 {
		t.Fatalf("%d chunks left, want 1", chunks)
	}
	// A re-upload of collected bytes stores them again.
	if _, created, err := s.Put(ctx, strings.NewReader("orphan"), PutOptions{}); err != nil || !created {
		t.Fatalf("re-upload after GC: %v %v", created, err)
	}
}

func TestMigrations(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	st, err := Status(ctx, s.pool)
	if err != nil || !st.Current() || st.Applied < 1 {
		t.Fatalf("Status after Migrate = %+v, %v", st, err)
	}
	if done, err := Migrate(ctx, s.pool); err != nil || len(done) != 0 {
		t.Fatalf("second Migrate applied %d: %v", len(done), err)
	}
	if err := CheckSchema(ctx, s.pool); err != nil {
		t.Fatal(err)
	}
	// A database migrated by a newer binary is refused.
	if _, err := s.pool.Exec(ctx, "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')"); err != nil {
		t.Fatal(err)
	}
	if err := CheckSchema(ctx, s.pool); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("CheckSchema with a newer schema: %v", err)
	}
	s.pool.Exec(ctx, "DELETE FROM schema_migrations WHERE version = 9999")
	// An edited migration is refused.
	s.pool.Exec(ctx, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
	if err := CheckSchema(ctx, s.pool); err == nil || !strings.Contains(err.Error(), "edited") {
		t.Fatalf("CheckSchema with an edited migration: %v", err)
	}
}

func TestPendingAndConcurrentMigrations(t *testing.T) {
	ctx := context.Background()
	pool := newStore(t, Config{}).pool
	pool.Exec(ctx, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
	if err := CheckSchema(ctx, pool); !errors.Is(err, ErrSchemaPending) {
		t.Fatalf("CheckSchema on an empty database: %v", err)
	}
	var wg sync.WaitGroup
	applied := make([]int, 4)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done, err := Migrate(ctx, pool)
			if err != nil {
				t.Error(err)
			}
			applied[i] = len(done)
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range applied {
		total += n
	}
	ms, _ := Migrations()
	if total != len(ms) {
		t.Fatalf("concurrent migrators applied %d migrations in all, want %d", total, len(ms))
	}
}

func TestLoadMigrationsRejectsBadNames(t *testing.T) {
	tests := []struct {
		name string
		fs   fstest.MapFS
	}{
		{"no version", fstest.MapFS{"m/init.sql": {Data: []byte("x")}}},
		{"duplicate version", fstest.MapFS{"m/0001_a.sql": {Data: []byte("x")}, "m/0001_b.sql": {Data: []byte("y")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := loadMigrations(tc.fs, "m"); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzParseHash(f *testing.F) {
	f.Add(Sum([]byte("x")).String())
	f.Add("")
	f.Add(strings.Repeat("A", 64))
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			if !errors.Is(err, ErrBadHash) {
				t.Fatalf("error %v is not ErrBadHash", err)
			}
			return
		}
		if h.String() != s {
			t.Fatalf("round trip %q → %q", s, h.String())
		}
	})
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"logo.png", "a/b", "..", "\x00", "é", "cafe\u0301", "a\uff0fb", "a\u2024b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateName(s) != nil {
			return
		}
		n, err := NormalizeName(s)
		if err != nil || n == "" || len(n) > MaxNameLen || strings.ContainsAny(n, "/\\\x00") || strings.Contains(n, "..") {
			t.Fatalf("accepted %q as %q (%v)", s, n, err)
		}
		// The normal form is a fixed point, and no compatibility
		// normalization of it brings a separator back.
		if again, err := NormalizeName(n); err != nil || again != n {
			t.Fatalf("NormalizeName(%q) = %q, %v; not a fixed point", n, again, err)
		}
		if k := norm.NFKC.String(n); strings.ContainsAny(k, "/\\") || strings.Count(k, ".") != strings.Count(n, ".") {
			t.Fatalf("accepted %q, whose NFKC form %q has other separators", n, k)
		}
	})
}

func TestMigrateTo(t *testing.T) {
	ctx := context.Background()
	pool := newStore(t, Config{}).pool
	pool.Exec(ctx, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
	done, err := MigrateTo(ctx, pool, 1)
	if err != nil || len(done) != 1 || done[0].Version != 1 {
		t.Fatalf("MigrateTo(1) = %v, %v", done, err)
	}
	st, err := Status(ctx, pool)
	ms, _ := Migrations()
	if err != nil || st.Applied != 1 || len(st.Pending) != len(ms)-1 {
		t.Fatalf("after MigrateTo(1): %+v, %v", st, err)
	}
	if done, err := Migrate(ctx, pool); err != nil || len(done) != len(ms)-1 {
		t.Fatalf("Migrate after MigrateTo(1) = %v, %v", done, err)
	}
}

// TestMigrationNormalizesNames: names stored in another form than NFC by an
// older binary are rewritten to NFC by migration 3, history included; of two
// spellings of one name, the one moved last stays.
func TestMigrationNormalizesNames(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, Config{})
	s.pool.Exec(ctx, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
	if _, err := MigrateTo(ctx, s.pool, 2); err != nil {
		t.Fatal(err)
	}
	a, _, err := s.Put(ctx, strings.NewReader("older"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := s.Put(ctx, strings.NewReader("newer"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nfd, nfc := "cafe\u0301", "caf\u00e9"
	only := "na\u0308ive" // NFD only: becomes "naïve"
	for _, r := range []struct {
		name string
		hash Hash
		at   string
	}{{nfd, a.Hash, "2020-01-01"}, {nfc, b.Hash, "2021-01-01"}, {only, a.Hash, "2020-01-01"}} {
		if _, err := s.pool.Exec(ctx, "INSERT INTO names (name, blob_hash, updated_at) VALUES ($1, $2, $3)", r.name, r.hash[:], r.at); err != nil {
			t.Fatal(err)
		}
		if _, err := s.pool.Exec(ctx, "INSERT INTO name_history (name, blob_hash, at) VALUES ($1, $2, $3)", r.name, r.hash[:], r.at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Migrate(ctx, s.pool); err != nil {
		t.Fatal(err)
	}
	if h, err := s.ResolveName(ctx, nfd); err != nil || h != b.Hash {
		t.Errorf("café after the migration: %v %v (want the newer spelling's %s)", h, err, b.Hash)
	}
	if h, err := s.ResolveName(ctx, only); err != nil || h != a.Hash {
		t.Errorf("naïve (stored in NFD) after the migration: %v %v", h, err)
	}
	var rows, other int
	s.pool.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE name IS NOT NFC NORMALIZED) FROM name_history").Scan(&rows, &other)
	if rows != 3 || other != 0 {
		t.Errorf("history: %d rows, %d not NFC", rows, other)
	}
}

// TestGCDryRun: a dry run reports what a collection would remove, removes
// nothing, and reports progress.
func TestGCDryRun(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, Config{})
	for i := range 3 {
		if _, _, err := s.Put(ctx, strings.NewReader(fmt.Sprint("unnamed ", i)), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var calls int
	var last [2]int64
	res, err := s.GC(ctx, 0, GCOptions{DryRun: true, Progress: func(done, total int64) { calls++; last = [2]int64{done, total} }})
	if err != nil || res.Blobs != 3 {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	if calls < 2 || last != [2]int64{3, 3} {
		t.Errorf("progress: %d calls, last %v", calls, last)
	}
	if n, _ := s.Count(ctx); n != 3 {
		t.Fatalf("a dry run removed blobs: %d left", n)
	}
	if res, err := s.GC(ctx, 0, GCOptions{}); err != nil || res.Blobs != 3 {
		t.Fatalf("the real run: %+v, %v", res, err)
	}
}
