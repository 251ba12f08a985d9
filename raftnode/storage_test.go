package raftnode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"cnm/fsm"
)

// mapLogStore is a LogStore whose stored entries a test can rewrite, as
// a flipped bit in bolt would.
type mapLogStore struct{ m map[uint64]raft.Log }

func (s *mapLogStore) FirstIndex() (uint64, error) { return 0, nil }
func (s *mapLogStore) LastIndex() (uint64, error)  { return 0, nil }
func (s *mapLogStore) GetLog(i uint64, l *raft.Log) error {
	e, ok := s.m[i]
	if !ok {
		return raft.ErrLogNotFound
	}
	*l = e
	l.Data = bytes.Clone(e.Data)
	return nil
}
func (s *mapLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }
func (s *mapLogStore) StoreLogs(ls []*raft.Log) error {
	for _, l := range ls {
		e := *l
		e.Data = bytes.Clone(l.Data)
		s.m[l.Index] = e
	}
	return nil
}
func (s *mapLogStore) DeleteRange(lo, hi uint64) error {
	for i := lo; i <= hi; i++ {
		delete(s.m, i)
	}
	return nil
}

func TestCheckedStore_RefusesEntriesThatDoNotMatchTheirChecksum(t *testing.T) {
	cases := []struct {
		name    string
		corrupt func(m map[uint64]raft.Log)
	}{
		{"bit flipped in data", func(m map[uint64]raft.Log) { e := m[5]; e.Data[len(e.Data)-1] ^= 0x04; m[5] = e }},
		{"bit flipped in the checksum", func(m map[uint64]raft.Log) { e := m[5]; e.Data[len(sumMagic)+2] ^= 0x80; m[5] = e }},
		{"term changed", func(m map[uint64]raft.Log) { e := m[5]; e.Term ^= 2; m[5] = e }},
		{"type changed", func(m map[uint64]raft.Log) { e := m[5]; e.Type = raft.LogNoop; m[5] = e }},
		{"found under another key", func(m map[uint64]raft.Log) { m[5] = m[4] }},
		{"unknown checksum version", func(m map[uint64]raft.Log) { e := m[5]; e.Data[len(sumMagic)] = 9; m[5] = e }},
		{"header cut short", func(m map[uint64]raft.Log) { e := m[5]; e.Data = e.Data[:len(sumMagic)+2]; m[5] = e }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inner := &mapLogStore{m: map[uint64]raft.Log{}}
			s := &checkedStore{logs: inner, path: "/data/raft/raft.db"}
			orig := []*raft.Log{
				{Index: 4, Term: 2, Type: raft.LogCommand, Data: []byte("four")},
				{Index: 5, Term: 2, Type: raft.LogCommand, Data: []byte("five")},
			}
			if err := s.StoreLogs(orig); err != nil {
				t.Fatal(err)
			}
			if string(orig[1].Data) != "five" {
				t.Fatalf("StoreLogs changed the caller's entry: %q", orig[1].Data)
			}
			var got raft.Log
			if err := s.GetLog(5, &got); err != nil || string(got.Data) != "five" || got.Term != 2 {
				t.Fatalf("intact entry: %+v, %v", got, err)
			}
			tc.corrupt(inner.m)
			err := s.GetLog(5, &got)
			if !errors.Is(err, ErrStorageFault) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("corrupt entry read back with error %v, want a storage fault", err)
			}
			for _, want := range []string{"/data/raft/raft.db", "read log entry 5"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if err := s.GetLog(4, &got); err != nil || string(got.Data) != "four" {
				t.Fatalf("untouched entry: %+v, %v", got, err)
			}
		})
	}
}

