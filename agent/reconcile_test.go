package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// testScale is the --shard-file-scale of the agents in these tests.
const testScale = 1.0 / 1024

func newNodeAgent(t *testing.T, l *stateLog, node int, resync time.Duration) (*agent.Agent, *agent.FileBackend, string) {
	t.Helper()
	b, dir := newBackend(t, nil)
	a := agent.New(agent.Config{NodeUID: node, FSM: l.f, Backend: b, Scale: testScale, Resync: resync})
	return a, b, dir
}

// createTestDBs creates three databases spread over nodes 1 and 2, one per
// persistence mode, and returns their uids.
func createTestDBs(t *testing.T, l *stateLog) []int {
	t.Helper()
	return []int{
		// shard 1 master on 1, 2 slave on 2, 3 master on 2, 4 slave on 1
		l.createBDB(t, fsm.BDB{Name: "orders", MemorySize: 64 << 20, ShardsCount: 2, Replication: true,
			DataPersistence: fsm.PersistenceSnapshot}, []int{1, 2, 2, 1}),
		l.createBDB(t, fsm.BDB{Name: "cache", MemorySize: 8 << 20, ShardsCount: 1,
			DataPersistence: fsm.PersistenceAOF}, []int{1}),
		l.createBDB(t, fsm.BDB{Name: "scratch", MemorySize: 4 << 20, ShardsCount: 2,
			DataPersistence: fsm.PersistenceDisabled}, []int{2, 1}),
	}
}

// holdsExactly checks that the backend holds the given shards and nothing
// else, with the role, size and persistence file the state asks for.
func holdsExactly(b *agent.FileBackend, dir string, want map[string]stateShard) error {
	uids, err := b.List()
	if err != nil {
		return err
	}
	slices.Sort(uids)
	if w := sortedUIDs(want); !slices.Equal(uids, w) {
		return fmt.Errorf("holds shards %v, want %v", uids, w)
	}
	for uid, sh := range want {
		info, err := b.Info(uid)
		if err != nil {
			return fmt.Errorf("shard %s: %w", uid, err)
		}
		size := int64(float64(sh.Memory) * testScale)
		if info.Role != sh.Role || info.BDB != sh.BDBUID || info.Size != size {
			return fmt.Errorf("shard %s is %+v, want role %s, bdb %d, %d bytes", uid, info, sh.Role, sh.BDBUID, size)
		}
		fi, err := os.Stat(filepath.Join(dir, uid+".data"))
		if err != nil || fi.Size() != size {
			return fmt.Errorf("shard %s data file: %v, %v; want %d bytes", uid, fi, err, size)
		}
		_, rdbErr := os.Stat(filepath.Join(dir, uid+".rdb"))
		_, aofErr := os.Stat(filepath.Join(dir, uid+".aof"))
		rdb, aof := rdbErr == nil, aofErr == nil
		wantRDB, wantAOF := sh.Persistence == fsm.PersistenceSnapshot, sh.Persistence == fsm.PersistenceAOF
		if rdb != wantRDB || aof != wantAOF {
			return fmt.Errorf("shard %s of a %s db: .rdb %v, .aof %v", uid, sh.Persistence, rdb, aof)
		}
		if info.Persisted != (wantRDB || wantAOF) {
			return fmt.Errorf("shard %s of a %s db: Persisted %v", uid, sh.Persistence, info.Persisted)
		}
	}
	return nil
}

func TestReconcileHoldsExactlyTheShardsOfThisNode(t *testing.T) {
	l := newClusterState(t)
	createTestDBs(t, l)
	for _, node := range []int{1, 2} {
		t.Run(fmt.Sprintf("node %d", node), func(t *testing.T) {
			a, b, dir := newNodeAgent(t, l, node, 0)
			if err := a.Reconcile(t.Context()); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			mine := l.shardsOn(node)
			roles := map[string]bool{}
			for _, sh := range mine {
				roles[sh.Role] = true
			}
			if len(mine) < 3 || !roles[fsm.RoleMaster] || !roles[fsm.RoleSlave] {
				t.Fatalf("test state puts %v on node %d; want masters and slaves", sortedUIDs(mine), node)
			}
			if err := holdsExactly(b, dir, mine); err != nil {
				t.Error(err)
			}
			for uid := range l.shardsOn(3 - node) {
				if files := shardFiles(t, dir, uid); len(files) != 0 {
					t.Errorf("node %d holds files %v of shard %s of node %d", node, files, uid, 3-node)
				}
			}
		})
	}
}

