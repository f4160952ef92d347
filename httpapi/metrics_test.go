package httpapi_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/httpapi"
	"github.com/immut/immut/httpapi/apitest"
	"github.com/immut/immut/internal/testblob"
)

// metricValue reads one series of reg: name, and label=value pairs; ok false
// when the series does not exist.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			default:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// TestAppMetrics: the app's gauges and the database side's metrics, fed by
// the store's hook, over the real handler stack.
func TestAppMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	observe, err := httpapi.NewQueryObserver(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := apitest.Start(t, func(c *blobstore.Config) { c.ObserveQuery = observe; c.ChunkSize = chunk },
		func(c *httpapi.Config) { c.Registry = reg; c.MaxUploads = 3; c.UsageInterval = 20 * time.Millisecond })
	t.Cleanup(func() { s.API.Close() })
	c := client{t, s.URL}
	val := func(name string, labels ...string) float64 {
		t.Helper()
		v, ok := metricValue(t, reg, name, labels...)
		if !ok {
			t.Fatalf("no series %s%v", name, labels)
		}
		return v
	}

	ms, _ := blobstore.Migrations()
	if v := val("immut_build_info", "version", "test", "schema", strconv.Itoa(ms[len(ms)-1].Version)); v != 1 {
		t.Errorf("immut_build_info = %v, want 1", v)
	}
	if val("immut_uploads_limit") != 3 || val("immut_uploads_in_flight") != 0 || val("immut_ready") != 1 {
		t.Errorf("uploads %v of %v, ready %v; want 0 of 3, ready 1", val("immut_uploads_in_flight"), val("immut_uploads_limit"), val("immut_ready"))
	}

	// An upload whose body is still coming holds a slot and a request.
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		req, _ := http.NewRequest("POST", s.URL+"/v1/blobs", pr)
		req.Header.Set("Authorization", "Bearer "+apitest.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	data := testblob.Random(t, 3*chunk+100)
	pw.Write(data[:chunk])
	deadline := time.Now().Add(5 * time.Second)
	for val("immut_uploads_in_flight") != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if v := val("immut_http_in_flight_requests"); v != 1 {
		t.Errorf("immut_http_in_flight_requests = %v during one upload, want 1", v)
	}
	if v := val("immut_uploads_in_flight"); v != 1 {
		t.Errorf("immut_uploads_in_flight = %v during one upload, want 1", v)
	}
	pw.Write(data[chunk:])
	pw.Close()
	if code := <-done; code != http.StatusCreated {
		t.Fatalf("upload: %d", code)
	}
	hash := hexHash(data)
	if resp, body := c.do("GET", "/b/"+hash, nil); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	for _, op := range []string{"put_begin", "put_commit", "stat", "read"} {
		if n := val("immut_db_query_duration_seconds", "op", op); n < 1 {
			t.Errorf("immut_db_query_duration_seconds{op=%q} has %v observations, want some", op, n)
		}
	}
	if n := val("immut_db_query_duration_seconds", "op", "name_set"); n != 0 {
		t.Errorf("name_set observed %v times without a name", n)
	}
	if v := val("immut_db_read_bytes_total"); v < float64(len(data)) {
		t.Errorf("immut_db_read_bytes_total = %v, want at least the %d bytes read", v, len(data))
	}
	for time.Now().Before(deadline) {
		if v, ok := metricValue(t, reg, "immut_stored_bytes"); ok && v == float64(len(data)) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if val("immut_stored_blobs") != 1 || val("immut_stored_bytes") != float64(len(data)) {
		t.Errorf("stored %v blobs, %v bytes; want 1, %d", val("immut_stored_blobs"), val("immut_stored_bytes"), len(data))
	}

	// A blob whose stored bytes changed is cut off and counted.
	if _, err := s.Pool.Exec(context.Background(), "UPDATE chunks SET data = set_byte(data, 7, get_byte(data, 7) # 1) WHERE seq = 1"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(s.URL + "/b/" + hash); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if v := val("immut_blob_corrupt_reads_total"); v != 1 {
		t.Errorf("immut_blob_corrupt_reads_total = %v after a corrupt read, want 1", v)
	}

	s.API.Drain()
	if v := val("immut_ready"); v != 0 {
		t.Errorf("immut_ready = %v while draining, want 0", v)
	}
	// The scrape shows them all.
	_, body := c.do("GET", "/metrics", nil)
	for _, name := range []string{"immut_http_in_flight_requests 1", "immut_uploads_in_flight 0", "immut_uploads_limit 3", `immut_db_query_duration_seconds_bucket{op="usage"`, "immut_db_read_bytes_total", "immut_blob_corrupt_reads_total 1", "immut_stored_blobs 1", "immut_build_info{", "immut_ready 0"} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
}
