//go:build !cgo || novips

package imaging

import (
	"context"
	"fmt"
	"io"
)

// Engine names the validation and rendering engine of this build.
const Engine = "go (no libvips: variants unavailable)"

// canRender reports whether Render can work in this build.
const canRender = false

func startup(Config) error { return nil }

func validate(ctx context.Context, r io.Reader, lim Limits) (Info, error) {
	return validateGo(ctx, r, lim)
}

func avifSupported() bool { return false }

func render([]byte, string, Options) (Result, error) {
	return Result{}, fmt.Errorf("%w (built without cgo/libvips)", ErrUnsupported)
}

func ensureStarted() {}
