package clustertest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

// BenchmarkEnslaveAtScale carries out enslave_node on a 3-node cluster
// holding 10,000 shards (100 replicated databases of 50 shards, file
// backend) and reports the time per step, which docs/BENCHMARKS.md sets
// against one raw raft write.
func BenchmarkEnslaveAtScale(b *testing.B) {
	opts := benchOptions()
	opts.MaxShards, opts.Memory = 5000, 1<<40
	c := clustertest.Start(b, 3, opts)
	leader := c.Leader(30 * time.Second)
	// Sparse: masters on every node, so that a node other than the leader
	// has masters to hand over.
	c.MustDo(leader, "PUT", "/v1/cluster/policy", map[string]any{"default_shards_placement": "sparse"}, http.StatusOK)
	for db := 1; db <= 100; db++ {
		c.MustDo(leader, "POST", "/v1/bdbs", map[string]any{"name": fmt.Sprintf("db%d", db), "memory_size": 50 << 20,
			"shards_count": 50, "replication": true}, http.StatusOK)
	}
	steps, took := 0, time.Duration(0)
	for b.Loop() {
		// The node with the most masters, other than the leader (whose
		// enslave_node would hand leadership over first).
		var shards []struct {
			NodeUID string `json:"node_uid"`
			Role    string `json:"role"`
		}
		c.MustDo(leader, "GET", "/v1/shards", nil, http.StatusOK).JSON(b, &shards)
		masters := map[string]int{}
		for _, sh := range shards {
			if sh.Role == "master" {
				masters[sh.NodeUID]++
			}
		}
		node, most := "", 0
		for uid, n := range masters {
			if uid != fmt.Sprint(leader) && n > most {
				node, most = uid, n
			}
		}
		if node == "" {
			b.Fatalf("no node but the leader hosts masters: %v", masters)
		}
		start := time.Now()
		c.MustDo(leader, "POST", "/v1/nodes/"+node+"/actions/enslave_node", map[string]any{}, http.StatusOK)
		var a struct {
			Status     string `json:"status"`
			Additional struct {
				DoneOps int `json:"done_ops"`
			} `json:"additional_info"`
		}
		clustertest.Eventually(b, 15*time.Minute, func() error {
			r, err := c.Do(leader, "GET", "/v1/nodes/"+node+"/actions/enslave_node", nil)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(r.Body, &a); err != nil {
				return err
			}
			if a.Status != "completed" {
				return fmt.Errorf("enslave_node of node %s is %s at step %d", node, a.Status, a.Additional.DoneOps)
			}
			return nil
		})
		took += time.Since(start)
		steps += a.Additional.DoneOps
	}
	b.ReportMetric(float64(steps)/float64(b.N), "steps")
	b.ReportMetric(float64(took)/float64(time.Millisecond)/float64(steps), "ms/step")
}
