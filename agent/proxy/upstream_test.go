package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	long := "+" + strings.Repeat("x", 10000) + "\r\n"
	for _, tc := range []struct {
		name, in string
		wantErr  bool
	}{
		{name: "status", in: "+OK\r\n"},
		{name: "error", in: "-ERR no\r\n"},
		{name: "integer", in: ":-12\r\n"},
		{name: "bulk", in: "$5\r\nhe\r\no\r\n"},
		{name: "null bulk", in: "$-1\r\n"},
		{name: "empty bulk", in: "$0\r\n\r\n"},
		{name: "null array", in: "*-1\r\n"},
		{name: "nested array", in: "*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n"},
		{name: "line longer than the buffer", in: long},
		{name: "truncated bulk", in: "$5\r\nab", wantErr: true},
		{name: "bad length", in: "$x\r\n", wantErr: true},
		{name: "no CR", in: "+OK\n", wantErr: true},
		{name: "unknown type", in: "?1\r\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A trailing reply proves exactly one reply was consumed.
			br := bufio.NewReader(strings.NewReader(tc.in + "+next\r\n"))
			got, err := readReply(br, nil)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("readReply(%q) = %q, want an error", tc.in, got)
				}
				return
			}
			if err != nil || string(got) != tc.in {
				t.Fatalf("readReply(%q) = %q, %v", tc.in, got, err)
			}
			if next, err := readReply(br, nil); err != nil || string(next) != "+next\r\n" {
				t.Fatalf("reply after = %q, %v", next, err)
			}
		})
	}
	if _, err := readReply(bufio.NewReader(strings.NewReader("")), nil); !errors.Is(err, io.EOF) {
		t.Fatalf("empty input: %v, want EOF", err)
	}
}

// TestClosedUpstreamIsRedialled: a master that drops an idle connection
// (restart, CLIENT KILL, idle timeout) must cost the client nothing, since
// the proxy sees it before sending; but WAIT can no longer vouch for the
// writes that connection carried.
func TestClosedUpstreamIsRedialled(t *testing.T) {
	a := startRedis(t)
	p := startProxy(t, Config{Shards: []Shard{{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 16383}}}}})
	r := dialRaw(t, p)
	if got := r.do("SET", "k", "v"); got != "+OK" {
		t.Fatal(got)
	}
	ctx := context.Background()
	if n, err := a.Client.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Result(); err != nil || n != 1 {
		t.Fatalf("CLIENT KILL = %d, %v; want the proxy's one connection", n, err)
	}
	if got := r.do("GET", "k"); got != "$1\r\nv" {
		t.Fatalf("GET after the master closed the upstream = %q", got)
	}
	if got := r.do("WAIT", "0", "100"); got != ":0" {
		t.Fatalf("WAIT after losing the writing connection = %q, want :0", got)
	}
}

// TestRedisCLI uses the real redis-cli, the tool operators will point at
// an endpoint first.
func TestRedisCLI(t *testing.T) {
	p, _, _ := twoShards(t)
	host, port, _ := strings.Cut(p.Addr().String(), ":")
	lo, hi := keyForSlots(t, "lo", 0, 8191), keyForSlots(t, "hi", 8192, 16383)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"SET", "cli", "works"}, "OK"},
		{[]string{"GET", "cli"}, "works"},
		{[]string{"DBSIZE"}, "1"},
		{[]string{"MGET", lo, hi}, "CROSSSLOT Keys in request don't hash to the same slot"},
	} {
		out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, tc.args...)...).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || !strings.Contains(got, tc.want) {
			t.Errorf("redis-cli %v = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}
