package imaging

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color/palette"
	"image/gif"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/immut/immut/blobstore"
)

// The bomb tests run each hostile input in a child process (this test
// binary, re-run with IMMUT_BOMB set) and read its peak RSS (VmHWM), so
// that one case's memory does not hide in another's. The figure that
// matters is the peak above a child that only loads the file.

const bombEnv = "IMMUT_BOMB"

// manyFramesGIF repeats one uniform w×h frame n times: a few kilobytes a
// frame, a megapixel each decoded.
func manyFramesGIF(t testing.TB, w, h, n int) []byte {
	var b bytes.Buffer
	if err := gif.Encode(&b, image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9), nil); err != nil {
		t.Fatal(err)
	}
	one := b.Bytes()
	start := 13
	if one[10]&0x80 != 0 {
		start += 3 << (one[10]&7 + 1)
	}
	frame := one[start : len(one)-1] // up to the trailer
	out := append([]byte{}, one[:start]...)
	for i := 0; i < n; i++ {
		out = append(out, frame...)
	}
	return append(out, 0x3B)
}

func TestBombs(t *testing.T) {
	if os.Getenv(bombEnv) != "" {
		t.Skip("child")
	}
	if testing.Short() {
		t.Skip("spawns processes that decode 49-megapixel images")
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// 7000×7000 = 49 megapixels, just under the 50-megapixel limit: a
	// decoder that materialises the frame needs 49 MB (grey) or 147 MB
	// (RGB); sequential decoding needs a few rows.
	pngBombFile := write("bomb.png", pngBomb(t, 7000, 7000, 7000))
	shortPNG := write("short.png", pngBomb(t, 7000, 7000, 50))
	lying := write("lying.jpg", lyingJPEG(t, 7000, 7000))
	huge := write("huge.png", hugeHeaderPNG(60000, 60000))
	frames := write("frames.gif", manyFramesGIF(t, 1000, 1000, 400))
	for _, f := range []string{pngBombFile, frames} {
		st, _ := os.Stat(f)
		t.Logf("%s: %d bytes", filepath.Base(f), st.Size())
	}

	base := runBomb(t, "noop", pngBombFile)
	tests := []struct {
		name, op, file string
		want           string // the child's error, "" for success
		maxMB          int64  // peak RSS above the baseline
		goMaxMB        int64  // the same with Go's decoders, when it differs
	}{
		// Go's decoders (CGO_ENABLED=0) hold the frame: 49 MB of grey.
		{name: "png bomb validate", op: "validate", file: pngBombFile, maxMB: 40, goMaxMB: 60},
		{name: "png bomb render thumb", op: "render", file: pngBombFile, maxMB: 40},
		{name: "png with short data", op: "validate", file: shortPNG, want: ErrCorruptImage.Error(), maxMB: 40},
		{name: "lying jpeg header validate", op: "validate", file: lying, want: ErrCorruptImage.Error(), maxMB: 40},
		{name: "lying jpeg header render", op: "render", file: lying, want: ErrCorruptImage.Error(), maxMB: 40},
		{name: "huge header validate", op: "validate", file: huge, want: blobstore.ErrTooManyPixels.Error(), maxMB: 8},
		{name: "huge header render", op: "render", file: huge, want: blobstore.ErrTooManyPixels.Error(), maxMB: 8},
		{name: "400 frames of 1 megapixel", op: "validate", file: frames, want: blobstore.ErrTooManyPixels.Error(), maxMB: 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.op == "render" && !canRender {
				t.Skip("no libvips in this build")
			}
			out := runBomb(t, tt.op, tt.file)
			if tt.want == "" && out.err != "" || tt.want != "" && !strings.Contains(out.err, tt.want) {
				t.Fatalf("child error %q, want %q", out.err, tt.want)
			}
			delta := (out.hwmKB - base.hwmKB) / 1024
			t.Logf("%s: peak RSS %d MiB, %d MiB above the baseline (%s)", tt.name, out.hwmKB/1024, delta, Engine)
			if Engine != "libvips" && tt.goMaxMB > 0 {
				tt.maxMB = tt.goMaxMB
			}
			if delta > tt.maxMB {
				t.Fatalf("peak RSS %d MiB above the baseline, want at most %d", delta, tt.maxMB)
			}
		})
	}
}

type bombResult struct {
	hwmKB int64
	err   string
}

func runBomb(t testing.TB, op, file string) bombResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBombChild$", "-test.bench=^$", "-test.v")
	cmd.Env = append(os.Environ(), bombEnv+"="+op+"|"+file, "GOGC=50")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s %s: %v\n%s", op, file, err, out)
	}
	var res bombResult
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "BOMB-HWM "); ok {
			res.hwmKB, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "BOMB-ERR "); ok {
			res.err = v
		}
	}
	if res.hwmKB == 0 {
		t.Fatalf("child printed no peak:\n%s", out)
	}
	return res
}

// TestBombChild is the child of TestBombs.
func TestBombChild(t *testing.T) {
	spec := os.Getenv(bombEnv)
	if spec == "" {
		t.Skip("run by TestBombs")
	}
	op, file, _ := strings.Cut(spec, "|")
	ensureStarted()
	var err error
	r := newRenderer(t, Config{})
	switch op {
	case "noop":
	case "validate":
		f, oerr := os.Open(file)
		if oerr != nil {
			t.Fatal(oerr)
		}
		defer f.Close()
		_, err = Validate(context.Background(), f, Limits{})
	case "render", "render:thumb", "render:medium":
		preset := strings.TrimPrefix(strings.TrimPrefix(op, "render"), ":")
		if preset == "" {
			preset = "thumb"
		}
		f, oerr := os.Open(file)
		if oerr != nil {
			t.Fatal(oerr)
		}
		defer f.Close()
		_, err = r.Render(context.Background(), f, DefaultPresets()[preset])
	}
	if err != nil {
		fmt.Println("BOMB-ERR", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	fmt.Println("BOMB-HWM", peakRSSKB())
}

// peakRSSKB is this process's peak resident set size (VmHWM), in KiB.
func peakRSSKB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return -1
}
