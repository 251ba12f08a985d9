package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"cnm/fsm"
)

// infoTimeout bounds the calls Info makes to the shard and its master.
const infoTimeout = 3 * time.Second

// snapshotCurrent is how old an RDB file with writes after it may be and
// still count as current: the save rules (save 300 100) write one about
// as often on a busy shard, so asking for more would fork at every
// reconcile.
const snapshotCurrent = 5 * time.Minute

// infoMap parses INFO's "key:value" lines.
func infoMap(s string) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

func infoInt(kv map[string]string, key string) int64 {
	n, _ := strconv.ParseInt(kv[key], 10, 64)
	return n
}

// infoAt reads INFO sections of the process at addr.
func infoAt(ctx context.Context, addr string, sections ...string) (map[string]string, error) {
	c := dial(addr)
	defer c.Close()
	s, err := c.Info(ctx, sections...).Result()
	if err != nil {
		return nil, fmt.Errorf("info of %s: %w", addr, err)
	}
	return infoMap(s), nil
}

// roleOf is the state's name of the role INFO reports.
func roleOf(kv map[string]string) string {
	if kv["role"] == "master" {
		return fsm.RoleMaster
	}
	return fsm.RoleSlave
}

// masterOf is the host:port a replica's INFO names as its master.
func masterOf(kv map[string]string) string {
	if kv["role"] != "slave" || kv["master_host"] == "" {
		return ""
	}
	return net.JoinHostPort(kv["master_host"], kv["master_port"])
}

// Info reports the shard as its process does: a shard whose process does
// not answer is reported with Status down rather than as missing, so that
// the agent never materialises a second one over its data.
//
// Checksum is the role and the replication id: two copies with the same
// checksum hold the same history in the same role, so that a move's
// executor takes an in-sync replica of the master for a finished copy of
// a replica, but not for a finished move of the master.
func (b *RedisBackend) Info(uid string) (Info, error) {
	m, err := b.loadMeta(uid)
	if err != nil {
		return Info{}, err
	}
	info := Info{UID: uid, BDB: m.BDB, Role: m.Role, Port: m.Port, Status: StatusDown, Persistence: m.Persistence, Memory: m.Memory}
	ctx, cancel := context.WithTimeout(context.Background(), infoTimeout)
	defer cancel()
	if !b.answers(ctx, m) {
		return info, nil
	}
	kv, err := infoAt(ctx, b.addr(m), "replication", "memory", "persistence", "keyspace")
	if err != nil {
		return info, nil // gone meanwhile: down
	}
	info.Role, info.Master = roleOf(kv), masterOf(kv)
	info.UsedMemory, info.Size = infoInt(kv, "used_memory"), infoInt(kv, "used_memory")
	info.Keys = keysOf(kv)
	info.Checksum = info.Role + ":" + kv["master_replid"]
	info.Persisted = b.persisted(m, kv)
	info.InSync, info.Status = true, StatusActive
	if info.Role != fsm.RoleMaster && !b.caughtUp(ctx, m, info.Master, kv) {
		info.InSync, info.Status = false, StatusSyncing
	}
	if m.Recovering != "" {
		// A master copying back from its replica: its role is master, and
		// the agent must not make it one before it holds everything.
		info.Role, info.Master, info.InSync, info.Status = fsm.RoleMaster, "", false, StatusSyncing
	}
	return info, nil
}

// keysOf sums the keys of every database in INFO keyspace
// ("db0:keys=3,expires=0,avg_ttl=0").
func keysOf(kv map[string]string) int64 {
	var n int64
	for k, v := range kv {
		if !strings.HasPrefix(k, "db") {
			continue
		}
		for field := range strings.SplitSeq(v, ",") {
			if num, ok := strings.CutPrefix(field, "keys="); ok {
				c, _ := strconv.ParseInt(num, 10, 64)
				n += c
			}
		}
	}
	return n
}

// caughtUp tells whether a replica's link is up and it has what its
// master had: the master's offset is read before the replica's, so that a
// master taking writes meanwhile does not make an in-sync replica look
// behind. A master that does not answer is not known and not waited for.
func (b *RedisBackend) caughtUp(ctx context.Context, m shardMeta, master string, kv map[string]string) bool {
	if kv["master_link_status"] != "up" || kv["master_sync_in_progress"] != "0" {
		return false
	}
	mkv, err := infoAt(ctx, master, "replication")
	if err != nil {
		return true
	}
	want := infoInt(mkv, "master_repl_offset")
	now, err := infoAt(ctx, b.addr(m), "replication")
	if err != nil {
		return false
	}
	return now["master_link_status"] == "up" && infoInt(now, "slave_repl_offset") >= want
}

// persisted tells whether the configured persistence file exists and is
// current.
func (b *RedisBackend) persisted(m shardMeta, kv map[string]string) bool {
	dir := b.shardDir(m.UID)
	switch m.Persistence {
	case fsm.PersistenceSnapshot:
		if !fileExists(filepath.Join(dir, rdbFile)) || kv["rdb_last_bgsave_status"] != "ok" {
			return false
		}
		age := time.Since(time.Unix(infoInt(kv, "rdb_last_save_time"), 0))
		return infoInt(kv, "rdb_changes_since_last_save") == 0 || age < snapshotCurrent
	case fsm.PersistenceAOF:
		return kv["aof_enabled"] == "1" && kv["aof_rewrite_in_progress"] == "0" &&
			kv["aof_last_bgrewrite_status"] == "ok" && kv["aof_last_write_status"] == "ok" &&
			fileExists(filepath.Join(dir, aofDir, aofName+".manifest"))
	}
	return false
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
