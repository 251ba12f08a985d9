package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"cnm/raftnode"
)

// FaultNet is the network of a test cluster: real TCP on loopback, with
// partitions between node addresses. Every node binds its own 127.0.0.x
// address, so a connection's two hosts name the two nodes it joins.
type FaultNet struct {
	mu      sync.Mutex
	blocked map[[2]string]bool
	conns   map[*faultConn]struct{}
	// listeners opened ahead of time so that ports are chosen by the OS and
	// known before a node starts.
	reserved map[string]net.Listener
}

// NewFaultNet returns a network with no faults.
func NewFaultNet() *FaultNet {
	return &FaultNet{blocked: map[[2]string]bool{}, conns: map[*faultConn]struct{}{}, reserved: map[string]net.Listener{}}
}

// Reserve opens a listener on host with a port chosen by the OS and returns
// its address; the next Listen on that address gets this listener.
func (f *FaultNet) Reserve(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("reserve port on %s: %w", host, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reserved[ln.Addr().String()] = ln
	return ln.Addr().String(), nil
}

// Listen hands out a reserved listener or listens anew (a restarted node
// takes its old port again).
func (f *FaultNet) Listen(network, addr string) (net.Listener, error) {
	f.mu.Lock()
	ln, ok := f.reserved[addr]
	delete(f.reserved, addr)
	f.mu.Unlock()
	if !ok {
		var err error
		if ln, err = net.Listen(network, addr); err != nil {
			return nil, err
		}
	}
	return &faultListener{Listener: ln, net: f}, nil
}

// Close closes listeners that were reserved but never used.
func (f *FaultNet) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, ln := range f.reserved {
		ln.Close()
		delete(f.reserved, k)
	}
}

var _ raftnode.DialFunc = (*FaultNet)(nil).Dial

// Dial connects from localHost to remote unless a partition separates them,
// in which case it fails as a refused connection would.
func (f *FaultNet) Dial(ctx context.Context, network, localHost, remote string) (net.Conn, error) {
	rh, _, err := net.SplitHostPort(remote)
	if err != nil {
		return nil, err
	}
	if f.isBlocked(localHost, rh) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	c, err := raftnode.DefaultDial(ctx, network, localHost, remote)
	if err != nil {
		return nil, err
	}
	return f.track(c), nil
}

func key(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func (f *FaultNet) isBlocked(a, b string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked[key(a, b)]
}

// Partition cuts every host of side a off from every host of side b, and
// drops the connections already open between them.
func (f *FaultNet) Partition(a, b []string) {
	f.mu.Lock()
	for _, x := range a {
		for _, y := range b {
			f.blocked[key(x, y)] = true
		}
	}
	var cut []*faultConn
	for c := range f.conns {
		if f.blocked[key(c.local, c.remote)] {
			cut = append(cut, c)
		}
	}
	f.mu.Unlock()
	for _, c := range cut {
		c.Close()
	}
}

// Heal removes every partition.
func (f *FaultNet) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.blocked)
}

func hostOf(a net.Addr) string {
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

func (f *FaultNet) track(c net.Conn) net.Conn {
	fc := &faultConn{Conn: c, net: f, local: hostOf(c.LocalAddr()), remote: hostOf(c.RemoteAddr())}
	f.mu.Lock()
	f.conns[fc] = struct{}{}
	f.mu.Unlock()
	return fc
}

type faultListener struct {
	net.Listener
	net *FaultNet
}

func (l *faultListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.net.isBlocked(hostOf(c.LocalAddr()), hostOf(c.RemoteAddr())) {
			c.Close()
			continue
		}
		return l.net.track(c), nil
	}
}

var errPartitioned = errors.New("partitioned")

type faultConn struct {
	net.Conn
	net           *FaultNet
	local, remote string
	once          sync.Once
}

func (c *faultConn) Read(b []byte) (int, error) {
	if c.net.isBlocked(c.local, c.remote) {
		c.Close()
		return 0, errPartitioned
	}
	return c.Conn.Read(b)
}

func (c *faultConn) Write(b []byte) (int, error) {
	if c.net.isBlocked(c.local, c.remote) {
		c.Close()
		return 0, errPartitioned
	}
	return c.Conn.Write(b)
}

func (c *faultConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.net.mu.Lock()
		delete(c.net.conns, c)
		c.net.mu.Unlock()
	})
	return err
}
