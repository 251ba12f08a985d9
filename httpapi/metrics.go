package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"cnm/fsm"
)

// metrics are one node's Prometheus metrics. Each Server has its own
// registry, so that several nodes in one process (the multi-node tests)
// never share or collide on counters.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	forwarded prometheus.Counter
	apply     prometheus.Histogram
	waiting   prometheus.Gauge
	fault     *prometheus.GaugeVec
	handler   http.Handler
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cnm_http_requests_total",
			Help: "HTTP requests answered by this node, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cnm_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, forwarding and linearization included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cnm_http_forwarded_total",
			Help: "Writes this node forwarded to the leader.",
		}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cnm_raft_apply_duration_seconds",
			Help:    "Time for a write to be committed and applied, measured on the leader.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cnm_http_blocking_reads",
			Help: "Blocking reads (?index=N) waiting on this node now: clients watching for changes.",
		}),
		fault: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cnm_node_fault",
			Help: "1 while this node refuses to serve because of a fault (state diverged, disk not writable), by error code.",
		}, []string{"code"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.forwarded, m.apply, m.waiting, m.fault,
		stateCollector{s: s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(s.collectors...)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// instrument counts and times the requests h answers under one route label.
func (m *metrics) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		method := methodLabel(r.Method)
		m.requests.WithLabelValues(route, method, strconv.Itoa(sw.code)).Inc()
		m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	})
}

// methodLabel is the method label of a request: one of the standard
// methods, or "OTHER". The method is caller-chosen text; as a label it
// would let any client grow /metrics (and this node's memory) without
// bound, one series per invented method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// statusWriter remembers the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote, w.code = true, code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// stateCollector reads the raft member and the replicated model when a
// scrape asks, so the figures are never stale and cost nothing between
// scrapes. Model figures come from this node's applied state: they agree
// across nodes up to replication lag, which cnm_fsm_applied_index shows.
type stateCollector struct{ s *Server }

var (
	descRaftState   = prometheus.NewDesc("cnm_raft_state", "1 for this node's current raft state.", []string{"state"}, nil)
	descRaftTerm    = prometheus.NewDesc("cnm_raft_term", "Current raft term.", nil, nil)
	descRaftLeader  = prometheus.NewDesc("cnm_raft_leader_uid", "UID of the leader this node knows of, 0 if none.", nil, nil)
	descRaftCommit  = prometheus.NewDesc("cnm_raft_commit_index", "Highest log index known to be committed.", nil, nil)
	descRaftLast    = prometheus.NewDesc("cnm_raft_last_log_index", "Last index in this node's raft log.", nil, nil)
	descRaftServers = prometheus.NewDesc("cnm_raft_servers", "Servers in the raft configuration, by suffrage.", []string{"suffrage"}, nil)
	descApplied     = prometheus.NewDesc("cnm_fsm_applied_index", "Last log index applied to this node's state.", nil, nil)
	descNodes       = prometheus.NewDesc("cnm_cluster_nodes", "Cluster nodes, by status.", []string{"status"}, nil)
	descBDBs        = prometheus.NewDesc("cnm_cluster_bdbs", "Databases in the cluster.", nil, nil)
	descShards      = prometheus.NewDesc("cnm_cluster_shards", "Shards in the cluster, by role.", []string{"role"}, nil)
	descActions     = prometheus.NewDesc("cnm_node_actions", "Entries of the node action table, by action and status.", []string{"action", "status"}, nil)
	descProgress    = prometheus.NewDesc("cnm_node_action_progress", "Progress (0-100) of each node's latest action of each kind.", []string{"node_uid", "action"}, nil)
)

var raftStates = []string{"leader", "follower", "candidate", "shutdown"}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descRaftTerm, descRaftLeader, descRaftCommit,
		descRaftLast, descRaftServers, descApplied, descNodes, descBDBs, descShards, descActions, descProgress} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	r := c.s.raft
	role := r.Role()
	for _, st := range raftStates {
		v := 0.0
		if st == role {
			v = 1
		}
		gauge(descRaftState, v, st)
	}
	gauge(descRaftTerm, float64(r.Term()))
	leader, _ := r.Leader()
	gauge(descRaftLeader, float64(leader))
	commit, last := r.Indexes()
	gauge(descRaftCommit, float64(commit))
	gauge(descRaftLast, float64(last))
	if servers, err := r.Servers(); err == nil {
		bySuffrage := map[string]int{"voter": 0, "nonvoter": 0}
		for _, sv := range servers {
			if sv.Voter {
				bySuffrage["voter"]++
			} else {
				bySuffrage["nonvoter"]++
			}
		}
		for k, v := range bySuffrage {
			gauge(descRaftServers, float64(v), k)
		}
	}

	c.s.fsm.Read(func(st *fsm.State, applied uint64) {
		gauge(descApplied, float64(applied))
		nodes := map[string]int{fsm.NodeActive: 0, fsm.NodeDecommissioning: 0, fsm.NodeDown: 0, fsm.NodeProvisioning: 0}
		for _, n := range st.Nodes {
			nodes[shownStatus(n)]++
		}
		for k, v := range nodes {
			gauge(descNodes, float64(v), k)
		}
		gauge(descBDBs, float64(len(st.BDBs)))
		shards := map[string]int{"master": 0, "slave": 0}
		for _, sh := range st.Shards {
			shards[sh.Role]++
		}
		for k, v := range shards {
			gauge(descShards, float64(v), k)
		}
		counts := map[[2]string]int{}
		for node, byName := range st.Actions {
			for name, a := range byName {
				counts[[2]string{name, a.Status}]++
				gauge(descProgress, a.Progress(), strconv.Itoa(node), name)
			}
		}
		for k, v := range counts {
			gauge(descActions, float64(v), k[0], k[1])
		}
	})
}

// serveMetrics answers GET /metrics in the Prometheus text format.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, _ principal) error {
	s.metrics.handler.ServeHTTP(w, r)
	return nil
}
