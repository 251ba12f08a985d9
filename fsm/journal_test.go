package fsm_test

import (
	"bytes"
	"io"
	"maps"
	"slices"
	"testing"

	"cnm/fsm"
)

// writesSince reads ShardWrites(from) from f's live state, sorted and
// without repeats.
func writesSince(f *fsm.FSM, from uint64) (uids []string, now uint64, ok bool) {
	f.Read(func(s *fsm.State, _ uint64) {
		var w []string
		w, now, ok = s.ShardWrites(from)
		uids = slices.Compact(slices.Sorted(slices.Values(w)))
	})
	return uids, now, ok
}

// The FSM lists the shards each entry writes, so that a reader learns
// what changed since it last looked; a position the list no longer
// covers, or one from before a restore, says to compare everything.
func TestShardWrites_ListWhatEachEntryWrote(t *testing.T) {
	f, apply := actionFSM(t) // database 1: shard 1 on node 1, its replica 2 on node 2
	_, start, ok := writesSince(f, 0)
	if !ok {
		t.Fatal("the live state keeps no list of shard writes")
	}
	steps := []struct {
		name    string
		payload any
		want    []string
	}{
		{"a database created", &fsm.CreateBDB{BDB: fsm.BDB{Name: "two", MemorySize: 1 << 30, ShardsCount: 1, Replication: true,
			DataPersistence: fsm.PersistenceDisabled}, Placement: []int{2, 3}, EndpointNode: 2}, []string{"3", "4"}},
		{"no shard written", &fsm.UpdatePolicy{RackAware: new(bool)}, nil},
		{"a stats report", &fsm.SetShardStats{Node: 2, Shards: []fsm.ShardStat{{UID: "2", Status: fsm.ShardActive, Keys: 3}}}, []string{"2"}},
		{"a database deleted", &fsm.DeleteBDB{UID: 1}, []string{"1", "2"}},
	}
	pos := start
	for _, st := range steps {
		if r := apply(st.payload); r.Err != nil {
			t.Fatalf("%s: %v", st.name, r.Err)
		}
		got, now, ok := writesSince(f, pos)
		if !ok || !slices.Equal(got, st.want) {
			t.Errorf("%s: writes %v (covered %v), want %v", st.name, got, ok, st.want)
		}
		pos = now
	}
	if got, _, _ := writesSince(f, start); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Errorf("all writes since the start: %v", got)
	}
	if _, _, ok := writesSince(f, pos+1); ok {
		t.Error("a position past the end is covered")
	}

	// A copy keeps no list, and a restored state starts one that no
	// position of the state it replaced falls in.
	f.Read(func(s *fsm.State, _ uint64) {
		if _, _, ok := s.Clone().ShardWrites(0); ok {
			t.Error("a copy of the state lists writes")
		}
	})
	if err := f.Restore(io.NopCloser(bytes.NewReader(persist(t, f)))); err != nil {
		t.Fatal(err)
	}
	for _, from := range []uint64{start, pos} {
		if _, _, ok := writesSince(f, from); ok {
			t.Errorf("position %d, from before the restore, is covered after it", from)
		}
	}
	_, after, ok := writesSince(f, pos+1)
	if !ok {
		t.Fatal("the restored state keeps no list of shard writes")
	}
	apply(&fsm.SetShardStats{Node: 2, Shards: []fsm.ShardStat{{UID: "3", Status: fsm.ShardActive}}})
	if got, _, ok := writesSince(f, after); !ok || !slices.Equal(got, []string{"3"}) {
		t.Errorf("after the restore: writes %v (covered %v), want [3]", got, ok)
	}
}