func TestReconcileIsIdempotent(t *testing.T) {
	l := newClusterState(t)
	createTestDBs(t, l)
	a, b, dir := newNodeAgent(t, l, 1, 0)
	if err := a.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string]string {
		out := map[string]string{}
		for _, n := range dirNames(t, dir) {
			fi, err := os.Stat(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			out[n] = fmt.Sprintf("%d %s %s", fi.Size(), fi.ModTime().Format(time.RFC3339Nano), fileSHA(t, filepath.Join(dir, n)))
		}
		return out
	}
	before := snapshot()
	if err := a.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := snapshot()
	for n, v := range before {
		if after[n] != v {
			t.Errorf("second Reconcile rewrote %s: %s -> %s", n, v, after[n])
		}
	}
	if len(after) != len(before) {
		t.Errorf("second Reconcile changed the files: %d -> %d", len(before), len(after))
	}
	if err := holdsExactly(b, dir, l.shardsOn(1)); err != nil {
		t.Error(err)
	}
}

func TestReconcileEmptiesNodeWhenDatabasesAreDeleted(t *testing.T) {
	l := newClusterState(t)
	bdbs := createTestDBs(t, l)
	a, b, dir := newNodeAgent(t, l, 1, 0)
	if err := a.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Delete one database: only its shards go.
	l.apply(t, &fsm.DeleteBDB{UID: bdbs[0]})
	if err := a.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := holdsExactly(b, dir, l.shardsOn(1)); err != nil {
		t.Errorf("after deleting db %d: %v", bdbs[0], err)
	}
	for _, uid := range bdbs[1:] {
		l.apply(t, &fsm.DeleteBDB{UID: uid})
	}
	if err := a.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("shard dir after deleting every db: %v", names)
	}
}

func TestReconcileRepairsRoleDataAndPersistenceFromState(t *testing.T) {
	l := newClusterState(t)
	createTestDBs(t, l)
	a, b, dir := newNodeAgent(t, l, 1, 0)
	if err := a.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	mine := l.shardsOn(1)
	var master, snapshotShard string
	for _, uid := range sortedUIDs(mine) {
		if mine[uid].Role == fsm.RoleMaster && master == "" {
			master = uid
		}
		if mine[uid].Persistence == fsm.PersistenceSnapshot && snapshotShard == "" {
			snapshotShard = uid
		}
	}
	lostData := sortedUIDs(mine)[len(mine)-1]

	if err := b.SwitchRole(t.Context(), master, fsm.RoleSlave); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, snapshotShard+".rdb")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, lostData+".data")); err != nil {
		t.Fatal(err)
	}
	if err := a.Reconcile(t.Context()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if err := holdsExactly(b, dir, mine); err != nil {
		t.Errorf("after demoting %s, losing %s.rdb and %s.data: %v", master, snapshotShard, lostData, err)
	}
}

func TestReconcileDropsUnassignedShardButKeepsStagedCopy(t *testing.T) {
	l := newClusterState(t)
	createTestDBs(t, l)
	ca := newCA(t)
	node := startPeer(t, ca, 1, "127.0.0.21", peerOpts{fsm: l.f})
	src := startPeer(t, ca, 3, "127.0.0.23", peerOpts{})

	// A shard left over from an earlier assignment: the state has it on
	// node 2 now.
	leftover := sortedUIDs(l.shardsOn(2))[0]
	materialise(t, node.backend, agent.Spec{UID: leftover, BDB: l.shardsOn(2)[leftover].BDBUID, Role: fsm.RoleMaster, Size: 1000})
	// A shard copied here for a migration that the state does not show yet.
	materialise(t, src.backend, agent.Spec{UID: "99", BDB: 9, Role: fsm.RoleMaster, Size: 50_000})
	copied, err := src.client.Copy(t.Context(), node.addr, agent.Spec{UID: "99", BDB: 9, Role: fsm.RoleSlave, Size: 50_000}, src.addr, agent.Op{})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}

	if err := node.agent.Reconcile(t.Context()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if files := shardFiles(t, node.dir, leftover); len(files) != 0 {
		t.Errorf("shard %s, assigned to node 2, kept: %v", leftover, files)
	}
	if info, err := node.backend.Info("99"); err != nil || info != copied {
		t.Errorf("staged copy 99 after Reconcile: %+v, %v; want %+v", info, err, copied)
	}
	want := l.shardsOn(1)
	want["99"] = stateShard{} // checked above
	uids := listShards(t, node.backend)
	if w := sortedUIDs(want); !slices.Equal(uids, w) {
		t.Errorf("node holds %v, want %v", uids, w)
	}

	// Once the migration drops it, it stays dropped.
	if err := src.client.Drop(t.Context(), node.addr, "99"); err != nil {
		t.Fatal(err)
	}
	if err := node.agent.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := holdsExactly(node.backend, node.dir, l.shardsOn(1)); err != nil {
		t.Error(err)
	}
}

