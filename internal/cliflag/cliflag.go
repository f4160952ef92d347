// Package cliflag holds immut's command-line conventions on top of the
// standard flag package: every flag can also be set from IMMUT_<FLAG> in the
// environment (and its help says so), -h prints the help on standard output,
// flags may follow positional arguments, sizes take units and decimals
// (1.5GiB), durations take days (7d).
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
)

// ErrUsage reports that a command's flags were wrong; the flag package has
// already printed why.
var ErrUsage = errors.New("usage")

// FlagSet is a subcommand's flags: errors go to stderr, help to stdout.
type FlagSet struct {
	*flag.FlagSet
	stdout io.Writer
}

// NewFlagSet returns the flag set of the subcommand name ("immut name").
func NewFlagSet(name string, stdout, stderr io.Writer) *FlagSet {
	fs := flag.NewFlagSet("immut "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &FlagSet{FlagSet: fs, stdout: stdout}
}

// Parse parses args, then fills every flag not given on the command line
// from EnvName(flag), so that every flag can also be set from the
// environment; flags take precedence. -h, -help and --help print the help on
// standard output and return flag.ErrHelp; a bad command line returns
// ErrUsage (the reason is printed).
func (fs *FlagSet) Parse(args []string) error {
	fs.VisitAll(func(f *flag.Flag) {
		if env := EnvName(f.Name); !strings.Contains(f.Usage, env) {
			f.Usage += " (" + env + ")"
		}
	})
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			out := fs.Output()
			fs.SetOutput(fs.stdout)
			fs.Usage()
			fs.SetOutput(out)
			return flag.ErrHelp
		}
	}
	if err := fs.FlagSet.Parse(args); err != nil {
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
func (fs *FlagSet) ParseInterspersed(args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
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

// Size registers a size flag (ByteSize) with a default and help.
func (fs *FlagSet) Size(p *int64, name string, value int64, usage string) {
	*p = value
	fs.Var((*ByteSize)(p), name, usage+" (a `size` such as 64MiB or 1.5GiB)")
}

// DurationVar registers a duration flag that also takes days (DurationValue).
func (fs *FlagSet) DurationVar(p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*DurationValue)(p), name, usage+" (a `duration` such as 90s, 36h or 7d)")
}

// Duration is DurationVar returning the value's address.
func (fs *FlagSet) Duration(name string, value time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	fs.DurationVar(p, name, value, usage)
	return p
}

// ByteSize is a flag value for sizes such as "64MiB", "1.5GiB", "512k" or
// "1048576", shown with units.
type ByteSize int64

func (b *ByteSize) String() string { return units.BytesSize(float64(*b)) }

// Set parses a size (ParseByteSize).
func (b *ByteSize) Set(s string) error {
	n, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = ByteSize(n)
	return nil
}

// ParseByteSize reads a non-negative size with an optional unit, B, K/KB/KiB,
// M/MB/MiB, G/GB/GiB, T/TB/TiB, all powers of 1024 as operators mean for
// memory; the number may have decimals.
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	n, err := units.RAMInBytes(t)
	if err != nil || strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("size %q: want a number with an optional unit such as 64MiB or 1.5GiB", s)
	}
	// go-units converts through a float: a size past int64 comes out
	// negative or rounded to the limit.
	if n < 0 || n >= math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n, nil
}

// DurationValue is a flag value for durations as time.ParseDuration reads
// them, plus days: "7d", "1d12h", "36h".
type DurationValue time.Duration

func (d *DurationValue) String() string { return FormatDuration(time.Duration(*d)) }

// Set parses a duration (ParseDuration).
func (d *DurationValue) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = DurationValue(v)
	return nil
}

var days = regexp.MustCompile(`^(\d+(?:\.\d+)?)d`)

// ParseDuration reads a duration such as 90s, 36h or 7d (a day is 24 hours).
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	var total time.Duration
	if m := days.FindStringSubmatch(t); m != nil {
		d, err := strconv.ParseFloat(m[1], 64)
		if err != nil || d > 1e5 {
			return 0, fmt.Errorf("duration %q: too large", s)
		}
		total = time.Duration(d * 24 * float64(time.Hour))
		t = t[len(m[0]):]
		if t == "" {
			return total, nil
		}
	}
	rest, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want a duration such as 90s, 36h or 7d", s)
	}
	return total + rest, nil
}

// FormatDuration writes whole days as days (168h0m0s is 7d).
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// List is a flag that may be given several times; one value may also hold
// several separated by ";" (as IMMUT_* variables do).
type List []string

func (l *List) String() string { return strings.Join(*l, ";") }

// Set adds the value's parts.
func (l *List) Set(s string) error {
	for _, p := range strings.Split(s, ";") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}
