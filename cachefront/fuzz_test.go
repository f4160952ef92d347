package cachefront

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseMap(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want []Route
		bad  bool
	}{
		{"bare ports", "8080=18081,8081=18082", []Route{{"127.0.0.1:8080", "127.0.0.1:18081"}, {"127.0.0.1:8081", "127.0.0.1:18082"}}, false},
		{"full addresses", "0.0.0.0:80=10.0.0.2:18081", []Route{{"0.0.0.0:80", "10.0.0.2:18081"}}, false},
		{"all interfaces", ":8080=127.0.0.1:18081", []Route{{":8080", "127.0.0.1:18081"}}, false},
		{"http prefix and spaces", " 8080 = http://127.0.0.1:18081 ", []Route{{"127.0.0.1:8080", "127.0.0.1:18081"}}, false},
		{"ipv6", "[::1]:8080=[::1]:18081", []Route{{"[::1]:8080", "[::1]:18081"}}, false},
		{"empty", "", nil, true},
		{"no equals", "8080", nil, true},
		{"trailing comma", "8080=18081,", nil, true},
		{"bad port", "80a=18081", nil, true},
		{"port too big", "8080=70000", nil, true},
		{"backend port 0", "8080=0", nil, true},
		{"duplicate listener", "8080=1,8080=2", nil, true},
		{"path in backend", "8080=127.0.0.1:1/x", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMap(tc.spec)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseMap(%q) = %v, want an error", tc.spec, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func FuzzParseMap(f *testing.F) {
	for _, s := range []string{"8080=18081", "8080=127.0.0.1:18081,8081=127.0.0.1:18082", ":0=[::1]:1", "a=b", "=,="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		routes, err := ParseMap(spec)
		if err != nil {
			return
		}
		if len(routes) == 0 {
			t.Fatal("no error and no routes")
		}
		for _, r := range routes {
			// Whatever was accepted must be re-parseable as host:port.
			if _, err := ParseMap(r.Listen + "=" + r.Backend); err != nil && !strings.HasSuffix(r.Listen, ":0") {
				t.Fatalf("accepted %+v, which does not parse again: %v", r, err)
			}
		}
	})
}

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		name string
		v    string
		want cacheControl
	}{
		{"blob", "public, max-age=31536000, immutable", cacheControl{public: true, immutable: true, maxAge: 31536000, sMaxAge: -1}},
		{"s-maxage quoted", `s-maxage="60"`, cacheControl{maxAge: -1, sMaxAge: 60}},
		{"qualified private with comma", `private="Set-Cookie, X-A", max-age=5`, cacheControl{private: true, maxAge: 5, sMaxAge: -1}},
		{"case", "No-Store, MAX-AGE=1", cacheControl{noStore: true, maxAge: 1, sMaxAge: -1}},
		{"bad max-age", "max-age=-1", cacheControl{maxAge: 0, sMaxAge: -1, invalid: true}},
		{"max-age without value", "max-age", cacheControl{maxAge: 0, sMaxAge: -1, invalid: true}},
		{"overflow means very large", "max-age=99999999999999999999", cacheControl{maxAge: 1 << 31, sMaxAge: -1}},
		{"empty", "", cacheControl{maxAge: -1, sMaxAge: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseCacheControl(tc.v); got != tc.want {
				t.Fatalf("parseCacheControl(%q) = %+v, want %+v", tc.v, got, tc.want)
			}
		})
	}
}

func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{"public, max-age=31536000, immutable", `private="a,b"`, "s-maxage=0", `max-age="1`, "no-store,,"} {
		f.Add(s, 200)
	}
	f.Fuzz(func(t *testing.T, v string, status int) {
		cc := parseCacheControl(v)
		h := http.Header{"Cache-Control": {v}}
		ok, p := storable(status, h, time.Now())
		// Without a validator, nothing is stored that is not fresh.
		if ok && (p.lifetime <= 0 || (cc.noStore && !cc.mustUnderstand) || cc.private || cc.invalid) {
			t.Fatalf("storable(%d, %q) = true with lifetime %v and %+v", status, v, p.lifetime, cc)
		}
		if ok && !understood(status) {
			t.Fatalf("status %d storable", status)
		}
	})
}