func TestFailedCopyKeepsEarlierGoodCopyOnTarget(t *testing.T) {
	l := newClusterState(t)
	ca := newCA(t)
	node := startPeer(t, ca, 1, "127.0.0.21", peerOpts{fsm: l.f})
	src := startPeer(t, ca, 3, "127.0.0.23", peerOpts{})
	// An earlier copy of shard 99 landed, then a second copy fails.
	materialise(t, src.backend, agent.Spec{UID: "99", Role: fsm.RoleMaster, Size: 5000})
	if _, err := src.client.Copy(t.Context(), node.addr, agent.Spec{UID: "99", Role: fsm.RoleSlave}, src.addr, agent.Op{}); err != nil {
		t.Fatal(err)
	}
	flipByte(t, src.dataPath("99"), 10)
	if _, err := src.client.Copy(t.Context(), node.addr, agent.Spec{UID: "99", Role: fsm.RoleSlave}, src.addr, agent.Op{}); !errors.Is(err, agent.ErrChecksum) {
		t.Fatalf("second copy: %v, want ErrChecksum", err)
	}
	// The good first copy is still there.
	if _, err := node.backend.Info("99"); err != nil {
		t.Fatalf("first copy lost: %v", err)
	}
}

// failingBackend fails Materialise of one shard.
type failingBackend struct {
	*agent.FileBackend
	uid string
}

var errDiskFull = errors.New("disk full")

func (f *failingBackend) Materialise(ctx context.Context, s agent.Spec) error {
	if s.UID == f.uid {
		return errDiskFull
	}
	return f.FileBackend.Materialise(ctx, s)
}

func TestReconcileReportsFailureAndStillDoesTheRest(t *testing.T) {
	l := newClusterState(t)
	createTestDBs(t, l)
	fb, dir := newBackend(t, nil)
	mine := l.shardsOn(1)
	bad := sortedUIDs(mine)[0]
	a := agent.New(agent.Config{NodeUID: 1, FSM: l.f, Backend: &failingBackend{FileBackend: fb, uid: bad}, Scale: testScale})
	elsewhere := sortedUIDs(l.shardsOn(2))[0]
	materialise(t, fb, agent.Spec{UID: elsewhere, BDB: l.shardsOn(2)[elsewhere].BDBUID, Role: fsm.RoleMaster, Size: 10})

	if err := a.Reconcile(t.Context()); !errors.Is(err, errDiskFull) {
		t.Errorf("Reconcile: %v, want the Materialise error", err)
	}
	delete(mine, bad)
	if err := holdsExactly(fb, dir, mine); err != nil {
		t.Errorf("besides shard %s: %v", bad, err)
	}
}

// runAgent starts a.Run and returns a function that ends its context and
// fails the test unless Run returns within 5 s; cleanup calls it too.
func runAgent(t *testing.T, a *agent.Agent) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Errorf("Run did not return within 5s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestRunReconcilesOnEveryStateChange(t *testing.T) {
	l := newClusterState(t)
	a, b, dir := newNodeAgent(t, l, 1, time.Hour)
	stop := runAgent(t, a)

	bdbs := createTestDBs(t, l)
	eventually(t, 5*time.Second, func() error { return holdsExactly(b, dir, l.shardsOn(1)) })

	for _, uid := range bdbs {
		l.apply(t, &fsm.DeleteBDB{UID: uid})
	}
	eventually(t, 5*time.Second, func() error {
		if names, err := os.ReadDir(dir); err != nil || len(names) != 0 {
			return fmt.Errorf("shard dir holds %d entries (%v)", len(names), err)
		}
		return nil
	})

	stop()
}

