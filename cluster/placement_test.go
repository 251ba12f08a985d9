package cluster_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"cnm/cluster"

	"pgregory.net/rapid"
)

// ---------------------------------------------------------------------------
// Builders

// node is an eligible, empty node with the given capacity.
func node(uid int, rack string, maxShards int, memory int64) cluster.Candidate {
	return cluster.Candidate{UID: uid, Rack: rack, Eligible: true, MaxShards: maxShards, Memory: memory}
}

// holding returns c already hosting shards shards that use mem memory.
func holding(c cluster.Candidate, shards int, mem int64) cluster.Candidate {
	c.UsedShards, c.UsedMemory = shards, mem
	return c
}

// ineligible returns c as a node that must never receive shards.
func ineligible(c cluster.Candidate) cluster.Candidate {
	c.Eligible = false
	return c
}

// need is a shard with no pair and nothing to avoid.
func need(id string, mem int64) cluster.Need {
	return cluster.Need{ID: id, Memory: mem, Pair: -1}
}

// pairedWithNode returns n whose pair already lives on node uid.
func pairedWithNode(n cluster.Need, uid int) cluster.Need {
	n.PairNode = uid
	return n
}

// avoiding returns n that must not go to the given nodes.
func avoiding(n cluster.Need, uids ...int) cluster.Need {
	n.Avoid = uids
	return n
}

// paired marks needs i and j of the request as master and replica.
func paired(needs []cluster.Need, i, j int) []cluster.Need {
	needs[i].Pair, needs[j].Pair = j, i
	return needs
}

var (
	sparse      = cluster.Policy{}
	dense       = cluster.Policy{Dense: true}
	rackSparse  = cluster.Policy{RackAware: true}
	rackDense   = cluster.Policy{RackAware: true, Dense: true}
	overbooking = cluster.Policy{Overbooking: true}
)

func cloneNodes(nodes []cluster.Candidate) []cluster.Candidate { return slices.Clone(nodes) }

func cloneNeeds(needs []cluster.Need) []cluster.Need {
	out := slices.Clone(needs)
	for i := range out {
		out[i].Avoid = slices.Clone(out[i].Avoid)
	}
	return out
}

// ---------------------------------------------------------------------------
// Independent validator

// checkPlan reports the first placement rule (SPEC §5) that plan breaks, or
// nil. A Pair index outside needs is no constraint (the pair is not part of
// this request), as documented on Need.
func checkPlan(nodes []cluster.Candidate, needs []cluster.Need, pol cluster.Policy, plan []int) error {
	if len(plan) != len(needs) {
		return fmt.Errorf("plan has %d entries for %d needs", len(plan), len(needs))
	}
	at := make(map[int]int, len(nodes))
	for i, c := range nodes {
		at[c.UID] = i
	}
	shards := make([]int, len(nodes))
	mem := make([]int64, len(nodes))
	for i, uid := range plan {
		nd := needs[i]
		c, ok := at[uid]
		if !ok {
			return fmt.Errorf("%s placed on unknown node %d", nd.ID, uid)
		}
		if !nodes[c].Eligible {
			return fmt.Errorf("%s placed on ineligible node %d", nd.ID, uid)
		}
		if slices.Contains(nd.Avoid, uid) {
			return fmt.Errorf("%s placed on node %d it must avoid", nd.ID, uid)
		}
		if p := nd.Pair; p >= 0 && p < len(plan) {
			pu := plan[p]
			if pu == uid {
				return fmt.Errorf("%s placed on node %d with its pair %s", nd.ID, uid, needs[p].ID)
			}
			if pol.RackAware && nodes[at[pu]].Rack == nodes[c].Rack {
				return fmt.Errorf("%s placed on node %d in rack %q of its pair %s (node %d)",
					nd.ID, uid, nodes[c].Rack, needs[p].ID, pu)
			}
		} else if nd.PairNode != 0 {
			if nd.PairNode == uid {
				return fmt.Errorf("%s placed on node %d that hosts its pair", nd.ID, uid)
			}
			if pc, ok := at[nd.PairNode]; ok && pol.RackAware && nodes[pc].Rack == nodes[c].Rack {
				return fmt.Errorf("%s placed on node %d in rack %q of its pair's node %d",
					nd.ID, uid, nodes[c].Rack, nd.PairNode)
			}
		}
		shards[c]++
		mem[c] += nd.Memory
	}
	for c, n := range nodes {
		if shards[c] == 0 {
			continue
		}
		if n.UsedShards+shards[c] > n.MaxShards {
			return fmt.Errorf("node %d: %d+%d shards exceed max_redis_servers %d",
				n.UID, n.UsedShards, shards[c], n.MaxShards)
		}
		if !pol.Overbooking && n.UsedMemory+mem[c] > n.Memory {
			return fmt.Errorf("node %d: %d+%d memory exceed %d", n.UID, n.UsedMemory, mem[c], n.Memory)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Exact plans, one group per rule

type planCase struct {
	name  string
	nodes []cluster.Candidate
	needs []cluster.Need
	pol   cluster.Policy
	want  []int
}

func runPlanCases(t *testing.T, cases []planCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodes := cloneNodes(tc.nodes)
			got, err := cluster.Plan(nodes, tc.needs, tc.pol)
			if err != nil {
				t.Fatalf("Plan: %v; want plan %v", err, tc.want)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("plan = %v, want %v", got, tc.want)
			}
			if err := checkPlan(tc.nodes, tc.needs, tc.pol, got); err != nil {
				t.Fatalf("plan %v breaks a rule: %v", got, err)
			}
			if !slices.Equal(nodes, tc.nodes) {
				t.Fatalf("Plan modified its nodes:\n got %+v\nwant %+v", nodes, tc.nodes)
			}
		})
	}
}

