package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"cnm/fsm"
)

// transferLeaderRunner hands raft leadership off the node, so that it is
// never removed, or emptied of its role, while it leads. The run ends this
// leader's executor; the next leader resumes the action.
var transferLeaderRunner = runner{
	run: (*Executor).transferLeadership,
	describe: func(st fsm.Step) string {
		return fmt.Sprintf("move raft leadership off node %d", st.From)
	},
}

// removeMemberRunner takes the node out of raft, waiting while that would
// leave the voters without a live majority.
var removeMemberRunner = runner{
	run: (*Executor).removeMember,
	describe: func(st fsm.Step) string {
		return fmt.Sprintf("remove node %d from the cluster", st.From)
	},
	// A node already out of raft is past the point of no return: its
	// removal is committed however late, or it would stay in the node
	// table, neither member nor removed.
	pastNoReturn: (*Executor).leftRaft,
	holdsCancel:  true,
}

func (e *Executor) transferLeadership(ctx context.Context, t *turn, st fsm.Step) (string, error) {
	if st.From != e.Raft.ID() {
		return fmt.Sprintf("node %d does not lead", st.From), nil
	}
	// Hand over to a node that takes part fully (active, accepting, not
	// being removed); raft's own choice could be such a node. A failed
	// hand-over (the chosen node slow or just gone) is tried again, with a
	// fresh choice, until the action's deadline.
	attempt := 0
	err := e.retry(ctx, &t.a, "hand raft leadership over", func(ctx context.Context) error {
		to, addr := e.successor(st.From, attempt)
		attempt++
		e.Log.Info("handing leadership over", "task_id", t.a.TaskID, "to", to)
		if to != 0 {
			return e.Raft.TransferLeadershipTo(ctx, to, addr)
		}
		return e.Raft.TransferLeadership(ctx)
	})
	if err != nil {
		return "", fmt.Errorf("transfer leadership: %w", err)
	}
	return "", errYielded
}

func (e *Executor) removeMember(ctx context.Context, t *turn, st fsm.Step) (string, error) {
	err := e.retry(ctx, &t.a, fmt.Sprintf("remove node %d from raft", st.From), func(ctx context.Context) error {
		member, err := e.Raft.IsMember(st.From)
		if err != nil || !member {
			return err
		}
		// The plan moved every shard the node held when it was made; one
		// that is there now would lose its only copy on this node with
		// the node, or be materialised empty should the uid join again.
		if left := shardsOn(e.FSM, st.From); len(left) > 0 {
			return fsm.Errorf(fsm.ErrInsufficientResources, "node %d still hosts shard %s, which came there after the removal was planned: the node is not removed (it accepts no shards; remove it again to move them off)", st.From, strings.Join(left, ", "))
		}
		// A node that went down during the action would leave the
		// remaining voters without a majority, and the configuration
		// change would block every write until it came back: wait.
		servers, err := e.Raft.Servers()
		if err != nil {
			return err
		}
		var voters []int
		for _, sv := range servers {
			if sv.Voter {
				voters = append(voters, sv.UID)
			}
		}
		var live error
		e.FSM.Read(func(s *fsm.State, _ uint64) { live = LiveMajorityWithout(s, voters, st.From) })
		if live != nil {
			return live
		}
		return e.Raft.RemoveServer(ctx, st.From)
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("node %d left the cluster", st.From), nil
}

// shardsOn lists the shards the state puts on node, by uid.
func shardsOn(f *fsm.FSM, node int) []string {
	var out []string
	f.Read(func(s *fsm.State, _ uint64) {
		for uid, sh := range s.Shards {
			if sh.NodeUID == node {
				out = append(out, uid)
			}
		}
	})
	slices.Sort(out)
	return out
}

// leftRaft reports whether the node that st takes out of raft is already out.
func (e *Executor) leftRaft(st fsm.Step) bool {
	member, err := e.Raft.IsMember(st.From)
	return err == nil && !member
}

// successor picks the member to hand leadership to among the nodes other
// than from that accept shards and are raft members, by uid, a different
// one at each attempt (the last may have been unreachable); 0 when there is
// none, and raft chooses.
func (e *Executor) successor(from, attempt int) (uid int, raftAddr string) {
	type cand struct {
		uid  int
		addr string
	}
	var cands []cand
	e.FSM.Read(func(s *fsm.State, _ uint64) {
		for _, id := range s.NodeUIDs() {
			if id != from && s.Takes(id) {
				cands = append(cands, cand{id, s.Nodes[id].RaftAddr})
			}
		}
	})
	var members []cand
	for _, c := range cands {
		if m, err := e.Raft.IsMember(c.uid); err == nil && m {
			members = append(members, c)
		}
	}
	if len(members) == 0 {
		return 0, ""
	}
	c := members[attempt%len(members)]
	return c.uid, c.addr
}
