package clustertest_test

import (
	"fmt"
	"maps"
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
// before each action (step/write), raw raft's Apply in turns with those
// writes (apply-ms), and the steps of actions that promoted
// only replicas on the leader's own node (ms/step-own) and only on the
// other nodes (ms/step-peer). It needs two iterations for both
// (-benchtime 2x or more).
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
	// Raw raft in this process: its Apply, in turns with the cluster's
	// writes before each action, is the yardstick of the same moments.
	raw, _ := rawCluster(b, false)
	cmd := make([]byte, 200)
	// A failover promotes the replica through its node's agent: the
	// leader's own, served in its process, or another node's, one round
	// trip between nodes. Each action is of one kind where the placement
	// allows (it pairs nodes in a ring), the kind measured least so far.
	var all, own, peer perStep
	var writes, applies []time.Duration
	for b.Loop() {
		// The yardsticks of the same moments: sequential writes of one
		// raft entry each through the leader, in turns with raw raft's
		// Apply, just before the action.
		for i := range 30 {
			inTurns(i, func() {
				start := time.Now()
				c.MustDo(leader, "PUT", "/v1/cluster/policy", map[string]any{"rack_aware": i%2 == 0}, http.StatusOK)
				writes = append(writes, time.Since(start))
			}, func() {
				start := time.Now()
				if err := raw.Apply(cmd, 5*time.Second).Error(); err != nil {
					b.Fatal(err)
				}
				applies = append(applies, time.Since(start))
			})
		}
		want := &own
		if peer.steps < own.steps {
			want = &peer
		}
		node, kind := pickEnslaved(b, c, leader, want == &own)
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
		took := time.Duration(a.Additional.EndMS-a.Additional.StartMS) * time.Millisecond
		all.add(a.Additional.DoneOps, took)
		switch kind {
		case promoteOwn:
			own.add(a.Additional.DoneOps, took)
		case promotePeer:
			peer.add(a.Additional.DoneOps, took)
		}
	}
	write := p50(writes)
	b.ReportMetric(float64(all.steps)/float64(b.N), "steps")
	b.ReportMetric(all.ms(), "ms/step")
	for _, k := range []struct {
		unit string
		t    perStep
	}{{"ms/step-own", own}, {"ms/step-peer", peer}} {
		if k.t.steps > 0 {
			b.ReportMetric(k.t.ms(), k.unit)
		}
	}
	b.ReportMetric(ms(write), "write-ms")
	b.ReportMetric(ms(p50(applies)), "apply-ms")
	b.ReportMetric(all.ms()/ms(write), "step/write")
}

// perStep sums the steps of actions and the time they took.
type perStep struct {
	steps int
	took  time.Duration
}

func (p *perStep) add(steps int, took time.Duration) { p.steps, p.took = p.steps+steps, p.took+took }

func (p perStep) ms() float64 {
	return float64(p.took) / float64(p.steps) / float64(time.Millisecond)
}

// The kinds of an enslave_node's promotions: onto the leader's own node,
// onto other nodes, or some of each.
const (
	promoteOwn = iota
	promotePeer
	promoteMixed
)

// pickEnslaved is the node, other than the leader (whose enslave_node
// would hand leadership over first), whose enslave_node promotes only
// replicas on the leader's node (own) or only on others: of those, the
// one with the most masters. With neither, the one with the most masters.
func pickEnslaved(b *testing.B, c *clustertest.Cluster, leader int, own bool) (node string, kind int) {
	b.Helper()
	var shards []struct {
		NodeUID string `json:"node_uid"`
		Role    string `json:"role"`
		BDB     int    `json:"bdb_uid"`
		Slots   string `json:"assigned_slots"`
	}
	c.MustDo(leader, "GET", "/v1/shards", nil, http.StatusOK).JSON(b, &shards)
	// A master's replica is the other shard of its database and slots.
	replicaNode := map[string]string{}
	for _, sh := range shards {
		if sh.Role != "master" {
			replicaNode[fmt.Sprint(sh.BDB, "/", sh.Slots)] = sh.NodeUID
		}
	}
	masters, onLeader := map[string]int{}, map[string]int{}
	for _, sh := range shards {
		if sh.Role == "master" && sh.NodeUID != fmt.Sprint(leader) {
			masters[sh.NodeUID]++
			if replicaNode[fmt.Sprint(sh.BDB, "/", sh.Slots)] == fmt.Sprint(leader) {
				onLeader[sh.NodeUID]++
			}
		}
	}
	kindOf := func(uid string) int {
		switch onLeader[uid] {
		case masters[uid]:
			return promoteOwn
		case 0:
			return promotePeer
		}
		return promoteMixed
	}
	wantKind := promotePeer
	if own {
		wantKind = promoteOwn
	}
	best, bestKind := "", promoteMixed
	for _, uid := range slices.Sorted(maps.Keys(masters)) {
		k := kindOf(uid)
		wanted, bestWanted := k == wantKind, bestKind == wantKind
		if best == "" || wanted && !bestWanted || wanted == bestWanted && masters[uid] > masters[best] {
			best, bestKind = uid, k
		}
	}
	if best == "" {
		b.Fatalf("no node but the leader hosts masters")
	}
	return best, bestKind
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
