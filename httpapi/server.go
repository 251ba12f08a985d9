package httpapi

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"cnm/control"
	"cnm/fsm"
	"cnm/peer"
	"cnm/pki"
)

// Raft is what the API needs of the local raft member: what the
// node-to-node endpoints need, and more.
type Raft interface {
	peer.Raft
	FSM() *fsm.FSM
	Role() string
	Term() uint64
	Apply(ctx context.Context, cmd []byte) (*fsm.Result, error)
}

// Config configures a Server.
type Config struct {
	Raft Raft
	// Collectors are more metrics of this node for GET /metrics (the
	// executor's).
	Collectors []prometheus.Collector
	Peers      *peer.Client
	// Hold is how long a request waits for a leader before 503 no_quorum.
	Hold time.Duration
	// BcryptCost for new password hashes (tests lower it).
	BcryptCost   int
	AuthCacheTTL time.Duration
	// FailedLogins limits failed logins per client address and per user.
	FailedLogins LoginLimits
	Version      string
	// APIAddr and RaftAddr describe this node for GET /v1/bootstrap.
	APIAddr, RaftAddr string
	// Agent serves the node agent's node-to-node API under AgentPrefix,
	// to peers only (nil: not mounted).
	Agent       http.Handler
	AgentPrefix string
	Logger      *slog.Logger
	// PeerCheck, when set, decides at every request whether the
	// certificates a connection presented are a current member's (chain
	// to the cluster CA, not revoked); nil leaves it to the TLS layer's
	// verified chains.
	PeerCheck func(certs []*x509.Certificate) error
	// CertLifetime is how long the node certificates this node issues are
	// valid (default pki.DefaultNodeLifetime).
	CertLifetime time.Duration
}

// Defaults.
const (
	DefaultHold         = 5 * time.Second
	DefaultAuthCacheTTL = 30 * time.Second
	maxBodyBytes        = 1 << 20
	maxWait             = 10 * time.Minute
	defaultWait         = 30 * time.Second
)

// Server is the REST API of one node.
type Server struct {
	collectors []prometheus.Collector
	raft       Raft
	fsm        *fsm.FSM
	peers      *peer.Client
	peer       *peer.Server
	ctl        *control.Service
	checker    peer.Checker
	hold       time.Duration
	bcryptCost int
	auth       *authCache
	dummyHash  []byte
	logins     *loginLimiter
	// checkPassword is the one password check of a login (bcrypt; tests
	// count its calls).
	checkPassword func(hash, password []byte) error
	version       string
	apiAddr       string
	raftAddr      string
	started       time.Time
	log           *slog.Logger
	router        *mux.Router
	badPath       http.Handler // answers a path that is not canonical
	agent         http.Handler
	agentPrefix   string
	removed       atomic.Bool
	fault         atomic.Pointer[fsm.Error]
	metrics       *metrics
	// The JSON of the records GET /v1/shards and GET /v1/nodes/actions
	// list, by record.
	shardJSON  *recordCache[fsm.Shard]
	actionJSON *recordCache[fsm.Action]
	// readIndex shares read-index round trips among concurrent reads.
	readIndex *readIndexBatch
	// stopping ends blocking reads when the node shuts down.
	stopping     chan struct{}
	stoppingOnce sync.Once
}

// EndWaits answers every blocking read now, with the state as it is, and
// every later one at once: a shutting-down node must not wait out their
// wait times. Register it with http.Server.RegisterOnShutdown.
func (s *Server) EndWaits() { s.stoppingOnce.Do(func() { close(s.stopping) }) }

// SetRemoved makes the node answer every request but ping with 503
// not_a_member: the cluster removed it (SPEC §4.2).
func (s *Server) SetRemoved() { s.removed.Store(true) }

