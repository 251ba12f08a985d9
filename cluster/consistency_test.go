package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"cnm/fsm"
)

// fakeCheckpoints answers with fixed hashes by node address; a missing
// address holds no hash, an address in down does not answer.
type fakeCheckpoints struct {
	hashes map[string]string
	down   map[string]bool
}

func (f fakeCheckpoints) Checkpoint(_ context.Context, addr string, index uint64) (fsm.StateHash, bool, error) {
	if f.down[addr] {
		return fsm.StateHash{}, false, errors.New("connection refused")
	}
	h, ok := f.hashes[addr]
	return fsm.StateHash{Index: index, Hash: h}, ok, nil
}

// checkpointed is a 3-node cluster's FSM (agent addresses "nodeN") with
// one checkpoint applied; it returns the FSM and its own hash.
func checkpointed(t *testing.T) (*fsm.FSM, string) {
	t.Helper()
	st := adminState(modelState(3, [][2]int{{2, 1}}, fsm.PersistenceDisabled))
	for uid, n := range st.Nodes {
		n.APIAddr = "node" + string(rune('0'+uid))
	}
	f := admittingFSM(t, st)
	if res := applyTo(t, f, &fsm.Checkpoint{}); res.Err != nil {
		t.Fatal(res.Err)
	}
	h, ok := f.LatestCheckpoint()
	if !ok {
		t.Fatal("no checkpoint")
	}
	return f, h.Hash
}

func TestConsistencyCheck_Compare(t *testing.T) {
	f, mine := checkpointed(t)
	h, _ := f.LatestCheckpoint()
	other := strings.Repeat("0", len(mine))
	for _, tc := range []struct {
		name   string
		peers  fakeCheckpoints
		want   verdict
		naming string
	}{
		{"both agree", fakeCheckpoints{hashes: map[string]string{"node2": mine, "node3": mine}}, verdictAgreed, ""},
		{"both differ: this node diverged", fakeCheckpoints{hashes: map[string]string{"node2": other, "node3": other}}, verdictDiverged, "node(s) 2, 3"},
		{"one differs, one agrees: the other is wrong", fakeCheckpoints{hashes: map[string]string{"node2": mine, "node3": other}}, verdictAgreed, ""},
		{"the only answer differs: cannot tell", fakeCheckpoints{hashes: map[string]string{"node2": other}, down: map[string]bool{"node3": true}}, verdictUndecided, ""},
		{"no answers", fakeCheckpoints{down: map[string]bool{"node2": true, "node3": true}}, verdictUndecided, ""},
		{"not applied there yet", fakeCheckpoints{hashes: map[string]string{}}, verdictUndecided, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &ConsistencyCheck{Self: 1, FSM: f, Peers: tc.peers}
			got, detail := c.compare(context.Background(), h)
			if got != tc.want {
				t.Errorf("verdict = %d, want %d (%s)", got, tc.want, detail)
			}
			if tc.naming != "" && !strings.Contains(detail, tc.naming) {
				t.Errorf("detail %q does not name %s", detail, tc.naming)
			}
		})
	}
}

// TestConsistencyCheck_RunReportsDivergenceOnce: Run calls Diverged with
// the index and the nodes that disagree, and stops.
func TestConsistencyCheck_RunReportsDivergenceOnce(t *testing.T) {
	f, mine := checkpointed(t)
	other := strings.Repeat("f", len(mine))
	var mu sync.Mutex
	var calls []string
	c := &ConsistencyCheck{Self: 1, FSM: f, Interval: 5 * time.Millisecond, Log: slog.New(slog.DiscardHandler),
		Peers: fakeCheckpoints{hashes: map[string]string{"node2": other, "node3": other}},
		Diverged: func(d string) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, d)
		}}
	done := make(chan struct{})
	go func() { c.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after the divergence")
	}
	if len(calls) != 1 || !strings.Contains(calls[0], "node(s) 2, 3") {
		t.Errorf("Diverged calls = %q, want one naming nodes 2 and 3", calls)
	}
}

// TestCheckpointer_ProposesOnlyWhenSomethingChanged: one checkpoint after
// a change, none while nothing else is applied.
func TestCheckpointer_ProposesOnlyWhenSomethingChanged(t *testing.T) {
	st := adminState(modelState(3, [][2]int{{2, 1}}, fsm.PersistenceDisabled))
	f := admittingFSM(t, st)
	r := &localRaft{f: f}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Checkpointer{FSM: f, Raft: r, Interval: 2 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { c.Run(ctx, 1); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !f.LastIsCheckpoint() {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint proposed")
		}
		<-f.Changed()
	}
	first, _ := f.LatestCheckpoint()
	// Many intervals pass with nothing new: the checkpoint stays the
	// newest entry.
	for i := 0; i < 5; i++ {
		ch := f.Changed()
		select {
		case <-ch:
			t.Fatalf("an entry was applied while nothing changed (applied %d, checkpoint %d)", f.Applied(), first.Index)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	<-done
}
