package httpapi_test

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"cnm/fsm"
)

func TestCreateBDB_InvalidBodiesAre400AndChangeNothing(t *testing.T) {
	name63 := strings.Repeat("n", 63)
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "empty body", body: ``, descHas: "name"},
		{name: "empty object", body: `{}`, descHas: "name"},
		{name: "missing name", body: `{"memory_size":1048576}`, descHas: "name"},
		{name: "empty name", body: `{"name":"","memory_size":1048576}`, descHas: "name"},
		{name: "null name", body: `{"name":null,"memory_size":1048576}`, descHas: "name"},
		{name: "name of 64 characters", body: `{"name":"` + name63 + `x","memory_size":1048576}`, descHas: "name"},
		{name: "missing memory_size", body: `{"name":"new"}`, descHas: "memory_size"},
		{name: "null memory_size", body: `{"name":"new","memory_size":null}`, descHas: "memory_size"},
		{name: "zero memory_size", body: `{"name":"new","memory_size":0}`, descHas: "memory_size"},
		{name: "negative memory_size", body: `{"name":"new","memory_size":-1048576}`, descHas: "memory_size"},
		{name: "shards_count 0", body: `{"name":"new","memory_size":1048576,"shards_count":0}`, descHas: "shards_count"},
		{name: "shards_count 513", body: `{"name":"new","memory_size":1048576,"shards_count":513}`, descHas: "shards_count"},
		{name: "negative shards_count", body: `{"name":"new","memory_size":1048576,"shards_count":-2}`, descHas: "shards_count"},
		{name: "memory_size smaller than shards_count", body: `{"name":"new","memory_size":2,"shards_count":3}`, descHas: "memory_size"},
		{name: "unknown data_persistence", body: `{"name":"new","memory_size":1048576,"data_persistence":"sometimes"}`, descHas: "data_persistence"},
		{name: "data_persistence in upper case", body: `{"name":"new","memory_size":1048576,"data_persistence":"AOF"}`, descHas: "data_persistence"},
		{name: "empty data_persistence", body: `{"name":"new","memory_size":1048576,"data_persistence":""}`, descHas: "data_persistence"},
		{name: "replication is a string", body: `{"name":"new","memory_size":1048576,"replication":"yes"}`, descHas: "replication"},
		{name: "crdt is a number", body: `{"name":"new","memory_size":1048576,"crdt":1}`, descHas: "crdt"},
		{name: "memory_size is a string", body: `{"name":"new","memory_size":"1GB"}`, descHas: "memory_size"},
		{name: "memory_size is a float", body: `{"name":"new","memory_size":1.5}`, descHas: "memory_size"},
		{name: "shards_count is a string", body: `{"name":"new","memory_size":1048576,"shards_count":"2"}`, descHas: "shards_count"},
		{name: "shards_count is a float", body: `{"name":"new","memory_size":1048576,"shards_count":1.5}`, descHas: "shards_count"},
		{name: "name is a number", body: `{"name":5,"memory_size":1048576}`, descHas: "name"},
		{name: "data_persistence is a bool", body: `{"name":"new","memory_size":1048576,"data_persistence":true}`, descHas: "data_persistence"},
		{name: "unknown field", body: `{"name":"new","memory_size":1048576,"port":12000}`, descHas: "port"},
		{name: "read-only field uid", body: `{"name":"new","memory_size":1048576,"uid":7}`, descHas: "uid"},
		{name: "read-only field shard_list", body: `{"name":"new","memory_size":1048576,"shard_list":["1"]}`, descHas: "shard_list"},
		{name: "array", body: `[{"name":"new","memory_size":1048576}]`, code: "invalid_json"},
		{name: "truncated", body: `{"name":"new","memory_size":`, code: "invalid_json"},
		{name: "two objects", body: `{"name":"a","memory_size":1048576}{"name":"b","memory_size":1048576}`, code: "invalid_json"},
	}.withAuth("admin").withMethod("POST").withTarget("/v1/bdbs").withStatus(http.StatusBadRequest, "invalid_parameter"))
}

func TestCreateBDB_DuplicateNameIs409AndChangesNothing(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "same name", as: "admin", body: `{"name":"db1","memory_size":1048576}`},
		{name: "same name by a db_member", as: "db_member", body: `{"name":"db1","memory_size":1048576,"shards_count":1}`},
		{name: "same name with other settings", as: "cluster_member", body: `{"name":"db1","memory_size":1048576,"replication":false,"data_persistence":"aof"}`},
	}.withMethod("POST").withTarget("/v1/bdbs").withStatus(http.StatusConflict, "bdb_exists"))
}

