package clustertest_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cnm/daemon/clustertest"
	"cnm/raftnode"
)

// BenchmarkAPI is cnm's side of the comparison with raftnode's
// BenchmarkRawRaft (docs/BENCHMARKS.md): three in-process nodes with the
// product's raft timing, HTTPS with keep-alive clients, PUT
// /v1/cluster/policy as the cheapest write (one raft entry) and GET
// /v1/nodes/actions as the read.
func BenchmarkAPI(b *testing.B) {
	c := clustertest.Start(b, 3, benchOptions())
	leader := c.Leader(30 * time.Second)
	follower := 1
	for _, uid := range c.UIDs() {
		if uid != leader {
			follower = uid
			break
		}
	}
	client := benchClient()
	var flip atomic.Uint64
	call := func(uid int, method, path string, write bool) error {
		var body string
		if write {
			body = fmt.Sprintf(`{"rack_aware":%t}`, flip.Add(1)%2 == 0)
		}
		return apiCall(client, method, "https://"+c.Member(uid).Cfg.APIAddr+path, body)
	}
	write := func(uid int) func() error {
		return func() error { return call(uid, "PUT", "/v1/cluster/policy", true) }
	}
	read := func(uid int, query string) func() error {
		return func() error { return call(uid, "GET", "/v1/nodes/actions"+query, false) }
	}
	seq := func(op func() error) func(b *testing.B) {
		return func(b *testing.B) {
			if err := op(); err != nil { // the connection is open before timing starts
				b.Fatal(err)
			}
			ds := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t := time.Now()
				if err := op(); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(t))
			}
			reportLatency(b, ds)
		}
	}
	// A write through the follower, each next to one through the leader
	// (in turns, so that neither always goes first): what the forward adds
	// is measured at the same moments, not a benchmark apart.
	pair := func(lead, fol func() error) func(b *testing.B) {
		return func(b *testing.B) {
			if err := errors.Join(lead(), fol()); err != nil {
				b.Fatal(err)
			}
			var leads, fols []time.Duration
			timed := func(op func() error, ds *[]time.Duration) {
				t := time.Now()
				if err := op(); err != nil {
					b.Fatal(err)
				}
				*ds = append(*ds, time.Since(t))
			}
			for i := 0; b.Loop(); i++ {
				inTurns(i, func() { timed(lead, &leads) }, func() { timed(fol, &fols) })
			}
			reportLatency(b, fols)
			b.ReportMetric(ms(p50(fols)-p50(leads)), "extra-ms")
		}
	}
	par := func(op func() error) func(b *testing.B) {
		return func(b *testing.B) { parallel(b, 16, op) }
	}
	b.Run("write_seq_leader", seq(write(leader)))
	b.Run("write_seq_follower", pair(write(leader), write(follower)))
	b.Run("write_16_leader", par(write(leader)))
	b.Run("read_seq_leader", seq(read(leader, "")))
	b.Run("read_16_stale_leader", par(read(leader, "?stale=true")))
	b.Run("read_16_leader", par(read(leader, "")))
	// Through the follower in rounds that take turns with the leader's, so
	// that the ratio is of the same moments.
	b.Run("read_16_follower", func(b *testing.B) { parallelPair(b, 16, read(leader, ""), read(follower, "")) })
	// The ceiling of a read that raft has no part in: a bare Go HTTPS
	// server answering the same clients, in rounds that take turns with
	// the leader's stale reads.
	bare := bareServer(b)
	b.Run("read_16_stale_bare", func(b *testing.B) {
		parallelPair(b, 16, func() error { return apiCall(client, "GET", bare+"/v1/nodes/actions", "") }, read(leader, "?stale=true"))
	})
}

// bareServer starts a Go HTTPS server whose handler reads the body and
// answers a short JSON object, and returns its URL: what one HTTPS round
// trip costs here, before any work.
func bareServer(b *testing.B) string {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"rack_aware":true}`)
	}))
	srv.StartTLS()
	b.Cleanup(srv.Close)
	return srv.URL
}

// benchClient is the benchmarks' HTTPS client: keep-alive connections,
// enough idle ones for 16 workers and more.
func benchClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // benchmark client, like curl -k
		MaxIdleConnsPerHost: 64,
	}}
}

// apiCall makes one request as the admin, with body when it is not empty,
// reads the answer to the end and wants a 200.
func apiCall(client *http.Client, method, url, body string) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(clustertest.AdminUser, clustertest.AdminPassword)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d", method, url, resp.StatusCode)
	}
	return nil
}

// benchOptions are the product's raft timing, checkpoints and consistency
// checks, rather than the tests' faster ones.
func benchOptions() clustertest.Options {
	return clustertest.Options{
		Raft: raftnode.Config{HeartbeatTimeout: raftnode.DefaultHeartbeatTimeout, ElectionTimeout: raftnode.DefaultElectionTimeout,
			LeaderLeaseTimeout: raftnode.DefaultLeaderLeaseTimeout},
		CheckpointInterval: 10 * time.Second, ConsistencyInterval: 5 * time.Second,
	}
}

// p50 is the median of ds, which it sorts.
func p50(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func reportLatency(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	b.ReportMetric(ms(p50(ds)), "p50-ms")
	b.ReportMetric(ms(ds[len(ds)*99/100]), "p99-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// inTurns runs a and b, in turn i: a first in even turns, b first in odd
// ones, so that neither of two things measured side by side always has
// the machine as the other left it.
func inTurns(i int, a, b func()) {
	if i%2 == 0 {
		a()
		b()
		return
	}
	b()
	a()
}

// parallel runs b.N calls of op from workers goroutines and reports ops/s.
func parallel(b *testing.B, workers int, op func() error) {
	took := calls(b, workers, b.N, op)
	b.ReportMetric(float64(b.N)/took.Seconds(), "ops/s")
}

// calls makes n calls of op from workers goroutines and returns the time
// they took.
func calls(b *testing.B, workers, n int, op func() error) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := op(); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return took
}

// parallelPair runs b.N calls of each op from workers goroutines, in
// rounds that take turns (which goes first alternates), and reports the
// ops/s of the second and its ratio to the first's over the same rounds.
func parallelPair(b *testing.B, workers int, first, second func() error) {
	const rounds = 20
	per := max(b.N/rounds, workers)
	var took1, took2 time.Duration
	n := 0
	for i := 0; n < b.N; i++ {
		inTurns(i, func() { took1 += calls(b, workers, per, first) }, func() { took2 += calls(b, workers, per, second) })
		n += per
	}
	b.ReportMetric(float64(n)/took2.Seconds(), "ops/s")
	b.ReportMetric(took1.Seconds()/took2.Seconds(), "of-first")
}
