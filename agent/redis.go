package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"cnm/fsm"
)

// RedisConfig configures a RedisBackend.
type RedisConfig struct {
	// Dir holds one directory per shard, <Dir>/<uid>/.
	Dir string
	// Host is the address shard processes bind to: the host of the node's
	// API address, so that peers reach them where they reach the node.
	Host string
	// PortLow and PortHigh bound the ports shards listen on (inclusive).
	PortLow, PortHigh int
	// Server is the redis-server binary (default: "redis-server" in PATH).
	Server string
	// SwitchPause bounds how long a switch-over pauses the old master's
	// writes (default 2 s); the pause expires by itself if cnmd dies.
	SwitchPause time.Duration
	// SuperviseEvery is how often Supervise checks the shard processes
	// (default 1 s).
	SuperviseEvery time.Duration
	Logger         *slog.Logger
}

// RedisBackend runs every shard as its own redis-server process, started
// detached so that it outlives cnmd; a backend opened on a directory whose
// shards still run adopts them.
type RedisBackend struct {
	cfg     RedisConfig
	log     *slog.Logger
	locks   shardLocks // one operation per shard at a time
	partner partnerFunc
	// portMu serialises port allocation, so that two shards started at
	// once never pick the same free port.
	portMu sync.Mutex
}

// shardMeta is what a shard's directory records about it, so that a
// restarted agent finds (adopts) or restarts the shard as it was: the
// shard as its spec says (Master: what a replica follows), and where its
// process listens and runs.
type shardMeta struct {
	Spec
	Port int `json:"port"`
	PID  int `json:"pid"`
	// Recovering is the replica (host:port) a master whose process died
	// copies from before it takes its role back (redis_recover.go).
	Recovering string `json:"recovering_from,omitempty"`
}

const (
	metaFile   = "shard.json"
	confFile   = "redis.conf"
	pidFile    = "redis.pid"
	logFile    = "redis.log"
	rdbFile    = "dump.rdb"
	aofDir     = "appendonlydir"
	aofName    = "appendonly.aof"
	tmpSuffix  = ".tmp"
	defaultLow = 30000
)

// NewRedisBackend opens the shard directories in cfg.Dir. It starts
// nothing: the shards are adopted, or restarted, by Supervise and by the
// operations on them.
func NewRedisBackend(cfg RedisConfig) (*RedisBackend, error) {
	if cfg.Server == "" {
		cfg.Server = "redis-server"
	}
	if cfg.PortLow == 0 && cfg.PortHigh == 0 {
		cfg.PortLow, cfg.PortHigh = defaultLow, defaultLow+999
	}
	if cfg.PortLow < 1 || cfg.PortHigh > 65535 || cfg.PortLow > cfg.PortHigh {
		return nil, fmt.Errorf("shard ports %d-%d: not a range of ports", cfg.PortLow, cfg.PortHigh)
	}
	if cfg.SwitchPause <= 0 {
		cfg.SwitchPause = 2 * time.Second
	}
	if cfg.SuperviseEvery <= 0 {
		cfg.SuperviseEvery = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("shard dir %s: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create shard dir %s: %w", dir, err)
	}
	return &RedisBackend{cfg: cfg, log: cfg.Logger.With("component", "redis-backend")}, nil
}

func (b *RedisBackend) shardDir(uid string) string { return filepath.Join(b.cfg.Dir, uid) }

func (b *RedisBackend) loadMeta(uid string) (shardMeta, error) {
	var m shardMeta
	if err := validUID(uid); err != nil {
		return m, err
	}
	if err := readRecord(filepath.Join(b.shardDir(uid), metaFile), uid, &m); err != nil {
		return m, err
	}
	return m, nil
}

// saveMeta writes the metadata atomically: a crash leaves the old or the
// new record, never half of one.
func (b *RedisBackend) saveMeta(m shardMeta) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode shard %s metadata: %w", m.UID, err)
	}
	p := filepath.Join(b.shardDir(m.UID), metaFile)
	if err := os.WriteFile(p+tmpSuffix, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(p+tmpSuffix, p); err != nil {
		return fmt.Errorf("install %s: %w", p, err)
	}
	return nil
}

