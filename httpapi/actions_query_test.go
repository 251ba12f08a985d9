package httpapi_test

import (
	"testing"
)

// A misspelt dry run must never run the action (SPEC §3.2): every spelling
// but dry_run=true|false, and every other query parameter, is a 400 that
// changes nothing.
func TestNodeActions_QueryParametersAreStrict(t *testing.T) {
	e := newModelEnv(t)
	var cases errorCases
	for _, q := range []string{"dry_run", "dry_run=", "DRY_RUN=true", "dry-run=true", "Dry_Run=true", "dry_run=1", "dry_run=TRUE",
		"dry_run=true&dry_run=true", "dry_run=true&force=1", "stale=true", "dryrun=true", "dry_run=%zz"} {
		cases = append(cases, errorCase{name: "?" + q, method: "POST", target: "/v1/nodes/1/actions/enslave_node?" + q,
			body: `{}`, status: 400, code: "invalid_parameter"})
	}
	runErrorCasesOn(t, e, cases.withAuth("admin"))
}

// evict_dbs entries are database uids: an empty string or a null must never
// stand for "every database" (SPEC §9).
func TestNodeActions_EvictDBsEntriesMustNameDatabases(t *testing.T) {
	e := newModelEnv(t)
	var cases errorCases
	for _, body := range []string{`{"evict_dbs":[""]}`, `{"evict_dbs":[null]}`, `{"evict_dbs":["1",""]}`, `{"evict_dbs":["+1"]}`,
		`{"evict_dbs":["01"]}`, `{"evict_dbs":[" 1"]}`, `{"evict_dbs":["99"]}`, `{"evict_dbs":[1]}`} {
		cases = append(cases, errorCase{name: body, method: "POST", target: "/v1/nodes/1/actions/maintenance_on",
			body: body, status: 400, code: "invalid_parameter", descHas: "evict_dbs"})
	}
	runErrorCasesOn(t, e, cases.withAuth("admin"))
}

// Every route refuses query parameters it does not define (SPEC §9).
func TestQuery_UnknownOrRepeatedParametersAre400(t *testing.T) {
	e := newModelEnv(t)
	runErrorCasesOn(t, e, errorCases{
		{name: "unknown on a read", method: "GET", target: "/v1/nodes?foo=1", status: 400, code: "invalid_parameter", descHas: "foo"},
		{name: "misspelt stale", method: "GET", target: "/v1/nodes?Stale=true", status: 400, code: "invalid_parameter", descHas: "Stale"},
		{name: "stale twice", method: "GET", target: "/v1/nodes?stale=true&stale=false", status: 400, code: "invalid_parameter", descHas: "stale"},
		{name: "stale on a write", method: "PUT", target: "/v1/cluster/policy?stale=true", body: `{}`, status: 400, code: "invalid_parameter", descHas: "stale"},
		{name: "dry_run on a database create", method: "POST", target: "/v1/bdbs?dry_run=true", body: `{"name":"x","memory_size":1073741824}`, status: 400, code: "invalid_parameter", descHas: "dry_run"},
		{name: "malformed", method: "GET", target: "/v1/shards?%zz", status: 400, code: "invalid_parameter"},
	}.withAuth("admin"))
}

// A set-up request to a node that already serves a cluster is a conflict,
// not a missing endpoint; empty consistency parameters are refused.
func TestSetupAndReadParameters_ClearErrors(t *testing.T) {
	e := newModelEnv(t)
	runErrorCasesOn(t, e, errorCases{
		{name: "create_cluster on a member", method: "POST", target: "/v1/bootstrap/create_cluster", body: `{}`, status: 409, code: "already_bootstrapped"},
		{name: "join_cluster on a member", method: "POST", target: "/v1/bootstrap/join_cluster", body: `{}`, status: 409, code: "already_bootstrapped"},
		{name: "empty stale", method: "GET", target: "/v1/nodes/1?stale=", status: 400, code: "invalid_parameter", descHas: "stale"},
		{name: "empty wait", method: "GET", target: "/v1/nodes?index=1&wait=", status: 400, code: "invalid_parameter", descHas: "wait"},
		{name: "empty snapshot_name", method: "POST", target: "/v1/nodes/2/actions/maintenance_off?dry_run=true", body: `{"snapshot_name":""}`, status: 400, code: "invalid_parameter", descHas: "snapshot_name"},
		{name: "invisible character in an email", method: "POST", target: "/v1/users", body: `{"email":"admin@cnm.local\u200b","password":"pw-12345","role":"admin"}`, status: 400, code: "invalid_parameter", descHas: "email"},
	}.withAuth("admin"))
}
