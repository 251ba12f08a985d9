package agent_test

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// redisPeers starts two agents on redis backends sharing one state, whose
// nodes 1 and 2 are the agents' real addresses.
func redisPeers(t *testing.T) (l *stateLog, p1, p2 *peer, b1, b2 *agent.RedisBackend) {
	t.Helper()
	ca := newCA(t)
	l = &stateLog{f: fsm.New()}
	b1, b2 = newRedisBackend(t, redisOpts{}), newRedisBackend(t, redisOpts{})
	p1 = startPeer(t, ca, 1, "127.0.0.1", peerOpts{fsm: l.f, backend: b1})
	p2 = startPeer(t, ca, 2, "127.0.0.1", peerOpts{fsm: l.f, backend: b2})
	n1, n2 := testNode(1), testNode(2)
	n1.Addr, n1.APIAddr = "127.0.0.1", p1.addr
	n2.Addr, n2.APIAddr = "127.0.0.1", p2.addr
	l.apply(t, &fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{Name: "agent-test", CreatedAt: 1700000000},
		Node:    n1,
		Admin:   fsm.User{Email: "admin@cnm.local", Name: "Admin", PasswordHash: "$2a$10$x"},
	})
	l.apply(t, &fsm.AddNode{Node: n2})
	return l, p1, p2, b1, b2
}

func TestReconcileStartsRedisReplicaFollowingItsMasterOnAnotherNode(t *testing.T) {
	l, p1, p2, b1, b2 := redisPeers(t)
	ctx := t.Context()
	l.createBDB(t, fsm.BDB{Name: "orders", MemorySize: 64 << 20, ShardsCount: 1, Replication: true,
		DataPersistence: fsm.PersistenceAOF}, []int{1, 2})
	// The replica's node first: its master does not run yet, which the
	// reconcile reports as work left, to be tried again soon.
	if err := p2.agent.Reconcile(ctx); err == nil || !strings.Contains(err.Error(), "replica 2: where its master 1 listens is not known yet") {
		t.Fatalf("reconcile node 2 before its master runs: %v, want the replica's master reported unknown", err)
	}
	if err := p1.agent.Reconcile(ctx); err != nil {
		t.Fatalf("reconcile node 1: %v", err)
	}
	master := net.JoinHostPort("127.0.0.1", strconv.Itoa(redisInfo(t, b1, "1").Port))
	if err := client(t, b1, "1").Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		if err := p2.agent.Reconcile(ctx); err != nil {
			return err
		}
		info := redisInfo(t, b2, "2")
		if info.Role != fsm.RoleSlave || info.Master != master || !info.InSync {
			return fmt.Errorf("replica: %+v, want one in sync with %s", info, master)
		}
		if got, _ := client(t, b2, "2").Get(ctx, "k").Result(); got != "v" {
			return errors.New("the master's key is not on the replica")
		}
		return nil
	})
	mc := client(t, b1, "1")
	if got := configGet(t, mc, "maxmemory"); got != strconv.Itoa(64<<20) {
		t.Errorf("master's maxmemory %s, want the shard's memory", got)
	}
	if got := configGet(t, mc, "appendonly"); got != "yes" {
		t.Errorf("master's appendonly %s, want yes (its database's persistence)", got)
	}
	if info := redisInfo(t, b1, "1"); !info.Persisted {
		t.Errorf("master not persisted after reconcile: %+v", info)
	}
}

