package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestHeldCommandLandsOnTheNewMaster is the switch-over the agent runs:
// mark the shard, repoint the table, lift the mark. A command issued in
// between must wait and then run on the new master, without an error.
func TestHeldCommandLandsOnTheNewMaster(t *testing.T) {
	p, a, b := twoShards(t)
	newMaster := startRedis(t)
	c := proxyClient(t, p)
	ctx := context.Background()
	key := keyForSlots(t, "moving", 0, 8191)
	if err := c.Set(ctx, key, "before", 0).Err(); err != nil {
		t.Fatal(err)
	}

	sw, err := p.MarkShardSwitching("s0")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Done()
	done := make(chan error, 1)
	go func() { done <- c.Set(ctx, key, "after", 0).Err() }()
	waitFor(t, "the SET to be held", func() bool { return p.router.held.Load() == 1 })

	// An unmarked shard keeps serving while s0 is switching.
	other := keyForSlots(t, "staying", 8192, 16383)
	if err := proxyClient(t, p).Set(ctx, other, "x", 0).Err(); err != nil {
		t.Fatalf("SET on the shard not switching: %v", err)
	}

	if err := p.SetShards([]Shard{
		{ID: "s0", Master: newMaster.Addr, Slots: []SlotRange{{0, 8191}}},
		{ID: "s1", Master: b.Addr, Slots: []SlotRange{{8192, 16383}}},
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("SET finished (%v) while its slot was still marked", err)
	default:
	}
	sw.Done()
	if err := <-done; err != nil {
		t.Fatalf("held SET: %v", err)
	}
	if got := newMaster.Client.Get(ctx, key).Val(); got != "after" {
		t.Fatalf("new master has %q, want the held write", got)
	}
	if got := a.Client.Get(ctx, key).Val(); got != "before" {
		t.Fatalf("old master has %q; the held write must not reach it", got)
	}
}

// TestHeldCommandSurvivesTheOldMasterGoingAway: the old master dies during
// the switch, which is when it usually does; the command must not see it.
func TestHeldCommandSurvivesTheOldMasterGoingAway(t *testing.T) {
	old := startRedis(t)
	p := startProxy(t, Config{Shards: []Shard{{ID: "s0", Master: old.Addr, Slots: []SlotRange{{0, 16383}}}}})
	r := dialRaw(t, p)
	if got := r.do("SET", "k", "1"); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}
	sw, err := p.MarkSwitching(SlotRange{0, 16383})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Done()
	_ = old.cmd.Process.Kill()
	// The same client: its upstream to the old master is now dead, and
	// the held command must go to the new master instead of that one.
	done := make(chan string, 1)
	go func() { done <- r.do("INCR", "n") }()
	waitFor(t, "the INCR to be held", func() bool { return p.router.held.Load() == 1 })
	next := startRedis(t)
	if err := p.SetShards([]Shard{{ID: "s0", Master: next.Addr, Slots: []SlotRange{{0, 16383}}}}); err != nil {
		t.Fatal(err)
	}
	sw.Done()
	if got := <-done; got != ":1" {
		t.Fatalf("held INCR = %q, want :1 from the new master", got)
	}
}

func TestHoldTimesOutWithTryAgain(t *testing.T) {
	a := startRedis(t)
	const hold = 200 * time.Millisecond
	p := startProxy(t, Config{HoldTimeout: hold,
		Shards: []Shard{{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 16383}}}}})
	key := "foo"
	sw, err := p.MarkSwitching(SlotRange{Slot([]byte(key)), Slot([]byte(key))})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Done()
	r := dialRaw(t, p)
	start := time.Now()
	got := r.do("SET", key, "v")
	if !strings.HasPrefix(got, "-TRYAGAIN ") {
		t.Fatalf("SET on a slot stuck switching = %q, want TRYAGAIN", got)
	}
	if elapsed := time.Since(start); elapsed < hold {
		t.Fatalf("answered after %s, before the %s hold", elapsed, hold)
	}
	if n := a.Client.Exists(context.Background(), key).Val(); n != 0 {
		t.Fatal("the timed-out SET reached the master")
	}
	// Other slots are not held.
	if got := r.do("SET", "bar", "v"); got != "+OK" {
		t.Fatalf("SET on an unmarked slot = %q", got)
	}
	sw.Done()
	if got := r.do("SET", key, "v"); got != "+OK" {
		t.Fatalf("SET after the mark was lifted = %q", got)
	}
}

