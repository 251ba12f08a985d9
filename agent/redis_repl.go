package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"cnm/fsm"
)

// maxSync bounds how long a copy waits for its replica to sync, beyond the
// caller's own deadline.
const maxSync = time.Hour

// CopyFrom makes the local shard a replica of the shard's current master,
// waits until it is in sync, and makes it visible through commit: a copy
// of a master takes over from it there (a switch-over that loses no
// acknowledged write), a copy of a replica stays a replica. src must be
// an Endpointer. A copy that fails leaves no shard behind, unless one was
// here before.
func (b *RedisBackend) CopyFrom(ctx context.Context, s Spec, src Source, commit Commit) error {
	if err := validUID(s.UID); err != nil {
		return err
	}
	ep, ok := src.(Endpointer)
	if !ok {
		return fmt.Errorf("copy shard %s: the source cannot say where the shard listens: %w", s.UID, ErrNotStreamable)
	}
	from, err := ep.Endpoint(ctx, s.UID)
	if err != nil {
		return fmt.Errorf("copy shard %s: locate the source: %w", s.UID, err)
	}
	unlock, err := b.locks.lock(ctx, s.UID)
	if err != nil {
		return err
	}
	defer unlock()
	srcKV, err := infoAt(ctx, from, "replication")
	if err != nil {
		return fmt.Errorf("copy shard %s: %w", s.UID, err)
	}
	if live := masterOf(srcKV); s.Role == fsm.RoleMaster && live != "" {
		// The state's master runs as a replica for now (a failover that
		// switched it was not committed, or a stray copy took over):
		// what its slots hold is at the master it follows, which the
		// copy takes over from.
		if lkv, err := infoAt(ctx, live, "replication"); err == nil && lkv["role"] == "master" {
			b.log.Info("copy of a master whose source runs as a replica: taking over from the master it follows", "shard_uid", s.UID, "source", from, "master", live)
			from, srcKV = live, lkv
		}
	}
	master, err := copyMaster(s, from, srcKV)
	if err != nil {
		return err
	}
	if s.Memory <= 0 {
		s.Memory = memoryOf(ctx, from)
	}
	m, created, done, err := b.replicaOf(ctx, s, master, srcKV)
	if err != nil {
		return err
	}
	install := func() error {
		if done || s.Role != fsm.RoleMaster {
			return nil
		}
		return b.switchOver(ctx, &m, from)
	}
	if commit == nil {
		err = install()
	} else {
		err = commit(install)
	}
	if err != nil && created {
		if derr := b.destroy(context.WithoutCancel(ctx), s.UID); derr != nil {
			b.log.Warn("remove failed copy", "shard_uid", s.UID, "error", derr)
		}
	}
	return err
}

// copyMaster is the master a copy replicates from: the source when it is
// the master, else the master the source (a replica) follows, or the one
// the agent resolved.
func copyMaster(s Spec, from string, srcKV map[string]string) (string, error) {
	switch {
	case srcKV["role"] == "master":
		return from, nil
	case s.Role == fsm.RoleMaster:
		return "", fmt.Errorf("copy master shard %s: the source at %s is a replica: %w", s.UID, from, ErrNoShard)
	case s.Master != "":
		return s.Master, nil
	case masterOf(srcKV) != "":
		return masterOf(srcKV), nil
	}
	return "", fmt.Errorf("copy shard %s: the source at %s follows no master", s.UID, from)
}

// memoryOf is the maxmemory of the process at addr, for a copy whose spec
// does not say (0 if it cannot be read).
func memoryOf(ctx context.Context, addr string) int64 {
	c := dial(addr)
	defer c.Close()
	v, err := c.ConfigGet(ctx, "maxmemory").Result()
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(v["maxmemory"], 10, 64)
	return n
}

