package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"cnm/fsm"
)

// The scale harness: a cluster model of scaleNodes nodes (node 1 is this
// server; the others are registered as a join registers them, with no
// process behind them, which neither the API nor the planner can tell),
// replicated databases of scaleShardsPerDB shards (so twice as many shard
// records), and every slot of the action table filled with a finished
// record carrying its full step list and event history.
const (
	scaleNodes       = 100
	scaleShardsPerDB = 50
	scaleStepsPerAct = 100
)

// scaleSizes are the shard counts of the curves (docs/BENCHMARKS.md).
var scaleSizes = []int{1_000, 10_000, 100_000}

// scaleEnv is a model of about shards shard records, with the log of
// commands that built it (after the bootstrap entry) for the replay
// benchmark.
type scaleEnv struct {
	*env
	log        [][]byte
	shards     int
	modelBytes uint64 // heap the model holds, after a GC
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// vmRSS is this process's resident set, in bytes, from /proc.
func vmRSS(tb testing.TB) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Fatalf("read RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				tb.Fatalf("parse VmRSS %q: %v", rest, err)
			}
			return kb * 1024
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func newScaleEnv(tb testing.TB, shards int) *scaleEnv {
	tb.Helper()
	before := heapInUse()
	e := &scaleEnv{env: newEnv(tb, withoutRoleUsers(), withAdmission()), shards: shards}
	perNode := shards / scaleNodes
	apply := func(payload any) {
		tb.Helper()
		cmd, err := fsm.Encode(payload)
		if err != nil {
			tb.Fatalf("encode %T: %v", payload, err)
		}
		res, err := e.raft.Apply(context.Background(), cmd)
		if err != nil || res.Err != nil {
			tb.Fatalf("apply %T: %v %v", payload, err, res.Err)
		}
		e.log = append(e.log, cmd)
	}
	// Room for half as many shards again as each node holds: a whole node
	// can be emptied onto the others.
	capacity := perNode + perNode/2 + 4
	apply(&fsm.UpdateNode{UID: testNodeUID, MaxRedisServers: &capacity})
	// Every node started 10,000 s ago, so that each uptime in GET /v1/nodes
	// keeps its five digits for a day and an answer's size stays the one
	// the first call of a benchmark checks: the serving node's own start,
	// now, made its uptime go from 9 to 10 s in the middle of one.
	start := time.Now().Unix() - 10_000
	apply(&fsm.SetNodeStatus{UID: testNodeUID, Status: fsm.NodeActive, StartTime: start})
	for uid := 2; uid <= scaleNodes; uid++ {
		host := fmt.Sprintf("10.0.%d.%d", uid/250, uid%250)
		apply(&fsm.AddNode{Node: fsm.Node{UID: uid, Addr: host, APIAddr: host + ":9443", RaftAddr: host + ":9444",
			Status: fsm.NodeProvisioning, AcceptServers: true, MaxRedisServers: capacity, TotalMemory: 1 << 50,
			SoftwareVersion: "test", JoinedAt: 1_700_000_000}})
		apply(&fsm.SetNodeStatus{UID: uid, Status: fsm.NodeActive, StartTime: start})
	}
	// Masters and replicas go round the nodes, a replica on the node
	// after its master's.
	next := 0
	for db := 1; next < shards; db++ {
		placement := make([]int, 0, 2*scaleShardsPerDB)
		for range scaleShardsPerDB {
			placement = append(placement, next%scaleNodes+1, (next+1)%scaleNodes+1)
			next += 2
		}
		apply(&fsm.CreateBDB{BDB: fsm.BDB{Name: fmt.Sprintf("db%d", db), MemorySize: scaleShardsPerDB << 20,
			ShardsCount: scaleShardsPerDB, Replication: true, DataPersistence: fsm.PersistenceDisabled},
			Placement: placement, EndpointNode: placement[0]})
	}
	e.replaceState(func(st *fsm.State) {
		ids := st.ShardUIDs()
		for uid := 1; uid <= scaleNodes; uid++ {
			for i, name := range []string{fsm.ActionRemove, fsm.ActionMaintenanceOn, fsm.ActionMaintenanceOff, fsm.ActionEnslaveNode} {
				a := &fsm.Action{TaskID: fmt.Sprintf("task-%d-%d", uid, i), Action: name, NodeUID: uid,
					Status: fsm.StatusCompleted, CreationTime: 1_700_000_000, StartTime: 1_700_000_001, EndTime: 1_700_000_100,
					Deadline: 1_700_000_600, TimeoutMS: 600_000, Done: scaleStepsPerAct, Term: 1}
				if name == fsm.ActionRemove {
					a.Status, a.ErrorCode, a.ErrorMessage, a.Done = fsm.StatusFailed, "no_home", "no node can take shard 1", 3
				}
				for j := range scaleStepsPerAct {
					a.Steps = append(a.Steps, fsm.Step{Kind: fsm.StepMove, Shard: ids[(uid*scaleStepsPerAct+j)%len(ids)],
						From: uid, To: uid%scaleNodes + 1})
				}
				for j := range fsm.MaxEvents {
					a.Events = append(a.Events, fsm.Event{Time: 1_700_000_001 + int64(j), Message: fmt.Sprintf("step %d of %d done", j, fsm.MaxEvents)})
				}
				if st.Actions == nil {
					st.Actions = map[int]map[string]*fsm.Action{}
				}
				if st.Actions[uid] == nil {
					st.Actions[uid] = map[string]*fsm.Action{}
				}
				st.Actions[uid][name] = a
			}
		}
	})
	e.modelBytes = heapInUse() - before
	return e
}

// get benchmarks one read as admin, checking its answer once.
func (e *scaleEnv) get(b *testing.B, target string) {
	w := e.call("admin", "GET", target, "")
	if w.Code != http.StatusOK {
		b.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
	}
	b.SetBytes(int64(w.Body.Len()))
	for b.Loop() {
		// A recorder would time its own copying of the answer; a socket
		// takes the bytes as they come.
		var d discard
		e.h.ServeHTTP(&d, e.request("admin", "GET", target, ""))
		if d.status != http.StatusOK || d.n != w.Body.Len() {
			b.Fatalf("GET %s: %d, %d bytes, want 200 and %d", target, d.status, d.n, w.Body.Len())
		}
	}
}

// discard is a ResponseWriter that only counts what it is given.
type discard struct {
	h      http.Header
	status int
	n      int
}

func (d *discard) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}

