package agent

import (
	"context"
	"errors"
	"fmt"

	"cnm/fsm"
)

// A master's process that died comes back from its own files, which lack
// whatever it acknowledged after its last RDB save or AOF fsync. Its
// replica holds those writes (a client that got WAIT 1 knows it does),
// but a master restarted as a master would be the copy that replica
// resynchronises from, and the replica would throw them away. So the
// master of a replicated database comes back as a replica of its own
// replica, which stops replicating meanwhile, and takes its role back by
// the same switch-over as a migration once it holds everything.
//
// Neither copy ever loads the other's data unless the other holds all of
// it: the recovering master serves no stale reads and no writes, and a
// replica never follows a copy that is itself its replica (Follow), so a
// replica told to follow its recovering master waits instead.

// partnerFunc resolves where the replica of the master shard uid listens
// (host:port); "" when the state gives the shard no replica, or no longer
// makes it a master.
type partnerFunc func(ctx context.Context, uid string) (string, error)

// zeroReplID is the secondary replication id of a process that never was a
// replica since it started.
const zeroReplID = "0000000000000000000000000000000000000000"

// errRecovering is why a recovering master is not back in its role yet:
// it is still copying from its replica.
var errRecovering = errors.New("recovering from its replica")

// setPartner gives the backend the state's view of each master's replica;
// without one (a backend used alone), a master restarts from its files.
func (b *RedisBackend) setPartner(f partnerFunc) { b.partner = f }

// restart starts a shard whose process is gone. A master with a replica
// is started as that replica's replica (see above); one whose replica
// cannot be reached now stays down until it can, as it would otherwise
// serve without the writes the replica holds.
func (b *RedisBackend) restart(ctx context.Context, m *shardMeta) error {
	if m.Role == fsm.RoleMaster && m.Recovering == "" && b.partner != nil {
		replica, err := b.partner(ctx, m.UID)
		if err != nil {
			return fmt.Errorf("shard %s: its master process died and its replica, which holds its latest writes, was not reached, so it is not restarted from its own files: %w", m.UID, err)
		}
		if replica != "" {
			// Recorded first: a replica detached by a try that died half
			// way is known for this shard's own on the next.
			m.Recovering = replica
			if err := b.saveMeta(*m); err != nil {
				return err
			}
			fresher, err := b.detach(ctx, m, replica)
			if err != nil {
				return err
			}
			if !fresher {
				m.Recovering = ""
				if err := b.saveMeta(*m); err != nil {
					return err
				}
			} else {
				b.log.Warn("master shard process died; restarting it as a replica of its replica, which holds its latest writes", "shard_uid", m.UID, "replica", replica)
			}
		}
	}
	b.log.Warn("shard process is not running; restarting it", "shard_uid", m.UID, "port", m.Port, "pid", m.PID, "recovering_from", m.Recovering)
	err := b.start(ctx, m)
	if errors.Is(err, errExited) {
		err = b.startOnFreePort(ctx, m)
	}
	return err
}

// detach makes the replica at addr, which follows the local master m,
// stop replicating so that m can copy from it, and reports whether it
// did. A replica that was not linked to m since its own process started
// holds only its own files, which are no fresher than m's: m starts from
// its files, and the replica follows it. One still loading its first
// copy is waited for.
func (b *RedisBackend) detach(ctx context.Context, m *shardMeta, replica string) (fresher bool, err error) {
	kv, err := infoAt(ctx, replica, "replication")
	if err != nil {
		return false, fmt.Errorf("shard %s: its replica at %s: %w", m.UID, replica, err)
	}
	switch {
	case kv["role"] == "master" && m.Recovering == replica && kv["master_replid2"] != "" && kv["master_replid2"] != zeroReplID:
		// Detached by an earlier try: it was a replica (it has a former
		// replication id), and this shard recorded it first.
		return true, nil
	case kv["role"] == "master":
		// It never followed this shard (a replica not yet pointed at its
		// master): it holds nothing of it.
		return false, nil
	case masterOf(kv) != b.addr(*m):
		return false, fmt.Errorf("shard %s: its replica at %s follows %s, not this shard", m.UID, replica, masterOf(kv))
	case kv["master_sync_in_progress"] == "1":
		return false, fmt.Errorf("shard %s: its replica at %s is still loading its first copy", m.UID, replica)
	case kv["master_link_down_since_seconds"] == "-1":
		return false, nil
	}
	c := dial(replica)
	defer c.Close()
	if err := c.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		return false, fmt.Errorf("shard %s: detach its replica at %s: %w", m.UID, replica, err)
	}
	return true, nil
}

// finishRecovery takes a recovering master's role back once it holds all
// its replica has: by a switch-over, so that nothing the replica took
// meanwhile is lost, after which the replica follows it again. It returns
// errRecovering while the copy goes on. The shard's lock is held.
func (b *RedisBackend) finishRecovery(ctx context.Context, m *shardMeta) error {
	src := m.Recovering
	kv, err := infoAt(ctx, b.addr(*m), "replication")
	if err != nil {
		return fmt.Errorf("shard %s: %w", m.UID, err)
	}
	if kv["role"] == "master" {
		// Promoted before the record said so (cnmd died in between).
		m.Recovering = ""
		return b.saveMeta(*m)
	}
	skv, err := infoAt(ctx, src, "replication")
	if err != nil {
		return fmt.Errorf("shard %s: %w: %s: %w", m.UID, errRecovering, src, err)
	}
	if skv["role"] != "master" {
		// Its agent pointed it back at this shard before the copy was
		// done; it never loaded this shard's data (a replica serves no
		// copy while it is not linked to its own master), so it still
		// holds everything, unless its own process restarted meanwhile.
		fresher, err := b.detach(ctx, m, src)
		if err != nil {
			return err
		}
		if !fresher {
			return b.giveUpRecovery(ctx, m)
		}
		return fmt.Errorf("shard %s: %w: %s detached again", m.UID, errRecovering, src)
	}
	if masterOf(kv) != src {
		if err := pointAt(ctx, b.addr(*m), src); err != nil {
			return fmt.Errorf("shard %s: %w", m.UID, err)
		}
		return fmt.Errorf("shard %s: %w: following %s", m.UID, errRecovering, src)
	}
	if !b.caughtUp(ctx, *m, src, kv) {
		return fmt.Errorf("shard %s: %w: copying from %s", m.UID, errRecovering, src)
	}
	if err := b.switchOver(ctx, m, src); err != nil {
		return err
	}
	m.Recovering = ""
	if err := b.saveMeta(*m); err != nil {
		return err
	}
	b.log.Info("master shard recovered from its replica", "shard_uid", m.UID, "replica", src)
	return nil
}

// giveUpRecovery makes a recovering master a master from what it holds:
// its replica restarted too, and holds nothing fresher.
func (b *RedisBackend) giveUpRecovery(ctx context.Context, m *shardMeta) error {
	b.log.Warn("master shard's replica restarted before the master recovered from it; the master serves its own files", "shard_uid", m.UID, "replica", m.Recovering)
	m.Recovering = ""
	return b.promote(ctx, m)
}

// recoveringFrom tells whether the process at master is the local replica
// uid's own master recovering from it: a replica pointed at it would wait
// on it while it waits on the replica.
func (b *RedisBackend) recoveringFrom(ctx context.Context, m shardMeta, master string) bool {
	kv, err := infoAt(ctx, master, "replication")
	return err == nil && masterOf(kv) == b.addr(m)
}
