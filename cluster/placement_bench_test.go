package cluster_test

import (
	"fmt"
	"testing"

	"cnm/cluster"
)

const (
	benchNodes    = 100
	benchPerNode  = 100 // 10,000 shards in all
	benchShardMem = int64(1 << 30)
)

// benchCluster is 100 eligible nodes in racks r0..r9, each holding
// benchPerNode shards of benchShardMem, with room for maxShards shards and
// ample memory.
func benchCluster(maxShards int) []cluster.Candidate {
	nodes := make([]cluster.Candidate, benchNodes)
	for i := range nodes {
		nodes[i] = cluster.Candidate{
			UID:        i + 1,
			Rack:       fmt.Sprintf("r%d", i%10),
			Eligible:   true,
			MaxShards:  maxShards,
			Memory:     1 << 40,
			UsedShards: benchPerNode,
			UsedMemory: benchPerNode * benchShardMem,
		}
	}
	return nodes
}

// wholeNodeRequest moves every shard of node 1: half are replicas or masters
// whose pair lives on another node, all must leave node 1.
func wholeNodeRequest() []cluster.Need {
	needs := make([]cluster.Need, benchPerNode)
	for j := range needs {
		needs[j] = cluster.Need{ID: fmt.Sprintf("s%d", j), Memory: benchShardMem, Pair: -1, Avoid: []int{1}}
		if j%2 == 0 {
			needs[j].PairNode = 2 + j%(benchNodes-1)
		}
	}
	return needs
}

func benchPlan(b *testing.B, nodes []cluster.Candidate, needs []cluster.Need, pol cluster.Policy, wantErr bool) {
	b.Helper()
	plan, err := cluster.Plan(nodes, needs, pol)
	switch {
	case wantErr && err == nil:
		b.Fatalf("Plan found %v, want no home", plan)
	case !wantErr && err != nil:
		b.Fatalf("Plan: %v", err)
	case !wantErr:
		if err := checkPlan(nodes, needs, pol, plan); err != nil {
			b.Fatalf("plan breaks a rule: %v", err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = cluster.Plan(nodes, needs, pol)
	}
}

func BenchmarkPlan_WholeNode_100Nodes10kShards(b *testing.B) {
	benchPlan(b, benchCluster(200), wholeNodeRequest(), cluster.Policy{RackAware: true}, false)
}

func BenchmarkPlan_WholeNode_100Nodes10kShards_Dense(b *testing.B) {
	benchPlan(b, benchCluster(200), wholeNodeRequest(), cluster.Policy{RackAware: true, Dense: true}, false)
}

// The same request when the other 99 nodes have one free slot each: the
// 100th shard has no home, which the planner can only conclude after its
// search gives up.
func BenchmarkPlan_WholeNode_100Nodes10kShards_NoRoom(b *testing.B) {
	benchPlan(b, benchCluster(benchPerNode+1), wholeNodeRequest(), cluster.Policy{RackAware: true}, true)
}

func BenchmarkPlan_CreateDB_512ShardsReplicated(b *testing.B) {
	needs := make([]cluster.Need, 1024)
	for i := range needs {
		needs[i] = cluster.Need{ID: fmt.Sprintf("s%d", i), Memory: benchShardMem, Pair: i ^ 1}
	}
	benchPlan(b, benchCluster(200), needs, cluster.Policy{RackAware: true}, false)
}
