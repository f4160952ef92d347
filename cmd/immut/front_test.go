package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/pgcluster/pgtest"
)

// startFrontCmd runs `immut front` in-process and returns its listen
// addresses, in --map order, and a stop function that checks a clean exit.
func startFrontCmd(t *testing.T, args ...string) ([]string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() { done <- runFront(ctx, args, &out, &errb) }()
	var addrs []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		addrs = addrs[:0]
		for _, l := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(l); len(f) == 4 && f[0] == "front" {
				addrs = append(addrs, f[1])
			}
		}
		if len(addrs) > 0 {
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("immut front exited: %v\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("immut front did not start: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addrs, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("immut front: %v\n%s", err, errb.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("immut front did not stop within 15s")
		}
	}
}

func TestFrontFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"admin without token", []string{"--map", "127.0.0.1:0=1", "--admin", "127.0.0.1:0"}, "--token"},
		{"bad map", []string{"--map", "x=y"}, "--map"},
		{"unknown flag", []string{"--nope"}, "usage"},
		{"bad size", []string{"--cache-size", "lots"}, "usage"},
		{"stray argument", []string{"extra"}, "usage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("IMMUT_TOKEN", "")
			err := runFront(context.Background(), tc.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestFrontInFrontOfServe runs immut front in front of a real app process
// (PostgreSQL underneath): an upload passes through, the blob comes back
// with the right bytes, first from the origin and then from the cache.
func TestFrontInFrontOfServe(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	if code, out, errs := runCLI("migrate", "--dsn", dsn); code != 0 {
		t.Fatalf("migrate: %d %s %s", code, out, errs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	appCtx, stopApp := context.WithCancel(context.Background())
	appDone := make(chan error, 1)
	go func() {
		appDone <- node.RunApp(appCtx, node.AppConfig{AppSettings: node.AppSettings{DSN: dsn, Token: "tok"}, Listener: ln, Logger: slog.New(slog.DiscardHandler)})
	}()
	defer func() {
		stopApp()
		if err := <-appDone; err != nil {
			t.Errorf("app: %v", err)
		}
	}()
	addrs, stopFront := startFrontCmd(t, "--map", "127.0.0.1:0="+ln.Addr().String(), "--cache-size", "64MiB", "--health-interval", "100ms",
		"--memlimit=false") // the memory limit would apply to the whole test binary
	defer stopFront()
	front := "http://" + addrs[0]
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	body := bytes.Repeat([]byte("immutable front "), 4096)
	req, _ := http.NewRequest("POST", front+"/v1/blobs", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var put struct{ Hash, URL string }
	json.NewDecoder(resp.Body).Decode(&put)
	resp.Body.Close()
	sum := blake3.Sum256(body)
	if resp.StatusCode/100 != 2 || put.Hash != hex.EncodeToString(sum[:]) {
		t.Fatalf("upload through the front: %d %+v", resp.StatusCode, put)
	}
	if resp.Header.Get("X-Served-By") != "worker 0" {
		t.Fatalf("X-Served-By = %q", resp.Header.Get("X-Served-By"))
	}
	tests := []struct {
		name   string
		header map[string]string
		status int
		cache  string
		body   []byte
	}{
		{"miss", nil, 200, "MISS", body},
		{"hit", nil, 200, "HIT", body},
		{"range from cache", map[string]string{"Range": "bytes=0-15"}, 206, "HIT", body[:16]},
		{"304 from cache", map[string]string{"If-None-Match": `"` + put.Hash + `"`}, 304, "HIT", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var got []byte
			// Stores are asynchronous: a hit may take a moment to appear.
			for try := 0; ; try++ {
				req, _ := http.NewRequest("GET", front+"/b/"+put.Hash, nil)
				for k, v := range tc.header {
					req.Header.Set(k, v)
				}
				var err error
				if resp, err = client.Do(req); err != nil {
					t.Fatal(err)
				}
				got, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.Header.Get("X-Cache") == tc.cache || try == 20 {
					break
				}
				time.Sleep(25 * time.Millisecond)
			}
			if resp.StatusCode != tc.status || resp.Header.Get("X-Cache") != tc.cache || !bytes.Equal(got, tc.body) {
				t.Fatalf("%d X-Cache %q, %d bytes; want %d %q, %d bytes", resp.StatusCode, resp.Header.Get("X-Cache"), len(got), tc.status, tc.cache, len(tc.body))
			}
		})
	}
	// The unknown and the malformed are the app's answers, passed through.
	for path, want := range map[string]int{"/b/" + strings.Repeat("0", 64): 404, "/b/nothex": 400, "/healthz": 200} {
		resp, err := client.Get(front + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
