package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"cnm/fsm"
)

type readQuery struct {
	stale    bool
	blocking bool
	index    uint64
	wait     time.Duration
}

func parseReadQuery(r *http.Request) (readQuery, error) {
	var q readQuery
	v := r.URL.Query()
	for _, k := range []string{"stale", "index", "wait"} {
		if v.Has(k) && v.Get(k) == "" {
			return q, fsm.ErrInvalidParameter.With(k + " needs a value, as in ?stale=true or ?index=N&wait=30s")
		}
	}
	if s := v.Get("stale"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, fsm.ErrInvalidParameter.With("stale must be true or false, got " + strconv.Quote(s))
		}
		q.stale = b
	}
	if s := v.Get("index"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return q, fsm.ErrInvalidParameter.With("index must be a raft index (a non-negative integer), got " + strconv.Quote(s))
		}
		q.blocking, q.index, q.wait = true, n, defaultWait
	}
	if s := v.Get("wait"); s != "" {
		if !q.blocking {
			return q, fsm.ErrInvalidParameter.With("wait needs index: ?index=N&wait=30s")
		}
		d, err := parseWait(s)
		if err != nil || d < 0 {
			return q, fsm.ErrInvalidParameter.With("wait must be a duration such as 30s or 2m, got " + strconv.Quote(s))
		}
		q.wait = min(d, maxWait)
	}
	return q, nil
}

// parseWait accepts Go durations ("30s", "1m30s") and plain seconds ("30").
func parseWait(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

// waitIndex blocks until the local state moves past index, wait passes,
// the client goes away, or the node shuts down.
func (s *Server) waitIndex(ctx context.Context, index uint64, wait time.Duration) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	s.metrics.waiting.Inc()
	defer s.metrics.waiting.Dec()
	for {
		changed := s.fsm.Changed()
		if s.fsm.Applied() > index {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		case <-s.stopping:
			return
		}
	}
}

func errNoQuorum(desc string) *fsm.Error {
	return fsm.ErrNoQuorum.With(desc)
}

// retryPause is how often a request without a reachable leader looks again.
const retryPause = 20 * time.Millisecond

// linearize makes the local state reflect every write acknowledged before it
// was called: it obtains a read index from the leader (or is the leader) and
// waits until the local FSM has applied it.
func (s *Server) linearize(ctx context.Context) error {
	deadline := time.Now().Add(s.hold)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for {
		idx, err := s.readIndex.get(ctx)
		if err == nil {
			if err := s.raft.WaitApplied(ctx, idx); err != nil {
				return s.noQuorum(ctx, "this node could not catch up with the leader in time")
			}
			return nil
		}
		s.log.Debug("read index", "error", err)
		if err := pause(ctx); err != nil {
			return s.noQuorum(ctx, "no leader with a quorum answered within "+s.hold.String())
		}
	}
}

// readIndexFromLeader fetches one read index; linearize shares each
// fetch among the reads that wait for it (readIndexBatch).
func (s *Server) readIndexFromLeader(ctx context.Context) (uint64, error) {
	if s.raft.IsLeader() {
		return s.raft.ReadIndex(ctx)
	}
	addr, err := s.peer.LeaderAddr()
	if err != nil {
		return 0, err
	}
	return s.peers.ReadIndex(ctx, addr)
}

// noQuorum is the answer when the hold ran out; if the client went away
// first, its own context error is returned instead.
func (s *Server) noQuorum(ctx context.Context, desc string) error {
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return errNoQuorum(desc)
}

// pause waits retryPause or until ctx ends.
func pause(ctx context.Context) error {
	t := time.NewTimer(retryPause)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) serveLocal(w http.ResponseWriter, r *http.Request, rt route) error {
	p, err := s.authorize(r, rt.perm)
	if err != nil {
		return err
	}
	return rt.h(w, r, p)
}

func (s *Server) serveRead(w http.ResponseWriter, r *http.Request, rt route) error {
	q, err := parseReadQuery(r)
	if err != nil {
		return err
	}
	// Check the caller before waiting on anything on their behalf.
	if _, err := s.authorizeLinearized(r, rt.perm); err != nil {
		return err
	}
	if q.blocking {
		s.waitIndex(r.Context(), q.index, q.wait)
	}
	if !q.stale {
		if err := s.linearize(r.Context()); err != nil {
			return err
		}
	}
	// Authenticate again on the state the answer comes from, so that a
	// password or role changed before this read began is in force.
	p, err := s.authorize(r, rt.perm)
	if err != nil {
		return err
	}
	return rt.h(w, r, p)
}
