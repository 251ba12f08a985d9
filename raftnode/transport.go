package raftnode

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// DialFunc opens a TCP connection from localAddr (a host, may be empty) to
// remote. The daemon binds every node-to-node connection to the node's own
// address so that firewall rules between node addresses take effect; tests
// put a fault-injecting network here.
type DialFunc func(ctx context.Context, network, localAddr, remote string) (net.Conn, error)

// DefaultDial dials with a net.Dialer bound to localAddr when it is an IP.
func DefaultDial(ctx context.Context, network, localAddr, remote string) (net.Conn, error) {
	d := net.Dialer{}
	if ip := net.ParseIP(localAddr); ip != nil && !ip.IsUnspecified() {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return d.DialContext(ctx, network, remote)
}

// inboundLimits bound what strangers can hold on the raft port (SPEC §9).
type inboundLimits struct {
	// handshakeTimeout: a connection that has not completed its TLS
	// handshake by then is closed.
	handshakeTimeout time.Duration
	// maxHandshakes caps connections still handshaking. At the cap the
	// oldest one is closed to make room: a member's handshake takes a few
	// round trips, so to keep it out a flood would have to replace the
	// whole cap within that time, while refusing new connections instead
	// would let a handful of idle sockets lock every member out.
	maxHandshakes int
	// maxConns caps authenticated connections (members only); beyond it
	// new ones are closed. It is a backstop against a runaway member, far
	// above the few pooled connections each peer keeps.
	maxConns int
}

// tlsStream is raft's stream layer: TCP with mutual TLS under the cluster CA,
// so that only nodes of this cluster can speak raft to each other.
//
// Handshakes run here, one goroutine each, under a deadline, and raft's
// Accept only ever sees authenticated connections: raft's own accept loop
// would otherwise hand every socket, idle or not, to a reader with no
// deadline, and thousands of idle connections would use up the process's
// file descriptors.
type tlsStream struct {
	raw       net.Listener
	server    *tls.Config
	limits    inboundLimits
	advertise net.Addr
	localHost string
	dial      DialFunc
	client    *tls.Config
	log       *slog.Logger

	ready     chan net.Conn // authenticated, for Accept
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.Mutex
	pending *list.List // of net.Conn still handshaking, oldest first
	open    int        // authenticated connections not yet closed
	// conns are the authenticated inbound connections, checked again
	// now and then: a peer certificate revoked after the handshake (its
	// node was removed) must not keep a connection raft would serve.
	conns map[*countedConn]struct{}
}

// recheckEvery is how often open inbound connections are checked again.
const recheckEvery = time.Second

var _ raft.StreamLayer = (*tlsStream)(nil)

func newTLSStream(ln net.Listener, advertise string, dial DialFunc, server, client *tls.Config, limits inboundLimits, log *slog.Logger) (*tlsStream, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("resolve raft address %s: %w", advertise, err)
	}
	if dial == nil {
		dial = DefaultDial
	}
	s := &tlsStream{
		raw:       ln,
		server:    server,
		limits:    limits,
		advertise: adv,
		localHost: adv.IP.String(),
		dial:      dial,
		client:    client,
		log:       log,
		ready:     make(chan net.Conn),
		closed:    make(chan struct{}),
		pending:   list.New(),
		conns:     map[*countedConn]struct{}{},
	}
	s.wg.Add(2)
	go s.acceptLoop()
	go s.recheckLoop()
	return s, nil
}

// recheckLoop closes inbound connections whose peer certificate the
// server config's VerifyConnection (the peer check) now refuses.
func (s *tlsStream) recheckLoop() {
	defer s.wg.Done()
	if s.server.VerifyConnection == nil {
		return
	}
	t := time.NewTicker(recheckEvery)
	defer t.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
		}
		s.mu.Lock()
		conns := make([]*countedConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			if err := s.server.VerifyConnection(c.tls.ConnectionState()); err != nil {
				s.log.Warn("closed a raft connection: its peer certificate is no longer accepted", "remote", c.RemoteAddr().String(), "error", err)
				_ = c.Close()
			}
		}
	}
}

