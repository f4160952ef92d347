package replication

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Monitor watches one primary and its standby for /monitor/replication and
// /metrics. Each call looks afresh (two short connections); nothing runs in
// the background.
type Monitor struct {
	src Sources
	th  Thresholds
}

// NewMonitor returns a Monitor of the servers in src, judged by th.
func NewMonitor(src Sources, th Thresholds) *Monitor { return &Monitor{src: src, th: th} }

// Status looks at both servers now.
func (m *Monitor) Status(ctx context.Context) Status { return Inspect(ctx, m.src) }

// Check is the /monitor/replication answer: httpapi.Config.Replication.
func (m *Monitor) Check(ctx context.Context) (ok bool, line string) {
	return Check(m.Status(ctx), m.th)
}

// Register adds the replication gauges to reg. They are computed at scrape
// time, from one Status per scrape.
func (m *Monitor) Register(reg *prometheus.Registry) error {
	return reg.Register(&collector{m: m})
}

var (
	descUp = prometheus.NewDesc("immut_replication_up",
		"1 if the server answered the replication status queries, by role (primary, standby).", []string{"node"}, nil)
	descInRecovery = prometheus.NewDesc("immut_replication_in_recovery",
		"1 if the server is in recovery (a standby), 0 if it accepts writes, by role as configured.", []string{"node"}, nil)
	descLagBytes = prometheus.NewDesc("immut_replication_lag_bytes",
		"Primary WAL insert position minus the standby's replay position; -1 if unknown.", nil, nil)
	descLagSeconds = prometheus.NewDesc("immut_replication_lag_seconds",
		"0 if the standby replayed everything, else seconds since it last replayed a commit (overstates after idle periods).", nil, nil)
	descArchived = prometheus.NewDesc("immut_replication_archived_segments",
		"WAL files archived by the primary since its statistics were reset (pg_stat_archiver.archived_count).", nil, nil)
	descFailed = prometheus.NewDesc("immut_replication_archive_failures",
		"Failed archive_command runs on the primary (pg_stat_archiver.failed_count).", nil, nil)
	descFailing = prometheus.NewDesc("immut_replication_archive_failing",
		"1 if the primary's last archive attempt failed.", nil, nil)
	descBacklog = prometheus.NewDesc("immut_replication_archive_backlog_segments",
		"Finished WAL segments waiting to be archived (.ready files).", nil, nil)
	descOldestReady = prometheus.NewDesc("immut_replication_archive_oldest_ready_seconds",
		"Age of the oldest WAL segment waiting to be archived; 0 if none.", nil, nil)
	descLastArchived = prometheus.NewDesc("immut_replication_last_archived_age_seconds",
		"Seconds since the primary last archived a WAL file; -1 if never.", nil, nil)
	descOK = prometheus.NewDesc("immut_replication_ok",
		"1 if /monitor/replication answers ServiceOK.", nil, nil)
)

type collector struct{ m *Monitor }

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descInRecovery, descLagBytes, descLagSeconds, descArchived,
		descFailed, descFailing, descBacklog, descOldestReady, descLastArchived, descOK} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := c.m.Status(ctx)
	ok, _ := Check(st, c.m.th)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, n := range []struct {
		name string
		node Node
	}{{"primary", st.Primary}, {"standby", st.Standby}} {
		gauge(descUp, b2f(n.node.Reachable), n.name)
		if n.node.Reachable {
			gauge(descInRecovery, b2f(n.node.InRecovery), n.name)
		}
	}
	gauge(descLagBytes, float64(st.LagBytes))
	gauge(descLagSeconds, st.LagSeconds)
	a := st.Archiver
	if st.Primary.Reachable && !st.Primary.InRecovery {
		gauge(descArchived, float64(a.ArchivedCount))
		gauge(descFailed, float64(a.FailedCount))
		gauge(descFailing, b2f(a.Failing))
		gauge(descBacklog, float64(a.Backlog))
		oldest := 0.0
		if a.OldestReady != nil {
			oldest = st.CheckedAt.Sub(*a.OldestReady).Seconds()
		}
		gauge(descOldestReady, oldest)
		last := -1.0
		if a.LastArchivedTime != nil {
			last = st.CheckedAt.Sub(*a.LastArchivedTime).Seconds()
		}
		gauge(descLastArchived, last)
	}
	gauge(descOK, b2f(ok))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
