package main

import (
	"os"
	"path/filepath"
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

func TestCheckOps_AnOlderTermAfterANewerIsAViolation(t *testing.T) {
	c := newCluster("cnmd", t.TempDir(), backendFile, 2, 40)
	write := func(n *proc, lines ...string) {
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(n.dir, "agent-ops.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Node 1: a new leader copies again what the old one copied: fine.
	write(c.node(1), `{"task_id":"a","step":2,"term":26}`, `{"task_id":"a","step":2,"term":27}`, `{"task_id":"b","step":0,"term":3}`)
	// Node 2: the old leader's copy lands after the new leader's.
	write(c.node(2), `{"task_id":"a","step":2,"term":27}`, `{"task_id":"a","step":3,"term":26}`)
	got := c.checkOps()
	if len(got) != 1 || !strings.Contains(got[0], "task a step 4 on node 2") {
		t.Errorf("checkOps = %q, want one violation, node 2's term-26 op after term 27", got)
	}
}
