package cachefront

import (
	"encoding/json"
	"maps"
	"net/http"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/immut/immut/internal/httpsem"
)

// adminHandler serves the admin listener: /metrics, /healthz, and purge.
func (f *Front) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(f.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	// Profiles, for finding where the time goes under load; token-protected
	// like purge because they reveal internals and cost CPU.
	// (Written here rather than importing net/http/pprof, whose init would
	// register the profiles on http.DefaultServeMux for the whole binary.)
	mux.HandleFunc("GET /debug/pprof/profile", f.withToken(cpuProfile))
	mux.HandleFunc("GET /debug/pprof/{name}", f.withToken(namedProfile))
	purge := func(w http.ResponseWriter, r *http.Request, path string) {
		if !f.authorized(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "purge needs Authorization: Bearer <token>"})
			return
		}
		if !strings.HasPrefix(path, "/") {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "purge needs a path such as /b/<hash>"})
			return
		}
		f.Purge(path)
		f.m.purges.Inc()
		f.log.Info("purged", "path", path, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]string{"purged": path})
	}
	mux.HandleFunc("PURGE /", func(w http.ResponseWriter, r *http.Request) {
		purge(w, r, r.URL.RequestURI())
	})
	mux.HandleFunc("POST /purge", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
		p := r.FormValue("path")
		if p == "" && r.FormValue("hash") != "" {
			p = "/b/" + r.FormValue("hash")
		}
		purge(w, r, p)
	})
	return mux
}

func (f *Front) withToken(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !f.authorized(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "needs Authorization: Bearer <token>"})
			return
		}
		h(w, r)
	}
}

// authorized checks the admin token, in constant time whatever its length.
func (f *Front) authorized(r *http.Request) bool {
	return httpsem.BearerMatches(r.Header.Get("Authorization"), f.cfg.Token)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Purge removes path from the cache. A blob path (/b/<hash>, in any
// spelling: with an extension or a query, percent-encoded, upper-case)
// removes the blob's one stored copy, and the hash is remembered as purged
// so that a fetch already in flight does not store it again: objects
// fetched before now are treated as absent.
func (f *Front) Purge(path string) {
	h, ok := purgeKey(path)
	if !ok {
		f.cache.Del(path)
		return
	}
	f.cache.Del(blobPrefix + h)
	f.purgeMu.Lock()
	defer f.purgeMu.Unlock()
	next := map[string]int64{}
	if cur := f.purges.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	next[h] = time.Now().UnixNano()
	f.purges.Store(&next)
}

// purged reports whether e was fetched before a purge of its blob hash.
func (f *Front) purged(e *entry) bool {
	if e.hash == "" {
		return false
	}
	m := f.purges.Load()
	if m == nil {
		return false
	}
	t, ok := (*m)[e.hash]
	return ok && e.fetchedAt.UnixNano() <= t
}

// cpuProfile serves a CPU profile of ?seconds= (default 30, at most 300).
func cpuProfile(w http.ResponseWriter, r *http.Request) {
	sec, err := strconv.Atoi(r.FormValue("seconds"))
	if err != nil || sec <= 0 {
		sec = 30
	}
	sec = min(sec, 300)
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := pprof.StartCPUProfile(w); err != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	}
	select {
	case <-time.After(time.Duration(sec) * time.Second):
	case <-r.Context().Done():
	}
	pprof.StopCPUProfile()
}

// namedProfile serves heap, allocs, goroutine, mutex, block or threadcreate.
func namedProfile(w http.ResponseWriter, r *http.Request) {
	p := pprof.Lookup(r.PathValue("name"))
	if p == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such profile"})
		return
	}
	debug, _ := strconv.Atoi(r.FormValue("debug"))
	if debug == 0 {
		w.Header().Set("Content-Type", "application/octet-stream")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	p.WriteTo(w, debug)
}