// Entries written before they carried checksums are read as they are,
// and a missing entry stays raft.ErrLogNotFound, which raft acts on.
func TestCheckedStore_ReadsEntriesWithoutChecksum(t *testing.T) {
	inner := &mapLogStore{m: map[uint64]raft.Log{}}
	legacy := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte{byte(fsm.CmdBootstrap), 1, '{', '}'}},
		{Index: 2, Term: 1, Type: raft.LogNoop},
	}
	if err := inner.StoreLogs(legacy); err != nil {
		t.Fatal(err)
	}
	s := &checkedStore{logs: inner, path: "raft.db"}
	for _, want := range legacy {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatalf("legacy entry %d: %v", want.Index, err)
		}
		if !bytes.Equal(got.Data, want.Data) || got.Type != want.Type {
			t.Fatalf("legacy entry %d read as %+v, want %+v", want.Index, got, want)
		}
	}
	var l raft.Log
	if err := s.GetLog(3, &l); err != raft.ErrLogNotFound {
		t.Fatalf("missing entry: %v, want raft.ErrLogNotFound as is", err)
	}
}

// applyEmail applies a Bootstrap carrying email on n (refused by the FSM
// after the first, but logged all the same) and returns its index.
func applyEmail(t *testing.T, n *Node, email string) uint64 {
	t.Helper()
	cmd, err := fsm.Encode(&fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{Name: "test"},
		Node:    fsm.Node{UID: n.ID(), Status: fsm.NodeActive, RaftAddr: n.cfg.RaftAddr},
		Admin:   fsm.User{Email: email, Name: "admin", PasswordHash: "unused"},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.Apply(t.Context(), cmd)
	if err != nil && !errors.Is(err, fsm.ErrAlreadyBootstrapped) {
		t.Fatalf("apply on node %d: %v", n.ID(), err)
	}
	return res.Index
}

// reopen opens a node again on n's dir and address, with a fresh FSM, as
// the daemon does on a restart.
func reopen(t *testing.T, n *Node, mod func(*Config)) (*Node, error) {
	t.Helper()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	cfg := n.cfg
	cfg.Listen, cfg.wrapStores, cfg.probe = nil, nil, nil
	if mod != nil {
		mod(&cfg)
	}
	m, err := Open(cfg, fsm.New())
	if err == nil {
		t.Cleanup(func() { _ = m.Shutdown() })
	}
	return m, err
}

// A bit flipped in an entry of raft.db on disk is found when the node
// opens, and named; it is never applied.
func TestOpen_BitFlipInRaftDBIsAStorageFault(t *testing.T) {
	n := startNode(t, testCA(t), 1, "127.0.0.1", nil)
	if err := n.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, n, 10*time.Second)
	applyOne(t, n)
	const canary = "canary-7f3e91@test"
	idx := applyEmail(t, n, canary)
	applyOne(t, n)
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(n.cfg.Dir, "raft.db")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// bolt copies pages on write, so older copies of the entry may lie in
	// free pages: flip the bit in each.
	flipped := 0
	for off := 0; ; {
		i := bytes.Index(raw[off:], []byte(canary))
		if i < 0 {
			break
		}
		raw[off+i] ^= 0x01 // 'c' becomes 'b': still valid JSON
		off += i + len(canary)
		flipped++
	}
	if flipped == 0 {
		t.Fatal("the entry's payload is not in raft.db")
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	_, err = reopen(t, n, nil)
	if !errors.Is(err, ErrStorageFault) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open on a flipped bit: %v, want a storage fault", err)
	}
	for _, want := range []string{path, fmt.Sprintf("read log entry %d", idx), "checksum"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := HasState(n.cfg.Dir); !errors.Is(err, ErrStorageFault) {
		t.Errorf("HasState on a flipped bit: %v, want a storage fault", err)
	}
}

// A log written before entries carried checksums still opens and applies.
func TestOpen_ReadsALogWrittenWithoutChecksums(t *testing.T) {
	dir := t.TempDir()
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 2, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	ca := testCA(t)
	n := startNode(t, ca, 1, "127.0.0.1", func(c *Config) {
		c.Dir = dir
		conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "1", Address: raft.ServerAddress(c.RaftAddr)}}}
		rc := raft.DefaultConfig()
		rc.LocalID = "1"
		_, trans := raft.NewInmemTransport("")
		if err := raft.BootstrapCluster(rc, store, store, snaps, trans, conf); err != nil {
			t.Fatal(err)
		}
		cmd, err := fsm.Encode(&fsm.Bootstrap{Cluster: fsm.ClusterInfo{Name: "legacy"}, Node: fsm.Node{UID: 1, Status: fsm.NodeActive, RaftAddr: c.RaftAddr}, Admin: fsm.User{Email: "a@legacy", Name: "a", PasswordHash: "unused"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.StoreLog(&raft.Log{Index: 2, Term: 1, Type: raft.LogCommand, Data: cmd}); err != nil {
			t.Fatal(err)
		}
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
	})
	waitReady(t, n, 10*time.Second)
	waitFor(t, "the legacy entry to be applied", 10*time.Second, func() bool { return n.FSM().Applied() >= 2 })
	var name string
	n.FSM().Read(func(s *fsm.State, _ uint64) { name = s.Cluster.Name })
	if name != "legacy" {
		t.Fatalf("cluster %q after replaying the legacy log, want legacy", name)
	}
}

// A truncated or garbled raft.db is one clear error naming the file from
// both HasState and Open: never a panic, never a fresh empty log.
func TestOpen_GarbledRaftDBIsAClearError(t *testing.T) {
	const page = 4096
	cases := []struct {
		name   string
		mangle func(raw []byte) []byte
	}{
		{"truncated to nothing", func([]byte) []byte { return nil }},
		{"truncated to one page", func(raw []byte) []byte { return raw[:page] }},
		{"truncated to half", func(raw []byte) []byte { return raw[:len(raw)/2/page*page] }},
		{"meta pages zeroed", func(raw []byte) []byte { clear(raw[:2*page]); return raw }},
		{"data pages garbled", func(raw []byte) []byte {
			for i := 2 * page; i < len(raw); i++ {
				raw[i] = byte(i*7919) ^ 0x5a
			}
			return raw
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, testCA(t), 1, "127.0.0.1", nil)
			if err := n.BootstrapSelf(); err != nil {
				t.Fatal(err)
			}
			waitReady(t, n, 10*time.Second)
			for range 20 {
				applyOne(t, n)
			}
			if err := n.Shutdown(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(n.cfg.Dir, "raft.db")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.mangle(raw), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := HasState(n.cfg.Dir); !errors.Is(err, ErrStorageFault) || !strings.Contains(err.Error(), path) {
				t.Errorf("HasState: %v, want a storage fault naming %s", err, path)
			}
			_, err = reopen(t, n, nil)
			if !errors.Is(err, ErrStorageFault) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open: %v, want a storage fault naming %s", err, path)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

// snapshotDirs lists the snapshot directories in a raft dir.
func snapshotDirs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, "snapshots", e.Name()))
		}
	}
	return out
}

