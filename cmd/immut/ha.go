package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/immut/immut/internal/cliflag"
	"github.com/immut/immut/internal/node"
	"github.com/immut/immut/internal/patroni"
)

func init() {
	commands["ha"] = command{summary: "the Patroni cluster of immut up --ha (or yours): status, switchover", run: runHA}
}

const haUsage = `usage: immut ha <command> [flags]

  status      members, roles, timeline, lag, synchronous standby (exit 3 when unhealthy)
  switchover  planned switchover to --to MEMBER (default: the synchronous standby)

The cluster is found with --data DIR (immut up --ha) or --patroni URL,... (any member's REST API).
`

func runHA(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := map[string]func(context.Context, []string, io.Writer, io.Writer) error{"status": runHAStatus, "switchover": runHASwitchover}
	if len(args) == 0 || sub[args[0]] == nil {
		fmt.Fprint(stderr, haUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return errUsage
	}
	return sub[args[0]](ctx, args[1:], stdout, stderr)
}

// haFlags find a cluster's REST API.
type haFlags struct{ data, urls string }

func (f *haFlags) register(fs *cliflag.FlagSet) {
	fs.StringVar(&f.data, "data", "", "`directory` of immut up --ha")
	fs.StringVar(&f.urls, "patroni", "", "Patroni REST API `URLs`, comma-separated (instead of --data)")
}

func (f *haFlags) resolve() ([]string, error) {
	if f.urls != "" {
		return strings.Split(f.urls, ","), nil
	}
	if f.data == "" {
		f.data = "./immut-data"
	}
	l, err := node.NewLayout(f.data)
	if err != nil {
		return nil, err
	}
	return patroni.RESTURLsIn(l.HA())
}

func runHAStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("ha status", stdout, stderr)
	var hf haFlags
	hf.register(fs)
	members := fs.Int("members", 0, "members the cluster should have (default: as many as it has URLs for)")
	var maxLag int64
	fs.Size(&maxLag, "max-lag", 16<<20, "unhealthy when a replica is further behind")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	urls, err := hf.resolve()
	if err != nil {
		return err
	}
	if *members == 0 {
		*members = len(urls)
	}
	st, err := patroni.Status(ctx, urls)
	if err != nil {
		return &exitError{code: exitUnreachable, msg: err.Error()}
	}
	ok, why := st.Healthy(*members, maxLag)
	if *asJSON {
		err = writeJSON(stdout, struct {
			patroni.ClusterStatus
			Healthy bool     `json:"healthy"`
			Reasons []string `json:"reasons"`
		}{st, ok, why})
	} else {
		st.WriteText(stdout, ok, why)
	}
	if err == nil && !ok {
		return &exitError{code: exitCheck}
	}
	return err
}

func runHASwitchover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cliflag.NewFlagSet("ha switchover", stdout, stderr)
	var hf haFlags
	hf.register(fs)
	to := fs.String("to", "", "the member to lead (default: Patroni picks the synchronous standby)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	urls, err := hf.resolve()
	if err != nil {
		return err
	}
	next, err := patroni.Switchover(ctx, urls, *to)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s leads now (timeline %d)\n", next.Name, next.Timeline)
	return nil
}
