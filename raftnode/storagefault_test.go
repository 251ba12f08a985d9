package raftnode

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"cnm/fsm"
)

// faultyStore sits under the checks and fails writes as a full disk does,
// or corrupts what it reads back, while told to.
type faultyStore struct {
	raft.LogStore
	raft.StableStore
	dir         string
	failLogs    atomic.Bool
	failStable  atomic.Bool
	corruptRead atomic.Bool
}

func (f *faultyStore) full() error {
	return &os.PathError{Op: "write", Path: f.dir + "/raft.db", Err: syscall.ENOSPC}
}

func (f *faultyStore) StoreLog(l *raft.Log) error { return f.StoreLogs([]*raft.Log{l}) }

func (f *faultyStore) StoreLogs(ls []*raft.Log) error {
	if f.failLogs.Load() {
		return f.full()
	}
	return f.LogStore.StoreLogs(ls)
}

func (f *faultyStore) DeleteRange(lo, hi uint64) error {
	if f.failLogs.Load() {
		return f.full()
	}
	return f.LogStore.DeleteRange(lo, hi)
}

func (f *faultyStore) GetLog(i uint64, l *raft.Log) error {
	if err := f.LogStore.GetLog(i, l); err != nil {
		return err
	}
	if f.corruptRead.Load() && l.Type == raft.LogCommand && len(l.Data) > 0 {
		l.Data[len(l.Data)-1] ^= 0x01
	}
	return nil
}

func (f *faultyStore) Set(k, v []byte) error {
	if f.failStable.Load() {
		return f.full()
	}
	return f.StableStore.Set(k, v)
}

func (f *faultyStore) SetUint64(k []byte, v uint64) error {
	if f.failStable.Load() {
		return f.full()
	}
	return f.StableStore.SetUint64(k, v)
}

// disk is what the faulty store's disk probe sees.
func (f *faultyStore) probe(string) error {
	if f.failLogs.Load() || f.failStable.Load() {
		return f.full()
	}
	return nil
}

// withFaultyStore puts a faultyStore under node's checks.
func withFaultyStore(fs *faultyStore) func(*Config) {
	return func(c *Config) {
		fs.dir = c.Dir
		c.wrapStores = func(l raft.LogStore, s raft.StableStore) (raft.LogStore, raft.StableStore) {
			fs.LogStore, fs.StableStore = l, s
			return fs, fs
		}
		c.probe = fs.probe
		c.probeInterval = 20 * time.Millisecond
	}
}

// applyOnLeader applies a command on whichever of nodes leads, once one
// does: a leadership change in flight (a transfer that has returned on the
// old leader before it has noticed) is retried until the deadline.
func applyOnLeader(t *testing.T, nodes []*Node) uint64 {
	t.Helper()
	cmd := testCommand(t, nodes[0])
	var idx uint64
	waitFor(t, "a leader among the others to apply a write", 10*time.Second, func() bool {
		for _, n := range nodes {
			if _, ready, _ := n.Leadership(); !ready {
				continue
			}
			res, err := n.Apply(t.Context(), cmd)
			switch {
			case errors.Is(err, ErrNotLeader), errors.Is(err, ErrLeadershipLost):
				continue
			case err != nil && !errors.Is(err, fsm.ErrAlreadyBootstrapped):
				t.Fatalf("apply on node %d: %v", n.ID(), err)
			}
			idx = res.Index
			return true
		}
		return false
	})
	return idx
}

