package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cnm/agent"
)

// needRedis skips a test when redis-server is not installed.
func needRedis(t testing.TB) {
	t.Helper()
	// A failure, not a skip: a missing install must not pass for green
	// (make test runs make deps, which installs it).
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not installed: make deps installs it")
	}
}

// testPorts is a range of 40 ports for one test, starting at a port the
// system just handed out: another test's range, or a long-lived listener,
// is unlikely to be there, and the backend skips ports in use anyway.
func testPorts(t testing.TB) (low, high int) {
	t.Helper()
	// Below the kernel's ephemeral range (32768 and up), so that no
	// outgoing connection of another test takes a port of the range
	// between this check and the shard's start.
	for range 100 {
		low = 20000 + rand.IntN(12000-40)
		if allFree(low, low+39) {
			return low, low + 39
		}
	}
	t.Fatalf("no 40 free ports found in 20000-32000")
	return 0, 0
}

// allFree reports whether every port of low-high can be bound now.
func allFree(low, high int) bool {
	for p := low; p <= high; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

type redisOpts struct {
	dir       string // default: a fresh one
	host      string // default 127.0.0.1
	low, high int    // default: testPorts
	pause     time.Duration
}

// newRedisBackend returns a RedisBackend whose shard processes are all
// killed when the test ends, also when it fails.
func newRedisBackend(t testing.TB, o redisOpts) *agent.RedisBackend {
	t.Helper()
	needRedis(t)
	if o.dir == "" {
		o.dir = filepath.Join(t.TempDir(), "shards")
		dir := o.dir
		t.Cleanup(func() { killShards(dir) })
	}
	if o.host == "" {
		o.host = "127.0.0.1"
	}
	if o.low == 0 {
		o.low, o.high = testPorts(t)
	}
	b, err := agent.NewRedisBackend(agent.RedisConfig{Dir: o.dir, Host: o.host, PortLow: o.low, PortHigh: o.high,
		SwitchPause: o.pause, SuperviseEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewRedisBackend: %v", err)
	}
	return b
}

// killShards kills every process a shard directory under dir records.
func killShards(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		for _, pid := range recordedPIDs(filepath.Join(dir, e.Name())) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, e := range ents {
		for _, pid := range recordedPIDs(filepath.Join(dir, e.Name())) {
			for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

func recordedPIDs(shardDir string) []int {
	var out []int
	if data, err := os.ReadFile(filepath.Join(shardDir, "redis.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	var m struct {
		PID int `json:"pid"`
	}
	if data, err := os.ReadFile(filepath.Join(shardDir, "shard.json")); err == nil && json.Unmarshal(data, &m) == nil && m.PID > 0 {
		out = append(out, m.PID)
	}
	return out
}

// shardPID is the pid the shard's directory records.
func shardPID(t *testing.T, dir, uid string) int {
	t.Helper()
	pids := recordedPIDs(filepath.Join(dir, uid))
	if len(pids) == 0 {
		t.Fatalf("shard %s records no pid", uid)
	}
	return pids[len(pids)-1]
}

func redisInfo(t testing.TB, b *agent.RedisBackend, uid string) agent.Info {
	t.Helper()
	info, err := b.Info(uid)
	if err != nil {
		t.Fatalf("Info(%s): %v", uid, err)
	}
	return info
}

// client returns a client of the shard, closed when the test ends.
func client(t *testing.T, b *agent.RedisBackend, uid string) *redis.Client {
	t.Helper()
	return dialAddr(t, shardAddr(t, b, uid))
}

func shardAddr(t testing.TB, b *agent.RedisBackend, uid string) string {
	t.Helper()
	info := redisInfo(t, b, uid)
	if info.Port == 0 {
		t.Fatalf("shard %s reports no port", uid)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(info.Port))
}

func dialAddr(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

func configGet(t *testing.T, c *redis.Client, key string) string {
	t.Helper()
	v, err := c.ConfigGet(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("CONFIG GET %s: %v", key, err)
	}
	return v[key]
}

// replication returns the INFO replication fields of the process at c.
func replication(t *testing.T, c *redis.Client) map[string]string {
	t.Helper()
	s, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		t.Fatalf("INFO replication: %v", err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// endpointSource is a copy source that only says where the shard listens.
type endpointSource struct{ addr string }

func (endpointSource) Fetch(context.Context, string) (io.ReadCloser, int64, string, error) {
	return nil, 0, "", agent.ErrNotStreamable
}

func (s endpointSource) Endpoint(context.Context, string) (string, error) { return s.addr, nil }
