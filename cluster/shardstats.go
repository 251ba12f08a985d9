package cluster

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// ShardLister asks a node's agent how its shards are doing.
type ShardLister interface {
	List(ctx context.Context, apiAddr string) ([]agent.Info, error)
}

// ShardStats is the leader's watch over the shard processes: it asks every
// answering node's agent about its shards and records, through raft, what
// changed, so that GET /v1/shards reads the same everywhere. Memory in use
// is recorded again only once it moved by more than memorySlack, so that
// an idle cluster writes nothing.
type ShardStats struct {
	FSM    *fsm.FSM
	Agents ShardLister
	Raft   Applier
	// Interval is the time between rounds (default 2 s).
	Interval time.Duration
	Log      *slog.Logger
}

// memorySlack is how far memory in use may drift from what the state says
// before it is recorded again: a shard's allocator moves it by kilobytes
// with no change to its data.
const memorySlack = 64 << 10

// Name implements Worker.
func (w *ShardStats) Name() string { return "shard-stats" }

// Run watches until ctx ends.
func (w *ShardStats) Run(ctx context.Context, _ uint64) {
	interval := w.Interval
	if interval == 0 {
		interval = 2 * time.Second
	}
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w.round(ctx, log, interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *ShardStats) round(ctx context.Context, log *slog.Logger, interval time.Duration) {
	type nodeShards struct {
		uid   int
		addr  string
		state map[string]fsm.Shard
		got   []agent.Info
		err   error
	}
	var nodes []*nodeShards
	w.FSM.Read(func(st *fsm.State, _ uint64) {
		byNode := map[int]map[string]fsm.Shard{}
		for uid, sh := range st.Shards {
			if byNode[sh.NodeUID] == nil {
				byNode[sh.NodeUID] = map[string]fsm.Shard{}
			}
			byNode[sh.NodeUID][uid] = *sh
		}
		for _, uid := range st.NodeUIDs() {
			n := st.Nodes[uid]
			if n.Status == fsm.NodeActive && len(byNode[uid]) > 0 {
				nodes = append(nodes, &nodeShards{uid: uid, addr: n.APIAddr, state: byNode[uid]})
			}
		}
	})
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, interval)
			defer cancel()
			n.got, n.err = w.Agents.List(lctx, n.addr)
		})
	}
	wg.Wait()
	for _, n := range nodes {
		if ctx.Err() != nil {
			return
		}
		if n.err != nil {
			log.Debug("shard stats not read", "node", n.uid, "error", n.err)
			continue
		}
		changed := statsChanged(n.state, n.got)
		if len(changed) == 0 {
			continue
		}
		cmd, err := fsm.Encode(&fsm.SetShardStats{Node: n.uid, Shards: changed})
		if err != nil {
			log.Error("encode shard stats", "error", err)
			continue
		}
		if _, err := w.Raft.Apply(ctx, cmd); err != nil {
			log.Warn("record shard stats", "node", n.uid, "error", err)
		}
	}
}

// statsChanged is what a node's report changes in the state, for the
// shards the state puts on that node. A backend that runs no process
// reports no status, and is left as the state says.
func statsChanged(state map[string]fsm.Shard, got []agent.Info) []fsm.ShardStat {
	var out []fsm.ShardStat
	for _, info := range got {
		sh, ok := state[info.UID]
		if !ok || info.Status == "" {
			continue
		}
		drift := info.UsedMemory - sh.UsedMemory
		if info.Status != sh.Status || info.Keys != sh.Keys || drift > memorySlack || drift < -memorySlack {
			out = append(out, fsm.ShardStat{UID: info.UID, Status: info.Status, UsedMemory: info.UsedMemory, Keys: info.Keys})
		}
	}
	return out
}
