package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cnm/agent"
	"cnm/fsm"
)

func TestRedisMaterialiseRunsShardWithItsMemoryAndPersistence(t *testing.T) {
	tests := []struct {
		persistence       string
		save, appendonly  string
		wantAppendfsync   string
		wantRDBFileConfig string
	}{
		{fsm.PersistenceDisabled, "", "no", "everysec", "dump.rdb"},
		{fsm.PersistenceSnapshot, "3600 1 300 100 60 10000", "no", "everysec", "dump.rdb"},
		{fsm.PersistenceAOF, "", "yes", "everysec", "dump.rdb"},
	}
	for _, tc := range tests {
		t.Run(tc.persistence, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "shards")
			t.Cleanup(func() { killShards(dir) })
			low, high := testPorts(t)
			b := newRedisBackend(t, redisOpts{dir: dir, low: low, high: high})
			const memory = 64 << 20
			if err := b.Materialise(t.Context(), agent.Spec{UID: "1", BDB: 3, Role: fsm.RoleMaster, Memory: memory, Persistence: tc.persistence}); err != nil {
				t.Fatalf("Materialise: %v", err)
			}
			c := client(t, b, "1")
			for key, want := range map[string]string{
				"maxmemory": strconv.Itoa(memory), "save": tc.save, "appendonly": tc.appendonly,
				"appendfsync": tc.wantAppendfsync, "dbfilename": tc.wantRDBFileConfig, "dir": filepath.Join(dir, "1"),
				"bind": "127.0.0.1", "daemonize": "no",
			} {
				if got := configGet(t, c, key); got != want {
					t.Errorf("CONFIG GET %s = %q, want %q", key, got, want)
				}
			}
			if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			if got, err := c.Get(t.Context(), "k").Result(); err != nil || got != "v" {
				t.Fatalf("GET = %q, %v", got, err)
			}
			info := redisInfo(t, b, "1")
			if info.Role != fsm.RoleMaster || info.Status != agent.StatusActive || !info.InSync || info.Keys != 1 ||
				info.UsedMemory <= 0 || info.Port < low || info.Port > high || info.BDB != 3 || info.Persistence != tc.persistence {
				t.Errorf("Info = %+v", info)
			}
			// Detached: its own process group, so signals to cnmd's do not
			// reach it.
			pid := shardPID(t, dir, "1")
			if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
				t.Errorf("process %d is in group %d (%v), want its own", pid, pgid, err)
			}
			if uids, err := b.List(); err != nil || !slices.Equal(uids, []string{"1"}) {
				t.Errorf("List = %v, %v", uids, err)
			}
		})
	}
}

func TestRedisShardsGetDistinctPortsOfTheRange(t *testing.T) {
	low, _ := testPorts(t)
	b := newRedisBackend(t, redisOpts{low: low, high: low + 1})
	for _, uid := range []string{"1", "2"} {
		if err := b.Materialise(t.Context(), agent.Spec{UID: uid, Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
			t.Fatalf("Materialise %s: %v", uid, err)
		}
	}
	p1, p2 := redisInfo(t, b, "1").Port, redisInfo(t, b, "2").Port
	if p1 == p2 || min(p1, p2) < low || max(p1, p2) > low+1 {
		t.Errorf("ports %d and %d, want two distinct in %d-%d", p1, p2, low, low+1)
	}
	if err := b.Materialise(t.Context(), agent.Spec{UID: "3", Role: fsm.RoleMaster, Memory: 32 << 20}); err == nil {
		t.Errorf("a third shard started on a range of two ports")
	}
	if _, err := b.Info("3"); !errors.Is(err, agent.ErrNoShard) {
		t.Errorf("Info of the shard that did not start: %v, want ErrNoShard", err)
	}
}

func TestRedisReplicaMaterialisedWithMasterReplicatesAndIsInSync(t *testing.T) {
	b := newRedisBackend(t, redisOpts{})
	ctx := t.Context()
	if err := b.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
		t.Fatalf("Materialise master: %v", err)
	}
	master := shardAddr(t, b, "1")
	if err := b.Materialise(ctx, agent.Spec{UID: "2", Role: fsm.RoleSlave, Memory: 32 << 20, Master: master}); err != nil {
		t.Fatalf("Materialise replica: %v", err)
	}
	if err := client(t, b, "1").Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatalf("SET on master: %v", err)
	}
	rc := client(t, b, "2")
	eventually(t, 10*time.Second, func() error {
		got, err := rc.Get(ctx, "k").Result()
		if err != nil || got != "v1" {
			return errors.New("key not on the replica yet")
		}
		if info := redisInfo(t, b, "2"); !info.InSync || info.Status != agent.StatusActive || info.Role != fsm.RoleSlave || info.Master != master {
			return errors.New("replica info: not in sync")
		}
		return nil
	})
	if err := rc.Set(ctx, "x", "y", 0).Err(); err == nil {
		t.Errorf("a write to the replica was accepted")
	}
}

