package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// Config describes one raft member.
type Config struct {
	// ID is the node uid; raft server ids are its decimal form.
	ID int
	// RaftAddr is the host:port raft listens on and advertises.
	RaftAddr string
	// Dir holds raft.db and snapshots/.
	Dir string

	// ServerTLS and ClientTLS secure the raft stream (mutual TLS).
	ServerTLS, ClientTLS *tls.Config
	// Listen and Dial default to net.Listen and DefaultDial.
	Listen func(network, addr string) (net.Listener, error)
	Dial   DialFunc

	// Timeouts; zero values take the LAN defaults below.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is how many new entries trigger a snapshot, after
	// which the log is truncated down to TrailingLogs entries.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// Inbound connections to the raft port (SPEC §9): HandshakeTimeout
	// closes a connection that has not completed its TLS handshake (default
	// 5 s); MaxHandshakes caps those still handshaking, closing the oldest
	// at the cap (default 64); MaxConns caps authenticated ones, refusing
	// new ones beyond it (default 256).
	HandshakeTimeout time.Duration
	MaxHandshakes    int
	MaxConns         int

	Logger *slog.Logger

	// barrier commits a barrier; tests replace it to make it fail.
	barrier func(r *raft.Raft, timeout time.Duration) error
	// wrapStores goes between the bolt store and the checks on it; tests
	// inject store failures there.
	wrapStores func(raft.LogStore, raft.StableStore) (raft.LogStore, raft.StableStore)
	// probe tells whether the raft dir takes writes again after a write
	// fault, every probeInterval; tests replace it along with wrapStores.
	probe         func(dir string) error
	probeInterval time.Duration
}

// LAN defaults: a re-election well under a second. CommitTimeout bounds how
// late followers learn a commit index when nothing else is sent, and so how
// long a follower's linearizable read may wait after a write.
const (
	DefaultHeartbeatTimeout   = 200 * time.Millisecond
	DefaultElectionTimeout    = 200 * time.Millisecond
	DefaultLeaderLeaseTimeout = 100 * time.Millisecond
	DefaultCommitTimeout      = 10 * time.Millisecond
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultTrailingLogs       = 4096
	DefaultHandshakeTimeout   = 5 * time.Second
	DefaultMaxHandshakes      = 64
	DefaultMaxConns           = 256
)

