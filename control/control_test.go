package control_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"cnm/cluster"
	"cnm/control"
	"cnm/fsm"
	"cnm/pki"
)

// fakeRaft applies every proposal to a real FSM at the next index, and
// counts them.
type fakeRaft struct {
	f         *fsm.FSM
	index     uint64
	proposals int
}

func (r *fakeRaft) ID() int { return 1 }

func (r *fakeRaft) Apply(_ context.Context, cmd []byte) (*fsm.Result, error) {
	r.index++
	r.proposals++
	res := r.f.Apply(&raft.Log{Index: r.index, Term: 1, Type: raft.LogCommand, Data: cmd}).(*fsm.Result)
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// newService is a control layer over a bootstrapped one-node cluster,
// with one unreplicated database if withDB.
func newService(t *testing.T, withDB bool) (*control.Service, *fakeRaft) {
	t.Helper()
	f := fsm.New(fsm.WithAdmission(cluster.Admit))
	r := &fakeRaft{f: f}
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.StoreConfiguration(1, raft.Configuration{Servers: []raft.Server{{ID: "1", Address: "127.0.0.1:9444"}}})
	r.index = 1
	s := control.New(r, f, 4, nil)
	if _, err := s.Propose(t.Context(), &fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{Name: "test", CreatedAt: time.Now().Unix(), CACertPEM: string(ca.CertPEM), CAKeyPEM: string(ca.KeyPEM)},
		Node: fsm.Node{UID: 1, Addr: "127.0.0.1", APIAddr: "127.0.0.1:9443", RaftAddr: "127.0.0.1:9444", Status: fsm.NodeActive,
			AcceptServers: true, MaxRedisServers: 100, TotalMemory: 16 << 30, JoinedAt: time.Now().Unix()},
		Admin: fsm.User{Email: "admin@cnm.local", PasswordHash: "x"},
	}); err != nil {
		t.Fatal(err)
	}
	if withDB {
		if _, err := s.CreateBDB(t.Context(), fsm.Actor{}, fsm.BDB{Name: "db", MemorySize: 1 << 20, ShardsCount: 1,
			DataPersistence: fsm.PersistenceDisabled}); err != nil {
			t.Fatal(err)
		}
	}
	r.proposals = 0
	return s, r
}

func ptr[T any](v T) *T { return &v }

// TestSubmitAction_BadParamsProposeNothing: every bad value is refused with
// invalid_parameter before anything reaches raft.
func TestSubmitAction_BadParamsProposeNothing(t *testing.T) {
	tests := []struct {
		name   string
		action string
		params control.ActionParams
	}{
		{"an empty evict_dbs entry", fsm.ActionMaintenanceOn, control.ActionParams{EvictDBs: []string{""}}},
		{"an evict_dbs entry that is no database", fsm.ActionMaintenanceOn, control.ActionParams{EvictDBs: []string{"9"}}},
		{"an evict_dbs uid in another spelling", fsm.ActionMaintenanceOn, control.ActionParams{EvictDBs: []string{"01"}}},
		{"an empty snapshot name", fsm.ActionMaintenanceOff, control.ActionParams{SnapshotName: ptr("")}},
		{"shards only and endpoints only", fsm.ActionEnslaveNode, control.ActionParams{ShardsOnly: ptr(true), EndpointsOnly: ptr(true)}},
		{"a zero deadline", fsm.ActionRemove, control.ActionParams{DeadlineSeconds: ptr(0)}},
		{"a deadline over a week", fsm.ActionRemove, control.ActionParams{DeadlineSeconds: ptr(7*24*3600 + 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, r := newService(t, true)
			_, err := s.SubmitAction(t.Context(), control.ActionRequest{TaskID: "5d2c3a04-6c39-4b53-9b1a-5b9bd0b7d9a1",
				Node: 1, Action: tc.action, Params: tc.params})
			if !errors.Is(err, fsm.ErrInvalidParameter) {
				t.Fatalf("err = %v, want invalid_parameter", err)
			}
			if r.proposals != 0 {
				t.Fatalf("%d proposals for a refused request", r.proposals)
			}
		})
	}
}

// TestSubmitAction_DryRunPlansAndProposesNothing.
func TestSubmitAction_DryRunPlansAndProposesNothing(t *testing.T) {
	s, r := newService(t, false)
	out, err := s.SubmitAction(t.Context(), control.ActionRequest{TaskID: "5d2c3a04-6c39-4b53-9b1a-5b9bd0b7d9a1",
		Node: 1, Action: fsm.ActionEnslaveNode, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if out.Action != nil || r.proposals != 0 {
		t.Fatalf("a dry run gave action %v after %d proposals", out.Action, r.proposals)
	}
}

// TestSubmitAction_ASubmissionSentAgainIsStoredOnce: the same task id, as a
// retry after a leader change sends it, answers with the first record.
func TestSubmitAction_ASubmissionSentAgainIsStoredOnce(t *testing.T) {
	s, _ := newService(t, false)
	req := control.ActionRequest{TaskID: "5d2c3a04-6c39-4b53-9b1a-5b9bd0b7d9a1", Node: 1, Action: fsm.ActionEnslaveNode}
	first, err := s.SubmitAction(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.SubmitAction(t.Context(), req)
	if err != nil {
		t.Fatalf("the same submission again: %v", err)
	}
	if again.Action == nil || again.Action.TaskID != first.Action.TaskID || again.Action.CreationTime != first.Action.CreationTime {
		t.Fatalf("first %+v, again %+v", first.Action, again.Action)
	}
	other := req
	other.TaskID = "0b9a6f0e-3f57-4d8e-a2a4-8d4f3f7a4b11"
	if _, err := s.SubmitAction(t.Context(), other); !errors.Is(err, fsm.ErrActionInProgress) {
		t.Fatalf("another submission while the first runs: %v, want action_in_progress", err)
	}
}
