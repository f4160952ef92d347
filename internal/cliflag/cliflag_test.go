package cliflag

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1048576", 1 << 20, true}, {"64MiB", 64 << 20, true}, {"1GiB", 1 << 30, true},
		{"512k", 512 << 10, true}, {"8 MB", 8 << 20, true}, {"", 0, false}, {"-1", 0, false},
		{"1.5GiB", 3 << 29, true}, {"0.5k", 512, true}, {"12XB", 0, false}, {"99999999999999999999", 0, false}, {"9000000000TiB", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseByteSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func FuzzParseByteSize(f *testing.F) {
	f.Add("64MiB")
	f.Add("1g")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseByteSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseByteSize(%q) = %d", s, n)
		}
	})
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90s", 90 * time.Second, true}, {"36h", 36 * time.Hour, true}, {"7d", 7 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true}, {"0.5d", 12 * time.Hour, true}, {"", 0, false}, {"d", 0, false},
		{"7days", 0, false}, {"1e9d", 0, false}, {"-1d", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v", tc.in, got, err)
		}
	}
	if s := FormatDuration(7 * 24 * time.Hour); s != "7d" {
		t.Errorf("FormatDuration(7 days) = %q", s)
	}
}

func TestHelpOnStdoutAndEnvNames(t *testing.T) {
	var out, errb strings.Builder
	fs := NewFlagSet("x", &out, &errb)
	fs.String("max-thing", "", "the thing")
	var size int64
	fs.Size(&size, "cache-size", 1<<30, "budget")
	if err := fs.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(-h) = %v", err)
	}
	if !strings.Contains(out.String(), "IMMUT_MAX_THING") || !strings.Contains(out.String(), "default 1GiB") || errb.Len() != 0 {
		t.Fatalf("help on stdout %q, stderr %q", out.String(), errb.String())
	}
	if err := fs.Parse([]string{"--nope"}); !errors.Is(err, ErrUsage) || !strings.Contains(errb.String(), "not defined") {
		t.Fatalf("bad flag: %v, stderr %q", err, errb.String())
	}
}
