package agent_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cnm/agent"
	"cnm/fsm"
)

// writer sets key-<i> to value-<i> on addr until stopped, and remembers
// the writes the server acknowledged.
type writer struct {
	mu    sync.Mutex
	acked []int
	stop  chan struct{}
	done  chan struct{}
}

func startWriter(t *testing.T, addr string) *writer {
	t.Helper()
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		ReadTimeout: 10 * time.Second, PoolSize: 1})
	go func() {
		defer close(w.done)
		defer c.Close()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			if err := c.Set(context.Background(), fmt.Sprintf("key-%d", i), fmt.Sprintf("value-%d", i), 0).Err(); err == nil {
				w.mu.Lock()
				w.acked = append(w.acked, i)
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(w.halt)
	return w
}

func (w *writer) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func TestRedisCopyOfMasterSwitchesOverWithoutLosingAnAcknowledgedWrite(t *testing.T) {
	src := newRedisBackend(t, redisOpts{pause: 2 * time.Second})
	dst := newRedisBackend(t, redisOpts{})
	ctx := t.Context()
	if err := src.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 64 << 20}); err != nil {
		t.Fatalf("Materialise: %v", err)
	}
	old := shardAddr(t, src, "1")
	w := startWriter(t, old)
	eventually(t, 10*time.Second, func() error {
		if w.count() < 500 {
			return errors.New("writer has not written yet")
		}
		return nil
	})
	probe := redis.NewClient(&redis.Options{Addr: old, Protocol: 2, DisableIdentity: true, MaxRetries: -1, ReadTimeout: 300 * time.Millisecond})
	defer probe.Close()
	var oldRole string
	var probeErr error
	start := time.Now()
	commit := func(install func() error) error {
		t.Logf("synced after %v", time.Since(start))
		if err := install(); err != nil {
			return err
		}
		// What the executor finds after the commit: the old copy is a
		// replica of the new master, so it refuses writes even after its
		// pause ends, until the executor drops it.
		oldRole = replication(t, dialAddr(t, old))["role"]
		probeErr = probe.Set(ctx, "probe", "x", 0).Err()
		t.Logf("switched over after %v", time.Since(start))
		defer func() { t.Logf("dropped the old copy after %v", time.Since(start)) }()
		return src.Drop(ctx, "1")
	}
	err := dst.CopyFrom(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster}, endpointSource{old}, commit)
	w.halt()
	t.Logf("%d acknowledged writes", w.count())
	if err != nil {
		t.Fatalf("CopyFrom: %v", err)
	}
	if oldRole != "slave" || probeErr == nil || !strings.Contains(probeErr.Error(), "READONLY") {
		t.Errorf("old copy at the commit: role %q, a write got %v; want a replica refusing writes", oldRole, probeErr)
	}
	info := redisInfo(t, dst, "1")
	if info.Role != fsm.RoleMaster || !info.InSync || info.Status != agent.StatusActive {
		t.Errorf("new copy: %+v, want an active master", info)
	}
	nc := client(t, dst, "1")
	if got := configGet(t, nc, "maxmemory"); got != fmt.Sprint(64<<20) {
		t.Errorf("new copy's maxmemory %s, want the source's", got)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, i := range w.acked {
		got, err := nc.Get(ctx, fmt.Sprintf("key-%d", i)).Result()
		if err != nil || got != fmt.Sprintf("value-%d", i) {
			t.Fatalf("acknowledged write %d of %d: got %q, %v", i, len(w.acked), got, err)
		}
	}
	if err := nc.Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Errorf("the new master refuses writes: %v", err)
	}
}

func TestRedisCopyOfReplicaIsAnInSyncReplicaOfTheSameMaster(t *testing.T) {
	src := newRedisBackend(t, redisOpts{})
	dst := newRedisBackend(t, redisOpts{})
	ctx := t.Context()
	if err := src.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatalf("Materialise master: %v", err)
	}
	master := shardAddr(t, src, "1")
	if err := src.Materialise(ctx, agent.Spec{UID: "2", Role: fsm.RoleSlave, Memory: 32 << 20, Master: master}); err != nil {
		t.Fatalf("Materialise replica: %v", err)
	}
	mc := client(t, src, "1")
	if err := mc.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	installed := false
	commit := func(install func() error) error { installed = true; return install() }
	if err := dst.CopyFrom(ctx, agent.Spec{UID: "2", Role: fsm.RoleSlave}, endpointSource{shardAddr(t, src, "2")}, commit); err != nil {
		t.Fatalf("CopyFrom: %v", err)
	}
	if !installed {
		t.Errorf("the copy was not made visible through commit")
	}
	info := redisInfo(t, dst, "2")
	if info.Role != fsm.RoleSlave || info.Master != master || !info.InSync {
		t.Errorf("copy: %+v, want an in-sync replica of %s", info, master)
	}
	if old := redisInfo(t, src, "2"); old.Checksum != info.Checksum {
		t.Errorf("checksums of the two replicas differ: %q and %q", old.Checksum, info.Checksum)
	}
	if got, err := client(t, dst, "2").Get(ctx, "before").Result(); err != nil || got != "1" {
		t.Errorf("key written before the copy: %q, %v", got, err)
	}
	if err := mc.Set(ctx, "after", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if got, _ := client(t, dst, "2").Get(ctx, "after").Result(); got != "2" {
			return errors.New("write after the copy not replicated")
		}
		return nil
	})
}

