package cachefront

import (
	"os"
	"runtime/debug"
)

// ApplyMemoryLimit sets the Go memory limit of a process that holds a front
// with a cache of budget bytes to MemoryLimit(budget), unless the operator
// set GOMEMLIMIT. The cache holds at most its budget; the collector keeps the
// rest (garbage from evicted objects, buffers) close to that, so that the
// process stays within about 1.3× the budget. It returns the limit it set.
func ApplyMemoryLimit(budget int64) (limit int64, applied bool) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	limit = MemoryLimit(budget)
	debug.SetMemoryLimit(limit)
	return limit, true
}
