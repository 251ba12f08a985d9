package clustertest_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/raft"

	"cnm/daemon/clustertest"
)

// BenchmarkWriteParts takes a write through the leader apart, with its
// yardsticks measured in turns with it in this one process, so that each
// ratio is of the same moments (docs/BENCHMARKS.md, "Where a write's time
// goes"). seq takes turns, one call each:
//   - raw raft over TCP applies a command (the yardstick of the targets);
//   - raw raft over mutual TLS, cnm's raft transport, applies one;
//   - cnm takes PUT /v1/cluster/policy through the leader's API;
//   - a bare Go HTTPS server answers a PUT of the same size to the same
//     client: what one HTTPS round trip costs here, before any work.
//
// hashicorp/raft times its own phases (go-metrics); seq gathers them for
// the raw TLS cluster's commands and for cnm's apart, so that raft's
// commit, the leader's and the followers' store and the FSM's Apply inside
// cnm sit next to the same phases alone. 16_tcp and 16_tls are 16 writers
// through cnm's leader in rounds that take turns with 16 raw raft
// appliers.
func BenchmarkWriteParts(b *testing.B) {
	c := clustertest.Start(b, 3, benchOptions())
	leader := c.Leader(30 * time.Second)
	rawTCP, _ := rawCluster(b, false)
	rawTLS, _ := rawCluster(b, true)
	bare := bareServer(b)
	client := benchClient()

	cmd := make([]byte, 200)
	apply := func(r *raft.Raft) func() error {
		return func() error { return r.Apply(cmd, 5*time.Second).Error() }
	}
	var flip atomic.Uint64
	put := func(url string) func() error {
		return func() error {
			return apiCall(client, "PUT", url+"/v1/cluster/policy", fmt.Sprintf(`{"rack_aware":%t}`, flip.Add(1)%2 == 0))
		}
	}
	write := put("https://" + c.Member(leader).Cfg.APIAddr)

	b.Run("seq", func(b *testing.B) {
		sink := &phaseSink{}
		cfg := metrics.DefaultConfig("")
		cfg.EnableHostname, cfg.EnableRuntimeMetrics = false, false
		if _, err := metrics.NewGlobal(cfg, sink); err != nil {
			b.Fatal(err)
		}
		defer func() { _, _ = metrics.NewGlobal(cfg, &metrics.BlackholeSink{}) }()
		ops := []struct {
			mode int32
			op   func() error
		}{
			{phaseNone, apply(rawTCP)},
			{phaseRaw, apply(rawTLS)},
			{phaseCNM, write},
			{phaseNone, put(bare)},
		}
		ds := make([][]time.Duration, len(ops))
		for _, o := range ops { // connections open, raft warm
			if err := o.op(); err != nil {
				b.Fatal(err)
			}
		}
		for i := 0; b.Loop(); i++ {
			// Each turn starts with the next of them, so that none always
			// finds the machine as another left it.
			for j := range ops {
				k := (i + j) % len(ops)
				sink.mode.Store(ops[k].mode)
				t := time.Now()
				if err := ops[k].op(); err != nil {
					b.Fatal(err)
				}
				ds[k] = append(ds[k], time.Since(t))
			}
		}
		sink.mode.Store(phaseNone)
		tcp, tls, w, https := p50(ds[0]), p50(ds[1]), p50(ds[2]), p50(ds[3])
		b.ReportMetric(ms(w), "write-ms")
		b.ReportMetric(ms(tcp), "apply-tcp-ms")
		b.ReportMetric(ms(tls), "apply-tls-ms")
		b.ReportMetric(ms(https), "https-ms")
		b.ReportMetric(ms(w-tls-https), "rest-ms")
		for _, p := range raftPhases {
			b.ReportMetric(sink.mean(phaseRaw, p.key), p.unit+"-raw")
			b.ReportMetric(sink.mean(phaseCNM, p.key), p.unit)
		}
	})
	b.Run("16_tcp", func(b *testing.B) { parallelPair(b, 16, apply(rawTCP), write) })
	b.Run("16_tls", func(b *testing.B) { parallelPair(b, 16, apply(rawTLS), write) })
}

// The clusters whose raft phases a phaseSink keeps apart.
const (
	phaseNone int32 = iota
	phaseRaw
	phaseCNM
)

// raftPhases are the timers of hashicorp/raft that a write is made of, and
// the unit each is reported under (the mean, in ms).
var raftPhases = []struct{ key, unit string }{
	{"raft.commitTime", "commit-ms"},                          // the leader's dispatch until a quorum has stored it
	{"raft.leader.dispatchLog", "store-leader-ms"},            // the leader's own store, fsync included
	{"raft.rpc.appendEntries.storeLogs", "store-follower-ms"}, // a follower's store, fsync included
	{"raft.fsm.apply", "fsm-ms"},                              // the FSM's Apply of one entry, on any member
}

// phaseSink is a go-metrics sink that keeps the sum and count of each
// timer apart for the cluster whose command is in flight (mode); timers
// emitted while neither is, gauges and counters are dropped.
type phaseSink struct {
	mode atomic.Int32
	mu   sync.Mutex
	sums map[phaseKey][2]float64 // count, sum
}

type phaseKey struct {
	mode int32
	key  string
}

func (s *phaseSink) AddSample(key []string, val float32) {
	m := s.mode.Load()
	if m == phaseNone {
		return
	}
	k := phaseKey{m, strings.Join(key, ".")}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sums == nil {
		s.sums = map[phaseKey][2]float64{}
	}
	v := s.sums[k]
	s.sums[k] = [2]float64{v[0] + 1, v[1] + float64(val)}
}

// mean is the mean of the timer key, in ms, while mode was in flight.
func (s *phaseSink) mean(mode int32, key string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.sums[phaseKey{mode, key}]
	if v[0] == 0 {
		return 0
	}
	return v[1] / v[0]
}

func (s *phaseSink) AddSampleWithLabels(key []string, val float32, _ []metrics.Label) {
	s.AddSample(key, val)
}
func (*phaseSink) SetGauge([]string, float32)                               {}
func (*phaseSink) SetGaugeWithLabels([]string, float32, []metrics.Label)    {}
func (*phaseSink) EmitKey([]string, float32)                                {}
func (*phaseSink) IncrCounter([]string, float32)                            {}
func (*phaseSink) IncrCounterWithLabels([]string, float32, []metrics.Label) {}