func TestRedisCopyRefusedAtCommitLeavesNothing(t *testing.T) {
	src := newRedisBackend(t, redisOpts{})
	dst := newRedisBackend(t, redisOpts{})
	ctx := t.Context()
	if err := src.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatalf("Materialise: %v", err)
	}
	refused := errors.New("deposed")
	err := dst.CopyFrom(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster}, endpointSource{shardAddr(t, src, "1")},
		func(func() error) error { return refused })
	if !errors.Is(err, refused) {
		t.Fatalf("CopyFrom: %v, want the commit's refusal", err)
	}
	if _, err := dst.Info("1"); !errors.Is(err, agent.ErrNoShard) {
		t.Errorf("Info after a refused copy: %v, want ErrNoShard", err)
	}
	if info := redisInfo(t, src, "1"); info.Role != fsm.RoleMaster || info.Status != agent.StatusActive {
		t.Errorf("source after a refused copy: %+v", info)
	}
	if err := client(t, src, "1").Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Errorf("source takes no writes after a refused copy: %v", err)
	}
}

func TestRedisFollowAndSwitchRolePointReplicaAtItsMaster(t *testing.T) {
	b := newRedisBackend(t, redisOpts{})
	ctx := t.Context()
	for _, uid := range []string{"1", "2"} {
		if err := b.Materialise(ctx, agent.Spec{UID: uid, Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	m1, m2 := shardAddr(t, b, "1"), shardAddr(t, b, "2")
	if err := b.Materialise(ctx, agent.Spec{UID: "3", Role: fsm.RoleSlave, Memory: 32 << 20, Master: m1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Follow(ctx, "3", m2); err != nil {
		t.Fatalf("Follow: %v", err)
	}
	if err := client(t, b, "2").Set(ctx, "on2", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if info := redisInfo(t, b, "3"); info.Master != m2 || !info.InSync {
			return fmt.Errorf("replica follows %q, in sync %v", info.Master, info.InSync)
		}
		if got, _ := client(t, b, "3").Get(ctx, "on2").Result(); got != "v" {
			return errors.New("the new master's key is not there")
		}
		return nil
	})
	// While its master serves, a replica is not made a second master: a
	// switch-over elsewhere may have made it one before the state said so.
	if err := b.SwitchRole(ctx, "3", fsm.RoleMaster); err == nil || !strings.Contains(err.Error(), "serves as a master") {
		t.Fatalf("SwitchRole master of a replica whose master serves: %v, want a refusal", err)
	}
	if info := redisInfo(t, b, "3"); info.Role != fsm.RoleSlave || info.Master != m2 {
		t.Fatalf("after a refused SwitchRole: %+v, want still a replica of %s", info, m2)
	}
	if err := b.Drop(ctx, "2"); err != nil {
		t.Fatal(err)
	}
	if err := b.SwitchRole(ctx, "3", fsm.RoleMaster); err != nil {
		t.Fatalf("SwitchRole once its master is gone: %v", err)
	}
	if info := redisInfo(t, b, "3"); info.Role != fsm.RoleMaster || info.Master != "" {
		t.Errorf("after SwitchRole master: %+v", info)
	}
	if err := client(t, b, "3").Set(ctx, "mine", "v", 0).Err(); err != nil {
		t.Errorf("promoted shard refuses writes: %v", err)
	}
}

func TestRedisDropDuringACopyEndsWithItsCallerAndLeavesTheCopy(t *testing.T) {
	src := newRedisBackend(t, redisOpts{})
	dst := newRedisBackend(t, redisOpts{})
	ctx := t.Context()
	if err := src.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	inCommit, release := make(chan struct{}), make(chan struct{})
	copied := make(chan error, 1)
	go func() {
		copied <- dst.CopyFrom(ctx, agent.Spec{UID: "1", Role: fsm.RoleSlave}, endpointSource{shardAddr(t, src, "1")},
			func(install func() error) error { close(inCommit); <-release; return install() })
	}()
	<-inCommit
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := dst.Drop(short, "1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drop during a copy: %v, want it to end with its context", err)
	}
	close(release)
	if err := <-copied; err != nil {
		t.Fatalf("CopyFrom: %v", err)
	}
	if info := redisInfo(t, dst, "1"); info.Role != fsm.RoleSlave || info.Status != agent.StatusActive {
		t.Errorf("the copy after a drop that gave up: %+v", info)
	}
}

// A copy of a master whose source runs as a replica for now (a failover
// switched it without being committed) takes over from the master the
// source follows, which holds the slots' data, instead of refusing.
func TestRedisCopyOfMasterWhoseSourceRunsAsAReplicaTakesOverFromItsMaster(t *testing.T) {
	src, dst := newRedisBackend(t, redisOpts{}), newRedisBackend(t, redisOpts{})
	ctx := t.Context()
	if err := src.Materialise(ctx, agent.Spec{UID: "4", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	live := shardAddr(t, src, "4")
	if err := src.Materialise(ctx, agent.Spec{UID: "3", Role: fsm.RoleSlave, Memory: 32 << 20, Master: live}); err != nil {
		t.Fatal(err)
	}
	if err := client(t, src, "4").Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	replicatedTo(t, src, "3", "k", "v")
	if err := dst.CopyFrom(ctx, agent.Spec{UID: "3", Role: fsm.RoleMaster, Memory: 32 << 20}, endpointSource{shardAddr(t, src, "3")}, nil); err != nil {
		t.Fatalf("CopyFrom: %v", err)
	}
	if err := masterAndReplica(t, dst, "3", src, "4"); err != nil {
		t.Fatal(err)
	}
	if got, err := client(t, dst, "3").Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("the copy's key: %q, %v", got, err)
	}
}

// replicatedTo waits until the replica uid of b has key = val.
func replicatedTo(t *testing.T, b *agent.RedisBackend, uid, key, val string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		if got, _ := client(t, b, uid).Get(t.Context(), key).Result(); got != val {
			return fmt.Errorf("replica %s has %s=%q", uid, key, got)
		}
		return nil
	})
}
