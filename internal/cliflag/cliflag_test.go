package cliflag

import "testing"

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1048576", 1 << 20, true}, {"64MiB", 64 << 20, true}, {"1GiB", 1 << 30, true},
		{"512k", 512 << 10, true}, {"8 MB", 8 << 20, true}, {"", 0, false}, {"-1", 0, false},
		{"1.5GiB", 0, false}, {"12XB", 0, false}, {"99999999999999999999", 0, false}, {"9000000000TiB", 0, false},
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
