package agent

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"cnm/fsm"
)

// snapshotSave are the RDB save rules of a snapshot shard (Redis's own
// defaults): at most an hour, five minutes or a minute of writes is at risk,
// depending on how busy the shard is.
const snapshotSave = "3600 1 300 100 60 10000"

// redisConf is the configuration file of a shard process, made anew from
// its metadata at every start, so that the metadata alone says how the
// shard runs.
func (b *RedisBackend) redisConf(m shardMeta) string {
	dir := b.shardDir(m.UID)
	lines := []string{
		"bind " + b.cfg.Host,
		"port " + strconv.Itoa(m.Port),
		// Bound to the node's own address only; protected mode would
		// refuse the peers that replicate from it.
		"protected-mode no",
		"daemonize no",
		"dir " + quoteConf(dir),
		"pidfile " + quoteConf(filepath.Join(dir, pidFile)),
		"logfile \"\"",
		"maxmemory " + strconv.FormatInt(max(m.Memory, 0), 10),
		"dbfilename " + rdbFile,
		"appenddirname " + aofDir,
		"appendfilename " + aofName,
		"appendfsync everysec",
		// A migration's replica syncs at once; Redis would wait 5 s for
		// more replicas to share the transfer.
		"repl-diskless-sync-delay 0",
		// A new copy is empty: it loads its master's stream as it comes
		// rather than writing it to disk first and loading it after.
		"repl-diskless-load on-empty-db",
		// Replicas authenticate as their pair's user, which only the
		// pair's processes have: one pointed at another shard's process
		// (a port a dropped copy freed and another shard took) is refused
		// at the handshake and keeps its data, instead of replacing it
		// with another shard's. Clients use the default user.
		"user default on nopass ~* &* +@all",
		"user " + ReplicationUser(m.Spec) + " on nopass +psync +sync +replconf +ping",
		"masteruser " + ReplicationUser(m.Spec),
		// Any password opens a nopass user; the user's name is the check.
		"masterauth pair",
	}
	lines = append(lines, persistenceConf(m.Persistence)...)
	follows := m.Master
	if m.Role == fsm.RoleMaster {
		follows = ""
	}
	if m.Recovering != "" {
		// Neither stale reads nor writes while it copies from its replica.
		follows = m.Recovering
		lines = append(lines, "replica-serve-stale-data no")
	}
	if host, port, err := net.SplitHostPort(follows); follows != "" && err == nil {
		lines = append(lines, "replicaof "+host+" "+port)
	}
	return strings.Join(lines, "\n") + "\n"
}

// ReplicationUser is the ACL user the processes of one database's slot
// range (a master and its replica) replicate as.
func ReplicationUser(s Spec) string {
	u := "cnm-pair-" + strconv.Itoa(s.BDB)
	if s.Slots != "" {
		u += "-" + strings.NewReplacer(",", "_", " ", "").Replace(s.Slots)
	}
	return u
}

// persistenceConf is what a persistence mode sets; also applied with
// CONFIG SET to a running shard when its mode changes.
func persistenceConf(mode string) []string {
	switch mode {
	case fsm.PersistenceSnapshot:
		return []string{"save " + snapshotSave, "appendonly no"}
	case fsm.PersistenceAOF:
		return []string{"save \"\"", "appendonly yes"}
	}
	return []string{"save \"\"", "appendonly no"}
}

// quoteConf quotes a path for redis.conf, which splits on spaces.
func quoteConf(s string) string { return strconv.Quote(s) }

func (b *RedisBackend) writeConf(m shardMeta) error {
	p := filepath.Join(b.shardDir(m.UID), confFile)
	if err := os.WriteFile(p, []byte(b.redisConf(m)), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// addr is where the shard listens.
func (b *RedisBackend) addr(m shardMeta) string {
	return net.JoinHostPort(b.cfg.Host, strconv.Itoa(m.Port))
}

// confPort is the port the configuration file in dir names (0: none).
func confPort(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, confFile))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "port "); ok {
			port, _ := strconv.Atoi(strings.TrimSpace(v))
			return port
		}
	}
	return 0
}
