package fsm_test

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"cnm/fsm"
)

// memSink is an in-memory raft.SnapshotSink. When writeErr or closeErr is
// set, Write or Close fails with it.
type memSink struct {
	buf       bytes.Buffer
	writeErr  error
	closeErr  error
	closed    bool
	cancelled bool
}

func (s *memSink) ID() string { return "mem" }

func (s *memSink) Write(p []byte) (int, error) {
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	return s.buf.Write(p)
}

func (s *memSink) Close() error {
	s.closed = true
	return s.closeErr
}

func (s *memSink) Cancel() error {
	s.cancelled = true
	return nil
}

// trackedReader records whether Restore closed it.
type trackedReader struct {
	io.Reader
	closed bool
}

func (r *trackedReader) Close() error {
	r.closed = true
	return nil
}

// persist takes a snapshot of f and persists it into a memSink.
func persist(t *testing.T, f *fsm.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("Persist left sink closed=%v cancelled=%v, want closed and not cancelled", sink.closed, sink.cancelled)
	}
	return sink.buf.Bytes()
}

// roundTrip persists a snapshot of f and restores it into a new FSM.
func roundTrip(t *testing.T, f *fsm.FSM) *fsm.FSM {
	t.Helper()
	data := persist(t, f)
	g := fsm.New()
	rc := &trackedReader{Reader: bytes.NewReader(data)}
	if err := g.Restore(rc); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !rc.closed {
		t.Error("Restore did not close the snapshot reader")
	}
	return g
}

// populated returns an FSM with nodes, admins, users and a deleted user.
func populated(t *testing.T) *fsm.FSM {
	t.Helper()
	f := fsm.New()
	for i, p := range []any{
		bootstrapCmd(),
		&fsm.AddNode{Actor: adminActor, Node: node(2)},
		&fsm.AddNode{Actor: adminActor, Node: node(3)},
		createUser(adminActor, "carol", fsm.RoleAdmin),
		createUser(adminActor, "bob", fsm.RoleDBViewer),
		createUser(adminActor, "dave", fsm.RoleNone),
		&fsm.UpdateUser{Actor: adminActor, UID: 3, Name: ptr("Bobby"), Role: ptr(fsm.RoleUserManager)},
		&fsm.DeleteUser{Actor: adminActor, UID: 4},
		&fsm.SetNodeStatus{Actor: adminActor, UID: 3, Status: fsm.NodeDown},
	} {
		mustApply(t, f, idx(i+1), p)
	}
	return f
}

func TestSnapshot_RestoreGivesEqualStateAndApplied(t *testing.T) {
	f := populated(t)
	want, wantIndex := readState(t, f)

	g := roundTrip(t, f)

	got, gotIndex := readState(t, g)
	assertState(t, got, want)
	if gotIndex != wantIndex || g.Applied() != wantIndex {
		t.Errorf("restored index: Read %d, Applied() %d; want %d", gotIndex, g.Applied(), wantIndex)
	}
}

func TestSnapshot_RestoredFSMKeepsApplying(t *testing.T) {
	f := populated(t)
	g := roundTrip(t, f)
	next := idx(9)
	cmds := []any{
		createUser(adminActor, "erin", fsm.RoleNone),
		createUser(adminActor, "carol", fsm.RoleNone),
		&fsm.DeleteUser{Actor: adminActor, UID: 1},
	}
	for i, c := range cmds {
		rf := apply(t, f, next+uint64(i), c)
		rg := apply(t, g, next+uint64(i), c)
		if !bytes.Equal(mustJSON(t, rf), mustJSON(t, rg)) {
			t.Errorf("command %d: original answered %s, restored %s", i, mustJSON(t, rf), mustJSON(t, rg))
		}
	}
	sf, _ := readState(t, f)
	sg, _ := readState(t, g)
	assertState(t, sg, sf)
}

func TestSnapshot_RestoreOfEmptyFSM(t *testing.T) {
	f := fsm.New()
	g := roundTrip(t, f)
	got, index := readState(t, g)
	assertState(t, got, fsm.NewState())
	if index != 0 {
		t.Errorf("restored index %d, want 0", index)
	}
	mustApply(t, g, 1, bootstrapCmd())
}

