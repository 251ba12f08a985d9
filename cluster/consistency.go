package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"cnm/fsm"
)

// Checkpointer is the leader's worker that proposes a checkpoint entry
// every Interval when anything was applied since the last one, so that the
// nodes can compare hashes of their states (ConsistencyCheck).
type Checkpointer struct {
	FSM      *fsm.FSM
	Raft     Applier
	Interval time.Duration
	Log      *slog.Logger
}

// Name implements Worker.
func (c *Checkpointer) Name() string { return "checkpointer" }

// Run implements Worker.
func (c *Checkpointer) Run(ctx context.Context, _ uint64) {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	cmd, err := fsm.Encode(&fsm.Checkpoint{})
	if err != nil {
		panic(fmt.Sprintf("cluster: encode checkpoint: %v", err))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.FSM.LastIsCheckpoint() {
			continue // nothing new to compare
		}
		if _, err := c.Raft.Apply(ctx, cmd); err != nil && ctx.Err() == nil {
			c.Log.Debug("propose checkpoint", "error", err)
		}
	}
}

// Checkpoints asks another node for its hash of its state at a checkpoint
// (peer.Client); found is false when it holds none for index.
type Checkpoints interface {
	Checkpoint(ctx context.Context, addr string, index uint64) (h fsm.StateHash, found bool, err error)
}

// ConsistencyCheck runs on every node: it compares this node's hash of its
// state at its newest checkpoint with the other nodes' hashes at the same
// index. When more nodes disagree with this one than agree (itself
// counted), this node's state is the one that diverged and Diverged is
// called once; the node must then stop serving. A minority that disagrees
// is the other nodes' business: each of them runs this check too.
type ConsistencyCheck struct {
	Self     int
	FSM      *fsm.FSM
	Peers    Checkpoints
	Interval time.Duration
	Log      *slog.Logger
	Diverged func(detail string)
}

// Run checks every Interval until ctx ends or the state diverged.
func (c *ConsistencyCheck) Run(ctx context.Context) {
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	var checked uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		mine, ok := c.FSM.LatestCheckpoint()
		if !ok || mine.Index == checked {
			continue
		}
		verdict, detail := c.compare(ctx, mine)
		switch verdict {
		case verdictDiverged:
			c.Log.Error("this node's state differs from the other nodes'", "index", mine.Index, "detail", detail)
			c.Diverged(detail)
			return
		case verdictAgreed:
			checked = mine.Index
		}
	}
}

type verdict int

const (
	verdictUndecided verdict = iota // too few answers yet; ask again
	verdictAgreed
	verdictDiverged
)

// compare asks every other node for its hash at mine.Index.
func (c *ConsistencyCheck) compare(ctx context.Context, mine fsm.StateHash) (verdict, string) {
	type peer struct {
		uid  int
		addr string
	}
	var peers []peer
	c.FSM.Read(func(st *fsm.State, _ uint64) {
		for _, uid := range st.NodeUIDs() {
			if uid != c.Self {
				peers = append(peers, peer{uid, st.Nodes[uid].APIAddr})
			}
		}
	})
	agree, disagree := 1, 0 // this node agrees with itself
	var against []string
	for _, p := range peers {
		h, found, err := c.Peers.Checkpoint(ctx, p.addr, mine.Index)
		if err != nil || !found {
			continue
		}
		if h.Hash == mine.Hash {
			agree++
		} else {
			disagree++
			against = append(against, fmt.Sprint(p.uid))
		}
	}
	slices.Sort(against)
	detail := fmt.Sprintf("at checkpoint index %d this node's state hash differs from that of node(s) %s", mine.Index, strings.Join(against, ", "))
	switch {
	case disagree > agree:
		return verdictDiverged, detail
	case disagree == 0 && agree > 1:
		return verdictAgreed, ""
	case disagree > 0 && agree > disagree:
		// The others are wrong; this node agreed with a majority.
		return verdictAgreed, ""
	}
	return verdictUndecided, detail
}
