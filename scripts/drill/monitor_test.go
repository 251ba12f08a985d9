package main

import (
	"strings"
	"testing"
)

func TestMonitor_DelayFailures(t *testing.T) {
	m := newMonitor()
	for id, s := range map[string]span{
		"t1": {node: "2", action: "maintenance_on", status: "failed", failure: "internal_error: deadline passed at step 2 of 5 (move shard 1 from node 2 to node 3)"},
		"t2": {node: "3", action: "remove", status: "failed", failure: "insufficient_resources: shard 11 has no home: placement_conflict: node 1 does not accept shards"},
		"t3": {node: "1", action: "enslave_node", status: "completed"},
		"t4": {node: "1", action: "maintenance_off", status: "failed", failure: "internal_error: copy shard 2 from node 1: node 1 does not answer"},
	} {
		m.tasks[id] = s
	}
	got := m.delayFailures()
	joined := strings.Join(got, "\n")
	if len(got) != 2 || !strings.Contains(joined, "task t1") || !strings.Contains(joined, "task t4") {
		t.Errorf("delay failures = %q, want tasks t1 and t4 only", got)
	}
}
