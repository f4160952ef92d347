// Command origin is the benchmark's stand-in for the app tier: it listens on
// one or more loopback ports and serves 16 KiB (by default) immutable
// objects at /b/<64 hex>, with the same headers as immut's app tier, so that
// nginx proxy_cache and immut front can be compared in front of the same
// origin (loadtest/peers/front-vs-nginx.sh).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ports := flag.String("ports", "18081,18082", "comma-separated loopback ports to serve on")
	size := flag.Int("size", 16<<10, "object size in bytes")
	flag.Parse()

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Write([]byte("ok"))
			return
		}
		key, ok := strings.CutPrefix(r.URL.Path, "/b/")
		if !ok || len(key) != 64 {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"not found"}`))
			return
		}
		// The body is derived from the key, so every port serves the same bytes.
		// (cheaply: the churn phase asks for many distinct keys).
		body := make([]byte, 0, *size)
		seed := sha256.Sum256([]byte(key))
		for len(body) < *size {
			body = append(body, seed[:]...)
		}
		body = body[:*size]
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"`+key+`"`)
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Accept-Ranges", "bytes")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	for p := range strings.SplitSeq(*ports, ",") {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strings.TrimSpace(p)))
		if err != nil {
			log.Fatal(err)
		}
		go func() { log.Print(http.Serve(ln, h)) }()
	}
	log.Printf("origin serving %d-byte objects on %s (try /b/%s)", *size, *ports, hex.EncodeToString(make([]byte, 32)))
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	<-c
}
