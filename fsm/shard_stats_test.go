package fsm_test

import (
	"testing"

	"cnm/fsm"
)

func TestApply_SetShardStats(t *testing.T) {
	setup := with(threeNodes(), createBDB(newBDB("orders", 2<<30, 1, true), 1, 1, 2))
	stats := func(node int, shards ...fsm.ShardStat) *fsm.SetShardStats {
		return &fsm.SetShardStats{Node: node, Shards: shards}
	}
	runApplyCases(t, []applyCase{
		{
			name:  "records what the node reports of its shards",
			setup: setup,
			cmd:   stats(2, fsm.ShardStat{UID: "2", Status: fsm.ShardSyncing, UsedMemory: 1 << 20, Keys: 7}),
			want: func(s *fsm.State, _ uint64) {
				c := *s.Shards["2"]
				c.Status, c.UsedMemory, c.Keys = fsm.ShardSyncing, 1<<20, 7
				s.Shards["2"] = &c
			},
		},
		{
			name:  "leaves out a shard the state puts on another node",
			setup: setup,
			cmd: stats(2, fsm.ShardStat{UID: "1", Status: fsm.ShardDown},
				fsm.ShardStat{UID: "2", Status: fsm.ShardActive, UsedMemory: 5, Keys: 1}),
			want: func(s *fsm.State, _ uint64) {
				c := *s.Shards["2"]
				c.UsedMemory, c.Keys = 5, 1
				s.Shards["2"] = &c
			},
		},
		{
			name:  "leaves out a shard the state does not know",
			setup: setup,
			cmd:   stats(1, fsm.ShardStat{UID: "99", Status: fsm.ShardActive}),
		},
		{
			name:    "refuses a status that is not a shard status, changing nothing",
			setup:   setup,
			cmd:     stats(1, fsm.ShardStat{UID: "1", Status: fsm.ShardDown}, fsm.ShardStat{UID: "1", Status: "sleeping"}),
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "refuses negative figures",
			setup:   setup,
			cmd:     stats(1, fsm.ShardStat{UID: "1", Status: fsm.ShardActive, Keys: -1}),
			wantErr: fsm.ErrInvalidParameter,
		},
		{
			name:    "refuses an unknown node",
			setup:   setup,
			cmd:     stats(9, fsm.ShardStat{UID: "1", Status: fsm.ShardActive}),
			wantErr: fsm.ErrNodeNotFound,
		},
	})
}
