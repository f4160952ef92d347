package replication_test

import (
	"strings"
	"testing"
	"time"

	"github.com/immut/immut/replication"
)

func TestCheck(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	healthy := func() replication.Status {
		return replication.Status{
			CheckedAt: now,
			Primary:   replication.Node{Reachable: true, CurrentLSN: "0/5000000", Timeline: 1},
			Standby:   replication.Node{Reachable: true, InRecovery: true, ReplayLSN: "0/5000000", Timeline: 1},
			Archiver: replication.Archiver{Mode: "on", ArchivedCount: 4, LastArchivedWAL: "000000010000000000000004",
				LastArchivedTime: ago(10 * time.Second)},
			ArchivedEndLSN: "0/5000000",
			LagBytes:       0,
			SegmentSize:    16 << 20,
		}
	}
	tests := []struct {
		name   string
		change func(*replication.Status)
		th     replication.Thresholds
		want   string // substring of the line; "ServiceOK" for healthy
	}{
		{"healthy", func(*replication.Status) {}, replication.Thresholds{}, "ServiceOK : standby replaying at 0/5000000, lag 0 B"},
		{"primary unreachable", func(s *replication.Status) {
			s.Primary = replication.Node{Error: "connection refused"}
		}, replication.Thresholds{}, "ServiceKO : primary unreachable: connection refused"},
		{"standby unreachable", func(s *replication.Status) {
			s.Standby = replication.Node{Error: "no such file"}
		}, replication.Thresholds{}, "ServiceKO : standby unreachable: no such file"},
		{"two primaries", func(s *replication.Status) {
			s.Standby.InRecovery = false
		}, replication.Thresholds{}, "two primaries"},
		{"promoted, primary gone", func(s *replication.Status) {
			s.Primary = replication.Node{Error: "refused"}
			s.Standby.InRecovery, s.Standby.Timeline = false, 2
		}, replication.Thresholds{}, "the standby is a primary (promoted, timeline 2)"},
		{"primary in recovery", func(s *replication.Status) {
			s.Primary.InRecovery = true
		}, replication.Thresholds{}, "the primary is in recovery"},
		{"archive_mode off", func(s *replication.Status) {
			s.Archiver.Mode = "off"
		}, replication.Thresholds{}, "archive_mode is off"},
		{"archiving failing", func(s *replication.Status) {
			s.Archiver.Failing, s.Archiver.FailedCount = true, 3
			s.Archiver.LastFailedWAL, s.Archiver.LastFailedTime = "000000010000000000000005", ago(time.Second)
		}, replication.Thresholds{}, "archiving failing: 3 failures, last for 000000010000000000000005"},
		{"old backlog", func(s *replication.Status) {
			s.Archiver.Backlog, s.Archiver.OldestReady = 7, ago(3*time.Minute)
		}, replication.Thresholds{}, "7 WAL segments waiting to be archived, the oldest for 3m0s"},
		{"young backlog is fine", func(s *replication.Status) {
			s.Archiver.Backlog, s.Archiver.OldestReady = 1, ago(time.Second)
		}, replication.Thresholds{}, "ServiceOK"},
		{"lag over the default", func(s *replication.Status) {
			s.LagBytes = 300 << 20
		}, replication.Thresholds{}, "standby lag 300.0 MiB over 256.0 MiB"},
		{"lag under a raised threshold", func(s *replication.Status) {
			s.LagBytes = 300 << 20
		}, replication.Thresholds{MaxLagBytes: 1 << 30}, "ServiceOK"},
		{"standby not replaying the archive", func(s *replication.Status) {
			s.Standby.ReplayLSN = "0/3000000"
			s.Archiver.LastArchivedTime = ago(2 * time.Minute)
		}, replication.Thresholds{}, "standby not replaying: archived WAL up to 0/5000000"},
		{"standby just behind the archive", func(s *replication.Status) {
			s.Standby.ReplayLSN = "0/3000000"
			s.Archiver.LastArchivedTime = ago(time.Second)
		}, replication.Thresholds{}, "ServiceOK"},
		{"lag seconds only when asked", func(s *replication.Status) {
			s.LagBytes, s.LagSeconds = 100, 600
		}, replication.Thresholds{}, "ServiceOK"},
		{"lag seconds over the threshold", func(s *replication.Status) {
			s.LagBytes, s.LagSeconds = 100, 600
		}, replication.Thresholds{MaxLagTime: 5 * time.Minute}, "standby lag 600s over 5m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := healthy()
			tc.change(&st)
			ok, line := replication.Check(st, tc.th)
			if ok != strings.HasPrefix(tc.want, "ServiceOK") || !strings.Contains(line, tc.want) {
				t.Fatalf("Check = %v %q, want %q", ok, line, tc.want)
			}
			if strings.Contains(line, "\n") {
				t.Fatalf("line has a newline: %q", line)
			}
		})
	}
}

func TestLSN(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0/0", 0, true},
		{"0/3000000", 0x3000000, true},
		{"16/B374D848", 0x16B374D848, true},
		{"FFFFFFFF/FFFFFFFF", -1, true}, // fits the bits; Go's int64 wraps
		{"", 0, false},
		{"3000000", 0, false},
		{"0/x", 0, false},
		{"1/2/3", 0, false},
	}
	for _, tc := range tests {
		got, err := replication.ParseLSN(tc.in)
		if (err == nil) != tc.ok || tc.ok && got != tc.want {
			t.Errorf("ParseLSN(%q) = %x, %v", tc.in, got, err)
		}
		if tc.ok && replication.FormatLSN(got) != strings.ToUpper(tc.in) {
			t.Errorf("FormatLSN(ParseLSN(%q)) = %q", tc.in, replication.FormatLSN(got))
		}
	}
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "1/", "/1", "x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := replication.ParseLSN(s)
		if err != nil {
			return
		}
		back, err := replication.ParseLSN(replication.FormatLSN(v))
		if err != nil || back != v {
			t.Fatalf("round trip of %q: %x → %q → %x, %v", s, v, replication.FormatLSN(v), back, err)
		}
	})
}
