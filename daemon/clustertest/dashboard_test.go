package clustertest_test

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

// TestDashboard_EveryMetricItShowsIsServed: docs/grafana-dashboard.json
// queries only metrics a node's /metrics serves, the executor's step
// metrics included once an action ran.
func TestDashboard_EveryMetricItShowsIsServed(t *testing.T) {
	data, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader(15 * time.Second)
	c.MustDo(leader, "POST", "/v1/bdbs", map[string]any{"name": "orders", "memory_size": 1 << 30, "shards_count": 2, "replication": true}, 200)
	other := 1
	if leader == 1 {
		other = 2
	}
	c.MustDo(leader, "POST", "/v1/nodes/"+strconv.Itoa(other)+"/actions/maintenance_on", map[string]any{}, 200)
	var metrics string
	clustertest.Eventually(t, 30*time.Second, func() error {
		r, err := c.Do(c.Leader(15*time.Second), "GET", "/metrics", nil)
		if err != nil {
			return err
		}
		metrics = string(r.Body)
		if !strings.Contains(metrics, "cnm_shard_move_bytes_total ") || !strings.Contains(metrics, `cnm_action_step_duration_seconds_count{kind="move_shard"}`) {
			return errors.New("the leader's executor has committed no move yet")
		}
		return nil
	})
	name := regexp.MustCompile(`cnm_[a-z_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				// cnm_node_fault has a series only while a node refuses to
				// serve for a fault, by its code.
				if m != "cnm_node_fault" && !regexp.MustCompile(`(?m)^`+m+`[ {]`).MatchString(metrics) {
					t.Errorf("panel %q queries %s, which /metrics does not serve", p.Title, m)
				}
			}
		}
	}
}
