package loadtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zeebo/blake3"
)

var (
	errConnRefused = syscall.ECONNREFUSED
	errConnReset   = syscall.ECONNRESET
)

// cache states read from the front tier's X-Cache header.
const (
	cacheNone = iota
	cacheHit
	cacheMiss
)

// result is the outcome of one job.
type result struct {
	kind      string // "" for success, else an error kind
	detail    string // for the log: the error or the server's message
	responded bool   // an HTTP response arrived, so the latencies are meaningful
	cache     int
	sent      int64         // request body bytes
	recv      int64         // response body bytes
	service   time.Duration // from the actual send to the end of the body
	corrected time.Duration // from the intended start to the end of the body
	lag       time.Duration // from the intended start to the actual send
}

// fail sets an error kind unless one is already set (the first cause wins).
func (res *result) fail(kind, detail string) {
	if res.kind == "" {
		res.kind, res.detail = kind, detail
	}
}

func (r *runner) newRequest(ctx context.Context, method, url string, body []byte, contentType string) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if body != nil && r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	req.Header.Set("User-Agent", "immut-loadtest")
	if c, ok := ctx.Value(clientKey{}).(int); ok {
		req.Header.Set("X-Loadtest-Client", strconv.Itoa(c))
	}
	return req, nil
}

// fetch GETs or HEADs a blob and checks that it is the one named: the body's
// BLAKE3 for GET, the ETag for HEAD. The body is hashed as it streams, never
// held whole.
func (r *runner) fetch(ctx context.Context, base, method, path, hash string, res *result) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := r.newRequest(ctx, method, base+path, nil, "")
	if err != nil {
		res.fail(kindOther, err.Error())
		return
	}
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		res.fail(classify(err), err.Error())
		return
	}
	defer resp.Body.Close()
	res.responded = true
	switch strings.ToUpper(strings.TrimSpace(resp.Header.Get("X-Cache"))) {
	case "HIT":
		res.cache = cacheHit
	case "MISS":
		res.cache = cacheMiss
	}
	if resp.StatusCode != http.StatusOK {
		res.recv += r.statusError(resp, res)
		return
	}
	if method == http.MethodHead {
		if et := resp.Header.Get("ETag"); et != `"`+hash+`"` {
			res.fail(kindDigest, fmt.Sprintf("HEAD %s: ETag %s", path, et))
		}
		return
	}
	h := blake3.New()
	n, err := io.Copy(h, resp.Body)
	res.recv += n
	if err != nil {
		res.fail(classify(err), fmt.Sprintf("GET %s: body after %d bytes: %v", path, n, err))
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hash {
		res.fail(kindDigest, fmt.Sprintf("GET %s: body of %d bytes hashes to %s", path, n, got))
	}
}

// statusError records a non-success status with the server's message and
// returns the bytes read.
func (r *runner) statusError(resp *http.Response, res *result) int64 {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	n, _ := io.Copy(io.Discard, resp.Body)
	var e struct {
		Error string `json:"error"`
	}
	detail := strings.TrimSpace(string(msg))
	if json.Unmarshal(msg, &e) == nil && e.Error != "" {
		detail = e.Error
	}
	res.fail(fmt.Sprintf("status %d", resp.StatusCode), fmt.Sprintf("%s %s: %s", resp.Request.Method, resp.Request.URL.Path, detail))
	return int64(len(msg)) + n
}

// blobReply is the part of the API's blob JSON the load generator checks.
type blobReply struct {
	Hash string `json:"hash"`
	URL  string `json:"url"`
	Size int64  `json:"size"`
}

// upload sends body with method to path and checks that the reply names the
// hash of what was sent. It returns that hash.
func (r *runner) upload(ctx context.Context, base, method, path string, body []byte, format string, res *result) string {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	sum := blake3.Sum256(body)
	want := hex.EncodeToString(sum[:])
	req, err := r.newRequest(ctx, method, base+path, body, format)
	if err != nil {
		res.fail(kindOther, err.Error())
		return ""
	}
	res.sent += int64(len(body))
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		res.fail(classify(err), err.Error())
		return ""
	}
	defer resp.Body.Close()
	res.responded = true
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		res.recv += r.statusError(resp, res)
		return ""
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	res.recv += int64(len(raw))
	if err != nil {
		res.fail(classify(err), fmt.Sprintf("%s %s: reply: %v", method, path, err))
		return ""
	}
	var reply blobReply
	if err := json.Unmarshal(raw, &reply); err != nil {
		res.fail(kindBadReply, fmt.Sprintf("%s %s: reply is not blob JSON: %v", method, path, err))
		return ""
	}
	if reply.Hash != want || reply.Size != int64(len(body)) {
		res.fail(kindDigest, fmt.Sprintf("%s %s: sent %d bytes hashing to %s, server says %d bytes, %s", method, path, len(body), want, reply.Size, reply.Hash))
		return ""
	}
	if reply.URL != "" && !strings.Contains(reply.URL, want) {
		res.fail(kindBadReply, fmt.Sprintf("%s %s: url %q does not name hash %s", method, path, reply.URL, want))
		return ""
	}
	return want
}

// postBlob uploads a new blob (POST /v1/blobs).
func (r *runner) postBlob(ctx context.Context, base string, body []byte, format string, res *result) string {
	return r.upload(ctx, base, http.MethodPost, "/v1/blobs", body, format, res)
}

// putImage stores an image under a name (PUT /v1/images/{name}).
func (r *runner) putImage(ctx context.Context, base, name string, body []byte, format string, res *result) string {
	return r.upload(ctx, base, http.MethodPut, "/v1/images/"+name, body, format, res)
}
