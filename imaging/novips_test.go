//go:build !cgo || novips

package imaging

import "testing"

func webpOf(testing.TB, int, int) []byte { return nil }
