package httpsem

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// BearerMatches reports whether an Authorization field value carries
// Bearer credentials (RFC 6750 §2.1) equal to token. The scheme name is
// case-insensitive (RFC 9110 §11.1) and may be followed by several spaces.
// The comparison is of SHA-256 digests in constant time, so that neither
// the token's bytes nor its length leak through timing. An empty token
// matches nothing.
func BearerMatches(field, token string) bool {
	const scheme = "bearer"
	if token == "" || len(field) <= len(scheme) || !equalFold(field[:len(scheme)], scheme) || field[len(scheme)] != ' ' {
		return false
	}
	got := sha256.Sum256([]byte(strings.Trim(field[len(scheme):], " \t")))
	want := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}
