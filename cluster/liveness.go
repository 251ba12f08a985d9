package cluster

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"cnm/fsm"
)

// Prober checks that a node answers, and learns how long its cnmd has been
// running.
type Prober interface {
	Ping(ctx context.Context, apiAddr string) (uptime time.Duration, err error)
}

// Applier proposes commands through raft (on the leader).
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (*fsm.Result, error)
}

// Liveness is the leader's watch over the nodes: it marks a node down when
// it has not answered for DownAfter and active again when it answers,
// writing to raft only on those transitions.
type Liveness struct {
	Self      int
	FSM       *fsm.FSM
	Probe     Prober
	Raft      Applier
	Interval  time.Duration // between probes (default 500 ms)
	DownAfter time.Duration // silence before a node is down (default 3 s)
	// Started is when this node's cnmd started: the leader answers its own
	// uptime without a probe.
	Started time.Time
	Log     *slog.Logger
}

// Name implements Worker.
func (l *Liveness) Name() string { return "liveness" }

// Run probes every node until ctx ends. A new term starts with every node
// given the benefit of the doubt: silence is counted from the start of the
// term, not from what an earlier leader saw.
func (l *Liveness) Run(ctx context.Context, term uint64) {
	interval, downAfter := l.Interval, l.DownAfter
	if interval == 0 {
		interval = 500 * time.Millisecond
	}
	if downAfter == 0 {
		downAfter = 3 * time.Second
	}
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	heard := map[int]time.Time{}
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		l.round(ctx, log, heard, start, interval, downAfter)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type nodeAddr struct {
	uid     int
	addr    string
	status  string
	started int64
}

// startSlack is how far a node's reckoned start may drift (probe latency,
// whole seconds of uptime) before the leader records it again: a real
// restart moves it by the node's whole uptime.
const startSlack = 5

func (l *Liveness) round(ctx context.Context, log *slog.Logger, heard map[int]time.Time, start time.Time, interval, downAfter time.Duration) {
	var nodes []nodeAddr
	l.FSM.Read(func(st *fsm.State, _ uint64) {
		for _, uid := range st.NodeUIDs() {
			n := st.Nodes[uid]
			nodes = append(nodes, nodeAddr{uid, n.APIAddr, n.Status, n.StartTime})
		}
	})
	ok := make([]bool, len(nodes))
	uptime := make([]time.Duration, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		if n.uid == l.Self {
			ok[i] = true
			if !l.Started.IsZero() {
				uptime[i] = time.Since(l.Started)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, interval)
			defer cancel()
			up, err := l.Probe.Ping(pctx, n.addr)
			ok[i], uptime[i] = err == nil, up
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	for i, n := range nodes {
		if ok[i] {
			heard[n.uid] = now
		}
		last, seen := heard[n.uid]
		if !seen {
			last = start
		}
		var to string
		var started int64
		if ok[i] && uptime[i] > 0 {
			if s := now.Add(-uptime[i]).Unix(); n.started == 0 || s-n.started > startSlack || n.started-s > startSlack {
				started = s // first heard, or the node restarted
			}
		}
		switch {
		case ok[i] && n.status == fsm.NodeDown:
			to = fsm.NodeActive
		case !ok[i] && n.status == fsm.NodeActive && now.Sub(last) >= downAfter:
			to = fsm.NodeDown
		case started != 0 && n.status != fsm.NodeProvisioning:
			to = n.status
		default:
			continue
		}
		cmd, err := fsm.Encode(&fsm.SetNodeStatus{UID: n.uid, Status: to, StartTime: started})
		if err != nil {
			log.Error("encode node status", "error", err)
			continue
		}
		if _, err := l.Raft.Apply(ctx, cmd); err != nil {
			log.Warn("record node status", "node", n.uid, "status", to, "error", err)
			continue
		}
		log.Info("node status changed", "node", n.uid, "status", to, "silent_for", now.Sub(last).Round(time.Millisecond))
	}
}
