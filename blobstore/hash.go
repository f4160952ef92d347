package blobstore

import (
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// Hash is the BLAKE3-256 digest of a blob's bytes: its key and its URL.
type Hash [32]byte

// HashLen is the length of a hash in lowercase hex.
const HashLen = 64

// ParseHash reads a hash from exactly 64 lowercase hex characters. Upper case
// is refused so that each blob has exactly one URL (caches key on it).
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != HashLen {
		return h, fmt.Errorf("%w: want %d lowercase hex characters, got %d characters", ErrBadHash, HashLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return h, fmt.Errorf("%w: character %d is not lowercase hex", ErrBadHash, i)
		}
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: %v", ErrBadHash, err)
	}
	return h, nil
}

// String is the lowercase hex form used in URLs and ETags.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Sum computes the hash of b.
func Sum(b []byte) Hash { return Hash(blake3.Sum256(b)) }