func TestPlan_NeverChoosesIneligibleNode(t *testing.T) {
	runPlanCases(t, []planCase{
		{
			name: "sparse skips the emptiest node when it is ineligible",
			nodes: []cluster.Candidate{
				ineligible(node(1, "", 10, 100)),
				holding(node(2, "", 10, 100), 3, 3),
				holding(node(3, "", 10, 100), 5, 5),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   sparse,
			want:  []int{2},
		},
		{
			name: "dense skips the fullest node when it is ineligible",
			nodes: []cluster.Candidate{
				ineligible(holding(node(1, "", 10, 100), 9, 9)),
				holding(node(2, "", 10, 100), 3, 3),
				holding(node(3, "", 10, 100), 5, 5),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   dense,
			want:  []int{3},
		},
		{
			name: "no shard of a request lands on the ineligible node",
			nodes: []cluster.Candidate{
				ineligible(node(1, "", 10, 100)),
				node(2, "", 10, 100),
				node(3, "", 10, 100),
			},
			needs: []cluster.Need{need("a", 1), need("b", 1), need("c", 1), need("d", 1)},
			pol:   sparse,
			want:  []int{2, 3, 2, 3},
		},
		{
			name: "the only eligible node takes every shard even when overbooking",
			nodes: []cluster.Candidate{
				ineligible(node(1, "", 10, 100)),
				node(2, "", 10, 0),
				ineligible(node(3, "", 10, 100)),
			},
			needs: []cluster.Need{need("a", 5), need("b", 5)},
			pol:   overbooking,
			want:  []int{2, 2},
		},
	})
}

func TestPlan_RespectsMaxShards(t *testing.T) {
	runPlanCases(t, []planCase{
		{
			name: "dense skips the fullest node when it is at max_redis_servers",
			nodes: []cluster.Candidate{
				holding(node(1, "", 4, 100), 4, 4),
				holding(node(2, "", 10, 100), 2, 2),
				node(3, "", 10, 100),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   dense,
			want:  []int{2},
		},
		{
			name: "shards placed earlier in the plan count toward max_redis_servers",
			nodes: []cluster.Candidate{
				holding(node(1, "", 3, 100), 2, 2),
				node(2, "", 10, 100),
			},
			needs: []cluster.Need{need("a", 1), need("b", 1), need("c", 1)},
			pol:   dense,
			want:  []int{1, 2, 2},
		},
		{
			name: "a node fills up to exactly max_redis_servers and no further",
			nodes: []cluster.Candidate{
				node(1, "", 2, 100),
				node(2, "", 0, 100),
				holding(node(3, "", 3, 100), 1, 1),
			},
			needs: []cluster.Need{need("a", 1), need("b", 1), need("c", 1), need("d", 1)},
			pol:   sparse,
			// b ties with node 3 and goes to node 1 (lower uid), filling it.
			want: []int{1, 1, 3, 3},
		},
		{
			name: "a node already over max_redis_servers gets nothing",
			nodes: []cluster.Candidate{
				holding(node(1, "", 2, 100), 5, 5),
				node(2, "", 5, 100),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   dense,
			want:  []int{2},
		},
	})
}

func TestPlan_RespectsMemory(t *testing.T) {
	runPlanCases(t, []planCase{
		{
			name: "sparse skips the emptiest node when the shard exceeds its free memory",
			nodes: []cluster.Candidate{
				node(1, "", 10, 5),
				holding(node(2, "", 10, 10), 3, 3),
			},
			needs: []cluster.Need{need("a", 6)},
			pol:   sparse,
			want:  []int{2},
		},
		{
			name: "a shard that exactly fills the free memory fits",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 10), 2, 4),
				node(2, "", 10, 100),
			},
			needs: []cluster.Need{need("a", 6)},
			pol:   dense,
			want:  []int{1},
		},
		{
			name: "memory of shards placed earlier in the plan counts",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 10), 1, 2),
				node(2, "", 10, 100),
			},
			needs: []cluster.Need{need("a", 5), need("b", 5), need("c", 3)},
			pol:   dense,
			// a fills node 1 to 7 of 10; b (5) no longer fits there; c (3) does.
			want: []int{1, 2, 1},
		},
		{
			name: "overbooking ignores memory",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 10), 1, 2),
				node(2, "", 10, 100),
			},
			needs: []cluster.Need{need("a", 5), need("b", 5), need("c", 3)},
			pol:   cluster.Policy{Dense: true, Overbooking: true},
			want:  []int{1, 1, 1},
		},
		{
			name: "overbooking places on a node with no memory at all",
			nodes: []cluster.Candidate{
				node(1, "", 10, 0),
				holding(node(2, "", 10, 100), 1, 1),
			},
			needs: []cluster.Need{need("a", 50)},
			pol:   overbooking,
			want:  []int{1},
		},
		{
			name: "overbooking still respects max_redis_servers",
			nodes: []cluster.Candidate{
				holding(node(1, "", 2, 0), 1, 0),
				node(2, "", 10, 0),
			},
			needs: []cluster.Need{need("a", 5), need("b", 5), need("c", 5)},
			pol:   cluster.Policy{Dense: true, Overbooking: true},
			want:  []int{1, 2, 2},
		},
	})
}

