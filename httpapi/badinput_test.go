package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestBody_NullForATypedFieldIs400NamingTheField: a null would otherwise
// read as "not given" and quietly fall back to a default (SPEC §9).
func TestBody_NullForATypedFieldIs400NamingTheField(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "user name", method: "POST", target: "/v1/users", body: `{"email":"new@cnm.local","password":"pw","role":"none","name":null}`, descHas: "name"},
		{name: "user email on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{"email":null}`, descHas: "email"},
		{name: "user password on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{"name":"x","password":null}`, descHas: "password"},
		{name: "database memory_size", method: "POST", target: "/v1/bdbs", body: `{"name":"n","memory_size":null}`, descHas: "memory_size"},
		{name: "database replication", method: "POST", target: "/v1/bdbs", body: `{"name":"n","memory_size":1048576,"replication":null}`, descHas: "replication"},
		{name: "database data_persistence", method: "POST", target: "/v1/bdbs", body: `{"name":"n","memory_size":1048576,"data_persistence":null}`, descHas: "data_persistence"},
		{name: "policy rack_aware", method: "PUT", target: "/v1/cluster/policy", body: `{"rack_aware":null}`, descHas: "rack_aware"},
		{name: "policy placement beside a good field", method: "PUT", target: "/v1/cluster/policy", body: `{"rack_aware":true,"default_shards_placement":null}`, descHas: "default_shards_placement"},
		{name: "node rack_id", method: "PUT", target: "/v1/nodes/1", body: `{"rack_id":null}`, descHas: "rack_id"},
		{name: "node max_redis_servers", method: "PUT", target: "/v1/nodes/1", body: `{"accept_servers":true,"max_redis_servers":null}`, descHas: "max_redis_servers"},
		{name: "remove wait_for_persistence", method: "POST", target: "/v1/nodes/2/actions/remove", body: `{"wait_for_persistence":null}`, descHas: "wait_for_persistence"},
		{name: "maintenance_on overwrite_snapshot", method: "POST", target: "/v1/nodes/1/actions/maintenance_on", body: `{"overwrite_snapshot":null}`, descHas: "overwrite_snapshot"},
		{name: "maintenance_on evict_dbs", method: "POST", target: "/v1/nodes/1/actions/maintenance_on", body: `{"evict_dbs":null}`, descHas: "evict_dbs"},
		{name: "maintenance_on evict_dbs element", method: "POST", target: "/v1/nodes/1/actions/maintenance_on", body: `{"evict_dbs":["1",null]}`, descHas: "evict_dbs[1]"},
		{name: "maintenance_off snapshot_name", method: "POST", target: "/v1/nodes/2/actions/maintenance_off", body: `{"snapshot_name":null}`, descHas: "snapshot_name"},
		{name: "maintenance_off skip_shards_restore", method: "POST", target: "/v1/nodes/2/actions/maintenance_off", body: `{"skip_shards_restore":null}`, descHas: "skip_shards_restore"},
		{name: "enslave_node shards_only", method: "POST", target: "/v1/nodes/2/actions/enslave_node", body: `{"shards_only":null}`, descHas: "shards_only"},
		{name: "dry run keeps the rule", method: "POST", target: "/v1/nodes/2/actions/remove?dry_run=true", body: `{"deadline_seconds":null}`, descHas: "deadline_seconds"},
	}.withAuth("admin").withStatus(http.StatusBadRequest, "invalid_parameter"))
}

// TestBody_FieldNamesAreExact: encoding/json matches names without regard
// to case; the API must not (SPEC §9).
func TestBody_FieldNamesAreExact(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "SKIP_SHARDS_RESTORE", method: "POST", target: "/v1/nodes/2/actions/maintenance_off", body: `{"SKIP_SHARDS_RESTORE":true}`, descHas: "SKIP_SHARDS_RESTORE"},
		{name: "Wait_For_Persistence", method: "POST", target: "/v1/nodes/2/actions/remove", body: `{"Wait_For_Persistence":true}`, descHas: "Wait_For_Persistence"},
		{name: "Evict_DBs", method: "POST", target: "/v1/nodes/1/actions/maintenance_on", body: `{"Evict_DBs":["1"]}`, descHas: "Evict_DBs"},
		{name: "Shards_Only", method: "POST", target: "/v1/nodes/2/actions/enslave_node", body: `{"Shards_Only":true}`, descHas: "Shards_Only"},
		{name: "user Email", method: "POST", target: "/v1/users", body: `{"Email":"new@cnm.local","password":"pw","role":"none"}`, descHas: "Email"},
		{name: "user ROLE on update", method: "PUT", target: "/v1/users/{uid:none}", body: `{"ROLE":"admin"}`, descHas: "ROLE"},
		{name: "database Name", method: "POST", target: "/v1/bdbs", body: `{"Name":"n","memory_size":1048576}`, descHas: "Name"},
		{name: "policy Rack_Aware", method: "PUT", target: "/v1/cluster/policy", body: `{"Rack_Aware":true}`, descHas: "Rack_Aware"},
		{name: "node RACK_ID", method: "PUT", target: "/v1/nodes/1", body: `{"RACK_ID":"r1"}`, descHas: "RACK_ID"},
		{name: "exact name beside a case variant", method: "PUT", target: "/v1/nodes/1", body: `{"rack_id":"r1","Rack_id":"r2"}`, descHas: "Rack_id"},
		{name: "the go field name", method: "PUT", target: "/v1/nodes/1", body: `{"RackID":"r1"}`, descHas: "RackID"},
	}.withAuth("admin").withStatus(http.StatusBadRequest, "invalid_parameter"))
}

