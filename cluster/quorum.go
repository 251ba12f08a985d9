package cluster

import (
	"fmt"
	"slices"

	"cnm/fsm"
)

// QuorumCheck refuses an action that would leave the raft voters without a
// majority: voters that are down, in maintenance, being removed or emptied
// by another action do not count, nor does the node the action takes out.
// It counts raft's voters (fsm.State.VoterUIDs), not node-table rows: a
// node still joining does not vote and is no part of the majority.
func QuorumCheck(st *fsm.State, node int, action string) error {
	if action != fsm.ActionRemove && action != fsm.ActionMaintenanceOn {
		return nil
	}
	voters := st.VoterUIDs()
	total := len(voters)
	if action == fsm.ActionRemove && slices.Contains(voters, node) {
		total--
	}
	healthy := 0
	for _, uid := range voters {
		n, ok := st.Nodes[uid]
		if uid == node || !ok || n.Status != fsm.NodeActive || n.Maintenance || n.Removing || st.Emptying(uid) {
			continue
		}
		healthy++
	}
	if total == 0 || healthy <= total/2 {
		return fsm.Errorf(fsm.ErrQuorumLoss, "after %s of node %d only %d of %d voters would be available", action, node, healthy, total)
	}
	return nil
}

// LiveMajorityWithout reports whether, once node leaves, a majority of the
// remaining raft voters is up (in the node table and not marked down by
// the leader's liveness checks). The remove action's last step waits for
// it: quorum is checked when the action is accepted, but a node can go
// down while shards move.
func LiveMajorityWithout(st *fsm.State, voters []int, node int) error {
	remaining, live := 0, 0
	for _, uid := range voters {
		if uid == node {
			continue
		}
		remaining++
		if n, ok := st.Nodes[uid]; ok && (n.Status == fsm.NodeActive || n.Status == fsm.NodeDecommissioning) {
			live++
		}
	}
	if remaining == 0 || live <= remaining/2 {
		return fmt.Errorf("removing node %d now would leave %d of %d voters up; waiting for the others", node, live, remaining)
	}
	return nil
}
