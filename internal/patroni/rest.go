package patroni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Member is one server as Patroni's /cluster describes it.
type Member struct {
	Name     string `json:"name"`
	Role     string `json:"role"`  // leader, sync_standby, replica
	State    string `json:"state"` // running, streaming, stopped, crashed, starting, ...
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Timeline int    `json:"timeline"`
	APIURL   string `json:"api_url"`
	// Lag is the replica's lag in bytes behind the leader (absent for the
	// leader; Patroni says "unknown" when it cannot tell, read as -1).
	Lag lag `json:"lag"`
}

type lag int64

func (l *lag) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		*l = -1
		return nil
	}
	*l = lag(n)
	return nil
}

// ClusterStatus is the members of a cluster, as one member reported them.
type ClusterStatus struct {
	Members []Member `json:"members"`
	// From is the REST URL that answered.
	From string `json:"from"`
}

// Leader is the member holding the leader key.
func (s ClusterStatus) Leader() (Member, bool) {
	for _, m := range s.Members {
		if m.Role == "leader" || m.Role == "standby_leader" {
			return m, true
		}
	}
	return Member{}, false
}

// Healthy says whether the cluster has a running leader and every other
// member streams as a synchronous standby or replica, within maxLag bytes;
// the reasons are listed when it does not.
func (s ClusterStatus) Healthy(members int, maxLag int64) (bool, []string) {
	var why []string
	l, ok := s.Leader()
	switch {
	case !ok:
		why = append(why, "no leader")
	case l.State != "running":
		why = append(why, fmt.Sprintf("leader %s is %s", l.Name, l.State))
	}
	if len(s.Members) < members {
		why = append(why, fmt.Sprintf("%d of %d members reported", len(s.Members), members))
	}
	sync := false
	for _, m := range s.Members {
		if m.Role == "leader" {
			continue
		}
		if m.Role == "sync_standby" {
			sync = true
		}
		if m.State != "running" && m.State != "streaming" {
			why = append(why, fmt.Sprintf("%s is %s", m.Name, m.State))
		} else if m.Lag < 0 || int64(m.Lag) > maxLag {
			why = append(why, fmt.Sprintf("%s lags %d bytes", m.Name, m.Lag))
		}
	}
	if ok && members > 1 && !sync {
		why = append(why, "no synchronous standby: commits are acknowledged by the leader alone")
	}
	return len(why) == 0, why
}

var restClient = &http.Client{Timeout: 5 * time.Second}

// Status asks the first member that answers, of urls (Patroni REST base
// URLs), for the cluster's members.
func Status(ctx context.Context, urls []string) (ClusterStatus, error) {
	var errs []error
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(u, "/")+"/cluster", nil)
		if err != nil {
			return ClusterStatus{}, err
		}
		resp, err := restClient.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var st ClusterStatus
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			errs = append(errs, fmt.Errorf("%s/cluster: %s %v", u, resp.Status, err))
			continue
		}
		st.From = u
		return st, nil
	}
	return ClusterStatus{}, fmt.Errorf("no Patroni member answered: %w", errors.Join(errs...))
}

// Switchover asks the cluster for a planned switchover from the current
// leader to candidate (empty: Patroni picks a synchronous standby), and waits
// until the new leader runs.
func Switchover(ctx context.Context, urls []string, candidate string) (Member, error) {
	st, err := Status(ctx, urls)
	if err != nil {
		return Member{}, err
	}
	leader, ok := st.Leader()
	if !ok {
		return Member{}, errors.New("the cluster has no leader to switch over from")
	}
	if candidate == leader.Name {
		return Member{}, fmt.Errorf("%s leads already", candidate)
	}
	body, _ := json.Marshal(map[string]string{"leader": leader.Name, "candidate": candidate})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(st.From, "/")+"/switchover", bytes.NewReader(body))
	if err != nil {
		return Member{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 2 * time.Minute} // Patroni answers once the switch is done
	resp, err := client.Do(req)
	if err != nil {
		return Member{}, fmt.Errorf("switchover: %w", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Member{}, fmt.Errorf("switchover refused: %s %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	var next Member
	err = poll(ctx, time.Minute, "the new leader", func() (bool, error) {
		st, err := Status(ctx, urls)
		if err != nil {
			return false, nil
		}
		l, ok := st.Leader()
		next = l
		return ok && l.Name != leader.Name && l.State == "running", nil
	})
	return next, err
}

// WriteText prints the members, one a line, and the verdict of Healthy as
// one ServiceOK/ServiceKO line.
func (s ClusterStatus) WriteText(w io.Writer, healthy bool, why []string) {
	for _, m := range s.Members {
		lag := ""
		if m.Role != "leader" {
			lag = fmt.Sprintf(", lag %d bytes", m.Lag)
		}
		fmt.Fprintf(w, "%-4s %-12s %-9s %s:%d timeline %d%s\n", m.Name, m.Role, m.State, m.Host, m.Port, m.Timeline, lag)
	}
	if healthy {
		fmt.Fprintln(w, "ServiceOK : cluster healthy")
	} else {
		fmt.Fprintf(w, "ServiceKO : %s\n", strings.Join(why, "; "))
	}
}