// TestPathUID_NotPlainDecimalIs400: "+1" or "01" must not name node 1.
func TestPathUID_NotPlainDecimalIs400(t *testing.T) {
	var cases errorCases
	for _, uid := range []string{"+1", "01", "001", "1e0", "%201", "1%20", "0x1", "-0", "+0"} {
		for _, c := range []struct{ method, target, body string }{
			{"GET", "/v1/nodes/" + uid, ""},
			{"PUT", "/v1/nodes/" + uid, `{"rack_id":"r1"}`},
			{"GET", "/v1/nodes/" + uid + "/status", ""},
			{"GET", "/v1/nodes/" + uid + "/actions", ""},
			{"POST", "/v1/nodes/" + uid + "/actions/maintenance_on", `{}`},
			{"GET", "/v1/bdbs/" + uid, ""},
			{"DELETE", "/v1/bdbs/" + uid, ""},
			{"GET", "/v1/users/" + uid, ""},
			{"PUT", "/v1/users/" + uid, `{"name":"x"}`},
		} {
			cases = append(cases, errorCase{name: c.method + " " + c.target, method: c.method, target: c.target, body: c.body, descHas: "uid"})
		}
	}
	runErrorCasesOn(t, newModelEnv(t), cases.withAuth("admin").withStatus(http.StatusBadRequest, "invalid_parameter"))
}

// TestPutNode_RackIDOver64CharactersIs400: a rack id is stored in the
// replicated state and shown in every node view.
func TestPutNode_RackIDOver64CharactersIs400(t *testing.T) {
	e := newModelEnv(t)
	runErrorCasesOn(t, e, errorCases{
		{name: "65 ascii", body: `{"rack_id":"` + strings.Repeat("r", 65) + `"}`, descHas: "rack_id"},
		{name: "65 multibyte", body: `{"rack_id":"` + strings.Repeat("é", 65) + `"}`, descHas: "rack_id"},
		{name: "4 KiB", body: `{"rack_id":"` + strings.Repeat("r", 4096) + `"}`, descHas: "rack_id"},
	}.withAuth("admin").withMethod("PUT").withTarget("/v1/nodes/1").withStatus(http.StatusBadRequest, "invalid_parameter"))
	for _, rack := range []string{strings.Repeat("r", 64), strings.Repeat("é", 64), ""} {
		w := e.call("admin", "PUT", "/v1/nodes/1", `{"rack_id":"`+rack+`"}`)
		mustStatus(t, w, http.StatusOK)
		var got nodeJSON
		decodeInto(t, w, &got)
		if got.RackID != rack {
			t.Errorf("rack_id = %q, want %q", got.RackID, rack)
		}
	}
}

// TestBody_EmptyMeansEmptyObject: an empty body and {} stay the same
// request (SPEC §2), for every write that takes an optional body.
func TestBody_EmptyMeansEmptyObject(t *testing.T) {
	for _, body := range []string{"", "{}", " { } "} {
		e := newModelEnv(t)
		w := e.call("admin", "DELETE", "/v1/nodes/1/snapshots/snap-1", body)
		if w.Code != http.StatusOK {
			t.Errorf("delete snapshot with body %q: %d %s", body, w.Code, w.Body)
		}
		w = e.call("admin", "DELETE", "/v1/bdbs/1", body)
		if w.Code != http.StatusOK {
			t.Errorf("delete database with body %q: %d %s", body, w.Code, w.Body)
		}
	}
}
