package httpapi

import (
	"errors"
	"testing"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		name   string
		header string
		size   int64
		want   ByteRange
		err    error
	}{
		{"first", "bytes=0-9", 100, ByteRange{0, 10}, nil},
		{"open", "bytes=90-", 100, ByteRange{90, 10}, nil},
		{"suffix", "bytes=-10", 100, ByteRange{90, 10}, nil},
		{"suffix longer than size", "bytes=-500", 100, ByteRange{0, 100}, nil},
		{"end clamped", "bytes=50-500", 100, ByteRange{50, 50}, nil},
		{"start at size", "bytes=100-", 100, ByteRange{}, errUnsatisfiable},
		{"zero suffix", "bytes=-0", 100, ByteRange{}, errUnsatisfiable},
		{"empty resource", "bytes=0-", 0, ByteRange{}, errUnsatisfiable},
		{"reversed", "bytes=9-0", 100, ByteRange{}, errBadRange},
		{"two ranges", "bytes=0-1,3-4", 100, ByteRange{}, errBadRange},
		{"other unit", "items=0-1", 100, ByteRange{}, errBadRange},
		{"negative", "bytes=--5", 100, ByteRange{}, errBadRange},
		{"plus sign", "bytes=+1-2", 100, ByteRange{}, errBadRange},
		{"huge", "bytes=0-99999999999999999999999", 100, ByteRange{}, errBadRange},
		{"no dash", "bytes=5", 100, ByteRange{}, errBadRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRange(tc.header, tc.size)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("ParseRange(%q, %d) = %+v, %v; want %+v, %v", tc.header, tc.size, got, err, tc.want, tc.err)
			}
		})
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-9", "bytes=-5", "bytes=5-", "bytes=0-1,2-3", "bytes=x"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		r, err := ParseRange(header, size)
		if err != nil {
			return
		}
		if r.Start < 0 || r.Length <= 0 || r.Start+r.Length > size {
			t.Fatalf("ParseRange(%q, %d) = %+v outside the resource", header, size, r)
		}
	})
}