// New builds the API and its router.
func New(cfg Config) *Server {
	if cfg.Hold == 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if cfg.AuthCacheTTL == 0 {
		cfg.AuthCacheTTL = DefaultAuthCacheTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CertLifetime == 0 {
		cfg.CertLifetime = pki.DefaultNodeLifetime
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password"), cfg.BcryptCost)
	if err != nil {
		panic("httpapi: bcrypt: " + err.Error())
	}
	s := &Server{
		raft: cfg.Raft, fsm: cfg.Raft.FSM(), peers: cfg.Peers, hold: cfg.Hold,
		bcryptCost: cfg.BcryptCost, auth: newAuthCache(cfg.AuthCacheTTL, 8192),
		shardJSON:  newRecordCache(func(sh *fsm.Shard) any { return viewShard(sh) }),
		actionJSON: newRecordCache(func(a *fsm.Action) any { return viewAction(a) }), dummyHash: dummy,
		logins: newLoginLimiter(cfg.FailedLogins), checkPassword: bcrypt.CompareHashAndPassword,
		version: cfg.Version, apiAddr: cfg.APIAddr, raftAddr: cfg.RaftAddr, started: time.Now(),
		log:   cfg.Logger.With("component", "api", "node_uid", cfg.Raft.ID()),
		agent: cfg.Agent, agentPrefix: cfg.AgentPrefix, stopping: make(chan struct{}),
		checker: peer.Checker{Check: cfg.PeerCheck}, collectors: cfg.Collectors,
	}
	s.metrics = newMetrics(s)
	s.readIndex = newReadIndexBatch(s.readIndexFromLeader, 2*time.Second)
	s.ctl = control.New(cfg.Raft, s.fsm, cfg.BcryptCost, func(d time.Duration) { s.metrics.apply.Observe(d.Seconds()) })
	s.peer = &peer.Server{Raft: cfg.Raft, FSM: s.fsm, Client: cfg.Peers, Propose: s.ctl.Propose, Decode: decodeBody,
		NodeView: func(n *fsm.Node) any { return viewNode(n, time.Now()) }, CertLifetime: cfg.CertLifetime, Log: s.log}
	s.routes()
	return s
}

// ServeHTTP adds the headers every answer carries and turns panics into
// JSON 500s.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hw := &headerWriter{ResponseWriter: w, s: s}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
			if !hw.wrote {
				s.writeError(hw, r, errInternal)
			}
		}
	}()
	if canonicalPath(r) != nil {
		s.badPath.ServeHTTP(hw, r)
		return
	}
	if s.crossNode(hw, r) {
		return
	}
	if s.removed.Load() && r.URL.Path != "/v1/ping" {
		s.writeError(hw, r, fsm.ErrNotAMember.With("this node was removed from the cluster"))
		return
	}
	if f := s.fault.Load(); f != nil && !faultPassing(r.URL.Path) {
		s.writeError(hw, r, f)
		return
	}
	s.router.ServeHTTP(hw, r)
}

// headerWriter sets X-Cnm-Index and X-Cnm-Leader at the moment the answer
// is written, unless a forwarded answer already carries the leader's.
type headerWriter struct {
	http.ResponseWriter
	s     *Server
	wrote bool
}

func (h *headerWriter) WriteHeader(code int) {
	if !h.wrote {
		h.wrote = true
		hd := h.Header()
		if hd.Get("X-Cnm-Index") == "" {
			hd.Set("X-Cnm-Index", strconv.FormatUint(h.s.fsm.Applied(), 10))
		}
		if hd.Get("X-Cnm-Leader") == "" {
			if uid, _ := h.s.raft.Leader(); uid != 0 {
				hd.Set("X-Cnm-Leader", strconv.Itoa(uid))
			}
		}
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h *headerWriter) Write(b []byte) (int, error) {
	if !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(b)
}

func (s *Server) ping(w http.ResponseWriter, _ *http.Request, _ principal) error {
	uid, _ := s.raft.Leader()
	// uptime lets the leader record when this node's cnmd started (the
	// uptime of GET /v1/nodes).
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node_uid": s.raft.ID(), "leader": uid,
		"uptime": int64(time.Since(s.started).Seconds())})
	return nil
}

// alreadyBootstrapped answers a set-up request made to a node that is part
// of a cluster already.
func (s *Server) alreadyBootstrapped(_ http.ResponseWriter, _ *http.Request, _ principal) error {
	return fsm.ErrAlreadyBootstrapped.With("this node is already part of a cluster; set-up requests go to a node started with neither --bootstrap nor --join")
}