// The list is bounded: a reader left far behind compares everything.
func TestShardWrites_ForgetsTheOldestWrites(t *testing.T) {
	f, apply := actionFSM(t)
	_, start, _ := writesSince(f, 0)
	report := make([]fsm.ShardStat, 1<<12)
	for i := range report {
		report[i] = fsm.ShardStat{UID: "1", Status: fsm.ShardActive}
	}
	for range 1 << 5 { // 2^17 writes in all, twice the bound
		if r := apply(&fsm.SetShardStats{Node: 1, Shards: report}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if _, _, ok := writesSince(f, start); ok {
		t.Error("a position 2^17 writes back is still covered")
	}
	_, now, _ := writesSince(f, 0)
	if got, _, ok := writesSince(f, now-1); !ok || !slices.Equal(got, []string{"1"}) {
		t.Errorf("the latest write: %v (covered %v)", got, ok)
	}
}

// A read view shares the records but not the tables: entries applied
// after it was taken do not show in it.
func TestReadView_StaysAsTheStateWas(t *testing.T) {
	f, apply := actionFSM(t)
	var view *fsm.State
	var before []byte
	f.Read(func(s *fsm.State, _ uint64) {
		view = s.ReadView()
		before = mustJSON(t, s)
	})
	for _, p := range []any{
		&fsm.SetShardStats{Node: 2, Shards: []fsm.ShardStat{{UID: "2", Status: fsm.ShardSyncing, Keys: 9}}},
		&fsm.CreateBDB{BDB: fsm.BDB{Name: "two", MemorySize: 1 << 30, ShardsCount: 1, DataPersistence: fsm.PersistenceDisabled},
			Placement: []int{3}, EndpointNode: 3},
		&fsm.SubmitAction{Action: fsm.Action{TaskID: "t", Action: fsm.ActionEnslaveNode, NodeUID: 1, Deadline: 1 << 40}, By: "test"},
	} {
		if r := apply(p); r.Err != nil {
			t.Fatalf("%T: %v", p, r.Err)
		}
	}
	if got := mustJSON(t, view); !bytes.Equal(got, before) {
		t.Errorf("the view changed with the state:\n%s\nwas\n%s", got, before)
	}
	if p := view.PairOf(view.Shards["1"]); p == nil || p.UID != "2" {
		t.Errorf("the view's pair of shard 1 is %v, want shard 2", p)
	}
}

// A narrow read view holds, of the shard table, the shards named and
// their pairs, as the state had them, and the rest of the tables whole.
func TestReadViewOf_HoldsTheNamedShardsAndTheirPairs(t *testing.T) {
	f, apply := actionFSM(t) // database 1: shard 1 on node 1, its replica 2 on node 2
	if r := apply(&fsm.CreateBDB{BDB: fsm.BDB{Name: "two", MemorySize: 1 << 30, ShardsCount: 1, Replication: true,
		DataPersistence: fsm.PersistenceDisabled}, Placement: []int{2, 3}, EndpointNode: 2}); r.Err != nil {
		t.Fatal(r.Err) // shards 3 and 4
	}
	cases := []struct {
		name  string
		uids  []string
		want  []string
		pairs map[string]string
	}{
		{"a master brings its replica", []string{"1"}, []string{"1", "2"}, map[string]string{"1": "2", "2": "1"}},
		{"a replica brings its master", []string{"4"}, []string{"3", "4"}, map[string]string{"4": "3"}},
		{"two shards", []string{"1", "3"}, []string{"1", "2", "3", "4"}, map[string]string{"1": "2", "3": "4"}},
		{"a shard that is gone", []string{"9"}, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var view *fsm.State
			var nodes, bdbs int
			f.Read(func(s *fsm.State, _ uint64) {
				view = s.ReadViewOf(c.uids...)
				nodes, bdbs = len(s.Nodes), len(s.BDBs)
			})
			if got := slices.Sorted(maps.Keys(view.Shards)); !slices.Equal(got, c.want) {
				t.Errorf("shards %v, want %v", got, c.want)
			}
			for uid, pair := range c.pairs {
				if p := view.PairOf(view.Shards[uid]); p == nil || p.UID != pair {
					t.Errorf("the view's pair of shard %s is %v, want shard %s", uid, p, pair)
				}
			}
			if len(view.Nodes) != nodes || len(view.BDBs) != bdbs {
				t.Errorf("the view holds %d nodes and %d databases, want %d and %d", len(view.Nodes), len(view.BDBs), nodes, bdbs)
			}
		})
	}
}
