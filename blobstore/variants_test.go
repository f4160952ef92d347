package blobstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func putString(t *testing.T, s *Store, data string) Hash {
	t.Helper()
	b, _, err := s.Put(context.Background(), strings.NewReader(data), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b.Hash
}

func TestVariantRecords(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	src, v1, v2 := putString(t, s, "source"), putString(t, s, "variant one"), putString(t, s, "variant two")
	if _, err := s.LookupVariant(ctx, src, "w:200"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup before record: %v", err)
	}
	tests := []struct {
		name    string
		src     Hash
		opts    string
		variant Hash
		want    Hash
		wantErr error
	}{
		{name: "first record", src: src, opts: "w:200", variant: v1, want: v1},
		{name: "second record keeps the first", src: src, opts: "w:200", variant: v2, want: v1},
		{name: "other options", src: src, opts: "w:480", variant: v2, want: v2},
		{name: "unknown source", src: Sum([]byte("nothing")), opts: "w:200", variant: v1, wantErr: ErrNotFound},
		{name: "unknown variant", src: src, opts: "w:999", variant: Sum([]byte("nothing")), wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.RecordVariant(ctx, tt.src, tt.opts, tt.variant)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("RecordVariant = %s, %v; want %s", got, err, tt.want)
			}
			b, err := s.LookupVariant(ctx, tt.src, tt.opts)
			if err != nil || b.Hash != tt.want {
				t.Fatalf("LookupVariant = %s, %v; want %s", b.Hash, err, tt.want)
			}
		})
	}
}

func TestPlaceholders(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	h := putString(t, s, "an image, say")
	if _, err := s.Placeholder(ctx, h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before set: %v", err)
	}
	if err := s.SetPlaceholder(ctx, h, "LEHV6nWB2yk8pyo0adR*.7kCMdnj"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPlaceholder(ctx, h, "LKO2?U%2Tw=w]~RBVZRi};RPxuwH"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Placeholder(ctx, h); err != nil || p != "LKO2?U%2Tw=w]~RBVZRi};RPxuwH" {
		t.Fatalf("Placeholder = %q, %v", p, err)
	}
	if err := s.SetPlaceholder(ctx, Sum([]byte("absent")), "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("set on an unknown blob: %v", err)
	}
}

// TestGCVariants: a source's variants live as long as the source; when it
// is collected its variant blobs go in the same run, unless something else
// keeps them (a name, another live source).
func TestGCVariants(t *testing.T) {
	s := newStore(t, Config{})
	ctx := context.Background()
	record := func(src Hash, opts string, v Hash) {
		t.Helper()
		if _, err := s.RecordVariant(ctx, src, opts, v); err != nil {
			t.Fatal(err)
		}
	}
	// Put the variants first, so the collection walks (in last_put_at
	// order) past them before it reaches their source.
	vOrphan, vShared, vNamed, vKept := putString(t, s, "v-orphan"), putString(t, s, "v-shared"), putString(t, s, "v-named"), putString(t, s, "v-kept")
	gone, kept := putString(t, s, "source that goes"), putString(t, s, "source that stays")
	vOfV := putString(t, s, "variant of a variant")
	if err := s.SetPlaceholder(ctx, gone, "LEHV6nWB2yk8pyo0adR*.7kCMdnj"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetName(ctx, "stays", kept, Precondition{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetName(ctx, "a-variant-with-a-name", vNamed, Precondition{}); err != nil {
		t.Fatal(err)
	}
	record(gone, "w:1", vOrphan)
	record(gone, "w:2", vShared)
	record(kept, "w:2", vShared)
	record(gone, "w:3", vNamed)
	record(kept, "w:4", vKept)
	record(vOrphan, "w:5", vOfV)

	if res, err := s.GC(ctx, time.Hour, GCOptions{}); err != nil || res.Blobs != 0 {
		t.Fatalf("GC within grace = %+v, %v", res, err)
	}
	time.Sleep(10 * time.Millisecond)
	res, err := s.GC(ctx, 0, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		h     Hash
		alive bool
	}{
		{"unnamed source", gone, false},
		{"its only variant", vOrphan, false},
		{"a variant of that variant", vOfV, false},
		{"a variant another source shares", vShared, true},
		{"a variant with a name", vNamed, true},
		{"the named source", kept, true},
		{"the named source's variant", vKept, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Stat(ctx, tt.h)
			if tt.alive && err != nil || !tt.alive && !errors.Is(err, ErrNotFound) {
				t.Fatalf("alive=%v wanted; Stat: %v", tt.alive, err)
			}
		})
	}
	if res.Blobs != 3 {
		t.Fatalf("GC removed %d blobs, want 3", res.Blobs)
	}
	var rows, placeholders int
	s.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM variants), (SELECT count(*) FROM placeholders)").Scan(&rows, &placeholders)
	if rows != 2 || placeholders != 0 {
		t.Fatalf("%d variant rows and %d placeholders left, want 2 and 0", rows, placeholders)
	}
	if _, err := s.LookupVariant(ctx, kept, "w:2"); err != nil {
		t.Fatalf("the surviving source lost its variant: %v", err)
	}
}
