package raftnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// openBolt opens raft.db, refusing a file that is empty or that bolt cannot
// read. bolt panics on some garbled files instead of returning an error
// (and faults on its memory map for others), which under a supervisor
// became a crash loop of stack traces; the caller now gets one error that
// names the file. It returns the indexes of the entries in the log bucket,
// read with a cursor, so that each can be checked: an index computed from
// first to last would trust the keys, and a flipped bit in one makes the
// range absurd.
func openBolt(path string) (*raftboltdb.BoltStore, []uint64, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		store, err := newBolt(path)
		return store, nil, err
	case err != nil:
		return nil, nil, fmt.Errorf("open log store %s: %w", path, err)
	case st.Size() == 0:
		// bolt would quietly make a new, empty database of it, and a node
		// whose log was cut off would look like one never started.
		return nil, nil, &StorageFaultError{Path: path, Op: "open", Err: fmt.Errorf("%w: file is empty (truncated?)", ErrCorrupt)}
	}
	keys, err := logKeys(path)
	if err != nil {
		return nil, nil, &StorageFaultError{Path: path, Op: "open", Err: err}
	}
	store, err := newBolt(path)
	if err != nil {
		return nil, nil, err
	}
	return store, keys, nil
}

func newBolt(path string) (*raftboltdb.BoltStore, error) {
	var store *raftboltdb.BoltStore
	err := guard(func() (err error) {
		store, err = raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: boltLockTimeout, FreelistType: bbolt.FreelistArrayType}})
		return err
	})
	if err != nil {
		return nil, &StorageFaultError{Path: path, Op: "open", Err: err}
	}
	return store, nil
}

// boltLockTimeout bounds the wait for bolt's file lock, which another
// process holding raft.db would otherwise make endless.
const boltLockTimeout = 5 * time.Second

// logKeys walks raft.db read-only and returns the log bucket's indexes.
// Reading every page of the tree on the way is what makes bolt trip over a
// garbled one here, before raft starts, rather than in the middle of
// applying entries.
func logKeys(path string) ([]uint64, error) {
	var keys []uint64
	err := guard(func() error {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: boltLockTimeout})
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte("logs"))
			if b == nil {
				return nil // never written to
			}
			c := b.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				if len(k) != 8 {
					return fmt.Errorf("%w: log key of %d bytes", ErrCorrupt, len(k))
				}
				keys = append(keys, binary.BigEndian.Uint64(k))
			}
			if conf := tx.Bucket([]byte("conf")); conf != nil {
				return conf.ForEach(func(_, _ []byte) error { return nil })
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read raft.db: %w", err)
	}
	return keys, nil
}

// verifyLog reads back every entry of the log through the checksums.
func verifyLog(s *checkedStore, keys []uint64) error {
	var l raft.Log
	for _, k := range keys {
		if err := s.getLog(k, &l); err != nil {
			return err
		}
	}
	return nil
}

// corruptSuffix marks a snapshot moved out of the snapshot store.
const corruptSuffix = ".corrupt"

// setAsideCorruptSnapshots checks every snapshot's metadata and CRC and
// moves those that fail out of the snapshot store, to <dir>/<id>.corrupt
// (kept for inspection). raft itself skips a snapshot it cannot open and
// tries the next older one, but fails to start when none is left, even
// when the log still holds every entry; and one whose metadata cannot be
// read is not even listed, so raft would replay the log from index 1 and
// panic on the first entry compaction removed. It then checks that what
// is left, together with the log, holds the whole history: the log must
// start right after the newest good snapshot (or at index 1 with none).
func setAsideCorruptSnapshots(dir string, snaps *raft.FileSnapshotStore, first, last uint64, log *slog.Logger) error {
	snapDir := filepath.Join(dir, "snapshots")
	ents, err := os.ReadDir(snapDir)
	if err != nil {
		return fmt.Errorf("read snapshot dir %s: %w", snapDir, err)
	}
	moved := 0
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		id := e.Name()
		_, rc, err := snaps.Open(id)
		if err == nil {
			rc.Close()
			continue
		}
		from, to := filepath.Join(snapDir, id), filepath.Join(dir, id+corruptSuffix)
		if rerr := os.Rename(from, to); rerr != nil {
			return &StorageFaultError{Path: from, Op: "set aside corrupt snapshot", Err: fmt.Errorf("%w (corrupt: %w)", rerr, err)}
		}
		log.Error("snapshot is corrupt; moved aside", "snapshot", from, "moved_to", to, "error", err)
		moved++
	}
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots in %s: %w", snapDir, err)
	}
	var snapIndex uint64
	if len(metas) > 0 {
		snapIndex = metas[0].Index
	}
	if last == 0 && snapIndex == 0 && moved > 0 {
		// With no log and no snapshot left the node would look like one
		// never started, and could be bootstrapped into a new cluster.
		return &StorageFaultError{Path: dir, Op: "restore", Err: fmt.Errorf(
			"%w: every snapshot is corrupt and the log is empty; the node must rejoin afresh", ErrCorrupt)}
	}
	if last != 0 && first > snapIndex+1 {
		return &StorageFaultError{Path: dir, Op: "restore", Err: fmt.Errorf(
			"%w: the log starts at index %d, but the newest readable snapshot ends at %d: entries in between are lost; the node must rejoin afresh",
			ErrCorrupt, first, snapIndex)}
	}
	return nil
}