func TestPlan_MasterNeverOnTheNodeOfItsPairInTheSameRequest(t *testing.T) {
	threeNodes := []cluster.Candidate{
		holding(node(1, "", 10, 100), 5, 5),
		node(2, "", 10, 100),
		holding(node(3, "", 10, 100), 2, 2),
	}
	runPlanCases(t, []planCase{
		{
			name:  "dense sends the replica to the next fullest node, not its master's",
			nodes: threeNodes,
			needs: paired([]cluster.Need{need("m", 1), need("r", 1)}, 0, 1),
			pol:   dense,
			want:  []int{1, 3},
		},
		{
			name:  "the rule holds when the replica comes before its master",
			nodes: threeNodes,
			needs: paired([]cluster.Need{need("r", 1), need("m", 1)}, 0, 1),
			pol:   dense,
			want:  []int{1, 3},
		},
		{
			name:  "unpaired shards may share a node",
			nodes: threeNodes,
			needs: []cluster.Need{need("a", 1), need("b", 1)},
			pol:   dense,
			want:  []int{1, 1},
		},
		{
			name:  "pairs far apart in the request",
			nodes: []cluster.Candidate{node(1, "", 10, 100), node(2, "", 10, 100)},
			needs: paired(paired([]cluster.Need{
				need("m1", 1), need("m2", 1), need("x", 1), need("r2", 1), need("r1", 1),
			}, 0, 4), 1, 3),
			pol: dense,
			// Dense packs node 1 except for the replicas.
			want: []int{1, 1, 1, 2, 2},
		},
	})
}

func TestPlan_ShardNeverOnTheNodeThatHostsItsPair(t *testing.T) {
	runPlanCases(t, []planCase{
		{
			name: "dense skips the fullest node when it hosts the pair",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 100), 5, 5),
				holding(node(2, "", 10, 100), 3, 3),
				node(3, "", 10, 100),
			},
			needs: []cluster.Need{pairedWithNode(need("r", 1), 1)},
			pol:   dense,
			want:  []int{2},
		},
		{
			name: "sparse skips the emptiest node when it hosts the pair",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 100), 5, 5),
				node(2, "", 10, 100),
				holding(node(3, "", 10, 100), 3, 3),
			},
			needs: []cluster.Need{pairedWithNode(need("r", 1), 2)},
			pol:   sparse,
			want:  []int{3},
		},
		{
			name: "each shard avoids its own pair's node only",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 100), 5, 5),
				holding(node(2, "", 10, 100), 4, 4),
			},
			needs: []cluster.Need{
				pairedWithNode(need("a", 1), 1),
				pairedWithNode(need("b", 1), 2),
				need("c", 1),
			},
			pol:  dense,
			want: []int{2, 1, 1},
		},
	})
}

func TestPlan_RespectsAvoid(t *testing.T) {
	runPlanCases(t, []planCase{
		{
			name: "sparse skips the emptiest node when the shard avoids it",
			nodes: []cluster.Candidate{
				node(1, "", 10, 100),
				holding(node(2, "", 10, 100), 1, 1),
			},
			needs: []cluster.Need{avoiding(need("a", 1), 1)},
			pol:   sparse,
			want:  []int{2},
		},
		{
			name: "dense skips every avoided node",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 100), 5, 5),
				holding(node(2, "", 10, 100), 4, 4),
				holding(node(3, "", 10, 100), 1, 1),
			},
			needs: []cluster.Need{avoiding(need("a", 1), 2, 1)},
			pol:   dense,
			want:  []int{3},
		},
		{
			name: "avoid applies to its own shard only",
			nodes: []cluster.Candidate{
				node(1, "", 10, 100),
				node(2, "", 10, 100),
			},
			needs: []cluster.Need{avoiding(need("a", 1), 1), need("b", 1), avoiding(need("c", 1), 2)},
			pol:   dense,
			want:  []int{2, 2, 1},
		},
	})
}

