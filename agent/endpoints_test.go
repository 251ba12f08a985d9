package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cnm/agent"
	"cnm/agent/proxy"
	"cnm/fsm"
)

// endpointNode is one node of an endpoint test: a peer serving the agent
// API over mutual TLS on a redis backend, and an agent on the same backend
// and state that runs (reconciles and hosts endpoints) on its own.
type endpointNode struct {
	*peer
	b    *agent.RedisBackend
	run  *agent.Agent
	stop func() // ends run
}

// startAgent makes an agent and runs it until stop or the test's end.
func startAgent(t *testing.T, cfg agent.Config) (a *agent.Agent, stop func()) {
	t.Helper()
	a = agent.New(cfg)
	return a, runAgent(t, a)
}

// endpointCluster starts nodes 1 and 2 on their own loopback hosts, so
// that both can listen on a database's endpoint port, and a 2-shard
// replicated database whose masters and endpoint are on node 1.
func endpointCluster(t *testing.T, log1 *slog.Logger) (l *stateLog, n1, n2 *endpointNode) {
	t.Helper()
	ca := newCA(t)
	l = &stateLog{f: fsm.New()}
	nodes := make([]*endpointNode, 2)
	for i, host := range []string{"127.0.0.1", "127.0.0.2"} {
		b := newRedisBackend(t, redisOpts{host: host})
		p := startPeer(t, ca, i+1, host, peerOpts{fsm: l.f, backend: b})
		nodes[i] = &endpointNode{peer: p, b: b}
	}
	n1, n2 = nodes[0], nodes[1]
	fn1, fn2 := testNode(1), testNode(2)
	fn1.Addr, fn1.APIAddr = "127.0.0.1", n1.addr
	fn2.Addr, fn2.APIAddr = "127.0.0.2", n2.addr
	l.apply(t, &fsm.Bootstrap{
		Cluster: fsm.ClusterInfo{Name: "agent-test", CreatedAt: 1700000000},
		Node:    fn1,
		Admin:   fsm.User{Email: "admin@cnm.local", Name: "Admin", PasswordHash: "$2a$10$x"},
	})
	l.apply(t, &fsm.AddNode{Node: fn2})
	l.createBDB(t, fsm.BDB{Name: "orders", MemorySize: 64 << 20, ShardsCount: 2, Replication: true,
		DataPersistence: fsm.PersistenceDisabled}, []int{1, 2, 1, 2})
	for i, n := range nodes {
		var log *slog.Logger
		if i == 0 {
			log = log1
		}
		n.run, n.stop = startAgent(t, agent.Config{NodeUID: n.uid, FSM: l.f, Backend: n.b, Client: n.http,
			APIAddr: n.addr, Resync: 100 * time.Millisecond, Endpoints: true, Logger: log})
	}
	return l, n1, n2
}

// keyIn returns a key whose slot is in the ranges the state wrote.
func keyIn(t *testing.T, prefix, slots string) string {
	t.Helper()
	ranges, err := proxy.ParseSlotRanges(slots)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100000 {
		k := prefix + strconv.Itoa(i)
		if s := proxy.Slot([]byte(k)); s >= ranges[0].Start && s <= ranges[0].End {
			return k
		}
	}
	t.Fatalf("no key in %s", slots)
	return ""
}

// tableIs waits until node n's endpoint routes each shard uid's slots to
// that shard's process on its node.
func tableIs(t *testing.T, n *endpointNode, masters map[string]*endpointNode) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		ep, ok := n.run.Endpoints()["1:1"]
		if !ok {
			return errors.New("no endpoint proxy")
		}
		got := map[string]string{}
		for _, sh := range ep.Shards {
			got[sh.ID] = sh.Master
		}
		for uid, on := range masters {
			info, err := on.b.Info(uid)
			if err != nil || info.Port == 0 {
				return fmt.Errorf("shard %s: %+v, %v", uid, info, err)
			}
			host, _, _ := net.SplitHostPort(on.addr)
			if want := net.JoinHostPort(host, strconv.Itoa(info.Port)); got[uid] != want {
				return fmt.Errorf("table %v, want shard %s at %s", got, uid, want)
			}
		}
		if len(got) != len(masters) {
			return fmt.Errorf("table %v, want %d masters", got, len(masters))
		}
		return nil
	})
}

// setThrough writes through the endpoint until the write is on the
// shard's process: during a switch-over a write may land on the master
// that is about to be dropped.
func setThrough(t *testing.T, c *redis.Client, n *endpointNode, uid, key, val string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		if err := c.Set(t.Context(), key, val, 0).Err(); err != nil {
			return fmt.Errorf("SET %s through the endpoint: %w", key, err)
		}
		if got, _ := dialAddr(t, nodeShardAddr(t, n, uid)).Get(t.Context(), key).Result(); got != val {
			return fmt.Errorf("shard %s has %s=%q, want %q", uid, key, got, val)
		}
		return nil
	})
}

