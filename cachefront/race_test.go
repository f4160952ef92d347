//go:build race

package cachefront

// raceEnabled: the race detector multiplies memory use, so RSS is not checked.
const raceEnabled = true