func TestPlan_RackAwareNeverPutsAShardInItsPairsRack(t *testing.T) {
	racks := []cluster.Candidate{
		holding(node(1, "r0", 10, 100), 5, 5),
		holding(node(2, "r0", 10, 100), 4, 4),
		node(3, "r1", 10, 100),
	}
	runPlanCases(t, []planCase{
		{
			name:  "rack aware: replica of an already placed master leaves its rack",
			nodes: racks,
			needs: []cluster.Need{pairedWithNode(need("r", 1), 1)},
			pol:   rackDense,
			want:  []int{3},
		},
		{
			name:  "not rack aware: replica may stay in its master's rack",
			nodes: racks,
			needs: []cluster.Need{pairedWithNode(need("r", 1), 1)},
			pol:   dense,
			want:  []int{2},
		},
		{
			name:  "rack aware: pair placed by the same request is split across racks",
			nodes: racks,
			needs: paired([]cluster.Need{need("m", 1), need("r", 1)}, 0, 1),
			pol:   rackDense,
			want:  []int{1, 3},
		},
		{
			name:  "not rack aware: pair placed by the same request may share a rack",
			nodes: racks,
			needs: paired([]cluster.Need{need("m", 1), need("r", 1)}, 0, 1),
			pol:   dense,
			want:  []int{1, 2},
		},
		{
			name:  "rack aware: unpaired shards may share a rack",
			nodes: racks,
			needs: []cluster.Need{need("a", 1), need("b", 1)},
			pol:   rackDense,
			want:  []int{1, 1},
		},
		{
			name: "rack aware: the rack of a pair on an ineligible node still counts",
			nodes: []cluster.Candidate{
				ineligible(node(1, "r0", 10, 100)),
				node(2, "r0", 10, 100),
				holding(node(3, "r1", 10, 100), 7, 7),
			},
			needs: []cluster.Need{pairedWithNode(need("r", 1), 1)},
			pol:   rackSparse,
			want:  []int{3},
		},
	})
}

func TestPlan_SparsePicksTheEmptiestNode(t *testing.T) {
	runPlanCases(t, []planCase{
		{
			name: "fewest shards wins over least used memory",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 100), 3, 0),
				holding(node(2, "", 10, 100), 2, 9),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   sparse,
			want:  []int{2},
		},
		{
			name: "equal shard counts: least used memory wins",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 100), 2, 5),
				holding(node(2, "", 10, 100), 2, 3),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   sparse,
			want:  []int{2},
		},
		{
			name: "equal shards and memory: lowest uid wins, whatever the input order",
			nodes: []cluster.Candidate{
				holding(node(7, "", 10, 100), 1, 1),
				holding(node(3, "", 10, 100), 1, 1),
				holding(node(5, "", 10, 100), 1, 1),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   sparse,
			want:  []int{3},
		},
		{
			name: "used memory, not free memory, breaks the tie",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 10), 1, 4),
				holding(node(2, "", 10, 100), 1, 5),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   sparse,
			want:  []int{1},
		},
		{
			name:  "a request spreads over empty nodes, accounting for each shard",
			nodes: []cluster.Candidate{node(3, "", 10, 100), node(1, "", 10, 100), node(2, "", 10, 100)},
			needs: []cluster.Need{need("a", 2), need("b", 1), need("c", 1), need("d", 1)},
			pol:   sparse,
			// After a,b,c every node holds one shard; node 1 holds the most memory.
			want: []int{1, 2, 3, 2},
		},
	})
}

func TestPlan_DensePicksTheFullestNode(t *testing.T) {
	runPlanCases(t, []planCase{
		{
			name: "most shards wins over most used memory",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 100), 2, 9),
				holding(node(2, "", 10, 100), 3, 0),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   dense,
			want:  []int{2},
		},
		{
			name: "equal shard counts: most used memory wins",
			nodes: []cluster.Candidate{
				holding(node(1, "", 10, 100), 2, 3),
				holding(node(2, "", 10, 100), 2, 5),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   dense,
			want:  []int{2},
		},
		{
			name: "equal shards and memory: lowest uid wins, whatever the input order",
			nodes: []cluster.Candidate{
				holding(node(7, "", 10, 100), 1, 1),
				holding(node(3, "", 10, 100), 1, 1),
				holding(node(5, "", 10, 100), 1, 1),
			},
			needs: []cluster.Need{need("a", 1)},
			pol:   dense,
			want:  []int{3},
		},
		{
			name:  "a request packs empty nodes one after the other",
			nodes: []cluster.Candidate{node(2, "", 2, 100), node(1, "", 2, 100), node(3, "", 2, 100)},
			needs: []cluster.Need{need("a", 1), need("b", 1), need("c", 1), need("d", 1), need("e", 1)},
			pol:   dense,
			want:  []int{1, 1, 2, 2, 3},
		},
	})
}