func TestRunReconcilesOnKickAndOnResync(t *testing.T) {
	cases := []struct {
		name   string
		resync time.Duration
		kick   bool
	}{
		{"kick", time.Hour, true},
		{"resync", 50 * time.Millisecond, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newClusterState(t)
			createTestDBs(t, l)
			a, b, dir := newNodeAgent(t, l, 1, c.resync)
			runAgent(t, a)
			// Run reconciles on start.
			eventually(t, 5*time.Second, func() error { return holdsExactly(b, dir, l.shardsOn(1)) })

			// A shard of node 2 appears behind the agent's back, with no
			// state change.
			elsewhere := sortedUIDs(l.shardsOn(2))[0]
			materialise(t, b, agent.Spec{UID: elsewhere, BDB: l.shardsOn(2)[elsewhere].BDBUID, Role: fsm.RoleMaster, Size: 10})
			if c.kick {
				a.Kick()
			}
			eventually(t, 5*time.Second, func() error {
				if _, err := b.Info(elsewhere); !errors.Is(err, agent.ErrNoShard) {
					return fmt.Errorf("shard %s of node 2 still held (%v)", elsewhere, err)
				}
				return nil
			})
			if err := holdsExactly(b, dir, l.shardsOn(1)); err != nil {
				t.Error(err)
			}
		})
	}
}

// The leader's request to drop a copy never deletes a shard this node's
// state assigns here, and a copy a running action still moves here
// outlives the request until the action ends.
func TestDropKeepsAssignedShardsAndCopiesARunningActionNeeds(t *testing.T) {
	l := newClusterState(t)
	createTestDBs(t, l)
	ca := newCA(t)
	node := startPeer(t, ca, 1, "127.0.0.21", peerOpts{fsm: l.f})
	src := startPeer(t, ca, 2, "127.0.0.22", peerOpts{})
	if err := node.agent.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Assigned here: refused, kept.
	assigned := sortedUIDs(l.shardsOn(1))[0]
	if err := src.client.Drop(t.Context(), node.addr, assigned); err == nil {
		t.Fatalf("Drop of shard %s, which the state assigns here, was accepted", assigned)
	}
	if _, err := node.backend.Info(assigned); err != nil {
		t.Fatalf("assigned shard %s after a refused drop: %v", assigned, err)
	}

	// A running action moves shard 2's shard to node 1; the copy has landed.
	moving := sortedUIDs(l.shardsOn(2))[0]
	l.apply(t, &fsm.SubmitAction{Action: fsm.Action{TaskID: "t", Action: fsm.ActionMaintenanceOn, NodeUID: 2, Deadline: 1 << 40}, By: "test"})
	l.apply(t, &fsm.ClaimAction{TaskID: "t", Term: 3, Leader: 1})
	l.apply(t, &fsm.PlanAction{TaskID: "t", Term: 3, Steps: []fsm.Step{{Kind: fsm.StepMove, Shard: moving, From: 2, To: 1}}})
	spec := agent.Spec{UID: moving, BDB: 1, Role: fsm.RoleMaster, Size: 10_000}
	materialise(t, src.backend, spec)
	if _, err := src.client.Copy(t.Context(), node.addr, spec, src.addr, agent.Op{TaskID: "t", Step: 0, Term: 3}); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if err := src.client.Drop(t.Context(), node.addr, moving); err != nil {
		t.Fatalf("Drop of a copy a running action needs: %v", err)
	}
	if err := node.agent.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := node.backend.Info(moving); err != nil {
		t.Fatalf("copy of %s gone while its move is pending: %v", moving, err)
	}

	// The action fails: the next reconcile drops the copy, although it was
	// made moments ago.
	l.apply(t, &fsm.FinishAction{TaskID: "t", Term: 3, Status: fsm.StatusFailed, ErrorCode: "insufficient_resources", ErrorMessage: "no room"})
	if err := node.agent.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := holdsExactly(node.backend, node.dir, l.shardsOn(1)); err != nil {
		t.Error(err)
	}
}

