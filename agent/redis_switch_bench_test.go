package agent_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cnm/agent"
	"cnm/agent/proxy"
	"cnm/fsm"
)

// BenchmarkSwitchOverWriteGap measures what a master switch-over costs the
// writers of its slots, with nothing else in the way: three writers (SET,
// then WAIT 1 1000, as the data drill's) through an endpoint proxy, a
// replica promoted by its backend's switch-over, and the proxy's table
// changed once it is done. Reported: the longest time without an
// acknowledged write, and that as a ratio of the writers' longest
// interval while nothing switched (the same run, the second before).
func BenchmarkSwitchOverWriteGap(b *testing.B) {
	var gaps, ratios []float64
	for range b.N {
		gap, calm := switchOnce(b)
		gaps = append(gaps, float64(gap.Microseconds())/1000)
		ratios = append(ratios, float64(gap)/float64(calm))
	}
	b.ReportMetric(slices.Max(gaps), "max-gap-ms")
	b.ReportMetric(slices.Max(ratios), "gap/calm")
}

func switchOnce(b *testing.B) (gap, calm time.Duration) {
	b.StopTimer()
	ctx := b.Context()
	b1, b2 := newRedisBackend(b, redisOpts{}), newRedisBackend(b, redisOpts{})
	if err := b1.Materialise(ctx, agent.Spec{UID: "1", BDB: 1, Slots: "0-16383", Role: fsm.RoleMaster, Memory: 64 << 20}); err != nil {
		b.Fatal(err)
	}
	old := shardAddr(b, b1, "1")
	if err := b2.Materialise(ctx, agent.Spec{UID: "2", BDB: 1, Slots: "0-16383", Role: fsm.RoleSlave, Memory: 64 << 20, Master: old}); err != nil {
		b.Fatal(err)
	}
	eventually(b, 10*time.Second, func() error {
		if !redisInfo(b, b2, "2").InSync {
			return fmt.Errorf("replica not in sync")
		}
		return nil
	})
	px, err := proxy.Listen(ctx, proxy.Config{Addr: "127.0.0.1:0", Shards: []proxy.Shard{{ID: "1", Master: old, Slots: []proxy.SlotRange{{Start: 0, End: proxy.NumSlots - 1}}}}})
	if err != nil {
		b.Fatal(err)
	}
	defer px.Close()
	w := startAckWriters(px.Addr().String(), 3)
	time.Sleep(time.Second) // the writers' calm second, measured below
	split := time.Now()
	b.StartTimer()
	if err := b2.Promote(ctx, "2", old); err != nil {
		b.Fatal(err)
	}
	if err := px.SetShards([]proxy.Shard{{ID: "2", Master: shardAddr(b, b2, "2"), Slots: []proxy.SlotRange{{Start: 0, End: proxy.NumSlots - 1}}}}); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	time.Sleep(time.Second) // writes after the switch close the gap
	acks := w.stop()
	return longestAfter(acks, split), longestBefore(acks, split)
}

// ackWriters write unique keys until stopped, recording when each write
// was acknowledged (SET, then WAIT 1 counting a replica).
type ackWriters struct {
	mu   sync.Mutex
	acks []time.Time
	halt chan struct{}
	wg   sync.WaitGroup
}

func startAckWriters(addr string, n int) *ackWriters {
	w := &ackWriters{halt: make(chan struct{})}
	for i := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1, ReadTimeout: 5 * time.Second})
			defer c.Close()
			cn := c.Conn()
			defer cn.Close()
			ctx := context.Background()
			for seq := 0; ; seq++ {
				select {
				case <-w.halt:
					return
				default:
				}
				if cn.Set(ctx, fmt.Sprintf("w%d:%d", i, seq), "v", 0).Err() != nil {
					continue
				}
				if n, err := cn.Do(ctx, "WAIT", 1, 1000).Int64(); err != nil || n < 1 {
					continue
				}
				w.mu.Lock()
				w.acks = append(w.acks, time.Now())
				w.mu.Unlock()
			}
		}()
	}
	return w
}

func (w *ackWriters) stop() []time.Time {
	close(w.halt)
	w.wg.Wait()
	slices.SortFunc(w.acks, func(a, b time.Time) int { return a.Compare(b) })
	return w.acks
}

// longestAfter is the longest interval between consecutive acks that
// ends after t; longestBefore the longest that ends before it.
func longestAfter(acks []time.Time, t time.Time) time.Duration {
	var best time.Duration
	for i := 1; i < len(acks); i++ {
		if acks[i].After(t) {
			best = max(best, acks[i].Sub(acks[i-1]))
		}
	}
	return best
}

func longestBefore(acks []time.Time, t time.Time) time.Duration {
	var best time.Duration
	for i := 1; i < len(acks) && !acks[i].After(t); i++ {
		best = max(best, acks[i].Sub(acks[i-1]))
	}
	return max(best, time.Microsecond)
}
