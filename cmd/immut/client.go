package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/immut/immut/internal/cliflag"

	"github.com/zeebo/blake3"

	"github.com/immut/immut/blobstore"
)

func init() {
	commands["put"] = command{summary: "upload FILE (- for stdin) and print its immutable URL; --name also moves a name", run: runPut}
	commands["get"] = command{summary: "download HASH, verifying it (-o FILE)", run: runGet}
	commands["probe"] = command{summary: "exit 0 if --url answers 2xx within --timeout (container health checks)", run: runProbe}
}

// runProbe is a health check for images without curl: GET a URL, succeed on 2xx.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("probe", stderr)
	target := fs.String("url", "http://127.0.0.1:8080/healthz", "URL to check")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := cliflag.Parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
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
		return fmt.Errorf("%s answered %s", *target, resp.Status)
	}
	return nil
}

// httpClient bounds connection set-up and header waits; bodies stream for
// as long as they take.
var httpClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		ResponseHeaderTimeout: 5 * time.Minute, // the server reads the whole upload first
		TLSHandshakeTimeout:   10 * time.Second,
	},
}

func apiError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("server answered %s: %s", resp.Status, e.Error)
	}
	return fmt.Errorf("server answered %s", resp.Status)
}

func runPut(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("put", stderr)
	server := fs.String("server", "http://127.0.0.1:8080", "immut server URL")
	token := fs.String("token", "", "write token")
	name := fs.String("name", "", "also point this name at the image (PUT /v1/images/NAME)")
	ifMatch := fs.String("if-match", "", "with --name: only if the name points at this hash now")
	pos, err := cliflag.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: immut put FILE [--name NAME] (FILE - reads stdin)")
	}
	base, err := serverURL(*server)
	if err != nil {
		return err
	}
	if *token == "" {
		return errors.New("--token (or IMMUT_TOKEN) is required to upload")
	}
	var body io.Reader = os.Stdin
	size := int64(-1)
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", pos[0])
		}
		body, size = f, st.Size()
	}
	method, target := http.MethodPost, base+"/v1/blobs"
	if *name != "" {
		if err := blobstore.ValidateName(*name); err != nil {
			return err
		}
		method, target = http.MethodPut, base+"/v1/images/"+url.PathEscape(*name)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+*token)
	req.Header.Set("Content-Type", "application/octet-stream")
	if *ifMatch != "" {
		req.Header.Set("If-Match", `"`+*ifMatch+`"`)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return apiError(resp)
	}
	var out struct {
		Hash, URL string
		Size      int64
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return fmt.Errorf("reading the server's answer: %w", err)
	}
	fmt.Fprintln(stdout, base+out.URL)
	return nil
}

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("get", stderr)
	server := fs.String("server", "http://127.0.0.1:8080", "immut server URL")
	out := fs.String("o", "", "write to this file (default: standard output)")
	pos, err := cliflag.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: immut get HASH [-o FILE]")
	}
	h, err := blobstore.ParseHash(pos[0])
	if err != nil {
		return err
	}
	base, err := serverURL(*server)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/b/"+h.String(), nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	if *out == "" {
		// Streamed to stdout: a mismatch can only be reported afterwards.
		hasher := blake3.New()
		if _, err := io.Copy(io.MultiWriter(stdout, hasher), resp.Body); err != nil {
			return fmt.Errorf("download: %w", err)
		}
		return checkDigest(h, hasher)
	}
	// To a file: written beside it, verified, then renamed into place, so
	// FILE is either complete and correct or untouched.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".immut-get-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	hasher := blake3.New()
	if _, err := io.Copy(io.MultiWriter(tmp, hasher), resp.Body); err != nil {
		tmp.Close()
		return fmt.Errorf("download: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := checkDigest(h, hasher); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), *out)
}

func checkDigest(want blobstore.Hash, hasher *blake3.Hasher) error {
	var got blobstore.Hash
	copy(got[:], hasher.Sum(nil))
	if got != want {
		return fmt.Errorf("%w: downloaded bytes hash to %s", blobstore.ErrDigestMismatch, got)
	}
	return nil
}

func serverURL(s string) (string, error) {
	s = strings.TrimRight(s, "/")
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return "", fmt.Errorf("server %q: want an http:// or https:// URL", s)
	}
	return s, nil
}
