package agent

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cnm/fsm"
)

// Persist writes the shard's persistence file in mode (BGSAVE for
// snapshot, BGREWRITEAOF for aof) and waits until it is written. A mode
// other than the shard's is applied to the running process first and
// recorded, so that the shard keeps it across restarts.
func (b *RedisBackend) Persist(ctx context.Context, uid, mode string) error {
	if mode != fsm.PersistenceSnapshot && mode != fsm.PersistenceAOF {
		return fmt.Errorf("persist shard %s as %q: %w", uid, mode, ErrBadPersistence)
	}
	return b.withRunning(ctx, uid, func(m *shardMeta) error { return b.persist(ctx, m, mode) })
}

// persist runs one save of mode to its end; the shard's lock is held.
func (b *RedisBackend) persist(ctx context.Context, m *shardMeta, mode string) error {
	uid := m.UID
	if m.Persistence != mode {
		if err := b.setPersistence(ctx, m, mode); err != nil {
			return err
		}
	}
	c := dial(b.addr(*m))
	defer c.Close()
	counter, busy, start := "rdb_saves", "rdb_bgsave_in_progress", "BGSAVE"
	if mode == fsm.PersistenceAOF {
		counter, busy, start = "aof_rewrites", "aof_rewrite_in_progress", "BGREWRITEAOF"
	}
	started := int64(-1)
	err := poll(ctx, 2*time.Minute, func() (bool, error) {
		kv, err := infoAt(ctx, b.addr(*m), "persistence")
		if err != nil {
			return false, err
		}
		idle := kv["rdb_bgsave_in_progress"] == "0" && kv["aof_rewrite_in_progress"] == "0" && kv["aof_rewrite_scheduled"] == "0"
		if started < 0 {
			// A save already running may have forked before this call:
			// it ends first, and then ours starts.
			if !idle {
				return false, nil
			}
			if err := c.Do(ctx, start).Err(); err != nil && !strings.Contains(err.Error(), "in progress") {
				return false, fmt.Errorf("%s: %w", start, err)
			} else if err == nil {
				started = infoInt(kv, counter)
			}
			return false, nil
		}
		return kv[busy] == "0" && idle && infoInt(kv, counter) > started && b.persisted(*m, kv), nil
	})
	if err != nil {
		return fmt.Errorf("shard %s: wait for %s: %w", uid, start, err)
	}
	return nil
}

// Configure applies memory (when > 0) and persistence to the running
// shard and records them, so that it keeps them across restarts.
func (b *RedisBackend) Configure(ctx context.Context, uid string, memory int64, persistence string) error {
	if err := checkPersistence(persistence); err != nil {
		return fmt.Errorf("configure shard %s: %w", uid, err)
	}
	return b.withRunning(ctx, uid, func(m *shardMeta) error {
		if memory > 0 && memory != m.Memory {
			c := dial(b.addr(*m))
			defer c.Close()
			if err := c.ConfigSet(ctx, "maxmemory", strconv.FormatInt(memory, 10)).Err(); err != nil {
				return fmt.Errorf("shard %s: config set maxmemory: %w", uid, err)
			}
			m.Memory = memory
			if err := b.saveMeta(*m); err != nil {
				return err
			}
		}
		if persistence != m.Persistence {
			return b.setPersistence(ctx, m, persistence)
		}
		return nil
	})
}

// setPersistence switches the running process to mode and records it.
func (b *RedisBackend) setPersistence(ctx context.Context, m *shardMeta, mode string) error {
	c := dial(b.addr(*m))
	defer c.Close()
	for _, line := range persistenceConf(mode) {
		k, v, _ := strings.Cut(line, " ")
		if err := c.ConfigSet(ctx, k, strings.Trim(v, `"`)).Err(); err != nil {
			return fmt.Errorf("shard %s: config set %s: %w", m.UID, k, err)
		}
	}
	m.Persistence = mode
	return b.saveMeta(*m)
}

// poll calls cond every pollEvery until it is done or fails (an error
// ends it), or within or ctx ends.
func poll(ctx context.Context, within time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		done, err := cond()
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
