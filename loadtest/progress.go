package loadtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
)

// ProgressPrinter shows one progress line per interval: redrawn in place on
// a terminal, one plain line each otherwise (logs, CI). Its Logger keeps log
// lines from being drawn over by the progress line.
type ProgressPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	drawn bool // a line is on screen without its newline
}

// NewProgressPrinter prints progress to w.
func NewProgressPrinter(w io.Writer) *ProgressPrinter {
	return &ProgressPrinter{w: w, tty: isTerminal(w)}
}

// Print shows one progress report: Config.Progress.
func (p *ProgressPrinter) Print(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", pr)
		p.drawn = true
		return
	}
	fmt.Fprintln(p.w, pr)
}

// Finish ends a redrawn line so that other output starts on its own line.
func (p *ProgressPrinter) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// Logger returns a text logger on the same writer, at level, whose lines
// start on a line of their own.
func (p *ProgressPrinter) Logger(level slog.Level) *slog.Logger {
	return slog.New(&lineBreakHandler{Handler: slog.NewTextHandler(p.w, &slog.HandlerOptions{Level: level}), p: p})
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

type lineBreakHandler struct {
	slog.Handler
	p *ProgressPrinter
}

func (h *lineBreakHandler) Handle(ctx context.Context, r slog.Record) error {
	h.p.Finish()
	return h.Handler.Handle(ctx, r)
}

func (h *lineBreakHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineBreakHandler{Handler: h.Handler.WithAttrs(as), p: h.p}
}

func (h *lineBreakHandler) WithGroup(name string) slog.Handler {
	return &lineBreakHandler{Handler: h.Handler.WithGroup(name), p: h.p}
}
