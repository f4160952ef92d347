package cliflag

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
)

// Progress returns a function that shows how far long work has come (done
// of total) as a bar on w when w is a terminal, and does nothing otherwise
// (logs, CI, --json), and a function that ends the bar.
func Progress(w io.Writer, description string) (update func(done, total int64), finish func()) {
	f, ok := w.(*os.File)
	if !ok {
		return func(int64, int64) {}, func() {}
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return func(int64, int64) {}, func() {}
	}
	var bar *progressbar.ProgressBar
	update = func(done, total int64) {
		if bar == nil {
			bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription(description),
				progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionThrottle(100_000_000),
				progressbar.OptionClearOnFinish())
		}
		bar.ChangeMax64(total)
		bar.Set64(done)
	}
	finish = func() {
		if bar != nil {
			bar.Finish()
		}
	}
	return update, finish
}
