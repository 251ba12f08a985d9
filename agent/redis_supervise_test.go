package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

// supervise runs b.Supervise until the test ends, waiting for it to return.
func supervise(t *testing.T, b *agent.RedisBackend) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Supervise(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestRedisBackendReopenedOnItsDirAdoptsTheRunningShard(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shards")
	t.Cleanup(func() { killShards(dir) })
	low, high := testPorts(t)
	first := newRedisBackend(t, redisOpts{dir: dir, low: low, high: high})
	ctx := t.Context()
	if err := first.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := client(t, first, "1").Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	pid, port := shardPID(t, dir, "1"), redisInfo(t, first, "1").Port

	// As after a restart of cnmd: a new backend on the same directory.
	second := newRedisBackend(t, redisOpts{dir: dir, low: low, high: high})
	second.SuperviseOnce(ctx)
	if err := second.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := second.Persist(ctx, "1", fsm.PersistenceSnapshot); err != nil {
		t.Fatalf("Persist through the adopting backend: %v", err)
	}
	info := redisInfo(t, second, "1")
	if got := shardPID(t, dir, "1"); got != pid || info.Port != port || info.Status != agent.StatusActive {
		t.Errorf("adopted shard: pid %d port %d status %s, want pid %d port %d active", got, info.Port, info.Status, pid, port)
	}
	if got, err := client(t, second, "1").Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("adopted shard's key: %q, %v", got, err)
	}
}

func TestRedisSupervisorRestartsAKilledShard(t *testing.T) {
	tests := []struct {
		persistence string
		keepsData   bool
	}{
		{fsm.PersistenceAOF, true},
		{fsm.PersistenceSnapshot, true},
		{fsm.PersistenceDisabled, false},
	}
	for _, tc := range tests {
		t.Run(tc.persistence, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "shards")
			t.Cleanup(func() { killShards(dir) })
			b := newRedisBackend(t, redisOpts{dir: dir})
			ctx := t.Context()
			if err := b.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20, Persistence: tc.persistence}); err != nil {
				t.Fatal(err)
			}
			if err := client(t, b, "1").Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if tc.persistence != fsm.PersistenceDisabled {
				if err := b.Persist(ctx, "1", tc.persistence); err != nil {
					t.Fatalf("Persist: %v", err)
				}
			}
			pid, port := shardPID(t, dir, "1"), redisInfo(t, b, "1").Port
			supervise(t, b)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			eventually(t, 15*time.Second, func() error {
				info := redisInfo(t, b, "1")
				if got := shardPID(t, dir, "1"); got == pid || info.Status != agent.StatusActive {
					return fmt.Errorf("pid %d status %s: not restarted yet", got, info.Status)
				}
				return nil
			})
			if got := redisInfo(t, b, "1").Port; got != port {
				t.Errorf("restarted on port %d, want its recorded %d", got, port)
			}
			got, err := client(t, b, "1").Get(ctx, "k").Result()
			if tc.keepsData && (err != nil || got != "v") {
				t.Errorf("restarted shard's key: %q, %v; want its data back", got, err)
			}
			if !tc.keepsData && err == nil {
				t.Errorf("a shard without persistence came back with data %q", got)
			}
		})
	}
}

func TestRedisSupervisorLeavesADroppedShardDropped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shards")
	t.Cleanup(func() { killShards(dir) })
	b := newRedisBackend(t, redisOpts{dir: dir})
	ctx := t.Context()
	if err := b.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	supervise(t, b)
	pid := shardPID(t, dir, "1")
	if err := b.Drop(ctx, "1"); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	// A round after the drop finds no shard to restart.
	b.SuperviseOnce(ctx)
	if uids, err := b.List(); err != nil || len(uids) != 0 {
		t.Errorf("List after Drop: %v, %v", uids, err)
	}
	if _, err := b.Info("1"); !errors.Is(err, agent.ErrNoShard) {
		t.Errorf("Info after Drop: %v", err)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("process %d runs after Drop", pid)
	}
}

func TestRedisMaterialiseOverAShardDirWithoutMetadataStopsItsProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shards")
	t.Cleanup(func() { killShards(dir) })
	b := newRedisBackend(t, redisOpts{dir: dir})
	ctx := t.Context()
	if err := b.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	pid := shardPID(t, dir, "1")
	// As after a crash between starting the process and recording it.
	if err := os.Remove(filepath.Join(dir, "1", "shard.json")); err != nil {
		t.Fatal(err)
	}
	if err := b.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatalf("Materialise again: %v", err)
	}
	eventually(t, 5*time.Second, func() error {
		if syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("the unrecorded process %d still runs", pid)
		}
		return nil
	})
	if got := shardPID(t, dir, "1"); got == pid || redisInfo(t, b, "1").Status != agent.StatusActive {
		t.Errorf("new shard: pid %d (old %d), want a new active one", got, pid)
	}
}

// A shard process outlives cnmd, so it must not hold what cnmd inherited
// (a supervisor's pipe, a lock): only its own files.
func TestRedisShardProcessInheritsNoDescriptorOfCnmd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inherited")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// As a parent that is not Go would hand it over: without close-on-exec.
	fd, err := syscall.Open(path, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	dir := filepath.Join(t.TempDir(), "shards")
	t.Cleanup(func() { killShards(dir) })
	b := newRedisBackend(t, redisOpts{dir: dir})
	if err := b.Materialise(t.Context(), agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	pid := shardPID(t, dir, "1")
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); target == path {
			t.Fatalf("shard process %d holds cnmd's inherited descriptor %s as its fd %s", pid, path, e.Name())
		}
	}
}
