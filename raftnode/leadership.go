package raftnode

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// watchLeadership turns raft's leadership notifications into readyTerm: a
// leader is ready to serve read indexes (and to run leader-only work) once a
// barrier of its own term is committed and applied, which guarantees that
// every entry committed by earlier leaders is applied here too.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case leader := <-n.notify:
			n.setReady(0)
			if !leader {
				n.log.Info("lost leadership")
				continue
			}
			n.becomeReady()
		}
	}
}

// becomeReady commits the post-election barrier and marks the term ready.
// A failed barrier (a slow disk, an FSM still applying a large backlog) is
// retried with backoff for as long as this node leads in the same term:
// giving up would leave a whole term with no executors and no linearizable
// reads. It returns at once on leadership loss, a new term, or Shutdown;
// the notification of the change is then handled by watchLeadership.
func (n *Node) becomeReady() {
	term := n.raft.CurrentTerm()
	backoff := barrierRetryMin
	for attempt := 1; ; attempt++ {
		err := n.cfg.barrier(n.raft, barrierTimeout)
		if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
			return
		}
		if err == nil {
			n.log.Info("leading", "term", term)
			n.setReady(term)
			return
		}
		n.log.Warn("barrier after election failed; retrying", "term", term, "attempt", attempt, "retry_in", backoff, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-n.done:
			t.Stop()
			return
		case <-t.C:
		}
		if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
			return
		}
		backoff = min(2*backoff, barrierRetryMax)
	}
}

// The post-election barrier: how long one attempt may take, and the bounds
// of the backoff between failed attempts (short enough that a leader that
// recovers is ready soon, long enough not to spin on a broken disk).
const (
	barrierTimeout  = 10 * time.Second
	barrierRetryMin = 50 * time.Millisecond
	barrierRetryMax = 2 * time.Second
)

func raftBarrier(r *raft.Raft, timeout time.Duration) error { return r.Barrier(timeout).Error() }

func (n *Node) setReady(term uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fault.Load() != nil {
		// raft, shut down on the fault, may never say it stopped leading;
		// and a barrier that was in flight must not make it ready again.
		term = 0
	}
	if n.readyTerm == term {
		return
	}
	n.readyTerm = term
	close(n.leaderGen)
	n.leaderGen = make(chan struct{})
}

// Leadership reports whether this node is a ready leader, for which term, and
// a channel closed at the next change. Leader-only work starts when ready is
// true and must stop when the channel closes and the term differs; two ready
// terms in a row mean leadership was lost and regained. A storage fault
// ends readiness for good.
func (n *Node) Leadership() (term uint64, ready bool, changed <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.readyTerm, n.readyTerm != 0, n.leaderGen
}

// IsLeader reports whether raft currently thinks this node leads.
func (n *Node) IsLeader() bool { return n.StorageFault() == nil && n.raft.State() == raft.Leader }

// Role returns raft's view of this node in lower case: leader, follower,
// candidate or shutdown. A node with a storage fault is shut down: raft's
// own state can say otherwise, as the call that failed may set it (a
// leader stepping down to follower) after the shutdown did.
func (n *Node) Role() string {
	if n.StorageFault() != nil {
		return "shutdown"
	}
	return strings.ToLower(n.raft.State().String())
}

// Leader returns the uid and raft address of the leader as this node knows
// it; uid 0 when there is none.
func (n *Node) Leader() (uid int, raftAddr string) {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return 0, ""
	}
	uid, err := strconv.Atoi(string(id))
	if err != nil {
		return 0, ""
	}
	return uid, string(addr)
}

// TransferLeadership hands leadership to another voter and waits for it.
func (n *Node) TransferLeadership(ctx context.Context) error {
	if err := waitFuture(ctx, n.raft.LeadershipTransfer()); err != nil {
		return fmt.Errorf("transfer leadership: %w", n.mapErr(err))
	}
	return nil
}

// TransferLeadershipTo hands leadership to the given voter and waits.
func (n *Node) TransferLeadershipTo(ctx context.Context, uid int, raftAddr string) error {
	f := n.raft.LeadershipTransferToServer(raft.ServerID(strconv.Itoa(uid)), raft.ServerAddress(raftAddr))
	if err := waitFuture(ctx, f); err != nil {
		return fmt.Errorf("transfer leadership to %d: %w", uid, n.mapErr(err))
	}
	return nil
}