// On newModelEnv only node 1 takes shards (node 2 is in maintenance); it
// has 98 free shard slots and 14 GiB free.
func TestCreateBDB_TooBigForEveryNodeIs406NamingWhatIsMissing(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "memory beyond every node", body: `{"name":"huge","memory_size":68719476736}`, descHas: "memory"},
		{name: "memory beyond the free memory", body: `{"name":"huge","memory_size":16106127360}`, descHas: "memory"},
		{name: "memory beyond every node in many shards", body: `{"name":"huge","memory_size":68719476736,"shards_count":8}`, descHas: "memory"},
		{name: "more shards than every node's max_redis_servers", body: `{"name":"many","memory_size":536870912,"shards_count":512}`, descHas: "max_redis_servers"},
		{name: "one shard more than the free slots", body: `{"name":"many","memory_size":99614720,"shards_count":99}`, descHas: "max_redis_servers"},
		{name: "a replica with no second node", body: `{"name":"pair","memory_size":1048576,"replication":true}`, descHas: "replica"},
	}.withAuth("admin").withMethod("POST").withTarget("/v1/bdbs").withStatus(http.StatusNotAcceptable, "insufficient_resources"))
}

func TestBDBs_UnknownIs404AndNonNumericIs400(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "get unknown", method: "GET", target: "/v1/bdbs/99", status: 404, code: "bdb_not_found", descHas: "99"},
		{name: "delete unknown", method: "DELETE", target: "/v1/bdbs/99", status: 404, code: "bdb_not_found", descHas: "99", viaRaft: true},
		{name: "get abc", method: "GET", target: "/v1/bdbs/abc", status: 400, code: "invalid_parameter", descHas: "abc"},
		{name: "delete abc", method: "DELETE", target: "/v1/bdbs/abc", status: 400, code: "invalid_parameter", descHas: "abc"},
		{name: "get 0", method: "GET", target: "/v1/bdbs/0", status: 400, code: "invalid_parameter", descHas: "uid"},
		{name: "delete negative", method: "DELETE", target: "/v1/bdbs/-1", status: 400, code: "invalid_parameter", descHas: "uid"},
		{name: "get a float", method: "GET", target: "/v1/bdbs/1.0", status: 400, code: "invalid_parameter", descHas: "uid"},
		{name: "delete with an unknown field", method: "DELETE", target: "/v1/bdbs/1", body: `{"force":true}`, status: 400, code: "invalid_parameter", descHas: "force"},
		{name: "delete with a non-object body", method: "DELETE", target: "/v1/bdbs/1", body: `[1]`, status: 400, code: "invalid_json"},
		{name: "put a database", method: "PUT", target: "/v1/bdbs/1", body: `{"name":"x"}`, status: 405, code: "method_not_allowed"},
		{name: "delete the database list", method: "DELETE", target: "/v1/bdbs", status: 405, code: "method_not_allowed"},
	}.withAuth("admin"))
}

func TestShards_NonNumericIs400AndUnknownIs404(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "x", method: "GET", target: "/v1/shards/x", status: 400, code: "invalid_parameter", descHas: "x"},
		{name: "float", method: "GET", target: "/v1/shards/1.5", status: 400, code: "invalid_parameter", descHas: "1.5"},
		{name: "unknown", method: "GET", target: "/v1/shards/99", status: 404, code: "shard_not_found", descHas: "99"},
		{name: "delete a shard", method: "DELETE", target: "/v1/shards/1", status: 405, code: "method_not_allowed"},
	}.withAuth("admin"))
}

// Every other uid in a path (nodes, users, databases) must be a positive
// integer or the answer is 400 (TestPathUID_NonNumericOrNotPositiveIs400,
// TestBDBs_UnknownIs404AndNonNumericIs400); shard uids follow the same rule.
func TestShards_NotPositiveUIDIs400LikeEveryOtherUID(t *testing.T) {
	runErrorCasesOn(t, newModelEnv(t), errorCases{
		{name: "zero", target: "/v1/shards/0", descHas: "uid"},
		{name: "negative", target: "/v1/shards/-1", descHas: "uid"},
	}.withAuth("admin").withMethod("GET").withStatus(http.StatusBadRequest, "invalid_parameter"))
}

