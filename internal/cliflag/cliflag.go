// Package cliflag holds immut's command-line conventions on top of the
// standard flag package: every flag can also be set from IMMUT_<FLAG> in the
// environment, flags may follow positional arguments, and sizes take units.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrUsage reports that a command's flags were wrong; the flag package has
// already printed why.
var ErrUsage = errors.New("usage")

// NewFlagSet returns the flag set of the subcommand name ("immut name"),
// printing its errors and help to stderr.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("immut "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// Parse parses args, then fills every flag not given on the command line
// from EnvName(flag), so that every flag can also be set from the
// environment. Flags take precedence over the environment. It returns
// flag.ErrHelp for -h, ErrUsage for a bad command line.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return ErrUsage
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || envErr != nil {
			return
		}
		key := EnvName(f.Name)
		v, ok := os.LookupEnv(key)
		if !ok {
			return
		}
		if err := f.Value.Set(v); err != nil {
			envErr = fmt.Errorf("invalid value %q for %s: %w", v, key, err)
		}
	})
	return envErr
}

// ParseInterspersed parses flags that may come before or after positional
// arguments (immut put FILE --name N) and returns the positional ones.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := Parse(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// EnvName is the environment variable that backs a flag: IMMUT_ and the
// flag's name in upper case, dashes as underscores.
func EnvName(flagName string) string {
	return "IMMUT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ByteSize is a flag value for sizes such as "64MiB", "1GiB", "512k" or
// "1048576".
type ByteSize int64

func (b *ByteSize) String() string { return fmt.Sprint(int64(*b)) }

// Set parses a size (ParseByteSize).
func (b *ByteSize) Set(s string) error {
	n, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = ByteSize(n)
	return nil
}

// ParseByteSize reads a non-negative size with an optional unit: B, K/KB/KiB,
// M/MB/MiB, G/GB/GiB, T/TB/TiB (all powers of 1024, as operators mean for
// memory).
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 || i > 15 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit such as 64MiB", s)
	}
	var n int64
	for _, c := range t[:i] {
		n = n*10 + int64(c-'0')
	}
	mult := map[string]int64{
		"": 1, "b": 1,
		"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
		"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
	}[strings.ToLower(strings.TrimSpace(t[i:]))]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, t[i:])
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}