func TestSnapshot_IsAPointInTimeCopy(t *testing.T) {
	f := fsm.New()
	mustApply(t, f, 1, bootstrapCmd())
	want, _ := readState(t, f)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()

	mustApply(t, f, 2, createUser(fsm.Actor{}, "bob", fsm.RoleNone))
	mustApply(t, f, 3, &fsm.UpdateUser{UID: 1, Name: ptr("changed")})
	mustApply(t, f, 4, &fsm.SetNodeStatus{UID: 1, Status: fsm.NodeDown})

	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	g := fsm.New()
	if err := g.Restore(io.NopCloser(&sink.buf)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	got, index := readState(t, g)
	assertState(t, got, want)
	if index != 1 {
		t.Errorf("restored index %d, want 1", index)
	}
}

// TestSnapshot_PersistWhileApplying persists on another goroutine, as raft
// does, while entries keep landing; run with -race.
func TestSnapshot_PersistWhileApplying(t *testing.T) {
	f := populated(t)
	want, wantIndex := readState(t, f)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()

	sink := &memSink{}
	persisted := make(chan error)
	go func() { persisted <- snap.Persist(sink) }()
	for i := range 30 {
		index := wantIndex + 2*uint64(i) + 1
		mustApply(t, f, index, createUser(fsm.Actor{}, "p"+strconv.Itoa(i), fsm.RoleNone))
		mustApply(t, f, index+1, &fsm.SetNodeStatus{UID: 2, Status: []string{fsm.NodeDown, fsm.NodeActive}[i%2]})
	}
	if err := <-persisted; err != nil {
		t.Fatalf("Persist: %v", err)
	}

	g := fsm.New()
	if err := g.Restore(io.NopCloser(&sink.buf)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	got, index := readState(t, g)
	assertState(t, got, want)
	if index != wantIndex {
		t.Errorf("restored index %d, want %d", index, wantIndex)
	}
}

func TestRestore_ReplacesStateAndClosesChanged(t *testing.T) {
	src := populated(t)
	want, wantIndex := readState(t, src)
	data := persist(t, src)

	f := fsm.New()
	mustApply(t, f, 100, func() any {
		b := bootstrapCmd()
		b.Cluster.Name = "stale"
		b.Node = node(9)
		return b
	}())
	ch := f.Changed()
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !isClosed(ch) {
		t.Error("Changed is still open after Restore")
	}
	got, index := readState(t, f)
	assertState(t, got, want)
	if index != wantIndex {
		t.Errorf("index after Restore = %d, want %d (the snapshot's, even if lower)", index, wantIndex)
	}
}

func TestRestore_FillsMissingMaps(t *testing.T) {
	f := fsm.New()
	doc := `{"version":1,"applied":7,"state":{"cluster":{"name":"c"},"next_user_uid":1}}`
	if err := f.Restore(io.NopCloser(strings.NewReader(doc))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	s, _ := readState(t, f)
	if s.Nodes == nil || s.Users == nil {
		t.Fatalf("restored state has nil maps: nodes %v users %v", s.Nodes, s.Users)
	}
	res := mustApply(t, f, 8, createUser(fsm.Actor{}, "bob", fsm.RoleAdmin))
	if len(res.Value) == 0 {
		t.Error("CreateUser after Restore returned no value")
	}
	mustApply(t, f, 9, &fsm.AddNode{Node: node(1)})
}

func TestRestore_RejectsBadSnapshots(t *testing.T) {
	valid := persist(t, populated(t))
	cases := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"garbage", "\x00\x01not json at all"},
		{"truncated", string(valid[:len(valid)/2])},
		{"json array", `[1,2,3]`},
		{"unknown version", strings.Replace(string(valid), `"version":1`, `"version":2`, 1)},
		{"version 0", strings.Replace(string(valid), `"version":1`, `"version":0`, 1)},
		{"no version", `{"applied":3,"state":{"cluster":{"name":"c"}}}`},
		{"no state", `{"version":1,"applied":3}`},
		{"null state", `{"version":1,"applied":3,"state":null}`},
		{"wrong field type", `{"version":1,"applied":"three","state":{}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.data == string(valid) {
				t.Fatal("the case did not change the valid snapshot")
			}
			f := populated(t)
			before, beforeIndex := readState(t, f)
			rc := &trackedReader{Reader: strings.NewReader(tc.data)}
			if err := f.Restore(rc); err == nil {
				t.Fatal("Restore accepted the snapshot")
			}
			if !rc.closed {
				t.Error("Restore did not close the reader")
			}
			got, index := readState(t, f)
			assertState(t, got, before)
			if index != beforeIndex {
				t.Errorf("index %d after a rejected Restore, want %d", index, beforeIndex)
			}
		})
	}
}

func TestPersist_CancelsSinkWhenWriteFails(t *testing.T) {
	f := populated(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	writeErr := errors.New("disk full")
	sink := &memSink{writeErr: writeErr}

	err = snap.Persist(sink)

	if err == nil {
		t.Fatal("Persist succeeded although every write failed")
	}
	if !errors.Is(err, writeErr) {
		t.Errorf("Persist error %v does not wrap the write error", err)
	}
	if !sink.cancelled {
		t.Error("Persist did not cancel the sink")
	}
	if sink.closed {
		t.Error("Persist closed a sink it had to cancel")
	}
}

func TestPersist_ReportsCloseError(t *testing.T) {
	f := populated(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	closeErr := errors.New("fsync failed")
	sink := &memSink{closeErr: closeErr}

	err = snap.Persist(sink)

	if !errors.Is(err, closeErr) {
		t.Errorf("Persist error = %v, want it to wrap %v", err, closeErr)
	}
}
