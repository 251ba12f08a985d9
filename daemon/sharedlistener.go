package daemon

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

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
