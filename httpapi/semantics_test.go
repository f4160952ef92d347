package httpapi_test

import (
	"bytes"
	"testing"

	"github.com/immut/immut/internal/testblob"
)

// TestRangeUnitIsCaseInsensitive: RFC 9110 §14.1, as the front does (both
// use internal/httpsem).
func TestRangeUnitIsCaseInsensitive(t *testing.T) {
	s := start(t)
	c := client{t, s.URL}
	data := testblob.Random(t, 100)
	_, out := c.upload(data)
	h := out["hash"].(string)
	for _, unit := range []string{"bytes", "Bytes", "BYTES"} {
		resp, body := c.do("GET", "/b/"+h, nil, "Range", unit+"=0-1")
		if resp.StatusCode != 206 || !bytes.Equal(body, data[:2]) || resp.Header.Get("Content-Range") != "bytes 0-1/100" {
			t.Fatalf("Range: %s=0-1: %d %q %q", unit, resp.StatusCode, resp.Header.Get("Content-Range"), body)
		}
	}
}
