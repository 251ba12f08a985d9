package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

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
	var mu sync.Mutex
	status := httpapi.SetupStatus{State: httpapi.SetupIdle}
	requests := make(chan httpapi.SetupRequest, 1)
	handler := httpapi.NewSetupHandler(httpapi.SetupConfig{
		UID: cfg.UID, APIAddr: cfg.APIAddr, RaftAddr: cfg.RaftAddr, Version: Version, Logger: log,
		Status: func() httpapi.SetupStatus { mu.Lock(); defer mu.Unlock(); return status },
		Submit: func(r httpapi.SetupRequest) bool {
			mu.Lock()
			defer mu.Unlock()
			if status.State == httpapi.SetupInitiated {
				return false
			}
			status = httpapi.SetupStatus{State: httpapi.SetupInitiated}
			requests <- r
			return true
		},
	})
	serveSetup := func() *http.Server {
		srv := newAPIServer(handler, cfg.API, log)
		ln := tls.NewListener(shared.take(), setupTLS)
		go func() { _ = srv.Serve(ln) }()
		return srv
	}
	srv := serveSetup()
	log.Info("waiting to be set up: POST /v1/bootstrap/create_cluster or /v1/bootstrap/join_cluster", "api_addr", cfg.APIAddr)
	for {
		var req httpapi.SetupRequest
		select {
		case <-ctx.Done():
			_ = srv.Close()
			shared.Close()
			return nil, ctx.Err()
		case req = <-requests:
		}
		attempt := cfg
		attempt.AdminUser, attempt.AdminPassword = req.Username, req.Password
		var nodeLn *connQueue
		// The node's API server takes the socket; the setup server then
		// closes its idle connections and stops.
		attempt.Listen = func(network, addr string) (net.Listener, error) {
			if addr != cfg.APIAddr {
				return cfg.Listen(network, addr)
			}
			nodeLn = shared.take()
			if srv != nil { // nil when an earlier attempt took the socket and failed
				go func(old *http.Server) { _ = old.Shutdown(context.Background()) }(srv)
				srv = nil
			}
			return nodeLn, nil
		}
		var n *Node
		switch req.Action {
		case httpapi.SetupCreateCluster:
			attempt.Bootstrap = true
			if req.ClusterName != "" {
				attempt.ClusterName = req.ClusterName
			}
			n, err = Start(ctx, attempt)
		case httpapi.SetupJoinCluster:
			// join_cluster's body (the setup API of Redis Enterprise) has
			// no field for the cluster CA: unless cnmd was started with
			// one, the member is trusted like the client that sent the
			// credentials here, on a certificate it could not check.
			if cfg.JoinCAFingerprint == "" && cfg.JoinCAFile == "" {
				attempt.JoinInsecure = true
			}
			// One bound for the whole request: a member that does not
			// answer must end in an error the client sees and can retry,
			// not in "initiated" for as long as joins retry.
			jctx, cancel := context.WithTimeout(ctx, cfg.SetupJoinTimeout)
			for _, u := range req.Nodes {
				attempt.Join = u
				if n, err = Start(jctx, attempt); err == nil {
					break
				}
				err = fmt.Errorf("join via %s: %w", u, err)
				log.Warn("join over REST failed", "via", u, "error", err)
				if srv == nil {
					srv = serveSetup() // answer while the next member is tried
				}
				if jctx.Err() != nil {
					break
				}
			}
			cancel()
		}
		if err == nil {
			// From now on the node's server owns the socket: closing it
			// frees the port.
			nodeLn.last.Store(shared)
			return n, nil
		}
		log.Error("setup over REST failed", "action", req.Action, "error", err)
		if srv == nil {
			// The node had taken the socket before it failed.
			srv = serveSetup()
		}
		mu.Lock()
		status = httpapi.SetupStatus{State: httpapi.SetupError, ErrorCode: "setup_failed", ErrorMessage: err.Error()}
		mu.Unlock()
	}
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
