package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"cnm/fsm"
)

// admittingFSM is an FSM that runs Admit in Apply, holding st.
func admittingFSM(t *testing.T, st *fsm.State) *fsm.FSM {
	t.Helper()
	f := fsm.New(fsm.WithAdmission(Admit))
	doc, err := json.Marshal(map[string]any{"version": 1, "applied": 1, "state": st})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Restore(io.NopCloser(bytes.NewReader(doc))); err != nil {
		t.Fatal(err)
	}
	return f
}

// applyTo applies payload as the next entry of f.
func applyTo(t *testing.T, f *fsm.FSM, payload any) *fsm.Result {
	t.Helper()
	data, err := fsm.Encode(payload)
	if err != nil {
		t.Fatal(err)
	}
	res, ok := f.Apply(&raft.Log{Index: f.Applied() + 1, Type: raft.LogCommand, Data: data}).(*fsm.Result)
	if !ok {
		t.Fatal("Apply returned no *fsm.Result")
	}
	return res
}

func submit(task, name string, node int) *fsm.SubmitAction {
	return &fsm.SubmitAction{By: "test", Action: fsm.Action{TaskID: task, Action: name, NodeUID: node,
		CreationTime: 1767225600, Deadline: time.Now().Add(time.Hour).Unix(), Params: json.RawMessage(`{}`)}}
}

// adminState is modelState with the admin user the actor checks need.
func adminState(st *fsm.State) *fsm.State {
	st.Users[1] = &fsm.User{UID: 1, Email: "admin@cnm.local", Role: fsm.RoleAdmin}
	st.NextUserUID = 2
	return st
}

func stateJSON(t *testing.T, f *fsm.FSM) string {
	t.Helper()
	var b []byte
	f.Read(func(st *fsm.State, _ uint64) { b, _ = json.Marshal(st) })
	return string(b)
}