// replicaOf makes the local shard an in-sync replica of master, starting
// it if it is not here (created). A local master that took over from the
// source already (a replayed copy: its previous replication id is the
// source's) is kept as it is (done). The shard's lock is held.
func (b *RedisBackend) replicaOf(ctx context.Context, s Spec, master string, srcKV map[string]string) (m shardMeta, created, done bool, err error) {
	m, err = b.loadMeta(s.UID)
	switch {
	case errors.Is(err, ErrNoShard):
		m = metaOf(s)
		m.Role, m.Master, created = fsm.RoleSlave, master, true
		if err = b.create(ctx, &m); err != nil {
			return m, false, false, err
		}
	case err != nil:
		return m, false, false, err
	default:
		if err = b.ensureRunning(ctx, &m); err != nil {
			return m, false, false, err
		}
		if kv, ierr := infoAt(ctx, b.addr(m), "replication"); ierr == nil && kv["role"] == "master" &&
			kv["master_replid2"] == srcKV["master_replid"] {
			return m, false, true, nil
		}
		if err = b.follow(ctx, &m, master); err != nil {
			return m, false, false, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, maxSync)
	defer cancel()
	if err = b.waitSynced(ctx, m, master); err != nil {
		return m, created, false, fmt.Errorf("copy shard %s from %s: %w", s.UID, master, err)
	}
	return m, created, false, nil
}

// waitSynced polls until the replica's link to master is up and it has
// at least the offset master had when looked at.
func (b *RedisBackend) waitSynced(ctx context.Context, m shardMeta, master string) error {
	seen := time.Now()
	return poll(ctx, maxSync, func() (bool, error) {
		kv, err := infoAt(ctx, b.addr(m), "replication")
		if err != nil {
			return false, err
		}
		// A master gone for good (dropped, its node down) would keep the
		// copy waiting until the caller's deadline: the caller tries
		// again, with where the shard's data is then.
		if mkv, err := infoAt(ctx, master, "replication"); err == nil && mkv["role"] == "master" {
			seen = time.Now()
		} else if time.Since(seen) > masterGone {
			return false, fmt.Errorf("copy from %s: it has not answered as a master for %s", master, masterGone)
		}
		return masterOf(kv) == master && b.caughtUp(ctx, m, master, kv), nil
	})
}

// masterGone is how long a copy waits for a master that does not answer
// as one before it gives up.
const masterGone = 5 * time.Second

// errNotMaster: the master a switch-over would take over from was made a
// replica by another one meanwhile.
var errNotMaster = errors.New("another switch-over took its role")

// switchOver makes the local replica the master in place of old without
// losing an acknowledged write: old stops taking writes (a bounded pause,
// which expires by itself if this fails half-way), the replica catches up
// with old's offset, and only then stops replicating. Old then becomes a
// replica of the new master, so that a write reaching it after its pause
// ends is refused (READONLY) instead of being acknowledged by a copy that
// the executor is about to drop. The shard's lock is held.
func (b *RedisBackend) switchOver(ctx context.Context, m *shardMeta, old string) error {
	oc := dial(old)
	defer oc.Close()
	pause := b.cfg.SwitchPause
	if err := oc.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err(); err != nil {
		return fmt.Errorf("switch shard %s over: pause %s: %w", m.UID, old, err)
	}
	err := func() error {
		// Leave time to promote before old takes writes again.
		err := poll(ctx, pause*3/4, func() (bool, error) {
			okv, err := infoAt(ctx, old, "replication")
			if err != nil {
				return false, err
			}
			if okv["role"] != "master" {
				// Another switch-over took old's role meanwhile (a
				// failover of its pair by another action): promoting
				// this copy would make a second master.
				return false, fmt.Errorf("%s is no master any more: %w", old, errNotMaster)
			}
			kv, err := infoAt(ctx, b.addr(*m), "replication")
			if err != nil {
				return false, err
			}
			return kv["master_link_status"] == "up" && infoInt(kv, "slave_repl_offset") >= infoInt(okv, "master_repl_offset"), nil
		})
		if err != nil {
			return fmt.Errorf("catch up with %s: %w", old, err)
		}
		return b.promote(ctx, m)
	}()
	if err != nil {
		// The old master serves on as before.
		_ = oc.Do(context.WithoutCancel(ctx), "CLIENT", "UNPAUSE").Err()
		if derr := b.follow(context.WithoutCancel(ctx), m, old); derr != nil {
			b.log.Warn("re-follow after a failed switch-over", "shard_uid", m.UID, "error", derr)
		}
		return fmt.Errorf("switch shard %s over from %s: %w", m.UID, old, err)
	}
	host, port, _ := net.SplitHostPort(b.addr(*m))
	if err := oc.Do(context.WithoutCancel(ctx), "REPLICAOF", host, port).Err(); err != nil {
		// Its pause still holds writes back; the executor drops it next.
		b.log.Warn("old master not demoted after a switch-over", "shard_uid", m.UID, "old", old, "error", err)
	} else if err := oc.Do(context.WithoutCancel(ctx), "CLIENT", "UNPAUSE").Err(); err != nil {
		// A replica refuses writes by itself; paused, it would also not
		// apply the new master's stream until the pause ends, and a
		// switch back (a failover taken back) could not catch up.
		b.log.Debug("old master not unpaused after a switch-over", "shard_uid", m.UID, "old", old, "error", err)
	}
	b.log.Info("shard switched over", "shard_uid", m.UID, "from", old, "port", m.Port)
	return nil
}

// promote makes the local shard a master and checks that it is one.
func (b *RedisBackend) promote(ctx context.Context, m *shardMeta) error {
	c := dial(b.addr(*m))
	defer c.Close()
	if err := c.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		return fmt.Errorf("shard %s: replicaof no one: %w", m.UID, err)
	}
	kv, err := infoAt(ctx, b.addr(*m), "replication")
	if err != nil {
		return err
	}
	if kv["role"] != "master" {
		return fmt.Errorf("shard %s: still %s after replicaof no one", m.UID, kv["role"])
	}
	m.Role, m.Master = fsm.RoleMaster, ""
	return b.saveMeta(*m)
}

