package loadtest

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// hgrmTicks is the resolution of a .hgrm file: five percentile lines per
// halving of the distance to 100%, as HdrHistogram's own tools print.
const hgrmTicks = 5

// WriteHGRM writes each operation's latency histograms (and those of all
// operations together) to dir, creating it, as HdrHistogram's percentile
// distribution text (.hgrm, values in milliseconds), which HdrHistogram's
// plotter and HistogramLogAnalyzer read: OP.hgrm holds the corrected latency
// (from the intended start), OP-service.hgrm the service latency (from the
// actual send). Operations without answers get no file. It returns the
// paths written.
func WriteHGRM(r *Report, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("hgrm: %w", err)
	}
	var paths []string
	for _, o := range append(r.Ops, r.All) {
		for _, h := range []struct{ suffix, encoded string }{{"", o.Histogram}, {"-service", o.ServiceHistogram}} {
			if h.encoded == "" {
				continue
			}
			path := filepath.Join(dir, o.Op+h.suffix+".hgrm")
			if err := writeHGRMFile(path, h.encoded); err != nil {
				return paths, err
			}
			paths = append(paths, path)
		}
	}
	return paths, nil
}

func writeHGRMFile(path, encoded string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("hgrm: %w", err)
	}
	err = WritePercentiles(f, encoded)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("hgrm %s: %w", path, err)
	}
	return nil
}

// WritePercentiles writes one histogram, in the encoding of
// OpStats.Histogram, as a .hgrm percentile distribution in milliseconds:
// the format of HdrHistogram's outputPercentileDistribution (Java, C, .NET),
// column for column.
func WritePercentiles(w io.Writer, encoded string) error {
	h, err := hdrhistogram.Decode([]byte(encoded))
	if err != nil {
		return fmt.Errorf("decode histogram: %w", err)
	}
	if h.TotalCount() == 0 {
		return errors.New("empty histogram")
	}
	const scale = 1000 // microseconds recorded, milliseconds written
	var b strings.Builder
	fmt.Fprintf(&b, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")
	for _, br := range h.CumulativeDistributionWithTicks(hgrmTicks) {
		p := br.Quantile / 100
		if br.Quantile >= 100 {
			fmt.Fprintf(&b, "%12.3f %2.12f %10d\n", float64(br.ValueAt)/scale, p, br.Count)
			continue
		}
		fmt.Fprintf(&b, "%12.3f %2.12f %10d %14.2f\n", float64(br.ValueAt)/scale, p, br.Count, 1/(1-p))
	}
	fmt.Fprintf(&b, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", h.Mean()/scale, h.StdDev()/scale)
	fmt.Fprintf(&b, "#[Max     = %12.3f, Total count    = %12d]\n", float64(h.Max())/scale, h.TotalCount())
	buckets, subBuckets := hdrGeometry(h)
	fmt.Fprintf(&b, "#[Buckets = %12d, SubBuckets     = %12d]\n", buckets, subBuckets)
	_, err = io.WriteString(w, b.String())
	return err
}

// hdrGeometry computes the bucket and sub-bucket counts of h's range and
// precision as HdrHistogram does (the Go library keeps them unexported).
func hdrGeometry(h *hdrhistogram.Histogram) (buckets, subBuckets int64) {
	largest := 2 * math.Pow10(int(h.SignificantFigures()))
	subBuckets = 1 << int64(math.Ceil(math.Log2(largest)))
	unitMagnitude := int64(math.Floor(math.Log2(float64(h.LowestTrackableValue()))))
	smallestUntrackable := subBuckets << unitMagnitude
	buckets = 1
	for smallestUntrackable <= h.HighestTrackableValue() {
		if smallestUntrackable > math.MaxInt64/2 {
			return buckets + 1, subBuckets
		}
		smallestUntrackable <<= 1
		buckets++
	}
	return buckets, subBuckets
}
