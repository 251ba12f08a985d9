package main

// The data drill: with redis shards, writers write keys through each
// database's endpoint while the nemeses strike and the workload's actions
// move shards about; at the end every acknowledged key must read back
// with its value. A write counts as acknowledged only once the database's
// promise covers it: for a replicated database WAIT 1 on the connection
// that wrote it answered at least 1 (the master and a replica have it),
// for one without replication the master's OK.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	backendRedis = "redis"
	backendFile  = "file"
)

// dbSpec is one database of the drill.
type dbSpec struct {
	name        string
	shards      int
	memory      int64
	replication bool
	persistence string
}

// drillDBs are the databases the drill makes: replicated with snapshots
// (the one the shard checks have always counted), replicated with an
// append-only file, and one without replication.
var drillDBs = []dbSpec{
	{name: "demo", shards: 6, memory: 6 << 30, replication: true, persistence: "snapshot"},
	{name: "aof", shards: 2, memory: 2 << 30, replication: true, persistence: "aof"},
	{name: "plain", shards: 2, memory: 2 << 30, replication: false, persistence: "disabled"},
}

// dbState is a database made by the drill: its uid, its endpoint's
// address as last read, and what was written to it.
type dbState struct {
	spec dbSpec
	uid  int
	mu   sync.Mutex
	addr string // host:port; "" before the first read
	log  ackLog
	// refresh asks the resolver to read the endpoint again now.
	refresh chan struct{}
}

func (d *dbState) endpoint() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

func (d *dbState) kick() {
	select {
	case d.refresh <- struct{}{}:
	default:
	}
}

// ackLog is the accounting of one database's writes: every key is
// written once, with a value of its own, and ends acknowledged or with an
// unknown outcome (error, timeout, WAIT 0: it may or may not be there).
type ackLog struct {
	acked   map[string]ackedWrite
	acks    []ackAt // every acknowledgement, in the order recorded
	unknown map[string]string
}

// ackAt is when an acknowledgement came (ns of the wall clock) and the
// slot of its key, so that a shard's own gaps can be told.
type ackAt struct {
	at   int64
	slot int
}

// ackedWrite is an acknowledged key's value and when it was acknowledged.
type ackedWrite struct {
	value string
	at    int64
}

func (l *ackLog) record(key, value string, acked bool, at int64) {
	if l.acked == nil {
		l.acked, l.unknown = map[string]ackedWrite{}, map[string]string{}
	}
	if acked {
		l.acked[key] = ackedWrite{value, at}
		l.acks = append(l.acks, ackAt{at, keySlot(key)})
		return
	}
	l.unknown[key] = value
}

// sorted are the acknowledgements in time order (writers append
// concurrently).
func (l *ackLog) sorted() []ackAt {
	a := slices.Clone(l.acks)
	slices.SortFunc(a, func(x, y ackAt) int { return cmp.Compare(x.at, y.at) })
	return a
}

// writeAcked decides a write's outcome from what its connection answered:
// SET, then (replicated) WAIT 1. Only an OK and, with replication, a WAIT
// counting a replica acknowledge it.
func writeAcked(replicated bool, setErr error, waitN int64, waitErr error) bool {
	if setErr != nil {
		return false
	}
	if !replicated {
		return true
	}
	return waitErr == nil && waitN >= 1
}

// readVerdict compares an acknowledged key read back with what was
// written: "" when it holds its value, else why it is lost.
func readVerdict(want, got string, found bool) string {
	switch {
	case !found:
		return "absent"
	case got != want:
		return fmt.Sprintf("holds %q, not %q", got, want)
	}
	return ""
}

// waitTimeout is WAIT's timeout in ms: a replica that does not
// acknowledge within it leaves the write's outcome unknown.
const waitTimeout = 1000

// The writers' failures are counted, not logged: go-redis would print a
// line for every refused dial.
func init() { redis.SetLogger(&logging.VoidLogger{}) }

func redisClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1, DialerRetries: 1,
		// Above the proxy's hold of a switching slot (2 s) and WAIT's
		// own timeout.
		DialTimeout: time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 2 * time.Second,
		ContextTimeoutEnabled:    true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// createDBs makes the drill's databases and records them in c.dbs.
