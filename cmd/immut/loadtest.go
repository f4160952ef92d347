package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/immut/immut/internal/cliflag"
	"github.com/immut/immut/loadtest"
)

func init() {
	commands["loadtest"] = command{summary: "open-loop load test of a running deployment, with text, JSON and HTML reports", run: runLoadtest}
}

func runLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("loadtest", stdout, stderr)
	s, out := loadtestFlags(fs)
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var cfg loadtest.Config
	var thresholds []loadtest.Threshold
	if err == nil {
		cfg, thresholds, err = s.Config()
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "immut loadtest: %v\n", err)
		}
		return errUsage
	}
	pr := loadtest.NewProgressPrinter(stderr)
	cfg.Progress, cfg.Logger = pr.Print, pr.Logger(slog.LevelWarn)
	rep, err := loadtest.Run(ctx, cfg)
	pr.Finish()
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{code: exitInterrupted, msg: err.Error()}
		}
		return fmt.Errorf("load test: %w", err)
	}
	err = reportLoadtest(rep, thresholds, out.json, out.html, stdout)
	if out.hgrm != "" {
		if _, herr := loadtest.WriteHGRM(rep, out.hgrm); herr != nil {
			if err == nil {
				return herr
			}
			fmt.Fprintf(stderr, "immut loadtest: %v\n", herr)
		}
	}
	return err
}

// reportLoadtest prints the report, writes the files asked for and turns
// broken thresholds and interruptions into exit statuses.
func reportLoadtest(rep *loadtest.Report, thresholds []loadtest.Threshold, jsonPath, htmlPath string, stdout io.Writer) error {
	passed := rep.Check(thresholds)
	if err := loadtest.WriteText(stdout, rep); err != nil {
		return err
	}
	if err := loadtest.WriteFiles(rep, jsonPath, htmlPath); err != nil {
		return err
	}
	if !passed {
		return &exitError{code: exitCheck, msg: "fail-if: " + strings.Join(rep.Broken(), ", ")}
	}
	if rep.Interrupted {
		return &exitError{code: exitInterrupted, msg: "interrupted: the report covers the part that ran"}
	}
	return nil
}

// reportFiles are where a load test's report goes besides the text on stdout.
type reportFiles struct{ json, html, hgrm string }

// loadtestFlags defines the load test's flags, with loadtest's defaults.
func loadtestFlags(fs *cliflag.FlagSet) (*loadtest.Spec, *reportFiles) {
	s := loadtest.DefaultSpec()
	var out reportFiles
	fs.StringVar(&s.Targets, "target", s.Targets, "base `URL`s to load, comma-separated; each virtual client sticks to one")
	fs.StringVar(&s.Rate, "rate", s.Rate, "request starts per second (open loop), such as 2000/s")
	fs.StringVar(&s.Ramp, "ramp", "", "`FROM:TO` rates, such as 100/s:5000/s, moved linearly over --duration (replaces --rate)")
	fs.DurationVar(&s.Duration, "duration", s.Duration, "measured duration")
	fs.DurationVar(&s.Warmup, "warmup", 0, "unmeasured warmup before the measured duration, at the starting rate")
	fs.Uint64Var(&s.Seed, "seed", s.Seed, "seed of the corpus and the request sequence (same seed, same run)")
	fs.IntVar(&s.MaxInFlight, "max-inflight", s.MaxInFlight, "concurrent requests at most; later starts wait up to --max-lag, then are dropped and counted")
	fs.DurationVar(&s.MaxLag, "max-lag", s.MaxLag, "how far behind schedule a start may be sent before it is dropped instead")
	fs.IntVar(&s.Clients, "clients", s.Clients, "virtual clients spread over the targets")
	fs.IntVar(&s.Corpus, "corpus", s.Corpus, "images uploaded in the (unmeasured) setup phase and read during the run")
	fs.StringVar(&s.Sizes, "sizes", s.Sizes, "generated image sizes, `WxH=WEIGHT,...`")
	fs.StringVar(&s.Mix, "mix", s.Mix, "operation weights: get, head (of corpus blobs), put (new blob), edit (rename an image to new content, then get it)")
	fs.Float64Var(&s.ZipfS, "zipf-s", s.ZipfS, "Zipf exponent of reads over the corpus (> 1; higher is hotter)")
	fs.StringVar(&s.Token, "token", "", "bearer token for uploads and edits")
	fs.DurationVar(&s.Timeout, "timeout", s.Timeout, "per-request timeout, body included")
	fs.StringVar(&s.FailIf, "fail-if", "", "exit 3 unless every condition holds, such as 'p99<50ms,errors<0.1%,hit>=80%'")
	fs.StringVar(&out.json, "json", "", "also write the report as JSON to `FILE`")
	fs.StringVar(&out.html, "html", "", "also write a self-contained HTML report with charts to `FILE`")
	fs.StringVar(&out.hgrm, "hgrm", "", "also write each operation's latency histograms to `DIR` as HdrHistogram .hgrm files (OP.hgrm, OP-service.hgrm)")
	return &s, &out
}
