package raftnode

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

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

// tlsStream is raft's stream layer: TCP with mutual TLS under the cluster CA,
// so that only nodes of this cluster can speak raft to each other.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	localHost string
	dial      DialFunc
	client    *tls.Config
}

var _ raft.StreamLayer = (*tlsStream)(nil)

func newTLSStream(ln net.Listener, advertise string, dial DialFunc, server, client *tls.Config) (*tlsStream, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("resolve raft address %s: %w", advertise, err)
	}
	if dial == nil {
		dial = DefaultDial
	}
	return &tlsStream{
		Listener:  tls.NewListener(ln, server),
		advertise: adv,
		localHost: adv.IP.String(),
		dial:      dial,
		client:    client,
	}, nil
}

func (s *tlsStream) Addr() net.Addr { return s.advertise }

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