func nodeShardAddr(t *testing.T, n *endpointNode, uid string) string {
	t.Helper()
	host, _, _ := net.SplitHostPort(n.addr)
	return net.JoinHostPort(host, strconv.Itoa(redisInfo(t, n.b, uid).Port))
}

// replicated waits until the replica uid on n has key.
func replicated(t *testing.T, n *endpointNode, uid, key, val string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		info, err := n.b.Info(uid)
		if err != nil || !info.InSync {
			return fmt.Errorf("replica %s: %+v, %v", uid, info, err)
		}
		if got, _ := dialAddr(t, nodeShardAddr(t, n, uid)).Get(t.Context(), key).Result(); got != val {
			return fmt.Errorf("replica %s has %s=%q", uid, key, got)
		}
		return nil
	})
}

func TestEndpointRoutesByShardFollowsFailoversAndMovesWithTheMasters(t *testing.T) {
	l, n1, n2 := endpointCluster(t, nil)
	tableIs(t, n1, map[string]*endpointNode{"1": n1, "3": n1})
	if eps := n2.run.Endpoints(); len(eps) != 0 {
		t.Fatalf("node 2 runs endpoints %v; the state binds none there", eps)
	}
	var s1, s3 string
	l.f.Read(func(st *fsm.State, _ uint64) { s1, s3 = st.Shards["1"].AssignedSlots, st.Shards["3"].AssignedSlots })
	ka, kb := keyIn(t, "a", s1), keyIn(t, "b", s3)
	c := dialAddr(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(fsm.EndpointPort(1))))
	setThrough(t, c, n1, "1", ka, "1")
	setThrough(t, c, n1, "3", kb, "1")
	if n, _ := client(t, n1.b, "1").Exists(t.Context(), kb).Result(); n != 0 {
		t.Errorf("%s, of shard 3's slots, is on shard 1 too", kb)
	}
	if got, err := c.Get(t.Context(), ka).Result(); err != nil || got != "1" {
		t.Errorf("GET %s through the endpoint: %q, %v", ka, got, err)
	}
	replicated(t, n2, "2", ka, "1")
	replicated(t, n2, "4", kb, "1")

	// Shard 1 fails over to its replica on node 2; node 1 keeps a master,
	// so the endpoint stays, routing shard 1's slots to node 2.
	failOverBoth(t, l)
	l.apply(t, &fsm.StepDone{TaskID: "f", Term: 3, Index: 0, Time: 1})
	tableIs(t, n1, map[string]*endpointNode{"2": n2, "3": n1})
	setThrough(t, c, n2, "2", ka, "2")
	if got, err := c.Get(t.Context(), kb).Result(); err != nil || got != "1" {
		t.Errorf("GET %s of the shard that stayed: %q, %v", kb, got, err)
	}
	replicated(t, n1, "3", kb, "1")
	replicated(t, n2, "4", kb, "1")

	// Shard 3 fails over too: node 1 hosts no master, the state moves the
	// endpoint to node 2, whose proxy starts while node 1's stops.
	l.apply(t, &fsm.StepDone{TaskID: "f", Term: 3, Index: 1, Time: 2})
	tableIs(t, n2, map[string]*endpointNode{"2": n2, "4": n2})
	c2 := dialAddr(t, net.JoinHostPort("127.0.0.2", strconv.Itoa(fsm.EndpointPort(1))))
	setThrough(t, c2, n2, "4", kb, "2")
	eventually(t, 10*time.Second, func() error {
		if eps := n1.run.Endpoints(); len(eps) != 0 {
			return fmt.Errorf("node 1 still runs %v", eps)
		}
		nc, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(fsm.EndpointPort(1))), time.Second)
		if err == nil {
			nc.Close()
			return errors.New("node 1 still listens on the endpoint")
		}
		return nil
	})
}

func TestFileBackendRunsNoEndpoint(t *testing.T) {
	l := newClusterState(t)
	b, _ := newBackend(t, nil)
	l.createBDB(t, fsm.BDB{Name: "orders", MemorySize: 1 << 20, ShardsCount: 1,
		DataPersistence: fsm.PersistenceDisabled}, []int{1})
	a, _ := startAgent(t, agent.Config{NodeUID: 1, FSM: l.f, Backend: b, Resync: 50 * time.Millisecond})
	eventually(t, 10*time.Second, func() error {
		if got := listShards(t, b); len(got) != 1 {
			return fmt.Errorf("shards %v, want the database's one", got)
		}
		return nil
	})
	if eps := a.Endpoints(); len(eps) != 0 {
		t.Errorf("endpoints %v on a file backend", eps)
	}
	host, _, _ := net.SplitHostPort(testNode(1).APIAddr)
	if nc, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(fsm.EndpointPort(1))), time.Second); err == nil {
		nc.Close()
		t.Errorf("something listens on the endpoint of a node without endpoint proxies")
	}
}