func (c *cluster) createDBs(ctx context.Context) error {
	if st, b, err := c.do(ctx, c.node(1), "PUT", "/v1/cluster/policy", map[string]string{"default_shards_placement": "sparse"}); err != nil || st != 200 {
		return fmt.Errorf("policy: %v %d %s", err, st, b)
	}
	for _, s := range drillDBs {
		st, b, err := c.do(ctx, c.node(1), "POST", "/v1/bdbs", map[string]any{"name": s.name, "memory_size": s.memory,
			"shards_count": s.shards, "replication": s.replication, "data_persistence": s.persistence})
		if err != nil || st != 200 {
			return fmt.Errorf("create %s: %v %d %s", s.name, err, st, b)
		}
		var v struct {
			UID int `json:"uid"`
		}
		if err := json.Unmarshal(b, &v); err != nil || v.UID == 0 {
			return fmt.Errorf("create %s: no uid in %s", s.name, b)
		}
		c.dbs = append(c.dbs, &dbState{spec: s, uid: v.UID, refresh: make(chan struct{}, 1)})
	}
	return nil
}

// resolveEndpoint reads the database's endpoint through the running nodes
// in turn until one answers.
func (c *cluster) resolveEndpoint(ctx context.Context, d *dbState) (string, error) {
	var last error = errors.New("no node runs")
	for _, n := range c.running() {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, b, err := c.do(rctx, n, "GET", fmt.Sprintf("/v1/bdbs/%d", d.uid), nil)
		cancel()
		if err != nil || st != 200 {
			last = fmt.Errorf("db %d through node %d: %v %d", d.uid, n.uid, err, st)
			continue
		}
		var v struct {
			Endpoints []struct {
				Addr []string `json:"addr"`
				Port int      `json:"port"`
			} `json:"endpoints"`
		}
		if err := json.Unmarshal(b, &v); err != nil || len(v.Endpoints) == 0 || len(v.Endpoints[0].Addr) == 0 {
			last = fmt.Errorf("db %d through node %d: no endpoint address in %s", d.uid, n.uid, b)
			continue
		}
		return net.JoinHostPort(v.Endpoints[0].Addr[0], strconv.Itoa(v.Endpoints[0].Port)), nil
	}
	return "", last
}

