package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"cnm/fsm"
	"cnm/httpapi"
	"cnm/pki"
)

// StartViaREST serves the setup API on cfg.APIAddr until a client asks it
// to create or join a cluster (POST /v1/bootstrap/...), then starts the
// node as --bootstrap or --join would. A failed attempt is reported by
// GET /v1/bootstrap and another may follow. The API address answers
// throughout: the node's own server takes the listening socket over from
// the setup server, so a client polling GET /v1/bootstrap never finds the
// port closed.
func StartViaREST(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.withDefaults()
	s, err := newSetup(cfg)
	if err != nil {
		return nil, err
	}
	s.serve()
	s.log.Info("waiting to be set up: POST /v1/bootstrap/create_cluster or /v1/bootstrap/join_cluster", "api_addr", cfg.APIAddr)
	for {
		var req httpapi.SetupRequest
		select {
		case <-ctx.Done():
			_ = s.srv.Close()
			s.shared.Close()
			return nil, ctx.Err()
		case req = <-s.requests:
		}
		n, err := s.attempt(ctx, req)
		if err == nil {
			// From now on the node's server owns the socket: closing it
			// frees the port.
			s.nodeLn.last.Store(s.shared)
			return n, nil
		}
		s.failed(req, err)
	}
}

// setup is one StartViaREST: the API socket, which the setup server and
// the node being started take in turn, and the status GET /v1/bootstrap
// reports. Only status is shared with the setup server's handlers.
type setup struct {
	cfg     Config
	log     *slog.Logger
	shared  *sharedListener
	tls     *tls.Config
	handler http.Handler
	// srv is the setup server on the socket, nil while a node has it.
	srv *http.Server
	// nodeLn is the socket as the last node started took it.
	nodeLn   *connQueue
	requests chan httpapi.SetupRequest

	mu     sync.Mutex
	status httpapi.SetupStatus
}

func newSetup(cfg Config) (*setup, error) {
	log := cfg.Logger.With("node_uid", cfg.UID)
	raw, err := cfg.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for api on %s: %w", cfg.APIAddr, err)
	}
	shared := newSharedListener(raw)
	setupTLS, err := setupTLSConfig(cfg)
	if err != nil {
		shared.Close()
		return nil, err
	}
	s := &setup{cfg: cfg, log: log, shared: shared, tls: setupTLS,
		status: httpapi.SetupStatus{State: httpapi.SetupIdle}, requests: make(chan httpapi.SetupRequest, 1)}
	s.handler = httpapi.NewSetupHandler(httpapi.SetupConfig{
		UID: cfg.UID, APIAddr: cfg.APIAddr, RaftAddr: cfg.RaftAddr, Version: Version, Logger: log,
		Status: s.currentStatus, Submit: s.submit,
	})
	return s, nil
}

func (s *setup) currentStatus() httpapi.SetupStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// submit hands a request to StartViaREST, unless one is being carried out.
func (s *setup) submit(r httpapi.SetupRequest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.State == httpapi.SetupInitiated {
		return false
	}
	s.status = httpapi.SetupStatus{State: httpapi.SetupInitiated}
	s.requests <- r
	return true
}

// serve puts a new setup server on the socket.
func (s *setup) serve() {
	srv := newAPIServer(s.handler, s.cfg.API, s.log)
	ln := tls.NewListener(s.shared.take(), s.tls)
	go func() { _ = srv.Serve(ln) }()
	s.srv = srv
}

// attempt starts the node as req asks.
func (s *setup) attempt(ctx context.Context, req httpapi.SetupRequest) (*Node, error) {
	cfg := s.cfg
	cfg.AdminUser, cfg.AdminPassword = req.Username, req.Password
	s.nodeLn = nil
	cfg.Listen = s.listen
	switch req.Action {
	case httpapi.SetupCreateCluster:
		cfg.Bootstrap = true
		if req.ClusterName != "" {
			cfg.ClusterName = req.ClusterName
		}
		return Start(ctx, cfg)
	case httpapi.SetupJoinCluster:
		return s.join(ctx, cfg, req.Nodes)
	default:
		return nil, fmt.Errorf("unknown setup action %q", req.Action)
	}
}

// listen is the Listen of the node being started. The node's API server
// takes the socket; the setup server then closes its idle connections and
// stops.
func (s *setup) listen(network, addr string) (net.Listener, error) {
	if addr != s.cfg.APIAddr {
		return s.cfg.Listen(network, addr)
	}
	s.nodeLn = s.shared.take()
	if s.srv != nil { // nil when an earlier attempt took the socket and failed
		go func(old *http.Server) { _ = old.Shutdown(context.Background()) }(s.srv)
		s.srv = nil
	}
	return s.nodeLn, nil
}

// join tries the members in turn until one admits this node.
func (s *setup) join(ctx context.Context, cfg Config, members []string) (n *Node, err error) {
	// join_cluster's body (the setup API of Redis Enterprise) has no field
	// for the cluster CA: unless cnmd was started with one, the member is
	// trusted like the client that sent the credentials here, on a
	// certificate it could not check.
	if s.cfg.JoinCAFingerprint == "" && s.cfg.JoinCAFile == "" {
		cfg.JoinInsecure = true
	}
	// One bound for the whole request: a member that does not answer must
	// end in an error the client sees and can retry, not in "initiated"
	// for as long as joins retry.
	jctx, cancel := context.WithTimeout(ctx, s.cfg.SetupJoinTimeout)
	defer cancel()
	for _, u := range members {
		cfg.Join = u
		if n, err = Start(jctx, cfg); err == nil {
			return n, nil
		}
		err = fmt.Errorf("join via %s: %w", u, err)
		s.log.Warn("join over REST failed", "via", u, "error", err)
		if s.srv == nil {
			s.serve() // answer while the next member is tried
		}
		if jctx.Err() != nil {
			break
		}
	}
	return n, err
}

// failed reports a failed attempt on GET /v1/bootstrap, where the client
// may follow it with another.
func (s *setup) failed(req httpapi.SetupRequest, err error) {
	s.log.Error("setup over REST failed", "action", req.Action, "error", err)
	if s.srv == nil {
		// The node had taken the socket before it failed.
		s.serve()
	}
	s.mu.Lock()
	s.status = httpapi.SetupStatus{State: httpapi.SetupError, ErrorCode: fsm.ErrSetupFailed.Code, ErrorMessage: err.Error()}
	s.mu.Unlock()
}

// setupTLSConfig is the operator's --tls-cert if given, otherwise a
// throwaway certificate for the setup API: the cluster CA does not exist
// yet (create) or is not ours yet (join). Clients then use curl -k, as they
// do with any node until they trust the cluster CA.
func setupTLSConfig(cfg Config) (*tls.Config, error) {
	now := time.Now()
	ca, err := pki.NewCA("setup of node "+fmt.Sprint(cfg.UID), now)
	if err != nil {
		return nil, err
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(cfg.UID, pki.HostsOf(cfg.APIAddr))
	if err != nil {
		return nil, err
	}
	certPEM, err := ca.Sign(csrPEM, now)
	if err != nil {
		return nil, err
	}
	c, err := pki.Material{CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM}.ServerConfig(false)
	if err != nil || cfg.TLSCertFile == "" {
		return c, err
	}
	cert, err := cfg.apiCertificate()
	if err != nil {
		return nil, err
	}
	return pki.WithAPICertificate(c, cert), nil
}
