package cachefront

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// scrape reads the admin listener's /metrics as name{labels} → value.
func scrape(t *testing.T, f *Front) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + f.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetrics checks the series issue 17 asks of the front: requests by
// listener, bounded method and status class; origin latency and requests
// per backend; bytes out; open connections; cached objects and bytes; the
// Go and process collectors.
func TestMetrics(t *testing.T) {
	o := newOrigin(t, "A")
	body := pattern(5000, 2)
	hash := o.addBlob(body)
	f, urls := startFront(t, Config{Admin: "127.0.0.1:0", Token: "secret"}, o)
	listener := "127.0.0.1:0"  // the label is the configured Listen
	get(t, urls[0]+"/b/"+hash) // miss
	settle(f)
	get(t, urls[0]+"/b/"+hash) // hit (fast path)
	do(t, http.MethodHead, urls[0]+"/b/"+hash, nil)
	get(t, urls[0]+"/case/none") // 404 from the origin
	do(t, "BREW", urls[0]+"/pot", nil)
	do(t, "PURGE", urls[0]+"/pot", nil)

	m := scrape(t, f)
	req := func(method, class string) string {
		return `immut_front_requests_total{class="` + class + `",listener="` + listener + `",method="` + method + `"}`
	}
	backend := `backend="` + o.addr + `"`
	for _, tc := range []struct {
		name   string
		series string
		min    float64
		max    float64
	}{
		{"GET 2xx", req("GET", "2xx"), 2, 2},
		{"HEAD 2xx", req("HEAD", "2xx"), 1, 1},
		{"GET 4xx", req("GET", "4xx"), 1, 1},
		{"unknown method folds into other", req("other", "4xx"), 1, 1},
		{"PURGE on a front port is passed through", req("PURGE", "4xx"), 1, 1},
		{"origin latency per backend", `immut_front_origin_duration_seconds_count{` + backend + `}`, 4, 4},
		{"origin requests per backend, 2xx", `immut_front_origin_requests_total{` + backend + `,class="2xx"}`, 1, 1},
		{"origin requests per backend, 4xx", `immut_front_origin_requests_total{` + backend + `,class="4xx"}`, 3, 3},
		{"bytes out", `immut_front_response_bytes_total`, 2 * 5000, 2*5000 + 1000},
		{"open connections", `immut_front_open_connections`, 1, 10},
		{"cached objects", `immut_front_cache_objects`, 1, 3},
		{"cached bytes", `immut_front_cache_cost_bytes`, 5000, 10000},
		{"process RSS", `process_resident_memory_bytes`, 1 << 20, 1 << 40},
		{"goroutines", `go_goroutines`, 1, 1e6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := m[tc.series]
			if !ok || v < tc.min || v > tc.max {
				t.Fatalf("%s = %v (present %v), want %v..%v", tc.series, v, ok, tc.min, tc.max)
			}
		})
	}
	for k := range m {
		if strings.HasPrefix(k, "immut_front_requests_total{") && strings.Contains(k, `method="BREW"`) {
			t.Fatalf("an unknown method made its own series: %s", k)
		}
	}
}
