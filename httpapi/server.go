package httpapi

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"golang.org/x/crypto/bcrypt"

	"cnm/control"
	"cnm/fsm"
	"cnm/peer"
	"cnm/pki"
	"cnm/raftnode"
)

// Raft is what the API needs of the local raft member.
type Raft interface {
	ID() int
	FSM() *fsm.FSM
	IsLeader() bool
	Role() string
	Leader() (uid int, raftAddr string)
	Term() uint64
	Indexes() (commit, last uint64)
	Apply(ctx context.Context, cmd []byte) (*fsm.Result, error)
	ReadIndex(ctx context.Context) (uint64, error)
	WaitApplied(ctx context.Context, index uint64) error
	AddVoter(ctx context.Context, uid int, raftAddr string) error
	AddNonvoter(ctx context.Context, uid int, raftAddr string) error
	Servers() ([]raftnode.Server, error)
}

// Config configures a Server.
type Config struct {
	Raft  Raft
	Peers *peer.Client
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
		bcryptCost: cfg.BcryptCost, auth: newAuthCache(cfg.AuthCacheTTL, 8192), dummyHash: dummy,
		logins: newLoginLimiter(cfg.FailedLogins), checkPassword: bcrypt.CompareHashAndPassword,
		version: cfg.Version, apiAddr: cfg.APIAddr, raftAddr: cfg.RaftAddr, started: time.Now(),
		log:   cfg.Logger.With("component", "api", "node_uid", cfg.Raft.ID()),
		agent: cfg.Agent, agentPrefix: cfg.AgentPrefix, stopping: make(chan struct{}),
		checker: peer.Checker{Check: cfg.PeerCheck},
	}
	s.metrics = newMetrics(s)
	s.ctl = control.New(cfg.Raft, s.fsm, cfg.BcryptCost, func(d time.Duration) { s.metrics.apply.Observe(d.Seconds()) })
	s.peer = &peer.Server{Raft: cfg.Raft, FSM: s.fsm, Client: cfg.Peers, Propose: s.ctl.Propose, Decode: decodeBody,
		NodeView: func(n *fsm.Node) any { return viewNode(n, time.Now()) }, CertLifetime: cfg.CertLifetime, Log: s.log}
	s.routes()
	return s
}

// kind says how a route is served.
type kind int

const (
	public   kind = iota // no authentication
	local                // authenticated, answered from local state
	read                 // authenticated, linearizable unless ?stale=true
	write                // authenticated, executed on the leader
	peerOnly             // node-to-node only: a cluster certificate is required
)

// handler serves an authenticated request. It writes the response only on
// success; a returned error is written by writeError (or, for a write that
// found this node no longer leading, retried on the new leader).
type handler func(w http.ResponseWriter, r *http.Request, p principal) error

type route struct {
	method, path, perm string
	kind               kind
	h                  handler
	// query lists the query parameters of a node-to-node route.
	query []string
	// idempotent writes are applied once under the id serveWrite gives
	// them, so they may be sent again after a leader change.
	idempotent bool
}

func mk(method, path, perm string, k kind, h handler) route {
	return route{method: method, path: path, perm: perm, kind: k, h: h}
}

// retriedByID marks a write that Apply stores once under its id.
func (rt route) retriedByID() route {
	rt.idempotent = true
	return rt
}

// peerRoutes mounts the node-to-node endpoints: a join is a write of the
// cluster's administrator, the others answer peers only.
func (s *Server) peerRoutes() []route {
	var rs []route
	for _, pr := range s.peer.Routes() {
		rt := route{method: pr.Method, path: pr.Path, kind: peerOnly, query: pr.Query, h: peerHandler(pr)}
		if pr.Write {
			rt.perm, rt.kind = PermUpdateCluster, write
		}
		rs = append(rs, rt)
	}
	return rs
}

func peerHandler(pr peer.Route) handler {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		v, err := pr.Handle(r, p.actor())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, v)
		return nil
	}
}