func TestPlan_FindsPlanWhenTheGreedyChoiceDeadEnds(t *testing.T) {
	// Ten nodes with room for two small shards each; node 1 alone can also
	// take the big shard, but not once a small shard is on it.
	var tenNodes []cluster.Candidate
	for uid := 1; uid <= 10; uid++ {
		mem := int64(2)
		if uid == 1 {
			mem = 10
		}
		tenNodes = append(tenNodes, node(uid, "", 2, mem))
	}
	var smallThenBig []cluster.Need
	for i := range 12 {
		smallThenBig = append(smallThenBig, need(fmt.Sprintf("small%d", i), 1))
	}
	smallThenBig = append(smallThenBig, need("big", 10))
	wantSmallThenBig := []int{2, 3, 4, 5, 6, 7, 8, 9, 10, 2, 3, 4, 1}

	runPlanCases(t, []planCase{
		{
			name:  "memory: the small shard must leave room for the big one",
			nodes: []cluster.Candidate{node(1, "", 10, 10), node(2, "", 10, 4)},
			needs: []cluster.Need{need("small", 3), need("big", 8)},
			pol:   sparse,
			want:  []int{2, 1},
		},
		{
			name: "max_redis_servers: dense must not fill the node the next shard needs",
			nodes: []cluster.Candidate{
				holding(node(1, "", 2, 100), 1, 1),
				node(2, "", 1, 100),
			},
			needs: []cluster.Need{need("a", 1), avoiding(need("b", 1), 2)},
			pol:   dense,
			want:  []int{2, 1},
		},
		{
			name:  "placed pair: the unpaired shard must leave the other node free",
			nodes: []cluster.Candidate{node(1, "", 1, 100), node(2, "", 1, 100)},
			needs: []cluster.Need{need("a", 1), pairedWithNode(need("r", 1), 2)},
			pol:   sparse,
			want:  []int{2, 1},
		},
		{
			name: "rack aware pair: the unpaired shard must not take the only other rack",
			nodes: []cluster.Candidate{
				node(1, "r1", 1, 100),
				node(2, "r0", 1, 100),
				node(3, "r0", 1, 100),
			},
			needs: paired([]cluster.Need{need("x", 1), need("m", 1), need("r", 1)}, 1, 2),
			pol:   rackSparse,
			want:  []int{2, 1, 3},
		},
		{
			// Chronological backtracking must undo the very first choice
			// here, under eleven later ones with many alternatives each.
			name:  "memory: a realistic request whose first choice starves its last shard",
			nodes: tenNodes,
			needs: smallThenBig,
			pol:   sparse,
			want:  wantSmallThenBig,
		},
	})
}

// ---------------------------------------------------------------------------
// Errors

