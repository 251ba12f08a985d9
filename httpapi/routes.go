package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"cnm/fsm"
	"cnm/peer"
)

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

// routeTable lists every endpoint with its permission and how it is
// served.
func (s *Server) routeTable() []route {
	rs := []route{
		mk("GET", "/v1/ping", "", public, s.ping),
		// The API's description is no secret.
		mk("GET", "/v1/openapi.json", "", public, s.openAPI),
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
	return append(rs, s.peerRoutes()...)
}

// routes builds the router.
func (s *Server) routes() {
	rs := s.routeTable()
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
	// The web view's files; /ui goes to /ui/.
	m.Handle("/ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	m.PathPrefix("/ui/").Handler(s.metrics.instrument("/ui/", uiHandler()))
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
