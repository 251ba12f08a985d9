package clustertest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

// BenchmarkFailover kills the leader (as SIGKILL would: no leadership
// transfer) while a maintenance_on runs on another node, and times, from
// the kill, the first write accepted through a surviving node, the new
// leader's claim of the action (its "resumed by leader" event) and the
// action's next committed step (which waits for the shard move that was in
// flight, about a second here). Set against BenchmarkRawRaftFailover in
// docs/BENCHMARKS.md.
func BenchmarkFailover(b *testing.B) {
	opts := benchOptions()
	// Each shard move takes about a second, so the action is still running
	// when the leader dies.
	opts.ShardFileScale, opts.MigrationRate = 1.0/4096, 256<<10
	c := clustertest.Start(b, 3, opts)
	leader := c.Leader(30 * time.Second)
	c.MustDo(leader, "PUT", "/v1/cluster/policy", map[string]any{"default_shards_placement": "sparse"}, http.StatusOK)
	c.MustDo(leader, "POST", "/v1/bdbs", map[string]any{"name": "moving", "memory_size": 12 << 30, "shards_count": 12}, http.StatusOK)
	type actionState struct {
		Status     string `json:"status"`
		Additional struct {
			DoneOps int `json:"done_ops"`
			Events  []struct {
				Message string `json:"message"`
			} `json:"events"`
		} `json:"additional_info"`
	}
	resumedCount := func(a actionState) int {
		n := 0
		for _, e := range a.Additional.Events {
			if strings.HasPrefix(e.Message, "resumed by leader ") {
				n++
			}
		}
		return n
	}
	action := func(via, node int, name string) (actionState, error) {
		var a actionState
		r, err := c.Do(via, "GET", fmt.Sprintf("/v1/nodes/%d/actions/%s", node, name), nil)
		if err != nil {
			return a, err
		}
		if r.Status != http.StatusOK {
			return a, fmt.Errorf("GET action: %d", r.Status)
		}
		return a, json.Unmarshal(r.Body, &a)
	}
	await := func(via, node int, name string, cond func(actionState) error) actionState {
		var a actionState
		clustertest.Eventually(b, 2*time.Minute, func() error {
			var err error
			if a, err = action(via, node, name); err != nil {
				return err
			}
			return cond(a)
		})
		return a
	}
	completed := func(a actionState) error {
		if a.Status != "completed" {
			return fmt.Errorf("action is %s", a.Status)
		}
		return nil
	}
	var writes, claims, resumes []time.Duration
	for b.Loop() {
		leader := c.Leader(30 * time.Second)
		var others []int
		for _, uid := range c.UIDs() {
			if uid != leader {
				others = append(others, uid)
			}
		}
		node, survivor := others[0], others[1]
		c.MustDo(survivor, "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", node), map[string]any{}, http.StatusOK)
		before := await(survivor, node, "maintenance_on", func(a actionState) error {
			if a.Status != "running" || a.Additional.DoneOps < 1 {
				return fmt.Errorf("action is %s at step %d", a.Status, a.Additional.DoneOps)
			}
			return nil
		})
		start := time.Now()
		c.Kill(leader)
		var wg sync.WaitGroup
		var write, claim, resume time.Duration
		wg.Go(func() {
			clustertest.Eventually(b, time.Minute, func() error {
				r, err := c.Do(survivor, "PUT", "/v1/cluster/policy", map[string]any{"rack_aware": false})
				if err == nil && r.Status != http.StatusOK {
					err = fmt.Errorf("PUT policy: %d", r.Status)
				}
				return err
			})
			write = time.Since(start)
		})
		wg.Go(func() {
			claimed := false
			clustertest.Eventually(b, time.Minute, func() error {
				a, err := action(survivor, node, "maintenance_on")
				if err != nil {
					return err
				}
				if !claimed && resumedCount(a) > resumedCount(before) {
					claimed, claim = true, time.Since(start)
				}
				if a.Additional.DoneOps <= before.Additional.DoneOps {
					return fmt.Errorf("still at step %d", a.Additional.DoneOps)
				}
				if !claimed {
					claimed, claim = true, time.Since(start)
				}
				return nil
			})
			resume = time.Since(start)
		})
		wg.Wait()
		writes, claims, resumes = append(writes, write), append(claims, claim), append(resumes, resume)
		b.StopTimer()
		c.StartNode(leader)
		await(survivor, node, "maintenance_on", completed)
		c.MustDo(survivor, "POST", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_off", node), map[string]any{}, http.StatusOK)
		await(survivor, node, "maintenance_off", completed)
		b.StartTimer()
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2]) / float64(time.Millisecond)
	}
	b.ReportMetric(median(writes), "write-ms")
	b.ReportMetric(median(claims), "claim-ms")
	b.ReportMetric(median(resumes), "step-ms")
}