// failOverBoth plans failing node 1's masters (shards 1 and 3) over to
// their replicas; each StepDone then does one.
func failOverBoth(t *testing.T, l *stateLog) {
	t.Helper()
	l.apply(t, &fsm.SubmitAction{Action: fsm.Action{TaskID: "f", Action: fsm.ActionMaintenanceOn, NodeUID: 1, Deadline: 1 << 40}, By: "test"})
	l.apply(t, &fsm.ClaimAction{TaskID: "f", Term: 3, Leader: 1})
	l.apply(t, &fsm.PlanAction{TaskID: "f", Term: 3, Steps: []fsm.Step{
		{Kind: fsm.StepFailover, Shard: "1"}, {Kind: fsm.StepFailover, Shard: "3"}}})
}

// countHandler counts log records by message.
type countHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n[r.Message]++
	return nil
}

func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

func (h *countHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[msg]
}

func TestEndpointKeepsTheLastMasterOfANodeThatDoesNotAnswer(t *testing.T) {
	logs := &countHandler{n: map[string]int{}}
	l, n1, n2 := endpointCluster(t, slog.New(logs))
	failOverBoth(t, l)
	l.apply(t, &fsm.StepDone{TaskID: "f", Term: 3, Index: 0, Time: 1})
	tableIs(t, n1, map[string]*endpointNode{"2": n2, "3": n1})
	before := n1.run.Endpoints()["1:1"].Shards
	const warning = "endpoint routing table not fully resolved; unresolved slots keep their last known master"
	// Masters not started yet when the endpoint first looked were warned of.
	warned := logs.count(warning)

	// Node 2's API goes away; in its place a listener that refuses every
	// call counts how often node 1 asks.
	n2.srv.Close()
	ln, err := net.Listen("tcp", n2.addr)
	if err != nil {
		t.Fatalf("listen in node 2's place: %v", err)
	}
	var asked atomic.Int64
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			asked.Add(1)
			nc.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	eventually(t, 10*time.Second, func() error {
		if logs.count(warning) == warned || asked.Load() < 20 {
			return fmt.Errorf("warned %d times, node 2 asked %d times", logs.count(warning), asked.Load())
		}
		return nil
	})
	if n := logs.count(warning) - warned; n != 1 {
		t.Errorf("warned %d times about the same unresolved master, want once", n)
	}
	if got := n1.run.Endpoints()["1:1"].Shards; fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("table %v, want the last resolved %v", got, before)
	}
}

func TestEndpointStopsWithItsAgent(t *testing.T) {
	_, n1, _ := endpointCluster(t, nil)
	tableIs(t, n1, map[string]*endpointNode{"1": n1, "3": n1})
	n1.stop()
	if nc, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(fsm.EndpointPort(1))), time.Second); err == nil {
		nc.Close()
		t.Errorf("the endpoint still listens after its agent stopped")
	}
}

// A rebound endpoint's old proxy serves on until the proxy at its new
// address answers, so that clients always find one of the two.
func TestEndpointRebindKeepsTheOldProxyUntilTheNewOneAnswers(t *testing.T) {
	l, n1, n2 := endpointCluster(t, nil)
	tableIs(t, n1, map[string]*endpointNode{"1": n1, "3": n1})
	oldAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(fsm.EndpointPort(1)))
	newAddr := net.JoinHostPort("127.0.0.2", strconv.Itoa(fsm.EndpointPort(1)))
	// Node 2 runs no endpoint loop: the proxy there cannot start.
	n2.stop()
	failOverBoth(t, l)
	l.apply(t, &fsm.StepDone{TaskID: "f", Term: 3, Index: 0, Time: 1})
	l.apply(t, &fsm.StepDone{TaskID: "f", Term: 3, Index: 1, Time: 2})
	eventually(t, 10*time.Second, func() error {
		if eps := n1.run.Endpoints(); len(eps) != 0 {
			return fmt.Errorf("node 1 still counts %v as its own", eps)
		}
		return nil
	})
	old := dialAddr(t, oldAddr)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for range 15 {
		if err := old.Ping(t.Context()).Err(); err != nil {
			t.Fatalf("node 1's proxy stopped while no new one answers: %v", err)
		}
		<-tick.C
	}

	n2.run, n2.stop = startAgent(t, agent.Config{NodeUID: n2.uid, FSM: l.f, Backend: n2.b, Client: n2.http,
		APIAddr: n2.addr, Resync: 100 * time.Millisecond, Endpoints: true})
	eventually(t, 20*time.Second, func() error {
		if err := dialAddr(t, newAddr).Ping(t.Context()).Err(); err != nil {
			return fmt.Errorf("node 2's proxy: %w", err)
		}
		nc, err := net.DialTimeout("tcp", oldAddr, time.Second)
		if err == nil {
			nc.Close()
			return errors.New("node 1 still listens on the endpoint")
		}
		return nil
	})
}
