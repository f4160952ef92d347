// Package client is a Go client of immut's HTTP API: uploads (with or without
// a name), downloads verified against their hash, and health probes.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zeebo/blake3"

	"github.com/immut/immut/blobstore"
	"github.com/immut/immut/internal/earlyanswer"
)

// Client talks to one immut server (a front port, or an app process).
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the server at base (http:// or https://), writing
// with token (may be empty for reads).
func New(base, token string) (*Client, error) {
	base = strings.TrimRight(base, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("server %q: want an http:// or https:// URL", base)
	}
	return &Client{base: base, token: token, http: &http.Client{
		// Connection set-up and header waits are bounded; bodies stream for
		// as long as they take.
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			// A refused upload (401, 413) reports the server's answer, not
			// the reset that follows it.
			DialContext:           earlyanswer.Dialer(&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}),
			ResponseHeaderTimeout: 5 * time.Minute, // the server reads the whole upload first
			TLSHandshakeTimeout:   10 * time.Second,
		},
	}}, nil
}

// Blob is the server's answer to an upload.
type Blob struct {
	Hash        string `json:"hash"`
	URL         string `json:"url"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
}

// PutOptions name the image an upload becomes.
type PutOptions struct {
	// Name, if set, is moved to the uploaded image (PUT /v1/images/Name).
	Name string
	// IfMatch, with Name: only if the name points at this hash now.
	IfMatch string
}

// Put uploads body (size bytes, or -1 if unknown) and returns the stored blob.
// A body that is an io.Seeker is sent again when the server could not be
// reached; another one is sent once.
func (c *Client) Put(ctx context.Context, body io.Reader, size int64, opts PutOptions) (Blob, error) {
	var rewind func() (io.Reader, error)
	if s, ok := body.(io.Seeker); ok {
		start, err := s.Seek(0, io.SeekCurrent)
		if err != nil {
			return Blob{}, err
		}
		rewind = func() (io.Reader, error) {
			_, err := s.Seek(start, io.SeekStart)
			return body, err
		}
	}
	if c.token == "" {
		return Blob{}, errors.New("a write token is required to upload")
	}
	method, target := http.MethodPost, c.base+"/v1/blobs"
	if opts.Name != "" {
		if err := blobstore.ValidateName(opts.Name); err != nil {
			return Blob{}, err
		}
		method, target = http.MethodPut, c.base+"/v1/images/"+url.PathEscape(opts.Name)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return Blob{}, err
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	if opts.IfMatch != "" {
		req.Header.Set("If-Match", `"`+opts.IfMatch+`"`)
	}
	resp, err := c.do(req, rewind)
	if err != nil {
		return Blob{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return Blob{}, apiError(resp)
	}
	var b Blob
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&b); err != nil {
		return Blob{}, fmt.Errorf("reading the server's answer: %w", err)
	}
	return b, nil
}

// PutFile uploads the regular file path ("-" reads standard input).
func (c *Client) PutFile(ctx context.Context, path string, opts PutOptions) (Blob, error) {
	if path == "-" {
		return c.Put(ctx, os.Stdin, -1, opts)
	}
	f, err := os.Open(path)
	if err != nil {
		return Blob{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Blob{}, err
	}
	if !st.Mode().IsRegular() {
		return Blob{}, fmt.Errorf("%s is not a regular file", path)
	}
	return c.Put(ctx, f, st.Size(), opts)
}

// URL is the absolute URL of a path on the server.
func (c *Client) URL(path string) string { return c.base + path }

// Get writes the blob h to w and then checks its hash: a mismatch is
// reported (blobstore.ErrDigestMismatch) after the bytes were written.
func (c *Client) Get(ctx context.Context, h blobstore.Hash, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/b/"+h.String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	hasher := blake3.New()
	if _, err := io.Copy(io.MultiWriter(w, hasher), resp.Body); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	var got blobstore.Hash
	copy(got[:], hasher.Sum(nil))
	if got != h {
		return fmt.Errorf("%w: downloaded bytes hash to %s", blobstore.ErrDigestMismatch, got)
	}
	return nil
}

// GetFile downloads the blob h to path: written beside it, verified, then
// renamed into place, so path is either complete and correct or untouched.
// It returns the size written.
func (c *Client) GetFile(ctx context.Context, h blobstore.Hash, path string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".immut-get-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	if err := c.Get(ctx, h, tmp); err != nil {
		tmp.Close()
		return 0, err
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	return size, os.Rename(tmp.Name(), path)
}

// Probe GETs target and succeeds on a 2xx answer within timeout: a health
// check for images without curl.
func Probe(ctx context.Context, target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", target, resp.Status)
	}
	return nil
}

// StatusError is an error answer of the server.
type StatusError struct {
	Code    int    // the HTTP status
	Status  string // such as "404 Not Found"
	Message string // the server's reason, from its JSON error
}

func (e *StatusError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("server answered %s: %s", e.Status, e.Message)
	}
	return "server answered " + e.Status
}

// apiError turns an error answer into a StatusError with the server's reason.
func apiError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct{ Error string }
	json.Unmarshal(b, &e)
	return &StatusError{Code: resp.StatusCode, Status: resp.Status, Message: e.Error}
}

// do sends a request, again after a backoff (0.5s, 1s, 2s) when the server
// could not be reached at all: a connection refused or a failed dial sent
// nothing, so even an upload is safe to send again, if its body can be
// rewound (body, when not nil, is called for each attempt).
func (c *Client) do(req *http.Request, body func() (io.Reader, error)) (*http.Response, error) {
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if body != nil {
			r, err := body()
			if err != nil {
				return nil, err
			}
			req.Body = io.NopCloser(r)
		}
		resp, err := c.http.Do(req)
		var op *net.OpError
		if err == nil || attempt == 4 || !errors.As(err, &op) || op.Op != "dial" || (req.Body != nil && body == nil) {
			return resp, err
		}
		select {
		case <-req.Context().Done():
			return nil, err
		case <-time.After(delay):
		}
		delay *= 2
	}
}