// follow points the local shard at master and records it; a master that
// was recovering from its replica is a replica now, and recovers no more.
func (b *RedisBackend) follow(ctx context.Context, m *shardMeta, master string) error {
	if err := pointAt(ctx, b.addr(*m), master); err != nil {
		return fmt.Errorf("shard %s: %w", m.UID, err)
	}
	m.Role, m.Master, m.Recovering = fsm.RoleSlave, master, ""
	return b.saveMeta(*m)
}

// pointAt makes the process at addr a replica of master (host:port).
func pointAt(ctx context.Context, addr, master string) error {
	host, port, err := net.SplitHostPort(master)
	if err != nil {
		return fmt.Errorf("master %q: %w", master, err)
	}
	c := dial(addr)
	defer c.Close()
	if err := c.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		return fmt.Errorf("replicaof %s: %w", master, err)
	}
	return nil
}

// Follow makes the local shard a replica of master (host:port).
func (b *RedisBackend) Follow(ctx context.Context, uid, master string) error {
	return b.withRunning(ctx, uid, func(m *shardMeta) error {
		if m.Role == fsm.RoleSlave && m.Master == master {
			if kv, err := infoAt(ctx, b.addr(*m), "replication"); err == nil && masterOf(kv) == master {
				return nil
			}
		}
		if b.recoveringFrom(ctx, *m, master) {
			return fmt.Errorf("shard %s: its master %s follows it (a failover or a recovery in flight), and is followed once it leads again", uid, master)
		}
		b.log.Info("shard follows a new master", "shard_uid", uid, "master", master)
		return b.follow(ctx, m, master)
	})
}