func (c *Config) withDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.ElectionTimeout, DefaultElectionTimeout)
	def(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	def(&c.CommitTimeout, DefaultCommitTimeout)
	def(&c.SnapshotInterval, DefaultSnapshotInterval)
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	if c.MaxHandshakes <= 0 {
		c.MaxHandshakes = DefaultMaxHandshakes
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.Listen == nil {
		c.Listen = net.Listen
	}
	if c.Dial == nil {
		c.Dial = DefaultDial
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.barrier == nil {
		c.barrier = raftBarrier
	}
	if c.probe == nil {
		c.probe = probeDir
	}
	if c.probeInterval == 0 {
		c.probeInterval = time.Second
	}
}

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

// HasState reports whether dir already holds raft state, i.e. whether this
// node was bootstrapped or joined before.
func HasState(dir string) (bool, error) {
	path := filepath.Join(dir, "raft.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	bolt, store, err := openStores(path)
	if err != nil {
		return false, err
	}
	defer bolt.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLog(slog.New(slog.DiscardHandler)))
	if err != nil {
		return false, fmt.Errorf("open snapshot store %s: %w", dir, err)
	}
	ok, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return false, fmt.Errorf("inspect raft state in %s: %w", dir, err)
	}
	return ok, nil
}

// openStores opens raft.db and checks every log entry in it, so that a
// garbled file or entry is one clear error here rather than a panic or
// wrong data later.
func openStores(path string) (*raftboltdb.BoltStore, *checkedStore, error) {
	return openStoresWrapped(path, nil)
}

func openStoresWrapped(path string, wrap func(raft.LogStore, raft.StableStore) (raft.LogStore, raft.StableStore)) (*raftboltdb.BoltStore, *checkedStore, error) {
	bolt, keys, err := openBolt(path)
	if err != nil {
		return nil, nil, err
	}
	var logs raft.LogStore = bolt
	var stable raft.StableStore = bolt
	if wrap != nil {
		logs, stable = wrap(logs, stable)
	}
	store := &checkedStore{logs: logs, stable: stable, path: path}
	err = verifyLog(store, keys)
	if err == nil {
		err = verifyStable(store)
	}
	if err != nil {
		bolt.Close()
		return nil, nil, err
	}
	return bolt, store, nil
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

	dbPath := filepath.Join(cfg.Dir, "raft.db")
	bolt, store, err := openStoresWrapped(dbPath, cfg.wrapStores)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("open snapshot store %s: %w", cfg.Dir, err)
	}
	first, err := store.FirstIndex()
	if err == nil {
		var last uint64
		if last, err = store.LastIndex(); err == nil {
			err = setAsideCorruptSnapshots(cfg.Dir, snaps, first, last, log)
		}
	}
	if err != nil {
		bolt.Close()
		return nil, err
	}
	ln, err := cfg.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("listen for raft on %s: %w", cfg.RaftAddr, err)
	}
	limits := inboundLimits{handshakeTimeout: cfg.HandshakeTimeout, maxHandshakes: cfg.MaxHandshakes, maxConns: cfg.MaxConns}
	stream, err := newTLSStream(ln, cfg.RaftAddr, cfg.Dial, cfg.ServerTLS, cfg.ClientTLS, limits, log.With("subsystem", "raft.transport"))
	if err != nil {
		ln.Close()
		bolt.Close()
		return nil, err
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  hlog,
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(strconv.Itoa(cfg.ID))
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.Logger = hlog
	notify := make(chan bool, 16)
	rc.NotifyCh = notify

	n := &Node{
		cfg: cfg, id: rc.LocalID, fsm: f, bolt: bolt, logs: store, trans: trans, log: log,
		notify: notify, done: make(chan struct{}), leaderGen: make(chan struct{}),
		faulted: make(chan struct{}), recovered: make(chan struct{}),
	}
	onFault := n.recordFault
	store.onFault.Store(&onFault)
	r, err := raft.NewRaft(rc, f, store, store, snaps, trans)
	if err != nil {
		n.bgMu.Lock()
		n.closed = true
		n.bgMu.Unlock()
		close(n.done)
		n.bg.Wait()
		trans.Close()
		bolt.Close()
		if ferr := n.StorageFault(); ferr != nil {
			return nil, ferr
		}
		return nil, fmt.Errorf("start raft: %w", err)
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

// StorageFault returns the first storage fault this node met (a
// *StorageFaultError matching ErrStorageFault), or nil. Once it is set,
// raft on this node is shut down: it neither leads nor votes nor applies,
// and Apply, ReadIndex and WaitApplied return the fault. It stays set until
// the node is reopened.
func (n *Node) StorageFault() error {
	if e := n.fault.Load(); e != nil {
		return e
	}
	return nil
}

// StorageFaulted returns a channel closed when a storage fault is recorded.
func (n *Node) StorageFaulted() <-chan struct{} { return n.faulted }

// StorageRecovered returns a channel closed when, after a write fault,
// the raft dir takes writes again (a file written, synced and removed). It
// is never closed for corruption. This node stays stopped: the owner
// reopens it (Shutdown, then Open on the same Config with a fresh FSM,
// which raft rebuilds from the snapshot and log) to rejoin the cluster. A
// raft reopened in place would re-apply entries to an FSM that already
// holds them.
func (n *Node) StorageRecovered() <-chan struct{} { return n.recovered }

// recordFault keeps the first fault and stops raft: a node that cannot
// persist must not lead (raft would just re-elect it, its log being as
// long as anyone's) nor vote, and one whose data is corrupt must not apply
// or serve it.
func (n *Node) recordFault(e *StorageFaultError) {
	if !n.fault.CompareAndSwap(nil, e) {
		return
	}
	n.log.Error("storage fault: raft stopped on this node", "path", e.Path, "op", e.Op, "index", e.Index, "write", e.Write, "error", e.Err)
	n.setReady(0) // leader-only work stops now
	close(n.faulted)
	n.bgMu.Lock()
	defer n.bgMu.Unlock()
	if n.closed {
		return
	}
	if n.started.Load() {
		// Shutdown only closes raft's shutdown channel, so it is called
		// here, to stop raft before it campaigns or answers again; the
		// wait for raft's goroutines is not, as this runs in one of them.
		f := n.raft.Shutdown()
		n.bg.Add(1)
		go func() {
			defer n.bg.Done()
			if err := f.Error(); err != nil {
				n.log.Warn("shut down raft after a storage fault", "error", err)
			}
		}()
	}
	if e.Write {
		n.bg.Add(1)
		go n.probeUntilWritable()
	}
}

// probeUntilWritable closes recovered once the raft dir takes writes.
func (n *Node) probeUntilWritable() {
	defer n.bg.Done()
	t := time.NewTicker(n.cfg.probeInterval)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		if err := n.cfg.probe(n.cfg.Dir); err != nil {
			n.log.Debug("raft dir still refuses writes", "dir", n.cfg.Dir, "error", err)
			continue
		}
		n.log.Info("raft dir takes writes again; the node must be reopened to rejoin", "dir", n.cfg.Dir)
		close(n.recovered)
		return
	}
}

// ID returns the node uid.
func (n *Node) ID() int { return n.cfg.ID }

// FSM returns the state machine this node drives.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// BootstrapSelf makes this node the only voter of a new cluster.
func (n *Node) BootstrapSelf() error {
	f := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: n.id, Address: raft.ServerAddress(n.cfg.RaftAddr),
	}}})
	if err := f.Error(); err != nil {
		return fmt.Errorf("bootstrap raft cluster: %w", err)
	}
	return nil
}

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

