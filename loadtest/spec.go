package loadtest

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Spec is a load test as a command line writes it: rates, mix, sizes, targets
// and thresholds as text. Config parses it. DefaultSpec holds the values that
// Defaults stand for, so a flag's default and the library's agree.
type Spec struct {
	Targets  string // comma-separated base URLs
	Rate     string // such as 2000/s
	Ramp     string // FROM:TO rates; replaces Rate when set
	Sizes    string // WxH=WEIGHT,...
	Mix      string // op=weight,...
	FailIf   string // thresholds, such as p99<50ms,errors<0.1%
	Duration time.Duration
	Warmup   time.Duration
	MaxLag   time.Duration
	Timeout  time.Duration
	Seed     uint64
	// MaxInFlight, Clients and Corpus: as in Config.
	MaxInFlight, Clients, Corpus int
	ZipfS                        float64
	Token                        string
}

// DefaultSpec is Defaults written as a Spec.
func DefaultSpec() Spec {
	return Spec{
		Targets:     strings.Join(Defaults.Targets, ","),
		Rate:        fmt.Sprintf("%g/s", Defaults.Rate),
		Sizes:       FormatSizes(Defaults.Sizes),
		Mix:         Defaults.Mix.String(),
		Duration:    Defaults.Duration,
		MaxLag:      Defaults.MaxLag,
		Timeout:     Defaults.Timeout,
		Seed:        1,
		MaxInFlight: Defaults.MaxInFlight,
		Clients:     Defaults.Clients,
		Corpus:      Defaults.Corpus,
		ZipfS:       Defaults.ZipfS,
	}
}

// Config parses the spec into a run's Config and its --fail-if thresholds.
func (s Spec) Config() (Config, []Threshold, error) {
	cfg := Config{
		Duration: s.Duration, Warmup: s.Warmup, Seed: s.Seed, MaxInFlight: s.MaxInFlight, MaxLag: s.MaxLag,
		Clients: s.Clients, Corpus: s.Corpus, ZipfS: s.ZipfS, Token: s.Token, Timeout: s.Timeout,
	}
	for _, t := range strings.Split(s.Targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Targets = append(cfg.Targets, t)
		}
	}
	var err error
	if s.Ramp != "" {
		if cfg.Rate, cfg.RampTo, err = ParseRamp(s.Ramp); err != nil {
			return cfg, nil, err
		}
	} else if cfg.Rate, err = ParseRate(s.Rate); err != nil {
		return cfg, nil, err
	}
	if cfg.Mix, err = ParseMix(s.Mix); err != nil {
		return cfg, nil, err
	}
	if cfg.Sizes, err = ParseSizes(s.Sizes); err != nil {
		return cfg, nil, err
	}
	thresholds, err := ParseThresholds(s.FailIf)
	if err != nil {
		return cfg, nil, err
	}
	if s.Duration <= 0 || s.MaxInFlight < 1 || s.Clients < 1 || s.Corpus < 1 || s.ZipfS <= 1 {
		return cfg, nil, errors.New("--duration, --max-inflight, --clients and --corpus must be positive and --zipf-s above 1")
	}
	return cfg, thresholds, nil
}