func (s *Server) routes() {
	rs := []route{
		mk("GET", "/v1/ping", "", public, s.ping),
		mk("GET", "/metrics", PermViewClusterInfo, local, s.serveMetrics),
		// Clients poll the setup without credentials, before and after it
		// completes; it shows nothing secret.
		mk("GET", "/v1/bootstrap", "", public, s.getBootstrap),
		// A node that serves this API is set up already.
		mk("POST", "/v1/bootstrap/create_cluster", "", public, s.alreadyBootstrapped),
		mk("POST", "/v1/bootstrap/join_cluster", "", public, s.alreadyBootstrapped),
		mk("GET", "/v1/cluster", PermViewClusterInfo, read, s.getCluster),
		mk("GET", "/v1/nodes", PermViewAllNodesInfo, read, s.listNodes),
		mk("GET", "/v1/nodes/status", PermViewAllNodesInfo, read, s.nodesStatus),
		mk("GET", "/v1/nodes/actions", PermViewAllNodeActions, read, s.listAllActions),
		mk("GET", "/v1/nodes/{uid}/actions", PermViewNodeAction, read, s.listNodeActions),
		mk("GET", "/v1/nodes/{uid}/actions/{action}", PermViewNodeAction, read, s.getNodeAction),
		mk("POST", "/v1/nodes/{uid}/actions/{action}", PermStartNodeAction, write, s.startNodeAction).retriedByID(),
		mk("DELETE", "/v1/nodes/{uid}/actions/{action}", PermCancelNodeAction, write, s.cancelNodeAction),
		mk("GET", "/v1/nodes/{uid}", PermViewNodeInfo, read, s.getNode),
		mk("PUT", "/v1/nodes/{uid}", PermUpdateNode, write, s.putNode),
		mk("GET", "/v1/nodes/{uid}/status", PermViewNodeInfo, read, s.nodeStatus),
		mk("GET", "/v1/nodes/{uid}/snapshots", PermViewNodeInfo, read, s.listSnapshots),
		mk("GET", "/v1/nodes/{uid}/certificate", PermViewNodeInfo, read, s.getNodeCert),
		mk("POST", "/v1/nodes/{uid}/certificate/rotate", PermUpdateNode, write, s.rotateCert),
		mk("DELETE", "/v1/nodes/{uid}/snapshots/{name}", PermUpdateNode, write, s.deleteSnapshot),
		mk("GET", "/v1/bdbs", PermViewAllBDBsInfo, read, s.listBDBs),
		mk("POST", "/v1/bdbs", PermCreateBDB, write, s.createBDB),
		mk("GET", "/v1/bdbs/{uid}", PermViewBDBInfo, read, s.getBDB),
		mk("DELETE", "/v1/bdbs/{uid}", PermDeleteBDB, write, s.deleteBDB),
		mk("GET", "/v1/shards", PermViewAllShardStats, read, s.listShards),
		mk("GET", "/v1/shards/{uid}", PermViewAllShardStats, read, s.getShard),
		mk("GET", "/v1/cluster/policy", PermViewClusterInfo, read, s.getPolicy),
		mk("PUT", "/v1/cluster/policy", PermUpdateCluster, write, s.putPolicy),
		mk("GET", "/v1/users", PermViewAllUsersInfo, read, s.listUsers),
		mk("POST", "/v1/users", PermCreateNewUser, write, s.createUser),
		mk("GET", "/v1/users/permissions", permAuthenticated, read, s.getPermissions),
		mk("GET", "/v1/users/{uid}", PermViewAllUsersInfo, read, s.getUser),
		mk("PUT", "/v1/users/{uid}", PermUpdateUser, write, s.updateUser),
		mk("DELETE", "/v1/users/{uid}", PermDeleteUser, write, s.deleteUser),
	}
	rs = append(rs, s.peerRoutes()...)
	// Paths are checked for canonical form before routing (canonicalPath):
	// mux's own cleaning answers with a redirect, which clients follow
	// with the wrong method.
	m := mux.NewRouter().SkipClean(true)
	s.badPath = s.metrics.instrument("unmatched", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, canonicalPath(r))
	}))
	// Literal paths first, each closed by a 405 for its other methods, so
	// that PUT /v1/nodes/status is 405 and not a PUT of node "status".
	notAllowed := s.metrics.instrument("unmatched", http.HandlerFunc(s.methodNotAllowed))
	literal := func(rt route) bool { return !strings.Contains(rt.path, "{") }
	for _, rt := range rs {
		if literal(rt) {
			m.Handle(rt.path, s.metrics.instrument(rt.path, s.serve(rt))).Methods(rt.method)
		}
	}
	for _, rt := range rs {
		if literal(rt) {
			m.Handle(rt.path, notAllowed)
		}
	}
	for _, rt := range rs {
		if !literal(rt) {
			m.Handle(rt.path, s.metrics.instrument(rt.path, s.serve(rt))).Methods(rt.method)
		}
	}
	if s.agent != nil {
		m.PathPrefix(s.agentPrefix + "/").Handler(s.metrics.instrument(s.agentPrefix+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !s.checker.Allows(r) {
				s.writeError(w, r, s.checker.Refusal(r))
				return
			}
			s.agent.ServeHTTP(w, r)
		})))
	}
	// Unmatched requests share one label: their paths are caller-chosen
	// and would make the metric's cardinality unbounded.
	m.NotFoundHandler = s.metrics.instrument("unmatched", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fsm.ErrNotFound.With("no endpoint "+r.URL.Path))
	}))
	m.MethodNotAllowedHandler = notAllowed
	s.router = m
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, fsm.ErrMethodNotAllowed.With(r.Method+" is not allowed on "+r.URL.Path))
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

