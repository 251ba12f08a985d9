package httpapi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Each read gets an index fetched after it arrived, and reads that arrive
// while a fetch is out share the next one.
func TestReadIndexBatch_IndexIsFetchedAfterTheReadArrived(t *testing.T) {
	var fetches atomic.Uint64
	release := make(chan struct{})
	started := make(chan uint64, 16)
	b := newReadIndexBatch(func(context.Context) (uint64, error) {
		n := fetches.Add(1)
		started <- n
		<-release
		return n, nil
	}, time.Second)

	// The first read starts fetch 1.
	first := make(chan uint64, 1)
	go func() { i, _ := b.get(context.Background()); first <- i }()
	if n := <-started; n != 1 {
		t.Fatalf("fetch %d started, want 1", n)
	}
	// Ten reads arrive while fetch 1 is out: none may use its answer.
	var wg sync.WaitGroup
	got := make([]uint64, 10)
	var joined sync.WaitGroup
	for i := range got {
		wg.Add(1)
		joined.Add(1)
		go func() {
			defer wg.Done()
			joined.Done()
			got[i], _ = b.get(context.Background())
		}()
	}
	joined.Wait()
	// Every read is queued on the batch after fetch 1 once next holds it.
	awaitQueued(b)
	close(release)
	if i := <-first; i != 1 {
		t.Fatalf("first read got index %d, want 1", i)
	}
	wg.Wait()
	for i, idx := range got {
		if idx < 2 {
			t.Fatalf("read %d, which arrived during fetch 1, got index %d", i, idx)
		}
	}
	if n := fetches.Load(); n > 11 || n < 2 {
		t.Fatalf("%d fetches for 11 reads", n)
	}
}

// Up to readIndexDepth fetches are out at once: a read that arrives while
// one is out starts the next at once, and one that finds them all out
// waits for a free one, never for an answer fetched before it arrived.
func TestReadIndexBatch_FetchesOverlapUpToTheDepth(t *testing.T) {
	var fetches atomic.Uint64
	releases := make(chan chan struct{}, readIndexDepth+2)
	b := newReadIndexBatch(func(context.Context) (uint64, error) {
		n := fetches.Add(1)
		release := make(chan struct{})
		releases <- release
		<-release
		return n, nil
	}, 10*time.Second)
	read := func() <-chan uint64 {
		got := make(chan uint64, 1)
		go func() { i, _ := b.get(context.Background()); got <- i }()
		return got
	}
	next := func() chan struct{} {
		select {
		case r := <-releases:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no fetch started")
			return nil
		}
	}
	// Each read while fewer than the depth are out starts its own fetch.
	var reads []<-chan uint64
	var released []chan struct{}
	for range readIndexDepth {
		reads = append(reads, read())
		released = append(released, next())
	}
	last := read() // all are out: this one waits for a free one
	if !awaitQueued(b) {
		t.Fatal("the read past the depth never queued")
	}
	if n := fetches.Load(); n != readIndexDepth {
		t.Fatalf("%d fetches out, want %d", n, readIndexDepth)
	}
	// The newest fetch answers first: its read gets its index, and the
	// waiting read's fetch starts in the slot it freed.
	close(released[readIndexDepth-1])
	if i := <-reads[readIndexDepth-1]; i != readIndexDepth {
		t.Fatalf("read %d got index %d", readIndexDepth, i)
	}
	releaseLast := next()
	for i := range readIndexDepth - 1 {
		close(released[i])
		if got := <-reads[i]; got != uint64(i+1) {
			t.Fatalf("read %d got index %d", i+1, got)
		}
	}
	close(releaseLast)
	if i := <-last; i != readIndexDepth+1 {
		t.Fatalf("the read past the depth got index %d, want %d (fetched after it arrived)", i, readIndexDepth+1)
	}
}

// awaitQueued polls, for up to 5 s, until a read waits on b's next batch,
// and reports whether one did.
func awaitQueued(b *readIndexBatch) bool {
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		queued := b.next != nil
		b.mu.Unlock()
		if queued {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond) // polling for the goroutines to queue, with a deadline
	}
}

func TestReadIndexBatch_ErrorsAndCancelledReads(t *testing.T) {
	boom := errors.New("no leader")
	b := newReadIndexBatch(func(context.Context) (uint64, error) { return 0, boom }, time.Second)
	if _, err := b.get(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("get = %v, want the fetch's error", err)
	}
	block := make(chan struct{})
	defer close(block)
	b = newReadIndexBatch(func(ctx context.Context) (uint64, error) { <-block; return 1, nil }, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("get with a cancelled context = %v", err)
	}
}