// A corrupt snapshot is moved aside and the node rebuilds its state from
// what is left (an older snapshot, or the log when it still starts at 1);
// when what is left cannot hold the whole history, Open says so.
func TestOpen_CorruptSnapshot(t *testing.T) {
	garbleState := func(t *testing.T, snap string) {
		path := filepath.Join(snap, "state.bin")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		raw[len(raw)/2] ^= 0x10
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	garbleMeta := func(t *testing.T, snap string) {
		if err := os.WriteFile(filepath.Join(snap, "meta.json"), []byte("{\"ID\":"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name      string
		trailing  uint64 // TrailingLogs: 1 compacts the log at each snapshot
		snapshots int
		garble    func(*testing.T, string)
		wantErr   bool
	}{
		{"only snapshot, log from 1", 0, 1, garbleState, false},
		{"newest of two, log reaches back to the older", 4, 2, garbleState, false},
		{"newest of two, log does not reach back", 1, 2, garbleState, true},
		{"only snapshot, log compacted", 1, 1, garbleState, true},
		{"unreadable metadata, log compacted", 1, 1, garbleMeta, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, testCA(t), 1, "127.0.0.1", func(c *Config) { c.TrailingLogs = tc.trailing })
			if err := n.BootstrapSelf(); err != nil {
				t.Fatal(err)
			}
			waitReady(t, n, 10*time.Second)
			var last uint64
			for range tc.snapshots {
				for range 3 {
					last = applyOne(t, n)
				}
				if err := n.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			snaps := snapshotDirs(t, n.cfg.Dir)
			if len(snaps) != tc.snapshots {
				t.Fatalf("%d snapshots, want %d", len(snaps), tc.snapshots)
			}
			newest := snaps[len(snaps)-1] // ids sort by term, index, time
			tc.garble(t, newest)

			m, err := reopen(t, n, nil)
			if tc.wantErr {
				if !errors.Is(err, ErrStorageFault) || !strings.Contains(err.Error(), "rejoin") {
					t.Fatalf("Open: %v, want a storage fault saying the node must rejoin", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open with a corrupt snapshot and a log to rebuild from: %v", err)
			}
			if _, err := os.Stat(filepath.Join(n.cfg.Dir, filepath.Base(newest)+corruptSuffix)); err != nil {
				t.Errorf("corrupt snapshot not set aside: %v", err)
			}
			waitReady(t, m, 10*time.Second)
			waitFor(t, fmt.Sprintf("the state up to index %d to be rebuilt", last), 10*time.Second, func() bool { return m.FSM().Applied() >= last })
			var name string
			m.FSM().Read(func(s *fsm.State, _ uint64) { name = s.Cluster.Name })
			if name != "test" {
				t.Fatalf("cluster %q after the rebuild, want test", name)
			}
		})
	}
}

// mapStableStore is a StableStore whose values a test can rewrite.
type mapStableStore struct{ m map[string][]byte }

func (s *mapStableStore) Set(k, v []byte) error { s.m[string(k)] = bytes.Clone(v); return nil }
func (s *mapStableStore) Get(k []byte) ([]byte, error) {
	v, ok := s.m[string(k)]
	if !ok {
		return nil, raftboltdb.ErrKeyNotFound
	}
	return bytes.Clone(v), nil
}
func (s *mapStableStore) SetUint64(k []byte, v uint64) error {
	return s.Set(k, binary.BigEndian.AppendUint64(nil, v))
}
func (s *mapStableStore) GetUint64(k []byte) (uint64, error) {
	v, err := s.Get(k)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(v), nil
}

// A flipped bit in the saved term or vote is a fault, not a term; values
// saved before they carried checksums are read as they are, and a missing
// key stays "not found", which raft tells by its text.
func TestCheckedStore_StableValues(t *testing.T) {
	inner := &mapStableStore{m: map[string][]byte{}}
	s := &checkedStore{stable: inner, path: "/data/raft/raft.db"}
	if _, err := s.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("missing term: %v, want not found", err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetUint64([]byte("CurrentTerm")); got != 7 || err != nil {
		t.Fatalf("term %d, %v; want 7", got, err)
	}
	if got, err := s.Get([]byte("LastVoteCand")); string(got) != "2" || err != nil {
		t.Fatalf("vote %q, %v; want 2", got, err)
	}

	inner.m["LastVoteTerm"] = binary.BigEndian.AppendUint64(nil, 5) // saved before checksums
	if got, err := s.GetUint64([]byte("LastVoteTerm")); got != 5 || err != nil {
		t.Fatalf("legacy vote term %d, %v; want 5", got, err)
	}

	inner.m["CurrentTerm"][len(inner.m["CurrentTerm"])-1] ^= 0x02
	_, err := s.GetUint64([]byte("CurrentTerm"))
	if !errors.Is(err, ErrStorageFault) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "read CurrentTerm") {
		t.Fatalf("flipped term: %v, want a storage fault naming CurrentTerm", err)
	}
	inner.m["LastVoteTerm"] = inner.m["LastVoteCand"] // sealed under another key
	if _, err := s.Get([]byte("LastVoteTerm")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("value under the wrong key: %v, want corrupt", err)
	}
}
