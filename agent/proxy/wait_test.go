package proxy

import (
	"context"
	"strings"
	"testing"
)

// attachReplica makes replica replicate master and waits until the master
// sees it online, so WAIT has something to count.
func attachReplica(t *testing.T, master, replica *redisServer) {
	t.Helper()
	host, port, _ := strings.Cut(master.Addr, ":")
	if err := replica.Client.ReplicaOf(context.Background(), host, port).Err(); err != nil {
		t.Fatalf("REPLICAOF: %v", err)
	}
	waitFor(t, "the replica to be online", func() bool {
		info := master.Client.Info(context.Background(), "replication").Val()
		return strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")
	})
}

func TestWaitCountsTheReplicasOfTheShardsWrittenTo(t *testing.T) {
	p, a, _ := twoShards(t)
	attachReplica(t, a, startRedis(t))
	onA := keyForSlots(t, "a", 0, 8191)
	onB := keyForSlots(t, "b", 8192, 16383)

	for _, tc := range []struct {
		name   string
		writes [][]string
		want   string
	}{
		// Nothing written: nothing to acknowledge, 0 is all the proxy vouches for.
		{"no writes", nil, ":0"},
		{"reads only", [][]string{{"GET", onA}}, ":0"},
		{"shard with a replica", [][]string{{"SET", onA, "1"}}, ":1"},
		{"several writes, one shard", [][]string{{"SET", onA, "1"}, {"INCR", onA + "n"}}, ":1"},
		// The shard without a replica bounds the answer.
		{"both shards", [][]string{{"SET", onA, "1"}, {"SET", onB, "1"}}, ":0"},
		{"shard without a replica", [][]string{{"SET", onB, "1"}}, ":0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, p)
			for _, w := range tc.writes {
				if got := r.do(w...); strings.HasPrefix(got, "-") {
					t.Fatalf("%v = %q", w, got)
				}
			}
			// Only a WAIT that must fall short waits out its timeout; keep it short.
			timeout := "2000"
			if tc.want == ":0" {
				timeout = "100"
			}
			if got := r.do("WAIT", "1", timeout); got != tc.want {
				t.Fatalf("WAIT 1 %s = %q, want %q", timeout, got, tc.want)
			}
			// WAIT covers writes since the previous WAIT only.
			if got := r.do("WAIT", "1", "100"); got != ":0" {
				t.Fatalf("second WAIT with no new writes = %q, want :0", got)
			}
		})
	}
}

// TestWaitUsesTheConnectionThatWrote: another client's writes must not
// make this client's WAIT wait, nor count for it.
func TestWaitUsesTheConnectionThatWrote(t *testing.T) {
	p, a, _ := twoShards(t)
	attachReplica(t, a, startRedis(t))
	onA := keyForSlots(t, "a", 0, 8191)
	writer, other := dialRaw(t, p), dialRaw(t, p)
	if got := writer.do("SET", onA, "v"); got != "+OK" {
		t.Fatal(got)
	}
	if got := other.do("WAIT", "1", "100"); got != ":0" {
		t.Fatalf("WAIT from a client that wrote nothing = %q, want :0", got)
	}
	if got := writer.do("WAIT", "1", "2000"); got != ":1" {
		t.Fatalf("WAIT from the writer = %q, want :1", got)
	}
	if got := writer.do("WAIT", "x", "0"); !strings.HasPrefix(got, "-ERR value is not an integer") {
		t.Fatalf("WAIT with a bad count = %q", got)
	}
}
