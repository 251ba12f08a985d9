package httpapi

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"cnm/fsm"
)

// Setup actions of POST /v1/bootstrap/{action}.
const (
	SetupCreateCluster = "create_cluster"
	SetupJoinCluster   = "join_cluster"
)

// Setup states GET /v1/bootstrap reports before the node has cluster state;
// the full API reports "completed" once it has.
const (
	SetupIdle      = "idle"
	SetupInitiated = "initiated"
	SetupError     = "error"
)

// SetupRequest is an accepted POST /v1/bootstrap/{create_cluster|join_cluster}.
type SetupRequest struct {
	Action      string
	ClusterName string   // create_cluster; empty means the default name
	Nodes       []string // join_cluster: member API URLs, tried in order
	Username    string
	Password    string
}

// SetupStatus is the state of a node's REST-driven setup.
type SetupStatus struct {
	State        string
	ErrorCode    string
	ErrorMessage string
}

// SetupConfig configures the API a node serves while it has no cluster.
type SetupConfig struct {
	UID                        int
	APIAddr, RaftAddr, Version string
	// Status reports the setup state; Submit hands over a valid request
	// and reports false when one is already being carried out.
	Status func() SetupStatus
	Submit func(SetupRequest) bool
	Logger *slog.Logger
}

// setupHold is the Retry-After of the 503s a node answers while it has no
// cluster: setting one up takes seconds.
const setupHold = 2 * time.Second

// NewSetupHandler returns the API of a node started with neither
// --bootstrap nor --join: ping, GET /v1/bootstrap and the two setup
// actions (SPEC §5.1). Everything else is 503 not_bootstrapped.
func NewSetupHandler(cfg SetupConfig) http.Handler {
	started := time.Now()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	status := func(w http.ResponseWriter) {
		st := cfg.Status()
		bs := map[string]string{"state": st.State}
		if st.State == SetupError {
			bs["error_code"], bs["error_message"] = st.ErrorCode, st.ErrorMessage
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"bootstrap_status": bs,
			"local_node_info": map[string]any{
				"uid": cfg.UID, "api_addr": cfg.APIAddr, "raft_addr": cfg.RaftAddr,
				"software_version": cfg.Version, "uptime": int64(time.Since(started).Seconds()),
			},
		})
	}
	fail := func(w http.ResponseWriter, err *fsm.Error) { writeAPIError(w, err, setupHold, true) }
	m := mux.NewRouter().SkipClean(true) // canonical paths are checked below
	m.HandleFunc("/v1/ping", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node_uid": cfg.UID, "leader": 0})
	}).Methods(http.MethodGet)
	m.HandleFunc("/v1/bootstrap", func(w http.ResponseWriter, _ *http.Request) { status(w) }).Methods(http.MethodGet)
	m.HandleFunc("/v1/bootstrap/{action}", func(w http.ResponseWriter, r *http.Request) {
		req, err := parseSetup(w, r, mux.Vars(r)["action"])
		if err != nil {
			fail(w, err)
			return
		}
		if !cfg.Submit(req) {
			fail(w, fsm.ErrBootstrapInProgress.With("this node is already being set up; follow GET /v1/bootstrap"))
			return
		}
		cfg.Logger.Info("setup requested over REST", "action", req.Action, "user", req.Username)
		status(w)
	}).Methods(http.MethodPost)
	notYet := func(w http.ResponseWriter, r *http.Request) {
		fail(w, fsm.ErrNotBootstrapped.With("this node is not in a cluster yet: POST /v1/bootstrap/create_cluster or /v1/bootstrap/join_cluster"))
	}
	m.NotFoundHandler = http.HandlerFunc(notYet)
	m.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail(w, fsm.ErrMethodNotAllowed.With(r.Method+" is not allowed on "+r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := canonicalPath(r); err != nil {
			fail(w, err)
			return
		}
		m.ServeHTTP(w, r)
	})
}

// setupBody is the body of both setup actions, shaped like the bootstrap
// requests of the reference API: only the fields cnm uses are accepted.
type setupBody struct {
	Action  *string `json:"action"`
	Cluster *struct {
		Name  *string   `json:"name"`
		Nodes *[]string `json:"nodes"`
	} `json:"cluster"`
	Credentials *struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	} `json:"credentials"`
}

func parseSetup(w http.ResponseWriter, r *http.Request, action string) (SetupRequest, *fsm.Error) {
	if action != SetupCreateCluster && action != SetupJoinCluster {
		return SetupRequest{}, fsm.ErrNoSuchSetupAction.With(
			"setup action " + quote(action) + " does not exist: use create_cluster or join_cluster")
	}
	var b setupBody
	body, err := readBody(w, r)
	if err == nil {
		err = decodeObject(body, &b, nil)
	}
	if err != nil {
		var ae *fsm.Error
		if errors.As(err, &ae) {
			return SetupRequest{}, ae
		}
		return SetupRequest{}, fsm.ErrInvalidRequest.With(err.Error())
	}
	bad := func(desc string) (SetupRequest, *fsm.Error) {
		return SetupRequest{}, fsm.ErrInvalidParameter.With(desc)
	}
	if b.Action != nil && *b.Action != action {
		return bad("field \"action\" is " + quote(*b.Action) + " but the path says " + action)
	}
	req := SetupRequest{Action: action}
	c := b.Credentials
	if c == nil || c.Username == nil || c.Password == nil {
		return bad("fields \"credentials.username\" and \"credentials.password\" are required")
	}
	user := userBody{Email: c.Username, Password: c.Password}
	if err := user.validate(false); err != nil {
		var ae *fsm.Error
		errors.As(err, &ae)
		return SetupRequest{}, ae
	}
	req.Username, req.Password = *c.Username, *c.Password
	switch action {
	case SetupCreateCluster:
		if b.Cluster != nil && b.Cluster.Nodes != nil {
			return bad("field \"cluster.nodes\" belongs to join_cluster")
		}
		if b.Cluster != nil && b.Cluster.Name != nil {
			if n := *b.Cluster.Name; n == "" || len(n) > 256 {
				return bad("field \"cluster.name\" must be 1 to 256 bytes long")
			}
			req.ClusterName = *b.Cluster.Name
		}
	case SetupJoinCluster:
		if b.Cluster == nil || b.Cluster.Nodes == nil || len(*b.Cluster.Nodes) == 0 {
			return bad("field \"cluster.nodes\" must list at least one member's address")
		}
		if b.Cluster.Name != nil {
			return bad("field \"cluster.name\" belongs to create_cluster: a joining node takes its cluster's name")
		}
		if len(*b.Cluster.Nodes) > 16 {
			return bad("field \"cluster.nodes\" lists more than 16 members")
		}
		for _, n := range *b.Cluster.Nodes {
			u, err := memberURL(n)
			if err != nil {
				return bad("field \"cluster.nodes\": " + err.Error())
			}
			req.Nodes = append(req.Nodes, u)
		}
	}
	return req, nil
}

// memberURL turns "host", "host:port" or "https://host:port" into the API
// URL of a member; the port defaults to 9443.
func memberURL(s string) (string, error) {
	hostport := s
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") ||
			u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return "", &setupAddrError{s}
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "9443"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" || strings.ContainsAny(host, "/@?#[] ") {
		return "", &setupAddrError{s}
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

type setupAddrError struct{ addr string }

func (e *setupAddrError) Error() string {
	return quote(e.addr) + " is not a member address (host, host:port or https://host:port)"
}
