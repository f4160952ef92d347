//go:build !race

package cachefront

const raceEnabled = false