func (d *discard) WriteHeader(status int) {
	if d.status == 0 {
		d.status = status
	}
}

func (d *discard) Write(p []byte) (int, error) {
	d.WriteHeader(http.StatusOK)
	d.n += len(p)
	return len(p), nil
}

// plan benchmarks a dry run of action on node, which must answer want.
func (e *scaleEnv) plan(b *testing.B, node int, action string, want int) {
	target := fmt.Sprintf("/v1/nodes/%d/actions/%s?dry_run=true", node, action)
	if w := e.call("admin", "POST", target, ""); w.Code != want {
		b.Fatalf("POST %s: %d %s, want %d", target, w.Code, w.Body, want)
	}
	for b.Loop() {
		e.call("admin", "POST", target, "")
	}
}

// BenchmarkScale measures the API, the planner, snapshots and log replay
// on models of 1k, 10k and 100k shards (make bench plots the curves).
func BenchmarkScale(b *testing.B) {
	for _, n := range scaleSizes {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) { benchScale(b, n) })
	}
}

func benchScale(b *testing.B, n int) {
	e := newScaleEnv(b, n)
	run := func(op string, fn func(b *testing.B)) { b.Run(op, fn) }
	{
		run("get_shards", func(b *testing.B) { e.get(b, "/v1/shards") })
		run("get_nodes", func(b *testing.B) { e.get(b, "/v1/nodes") })
		run("get_node", func(b *testing.B) { e.get(b, "/v1/nodes/2") })
		run("get_bdbs", func(b *testing.B) { e.get(b, "/v1/bdbs") })
		run("get_actions", func(b *testing.B) { e.get(b, "/v1/nodes/actions") })
		run("plan_maintenance_on", func(b *testing.B) { e.plan(b, 2, fsm.ActionMaintenanceOn, http.StatusOK) })
		run("plan_enslave_node", func(b *testing.B) { e.plan(b, 2, fsm.ActionEnslaveNode, http.StatusOK) })
		run("snapshot_restore", func(b *testing.B) {
			for b.Loop() {
				snap, err := e.fsm.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				var sink memSink
				if err := snap.Persist(&sink); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(sink.Len()))
				if err := fsm.New().Restore(io.NopCloser(&sink.Buffer)); err != nil {
					b.Fatal(err)
				}
			}
		})
		run("log_replay", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				f := fsm.New()
				bootstrap(b, f, 4)
				b.StartTimer()
				for i, cmd := range e.log {
					res := f.Apply(&raft.Log{Index: uint64(i + 2), Term: 1, Type: raft.LogCommand, Data: cmd}).(*fsm.Result)
					if res.Err != nil {
						b.Fatalf("replay entry %d: %v", i+2, res.Err)
					}
				}
			}
			b.ReportMetric(float64(len(e.log)+1), "entries")
		})
		run("memory", func(b *testing.B) {
			for b.Loop() {
			}
			b.ReportMetric(float64(e.modelBytes)/(1<<20), "model-MiB")
			b.ReportMetric(vmRSS(b)/(1<<20), "rss-MiB")
		})
	}
}

// TestScaleHarness keeps the harness honest in make test: the smallest
// model holds what it claims, and its reads and plans answer as they
// should (no timing is asserted).
func TestScaleHarness(t *testing.T) {
	e := newScaleEnv(t, scaleSizes[0])
	var shards []shardJSON
	e.getJSON("admin", "/v1/shards", &shards)
	if len(shards) != scaleSizes[0] {
		t.Fatalf("model holds %d shards, want %d", len(shards), scaleSizes[0])
	}
	if nodes := e.listNodes(); len(nodes) != scaleNodes {
		t.Fatalf("model holds %d nodes, want %d", len(nodes), scaleNodes)
	}
	w := e.call("admin", "GET", "/v1/nodes/actions", "")
	if w.Code != http.StatusOK || bytes.Count(w.Body.Bytes(), []byte(`"task_id"`)) != 4*scaleNodes {
		t.Fatalf("GET /v1/nodes/actions: %d, %d records, want %d", w.Code, bytes.Count(w.Body.Bytes(), []byte(`"task_id"`)), 4*scaleNodes)
	}
	for _, action := range []string{fsm.ActionMaintenanceOn, fsm.ActionEnslaveNode} {
		if w := e.call("admin", "POST", "/v1/nodes/2/actions/"+action+"?dry_run=true", ""); w.Code != http.StatusOK {
			t.Fatalf("dry run of %s: %d %s", action, w.Code, w.Body)
		}
	}
}
