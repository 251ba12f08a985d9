package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
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

// sharedListener accepts on one socket and hands each connection to the
// server that owns the socket at that moment. A connection accepted while
// no server owns it waits for the next owner.
type sharedListener struct {
	raw     net.Listener
	closed  chan struct{}
	mu      sync.Mutex
	owner   *connQueue
	changed chan struct{} // closed when the owner changes
	start   sync.Once
	stop    sync.Once
}

func newSharedListener(raw net.Listener) *sharedListener {
	return &sharedListener{raw: raw, closed: make(chan struct{}), changed: make(chan struct{})}
}

// take makes a new queue the owner of the socket and returns it.
func (s *sharedListener) take() *connQueue {
	q := &connQueue{conns: make(chan net.Conn), done: make(chan struct{}), closed: s.closed, addr: s.raw.Addr()}
	s.mu.Lock()
	s.owner = q
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.start.Do(func() { go s.pump() })
	return q
}

// Close closes the socket; connections waiting for an owner are dropped.
func (s *sharedListener) Close() {
	s.stop.Do(func() {
		close(s.closed)
		_ = s.raw.Close()
	})
}

func (s *sharedListener) pump() {
	backoff := 5 * time.Millisecond
	for {
		c, err := s.raw.Accept()
		if errors.Is(err, net.ErrClosed) {
			s.Close()
			return
		}
		if err != nil {
			// Out of file descriptors and the like: wait, as http.Server
			// does, rather than go deaf.
			select {
			case <-s.closed:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !s.deliver(c) {
			_ = c.Close()
			return
		}
	}
}

// deliver hands c to the current owner, waiting for a new owner while the
// current one is closed; false once the socket is closed.
func (s *sharedListener) deliver(c net.Conn) bool {
	for {
		s.mu.Lock()
		q, changed := s.owner, s.changed
		s.mu.Unlock()
		select {
		case <-q.done: // a closed owner gets nothing, even if it still accepts
			select {
			case <-changed:
				continue
			case <-s.closed:
				return false
			}
		default:
		}
		select {
		case q.conns <- c:
			return true
		case <-changed:
		case <-s.closed:
			return false
		case <-q.done:
			select {
			case <-changed:
			case <-s.closed:
				return false
			}
		}
	}
}

// connQueue is one owner's view of a sharedListener.
type connQueue struct {
	conns  chan net.Conn
	done   chan struct{}
	closed <-chan struct{} // the socket's
	once   sync.Once
	addr   net.Addr
	// last: closing this queue closes the socket (the node owns it for good).
	last atomic.Pointer[sharedListener]
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case <-q.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() {
		close(q.done)
		if s := q.last.Load(); s != nil {
			s.Close()
		}
	})
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
