package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/immut/immut/loadtest"
)

func init() {
	commands["loadtest"] = command{summary: "open-loop load test of a running deployment, with text, JSON and HTML reports", run: runLoadtest}
}

// Exit statuses of immut loadtest besides 0, 1 (error) and 2 (usage).
const (
	exitThresholds  = 3   // a --fail-if condition did not hold
	exitInterrupted = 130 // stopped by SIGINT/SIGTERM; the partial report was printed
)

func runLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("loadtest", stderr)
	target := fs.String("target", "http://127.0.0.1:8080", "base `URL`s to load, comma-separated; each virtual client sticks to one")
	rate := fs.String("rate", "100/s", "request starts per second (open loop), such as 2000/s")
	ramp := fs.String("ramp", "", "`FROM:TO` rates, such as 100/s:5000/s, moved linearly over --duration (replaces --rate)")
	duration := fs.Duration("duration", 10*time.Second, "measured duration")
	warmup := fs.Duration("warmup", 0, "unmeasured warmup before the measured duration, at the starting rate")
	seed := fs.Uint64("seed", 1, "seed of the corpus and the request sequence (same seed, same run)")
	maxInflight := fs.Int("max-inflight", 256, "concurrent requests at most; later starts wait up to --max-lag, then are dropped and counted")
	maxLag := fs.Duration("max-lag", time.Second, "how far behind schedule a start may be sent before it is dropped instead")
	clients := fs.Int("clients", 64, "virtual clients spread over the targets")
	corpus := fs.Int("corpus", 200, "images uploaded in the (unmeasured) setup phase and read during the run")
	sizes := fs.String("sizes", loadtest.FormatSizes(loadtest.DefaultSizes), "generated image sizes, `WxH=WEIGHT,...`")
	mix := fs.String("mix", "get=90,put=5,edit=4,head=1", "operation weights: get, head (of corpus blobs), put (new blob), edit (rename an image to new content, then get it)")
	zipfS := fs.Float64("zipf-s", 1.1, "Zipf exponent of reads over the corpus (> 1; higher is hotter)")
	token := fs.String("token", "", "bearer token for uploads and edits")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout, body included")
	jsonPath := fs.String("json", "", "also write the report as JSON to `FILE`")
	htmlPath := fs.String("html", "", "also write a self-contained HTML report with charts to `FILE`")
	failIf := fs.String("fail-if", "", "exit 3 unless every condition holds, such as 'p99<50ms,errors<0.1%,hit>=80%'")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "immut loadtest: %v\n", err)
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "immut loadtest: unexpected arguments %q\n", fs.Args())
		return errUsage
	}

	cfg := loadtest.Config{
		Duration:    *duration,
		Warmup:      *warmup,
		Seed:        *seed,
		MaxInFlight: *maxInflight,
		MaxLag:      *maxLag,
		Clients:     *clients,
		Corpus:      *corpus,
		ZipfS:       *zipfS,
		Token:       *token,
		Timeout:     *timeout,
	}
	for _, t := range strings.Split(*target, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Targets = append(cfg.Targets, t)
		}
	}
	bad := func(err error) error {
		fmt.Fprintf(stderr, "immut loadtest: %v\n", err)
		return errUsage
	}
	var err error
	if *ramp != "" {
		if cfg.Rate, cfg.RampTo, err = loadtest.ParseRamp(*ramp); err != nil {
			return bad(err)
		}
	} else if cfg.Rate, err = loadtest.ParseRate(*rate); err != nil {
		return bad(err)
	}
	if cfg.Mix, err = loadtest.ParseMix(*mix); err != nil {
		return bad(err)
	}
	if cfg.Sizes, err = loadtest.ParseSizes(*sizes); err != nil {
		return bad(err)
	}
	thresholds, err := loadtest.ParseThresholds(*failIf)
	if err != nil {
		return bad(err)
	}
	if *duration <= 0 || *maxInflight < 1 || *clients < 1 || *corpus < 1 || *zipfS <= 1 {
		return bad(errors.New("--duration, --max-inflight, --clients and --corpus must be positive and --zipf-s above 1"))
	}

	pr := newProgressPrinter(stderr)
	cfg.Progress = pr.print
	cfg.Logger = slog.New(&lineBreakHandler{Handler: slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), p: pr})

	rep, err := loadtest.Run(ctx, cfg)
	pr.finish()
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{code: exitInterrupted, msg: err.Error()}
		}
		return fmt.Errorf("load test: %w", err)
	}
	passed := rep.Check(thresholds)
	if err := loadtest.WriteText(stdout, rep); err != nil {
		return err
	}
	if *jsonPath != "" {
		if err := writeFile(*jsonPath, func(w io.Writer) error { return loadtest.WriteJSON(w, rep) }); err != nil {
			return err
		}
	}
	if *htmlPath != "" {
		if err := writeFile(*htmlPath, func(w io.Writer) error { return loadtest.WriteHTML(w, rep) }); err != nil {
			return err
		}
	}
	if !passed {
		var broken []string
		for _, t := range rep.Thresholds {
			if !t.OK {
				broken = append(broken, fmt.Sprintf("%s (was %s)", t.Threshold, t.Actual))
			}
		}
		return &exitError{code: exitThresholds, msg: "fail-if: " + strings.Join(broken, ", ")}
	}
	if rep.Interrupted {
		return &exitError{code: exitInterrupted, msg: "interrupted: the report covers the part that ran"}
	}
	return nil
}

// writeFile writes a report to path, reporting a failed close (a full disk
// shows up there).
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("report %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return nil
}

// progressPrinter shows one progress line per interval: redrawn in place on a
// terminal, one plain line each otherwise (logs, CI).
type progressPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	drawn bool // a line is on screen without its newline
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	return &progressPrinter{w: w, tty: isTerminal(w)}
}

func (p *progressPrinter) print(pr loadtest.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", pr)
		p.drawn = true
		return
	}
	fmt.Fprintln(p.w, pr)
}

// breakLine ends a redrawn line so that other output starts on its own line.
func (p *progressPrinter) breakLine() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

func (p *progressPrinter) finish() { p.breakLine() }

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// lineBreakHandler keeps log lines from being drawn over by the progress line.
type lineBreakHandler struct {
	slog.Handler
	p *progressPrinter
}

func (h *lineBreakHandler) Handle(ctx context.Context, r slog.Record) error {
	h.p.breakLine()
	return h.Handler.Handle(ctx, r)
}

func (h *lineBreakHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineBreakHandler{Handler: h.Handler.WithAttrs(as), p: h.p}
}

func (h *lineBreakHandler) WithGroup(name string) slog.Handler {
	return &lineBreakHandler{Handler: h.Handler.WithGroup(name), p: h.p}
}
