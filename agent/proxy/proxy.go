package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what a proxy needs to start. Zero durations take the defaults.
type Config struct {
	// Addr is the host:port to listen on; port 0 picks a free one (see Addr).
	Addr string
	// Shards is the initial routing table.
	Shards []Shard
	// HoldTimeout bounds how long a command for a switching slot waits
	// before it is answered TRYAGAIN. Default 2s.
	HoldTimeout time.Duration
	// DialTimeout bounds each connection attempt to a master. Default 1s.
	DialTimeout time.Duration
	// DrainTimeout bounds how long Close waits for in-flight commands
	// before it cuts their upstream connections (Shutdown takes a context
	// instead). Default 5s.
	DrainTimeout time.Duration
	// Logger receives connection and upstream events; nil discards them.
	Logger *slog.Logger

	// dial replaces dialUpstream in tests, which need a dial that fails at
	// a moment of their choosing.
	dial func(ctx context.Context, addr string, timeout time.Duration) (*upstream, error)
}

// Proxy is a running RESP proxy. Its methods are safe for concurrent use.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	router *router
	ln     net.Listener

	// ctx is the parent of every session; cancelling it cuts all upstream
	// connections, which Close does only when draining takes too long.
	ctx    context.Context
	cancel context.CancelFunc

	// closing is read by every session between commands, hence atomic;
	// it is written under mu so no session registers after Close swept.
	closing  atomic.Bool
	mu       sync.Mutex
	sessions map[*session]struct{}
	wg       sync.WaitGroup // the accept loop and every session
	closeErr error
	closed   chan struct{}
}

// Listen validates cfg, binds cfg.Addr and serves clients in the
// background until Close. ctx bounds only the bind.
func Listen(ctx context.Context, cfg Config) (*Proxy, error) {
	if cfg.HoldTimeout <= 0 {
		cfg.HoldTimeout = 2 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	if cfg.dial == nil {
		cfg.dial = dialUpstream
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := newRouter(cfg.Shards)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen on %s: %w", cfg.Addr, err)
	}
	pctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		cfg: cfg, log: log.With("proxy", ln.Addr().String()), router: r, ln: ln,
		ctx: pctx, cancel: cancel,
		sessions: map[*session]struct{}{}, closed: make(chan struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	p.log.Info("proxy listening", "shards", len(cfg.Shards))
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// SetShards replaces the routing table atomically: every command routed
// after it returns sees the new table, none sees a mix. Commands held for a
// switch-over look again, but stay held while their slots are marked.
func (p *Proxy) SetShards(shards []Shard) error {
	if err := p.router.replace(shards); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	p.log.Info("routing table replaced", "shards", len(shards))
	return nil
}

// Shards returns a copy of the routing table in force, so that the caller
// can tell whether its own view changed since it last set one.
func (p *Proxy) Shards() []Shard { return p.router.table() }

// MarkSwitching marks slot ranges as switching over to another master until
// the returned Switchover's Done. Marks may overlap; a slot is free when
// every mark on it is done.
func (p *Proxy) MarkSwitching(ranges ...SlotRange) (*Switchover, error) {
	sw, err := p.router.mark(ranges)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return sw, nil
}

// MarkShardSwitching marks the slots the shard owns now; a later table
// change does not move the mark, Done lifts exactly those slots.
func (p *Proxy) MarkShardSwitching(shardID string) (*Switchover, error) {
	ranges, ok := p.router.shardSlots(shardID)
	if !ok {
		return nil, fmt.Errorf("proxy: no shard %q: %w", shardID, ErrBadTable)
	}
	return p.MarkSwitching(ranges...)
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Error("accept failed; proxy stops accepting", "err", err)
			}
			return
		}
		s := newSession(p, nc)
		p.mu.Lock()
		if p.closing.Load() {
			p.mu.Unlock()
			_ = nc.Close()
			continue
		}
		p.sessions[s] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go func() {
			defer p.wg.Done()
			s.run()
			p.mu.Lock()
			delete(p.sessions, s)
			p.mu.Unlock()
		}()
	}
}

func (p *Proxy) isClosing() bool { return p.closing.Load() }

// Close is Shutdown bounded by the configured DrainTimeout.
func (p *Proxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	defer cancel()
	return p.Shutdown(ctx)
}

// Shutdown stops accepting, lets every client finish the command it is
// running (a held one included), then closes the client connections. A
// command still running when ctx ends has its upstream cut and its client
// gets an error, so Shutdown returns soon after ctx ends even when a master
// hangs. A second call waits for the first.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closing.Load() {
		p.mu.Unlock()
		<-p.closed
		return p.closeErr
	}
	p.closing.Store(true)
	err := p.ln.Close()
	for s := range p.sessions {
		s.wake()
	}
	p.mu.Unlock()

	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		p.log.Warn("in-flight commands outlived the drain; cutting them", "err", ctx.Err())
		p.cancel()
		<-done
	}
	p.cancel()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		p.closeErr = fmt.Errorf("proxy: close listener: %w", err)
	}
	close(p.closed)
	p.log.Info("proxy closed")
	return p.closeErr
}
