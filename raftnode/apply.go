package raftnode

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"cnm/fsm"
)

// Apply proposes an encoded fsm command and waits until it is applied here.
// A domain error decided by the FSM is returned both in the result and as
// the error (an *fsm.Error).
func (n *Node) Apply(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	if err := n.StorageFault(); err != nil {
		return nil, err
	}
	if n.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := n.raft.Apply(cmd, timeout)
	if err := waitFuture(ctx, f); err != nil {
		if ferr := n.StorageFault(); ferr != nil {
			return nil, ferr
		}
		return nil, n.mapErr(err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("apply: unexpected fsm response %T", f.Response())
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// ReadIndex returns an index such that a state machine which has applied it
// reflects every write acknowledged before the call (the raft read-index
// protocol). Only a ready leader can answer; others get ErrNotLeader.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	for {
		if err := n.StorageFault(); err != nil {
			return 0, err
		}
		term, ready, changed := n.Leadership()
		if n.raft.State() != raft.Leader {
			return 0, ErrNotLeader
		}
		if !ready || term != n.raft.CurrentTerm() {
			// Elected but the first barrier is still in flight.
			select {
			case <-changed:
				continue
			case <-time.After(10 * time.Millisecond):
				continue
			case <-ctx.Done():
				return 0, fmt.Errorf("wait for leader barrier: %w", ctx.Err())
			}
		}
		idx := n.raft.CommitIndex()
		if err := waitFuture(ctx, n.raft.VerifyLeader()); err != nil {
			return 0, n.mapErr(err)
		}
		if n.raft.CurrentTerm() != term {
			continue
		}
		return idx, nil
	}
}

// WaitApplied blocks until the FSM reflects every entry up to index.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	// Entries that never reach the FSM (the leader's no-op, barriers) do not
	// advance its applied index, so once raft has handed every entry up to
	// index to the FSM, the gap is checked for entries the FSM would apply.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if err := n.StorageFault(); err != nil {
			return err
		}
		changed := n.fsm.Changed()
		applied := n.fsm.Applied()
		if applied >= index {
			return nil
		}
		if n.raft.AppliedIndex() >= index && n.onlySkippedEntries(applied+1, index) {
			return nil
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", index, applied, ctx.Err())
		case <-n.done:
			return ErrShutdown
		case <-n.faulted:
		}
	}
}

func (n *Node) onlySkippedEntries(from, to uint64) bool {
	for i := from; i <= to; i++ {
		var l raft.Log
		if err := n.logs.getLog(i, &l); err != nil {
			return false
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}
