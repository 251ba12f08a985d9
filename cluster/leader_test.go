package cluster

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

type fakeLeadership struct {
	mu      sync.Mutex
	term    uint64
	changed chan struct{}
}

func newFakeLeadership() *fakeLeadership { return &fakeLeadership{changed: make(chan struct{})} }

func (f *fakeLeadership) Leadership() (uint64, bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.term, f.term != 0, f.changed
}

func (f *fakeLeadership) set(term uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.term = term
	close(f.changed)
	f.changed = make(chan struct{})
}

// recorder is a worker that logs its starts and stops and detects overlap.
type recorder struct {
	mu      sync.Mutex
	events  []string
	active  int
	overlap bool
	started chan uint64
	release chan struct{} // a worker lingers after cancel until released
}

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) Run(ctx context.Context, term uint64) {
	r.mu.Lock()
	r.active++
	if r.active > 1 {
		r.overlap = true
	}
	r.events = append(r.events, "start")
	r.mu.Unlock()
	r.started <- term
	<-ctx.Done()
	<-r.release
	r.mu.Lock()
	r.active--
	r.events = append(r.events, "stop")
	r.mu.Unlock()
}

func waitTerm(t *testing.T, ch <-chan uint64, want uint64) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("worker started for term %d, want %d", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("worker for term %d never started", want)
	}
}

func TestLeaderLoop_WorkersOfConsecutiveTermsNeverOverlap(t *testing.T) {
	lead := newFakeLeadership()
	rec := &recorder{started: make(chan uint64, 4), release: make(chan struct{})}
	loop := NewLeaderLoop(lead, slog.New(slog.DiscardHandler), rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { loop.Run(ctx); close(done) }()

	lead.set(3)
	waitTerm(t, rec.started, 3)
	// Lost and regained at once: the term-3 worker is cancelled but has not
	// returned, so the term-4 worker must not start yet.
	lead.set(4)
	select {
	case term := <-rec.started:
		t.Fatalf("worker for term %d started while the term-3 worker still ran", term)
	case <-time.After(50 * time.Millisecond):
	}
	rec.release <- struct{}{}
	waitTerm(t, rec.started, 4)

	lead.set(0)
	rec.release <- struct{}{}
	cancel()
	<-done
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.overlap {
		t.Fatal("workers of two terms ran at once")
	}
	want := []string{"start", "stop", "start", "stop"}
	if len(rec.events) != len(want) {
		t.Fatalf("events %v, want %v", rec.events, want)
	}
	for i := range want {
		if rec.events[i] != want[i] {
			t.Fatalf("events %v, want %v", rec.events, want)
		}
	}
}

func TestLeaderLoop_RunReturnsOnlyAfterWorkersReturn(t *testing.T) {
	lead := newFakeLeadership()
	rec := &recorder{started: make(chan uint64, 1), release: make(chan struct{})}
	loop := NewLeaderLoop(lead, slog.New(slog.DiscardHandler), rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { loop.Run(ctx); close(done) }()
	lead.set(7)
	waitTerm(t, rec.started, 7)
	cancel()
	select {
	case <-done:
		t.Fatal("Run returned while a worker was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(rec.release)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its worker did")
	}
}