func TestCreateBDB_AnswersTheDatabaseObject(t *testing.T) {
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 100, Memory: 16 * gib}, nodeSpec{UID: 3, MaxShards: 100, Memory: 16 * gib})
	before := e.applied()

	w := e.call("db_member", "POST", "/v1/bdbs", `{"name":"shape-db","memory_size":2147483648,"shards_count":2,"replication":true,"data_persistence":"aof"}`)
	mustStatus(t, w, http.StatusOK)
	assertIndexHeader(t, e, w)
	if e.applied() != before+1 {
		t.Errorf("applied index %d, want %d: one entry per creation", e.applied(), before+1)
	}
	raw := rawFields(t, w.Body.Bytes())
	for _, f := range []string{"uid", "name", "memory_size", "shards_count", "replication", "crdt", "data_persistence", "shard_list", "endpoints", "status"} {
		if raw[f] == nil {
			t.Errorf("the database object has no %q: %s", f, w.Body)
		}
	}
	var b bdbJSON
	decodeInto(t, w, &b)
	if b.UID <= 0 || b.Name != "shape-db" || b.MemorySize != 2*gib || b.ShardsCount != 2 || !b.Replication || b.CRDT ||
		b.DataPersistence != "aof" || b.Status != "active" {
		t.Fatalf("created %+v", b)
	}
	if len(b.ShardList) != 4 {
		t.Fatalf("shard_list = %v, want 2 masters and 2 replicas", b.ShardList)
	}
	for _, id := range b.ShardList {
		if id <= 0 {
			t.Errorf("shard uid %d is not positive", id)
		}
	}
	if len(b.Endpoints) != 1 {
		t.Fatalf("endpoints = %+v, want one", b.Endpoints)
	}
	ep := b.Endpoints[0]
	if ep.UID == "" || ep.Port <= 0 || ep.Port > 65535 {
		t.Errorf("endpoint %+v", ep)
	}
	epNode, err := strconv.Atoi(ep.NodeUID)
	if err != nil || epNode < 1 || epNode > 3 {
		t.Fatalf("endpoint node_uid %q is not a node of the cluster", ep.NodeUID)
	}
	if want := []string{nodeHost(epNode)}; !slices.Equal(ep.Addr, want) {
		t.Errorf("endpoint addr = %q, want %q (its node's address)", ep.Addr, want)
	}

	shards := e.shardsOf(b.UID)
	var ids []int
	hostsMaster := false
	for _, sh := range shards {
		ids = append(ids, mustInt(t, sh.UID))
		hostsMaster = hostsMaster || (sh.Role == "master" && sh.NodeUID == ep.NodeUID)
	}
	if !slices.Equal(ids, b.ShardList) {
		t.Errorf("GET /v1/shards lists %v for the database, shard_list says %v", ids, b.ShardList)
	}
	if !hostsMaster {
		t.Errorf("the endpoint is on node %s, which hosts no master of the database: %+v", ep.NodeUID, shards)
	}

	var got bdbJSON
	e.getJSON("db_viewer", "/v1/bdbs/"+strconv.Itoa(b.UID), &got)
	if !reflect.DeepEqual(got, b) {
		t.Errorf("GET = %+v\nPOST answered %+v", got, b)
	}
	var list []bdbJSON
	e.getJSON("cluster_viewer", "/v1/bdbs", &list)
	if len(list) != 1 || !reflect.DeepEqual(list[0], b) {
		t.Errorf("list = %+v, want [%+v]", list, b)
	}
}

func TestCreateBDB_DefaultsToOneShardWithoutReplicationOrPersistence(t *testing.T) {
	e := newEnv(t)
	b := e.createDB(`{"name":"plain","memory_size":1048576}`)
	if b.ShardsCount != 1 || b.Replication || b.CRDT || b.DataPersistence != "disabled" || len(b.ShardList) != 1 {
		t.Fatalf("created %+v, want 1 shard, no replication, no crdt, persistence disabled", b)
	}
}

func TestCreateBDB_AcceptsTheLimitsOfEachField(t *testing.T) {
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 600, Memory: 16 * gib})
	for i, body := range []string{
		`{"name":"` + strings.Repeat("n", 63) + `","memory_size":1048576}`,
		`{"name":"x","memory_size":1}`,
		`{"name":"one-byte-per-shard","memory_size":3,"shards_count":3}`,
		`{"name":"max-shards","memory_size":536870912,"shards_count":512}`,
		`{"name":"snap","memory_size":1048576,"data_persistence":"snapshot","crdt":true}`,
		`{"name":"off","memory_size":1048576,"data_persistence":"disabled","replication":false}`,
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			b := e.createDB(body)
			if len(b.ShardList) != b.ShardsCount {
				t.Fatalf("%d shards listed for %d", len(b.ShardList), b.ShardsCount)
			}
		})
	}
}

