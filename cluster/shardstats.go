package cluster

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// StatsReader asks a node's agent what its shards' processes report.
type StatsReader interface {
	Stats(ctx context.Context, apiAddr string) ([]agent.Info, error)
}

// ShardStats is the leader's watch over the shard processes: it asks every
// answering node's agent about its shards and records, through raft, what
// changed, so that GET /v1/shards reads the same everywhere. Memory in use
// is recorded again only once it moved by more than memorySlack, so that
// an idle cluster writes nothing.
type ShardStats struct {
	FSM    *fsm.FSM
	Agents StatsReader
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

// round asks every active node, and reads the state only for the shards
// reported: a backend that runs no process reports none, and a round that
// copied the whole shard table held the state's lock for the whole copy.
func (w *ShardStats) round(ctx context.Context, log *slog.Logger, interval time.Duration) {
	type nodeStats struct {
		uid  int
		addr string
		got  []agent.Info
		err  error
	}
	var nodes []*nodeStats
	w.FSM.Read(func(st *fsm.State, _ uint64) {
		for _, uid := range st.NodeUIDs() {
			if n := st.Nodes[uid]; n.Status == fsm.NodeActive {
				nodes = append(nodes, &nodeStats{uid: uid, addr: n.APIAddr})
			}
		}
	})
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, interval)
			defer cancel()
			n.got, n.err = w.Agents.Stats(lctx, n.addr)
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
		if len(n.got) == 0 {
			continue
		}
		var changed []fsm.ShardStat
		w.FSM.Read(func(st *fsm.State, _ uint64) { changed = statsChanged(st.Shards, n.uid, n.got) })
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

// statsChanged is what node's report changes in the state, for the shards
// the state puts on that node. A shard reported without a status is left
// as the state says.
func statsChanged(shards map[string]*fsm.Shard, node int, got []agent.Info) []fsm.ShardStat {
	var out []fsm.ShardStat
	for _, info := range got {
		sh, ok := shards[info.UID]
		if !ok || sh.NodeUID != node || info.Status == "" {
			continue
		}
		drift := info.UsedMemory - sh.UsedMemory
		if info.Status != sh.Status || info.Keys != sh.Keys || drift > memorySlack || drift < -memorySlack {
			out = append(out, fsm.ShardStat{UID: info.UID, Status: info.Status, UsedMemory: info.UsedMemory, Keys: info.Keys})
		}
	}
	return out
}