// Server is a member of the raft configuration.
type Server struct {
	UID      int
	RaftAddr string
	Voter    bool
}

// Servers returns the current raft configuration.
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", n.mapErr(err))
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		uid, err := strconv.Atoi(string(s.ID))
		if err != nil {
			continue
		}
		out = append(out, Server{UID: uid, RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddVoter adds (or confirms) a voting member. Adding a member that is
// already there with the same address is a no-op, so joins can be retried.
func (n *Node) AddVoter(ctx context.Context, uid int, raftAddr string) error {
	return n.addServer(ctx, uid, raftAddr, true)
}

// AddNonvoter adds a server that receives the log but does not vote, so
// that a joining node catches up before it counts towards quorum. A server
// already in the configuration is left as it is (never demoted).
func (n *Node) AddNonvoter(ctx context.Context, uid int, raftAddr string) error {
	return n.addServer(ctx, uid, raftAddr, false)
}

func (n *Node) addServer(ctx context.Context, uid int, raftAddr string, voter bool) error {
	servers, err := n.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.UID == uid && s.RaftAddr == raftAddr && (s.Voter || !voter) {
			return nil
		}
	}
	id, addr := raft.ServerID(strconv.Itoa(uid)), raft.ServerAddress(raftAddr)
	var f raft.IndexFuture
	kind := "voter"
	if voter {
		f = n.raft.AddVoter(id, addr, 0, 0)
	} else {
		kind, f = "nonvoter", n.raft.AddNonvoter(id, addr, 0, 0)
	}
	if err := waitFuture(ctx, f); err != nil {
		return fmt.Errorf("add %s %s at %s: %w", kind, id, raftAddr, n.mapErr(err))
	}
	return nil
}

// RemoveServer takes a member out of the raft configuration.
func (n *Node) RemoveServer(ctx context.Context, uid int) error {
	f := n.raft.RemoveServer(raft.ServerID(strconv.Itoa(uid)), 0, 0)
	if err := waitFuture(ctx, f); err != nil {
		return fmt.Errorf("remove server %d: %w", uid, n.mapErr(err))
	}
	return nil
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
		n.bgMu.Lock()
		n.closed = true
		n.bgMu.Unlock()
		close(n.done)
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

// IsMember reports whether uid is in the raft configuration.
func (n *Node) IsMember(uid int) (bool, error) {
	servers, err := n.Servers()
	if err != nil {
		return false, err
	}
	for _, s := range servers {
		if s.UID == uid {
			return true, nil
		}
	}
	return false, nil
}
