package fsm

import "testing"

func TestShardIndex_SharedByViewsNotByClones(t *testing.T) {
	s := NewState()
	for _, sh := range []*Shard{
		{UID: "1", BDBUID: 1, NodeUID: 1, Role: RoleMaster, AssignedSlots: "0-16383"},
		{UID: "2", BDBUID: 1, NodeUID: 2, Role: RoleSlave, AssignedSlots: "0-16383"},
		{UID: "10", BDBUID: 2, NodeUID: 2, Role: RoleMaster, AssignedSlots: "0-16383"},
	} {
		s.Shards[sh.UID] = sh
	}
	s.NextShardUID = 11
	if p := s.PairOf(s.Shards["1"]); p == nil || p.UID != "2" {
		t.Fatalf("PairOf(1) = %v, want shard 2", p)
	}
	if p := s.PairOf(s.Shards["10"]); p != nil {
		t.Fatalf("PairOf(10) = %v: shard 10 has no pair (same slots, other database)", p)
	}
	v := s.View()
	if v.index.Load() != s.index.Load() || v.index.Load() == nil {
		t.Fatal("a View does not share the index")
	}
	if c := s.Clone(); c.index.Load() != nil {
		t.Fatal("a Clone carries the index")
	}
	// A view that gains a shard notices, and pairs it.
	v.Shards["11"] = &Shard{UID: "11", BDBUID: 2, NodeUID: 1, Role: RoleSlave, AssignedSlots: "0-16383"}
	v.NextShardUID = 12
	if p := v.PairOf(v.Shards["10"]); p == nil || p.UID != "11" {
		t.Fatalf("PairOf(10) after shard 11 joined = %v", p)
	}
	if got := v.ShardUIDs(); len(got) != 4 || got[2] != "10" || got[3] != "11" {
		t.Fatalf("ShardUIDs = %v", got)
	}
	if p := s.PairOf(s.Shards["10"]); p != nil {
		t.Fatalf("the original sees the view's shard: %v", p)
	}
}
