package daemon

import (
	"container/list"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// APILimits bound what clients can hold on the API port (SPEC §9), so that
// idle or half-open connections cannot use up the node's file descriptors
// and the API keeps answering.
type APILimits struct {
	// HandshakeTimeout bounds the TLS handshake and the reading of a
	// request's header (default 5 s).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that has waited that
	// long for its next request (default 2 min).
	IdleTimeout time.Duration
	// MaxConns caps open connections (default 1024). A new connection
	// beyond it closes the one that has been idle, or waiting for its
	// first request, the longest; if every connection is busy with a
	// request, the new one is closed instead.
	MaxConns int
}

// API limit defaults.
const (
	DefaultAPIHandshakeTimeout = 5 * time.Second
	DefaultAPIIdleTimeout      = 2 * time.Minute
	DefaultAPIMaxConns         = 1024
)

func (l *APILimits) withDefaults() {
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = DefaultAPIHandshakeTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultAPIIdleTimeout
	}
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultAPIMaxConns
	}
}

// newAPIServer is the HTTPS server of both the node API and the setup API.
// The TLS handshake gets the header timeout as its deadline (net/http
// takes the shortest of its read timeouts for it).
func newAPIServer(h http.Handler, limits APILimits, log *slog.Logger) *http.Server {
	cl := newConnLimiter(limits.MaxConns, log)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: limits.HandshakeTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      11 * time.Minute, // blocking reads wait up to 10 min
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ConnState:         cl.track,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// connLimiter keeps an http.Server's connections under a cap. It works
// from the server's ConnState hook rather than wrapping the listener: the
// server must see the *tls.Conn itself (for HTTP/2 and the handshake), and
// the hook is where it says which connections are idle. Idle HTTP/2
// connections are reported as idle too.
type connLimiter struct {
	max int
	log *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]*connEntry // open, as the server counts them
	idle  *list.List              // of net.Conn, new or idle, longest first
	open  int                     // connections not yet closed by us or the server
}

func newConnLimiter(max int, log *slog.Logger) *connLimiter {
	return &connLimiter{max: max, idle: list.New(), conns: map[net.Conn]*connEntry{}, log: log}
}

type connEntry struct {
	idle   *list.Element // nil while a request runs
	closed bool          // closed by us; the server reports it later
}

func (l *connLimiter) track(c net.Conn, state http.ConnState) {
	var victims []net.Conn
	defer func() {
		for _, v := range victims {
			closeNow(v)
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.conns[c]
	switch state {
	case http.StateNew:
		e = &connEntry{}
		l.conns[c] = e
		l.open++
		e.idle = l.idle.PushBack(c)
		for l.open > l.max {
			// c is the newest, at the back: when it is also the front,
			// every other connection is busy and c goes.
			front := l.idle.Front()
			if front == nil {
				break // cannot happen: c itself is on the list
			}
			victim := front.Value.(net.Conn)
			l.dropLocked(victim)
			victims = append(victims, victim)
			if victim == c {
				l.log.Warn("refused an api connection: every connection is busy", "max_conns", l.max)
			}
		}
	case http.StateActive:
		if e != nil && e.idle != nil {
			l.idle.Remove(e.idle)
			e.idle = nil
		}
	case http.StateIdle:
		if e != nil && !e.closed && e.idle == nil {
			e.idle = l.idle.PushBack(c)
		}
	case http.StateHijacked, http.StateClosed:
		if e == nil {
			return
		}
		if e.idle != nil {
			l.idle.Remove(e.idle)
		}
		if !e.closed {
			l.open--
		}
		delete(l.conns, c)
	}
}

// dropLocked stops counting c, which the caller closes at once: its
// descriptor is free even before the server notices.
func (l *connLimiter) dropLocked(c net.Conn) {
	e := l.conns[c]
	if e.idle != nil {
		l.idle.Remove(e.idle)
		e.idle = nil
	}
	e.closed = true
	l.open--
}

// closeNow closes the socket under a TLS connection: tls.Conn.Close would
// first send a close alert, which a client that does not read can stall
// for seconds.
func closeNow(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.NetConn().Close()
		return
	}
	_ = c.Close()
}
