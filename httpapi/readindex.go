package httpapi

import (
	"context"
	"sync"
	"time"
)

// readIndexBatch lets concurrent linearizable reads share one read-index
// round trip (to the leader's raft, or from a follower to the leader over
// HTTPS) instead of one each. A read joins the batch that has not started
// yet, and a batch starts once fewer than readIndexDepth are out, so every
// read's read index is obtained after the read arrived, which is what
// makes it linearizable. Under load each round trip answers every read
// that arrived while the ones before it were out.
type readIndexBatch struct {
	fetch   func(context.Context) (uint64, error)
	timeout time.Duration

	mu       sync.Mutex
	next     *indexBatch // the batch reads join; nil when none waits
	inflight int         // batches being fetched
}

// readIndexDepth is how many batches may be fetched at once. A read that
// arrives while a fetch is out waits for the next fetch to start and then
// for its answer: with one at a time that was one and a half fetches on
// average, and a follower's read spent 0.56-0.61 ms waiting for its index
// against 0.32-0.38 ms on the leader. Two at once gave 3-10% more reads
// through a follower in six runs set against one at a time; four gave less
// than two.
const readIndexDepth = 2

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
	if b.inflight < readIndexDepth {
		b.start()
	}
	b.mu.Unlock()
	select {
	case <-bt.done:
		return bt.index, bt.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// start fetches the waiting batch; b.mu is held. No read joins a batch
// once it started. When the fetch is done, the batch that waited
// meanwhile, if any, starts in its place.
func (b *readIndexBatch) start() {
	bt := b.next
	b.next = nil
	b.inflight++
	go func() {
		// No reader's context: the batch serves them all, and is bounded
		// by its own timeout.
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		bt.index, bt.err = b.fetch(ctx)
		cancel()
		close(bt.done)
		b.mu.Lock()
		defer b.mu.Unlock()
		b.inflight--
		if b.next != nil {
			b.start()
		}
	}()
}
