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
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		waiting := b.next != nil
		b.mu.Unlock()
		if waiting || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond) // polling for the goroutines to queue, with a deadline
	}
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