// After a restart the state is an old snapshot until raft replays the log:
// the agent must neither drop nor create anything until it has caught up.
func TestRunWaitsForTheStateToCatchUp(t *testing.T) {
	l := newClusterState(t)
	createTestDBs(t, l)
	b, dir := newBackend(t, nil)
	// A shard this (stale) state has on node 2: it may have moved here
	// since.
	moved := sortedUIDs(l.shardsOn(2))[0]
	materialise(t, b, agent.Spec{UID: moved, BDB: l.shardsOn(2)[moved].BDBUID, Role: fsm.RoleMaster, Size: 1000})
	var caughtUp atomic.Bool
	a := agent.New(agent.Config{NodeUID: 1, FSM: l.f, Backend: b, Scale: testScale, Resync: 20 * time.Millisecond,
		CaughtUp: caughtUp.Load})
	runAgent(t, a)
	// Several resyncs pass; each is a chance to act, and none may.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := listShards(t, b); !slices.Equal(got, []string{moved}) {
			t.Fatalf("before catching up the agent changed the shards to %v", got)
		}
		a.Kick()
		runtime.Gosched()
	}
	caughtUp.Store(true)
	a.Kick()
	eventually(t, 5*time.Second, func() error { return holdsExactly(b, dir, l.shardsOn(1)) })
}

// A shard that is not assigned here is dropped only when a caught-up state,
// read under this node's true identity, proves it belongs elsewhere now
// (another node holds it, or its database was deleted). Anything else is
// kept: a node started under a wrong uid once dropped a master this way.
func TestReconcileDropsOnlyShardsTheStateProvesBelongElsewhere(t *testing.T) {
	cases := []struct {
		name     string
		node     int    // the agent's NodeUID
		apiAddr  string // the agent's APIAddr
		caughtUp bool
		// shard returns the local shard to plant, from the state.
		shard func(t *testing.T, l *stateLog, bdbs []int) agent.Spec
		drop  bool
	}{
		{name: "assigned to another node", node: 1, caughtUp: true, shard: onNode(2), drop: true},
		{name: "assigned to another node, this node's address checked", node: 1, apiAddr: testNode(1).APIAddr, caughtUp: true, shard: onNode(2), drop: true},
		{name: "its database was deleted", node: 1, caughtUp: true, drop: true,
			shard: func(t *testing.T, l *stateLog, bdbs []int) agent.Spec {
				s := onNode(1)(t, l, bdbs)
				l.apply(t, &fsm.DeleteBDB{UID: s.BDB})
				return s
			}},
		{name: "unknown to the state", node: 1, caughtUp: true,
			shard: func(_ *testing.T, l *stateLog, _ []int) agent.Spec {
				var next int
				l.f.Read(func(st *fsm.State, _ uint64) { next = st.NextShardUID })
				return agent.Spec{UID: strconv.Itoa(next + 10), BDB: 1, Role: fsm.RoleMaster, Size: 100}
			}},
		{name: "unknown uid of a deleted database", node: 1, caughtUp: true,
			shard: func(t *testing.T, l *stateLog, bdbs []int) agent.Spec {
				l.apply(t, &fsm.DeleteBDB{UID: bdbs[2]})
				return agent.Spec{UID: "900", BDB: bdbs[2], Role: fsm.RoleMaster, Size: 100}
			}},
		{name: "state not caught up", node: 1, caughtUp: false, shard: onNode(2)},
		{name: "this node's uid is not in the state", node: 7, caughtUp: true, shard: onNode(2)},
		{name: "the state's node at another address", node: 1, apiAddr: testNode(3).APIAddr, caughtUp: true, shard: onNode(2)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newClusterState(t)
			bdbs := createTestDBs(t, l)
			b, _ := newBackend(t, nil)
			s := c.shard(t, l, bdbs)
			materialise(t, b, s)
			a := agent.New(agent.Config{NodeUID: c.node, APIAddr: c.apiAddr, FSM: l.f, Backend: b, Scale: testScale,
				CaughtUp: func() bool { return c.caughtUp }})
			if err := a.Reconcile(t.Context()); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			_, err := b.Info(s.UID)
			switch {
			case c.drop && !errors.Is(err, agent.ErrNoShard):
				t.Errorf("shard %s kept (Info: %v), want it dropped", s.UID, err)
			case !c.drop && err != nil:
				t.Errorf("shard %s dropped (Info: %v), want it kept", s.UID, err)
			}
		})
	}
}

// onNode returns the first shard the state assigns to node, as a local copy.
func onNode(node int) func(*testing.T, *stateLog, []int) agent.Spec {
	return func(t *testing.T, l *stateLog, _ []int) agent.Spec {
		t.Helper()
		mine := l.shardsOn(node)
		if len(mine) == 0 {
			t.Fatalf("the state assigns nothing to node %d", node)
		}
		sh := mine[sortedUIDs(mine)[0]]
		return agent.Spec{UID: sh.UID, BDB: sh.BDBUID, Role: sh.Role, Size: 100}
	}
}
