// Package testorigin is a small, honest, in-memory stand-in for the part of
// the immut HTTP API that the load generator uses, for tests of loadtest and
// of the immut loadtest command. It is not a blob store: it keeps everything
// in memory and exists so that load-test tests have a real listener to load
// whose behaviour they control (stalls, corrupted bodies) and whose request
// counts they can hold the report against.
package testorigin

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// Origin is a small, honest, in-memory implementation of the part of the
// immut API the load generator uses: a content-addressed map keyed by
// BLAKE3-256, names, bearer-token writes and an X-Cache header that says MISS
// on the first read of a blob and HIT after. It counts what it saw so tests
// can hold the report's counts against it. Hooks make it stall or corrupt.
type Origin struct {
	token string

	mu        sync.Mutex // guards what follows
	blobs     map[string][]byte
	names     map[string]string
	seen      map[string]bool // blobs read at least once (the simulated cache)
	counts    map[string]int  // "GET /b", "HEAD /b", "POST /v1/blobs", "PUT /v1/images"
	clients   map[string]map[string]bool
	corrupted int

	// BeforeRead, if set, runs before a GET or HEAD of a blob is answered
	// (outside the lock): the stalling server sleeps here.
	BeforeRead func()
	// CorruptEvery, if positive, flips one byte of every n-th GET body.
	CorruptEvery int
	reads        int
}

// New returns an origin that accepts writes with the bearer token.
func New(token string) *Origin {
	return &Origin{token: token, blobs: map[string][]byte{}, names: map[string]string{}, seen: map[string]bool{}, counts: map[string]int{}, clients: map[string]map[string]bool{}}
}

// Handler serves the origin's API.
func (o *Origin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/blobs", o.put)
	mux.HandleFunc("PUT /v1/images/{name}", o.put)
	mux.HandleFunc("GET /b/{hash}", o.get) // GET patterns also match HEAD
	return mux
}

// Start serves o on 127.0.0.1 for the test's lifetime.
func (o *Origin) Start(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(o.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// Count is the number of requests seen for key: "GET /b", "HEAD /b",
// "POST /v1/blobs" or "PUT /v1/images".
func (o *Origin) Count(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[key]
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (o *Origin) put(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " /v1/blobs"
	if r.Method == http.MethodPut {
		key = "PUT /v1/images"
	}
	o.mu.Lock()
	o.counts[key]++
	o.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+o.token {
		jsonError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	sum := blake3.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	o.mu.Lock()
	_, existed := o.blobs[hash]
	o.blobs[hash] = body
	reply := map[string]any{"hash": hash, "url": "/b/" + hash, "size": len(body), "content_type": r.Header.Get("Content-Type")}
	if name := r.PathValue("name"); name != "" {
		reply["name"] = name
		reply["previous"] = o.names[name]
		o.names[name] = hash
	}
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if existed {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusCreated)
	}
	json.NewEncoder(w).Encode(reply)
}

func (o *Origin) get(w http.ResponseWriter, r *http.Request) {
	hash := r.PathValue("hash")
	o.mu.Lock()
	o.counts[r.Method+" /b"]++
	if c := r.Header.Get("X-Loadtest-Client"); c != "" {
		if o.clients[c] == nil {
			o.clients[c] = map[string]bool{}
		}
		o.clients[c][r.Host] = true
	}
	body, ok := o.blobs[hash]
	cache := "MISS"
	if o.seen[hash] {
		cache = "HIT"
	}
	o.seen[hash] = true
	corrupt := false
	if r.Method == http.MethodGet && ok {
		o.reads++
		if o.CorruptEvery > 0 && o.reads%o.CorruptEvery == 0 {
			corrupt = true
			o.corrupted++
		}
	}
	o.mu.Unlock()
	if o.BeforeRead != nil {
		o.BeforeRead()
	}
	if !ok {
		jsonError(w, http.StatusNotFound, "no such blob")
		return
	}
	if corrupt {
		c := append([]byte(nil), body...)
		c[len(c)/2] ^= 0x40
		body = c
	}
	w.Header().Set("ETag", `"`+hash+`"`)
	w.Header().Set("X-Cache", cache)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// Corrupted is the number of GET bodies the origin corrupted.
func (o *Origin) Corrupted() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.corrupted
}

// ClientTargets maps each X-Loadtest-Client id seen to the set of Host
// headers it used.
func (o *Origin) ClientTargets() map[string]map[string]bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]map[string]bool{}
	for c, hs := range o.clients {
		out[c] = map[string]bool{}
		for h := range hs {
			out[c][h] = true
		}
	}
	return out
}
