// Command origin is the benchmark's stand-in for the app tier: it listens on
// one or more loopback ports and serves immutable objects with the same
// headers as immut's app tier, so that nginx proxy_cache and immut front can
// be compared in front of the same origin (loadtest/peers/front-vs-nginx.sh).
//
// /b/<hash> serves one of -keys objects of -size bytes whose BLAKE3-256 is
// <hash> (their paths are written to -keyfile, one per line); /c/<anything>
// serves -size bytes derived from the path, for churning a cache with more
// distinct objects than it can hold.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/zeebo/blake3"
)

func main() {
	ports := flag.String("ports", "18081,18082", "comma-separated loopback ports to serve on")
	size := flag.Int("size", 16<<10, "object size in bytes")
	keys := flag.Int("keys", 1000, "number of /b/<hash> objects")
	keyfile := flag.String("keyfile", "", "write the /b/<hash> paths here, one per line")
	flag.Parse()

	derive := func(seed string) []byte {
		sum := sha256.Sum256([]byte(seed))
		body := make([]byte, 0, *size+len(sum))
		for len(body) < *size {
			body = append(body, sum[:]...)
		}
		return body[:*size]
	}
	blobs := make(map[string][]byte, *keys)
	var paths strings.Builder
	for i := range *keys {
		body := derive(strconv.Itoa(i))
		sum := blake3.Sum256(body)
		h := hex.EncodeToString(sum[:])
		blobs[h] = body
		fmt.Fprintf(&paths, "/b/%s\n", h)
	}
	if *keyfile != "" {
		if err := os.WriteFile(*keyfile, []byte(paths.String()), 0o644); err != nil {
			log.Fatal(err)
		}
	}

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		etag := ""
		switch {
		case r.URL.Path == "/healthz":
			w.Write([]byte("ok"))
			return
		case strings.HasPrefix(r.URL.Path, "/b/"):
			etag = strings.TrimPrefix(r.URL.Path, "/b/")
			body = blobs[etag]
		case strings.HasPrefix(r.URL.Path, "/c/"):
			etag = strings.TrimPrefix(r.URL.Path, "/c/")
			body = derive(etag)
		}
		if body == nil {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"not found"}`))
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"`+etag+`"`)
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
	log.Printf("origin serving %d %d-byte objects on %s", *keys, *size, *ports)
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	<-c
}
