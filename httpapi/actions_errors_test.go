package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/uuid"

	"cnm/fsm"
)

func TestNodeActions_BadRequestsAreClearErrorsAndChangeNothing(t *testing.T) {
	e := newModelEnv(t)
	runErrorCasesOn(t, e, errorCases{
		{name: "start an unknown action", method: "POST", target: "/v1/nodes/1/actions/reboot", body: `{}`, status: 400, code: "unsupported_action", descHas: "reboot"},
		// As in the reference API: reading or cancelling an action that
		// does not exist is 404, whatever its name.
		{name: "read an unknown action", method: "GET", target: "/v1/nodes/1/actions/reboot", status: 404, code: "action_not_found", descHas: "reboot"},
		{name: "cancel an unknown action", method: "DELETE", target: "/v1/nodes/1/actions/reboot", status: 404, code: "action_not_found", descHas: "reboot"},
		{name: "read an action never run", method: "GET", target: "/v1/nodes/1/actions/remove", status: 404, code: "action_not_found", descHas: "remove"},
		{name: "cancel an action never run", method: "DELETE", target: "/v1/nodes/1/actions/remove", status: 404, code: "action_not_found", descHas: "remove", viaRaft: true},
		{name: "actions of an unknown node", method: "GET", target: "/v1/nodes/99/actions", status: 404, code: "node_not_found", descHas: "99"},
		{name: "start on an unknown node", method: "POST", target: "/v1/nodes/99/actions/enslave_node", body: `{}`, status: 404, code: "node_not_found", descHas: "99"},
		{name: "unknown parameter", method: "POST", target: "/v1/nodes/1/actions/maintenance_on", body: `{"evict_everything":true}`, status: 400, code: "invalid_parameter", descHas: "evict_everything"},
		// A parameter of another action is unknown to this one, every time
		// (the field names of a type are worked out once and kept).
		{name: "parameter of another action", method: "POST", target: "/v1/nodes/1/actions/enslave_node", body: `{"keep_slave_shards":true}`, status: 400, code: "invalid_parameter", descHas: "keep_slave_shards"},
		{name: "parameter of another action, again", method: "POST", target: "/v1/nodes/1/actions/remove", body: `{"shards_only":true}`, status: 400, code: "invalid_parameter", descHas: "shards_only"},
		{name: "parameter of the wrong type", method: "POST", target: "/v1/nodes/1/actions/maintenance_on", body: `{"overwrite_snapshot":"yes"}`, status: 400, code: "invalid_parameter", descHas: "overwrite_snapshot"},
		{name: "bad dry_run", method: "POST", target: "/v1/nodes/1/actions/enslave_node?dry_run=maybe", body: `{}`, status: 400, code: "invalid_parameter", descHas: "dry_run"},
	}.withAuth("admin"))
}

func TestNodeActions_SecondActionOnABusyNodeIs409(t *testing.T) {
	e := newModelEnv(t)
	mustStatus(t, e.call("admin", "POST", "/v1/nodes/1/actions/enslave_node", `{}`), http.StatusOK)
	// The leader answers from its state without proposing anything (Apply
	// decides the same again for submissions that race, see the drills).
	runErrorCasesOn(t, e, errorCases{
		{name: "another action", method: "POST", target: "/v1/nodes/1/actions/maintenance_on", body: `{}`, status: 409, code: "action_in_progress", descHas: "enslave_node"},
		{name: "the same action again", method: "POST", target: "/v1/nodes/1/actions/enslave_node", body: `{}`, status: 409, code: "action_in_progress", descHas: "enslave_node"},
	}.withAuth("admin"))
}

// A client cannot pick the task id (and so cannot get an old record back
// instead of a new action): only nodes retrying a submission may.
func TestNodeActions_ClientChosenTaskIDIsIgnored(t *testing.T) {
	e := newModelEnv(t)
	const chosen = "38c7405b-26a7-4379-b84c-cab4b3db706d"
	r := e.request("admin", "POST", "/v1/nodes/1/actions/enslave_node", `{}`)
	r.Header.Set("X-Cnm-Task-Id", chosen)
	w := e.serve(r)
	mustStatus(t, w, http.StatusOK)
	var got struct {
		TaskID string `json:"task_id"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.TaskID == chosen || got.TaskID == "" {
		t.Fatalf("task_id = %q: the client's choice was used", got.TaskID)
	}
}

// The task id of a submission is given where the client's request arrives:
// a peer forwarding one has given it already, and the leader keeps it; a
// forward without a usable one (a node of an older build drops it) gets a
// fresh one, as does every request of a client.
func TestNodeActions_TaskIDIsGivenWhereTheRequestArrives(t *testing.T) {
	const given = "38c7405b-26a7-4379-b84c-cab4b3db706d"
	tests := []struct {
		name      string
		fromPeer  bool
		forwarded bool
		header    string
		keep      bool
	}{
		{"forwarded with an id", true, true, given, true},
		{"a peer's own retry with an id", true, false, given, true},
		{"forwarded without an id", true, true, "", false},
		{"forwarded with an id that is no uuid", true, true, "task-1", false},
		{"a client with an id", false, false, given, false},
		{"a client claiming to forward", false, true, given, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newModelEnv(t)
			r := e.request("admin", "POST", "/v1/nodes/1/actions/enslave_node", `{}`)
			if tc.header != "" {
				r.Header.Set("X-Cnm-Task-Id", tc.header)
			}
			if tc.forwarded {
				r.Header.Set("X-Cnm-Forwarded-By", "2")
			}
			if tc.fromPeer {
				r = asNode(r, nodeCert(t, 2))
			}
			w := e.serve(r)
			mustStatus(t, w, http.StatusOK)
			var got struct {
				TaskID string `json:"task_id"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if _, err := uuid.Parse(got.TaskID); err != nil {
				t.Fatalf("task_id = %q, not a uuid", got.TaskID)
			}
			if (got.TaskID == given) != tc.keep {
				t.Fatalf("task_id = %q, want the given one: %v", got.TaskID, tc.keep)
			}
		})
	}
}

// The stored params say what the action does: defaults filled in.
func TestNodeActions_ParamsShowTheirDefaults(t *testing.T) {
	tests := []struct {
		action, body, want string
	}{
		{"maintenance_on", `{}`, `{"overwrite_snapshot":false,"evict_ha_replica":true,"evict_active_active_replica":true,"keep_slave_shards":false}`},
		{"maintenance_on", `{"evict_ha_replica":false,"evict_dbs":["1"]}`, `{"overwrite_snapshot":false,"evict_ha_replica":false,"evict_active_active_replica":true,"evict_dbs":["1"],"keep_slave_shards":false}`},
		{"enslave_node", `{"shards_only":true}`, `{"shards_only":true,"endpoints_only":false}`},
		{"remove", `{}`, `{"wait_for_persistence":false}`},
	}
	for _, tc := range tests {
		t.Run(tc.action+" "+tc.body, func(t *testing.T) {
			e := newModelEnv(t)
			// Enough healthy voters for any action on node 1.
			e.changeNode(2, func(n *fsm.Node) { n.Maintenance = false })
			e.addNodes(nodeSpec{UID: 3, MaxShards: 10, Memory: 4 * gib})
			w := e.call("admin", "POST", "/v1/nodes/1/actions/"+tc.action+"?dry_run=false", tc.body)
			mustStatus(t, w, http.StatusOK)
			var got struct {
				Params json.RawMessage `json:"params"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if string(got.Params) != tc.want {
				t.Fatalf("params = %s, want %s", got.Params, tc.want)
			}
		})
	}
}
