package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"cnm/fsm"
)

// Errors a caller can act on.
var (
	// ErrNotLeader: this node does not lead; the command was not applied.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrLeadershipLost: leadership was lost while the command was in flight;
	// it may or may not be applied.
	ErrLeadershipLost = errors.New("leadership lost while applying")
	// ErrShutdown: the node is closing.
	ErrShutdown = errors.New("raft node is shut down")
)

// Node is one raft member and the FSM it drives.
type Node struct {
	cfg   Config
	id    raft.ServerID
	raft  *raft.Raft
	fsm   *fsm.FSM
	bolt  *raftboltdb.BoltStore
	logs  *checkedStore // raft's log and stable store, over bolt
	trans *raft.NetworkTransport
	log   *slog.Logger

	notify chan bool
	done   chan struct{}
	wg     sync.WaitGroup

	mu         sync.Mutex
	readyTerm  uint64        // term in which this node, as leader, committed a barrier
	leaderGen  chan struct{} // closed and replaced whenever readyTerm changes
	shutdownMu sync.Once

	// The first storage fault, and channels closed when it is recorded and
	// when, after a write fault, the disk takes writes again.
	fault     atomic.Pointer[StorageFaultError]
	faulted   chan struct{}
	recovered chan struct{}
	started   atomic.Bool // n.raft is set
	// Goroutines started on a fault (stopping raft, probing the disk),
	// which Shutdown waits for; none start once closed is set.
	bgMu   sync.Mutex
	closed bool
	bg     sync.WaitGroup
}

// Open starts the raft member. It does not bootstrap or join: see
// BootstrapSelf and AddVoter.
//
// A raft.db or snapshot that cannot be read, or whose data fails its
// checksum, is an error naming the file (a *StorageFaultError); a corrupt
// snapshot is moved aside when the log and older snapshots still hold
// everything after it.
func Open(cfg Config, f *fsm.FSM) (*Node, error) {
	cfg.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir %s: %w", cfg.Dir, err)
	}
	log := cfg.Logger.With("component", "raft", "node_uid", cfg.ID)
	hlog := newHCLog(log)
	bolt, store, snaps, err := openStorage(cfg, log, hlog)
	if err != nil {
		return nil, err
	}
	trans, err := openTransport(cfg, log, hlog)
	if err != nil {
		bolt.Close()
		return nil, err
	}
	notify := make(chan bool, 16)
	rc := raftConfig(cfg, hlog, notify)
	n := &Node{
		cfg: cfg, id: rc.LocalID, fsm: f, bolt: bolt, logs: store, trans: trans, log: log,
		notify: notify, done: make(chan struct{}), leaderGen: make(chan struct{}),
		faulted: make(chan struct{}), recovered: make(chan struct{}),
	}
	onFault := n.recordFault
	store.onFault.Store(&onFault)
	r, err := raft.NewRaft(rc, f, store, store, snaps, trans)
	if err != nil {
		return nil, n.abandon(err)
	}
	n.raft = r
	store.running.Store(true)
	n.started.Store(true)
	n.wg.Add(1)
	go n.watchLeadership()
	// A fault recorded before started was set has not stopped raft.
	if ferr := n.StorageFault(); ferr != nil {
		_ = n.Shutdown()
		return nil, ferr
	}
	return n, nil
}

// abandon releases what Open took for a raft that did not start. A storage
// fault met while raft read its state is the error returned, rather than
// raft's, as it names the file.
func (n *Node) abandon(err error) error {
	n.stopBackground()
	n.bg.Wait()
	n.trans.Close()
	n.bolt.Close()
	if ferr := n.StorageFault(); ferr != nil {
		return ferr
	}
	return fmt.Errorf("start raft: %w", err)
}

// stopBackground sets closed, so that a fault starts no more goroutines,
// and closes done, so that those running end.
func (n *Node) stopBackground() {
	n.bgMu.Lock()
	n.closed = true
	n.bgMu.Unlock()
	close(n.done)
}

// ID returns the node uid.
func (n *Node) ID() int { return n.cfg.ID }

// FSM returns the state machine this node drives.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Snapshot forces a snapshot now (which truncates the log).
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Indexes returns raft's commit and last log index.
func (n *Node) Indexes() (commit, last uint64) { return n.raft.CommitIndex(), n.raft.LastIndex() }

// FirstLogIndex returns the oldest index still in the log store.
func (n *Node) FirstLogIndex() (uint64, error) { return n.logs.FirstIndex() }

// Term returns the current raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// Shutdown stops raft and closes the stores. It is safe to call twice.
func (n *Node) Shutdown() error {
	var err error
	n.shutdownMu.Do(func() {
		n.stopBackground()
		if e := n.raft.Shutdown().Error(); e != nil {
			err = fmt.Errorf("shut down raft: %w", e)
		}
		n.wg.Wait()
		n.bg.Wait()
		if e := n.trans.Close(); e != nil && err == nil {
			err = fmt.Errorf("close raft transport: %w", e)
		}
		if e := n.bolt.Close(); e != nil && err == nil {
			err = fmt.Errorf("close log store: %w", e)
		}
	})
	return err
}

// mapErr turns raft's errors into this package's, which tell the caller
// whether the command can have been applied.
func (n *Node) mapErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return err
}

// waitFuture waits for a raft future or ctx. Raft futures cannot be
// cancelled; on ctx's end the future still completes in the background.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("wait for raft: %w", ctx.Err())
	}
}