// probeSize is how much the disk probe writes: enough that a disk with a
// few blocks free does not pass for one bolt can grow its file on.
const probeSize = 1 << 20

// probeDir writes, syncs and removes a file in dir: whether the disk takes
// writes again.
func probeDir(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("probe %s: %w", dir, err)
	}
	name := f.Name()
	defer os.Remove(name)
	_, err = f.Write(make([]byte, probeSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("probe %s: %w", dir, err)
	}
	return nil
}

// HasState reports whether dir already holds raft state, i.e. whether this
// node was bootstrapped or joined before.
func HasState(dir string) (bool, error) {
	path := filepath.Join(dir, "raft.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	bolt, store, err := openStores(path)
	if err != nil {
		return false, err
	}
	defer bolt.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLog(slog.New(slog.DiscardHandler)))
	if err != nil {
		return false, fmt.Errorf("open snapshot store %s: %w", dir, err)
	}
	ok, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return false, fmt.Errorf("inspect raft state in %s: %w", dir, err)
	}
	return ok, nil
}

// openStores opens raft.db and checks every log entry in it, so that a
// garbled file or entry is one clear error here rather than a panic or
// wrong data later.
func openStores(path string) (*raftboltdb.BoltStore, *checkedStore, error) {
	return openStoresWrapped(path, nil)
}

func openStoresWrapped(path string, wrap func(raft.LogStore, raft.StableStore) (raft.LogStore, raft.StableStore)) (*raftboltdb.BoltStore, *checkedStore, error) {
	bolt, keys, err := openBolt(path)
	if err != nil {
		return nil, nil, err
	}
	var logs raft.LogStore = bolt
	var stable raft.StableStore = bolt
	if wrap != nil {
		logs, stable = wrap(logs, stable)
	}
	store := &checkedStore{logs: logs, stable: stable, path: path}
	err = verifyLog(store, keys)
	if err == nil {
		err = verifyStable(store)
	}
	if err != nil {
		bolt.Close()
		return nil, nil, err
	}
	return bolt, store, nil
}

// openStorage opens the log and stable store and the snapshot store, and
// sets aside corrupt snapshots, which needs both. On error nothing stays
// open.
func openStorage(cfg Config, log *slog.Logger, hlog hclog.Logger) (*raftboltdb.BoltStore, *checkedStore, *raft.FileSnapshotStore, error) {
	dbPath := filepath.Join(cfg.Dir, "raft.db")
	bolt, store, err := openStoresWrapped(dbPath, cfg.wrapStores)
	if err != nil {
		return nil, nil, nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog)
	if err != nil {
		bolt.Close()
		return nil, nil, nil, fmt.Errorf("open snapshot store %s: %w", cfg.Dir, err)
	}
	first, err := store.FirstIndex()
	if err == nil {
		var last uint64
		if last, err = store.LastIndex(); err == nil {
			err = setAsideCorruptSnapshots(cfg.Dir, snaps, first, last, log)
		}
	}
	if err != nil {
		bolt.Close()
		return nil, nil, nil, err
	}
	return bolt, store, snaps, nil
}