func TestAdmit_SecondActionSeesTheFirst(t *testing.T) {
	tests := []struct {
		name   string
		st     func() *fsm.State
		first  *fsm.SubmitAction
		second *fsm.SubmitAction
		code   string // the second's refusal; "" = admitted
	}{
		{name: "two maintenance_on of a 3-node cluster: the second would leave 1 of 3 voters",
			st:    func() *fsm.State { return modelState(3, [][2]int{{1, 2}}, fsm.PersistenceDisabled) },
			first: submit("a", fsm.ActionMaintenanceOn, 2), second: submit("b", fsm.ActionMaintenanceOn, 3),
			code: "quorum_loss"},
		{name: "remove then maintenance_on of a 3-node cluster",
			st:    func() *fsm.State { return modelState(3, [][2]int{{1, 2}}, fsm.PersistenceDisabled) },
			first: submit("a", fsm.ActionRemove, 2), second: submit("b", fsm.ActionMaintenanceOn, 3),
			code: "quorum_loss"},
		{name: "two maintenance_on of a 5-node cluster fit",
			st:    func() *fsm.State { return modelState(5, [][2]int{{1, 2}, {3, 4}}, fsm.PersistenceDisabled) },
			first: submit("a", fsm.ActionMaintenanceOn, 2), second: submit("b", fsm.ActionMaintenanceOn, 3)},
		{name: "the moves the first still has to make fill the only room left",
			st: func() *fsm.State {
				// Nodes 4 and 5 can take one shard each; node 2's two
				// shards need both, so node 3's shard has no home.
				st := modelState(5, [][2]int{{2, 1}, {2, 3}}, fsm.PersistenceDisabled)
				st.Nodes[1].MaxRedisServers = 1
				st.Nodes[3].MaxRedisServers = 1
				st.Nodes[4].MaxRedisServers = 1
				st.Nodes[5].MaxRedisServers = 1
				return st
			},
			first: submit("a", fsm.ActionMaintenanceOn, 2), second: submit("b", fsm.ActionMaintenanceOn, 3),
			code: "insufficient_resources"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := admittingFSM(t, adminState(tc.st()))
			if res := applyTo(t, f, tc.first); res.Err != nil {
				t.Fatalf("first submission refused: %v", res.Err)
			}
			before := stateJSON(t, f)
			res := applyTo(t, f, tc.second)
			if tc.code == "" {
				if res.Err != nil {
					t.Fatalf("second submission refused: %v", res.Err)
				}
				return
			}
			if res.Err == nil || res.Err.Code != tc.code {
				t.Fatalf("second submission: got %v, want %s", res.Err, tc.code)
			}
			if after := stateJSON(t, f); after != before {
				t.Errorf("a refused submission changed the state:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestQuorumCheck_CountsRaftVotersNotNodeRows(t *testing.T) {
	withJoiner := func(voters []int) *fsm.State {
		st := modelState(3, [][2]int{{1, 2}}, fsm.PersistenceDisabled)
		// Node 4 is half-joined: in the node table, not yet a voter.
		st.Nodes[4] = &fsm.Node{UID: 4, Status: fsm.NodeProvisioning, MaxRedisServers: 10, TotalMemory: 10 << 30}
		st.Voters = voters
		return st
	}
	tests := []struct {
		name    string
		st      *fsm.State
		node    int
		wantErr bool
	}{
		{"raft voters 1-3, node 4 joining: maintenance_on of node 2 keeps 2 of 3", withJoiner([]int{1, 2, 3}), 2, false},
		{"no configuration seen yet: a provisioning row is no voter", withJoiner(nil), 2, false},
		{"a voter without a node row is not available", withJoiner([]int{1, 2, 3, 7}), 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := QuorumCheck(tc.st, tc.node, fsm.ActionMaintenanceOn)
			if (err != nil) != tc.wantErr {
				t.Fatalf("QuorumCheck = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestPlanAction_NeverTargetsANodeBeingEmptied(t *testing.T) {
	// Node 4 has a queued maintenance_on: not yet marked in maintenance,
	// but being emptied all the same.
	st := modelState(5, [][2]int{{2, 4}, {3, 2}}, fsm.PersistenceDisabled)
	st.Actions = map[int]map[string]*fsm.Action{4: {fsm.ActionMaintenanceOn: {TaskID: "other",
		Action: fsm.ActionMaintenanceOn, NodeUID: 4, Status: fsm.StatusQueued, Params: json.RawMessage(`{}`)}}}

	steps, err := PlanAction(st, action(fsm.ActionMaintenanceOn, 2, `{}`), time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.Kind == fsm.StepFailover && s.Shard == "1" {
			t.Errorf("master 1 fails over onto node 4, which is being emptied: %+v", steps)
		}
		if s.Kind == fsm.StepMove && s.To == 4 {
			t.Errorf("shard %s moves to node 4, which is being emptied", s.Shard)
		}
	}
	if !slices.ContainsFunc(steps, func(s fsm.Step) bool { return s.Kind == fsm.StepMove && s.Shard == "1" }) {
		t.Errorf("master 1, whose replica is on a node being emptied, does not move: %v", kinds(steps))
	}

	_, err = PlanAction(st, action(fsm.ActionEnslaveNode, 2, `{}`), time.Unix(0, 0))
	var pe *fsm.Error
	if !errors.As(err, &pe) || pe.Code != "insufficient_resources" || !strings.Contains(pe.Description, "node 4") {
		t.Errorf("enslave_node of node 2 with its master's replica on node 4: got %v, want insufficient_resources naming node 4", err)
	}
}

func TestForLeader_DropsTheHandOverOfANodeThatDoesNotLead(t *testing.T) {
	st := modelState(3, [][2]int{{2, 1}}, fsm.PersistenceDisabled)
	steps, err := PlanAction(st, action(fsm.ActionEnslaveNode, 2, `{}`), time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(ForLeader(steps, fsm.ActionEnslaveNode, 1)); slices.Contains(got, fsm.StepTransferLeader) {
		t.Errorf("node 1 leads, node 2 is enslaved: plan %v hands leadership over", got)
	}
	if got := kinds(ForLeader(steps, fsm.ActionEnslaveNode, 2)); !slices.Contains(got, fsm.StepTransferLeader) {
		t.Errorf("node 2 leads and is enslaved: plan %v does not hand leadership over", got)
	}
}

func rawLog(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
}
