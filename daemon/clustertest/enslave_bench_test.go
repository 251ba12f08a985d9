package clustertest_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

// BenchmarkEnslaveAtScale carries out enslave_node on a 3-node cluster
// holding 1,000 and 10,000 shards (10 and 100 replicated databases of 50
// shards, file backend) and reports the time per step, which
// docs/BENCHMARKS.md sets against one raw raft write: a step's cost must
// not grow with the shards the step does not touch. It also reports the
// step against a write through the API of the same cluster, measured just
// before each action (step/write).
func BenchmarkEnslaveAtScale(b *testing.B) {
	for _, dbs := range []int{10, 100} {
		b.Run(fmt.Sprintf("shards=%dk", dbs*100/1000), func(b *testing.B) { benchEnslave(b, dbs) })
	}
}

func benchEnslave(b *testing.B, dbs int) {
	opts := benchOptions()
	opts.MaxShards, opts.Memory = 5000, 1<<40
	c := clustertest.Start(b, 3, opts)
	leader := c.Leader(30 * time.Second)
	// Sparse: masters on every node, so that a node other than the leader
	// has masters to hand over.
	c.MustDo(leader, "PUT", "/v1/cluster/policy", map[string]any{"default_shards_placement": "sparse"}, http.StatusOK)
	for db := 1; db <= dbs; db++ {
		c.MustDo(leader, "POST", "/v1/bdbs", map[string]any{"name": fmt.Sprintf("db%d", db), "memory_size": 50 << 20,
			"shards_count": 50, "replication": true}, http.StatusOK)
	}
	awaitShardFiles(b, c, leader)
	steps, took := 0, time.Duration(0)
	var writes []time.Duration
	for b.Loop() {
		// The yardstick of the same cluster at the same time: sequential
		// writes of one raft entry each, through the leader, just before
		// the action.
		for i := range 30 {
			start := time.Now()
			c.MustDo(leader, "PUT", "/v1/cluster/policy", map[string]any{"rack_aware": i%2 == 0}, http.StatusOK)
			writes = append(writes, time.Since(start))
		}
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
		c.MustDo(leader, "POST", "/v1/nodes/"+node+"/actions/enslave_node", map[string]any{}, http.StatusOK)
		// The time is the action's own, from its record (the leader's
		// clock, from its start to its end), so that the poll can be slow
		// enough not to load the cluster it measures.
		var a struct {
			Status     string `json:"status"`
			Additional struct {
				DoneOps int   `json:"done_ops"`
				StartMS int64 `json:"start_time_ms"`
				EndMS   int64 `json:"end_time_ms"`
			} `json:"additional_info"`
		}
		deadline := time.Now().Add(15 * time.Minute)
		poll := time.NewTicker(100 * time.Millisecond)
		for {
			c.MustDo(leader, "GET", "/v1/nodes/"+node+"/actions/enslave_node", nil, http.StatusOK).JSON(b, &a)
			if a.Status == "completed" {
				break
			}
			if a.Status == "failed" || time.Now().After(deadline) {
				b.Fatalf("enslave_node of node %s is %s at step %d", node, a.Status, a.Additional.DoneOps)
			}
			<-poll.C
		}
		poll.Stop()
		took += time.Duration(a.Additional.EndMS-a.Additional.StartMS) * time.Millisecond
		steps += a.Additional.DoneOps
	}
	slices.Sort(writes)
	write := writes[len(writes)/2]
	perStep := took / time.Duration(steps)
	b.ReportMetric(float64(steps)/float64(b.N), "steps")
	b.ReportMetric(float64(perStep)/float64(time.Millisecond), "ms/step")
	b.ReportMetric(float64(write)/float64(time.Millisecond), "write-ms")
	b.ReportMetric(float64(perStep)/float64(write), "step/write")
}

// awaitShardFiles waits until every node's agent holds a file for each
// shard the state assigns to it: creating ten thousand of them, each
// written and fsync'd, takes the disk for many seconds, and an action or
// a yardstick write measured meanwhile would measure that. It counts the
// role records, the last file the file backend writes for a new shard.
func awaitShardFiles(b *testing.B, c *clustertest.Cluster, leader int) {
	b.Helper()
	var shards []struct {
		NodeUID string `json:"node_uid"`
	}
	c.MustDo(leader, "GET", "/v1/shards", nil, http.StatusOK).JSON(b, &shards)
	want := map[string]int{}
	for _, sh := range shards {
		want[sh.NodeUID]++
	}
	clustertest.Eventually(b, 10*time.Minute, func() error {
		for _, uid := range c.UIDs() {
			files, err := filepath.Glob(filepath.Join(c.Member(uid).Cfg.DataDir, "shards", "*.role"))
			if err != nil {
				return err
			}
			if n := want[fmt.Sprint(uid)]; len(files) != n {
				return fmt.Errorf("node %d holds %d shard files of %d", uid, len(files), n)
			}
		}
		return nil
	})
}
