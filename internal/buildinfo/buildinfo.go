// Package buildinfo says which immut this binary is: the version set at
// build time, else the VCS revision it was built from.
package buildinfo

import "runtime/debug"

// version is set with -ldflags "-X github.com/immut/immut/internal/buildinfo.version=...".
var version = ""

// Version is the binary's version: the one set at build time, else the
// first 12 digits of the VCS revision (with -dirty for a modified tree),
// else the module version, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		if dirty {
			rev += "-dirty"
		}
		return rev
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