func TestRedisInfoOfDeadShardIsDownAndDropRemovesIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shards")
	t.Cleanup(func() { killShards(dir) })
	b := newRedisBackend(t, redisOpts{dir: dir})
	ctx := t.Context()
	for _, uid := range []string{"1", "2"} {
		if err := b.Materialise(ctx, agent.Spec{UID: uid, Role: fsm.RoleMaster, Memory: 32 << 20}); err != nil {
			t.Fatalf("Materialise: %v", err)
		}
	}
	pid := shardPID(t, dir, "1")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if info := redisInfo(t, b, "1"); info.Status != agent.StatusDown {
			return errors.New("status " + info.Status)
		}
		return nil
	})
	// What the leader's stats poll reads: each shard as its process is.
	stats, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, info := range stats {
		status[info.UID] = info.Status
	}
	if len(stats) != 2 || status["1"] != agent.StatusDown || status["2"] != agent.StatusActive {
		t.Errorf("Stats = %+v, want shard 1 down and 2 active", stats)
	}
	pid2 := shardPID(t, dir, "2")
	for _, uid := range []string{"1", "2", "2"} { // dead, running, gone
		if err := b.Drop(ctx, uid); err != nil {
			t.Fatalf("Drop(%s): %v", uid, err)
		}
	}
	if syscall.Kill(pid2, 0) == nil {
		t.Errorf("process %d still runs after Drop", pid2)
	}
	for _, uid := range []string{"1", "2"} {
		if _, err := os.Stat(filepath.Join(dir, uid)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("shard dir %s: %v, want removed", uid, err)
		}
		if _, err := b.Info(uid); !errors.Is(err, agent.ErrNoShard) {
			t.Errorf("Info(%s) after Drop: %v", uid, err)
		}
	}
	if _, _, err := b.Open("1"); !errors.Is(err, agent.ErrNotStreamable) {
		t.Errorf("Open: %v, want ErrNotStreamable", err)
	}
}

func TestRedisPersistWritesTheFileOfItsMode(t *testing.T) {
	for _, tc := range []struct{ mode, file string }{
		{fsm.PersistenceSnapshot, "dump.rdb"},
		{fsm.PersistenceAOF, "appendonlydir/appendonly.aof.manifest"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "shards")
			t.Cleanup(func() { killShards(dir) })
			b := newRedisBackend(t, redisOpts{dir: dir})
			ctx := t.Context()
			if err := b.Materialise(ctx, agent.Spec{UID: "1", Role: fsm.RoleMaster, Memory: 32 << 20, Persistence: tc.mode}); err != nil {
				t.Fatalf("Materialise: %v", err)
			}
			if err := client(t, b, "1").Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if tc.mode == fsm.PersistenceSnapshot && redisInfo(t, b, "1").Persisted {
				t.Errorf("Persisted before any save")
			}
			if err := b.Persist(ctx, "1", tc.mode); err != nil {
				t.Fatalf("Persist: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "1", tc.file)); err != nil {
				t.Errorf("after Persist: %v", err)
			}
			if !redisInfo(t, b, "1").Persisted {
				t.Errorf("Info.Persisted false after Persist")
			}
			if err := b.Persist(ctx, "1", "sometimes"); !errors.Is(err, agent.ErrBadPersistence) {
				t.Errorf("Persist of an unknown mode: %v", err)
			}
		})
	}
}

// A replica pointed at a process of another pair (another database, or
// another slot range of its own: a port a dropped copy freed and another
// shard took) is refused at the handshake and keeps its own data.
func TestRedisReplicaRefusesToSyncFromAnotherPairsProcess(t *testing.T) {
	cases := []struct {
		name          string
		master, other agent.Spec
	}{
		{name: "another database", master: agent.Spec{BDB: 1, Slots: "0-16383"}, other: agent.Spec{BDB: 2, Slots: "0-16383"}},
		{name: "another slot range", master: agent.Spec{BDB: 1, Slots: "0-8191"}, other: agent.Spec{BDB: 1, Slots: "8192-16383"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "shards")
			t.Cleanup(func() { killShards(dir) })
			b := newRedisBackend(t, redisOpts{dir: dir})
			ctx := t.Context()
			c.master.UID, c.master.Role, c.master.Memory = "1", fsm.RoleMaster, 32<<20
			if err := b.Materialise(ctx, c.master); err != nil {
				t.Fatal(err)
			}
			c.other.UID, c.other.Role, c.other.Memory = "2", fsm.RoleMaster, 32<<20
			if err := b.Materialise(ctx, c.other); err != nil {
				t.Fatal(err)
			}
			if err := client(t, b, "1").Set(ctx, "theirs", "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := client(t, b, "2").Set(ctx, "mine", "y", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := b.Follow(ctx, "2", shardAddr(t, b, "1")); err != nil {
				t.Fatalf("Follow: %v", err)
			}
			log := filepath.Join(dir, "2", "redis.log")
			eventually(t, 10*time.Second, func() error {
				data, _ := os.ReadFile(log)
				if !strings.Contains(string(data), "AUTH") {
					return errors.New("the replica has not tried to authenticate yet")
				}
				return nil
			})
			rc := client(t, b, "2")
			if got, err := rc.Get(ctx, "mine").Result(); err != nil || got != "y" {
				t.Errorf("the replica's own key: %q, %v; want it kept", got, err)
			}
			if n, _ := rc.Exists(ctx, "theirs").Result(); n != 0 {
				t.Errorf("the other pair's key reached the replica")
			}
			if kv := replication(t, rc); kv["master_link_status"] == "up" {
				t.Errorf("the replica's link to the other pair's process is up")
			}
		})
	}
	// The pair's own user opens the handshake (TestRedisReplicaMaterialised...
	// replicates with the same configuration).
	if agent.ReplicationUser(agent.Spec{BDB: 3, Slots: "0-16383"}) == agent.ReplicationUser(agent.Spec{BDB: 3, Slots: "0-8191"}) {
		t.Error("two slot ranges of one database replicate as the same user")
	}
}