// Materialise starts a new, empty shard: a master, or a replica of
// s.Master when it is given.
func (b *RedisBackend) Materialise(ctx context.Context, s Spec) error {
	unlock, err := b.lockShard(ctx, s.UID)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := b.loadMeta(s.UID); err == nil {
		return nil // there already (a retried reconcile)
	}
	m := metaOf(s)
	if s.Role != fsm.RoleMaster {
		m.Master = s.Master
	}
	if err := b.create(ctx, &m); err != nil {
		return err
	}
	b.log.Info("shard started", "shard_uid", s.UID, "port", m.Port, "pid", m.PID, "role", m.Role, "master", m.Master)
	return nil
}

func metaOf(s Spec) shardMeta {
	pers := s.Persistence
	if pers == "" {
		pers = fsm.PersistenceDisabled
	}
	return shardMeta{Spec: Spec{UID: s.UID, BDB: s.BDB, Slots: s.Slots, Role: s.Role, Memory: s.Memory, Persistence: pers}}
}

// create makes the shard's directory and starts its process; on failure
// nothing of it remains.
func (b *RedisBackend) create(ctx context.Context, m *shardMeta) error {
	if err := checkPersistence(m.Persistence); err != nil {
		return fmt.Errorf("shard %s: %w", m.UID, err)
	}
	dir := b.shardDir(m.UID)
	// A process started just before a crash that kept its metadata from
	// being written must not run on in a directory made anew.
	if pid := readPID(dir); pid > 0 && pidAlive(pid) {
		old := shardMeta{Spec: Spec{UID: m.UID}, PID: pid, Port: confPort(dir)}
		if b.isOurs(&old) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			b.waitGone(ctx, pid)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear shard dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create shard dir %s: %w", dir, err)
	}
	if err := b.startOnFreePort(ctx, m); err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	return nil
}

// Open refuses: redis shards are copied by replication (CopyFrom through
// an Endpointer source), not streamed.
func (b *RedisBackend) Open(uid string) (io.ReadCloser, Info, error) {
	return nil, Info{}, fmt.Errorf("open shard %s: %w", uid, ErrNotStreamable)
}

// Drop shuts the shard's process down without saving and removes its
// directory; dropping a missing shard is not an error.
func (b *RedisBackend) Drop(ctx context.Context, uid string) error {
	unlock, err := b.lockShard(ctx, uid)
	if err != nil {
		return err
	}
	defer unlock()
	return b.destroy(ctx, uid)
}

// destroy stops and removes the shard; the shard's lock is held.
func (b *RedisBackend) destroy(ctx context.Context, uid string) error {
	m, err := b.loadMeta(uid)
	if err != nil && !errors.Is(err, ErrNoShard) {
		return err
	}
	if err == nil {
		if err := b.stop(ctx, m); err != nil {
			return fmt.Errorf("drop shard %s: %w", uid, err)
		}
	}
	if err := os.RemoveAll(b.shardDir(uid)); err != nil {
		return fmt.Errorf("drop shard %s: %w", uid, err)
	}
	return nil
}

// List returns every shard directory that records a shard.
func (b *RedisBackend) List() ([]string, error) {
	entries, err := os.ReadDir(b.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("list shards: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || validUID(e.Name()) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(b.cfg.Dir, e.Name(), metaFile)); err == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Stats implements StatsReporter: each shard's process, asked in turn (one
// that does not answer is reported down).
func (b *RedisBackend) Stats() ([]Info, error) { return infoAll(b) }

func checkPersistence(mode string) error {
	switch mode {
	case fsm.PersistenceDisabled, fsm.PersistenceSnapshot, fsm.PersistenceAOF:
		return nil
	}
	return fmt.Errorf("persistence %q: %w", mode, ErrBadPersistence)
}
