package proxy

import (
	"bufio"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeMaster accepts connections, reads one command on each and then runs
// act on it, to produce the failures a real redis-server gives only by
// luck of timing.
type fakeMaster struct {
	addr    string
	accepts atomic.Int64
}

func startFakeMaster(t *testing.T, act func(nc net.Conn)) *fakeMaster {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMaster{addr: ln.Addr().String()}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepts.Add(1)
			go func() {
				defer nc.Close()
				if _, err := readReply(bufio.NewReader(nc), nil); err == nil {
					act(nc)
				}
			}()
		}
	}()
	return f
}

// TestBrokenMidCommandIsNotRetried: once a command has been sent, a
// broken connection leaves its outcome unknown; retrying could apply a
// write twice, so the client gets an error saying so.
func TestBrokenMidCommandIsNotRetried(t *testing.T) {
	f := startFakeMaster(t, func(net.Conn) {}) // read the command, hang up
	p := startProxy(t, Config{Shards: []Shard{{ID: "s0", Master: f.addr, Slots: []SlotRange{{0, 16383}}}}})
	r := dialRaw(t, p)
	got := r.do("INCR", "n")
	if !strings.HasPrefix(got, "-ERR cnm proxy: master "+f.addr+" of shard s0 failed during the command, which may or may not have run") {
		t.Fatalf("INCR on a master that hung up = %q", got)
	}
	if n := f.accepts.Load(); n != 1 {
		t.Fatalf("master saw %d connections, want 1: the command must not be retried", n)
	}
}

// TestCloseCutsCommandsThatOutliveTheDrain: a master that never answers
// must not keep Close from returning.
func TestCloseCutsCommandsThatOutliveTheDrain(t *testing.T) {
	release := make(chan struct{})
	f := startFakeMaster(t, func(net.Conn) { <-release })
	t.Cleanup(func() { close(release) })
	const drain = 100 * time.Millisecond
	p := startProxy(t, Config{DrainTimeout: drain,
		Shards: []Shard{{ID: "s0", Master: f.addr, Slots: []SlotRange{{0, 16383}}}}})
	r := dialRaw(t, p)
	reply := make(chan string, 1)
	go func() { reply <- r.do("GET", "k") }()
	waitFor(t, "the GET to reach the master", func() bool { return f.accepts.Load() == 1 })
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if elapsed := time.Since(start); elapsed < drain {
		t.Fatalf("Close returned after %s, before the %s drain", elapsed, drain)
	}
	if got := <-reply; !strings.HasPrefix(got, "-ERR cnm proxy: master") {
		t.Fatalf("cut GET = %q, want an error", got)
	}
}