// A node whose storage fails stops raft and says why; the others elect a
// leader among themselves and go on; the failing node never leads or votes
// while it fails, and after a write fault it rejoins once reopened on a
// disk that takes writes again.
func TestCluster_StorageFaultStopsTheNode(t *testing.T) {
	cases := []struct {
		name    string
		failing int // index in nodes
		break_  func(*faultyStore)
		// trigger makes the failing node touch the broken store.
		trigger func(t *testing.T, nodes []*Node)
		want    error  // cause the fault must match
		op      string // what the fault must say it was doing
		heals   bool   // a write fault: the disk can recover
	}{
		{
			name: "leader cannot store log entries", failing: 0,
			break_: func(f *faultyStore) { f.failLogs.Store(true) },
			trigger: func(t *testing.T, nodes []*Node) {
				cmd := []byte{0} // never reaches the FSM: the store refuses it
				if _, err := nodes[0].Apply(t.Context(), cmd); !errors.Is(err, ErrStorageFault) || !errors.Is(err, syscall.ENOSPC) {
					t.Errorf("apply on the leader with a full disk: %v, want a storage fault (ENOSPC)", err)
				}
			},
			want: syscall.ENOSPC, op: "store log entries", heals: true,
		},
		{
			name: "follower cannot store log entries", failing: 2,
			break_:  func(f *faultyStore) { f.failLogs.Store(true) },
			trigger: func(t *testing.T, nodes []*Node) { applyOne(t, nodes[0]) },
			want:    syscall.ENOSPC, op: "store log entries", heals: true,
		},
		{
			// raft panics when it cannot save a new term.
			name: "follower cannot save the term", failing: 2,
			break_: func(f *faultyStore) { f.failStable.Store(true) },
			trigger: func(t *testing.T, nodes []*Node) {
				if err := nodes[0].TransferLeadershipTo(t.Context(), 2, nodes[1].cfg.RaftAddr); err != nil {
					t.Fatal(err)
				}
			},
			want: syscall.ENOSPC, op: "save CurrentTerm", heals: true,
		},
		{
			// raft panics when it cannot read an entry it must apply.
			name: "follower reads back a corrupt entry", failing: 2,
			break_:  func(f *faultyStore) { f.corruptRead.Store(true) },
			trigger: func(t *testing.T, nodes []*Node) { applyOne(t, nodes[0]) },
			want:    ErrCorrupt, op: "read log entry",
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca := testCA(t)
			fs := &faultyStore{}
			var nodes []*Node
			for uid := 1; uid <= 3; uid++ {
				var mod func(*Config)
				if uid-1 == tc.failing {
					mod = withFaultyStore(fs)
				}
				nodes = append(nodes, startNode(t, ca, uid, fmt.Sprintf("127.0.%d.%d", 40+i, uid), mod))
			}
			formCluster(t, nodes...)
			idx := applyOne(t, nodes[0])
			for _, n := range nodes {
				waitFor(t, fmt.Sprintf("node %d to apply index %d", n.ID(), idx), 10*time.Second, func() bool { return n.FSM().Applied() >= idx })
			}
			bad := nodes[tc.failing]
			var good []*Node
			for j, n := range nodes {
				if j != tc.failing {
					good = append(good, n)
				}
			}
			if bad.StorageFault() != nil {
				t.Fatalf("fault before any: %v", bad.StorageFault())
			}

			tc.break_(fs)
			tc.trigger(t, nodes)
			waitFor(t, "the storage fault", 10*time.Second, func() bool { return bad.StorageFault() != nil })
			err := bad.StorageFault()
			if !errors.Is(err, ErrStorageFault) || !errors.Is(err, tc.want) {
				t.Fatalf("fault %v, want one matching %v", err, tc.want)
			}
			for _, want := range []string{bad.cfg.Dir, tc.op} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("fault %q does not say %q", err, want)
				}
			}
			// raft itself must be shut down, not merely reported so: a
			// follower that cannot persist would otherwise still vote, and
			// a leader be re-elected.
			waitFor(t, "raft to shut down on the failing node", 10*time.Second, func() bool {
				return errors.Is(bad.raft.Apply(nil, time.Second).Error(), raft.ErrRaftShutdown)
			})
			if role := bad.Role(); role != "shutdown" {
				t.Errorf("role %q, want shutdown", role)
			}
			if _, ready, _ := bad.Leadership(); ready {
				t.Error("the failing node is still a ready leader")
			}
			if _, err := bad.ReadIndex(t.Context()); !errors.Is(err, ErrStorageFault) {
				t.Errorf("read index on the failing node: %v, want its fault", err)
			}
			if err := bad.WaitApplied(t.Context(), 1); !errors.Is(err, ErrStorageFault) {
				t.Errorf("wait applied on the failing node: %v, want its fault", err)
			}

			idx = applyOnLeader(t, good)
			for _, n := range good {
				waitFor(t, fmt.Sprintf("node %d to apply index %d", n.ID(), idx), 10*time.Second, func() bool { return n.FSM().Applied() >= idx })
			}
			if got := bad.FSM().Applied(); got >= idx {
				t.Fatalf("the failing node applied index %d", got)
			}
			// Watch over several election timeouts: raft itself (not only
			// what the node reports) must neither lead nor campaign.
			term := bad.raft.CurrentTerm()
			deadline := time.Now().Add(5 * DefaultElectionTimeout)
			for time.Now().Before(deadline) {
				if bad.IsLeader() || bad.raft.State() == raft.Leader {
					t.Fatal("the failing node leads again")
				}
				if got := bad.raft.CurrentTerm(); got != term {
					t.Fatalf("the failing node went from term %d to %d", term, got)
				}
				time.Sleep(10 * time.Millisecond) // observation interval
			}
			select {
			case <-bad.StorageRecovered():
				t.Fatal("recovered while the store still fails")
			default:
			}
			if !tc.heals {
				return
			}

			fs.failLogs.Store(false)
			fs.failStable.Store(false)
			select {
			case <-bad.StorageRecovered():
			case <-time.After(10 * time.Second):
				t.Fatal("no recovery after the disk took writes again")
			}
			m, err := reopen(t, bad, nil)
			if err != nil {
				t.Fatalf("reopen after recovery: %v", err)
			}
			idx = applyOnLeader(t, good)
			waitFor(t, "the reopened node to catch up", 20*time.Second, func() bool { return m.FSM().Applied() >= idx })
			if err := m.StorageFault(); err != nil {
				t.Fatalf("fault after reopening: %v", err)
			}
		})
	}
}

// The disk probe writes, syncs and removes a file; a dir it cannot write
// in is an error naming it.
func TestProbeDir(t *testing.T) {
	dir := t.TempDir()
	if err := probeDir(dir); err != nil {
		t.Fatalf("probe of a writable dir: %v", err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("probe left %d files (%v)", len(ents), err)
	}
	gone := dir + "/gone"
	if err := probeDir(gone); err == nil || !strings.Contains(err.Error(), gone) {
		t.Fatalf("probe of a missing dir: %v, want an error naming it", err)
	}
}

// testCommand encodes the Bootstrap that applyOne proposes.
func testCommand(t *testing.T, n *Node) []byte {
	t.Helper()
	cmd, err := fsm.Encode(&fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{Name: "test"},
		Node:    fsm.Node{UID: n.ID(), Status: fsm.NodeActive, RaftAddr: n.cfg.RaftAddr},
		Admin:   fsm.User{Email: "admin@test", Name: "admin", PasswordHash: "unused"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}