func TestOverlappingMarksReleaseOnlyWhenAllAreDone(t *testing.T) {
	a := startRedis(t)
	p := startProxy(t, Config{HoldTimeout: 50 * time.Millisecond,
		Shards: []Shard{{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 16383}}}}})
	first, _ := p.MarkSwitching(SlotRange{0, 16383})
	second, _ := p.MarkShardSwitching("s0")
	r := dialRaw(t, p)
	first.Done()
	first.Done() // twice must not lift the other mark
	if got := r.do("GET", "k"); !strings.HasPrefix(got, "-TRYAGAIN") {
		t.Fatalf("GET with one mark left = %q", got)
	}
	second.Done()
	if got := r.do("GET", "k"); got != "$-1" {
		t.Fatalf("GET with no marks = %q", got)
	}
	if _, err := p.MarkShardSwitching("nope"); !errors.Is(err, ErrBadTable) {
		t.Fatalf("marking an unknown shard: %v", err)
	}
}

// TestCloseFinishesInFlightCommands: Close must not cut a command that is
// running (here one held for a switch-over) but must end the connection
// after it and refuse new ones.
func TestCloseFinishesInFlightCommands(t *testing.T) {
	a := startRedis(t)
	p := startProxy(t, Config{Shards: []Shard{{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 16383}}}}})
	idle := dialRaw(t, p)
	if got := idle.do("PING"); got != "+PONG" {
		t.Fatal(got)
	}
	busy := dialRaw(t, p)
	sw, _ := p.MarkSwitching(SlotRange{0, 16383})
	defer sw.Done()
	reply := make(chan string, 1)
	go func() { reply <- busy.do("SET", "k", "v") }()
	waitFor(t, "the SET to be held", func() bool { return p.router.held.Load() == 1 })

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	waitFor(t, "Close to begin", p.isClosing)
	if _, err := idle.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle client read %v, want EOF after Close", err)
	}
	sw.Done()
	if got := <-reply; got != "+OK" {
		t.Fatalf("in-flight SET = %q, want +OK", got)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := busy.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("busy client read %v after its command, want EOF", err)
	}
	if nc, err := net.Dial("tcp", p.Addr().String()); err == nil {
		nc.Close()
		t.Fatal("proxy still accepts after Close")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestConcurrentClientsWhileTheTableChurns runs clients against a proxy
// whose table is replaced and marked over and over; every command must
// succeed exactly once, which -race also checks for data races.
func TestConcurrentClientsWhileTheTableChurns(t *testing.T) {
	p, a, b := twoShards(t)
	table := []Shard{
		{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 8191}}},
		{ID: "s1", Master: b.Addr, Slots: []SlotRange{{8192, 16383}}},
	}
	ctx := context.Background()
	const clients, incrs = 6, 100
	stop := make(chan struct{})
	churned := make(chan int)
	go func() {
		n := 0
		defer func() { churned <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			sw, err := p.MarkShardSwitching(table[n%2].ID)
			if err == nil {
				err = p.SetShards(table)
				sw.Done()
			}
			if err != nil {
				t.Errorf("churn: %v", err)
				return
			}
			n++
		}
	}()
	errs := make(chan error, clients)
	for i := range clients {
		c := proxyClient(t, p)
		key := fmt.Sprintf("counter-%d", i)
		go func() {
			for range incrs {
				if err := c.Incr(ctx, key).Err(); err != nil {
					errs <- fmt.Errorf("INCR %s: %w", key, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	if n := <-churned; n == 0 {
		t.Error("the table never changed during the run")
	}
	for i := range clients {
		key := fmt.Sprintf("counter-%d", i)
		owner := a
		if Slot([]byte(key)) > 8191 {
			owner = b
		}
		if got := owner.Client.Get(ctx, key).Val(); got != fmt.Sprint(incrs) {
			t.Errorf("%s = %q on its shard, want %d", key, got, incrs)
		}
	}
}

// TestUnreachableMasterDuringASwitchIsHeld: the dial to the old master
// fails just as the agent marks the slot; the command must wait for the
// new master rather than report the old one unreachable.
func TestUnreachableMasterDuringASwitchIsHeld(t *testing.T) {
	next := startRedis(t)
	dialling, failDial := make(chan struct{}), make(chan struct{})
	const dead = "127.0.0.1:1" // never dialled for real: the fake dial below fails it
	p := startProxy(t, Config{
		Shards: []Shard{{ID: "s0", Master: dead, Slots: []SlotRange{{0, 16383}}}},
		dial: func(ctx context.Context, addr string, timeout time.Duration) (*upstream, error) {
			if addr == dead {
				close(dialling)
				<-failDial
				return nil, fmt.Errorf("%w: fake refusal", errDial)
			}
			return dialUpstream(ctx, addr, timeout)
		},
	})
	r := dialRaw(t, p)
	reply := make(chan string, 1)
	go func() { reply <- r.do("SET", "k", "v") }()
	<-dialling
	sw, err := p.MarkShardSwitching("s0")
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Done()
	close(failDial)
	waitFor(t, "the SET to be held", func() bool { return p.router.held.Load() == 1 })
	if err := p.SetShards([]Shard{{ID: "s0", Master: next.Addr, Slots: []SlotRange{{0, 16383}}}}); err != nil {
		t.Fatal(err)
	}
	sw.Done()
	if got := <-reply; got != "+OK" {
		t.Fatalf("SET held over an unreachable old master = %q, want +OK", got)
	}
	if got := next.Client.Get(context.Background(), "k").Val(); got != "v" {
		t.Fatalf("new master has %q", got)
	}
}

// makeReplica points rs at master and waits for the link, as the
// switch-over does to an old master.
func makeReplica(t *testing.T, rs, master *redisServer) {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	if err := rs.Client.ReplicaOf(context.Background(), host, port).Err(); err != nil {
		t.Fatalf("REPLICAOF: %v", err)
	}
	waitFor(t, "the replica link", func() bool {
		info, _ := rs.Client.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
}

// TestReadonlyWriteWaitsForTheNewMaster: the old master became a replica
// of the new one without the proxy being told; the write it refuses must
// land on the master the next table names, with no error to the client.
func TestReadonlyWriteWaitsForTheNewMaster(t *testing.T) {
	p, a, b := twoShards(t)
	newMaster, mid := startRedis(t), startRedis(t)
	c := proxyClient(t, p)
	ctx := context.Background()
	key := keyForSlots(t, "ro", 0, 8191)
	// The old master follows a copy that is no master yet: nothing to
	// send the write to but what the table will name.
	makeReplica(t, mid, newMaster)
	makeReplica(t, a, mid)

	done := make(chan error, 1)
	go func() { done <- c.Set(ctx, key, "held", 0).Err() }()
	waitFor(t, "the refused SET to be held", func() bool { return p.router.held.Load() == 1 })
	// Reads are no switch-over matter: the replica answers them.
	if err := proxyClient(t, p).Get(ctx, key).Err(); err != nil && err.Error() != "redis: nil" {
		t.Fatalf("GET during the hold: %v", err)
	}
	if err := p.SetShards([]Shard{
		{ID: "s0", Master: newMaster.Addr, Slots: []SlotRange{{0, 8191}}},
		{ID: "s1", Master: b.Addr, Slots: []SlotRange{{8192, 16383}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("held SET: %v", err)
	}
	if got := newMaster.Client.Get(ctx, key).Val(); got != "held" {
		t.Fatalf("new master has %q, want the held write", got)
	}
}

// TestReadonlyIsPassedOnWhenNoNewMasterComes: without a new table the
// client gets the master's own READONLY once the hold times out.
func TestReadonlyIsPassedOnWhenNoNewMasterComes(t *testing.T) {
	a, mid, other := startRedis(t), startRedis(t), startRedis(t)
	p := startProxy(t, Config{HoldTimeout: 200 * time.Millisecond,
		Shards: []Shard{{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 16383}}}}})
	makeReplica(t, mid, other)
	makeReplica(t, a, mid)
	r := dialRaw(t, p)
	start := time.Now()
	if got := r.do("SET", "k", "v"); !strings.HasPrefix(got, "-READONLY") {
		t.Fatalf("SET = %q, want the master's READONLY", got)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("READONLY passed on after %s, before the hold timed out", waited)
	}
	// A table change that leaves the slots on the same master is no new
	// master: the write still gets READONLY.
	done := make(chan string, 1)
	r2 := dialRaw(t, p)
	go func() { done <- r2.do("SET", "k", "v") }()
	waitFor(t, "the SET to be held", func() bool { return p.router.held.Load() == 1 })
	if err := p.SetShards([]Shard{{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 16383}}}}); err != nil {
		t.Fatal(err)
	}
	if got := <-done; !strings.HasPrefix(got, "-READONLY") {
		t.Fatalf("SET = %q, want READONLY", got)
	}
}

// TestReadonlyWriteFollowsThePromotedMaster: the old master is a replica of
// the master a switch-over promoted in its place, before the table says
// so; the write goes there at once, and WAIT counts that master's replicas.
func TestReadonlyWriteFollowsThePromotedMaster(t *testing.T) {
	p, a, _ := twoShards(t)
	newMaster := startRedis(t)
	makeReplica(t, a, newMaster)
	c := proxyClient(t, p)
	ctx := context.Background()
	key := keyForSlots(t, "ro", 0, 8191)
	if err := c.Set(ctx, key, "moved", 0).Err(); err != nil {
		t.Fatalf("SET refused by the old master: %v", err)
	}
	if got := newMaster.Client.Get(ctx, key).Val(); got != "moved" {
		t.Fatalf("the promoted master has %q, want the write", got)
	}
	if n := p.router.held.Load(); n != 0 {
		t.Errorf("%d commands held, want none", n)
	}
	// One session: WAIT goes to the master that took the write.
	conn := c.Conn()
	defer conn.Close()
	if err := conn.Set(ctx, key, "again", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Errorf("WAIT 1 after the write: %d, %v; want the old master, now a replica, counted", n, err)
	}
}
