package fsm_test

import (
	"testing"

	"github.com/hashicorp/raft"

	"cnm/fsm"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestChanged_ClosedAfterApply(t *testing.T) {
	f := fsm.New()
	ch := f.Changed()
	if isClosed(ch) {
		t.Fatal("Changed is closed before anything was applied")
	}
	mustApply(t, f, 3, bootstrapCmd())
	if !isClosed(ch) {
		t.Fatal("Changed is still open after Apply")
	}
	if f.Applied() != 3 {
		t.Errorf("Applied() = %d, want 3", f.Applied())
	}
	next := f.Changed()
	if isClosed(next) {
		t.Fatal("the Changed channel after an Apply is already closed")
	}
}

func TestChanged_ClosedAfterRejectedApply(t *testing.T) {
	f := fsm.New()
	ch := f.Changed()
	res := apply(t, f, 4, createUser(fsm.Actor{}, "bob", fsm.RoleNone))
	if res.Err == nil {
		t.Fatal("CreateUser before bootstrap succeeded")
	}
	if !isClosed(ch) {
		t.Fatal("Changed is still open after a rejected Apply")
	}
	if f.Applied() != 4 {
		t.Errorf("Applied() = %d after rejected entry 4", f.Applied())
	}
}

func TestChanged_ClosedAfterStoreConfiguration(t *testing.T) {
	f := fsm.New()
	mustApply(t, f, 3, bootstrapCmd())
	before, _ := readState(t, f)
	ch := f.Changed()

	f.StoreConfiguration(4, raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "1", Address: "10.0.0.1:7000"},
		{Suffrage: raft.Nonvoter, ID: "2", Address: "10.0.0.2:7000"},
	}})

	if !isClosed(ch) {
		t.Fatal("Changed is still open after StoreConfiguration")
	}
	got, index := readState(t, f)
	if index != 4 || f.Applied() != 4 {
		t.Errorf("after configuration entry 4: Read index %d, Applied() %d", index, f.Applied())
	}
	// The state only learns the voters: a nonvoter (a node still joining)
	// is not one, and the quorum pre-check counts voters.
	before.Voters = []int{1}
	assertState(t, got, before)
	if isClosed(f.Changed()) {
		t.Fatal("the Changed channel after StoreConfiguration is already closed")
	}
}

func TestApplied_FollowsApplyAndConfigurationEntries(t *testing.T) {
	f := fsm.New()
	steps := []struct {
		name  string
		do    func()
		index uint64
	}{
		{"configuration", func() { f.StoreConfiguration(1, raft.Configuration{}) }, 1},
		{"bootstrap", func() { mustApply(t, f, 3, bootstrapCmd()) }, 3},
		{"configuration", func() { f.StoreConfiguration(4, raft.Configuration{}) }, 4},
		{"rejected command", func() { apply(t, f, 5, bootstrapCmd()) }, 5},
		{"create user", func() { mustApply(t, f, 7, createUser(fsm.Actor{UID: 1, Revision: 3}, "bob", fsm.RoleNone)) }, 7},
		{"set node status", func() { mustApply(t, f, 8, &fsm.SetNodeStatus{UID: 1, Status: fsm.NodeDown}) }, 8},
	}
	for _, s := range steps {
		ch := f.Changed()
		s.do()
		if got := f.Applied(); got != s.index {
			t.Fatalf("after %s at %d: Applied() = %d", s.name, s.index, got)
		}
		if !isClosed(ch) {
			t.Fatalf("after %s at %d: Changed still open", s.name, s.index)
		}
	}
}

func TestApplied_NeverGoesBack(t *testing.T) {
	f := fsm.New()
	mustApply(t, f, 9, bootstrapCmd())
	f.StoreConfiguration(5, raft.Configuration{})
	if got := f.Applied(); got != 9 {
		t.Errorf("Applied() = %d after a lower configuration index, want 9", got)
	}
}

// TestChanged_WakesReaderUntilIndex runs a reader that waits on Changed for
// an index, as a linearizable read does, while entries are applied.
func TestChanged_WakesReaderUntilIndex(t *testing.T) {
	f := fsm.New()
	const users = 20
	last := idx(users + 1)
	done := make(chan *fsm.State)
	go func() {
		for {
			ch := f.Changed()
			var s *fsm.State
			f.Read(func(st *fsm.State, index uint64) {
				if index >= last {
					s = st.Clone()
				}
			})
			if s != nil {
				done <- s
				return
			}
			<-ch
		}
	}()
	mustApply(t, f, idx(1), bootstrapCmd())
	for i := range users {
		mustApply(t, f, idx(i+2), createUser(fsm.Actor{}, "u"+string(rune('a'+i)), fsm.RoleNone))
	}
	s := <-done
	if got := len(s.Users); got != users+1 {
		t.Errorf("reader saw %d users at index %d, want %d", got, last, users+1)
	}
}

func TestRead_CloneIsIndependent(t *testing.T) {
	f := fsm.New()
	mustApply(t, f, 1, bootstrapCmd())
	mustApply(t, f, 2, &fsm.AddNode{Node: node(2)})
	before, _ := readState(t, f)

	c, _ := readState(t, f)
	c.Users[1].Role = fsm.RoleNone
	c.Nodes[2].Status = fsm.NodeDown
	delete(c.Nodes, 1)
	c.Users[7] = &fsm.User{UID: 7}
	c.NextUserUID = 100

	after, _ := readState(t, f)
	assertState(t, after, before)
}