func TestCopyThroughTheAgentAPISwitchesARedisMasterOver(t *testing.T) {
	_, p1, p2, b1, b2 := redisPeers(t)
	ctx := t.Context()
	if err := b1.Materialise(ctx, agent.Spec{UID: "7", BDB: 1, Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := client(t, b1, "7").Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	src, err := p1.client.Info(ctx, p1.addr, "7")
	if err != nil || src.Port != redisInfo(t, b1, "7").Port {
		t.Fatalf("the source's Info over the API: %+v, %v; want its port", src, err)
	}
	info, err := p2.client.Copy(ctx, p2.addr, agent.Spec{UID: "7", BDB: 1, Role: fsm.RoleMaster}, p1.addr, agent.Op{TaskID: "t", Step: 0, Term: 1})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if info.Role != fsm.RoleMaster || info.Port == 0 || !info.InSync {
		t.Errorf("copy: %+v, want an in-sync master", info)
	}
	if got, err := client(t, b2, "7").Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("key on the new master: %q, %v", got, err)
	}
	if src, err := p1.client.Info(ctx, p1.addr, "7"); err != nil || src.Checksum == info.Checksum {
		t.Errorf("source %+v (%v) and copy %+v look alike: a replayed move would take it for done", src, err, info)
	}
}

func TestReconcileConfiguresARedisShardAsItsDatabaseSays(t *testing.T) {
	l, p1, _, b1, _ := redisPeers(t)
	ctx := t.Context()
	// Started before the state said how (memory unknown, no persistence).
	if err := b1.Materialise(ctx, agent.Spec{UID: "1", BDB: 1, Role: fsm.RoleMaster}); err != nil {
		t.Fatal(err)
	}
	l.createBDB(t, fsm.BDB{Name: "orders", MemorySize: 48 << 20, ShardsCount: 1, DataPersistence: fsm.PersistenceAOF}, []int{1})
	if err := p1.agent.Reconcile(ctx); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	c := client(t, b1, "1")
	if got := configGet(t, c, "maxmemory"); got != strconv.Itoa(48<<20) {
		t.Errorf("maxmemory %s, want %d", got, 48<<20)
	}
	if got := configGet(t, c, "appendonly"); got != "yes" {
		t.Errorf("appendonly %s, want yes", got)
	}
	info := redisInfo(t, b1, "1")
	if info.Memory != 48<<20 || info.Persistence != fsm.PersistenceAOF || !info.Persisted {
		t.Errorf("Info %+v, want 48 MiB, aof, persisted", info)
	}
}

func TestPeerSourceSaysWhereAShardListensOnlyWhenItListens(t *testing.T) {
	ca := newCA(t)
	p := startPeer(t, ca, 1, "127.0.0.1", peerOpts{})
	materialise(t, p.backend, agent.Spec{UID: "1", Role: fsm.RoleMaster, Size: 64})
	ep, ok := p.client.Source(p.addr).(agent.Endpointer)
	if !ok {
		t.Fatalf("the peer source is no Endpointer")
	}
	for uid, want := range map[string]error{"1": agent.ErrNotStreamable, "9": agent.ErrNoShard} {
		if addr, err := ep.Endpoint(t.Context(), uid); !errors.Is(err, want) {
			t.Errorf("Endpoint(%s) = %q, %v; want %v", uid, addr, err, want)
		}
	}
}

func TestReconcileAfterAFailoverInTheStateSwapsTheRedisRoles(t *testing.T) {
	l, p1, p2, b1, b2 := redisPeers(t)
	ctx := t.Context()
	l.createBDB(t, fsm.BDB{Name: "orders", MemorySize: 32 << 20, ShardsCount: 1, Replication: true,
		DataPersistence: fsm.PersistenceDisabled}, []int{1, 2})
	reconcile := func() error {
		return errors.Join(p1.agent.Reconcile(ctx), p2.agent.Reconcile(ctx))
	}
	eventually(t, 15*time.Second, func() error {
		if err := reconcile(); err != nil {
			return err
		}
		if info := redisInfo(t, b2, "2"); !info.InSync || info.Role != fsm.RoleSlave {
			return fmt.Errorf("replica %+v not in sync", info)
		}
		return nil
	})
	if err := client(t, b1, "1").Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Reconcile alone swaps roles as the state says; it does not hold the
	// old master's writes back while the replica catches up (the
	// coordinated switch-over of a failover step is the executor's), so
	// the key must have reached the replica before the state changes.
	eventually(t, 5*time.Second, func() error {
		if got, _ := client(t, b2, "2").Get(ctx, "k").Result(); got != "v" {
			return errors.New("the replica has not received the key yet")
		}
		return nil
	})
	// The state fails shard 1 over to its replica 2.
	l.apply(t, &fsm.SubmitAction{Action: fsm.Action{TaskID: "f", Action: fsm.ActionMaintenanceOn, NodeUID: 1, Deadline: 1 << 40}, By: "test"})
	l.apply(t, &fsm.ClaimAction{TaskID: "f", Term: 3, Leader: 1})
	l.apply(t, &fsm.PlanAction{TaskID: "f", Term: 3, Steps: []fsm.Step{{Kind: fsm.StepFailover, Shard: "1"}}})
	l.apply(t, &fsm.StepDone{TaskID: "f", Term: 3, Index: 0, Time: 1})
	newMaster := net.JoinHostPort("127.0.0.1", strconv.Itoa(redisInfo(t, b2, "2").Port))
	eventually(t, 15*time.Second, func() error {
		if err := reconcile(); err != nil {
			return err
		}
		if info := redisInfo(t, b2, "2"); info.Role != fsm.RoleMaster {
			return fmt.Errorf("shard 2: %+v, want the master", info)
		}
		if info := redisInfo(t, b1, "1"); info.Role != fsm.RoleSlave || info.Master != newMaster || !info.InSync {
			return fmt.Errorf("shard 1: %+v, want an in-sync replica of %s", info, newMaster)
		}
		return nil
	})
	if err := client(t, b2, "2").Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatalf("the new master refuses writes: %v", err)
	}
	eventually(t, 5*time.Second, func() error {
		if got, _ := client(t, b1, "1").Get(ctx, "after").Result(); got != "1" {
			return errors.New("the old master does not follow the new one")
		}
		return nil
	})
	if got, _ := client(t, b2, "2").Get(ctx, "k").Result(); got != "v" {
		t.Errorf("a key written before the failover: %q", got)
	}
}
