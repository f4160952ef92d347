package httpapi_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/immut/immut/httpapi"
	"github.com/immut/immut/httpapi/apitest"
	"github.com/immut/immut/internal/testblob"
)

// lockedBuffer collects log output written from the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestAccessLog: one structured line per request, with what an operator
// greps for; none without Config.AccessLog.
func TestAccessLog(t *testing.T) {
	var buf lockedBuffer
	s := apitest.Start(t, nil, func(c *httpapi.Config) {
		c.AccessLog = slog.New(slog.NewJSONHandler(&buf, nil))
		c.Worker = 3
	})
	c := client{t, s.URL}
	data := testblob.Random(t, 5000)
	if code, _ := c.upload(data); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	c.do("GET", "/b/"+hexHash(data), nil, "X-Forwarded-For", "203.0.113.7")
	c.do("GET", "/no/such/thing", nil)

	lines := buf.lines(t)
	if len(lines) != 3 {
		t.Fatalf("%d access log lines for 3 requests:\n%s", len(lines), buf.b.String())
	}
	for i, want := range []struct {
		method, path, route string
		status, bytes       float64
	}{
		{"POST", "/v1/blobs", "upload", 201, -1},
		{"GET", "/b/" + hexHash(data), "blob", 200, float64(len(data))},
		{"GET", "/no/such/thing", "unrouted", 404, -1},
	} {
		l := lines[i]
		if l["msg"] != "access" || l["level"] != "INFO" || l["method"] != want.method || l["path"] != want.path || l["route"] != want.route || l["status"] != want.status {
			t.Errorf("line %d: %v, want %+v", i, l, want)
		}
		if want.bytes >= 0 && l["bytes"] != want.bytes {
			t.Errorf("line %d: bytes %v, want %v", i, l["bytes"], want.bytes)
		}
		if d, _ := l["duration"].(float64); d <= 0 {
			t.Errorf("line %d: duration %v", i, l["duration"])
		}
		if r, _ := l["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
			t.Errorf("line %d: remote %v", i, l["remote"])
		}
		if l["worker"] != 3.0 {
			t.Errorf("line %d: worker %v, want 3", i, l["worker"])
		}
	}
	if lines[0]["bytes_in"] != float64(len(data)) || lines[1]["forwarded_for"] != "203.0.113.7" {
		t.Errorf("bytes_in %v (want %d), forwarded_for %v", lines[0]["bytes_in"], len(data), lines[1]["forwarded_for"])
	}
	if _, ok := lines[0]["forwarded_for"]; ok {
		t.Errorf("forwarded_for without the header: %v", lines[0])
	}

	// Off by default: a server without AccessLog logs no request.
	var quiet lockedBuffer
	s2 := apitest.Start(t, nil, func(c *httpapi.Config) { c.Logger = slog.New(slog.NewJSONHandler(&quiet, nil)) })
	client{t, s2.URL}.do("GET", "/healthz", nil)
	if strings.Contains(quiet.b.String(), `"access"`) {
		t.Errorf("access lines without AccessLog:\n%s", quiet.b.String())
	}
}