func TestShards_ShowStringUIDsRolesAndSharedSlots(t *testing.T) {
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 100, Memory: 16 * gib}, nodeSpec{UID: 3, MaxShards: 100, Memory: 16 * gib})
	b := e.createDB(`{"name":"paired","memory_size":3221225472,"shards_count":3,"replication":true}`)
	single := e.createDB(`{"name":"single","memory_size":2147483648,"shards_count":2}`)

	w := e.call("db_viewer", "GET", "/v1/shards", "")
	mustStatus(t, w, http.StatusOK)
	var items []map[string]any
	if err := jsonUnmarshal(w, &items); err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if _, ok := it["uid"].(string); !ok {
			t.Errorf("shard uid %v (%T) is not a string", it["uid"], it["uid"])
		}
		if _, ok := it["node_uid"].(string); !ok {
			t.Errorf("shard node_uid %v (%T) is not a string", it["node_uid"], it["node_uid"])
		}
	}
	all := e.listShards()
	if len(all) != 8 {
		t.Fatalf("%d shards, want 6 + 2: %+v", len(all), all)
	}
	for i := 1; i < len(all); i++ {
		a, _ := strconv.Atoi(all[i-1].UID)
		c, _ := strconv.Atoi(all[i].UID)
		if a >= c {
			t.Errorf("shards not in uid order: %+v", all)
		}
	}
	for _, sh := range all {
		want := b.MemorySize / int64(b.ShardsCount)
		if sh.BDBUID == single.UID {
			want = single.MemorySize / int64(single.ShardsCount)
		}
		if sh.Memory != want || sh.Status == "" {
			t.Errorf("shard %+v: want memory %d and a status", sh, want)
		}
		if _, err := strconv.Atoi(sh.NodeUID); err != nil {
			t.Errorf("shard %s node_uid %q is not a node uid", sh.UID, sh.NodeUID)
		}
		var one shardJSON
		e.getJSON("db_viewer", "/v1/shards/"+sh.UID, &one)
		if one != sh {
			t.Errorf("GET /v1/shards/%s = %+v, listed as %+v", sh.UID, one, sh)
		}
	}

	ps := pairs(t, e.shardsOf(b.UID), true)
	if len(ps) != 3 {
		t.Fatalf("slot ranges %v, want 3", ps)
	}
	assertSlotsCoverAll(t, ps)
	for slots, p := range ps {
		if p[0].NodeUID == p[1].NodeUID {
			t.Errorf("slots %s: master %s and its replica %s are both on node %s", slots, p[0].UID, p[1].UID, p[0].NodeUID)
		}
	}
	sp := pairs(t, e.shardsOf(single.UID), false)
	_, first := sp["0-8191"]
	_, second := sp["8192-16383"]
	if !first || !second || len(sp) != 2 {
		t.Errorf("slots of a 2-shard database: %+v, want 0-8191 and 8192-16383", sp)
	}
}

// assertSlotsCoverAll checks that the slot ranges split 0-16383 without
// gaps or overlaps.
func assertSlotsCoverAll(t *testing.T, ps map[string][2]shardJSON) {
	t.Helper()
	type span struct{ lo, hi int }
	var spans []span
	for r := range ps {
		var s span
		if _, err := fmt.Sscanf(r, "%d-%d", &s.lo, &s.hi); err != nil || s.lo > s.hi {
			t.Fatalf("assigned_slots %q is not a range", r)
		}
		spans = append(spans, s)
	}
	slices.SortFunc(spans, func(a, b span) int { return a.lo - b.lo })
	next := 0
	for _, s := range spans {
		if s.lo != next {
			t.Fatalf("slot ranges %v leave a gap or overlap at %d", spans, next)
		}
		next = s.hi + 1
	}
	if next != 16384 {
		t.Fatalf("slot ranges %v end at %d, want 16383", spans, next-1)
	}
}

