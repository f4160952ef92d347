package node_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/pgcluster/pgtest"
	"github.com/immut/immut/internal/testblob"
)

// TestVariantsThroughUp: a preset given to immut up (--variant) reaches the
// workers, and a rendered variant is cached by the front like a blob.
func TestVariantsThroughUp(t *testing.T) {
	data := filepath.Join(pgtest.TempDir(t), "data")
	up := startNode(t, data, func(c *node.Config) {
		c.App.Variants = node.VariantSettings{Presets: []string{"tiny=w:16,h:16,fit:cover,fmt:png"}}
	})
	defer up.shutdown(t)
	req, _ := http.NewRequest(http.MethodPut, "http://"+up.Fronts[0]+"/v1/images/photo", bytes.NewReader(testblob.PNG(t, 64, 48)))
	req.Header.Set("Authorization", "Bearer "+up.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var img struct{ Hash string }
	json.NewDecoder(resp.Body).Decode(&img)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 || img.Hash == "" {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	var cache []string
	for range 3 {
		resp, err := http.Get("http://" + up.Fronts[0] + "/t/tiny/" + img.Hash)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotImplemented {
			t.Skip("this build has no libvips (cgo): variants answer 501")
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Fatalf("GET /t/tiny: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
		}
		cache = append(cache, resp.Header.Get("X-Cache"))
	}
	if cache[len(cache)-1] != "HIT" {
		t.Errorf("the variant is not served from the front's cache: %v", cache)
	}
}