// resolver keeps d.addr current: every half second, and at once when a
// writer's connection failed.
func (c *cluster) resolver(ctx context.Context, d *dbState) {
	for ctx.Err() == nil {
		if addr, err := c.resolveEndpoint(ctx, d); err == nil {
			d.mu.Lock()
			d.addr = addr
			d.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-d.refresh:
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// dataRun is the writers' side of a run.
type dataRun struct {
	start, stop int64 // when the writers started and stopped, ns
}

// startWriters waits until every database takes an acknowledged write,
// then runs writers per database until the returned stop is called.
func (c *cluster) startWriters(ctx context.Context, perDB int, seed uint64) (stop func(), err error) {
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, d := range c.dbs {
		wg.Add(1)
		go func() { defer wg.Done(); c.resolver(wctx, d) }()
	}
	for _, d := range c.dbs {
		if err := c.waitWritable(ctx, d); err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
	}
	c.data = &dataRun{start: time.Now().UnixNano()}
	for i, d := range c.dbs {
		for w := range perDB {
			rng := rand.New(rand.NewPCG(seed, uint64(i*100+w)))
			wg.Add(1)
			go func() { defer wg.Done(); c.writer(wctx, d, w, rng) }()
		}
	}
	return func() {
		cancel()
		wg.Wait()
		c.data.stop = time.Now().UnixNano()
	}, nil
}

// waitWritable waits until a probe key written through the database's
// endpoint is acknowledged.
func (c *cluster) waitWritable(ctx context.Context, d *dbState) error {
	return poll(ctx, 60*time.Second, func() error {
		addr := d.endpoint()
		if addr == "" {
			d.kick()
			return fmt.Errorf("db %s: endpoint not known yet", d.spec.name)
		}
		cl := redisClient(addr)
		defer cl.Close()
		cn := cl.Conn()
		defer cn.Close()
		setErr := cn.Set(ctx, "drill:probe", "1", 0).Err()
		var n int64
		var waitErr error
		if setErr == nil && d.spec.replication {
			n, waitErr = cn.Do(ctx, "WAIT", 1, waitTimeout).Int64()
		}
		if !writeAcked(d.spec.replication, setErr, n, waitErr) {
			d.kick()
			return fmt.Errorf("db %s at %s takes no acknowledged write yet: SET %v, WAIT %d %v", d.spec.name, addr, setErr, n, waitErr)
		}
		return nil
	})
}

// writer writes keys of its own, each once, through d's endpoint where it
// is now, one after another with a short pause, until ctx ends. A
// connection that failed is dropped and the endpoint read again.
func (c *cluster) writer(ctx context.Context, d *dbState, id int, rng *rand.Rand) {
	var cl *redis.Client
	var cn *redis.Conn
	var at string
	drop := func() {
		if cn != nil {
			cn.Close()
			cl.Close()
		}
		cl, cn, at = nil, nil, ""
	}
	defer drop()
	// The writes themselves are not cut by the end of the run: a write cut
	// half way would be an unknown outcome made by the drill.
	wctx := context.WithoutCancel(ctx)
	for seq := 1; ctx.Err() == nil; seq++ {
		if addr := d.endpoint(); cn == nil || addr != at {
			drop()
			if addr == "" {
				d.kick()
				pauseCtx(ctx, 50*time.Millisecond)
				continue
			}
			cl = redisClient(addr)
			cn, at = cl.Conn(), addr
		}
		key := fmt.Sprintf("db%d:w%d:%d", d.uid, id, seq)
		value := fmt.Sprintf("%s:%016x", key, rng.Uint64())
		setErr := cn.Set(wctx, key, value, 0).Err()
		var n int64
		var waitErr error
		if setErr == nil && d.spec.replication {
			n, waitErr = cn.Do(wctx, "WAIT", 1, waitTimeout).Int64()
		}
		acked := writeAcked(d.spec.replication, setErr, n, waitErr)
		now := time.Now().UnixNano()
		d.mu.Lock()
		d.log.record(key, value, acked, now)
		d.mu.Unlock()
		if setErr != nil || waitErr != nil {
			// The connection's state is unknown: a new one, to where the
			// endpoint is now.
			drop()
			d.kick()
			pauseCtx(ctx, 20*time.Millisecond)
			continue
		}
		pauseCtx(ctx, time.Duration(5+rng.IntN(20))*time.Millisecond)
	}
}

func pauseCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// dbReport is what reading a database back found.
type dbReport struct {
	acked, unknown int
	unknownWritten int         // unknown outcomes found written (with their value)
	lost           []lostWrite // acknowledged keys gone or changed
	unread         int         // keys that could not be read back in time
	readErr        error
}

// lostWrite is a key that did not read back as written.
type lostWrite struct {
	key, why string
	at       int64 // when it was acknowledged; 0 for an unknown outcome
}

// readBack reads every key written to d through its endpoint and compares
// it with what was written: an acknowledged key must hold its value.
func (c *cluster) readBack(ctx context.Context, d *dbState) dbReport {
	d.mu.Lock()
	acked, unknown := d.log.acked, d.log.unknown
	d.mu.Unlock()
	r := dbReport{acked: len(acked), unknown: len(unknown)}
	keys := make([]string, 0, len(acked)+len(unknown))
	for k := range acked {
		keys = append(keys, k)
	}
	for k := range unknown {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	refresh := func() {
		if addr, err := c.resolveEndpoint(ctx, d); err == nil {
			d.mu.Lock()
			d.addr = addr
			d.mu.Unlock()
		}
	}
	refresh()
	deadline := time.Now().Add(3 * time.Minute)
	for len(keys) > 0 {
		batch := keys[:min(500, len(keys))]
		got, err := c.readBatch(ctx, d, batch)
		if err != nil {
			if time.Now().After(deadline) || ctx.Err() != nil {
				r.unread, r.readErr = len(keys), err
				return r
			}
			// The resolver stopped with the writers: read the endpoint
			// here.
			refresh()
			pauseCtx(ctx, 200*time.Millisecond)
			continue
		}
		for _, k := range batch {
			v, found := got[k]
			if want, ok := acked[k]; ok {
				if why := readVerdict(want.value, v, found); why != "" {
					r.lost = append(r.lost, lostWrite{key: k, why: why, at: want.at})
				}
				continue
			}
			switch why := readVerdict(unknown[k], v, found); {
			case why == "":
				r.unknownWritten++
			case found:
				// Written once with its own value: any other value is a
				// write from nowhere.
				r.lost = append(r.lost, lostWrite{key: k, why: "(an unknown outcome) " + why})
			}
		}
		keys = keys[len(batch):]
	}
	return r
}

// readBatch GETs keys through d's endpoint, pipelined; found keys map to
// their values.
func (c *cluster) readBatch(ctx context.Context, d *dbState, keys []string) (map[string]string, error) {
	addr := d.endpoint()
	if addr == "" {
		return nil, errors.New("endpoint not known")
	}
	cl := redisClient(addr)
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	pipe := cl.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(rctx, k)
	}
	_, _ = pipe.Exec(rctx)
	out := make(map[string]string, len(keys))
	for i, cmd := range cmds {
		v, err := cmd.Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, fmt.Errorf("GET %s at %s: %w", keys[i], addr, err)
		default:
			out[keys[i]] = v
		}
	}
	return out, nil
}
