package clustertest_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cnm/daemon/clustertest"
)

// A node stopped gracefully (SIGTERM) while a shard is being copied onto
// it finishes the copy before it stops answering: the cluster does not
// take it for dead while it still works, so the move is committed at
// once, not refused for a target that is down. The action then completes
// once the node is back.
func TestAction_TargetStoppedGracefullyMidCopyFinishesTheMove(t *testing.T) {
	// Copies of about 3 s, longer than the 1 s after which the leader
	// marks a silent node down.
	c := clustertest.Start(t, 3, clustertest.Options{ShardFileScale: 1.0 / 4096, MigrationRate: 96 << 10})
	leader := c.Leader(10 * time.Second)
	createDemo(t, c, leader, 6)
	fs := followers(c, leader)
	emptied, receiver := fs[0], fs[1]
	path := fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", emptied)
	c.MustDo(leader, "POST", path, nil, http.StatusOK)
	// A copy onto the receiver is under way: its temp file is there.
	pattern := filepath.Join(c.Member(receiver).Cfg.DataDir, "shards", "*.data.*.tmp")
	var shard string
	clustertest.Eventually(t, 30*time.Second, func() error {
		m, _ := filepath.Glob(pattern)
		if len(m) == 0 {
			return fmt.Errorf("no copy onto node %d under way", receiver)
		}
		shard, _, _ = strings.Cut(filepath.Base(m[0]), ".data.")
		return nil
	})
	c.Close(receiver)
	moved := fmt.Sprintf("shard %s moved from node %d to node %d", shard, emptied, receiver)
	clustertest.Eventually(t, 10*time.Second, func() error {
		var a actionObj
		c.MustDo(leader, "GET", path, nil, http.StatusOK).JSON(t, &a)
		for _, e := range a.Additional.Events {
			if strings.Contains(e.Message, moved) {
				return nil
			}
		}
		return fmt.Errorf("with node %d stopped, the copy it finished is not committed (%s): %+v", receiver, moved, a.Additional.Events)
	})
	c.StartNode(receiver)
	a := waitAction(t, c, emptied, "maintenance_on", 90*time.Second)
	if a.Status != "completed" {
		t.Fatalf("maintenance_on of node %d, with node %d stopped gracefully mid-copy, ended %s (%s): %+v",
			emptied, receiver, a.Status, a.ErrorCode, a.Additional.Events)
	}
	checkInvariants(t, c, leader)
}