func (s *tlsStream) Addr() net.Addr { return s.advertise }

// Accept returns the next authenticated connection.
func (s *tlsStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.ready:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes the connections still handshaking;
// authenticated ones belong to raft, which closes them itself.
func (s *tlsStream) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		err = s.raw.Close()
		s.mu.Lock()
		for e := s.pending.Front(); e != nil; e = e.Next() {
			_ = e.Value.(net.Conn).Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return err
}

func (s *tlsStream) acceptLoop() {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := s.raw.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as http.Server
			// does, rather than spin or go deaf.
			s.log.Warn("accept raft connection", "error", err, "retry_in", backoff)
			select {
			case <-s.closed:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		s.admit(c)
	}
}

// admit starts c's handshake, closing the oldest handshake at the cap.
func (s *tlsStream) admit(c net.Conn) {
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		_ = c.Close()
		return
	default:
	}
	for s.pending.Len() >= s.limits.maxHandshakes {
		old := s.pending.Remove(s.pending.Front()).(net.Conn)
		_ = old.Close()
		s.log.Debug("closed a raft connection still handshaking: too many", "remote", old.RemoteAddr().String(), "max_handshakes", s.limits.maxHandshakes)
	}
	e := s.pending.PushBack(c)
	s.wg.Add(1)
	s.mu.Unlock()
	go s.handshake(c, e)
}

func (s *tlsStream) handshake(c net.Conn, e *list.Element) {
	defer s.wg.Done()
	_ = c.SetDeadline(time.Now().Add(s.limits.handshakeTimeout))
	tc := tls.Server(c, s.server)
	err := tc.Handshake()
	s.mu.Lock()
	s.pending.Remove(e) // a no-op when admit evicted it
	admitted := false
	if err == nil && s.open < s.limits.maxConns {
		s.open++
		admitted = true
	}
	s.mu.Unlock()
	if err != nil {
		_ = c.Close()
		s.log.Debug("raft connection closed before its tls handshake completed", "remote", c.RemoteAddr().String(), "error", err)
		return
	}
	if !admitted {
		_ = tc.Close()
		s.log.Warn("refused an authenticated raft connection: too many open", "remote", c.RemoteAddr().String(), "max_conns", s.limits.maxConns)
		return
	}
	_ = c.SetDeadline(time.Time{})
	cc := &countedConn{Conn: tc, tls: tc}
	cc.release = func() { s.release(cc) }
	s.mu.Lock()
	s.conns[cc] = struct{}{}
	s.mu.Unlock()
	select {
	case s.ready <- cc:
	case <-s.closed:
		_ = cc.Close()
	}
}

func (s *tlsStream) release(c *countedConn) {
	s.mu.Lock()
	s.open--
	delete(s.conns, c)
	s.mu.Unlock()
}

// countedConn gives its slot back when closed, once.
type countedConn struct {
	net.Conn
	tls     *tls.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := s.dial(ctx, "tcp", s.localHost, string(address))
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
	}
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft peer address %s: %w", address, err)
	}
	cfg := s.client.Clone()
	cfg.ServerName = host
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tls handshake with raft peer %s: %w", address, err)
	}
	return tc, nil
}

// openTransport listens on cfg.RaftAddr and puts raft's network transport
// over the TLS stream there. On error the listener is closed.
func openTransport(cfg Config, log *slog.Logger, hlog hclog.Logger) (*raft.NetworkTransport, error) {
	ln, err := cfg.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for raft on %s: %w", cfg.RaftAddr, err)
	}
	limits := inboundLimits{handshakeTimeout: cfg.HandshakeTimeout, maxHandshakes: cfg.MaxHandshakes, maxConns: cfg.MaxConns}
	stream, err := newTLSStream(ln, cfg.RaftAddr, cfg.Dial, cfg.ServerTLS, cfg.ClientTLS, limits, log.With("subsystem", "raft.transport"))
	if err != nil {
		ln.Close()
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  hlog,
	}), nil
}
