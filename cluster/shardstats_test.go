package cluster

import (
	"reflect"
	"testing"

	"cnm/agent"
	"cnm/fsm"
)

func TestStatsChanged(t *testing.T) {
	state := map[string]*fsm.Shard{
		"1": {UID: "1", NodeUID: 2, Status: fsm.ShardActive, UsedMemory: 1 << 20, Keys: 10},
		"2": {UID: "2", NodeUID: 2, Status: fsm.ShardActive},
		"3": {UID: "3", NodeUID: 1, Status: fsm.ShardActive},
	}
	tests := []struct {
		name string
		got  []agent.Info
		want []fsm.ShardStat
	}{
		{"nothing changed", []agent.Info{{UID: "1", Status: "active", UsedMemory: 1 << 20, Keys: 10}}, nil},
		{"memory moved a little", []agent.Info{{UID: "1", Status: "active", UsedMemory: 1<<20 + memorySlack, Keys: 10}}, nil},
		{"memory moved more", []agent.Info{{UID: "1", Status: "active", UsedMemory: 1<<20 - memorySlack - 1, Keys: 10}},
			[]fsm.ShardStat{{UID: "1", Status: "active", UsedMemory: 1<<20 - memorySlack - 1, Keys: 10}}},
		{"a key more", []agent.Info{{UID: "1", Status: "active", UsedMemory: 1 << 20, Keys: 11}},
			[]fsm.ShardStat{{UID: "1", Status: "active", UsedMemory: 1 << 20, Keys: 11}}},
		{"status", []agent.Info{{UID: "2", Status: "down"}}, []fsm.ShardStat{{UID: "2", Status: "down"}}},
		{"a backend without processes reports no status", []agent.Info{{UID: "2", Size: 99}}, nil},
		{"a shard the state puts elsewhere", []agent.Info{{UID: "3", Status: "down"}}, nil},
		{"a shard the state does not hold", []agent.Info{{UID: "4", Status: "down"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := statsChanged(state, 2, tc.got); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
