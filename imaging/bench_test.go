package imaging

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/image/draw"
)

// Benchmarks of the render path against its baselines, measured in the
// same run and reported as ratios (throughput of immut ÷ throughput of the
// baseline; ≥ 0.8 against vipsthumbnail is the goal):
//
//	go test -run '^$' -bench 'Render|Validate' -benchtime 20x ./imaging/
//
// Everything runs on one core: libvips is set to one thread per pipeline
// (as Renderer does) and vipsthumbnail gets --vips-concurrency=1.

var photo struct {
	once sync.Once
	path string
	data []byte
}

// photoJPEG is a 12-megapixel (4000×3000) JPEG with photo-like noise,
// written once per run to a temporary file.
func photoJPEG(b *testing.B) (string, []byte) {
	photo.once.Do(func() {
		const w, h = 4000, 3000
		img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
		rng := rand.New(rand.NewPCG(1, 2))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				img.Y[y*img.YStride+x] = uint8(min(255, max(0, (x*200/w+y*55/h)+rng.IntN(24)-12)))
			}
		}
		for i := range img.Cb {
			img.Cb[i], img.Cr[i] = uint8(100+i%37), uint8(140+i%23)
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
			panic(err)
		}
		dir, err := os.MkdirTemp("", "immut-bench")
		if err != nil {
			panic(err)
		}
		photo.path = filepath.Join(dir, "photo.jpg")
		photo.data = buf.Bytes()
		if err := os.WriteFile(photo.path, photo.data, 0o600); err != nil {
			panic(err)
		}
	})
	return photo.path, photo.data
}

func BenchmarkRender(b *testing.B) {
	if !canRender {
		b.Skip("no libvips in this build")
	}
	path, data := photoJPEG(b)
	r, err := New(Config{MaxInFlight: 1})
	if err != nil {
		b.Fatal(err)
	}
	for _, preset := range []string{"thumb", "medium"} {
		o := DefaultPresets()[preset]
		b.Run(preset, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			start := time.Now()
			for b.Loop() {
				if _, err := r.Render(context.Background(), bytes.NewReader(data), o); err != nil {
					b.Fatal(err)
				}
			}
			immut := time.Since(start) / time.Duration(b.N)
			b.StopTimer()
			n := max(b.N, 5)
			if vt, rss, err := vipsthumbnail(b, path, o, n); err != nil {
				b.Logf("vipsthumbnail baseline skipped: %v", err)
			} else {
				b.ReportMetric(float64(vt)/float64(immut), "x_vipsthumbnail")
				b.ReportMetric(float64(rss)/1024, "vipsthumbnail_peak_MiB")
			}
			gt := goResize(b, data, o, min(n, 5))
			b.ReportMetric(float64(gt)/float64(immut), "x_go_draw")
			b.ReportMetric(float64(renderRSS(b, path, preset))/1024, "render_peak_MiB")
		})
	}
}

// vipsthumbnail times libvips' own tool on the same file, n images in one
// invocation (so process start-up is amortised), one thread, and returns
// the time per image and the tool's peak RSS (KiB).
func vipsthumbnail(b *testing.B, path string, o Options, n int) (time.Duration, int64, error) {
	bin, err := exec.LookPath("vipsthumbnail")
	if err != nil {
		return 0, 0, err
	}
	size := strconv.Itoa(o.Width)
	if o.Height > 0 {
		size += "x" + strconv.Itoa(o.Height)
	}
	args := []string{"--vips-concurrency=1", "-s", size, "-o", filepath.Join(b.TempDir(), "%s_out.jpg[Q=82,strip]")}
	if o.EffectiveFit() == FitCover {
		args = append(args, "-m", "centre")
	}
	for i := 0; i < n; i++ {
		args = append(args, path)
	}
	cmd := exec.Command(bin, args...)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, err
	} else if len(out) > 0 {
		b.Logf("vipsthumbnail: %s", out)
	}
	per := time.Since(start) / time.Duration(n)
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss
	}
	return per, rss, nil
}

// goResize is the pure-Go baseline: image/jpeg, x/image/draw's bilinear
// scaler (CatmullRom, the closer match to libvips' lanczos, is slower
// still), image/jpeg again.
func goResize(b *testing.B, data []byte, o Options, n int) time.Duration {
	start := time.Now()
	for i := 0; i < n; i++ {
		src, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		sb := src.Bounds()
		w := o.Width
		h := sb.Dy() * w / sb.Dx()
		srcRect := sb
		if o.EffectiveFit() == FitCover {
			h = o.Height
			side := min(sb.Dx(), sb.Dy())
			srcRect = image.Rect((sb.Dx()-side)/2, (sb.Dy()-side)/2, (sb.Dx()+side)/2, (sb.Dy()+side)/2)
		}
		dst := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.BiLinear.Scale(dst, dst.Bounds(), src, srcRect, draw.Src, nil)
		if err := jpeg.Encode(new(bytes.Buffer), dst, &jpeg.Options{Quality: 82}); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start) / time.Duration(n)
}

// renderRSS is the peak RSS (KiB) of a child process that renders the
// preset once, above one that only starts libvips.
func renderRSS(b *testing.B, path, preset string) int64 {
	base := runBomb(b, "noop", path)
	out := runBomb(b, "render:"+preset, path)
	if out.err != "" {
		b.Fatalf("render child: %s", out.err)
	}
	return out.hwmKB - base.hwmKB
}

// BenchmarkValidate decides the validation engine: libvips (streamed,
// sequential) against Go's decoders, on the same 12-megapixel JPEG. The
// x_go metric is Go's time ÷ libvips' time.
func BenchmarkValidate(b *testing.B) {
	if Engine != "libvips" {
		b.Skip("no libvips in this build")
	}
	_, data := photoJPEG(b)
	b.SetBytes(int64(len(data)))
	start := time.Now()
	for b.Loop() {
		if _, err := ValidateBytes(context.Background(), data, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	vips := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	n := min(max(b.N, 3), 5)
	start = time.Now()
	for i := 0; i < n; i++ {
		if _, err := validateGo(context.Background(), bytes.NewReader(data), Limits{}.withDefaults()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start)/time.Duration(n))/float64(vips), "x_go")
}
