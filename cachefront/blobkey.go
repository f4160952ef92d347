package cachefront

import (
	"net/url"
	"strings"
)

// Blob URLs have one canonical form, which the app tier (httpapi) serves
// and nothing else: "/b/" followed by the 64 lowercase hex characters of
// the hash, optionally "." and an extension of 1–10 characters [a-z0-9],
// optionally followed by a query (which the app ignores). A GET or HEAD of
// any other /b/ path (percent-encoded characters, upper-case hex, a second
// segment, ...) is refused with 400 by the front and by the app, so that no
// spelling of a blob is ever cached under a key that does not name its
// hash. The extension and the query do not change the answer, so every
// blob is cached once, under "/b/<hash>": the hash check, collapsing and
// purge all apply to that one key.

const (
	blobPrefix    = "/b/"
	blobKeyLen    = len(blobPrefix) + 64
	maxBlobExtLen = 10
)

// cacheKey returns the cache key of an origin-form request target. For a
// blob (isBlob) it is "/b/<hash>", a prefix of target; for anything else
// the whole target. ok is false for a /b/ target that is not canonical.
func cacheKey[T ~string | ~[]byte](target T) (key T, isBlob, ok bool) {
	if len(target) < len(blobPrefix) || string(target[:len(blobPrefix)]) != blobPrefix {
		return target, false, true
	}
	path := target
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			path = target[:i]
			break
		}
	}
	if len(path) < blobKeyLen {
		return key, true, false
	}
	for i := len(blobPrefix); i < blobKeyLen; i++ {
		if c := path[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return key, true, false
		}
	}
	if ext := path[blobKeyLen:]; len(ext) > 0 {
		if ext[0] != '.' || len(ext) < 2 || len(ext) > 1+maxBlobExtLen {
			return key, true, false
		}
		for i := 1; i < len(ext); i++ {
			if c := ext[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
				return key, true, false
			}
		}
	}
	return target[:blobKeyLen], true, true
}

// originForm returns the origin-form (path and query) of an absolute-form
// request target such as "http://host/b/<hash>?x" (RFC 9112 §3.2.2), which
// the front serves as it would serve the path. ok is false for any other
// target.
func originForm(target string) (string, bool) {
	var rest string
	switch {
	case len(target) >= 7 && strings.EqualFold(target[:7], "http://"):
		rest = target[7:]
	case len(target) >= 8 && strings.EqualFold(target[:8], "https://"):
		rest = target[8:]
	default:
		return "", false
	}
	i := strings.IndexAny(rest, "/?#")
	if i < 0 {
		return "/", true
	}
	switch rest[i] {
	case '/':
		return rest[i:], true
	case '?':
		return "/" + rest[i:], true
	}
	return "", false // a fragment is not part of a request target
}

// purgeKey reads the blob hash out of a path given to purge, in any
// spelling a client may have used: percent-encoded, upper-case hex, with an
// extension or a query. ok is false when it names no blob.
func purgeKey(path string) (hash string, ok bool) {
	if u, err := url.PathUnescape(path); err == nil {
		path = u
	}
	if len(path) < blobKeyLen || !strings.HasPrefix(path, blobPrefix) {
		return "", false
	}
	h := strings.ToLower(path[len(blobPrefix):blobKeyLen])
	if key, isBlob, ok := cacheKey(blobPrefix + h); !isBlob || !ok || len(key) != blobKeyLen {
		return "", false
	}
	if rest := path[blobKeyLen:]; rest != "" && rest[0] != '.' && rest[0] != '?' {
		return "", false
	}
	return h, true
}
