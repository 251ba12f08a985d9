package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// waitFor polls cond until it holds or the deadline passes; tests never
// sleep to synchronise.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not synchronisation
	}
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before redis-server binds it, so startRedis retries.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// redisServer is a redis-server process owned by one test.
type redisServer struct {
	Addr   string
	Client *redis.Client
	cmd    *exec.Cmd
}

// startRedis starts a throw-away redis-server on loopback, killed when
// the test ends even if it fails.
func startRedis(t *testing.T, extra ...string) *redisServer {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		if rs := tryStartRedis(t, extra); rs != nil {
			return rs
		}
	}
	t.Fatal("redis-server did not start after 5 attempts")
	return nil
}

func tryStartRedis(t *testing.T, extra []string) *redisServer {
	t.Helper()
	port := freePort(t)
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0", "--dir", t.TempDir(), "--daemonize", "no"}, extra...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	kill := func() { _ = cmd.Process.Kill(); <-exited }
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		select {
		case <-exited: // most likely the port was taken meanwhile
			c.Close()
			return nil
		default:
		}
		if time.Now().After(deadline) {
			kill()
			t.Fatalf("redis-server on %s never answered PING", addr)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	t.Cleanup(func() { c.Close(); kill() })
	return &redisServer{Addr: addr, Client: c, cmd: cmd}
}

// startProxy starts a proxy on a free loopback port, closed with the test.
func startProxy(t *testing.T, cfg Config) *Proxy {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	p, err := Listen(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// twoShards starts two redis-servers and a proxy over them, halves of the
// slot space each, the layout a two-shard database gets.
func twoShards(t *testing.T) (p *Proxy, a, b *redisServer) {
	t.Helper()
	a, b = startRedis(t), startRedis(t)
	p = startProxy(t, Config{Shards: []Shard{
		{ID: "s0", Master: a.Addr, Slots: []SlotRange{{0, 8191}}},
		{ID: "s1", Master: b.Addr, Slots: []SlotRange{{8192, 16383}}},
	}})
	return p, a, b
}

func proxyClient(t *testing.T, p *Proxy) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: p.Addr().String(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConn is a client that sends commands exactly as written and returns
// the raw reply, for checking reply types and error texts byte for byte.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, p *Proxy) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *rawConn) do(args ...string) string {
	r.t.Helper()
	bw := bufio.NewWriter(r.nc)
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	writeCommand(bw, bs)
	if err := bw.Flush(); err != nil {
		r.t.Fatalf("send %v: %v", args, err)
	}
	_ = r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, err := readReply(r.br, nil)
	if err != nil {
		r.t.Fatalf("reply to %v: %v", args, err)
	}
	return strings.TrimSuffix(string(reply), "\r\n")
}

// keyForSlots returns a key whose slot lies in [lo, hi], so tests can aim
// at a shard without hard-coding hash values.
func keyForSlots(t *testing.T, prefix string, lo, hi int) string {
	t.Helper()
	for i := 0; i < 100000; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if s := Slot([]byte(k)); s >= lo && s <= hi {
			return k
		}
	}
	t.Fatalf("no key with prefix %q in slots %d-%d", prefix, lo, hi)
	return ""
}

func itoa(n int) string { return strconv.Itoa(n) }
