package fsm_test

import (
	"reflect"
	"testing"

	"cnm/fsm"
)

// modelState is a hand-made state: nodes 1 to 3, database 1 "orders" (two
// replicated slot ranges) and database 2 "cache" (two shards), with shard
// uids that sort differently as strings and as numbers, two snapshots of
// node 2, node 2 in maintenance and a non-default policy.
//
//	shard  db  node  role    slots
//	1      1   1     master  0-8191
//	2      1   2     slave   0-8191
//	3      2   3     master  0-8191
//	10     1   2     master  8192-16383
//	11     1   1     slave   8192-16383
//	20     2   1     master  8192-16383
func modelState() *fsm.State {
	const m, r = fsm.RoleMaster, fsm.RoleSlave
	s := fsm.NewState()
	bootstrapped(s, bootIndex)
	for _, uid := range []int{2, 3} {
		n := node(uid)
		s.Nodes[uid] = &n
	}
	s.Nodes[2].Maintenance = true
	putBDB(s, storedBDB(newBDB("orders", 4*gib, 2, true), 1, 1),
		shard("1", 1, 1, m, 2*gib, "0-8191"),
		shard("2", 1, 2, r, 2*gib, "0-8191"),
		shard("10", 1, 2, m, 2*gib, "8192-16383"),
		shard("11", 1, 1, r, 2*gib, "8192-16383"))
	putBDB(s, storedBDB(newBDB("cache", gib, 2, false), 2, 3),
		shard("3", 2, 3, m, gib/2, "0-8191"),
		shard("20", 2, 1, m, gib/2, "8192-16383"))
	s.NextBDBUID = 3
	s.NextShardUID = 21
	s.Snapshots[2] = []*fsm.NodeSnapshot{olderSnapshot(), latestSnapshot()}
	s.Policy = fsm.Policy{PersistentNodeRemoval: true, DefaultShardsPlacement: fsm.PlacementSparse, RackAware: true}
	return s
}

func shardUIDs(shards []*fsm.Shard) []string {
	out := []string{}
	for _, sh := range shards {
		out = append(out, sh.UID)
	}
	return out
}

func TestState_Usage(t *testing.T) {
	got := modelState().Usage()
	want := map[int]fsm.Usage{
		1: {Shards: 3, Memory: 4*gib + gib/2},
		2: {Shards: 2, Memory: 4 * gib},
		3: {Shards: 1, Memory: gib / 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Usage() = %v, want %v", got, want)
	}
	s := modelState()
	n := node(4)
	s.Nodes[4] = &n
	if u := s.Usage()[4]; u != (fsm.Usage{}) {
		t.Errorf("Usage() of a node without shards = %+v, want zero", u)
	}
	if u := fsm.NewState().Usage(); len(u) != 0 {
		t.Errorf("Usage() of an empty state = %v", u)
	}
}

func TestState_ShardUIDsInNumericOrder(t *testing.T) {
	if got, want := modelState().ShardUIDs(), []string{"1", "2", "3", "10", "11", "20"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ShardUIDs() = %v, want %v", got, want)
	}
	s := fsm.NewState()
	for _, id := range []string{"100", "10", "9", "2", "1", "1000", "99"} {
		s.Shards[id] = &fsm.Shard{UID: id}
	}
	if got, want := s.ShardUIDs(), []string{"1", "2", "9", "10", "99", "100", "1000"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ShardUIDs() = %v, want %v", got, want)
	}
	if got := fsm.NewState().ShardUIDs(); len(got) != 0 {
		t.Errorf("ShardUIDs() of an empty state = %v", got)
	}
}

func TestState_ShardsOfAndOn(t *testing.T) {
	s := modelState()
	cases := []struct {
		name string
		got  []*fsm.Shard
		want []string
	}{
		{"ShardsOf(1)", s.ShardsOf(1), []string{"1", "2", "10", "11"}},
		{"ShardsOf(2)", s.ShardsOf(2), []string{"3", "20"}},
		{"ShardsOf(9)", s.ShardsOf(9), []string{}},
		{"ShardsOn(1)", s.ShardsOn(1), []string{"1", "11", "20"}},
		{"ShardsOn(2)", s.ShardsOn(2), []string{"2", "10"}},
		{"ShardsOn(3)", s.ShardsOn(3), []string{"3"}},
		{"ShardsOn(4)", s.ShardsOn(4), []string{}},
	}
	for _, tc := range cases {
		if got := shardUIDs(tc.got); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
		for _, sh := range tc.got {
			if sh != s.Shards[sh.UID] {
				t.Errorf("%s returned a copy of shard %s, want the state's shard", tc.name, sh.UID)
			}
		}
	}
	byNode := s.ShardUIDsByNode()
	want := map[int][]string{1: {"1", "11", "20"}, 2: {"2", "10"}, 3: {"3"}}
	if !reflect.DeepEqual(byNode, want) {
		t.Errorf("ShardUIDsByNode() = %v, want %v", byNode, want)
	}
}

func TestState_PairOf(t *testing.T) {
	s := modelState()
	for _, tc := range []struct {
		shard, want string // "" for no pair
	}{
		{"1", "2"},
		{"2", "1"},
		{"10", "11"},
		{"11", "10"},
		// Shard 3 has the slots of shards 1 and 2, in another database.
		{"3", ""},
		{"20", ""},
	} {
		got := s.PairOf(s.Shards[tc.shard])
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("PairOf(%s) = shard %s, want none", tc.shard, got.UID)
		case tc.want != "" && (got == nil || got.UID != tc.want):
			t.Errorf("PairOf(%s) = %v, want shard %s", tc.shard, got, tc.want)
		}
	}
}

