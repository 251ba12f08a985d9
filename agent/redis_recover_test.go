package agent_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// A master of a replicated database whose process is killed comes back
// with every write its replica confirmed (WAIT 1), although its own files
// hold none of them: it copies them back from the replica before it takes
// its role again, and the replica is not resynchronised from its files.
func TestRedisMasterKilledComesBackWithTheWritesItsReplicaConfirmed(t *testing.T) {
	l, p1, p2, b1, b2 := redisPeers(t)
	ctx := t.Context()
	l.createBDB(t, fsm.BDB{Name: "orders", MemorySize: 32 << 20, ShardsCount: 1, Replication: true,
		DataPersistence: fsm.PersistenceSnapshot}, []int{1, 2})
	// Both reconciled until the replica is in sync and the master's RDB
	// written: the snapshot a naive restart would load holds no key.
	eventually(t, 15*time.Second, func() error {
		if err := errors.Join(p1.agent.Reconcile(ctx), p2.agent.Reconcile(ctx)); err != nil {
			return err
		}
		if info := redisInfo(t, b2, "2"); !info.InSync {
			return fmt.Errorf("replica %+v not in sync", info)
		}
		if info := redisInfo(t, b1, "1"); !info.Persisted {
			return fmt.Errorf("master %+v not persisted", info)
		}
		return nil
	})
	master := client(t, b1, "1")
	const keys = 200
	for i := range keys {
		k := "key-" + strconv.Itoa(i)
		if err := master.Set(ctx, k, "value-"+strconv.Itoa(i), 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		if n, err := master.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n < 1 {
			t.Fatalf("WAIT 1 after %s: %d, %v", k, n, err)
		}
	}
	server, err := master.Info(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	pid := infoField(server, "process_id")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the master's process %d: %v", pid, err)
	}

	eventually(t, 30*time.Second, func() error {
		b1.SuperviseOnce(ctx)
		// The replica's agent points it back at its master, which must
		// not make it copy the master's stale files.
		_ = p2.agent.Reconcile(ctx)
		_ = p1.agent.Reconcile(ctx)
		return masterAndReplica(t, b1, "1", b2, "2")
	})
	for _, b := range []struct {
		name string
		get  func(ctx context.Context, k string) (string, error)
	}{
		{"master", func(ctx context.Context, k string) (string, error) { return client(t, b1, "1").Get(ctx, k).Result() }},
		{"replica", func(ctx context.Context, k string) (string, error) { return client(t, b2, "2").Get(ctx, k).Result() }},
	} {
		eventually(t, 10*time.Second, func() error {
			for i := range keys {
				k := "key-" + strconv.Itoa(i)
				if got, err := b.get(ctx, k); err != nil || got != "value-"+strconv.Itoa(i) {
					return fmt.Errorf("%s: %s = %q, %v after the master's restart", b.name, k, got, err)
				}
			}
			return nil
		})
	}
	if info := redisInfo(t, b1, "1"); info.Status != "active" || info.Keys != keys {
		t.Errorf("recovered master reports %+v, want active with %d keys", info, keys)
	}
}

func infoField(info, field string) int {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// A replica that never followed its master (not yet pointed at it) holds
// none of its data: a master whose process dies then restarts from its own
// files rather than copying the replica's empty set.
func TestRedisMasterKilledBeforeItsReplicaFollowedItKeepsItsOwnFiles(t *testing.T) {
	l, p1, _, b1, b2 := redisPeers(t)
	ctx := t.Context()
	l.createBDB(t, fsm.BDB{Name: "orders", MemorySize: 32 << 20, ShardsCount: 1, Replication: true,
		DataPersistence: fsm.PersistenceSnapshot}, []int{1, 2})
	if err := p1.agent.Reconcile(ctx); err != nil && !strings.Contains(err.Error(), "not known yet") {
		t.Fatalf("reconcile node 1: %v", err)
	}
	// Node 2's copy runs, but as nobody's replica yet.
	if err := b2.Materialise(ctx, agent.Spec{UID: "2", BDB: 1, Role: fsm.RoleSlave, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	master := client(t, b1, "1")
	for i := range 50 {
		if err := master.Set(ctx, "key-"+strconv.Itoa(i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b1.Persist(ctx, "1", fsm.PersistenceSnapshot); err != nil {
		t.Fatal(err)
	}
	server, err := master.Info(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(infoField(server, "process_id"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		b1.SuperviseOnce(ctx)
		info := redisInfo(t, b1, "1")
		if info.Status != "active" || info.Role != fsm.RoleMaster {
			return fmt.Errorf("master after its restart: %+v", info)
		}
		if n, err := client(t, b1, "1").DBSize(ctx).Result(); err != nil || n != 50 {
			return fmt.Errorf("master holds %d keys (%v), want its own 50", n, err)
		}
		return nil
	})
}