// SwitchRole makes the shard a master (REPLICAOF NO ONE), or a replica of
// the master it last followed. A shard that never followed one is only
// recorded as a replica: the agent points it at its master (Follow) once
// it knows where that master listens.
func (b *RedisBackend) SwitchRole(ctx context.Context, uid, role string) error {
	return b.withRunning(ctx, uid, func(m *shardMeta) error {
		switch {
		case role == fsm.RoleMaster && m.Recovering != "":
			return b.finishRecovery(ctx, m)
		case role == fsm.RoleMaster:
			if master := b.servingMaster(ctx, *m); master != "" {
				// A switch-over elsewhere made it a replica (a move's new
				// copy took over) before this node's state learned of it:
				// promoting it would make two masters. A failover is
				// promoted by its step (Promote), not by a reconcile.
				return fmt.Errorf("shard %s: it follows %s, which serves as a master: left a replica until the state says otherwise", uid, master)
			}
			return b.promote(ctx, m)
		case m.Master != "":
			return b.follow(ctx, m, m.Master)
		}
		m.Role = role
		return b.saveMeta(*m)
	})
}

// servingMaster is the master the local replica follows, if that master
// answers as one; "" otherwise.
func (b *RedisBackend) servingMaster(ctx context.Context, m shardMeta) string {
	kv, err := infoAt(ctx, b.addr(m), "replication")
	if err != nil {
		return ""
	}
	master := masterOf(kv)
	if master == "" {
		return ""
	}
	mkv, err := infoAt(ctx, master, "replication")
	if err != nil || mkv["role"] != "master" {
		return ""
	}
	return master
}

// withRunning runs f on the shard's metadata, under its lock, with its
// process running.
func (b *RedisBackend) withRunning(ctx context.Context, uid string, f func(m *shardMeta) error) error {
	unlock, err := b.lockShard(ctx, uid)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := b.loadMeta(uid)
	if err != nil {
		return err
	}
	if err := b.ensureRunning(ctx, &m); err != nil {
		return err
	}
	return f(&m)
}

// Promote makes the local replica uid the master in place of old
// (host:port; empty: the master it follows). When old answers, it is a
// switch-over, so that no write old acknowledged is lost. When old does
// not answer (its node is down, or its process died), there is nothing to
// pause and the replica only stops replicating: a master nobody reaches
// acknowledges no write that could be lost by it, though one cut off from
// this node alone, and still reached by clients, could. A shard that is a
// master already (a retried call) is left as it is.
func (b *RedisBackend) Promote(ctx context.Context, uid, old string) error {
	return b.withRunning(ctx, uid, func(m *shardMeta) error {
		kv, err := infoAt(ctx, b.addr(*m), "replication")
		if err != nil {
			return fmt.Errorf("promote shard %s: %w", uid, err)
		}
		following := masterOf(kv)
		switch {
		case kv["role"] == "master" && m.Role == fsm.RoleMaster:
			return nil
		case kv["role"] == "master":
			// Not one this backend promoted (it records a promotion): a
			// replica made before its master's address was known, which
			// holds none of the data. It follows the old master first,
			// then takes over from it.
			if old == "" || !pings(ctx, old) {
				return fmt.Errorf("promote shard %s: it runs as a master that was never promoted, and its old master does not answer", uid)
			}
			b.log.Info("promoting a replica that never followed its master: it copies from it first", "shard_uid", uid, "old", old)
			if err := b.follow(ctx, m, old); err != nil {
				return err
			}
			if err := b.waitSynced(ctx, *m, old); err != nil {
				return fmt.Errorf("promote shard %s: copy from %s: %w", uid, old, err)
			}
			return b.switchOver(ctx, m, old)
		case old == "":
			old = following
		case following != "" && following != old:
			// Pausing old would not hold back the writes this replica
			// misses.
			return fmt.Errorf("promote shard %s: it follows %s, not the old master %s", uid, following, old)
		}
		if old == "" || !pings(ctx, old) {
			b.log.Warn("old master unreachable: promoting without a switch-over", "shard_uid", uid, "old", old)
			return b.promote(ctx, m)
		}
		return b.switchOver(ctx, m, old)
	})
}

// pings tells whether the process at addr answers a PING soon.
func pings(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c := dial(addr)
	defer c.Close()
	return c.Ping(ctx).Err() == nil
}