func TestNode_Accepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(n *fsm.Node)
		want bool
	}{
		{"active and accepting", func(*fsm.Node) {}, true},
		{"down", func(n *fsm.Node) { n.Status = fsm.NodeDown }, false},
		{"provisioning", func(n *fsm.Node) { n.Status = fsm.NodeProvisioning }, false},
		{"decommissioning", func(n *fsm.Node) { n.Status = fsm.NodeDecommissioning }, false},
		{"no status", func(n *fsm.Node) { n.Status = "" }, false},
		{"accept_servers false", func(n *fsm.Node) { n.AcceptServers = false }, false},
		{"in maintenance", func(n *fsm.Node) { n.Maintenance = true }, false},
		{"being removed", func(n *fsm.Node) { n.Removing = true }, false},
		{"full", func(n *fsm.Node) { n.MaxRedisServers = 0 }, true},
	} {
		n := nodeWith(1, tc.edit)
		if got := n.Accepts(); got != tc.want {
			t.Errorf("%s: Accepts() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestState_CloneIsDeep changes a clone in every place that holds a
// pointer or a slice and expects the original untouched, and the other way
// round.
func TestState_CloneIsDeep(t *testing.T) {
	if c := modelState().Clone(); !reflect.DeepEqual(c, modelState()) {
		t.Fatalf("Clone differs from its original\n got: %s\nwant: %s", mustJSON(t, c), mustJSON(t, modelState()))
	}
	changes := []struct {
		name   string
		change func(s *fsm.State)
	}{
		{"bdb field", func(s *fsm.State) { s.BDBs[1].Name = "renamed" }},
		{"bdb endpoint", func(s *fsm.State) { s.BDBs[1].Endpoints[0].NodeUID = 3 }},
		{"bdb endpoint list", func(s *fsm.State) { s.BDBs[2].Endpoints = append(s.BDBs[2].Endpoints[:0], fsm.Endpoint{UID: "x"}) }},
		{"bdb map", func(s *fsm.State) { delete(s.BDBs, 2) }},
		{"shard field", func(s *fsm.State) { s.Shards["1"].NodeUID = 3 }},
		{"shard role", func(s *fsm.State) { s.Shards["10"].Role = fsm.RoleSlave }},
		{"shard map", func(s *fsm.State) { s.Shards["99"] = &fsm.Shard{UID: "99"}; delete(s.Shards, "2") }},
		{"snapshot field", func(s *fsm.State) { s.Snapshots[2][1].Name = "renamed" }},
		{"snapshot list element", func(s *fsm.State) { s.Snapshots[2][0] = &fsm.NodeSnapshot{Name: "other"} }},
		{"snapshot shard", func(s *fsm.State) { s.Snapshots[2][1].Shards[0].Role = fsm.RoleMaster }},
		{"snapshot endpoint", func(s *fsm.State) { s.Snapshots[2][0].Endpoints[0] = "9:1" }},
		{"snapshot map", func(s *fsm.State) { delete(s.Snapshots, 2) }},
		{"node field", func(s *fsm.State) { s.Nodes[2].Maintenance = false }},
		{"user field", func(s *fsm.State) { s.Users[1].Role = fsm.RoleNone }},
		{"policy", func(s *fsm.State) { s.Policy.RackAware = false }},
		{"counters", func(s *fsm.State) { s.NextBDBUID, s.NextShardUID = 99, 99 }},
	}
	for _, tc := range changes {
		t.Run(tc.name, func(t *testing.T) {
			orig := modelState()
			c := orig.Clone()
			tc.change(c)
			if reflect.DeepEqual(c, modelState()) {
				t.Fatal("the change did not change the clone")
			}
			assertState(t, orig, modelState())

			orig = modelState()
			c = orig.Clone()
			tc.change(orig)
			assertState(t, c, modelState())
		})
	}
}