// SPEC §5: a node shows shard_count and shard_list, the shards it hosts.
func TestNodes_ShowTheShardsTheyHost(t *testing.T) {
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 100, Memory: 16 * gib}, nodeSpec{UID: 3, MaxShards: 100, Memory: 16 * gib})
	for _, n := range e.listNodes() {
		if n.ShardCount != 0 || n.ShardList == nil || len(n.ShardList) != 0 {
			t.Fatalf("node %d before any database: shard_count %d, shard_list %#v; want 0 and []", n.UID, n.ShardCount, n.ShardList)
		}
	}
	e.setPolicy(`{"default_shards_placement":"sparse"}`)
	e.createDB(`{"name":"a","memory_size":4294967296,"shards_count":2,"replication":true}`)
	e.createDB(`{"name":"b","memory_size":1073741824,"shards_count":3}`)

	want := map[int][]int{}
	for _, sh := range e.listShards() {
		n := mustInt(t, sh.NodeUID)
		want[n] = append(want[n], mustInt(t, sh.UID))
	}
	nodes := e.listNodes()
	if len(nodes) != 3 {
		t.Fatalf("nodes = %+v", nodes)
	}
	total := 0
	for _, n := range nodes {
		w := want[n.UID]
		if w == nil {
			w = []int{}
		}
		if n.ShardCount != len(w) || !slices.Equal(n.ShardList, w) {
			t.Errorf("GET /v1/nodes: node %d shows shard_count %d, shard_list %v; it hosts %v", n.UID, n.ShardCount, n.ShardList, w)
		}
		var one nodeJSON
		e.getJSON("cluster_viewer", "/v1/nodes/"+strconv.Itoa(n.UID), &one)
		if one.ShardCount != len(w) || !slices.Equal(one.ShardList, w) {
			t.Errorf("GET /v1/nodes/%d shows shard_count %d, shard_list %v; it hosts %v", n.UID, one.ShardCount, one.ShardList, w)
		}
		total += n.ShardCount
	}
	if total != 7 {
		t.Errorf("nodes show %d shards in all, want 4 + 3", total)
	}
}

func TestDeleteBDB_RemovesItsShardsAndFreesTheirRoom(t *testing.T) {
	e := newEnv(t)
	e.addNodes(nodeSpec{UID: 2, MaxShards: 4, Memory: 4 * gib})
	e.changeNode(1, func(n *fsm.Node) { n.MaxRedisServers = 4; n.TotalMemory = 4 * gib })
	// 6 shards of 1 GiB: 3 on each node, leaving each 1 slot and 1 GiB.
	b := e.createDB(`{"name":"big","memory_size":3221225472,"shards_count":3,"replication":true}`)
	keep := e.createDB(`{"name":"keep","memory_size":1048576}`)
	assertError(t, e, e.call("admin", "POST", "/v1/bdbs", `{"name":"next","memory_size":4294967296,"shards_count":2}`),
		http.StatusNotAcceptable, "insufficient_resources")

	path := "/v1/bdbs/" + strconv.Itoa(b.UID)
	w := e.call("db_member", "DELETE", path, "")
	mustStatus(t, w, http.StatusOK)
	var del struct {
		UID int `json:"uid"`
	}
	decodeInto(t, w, &del)
	if del.UID != b.UID {
		t.Fatalf("delete answered uid %d, want %d", del.UID, b.UID)
	}
	assertError(t, e, e.call("admin", "GET", path, ""), http.StatusNotFound, "bdb_not_found")
	for _, id := range b.ShardList {
		assertError(t, e, e.call("admin", "GET", "/v1/shards/"+strconv.Itoa(id), ""), http.StatusNotFound, "shard_not_found")
	}
	if got := e.listShards(); len(got) != 1 || got[0].BDBUID != keep.UID {
		t.Fatalf("shards after delete = %+v, want only %q's", got, keep.Name)
	}
	var list []bdbJSON
	e.getJSON("admin", "/v1/bdbs", &list)
	if len(list) != 1 || list[0].UID != keep.UID {
		t.Fatalf("databases after delete = %+v", list)
	}
	shown := 0
	for _, n := range e.listNodes() {
		shown += n.ShardCount
	}
	if shown != 1 {
		t.Errorf("nodes still show %d shards, want 1", shown)
	}
	// The room is free again, and so is the name.
	e.createDB(`{"name":"next","memory_size":4294967296,"shards_count":2}`)
	e.createDB(`{"name":"big","memory_size":1048576}`)
	assertError(t, e, e.call("admin", "DELETE", path, ""), http.StatusNotFound, "bdb_not_found")
}

func TestDeleteBDB_EmptyBodyOrEmptyObjectIsAccepted(t *testing.T) {
	e := newModelEnv(t)
	e.createDB(`{"name":"db2","memory_size":1048576}`)
	for i, body := range []string{"", "{}"} {
		w := e.call("admin", "DELETE", fmt.Sprintf("/v1/bdbs/%d", i+1), body)
		mustStatus(t, w, http.StatusOK)
	}
	if n := len(e.state().BDBs); n != 0 {
		t.Fatalf("%d databases left", n)
	}
}

// mustInt parses a decimal uid of an API answer.
func mustInt(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("uid %q is not a number: %v", s, err)
	}
	return n
}