func TestPlan_NoHomeErrorNamesTheFirstShardWithoutHomeAndWhy(t *testing.T) {
	two := func(maxShards int, mem int64) []cluster.Candidate {
		return []cluster.Candidate{node(1, "r0", maxShards, mem), node(2, "r0", maxShards, mem)}
	}
	cases := []struct {
		name   string
		nodes  []cluster.Candidate
		needs  []cluster.Need
		pol    cluster.Policy
		shard  string
		memory int64
		reason string // substring of Reason
	}{
		{
			name:   "no eligible node",
			nodes:  []cluster.Candidate{ineligible(node(1, "", 10, 100)), ineligible(node(2, "", 10, 100))},
			needs:  []cluster.Need{need("a", 1)},
			shard:  "a",
			memory: 1,
			reason: "no node accepts shards",
		},
		{
			name:   "no nodes at all",
			needs:  []cluster.Need{need("a", 1)},
			shard:  "a",
			memory: 1,
			reason: "no node accepts shards",
		},
		{
			name:   "the shard is larger than any free memory",
			nodes:  []cluster.Candidate{holding(node(1, "", 10, 10), 1, 5), node(2, "", 10, 5)},
			needs:  []cluster.Need{need("a", 6)},
			shard:  "a",
			memory: 6,
			reason: "memory",
		},
		{
			name:   "every node is at max_redis_servers",
			nodes:  []cluster.Candidate{holding(node(1, "", 2, 100), 2, 2), node(2, "", 0, 100)},
			needs:  []cluster.Need{need("a", 1)},
			shard:  "a",
			memory: 1,
			reason: "max_redis_servers",
		},
		{
			name:   "overbooking: every node is at max_redis_servers",
			nodes:  []cluster.Candidate{holding(node(1, "", 2, 0), 2, 2)},
			needs:  []cluster.Need{need("a", 1)},
			pol:    overbooking,
			shard:  "a",
			memory: 1,
			reason: "max_redis_servers",
		},
		{
			name:   "the only node with room hosts the shard's pair",
			nodes:  []cluster.Candidate{node(1, "r0", 10, 100), holding(node(2, "r1", 1, 100), 1, 1)},
			needs:  []cluster.Need{pairedWithNode(need("r", 1), 1)},
			shard:  "r",
			memory: 1,
			reason: "hosts its master or replica",
		},
		{
			name:   "rack aware: every node with room is in the rack of the placed pair",
			nodes:  []cluster.Candidate{node(1, "r0", 10, 100), node(2, "r0", 10, 100)},
			needs:  []cluster.Need{pairedWithNode(need("r", 1), 1)},
			pol:    rackSparse,
			shard:  "r",
			memory: 1,
			reason: "rack",
		},
		{
			name:   "the first shard without a home is named, not a later one",
			nodes:  two(10, 10),
			needs:  []cluster.Need{need("a", 1), need("b", 50), need("c", 60)},
			shard:  "b",
			memory: 50,
			reason: "memory",
		},
		{
			name:   "a shard that fits alone but not after the earlier shards of the plan: memory",
			nodes:  two(10, 10),
			needs:  []cluster.Need{need("a", 6), need("b", 6), need("c", 6), need("d", 1)},
			shard:  "c",
			memory: 6,
			reason: "memory",
		},
		{
			name:   "a shard that fits alone but not after the earlier shards of the plan: max_redis_servers",
			nodes:  two(1, 100),
			needs:  []cluster.Need{need("a", 1), need("b", 1), need("c", 1)},
			shard:  "c",
			memory: 1,
			reason: "max_redis_servers",
		},
		{
			name:   "rack aware: the replica of a master placed by the same plan has no other rack",
			nodes:  two(10, 100),
			needs:  paired([]cluster.Need{need("m", 1), need("r", 1)}, 0, 1),
			pol:    rackSparse,
			shard:  "r",
			memory: 1,
			reason: "rack",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := cluster.Plan(tc.nodes, tc.needs, tc.pol)
			if err == nil {
				t.Fatalf("Plan = %v, want an error naming %s", plan, tc.shard)
			}
			if plan != nil {
				t.Errorf("Plan returned plan %v with error %v", plan, err)
			}
			if !errors.Is(err, cluster.ErrNoHome) {
				t.Errorf("errors.Is(%v, ErrNoHome) = false", err)
			}
			var nh *cluster.NoHomeError
			if !errors.As(err, &nh) {
				t.Fatalf("error %v (%T) is not a *NoHomeError", err, err)
			}
			if nh.Shard != tc.shard || nh.Memory != tc.memory {
				t.Errorf("NoHomeError names shard %q (%d), want %q (%d)", nh.Shard, nh.Memory, tc.shard, tc.memory)
			}
			if !strings.Contains(nh.Reason, tc.reason) {
				t.Errorf("Reason = %q, want it to mention %q", nh.Reason, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.shard) {
				t.Errorf("Error() = %q does not name shard %q", err.Error(), tc.shard)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Purity

func busyCluster() ([]cluster.Candidate, []cluster.Need) {
	nodes := []cluster.Candidate{
		holding(node(4, "r0", 6, 40), 2, 10),
		holding(node(2, "r1", 5, 30), 1, 3),
		ineligible(holding(node(9, "r0", 8, 80), 3, 9)),
		node(6, "r1", 4, 20),
		holding(node(1, "r2", 7, 50), 4, 20),
	}
	needs := paired(paired([]cluster.Need{
		need("m1", 4), need("r1", 4), need("m2", 3), need("x", 6),
		pairedWithNode(need("r3", 5), 9), avoiding(need("y", 2), 4, 1), need("r2", 3),
	}, 0, 1), 2, 6)
	return nodes, needs
}

func TestPlan_SameInputGivesTheSamePlan(t *testing.T) {
	nodes, needs := busyCluster()
	policies := []struct {
		name string
		pol  cluster.Policy
	}{
		{"sparse", sparse}, {"dense", dense}, {"rack aware sparse", rackSparse},
		{"rack aware dense", rackDense}, {"overbooking", overbooking},
	}
	for _, p := range policies {
		pol := p.pol
		t.Run(p.name, func(t *testing.T) {
			first, err1 := cluster.Plan(nodes, needs, pol)
			for range 5 {
				again, err2 := cluster.Plan(cloneNodes(nodes), cloneNeeds(needs), pol)
				if !slices.Equal(first, again) || fmt.Sprint(err1) != fmt.Sprint(err2) {
					t.Fatalf("Plan differs between runs: %v, %v then %v, %v", first, err1, again, err2)
				}
			}
			if err1 != nil {
				t.Fatalf("Plan: %v", err1)
			}
			if err := checkPlan(nodes, needs, pol, first); err != nil {
				t.Fatalf("plan %v breaks a rule: %v", first, err)
			}
		})
	}
}

func TestPlan_SameFailingInputGivesTheSameError(t *testing.T) {
	nodes := []cluster.Candidate{node(1, "r0", 2, 10), node(2, "r0", 2, 10)}
	needs := []cluster.Need{need("a", 4), need("b", 4), need("c", 4), need("d", 4), need("e", 4)}
	_, err1 := cluster.Plan(nodes, needs, sparse)
	_, err2 := cluster.Plan(nodes, needs, sparse)
	if err1 == nil || err1.Error() != err2.Error() {
		t.Fatalf("errors differ or are missing: %v then %v", err1, err2)
	}
}

func TestPlan_DoesNotModifyItsInputs(t *testing.T) {
	nodes, needs := busyCluster()
	wantNodes, wantNeeds := cloneNodes(nodes), cloneNeeds(needs)
	for _, pol := range []cluster.Policy{sparse, dense, rackDense} {
		if _, err := cluster.Plan(nodes, needs, pol); err != nil {
			t.Fatalf("Plan(%+v): %v", pol, err)
		}
	}
	// A failing plan backtracks through every node: still no trace left.
	tooBig := append(cloneNeeds(needs), need("huge", 1000))
	if _, err := cluster.Plan(nodes, tooBig, sparse); err == nil {
		t.Fatal("Plan placed a shard bigger than any node")
	}
	if !slices.Equal(nodes, wantNodes) {
		t.Errorf("nodes modified:\n got %+v\nwant %+v", nodes, wantNodes)
	}
	if !reflect.DeepEqual(needs, wantNeeds) {
		t.Errorf("needs modified:\n got %+v\nwant %+v", needs, wantNeeds)
	}
}

// ---------------------------------------------------------------------------
// Properties, against a brute-force search

type scenario struct {
	nodes []cluster.Candidate
	needs []cluster.Need
	pol   cluster.Policy
}

// drawScenario draws 1-4 nodes (racks r0/r1, room for 0-4 shards and 0-10
// memory, some ineligible, some already used) and 1-5 shards (memory 1-5,
// some paired with each other, some with a placed pair, some avoiding
// nodes) under any policy. rapid favours small numbers, so node counts and
// capacities count down from the top: roomy clusters are common and tight
// ones still occur.
func drawScenario(t *rapid.T) scenario {
	n := 4 - rapid.IntRange(0, 3).Draw(t, "nodesBelow4")
	uids := rapid.SliceOfNDistinct(rapid.IntRange(1, 9), n, n, rapid.ID[int]).Draw(t, "uids")
	nodes := make([]cluster.Candidate, n)
	for i, uid := range uids {
		c := cluster.Candidate{
			UID:       uid,
			Rack:      rapid.SampledFrom([]string{"r0", "r1"}).Draw(t, "rack"),
			Eligible:  rapid.IntRange(0, 4).Draw(t, "eligible") > 0,
			MaxShards: 4 - rapid.IntRange(0, 4).Draw(t, "maxShardsBelow4"),
			Memory:    10 - rapid.Int64Range(0, 10).Draw(t, "memoryBelow10"),
		}
		if rapid.Bool().Draw(t, "preUsed") {
			c.UsedShards = rapid.IntRange(0, c.MaxShards).Draw(t, "usedShards")
			c.UsedMemory = rapid.Int64Range(0, c.Memory).Draw(t, "usedMemory")
		}
		nodes[i] = c
	}
	k := rapid.IntRange(1, 5).Draw(t, "needs")
	needs := make([]cluster.Need, k)
	for i := range needs {
		needs[i] = need(fmt.Sprintf("s%d", i), rapid.Int64Range(1, 5).Draw(t, "needMemory"))
	}
	indices := make([]int, k)
	for i := range indices {
		indices[i] = i
	}
	order := rapid.Permutation(indices).Draw(t, "pairOrder")
	pairs := rapid.IntRange(0, k/2).Draw(t, "pairs")
	for p := range pairs {
		paired(needs, order[2*p], order[2*p+1])
	}
	for i := range needs {
		if needs[i].Pair < 0 {
			if j := rapid.IntRange(-2*n, n-1).Draw(t, "pairNode"); j >= 0 {
				needs[i].PairNode = uids[j]
			}
		}
		for _, uid := range uids {
			if rapid.IntRange(0, 5).Draw(t, "avoid") == 0 {
				needs[i].Avoid = append(needs[i].Avoid, uid)
			}
		}
	}
	pol := cluster.Policy{
		Dense:       rapid.Bool().Draw(t, "dense"),
		RackAware:   rapid.Bool().Draw(t, "rackAware"),
		Overbooking: rapid.Bool().Draw(t, "overbooking"),
	}
	return scenario{nodes: nodes, needs: needs, pol: pol}
}

// completions calls yield with every valid assignment of s.needs that starts
// with prefix, stopping when yield returns false.
func completions(s scenario, prefix []int, yield func([]int) bool) bool {
	plan := slices.Clone(prefix)
	var rec func() bool
	rec = func() bool {
		if checkPlan(s.nodes, s.needs[:len(plan)], s.pol, plan) != nil {
			return true
		}
		if len(plan) == len(s.needs) {
			return yield(slices.Clone(plan))
		}
		for _, c := range s.nodes {
			plan = append(plan, c.UID)
			ok := rec()
			plan = plan[:len(plan)-1]
			if !ok {
				return false
			}
		}
		return true
	}
	return rec()
}

func completable(s scenario, prefix []int) bool {
	found := false
	completions(s, prefix, func([]int) bool { found = true; return false })
	return found
}

// firstHomeless is the index of the first need that cannot be placed
// together with the needs before it, or -1 when the whole request fits.
func firstHomeless(s scenario) int {
	for k := 1; k <= len(s.needs); k++ {
		if !completable(scenario{nodes: s.nodes, needs: s.needs[:k], pol: s.pol}, nil) {
			return k - 1
		}
	}
	return -1
}

func TestPlanProperty_PlanBreaksNoRule(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawScenario(t)
		plan, err := cluster.Plan(s.nodes, s.needs, s.pol)
		if err != nil {
			return
		}
		if err := checkPlan(s.nodes, s.needs, s.pol, plan); err != nil {
			t.Fatalf("plan %v: %v", plan, err)
		}
	})
}

func TestPlanProperty_FindsAPlanIffOneExistsAndNamesTheFirstShardWithoutHome(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawScenario(t)
		plan, err := cluster.Plan(s.nodes, s.needs, s.pol)
		first := firstHomeless(s)
		switch {
		case first < 0 && err != nil:
			var some []int
			completions(s, nil, func(p []int) bool { some = p; return false })
			t.Fatalf("Plan failed (%v) but %v is a valid plan", err, some)
		case first >= 0 && err == nil:
			t.Fatalf("Plan returned %v but no valid plan exists (%s has no home)", plan, s.needs[first].ID)
		case first >= 0:
			var nh *cluster.NoHomeError
			if !errors.As(err, &nh) || !errors.Is(err, cluster.ErrNoHome) {
				t.Fatalf("error %v (%T) is not a NoHomeError wrapping ErrNoHome", err, err)
			}
			want := s.needs[first]
			if nh.Shard != want.ID || nh.Memory != want.Memory {
				t.Fatalf("error names %s (%d), want %s (%d), the first shard without a home",
					nh.Shard, nh.Memory, want.ID, want.Memory)
			}
			if nh.Reason == "" {
				t.Fatal("error has no reason")
			}
		}
	})
}

// TestPlanProperty_PrefersTheBestNodeThatLeadsToAPlan: each choice of the
// plan is the emptiest (sparse) or fullest (dense) node, counting the shards
// placed before it, among the nodes from which the rest of the request can
// still be placed.
func TestPlanProperty_PrefersTheBestNodeThatLeadsToAPlan(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawScenario(t)
		plan, err := cluster.Plan(s.nodes, s.needs, s.pol)
		if err != nil {
			return
		}
		for i := range plan {
			state := cloneNodes(s.nodes)
			for j, uid := range plan[:i] {
				for c := range state {
					if state[c].UID == uid {
						state[c].UsedShards++
						state[c].UsedMemory += s.needs[j].Memory
					}
				}
			}
			var chosen cluster.Candidate
			for _, c := range state {
				if c.UID == plan[i] {
					chosen = c
				}
			}
			for _, c := range state {
				if !preferred(s.pol, c, chosen) {
					continue
				}
				alt := append(slices.Clone(plan[:i]), c.UID)
				if completable(s, alt) {
					t.Fatalf("plan %v puts %s on node %d, but node %d is preferred (%+v over %+v) and %v can be completed",
						plan, s.needs[i].ID, chosen.UID, c.UID, c, chosen, alt)
				}
			}
		}
	})
}

// preferred reports whether placement should try a before b.
func preferred(pol cluster.Policy, a, b cluster.Candidate) bool {
	if a.UsedShards != b.UsedShards {
		return (a.UsedShards > b.UsedShards) == pol.Dense
	}
	if a.UsedMemory != b.UsedMemory {
		return (a.UsedMemory > b.UsedMemory) == pol.Dense
	}
	return a.UID < b.UID
}

func TestPlanProperty_IsDeterministicAndLeavesItsInputsAlone(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawScenario(t)
		nodes, needs := cloneNodes(s.nodes), cloneNeeds(s.needs)
		plan1, err1 := cluster.Plan(nodes, needs, s.pol)
		plan2, err2 := cluster.Plan(nodes, needs, s.pol)
		if !slices.Equal(plan1, plan2) || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("two runs differ: %v, %v then %v, %v", plan1, err1, plan2, err2)
		}
		if !slices.Equal(nodes, s.nodes) || !reflect.DeepEqual(needs, s.needs) {
			t.Fatalf("Plan modified its inputs")
		}
	})
}
