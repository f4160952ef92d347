package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/immut/immut/cachefront"
)

// FrontConfig is the caching front of a single-host deployment.
type FrontConfig struct {
	// Listen is the first public port: front port i forwards to worker i.
	// Port 0 picks free ports.
	Listen string
	// CacheSize and MaxObject: see cachefront.Config. Zero: its defaults.
	CacheSize, MaxObject int64
	// Admin is the front's admin listener (metrics, purge); empty for none.
	Admin string
	// MaxConns, BodyTimeout, MinBodyRate, UploadTimeout: see
	// cachefront.Config. Zero: its defaults.
	MaxConns      int
	BodyTimeout   time.Duration
	MinBodyRate   int64
	UploadTimeout time.Duration
	// PublicMetrics and MonitorNets: see cachefront.Config.
	PublicMetrics bool
	MonitorNets   []netip.Prefix
}

// Endpoints are where a running deployment answers.
type Endpoints struct {
	// Fronts[i] is front port i; Workers[i] the worker it forwards to.
	Fronts, Workers []string
	// Admin is the front's admin listener, if any.
	Admin string
}

// Topology is the app tier behind the front, with the control socket.
type Topology struct {
	Tier  TierConfig
	Front FrontConfig
	// Token protects purge on the admin listener.
	Token string
	// ControlSocket takes rolling-restart requests; empty for none.
	ControlSocket string
	// Ready is called once the workers and the front are serving.
	Ready  func(Endpoints)
	Logger *slog.Logger
}

// RunTopology starts the workers, then the front on consecutive ports from
// Front.Listen (port i → worker i), and runs until ctx is done; then it stops
// the front first (so no request reaches a stopping worker), then the
// workers.
func RunTopology(ctx context.Context, t Topology) error {
	routes, err := frontRoutes(t.Front.Listen, t.Tier.Workers)
	if err != nil {
		return err
	}
	sup, err := StartTier(ctx, t.Tier)
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sup.Stop(stopCtx)
	}()
	for i, backend := range sup.Addrs() {
		routes[i].Backend = backend
	}
	// This process holds the front's cache: keep it near its budget.
	cachefront.ApplyMemoryLimit(max(t.Front.CacheSize, 0))
	front, err := cachefront.New(cachefront.Config{
		Routes: routes, Admin: t.Front.Admin, Token: t.Token,
		CacheSize: t.Front.CacheSize, MaxObject: t.Front.MaxObject, MaxConns: t.Front.MaxConns,
		BodyTimeout: t.Front.BodyTimeout, MinBodyRate: t.Front.MinBodyRate, UploadTimeout: t.Front.UploadTimeout,
		PublicMetrics: t.Front.PublicMetrics, MonitorNets: t.Front.MonitorNets,
		Logger: t.Logger,
	})
	if err != nil {
		return err
	}
	if err := front.Start(); err != nil {
		return fmt.Errorf("front: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := front.Close(stopCtx); err != nil {
			t.Logger.Error("stopping the front", "err", err)
		}
	}()
	if t.Ready != nil {
		t.Ready(Endpoints{Fronts: front.Addrs(), Workers: sup.Addrs(), Admin: front.AdminAddr()})
	}
	return Supervise(ctx, sup, t.ControlSocket, t.Logger)
}

// frontRoutes are the listen addresses of n front ports from listen.
func frontRoutes(listen string, n int) ([]cachefront.Route, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", listen, err)
	}
	first, err := strconv.Atoi(portStr)
	if err != nil || first < 0 || first+n-1 > 65535 {
		return nil, fmt.Errorf("listen %q: bad port", listen)
	}
	routes := make([]cachefront.Route, n)
	for i := range routes {
		port := 0
		if first != 0 {
			port = first + i
		}
		routes[i].Listen = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return routes, nil
}
