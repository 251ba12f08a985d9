package httpapi

import (
	"context"
	"sync"
	"time"
)

// readIndexBatch lets concurrent linearizable reads share one read-index
// round trip (to the leader's raft, or from a follower to the leader over
// HTTPS) instead of one each. A read joins the batch that has not started
// yet; a batch starts only once the one before it is answered, so every
// read's read index is obtained after the read arrived, which is what
// makes it linearizable. Under load each round trip answers every read
// that arrived while the previous one was out.
type readIndexBatch struct {
	fetch   func(context.Context) (uint64, error)
	timeout time.Duration

	mu      sync.Mutex
	next    *indexBatch // the batch reads join; nil when none waits
	running bool        // a goroutine is fetching batches
}

type indexBatch struct {
	done  chan struct{}
	index uint64
	err   error
}

func newReadIndexBatch(fetch func(context.Context) (uint64, error), timeout time.Duration) *readIndexBatch {
	return &readIndexBatch{fetch: fetch, timeout: timeout}
}

// get returns a read index obtained after get was called.
func (b *readIndexBatch) get(ctx context.Context) (uint64, error) {
	b.mu.Lock()
	if b.next == nil {
		b.next = &indexBatch{done: make(chan struct{})}
	}
	bt := b.next
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	select {
	case <-bt.done:
		return bt.index, bt.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// loop fetches batches one after another until none waits.
func (b *readIndexBatch) loop() {
	for {
		b.mu.Lock()
		bt := b.next
		b.next = nil
		if bt == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		// No reader's context: the batch serves them all, and is bounded
		// by its own timeout.
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		bt.index, bt.err = b.fetch(ctx)
		cancel()
		close(bt.done)
	}
}