func (s *Server) serve(rt route) http.Handler {
	allowed := queryParams(rt)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkQuery(r, allowed); err != nil {
			s.writeError(w, r, err)
			return
		}
		var err error
		switch rt.kind {
		case public:
			err = rt.h(w, r, principal{})
		case peerOnly:
			if !s.checker.Allows(r) {
				err = s.checker.Refusal(r)
				break
			}
			err = rt.h(w, r, principal{})
		case local:
			err = s.serveLocal(w, r, rt)
		case read:
			err = s.serveRead(w, r, rt)
		case write:
			err = s.serveWrite(w, r, rt)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// queryParams lists the query parameters a route defines: the consistency
// parameters of reads, dry_run of an action POST, relayed of the members
// question. Every other parameter is refused (SPEC §9), so that a misspelt
// one is never silently ignored.
func queryParams(rt route) []string {
	switch {
	case rt.kind == read:
		return []string{"stale", "index", "wait"}
	case rt.method == http.MethodPost && rt.path == "/v1/nodes/{uid}/actions/{action}":
		return []string{"dry_run"}
	}
	return rt.query
}

// checkQuery refuses a query string that does not parse, names a parameter
// the route does not define, or gives one twice.
func checkQuery(r *http.Request, allowed []string) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fsm.ErrInvalidParameter.With("the query string is malformed: " + err.Error())
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			what := "no query parameters"
			if len(allowed) > 0 {
				what = "only " + strings.Join(allowed, ", ")
			}
			return fsm.ErrInvalidParameter.With("unknown query parameter " + strconv.Quote(k) + ": " + r.URL.Path + " takes " + what)
		}
		if len(vs) != 1 {
			return fsm.ErrInvalidParameter.With("query parameter " + strconv.Quote(k) + " is given more than once")
		}
	}
	return nil
}

func (s *Server) authorize(r *http.Request, perm string) (principal, error) {
	p, _, err := s.authorizeSeen(r, perm)
	return p, err
}

// authorizeSeen is authorize that also tells which version of the user the
// credentials were checked against.
func (s *Server) authorizeSeen(r *http.Request, perm string) (principal, userSeen, error) {
	// A node that has no cluster state yet (the first node between its
	// start and its bootstrap entry, a joining node catching up) has no
	// users either: that is "not yet", not "wrong credentials".
	ready := false
	s.fsm.Read(func(st *fsm.State, _ uint64) { ready = st.Bootstrapped() })
	if !ready {
		return principal{}, userSeen{}, fsm.ErrNotBootstrapped.With("this node has no cluster state yet; try again in a moment")
	}
	p, seen, err := s.authenticate(r)
	if err != nil {
		return principal{}, seen, err
	}
	if !Allowed(p.Role, perm) {
		return principal{}, seen, fsm.ErrForbidden.With("role " + p.Role + " lacks permission " + perm)
	}
	return p, seen, nil
}

func (s *Server) serveLocal(w http.ResponseWriter, r *http.Request, rt route) error {
	p, err := s.authorize(r, rt.perm)
	if err != nil {
		return err
	}
	return rt.h(w, r, p)
}

// authorizeLinearized checks credentials against the local state and, if
// they fail there, once more after catching up with the leader: this node
// may not yet have applied a user created or changed moments ago. Without
// a leader, the local verdict stands.
//
// A wrong password is checked only once: if the user is as it was (same
// revision, or still unknown), a second check could only fail again, and
// each one costs a bcrypt run.
func (s *Server) authorizeLinearized(r *http.Request, perm string) (principal, error) {
	p, seen, err := s.authorizeSeen(r, perm)
	if err == nil {
		return p, nil
	}
	var ae *fsm.Error
	if errors.As(err, &ae) && ae.Status() == http.StatusTooManyRequests {
		return principal{}, err
	}
	if s.linearize(r.Context()) != nil {
		return principal{}, err
	}
	if ae != nil && ae.Status() == http.StatusUnauthorized && s.seenNow(r) == seen {
		return principal{}, err
	}
	return s.authorize(r, perm)
}

func (s *Server) serveRead(w http.ResponseWriter, r *http.Request, rt route) error {
	q, err := parseReadQuery(r)
	if err != nil {
		return err
	}
	// Check the caller before waiting on anything on their behalf.
	if _, err := s.authorizeLinearized(r, rt.perm); err != nil {
		return err
	}
	if q.blocking {
		s.waitIndex(r.Context(), q.index, q.wait)
	}
	if !q.stale {
		if err := s.linearize(r.Context()); err != nil {
			return err
		}
	}
	// Authenticate again on the state the answer comes from, so that a
	// password or role changed before this read began is in force.
	p, err := s.authorize(r, rt.perm)
	if err != nil {
		return err
	}
	return rt.h(w, r, p)
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
