package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testConfig is a node on 127.0.0.1 whose API and raft ports are chosen by
// the OS and known before it starts.
func testConfig(t *testing.T) Config {
	t.Helper()
	lns := map[string]net.Listener{}
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		lns[ln.Addr().String()] = ln
		addrs = append(addrs, ln.Addr().String())
	}
	return Config{
		UID: 1, DataDir: t.TempDir(), APIAddr: addrs[0], RaftAddr: addrs[1],
		BcryptCost: bcrypt.MinCost,
		Listen: func(network, addr string) (net.Listener, error) {
			if ln, ok := lns[addr]; ok {
				delete(lns, addr)
				return ln, nil
			}
			return net.Listen(network, addr)
		},
	}
}

// startSetup runs StartViaREST in the background until the test ends.
func startSetup(t *testing.T, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n, err := StartViaREST(ctx, cfg); err == nil {
			n.Kill()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitAnswers(t, cfg.APIAddr, "/v1/bootstrap")
}

// startBootstrapped starts a one-node cluster.
func startBootstrapped(t *testing.T, cfg Config) {
	t.Helper()
	cfg.Bootstrap, cfg.AdminUser, cfg.AdminPassword = true, "admin@test", "secret-password"
	n, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Kill)
}

// get makes one request on a fresh connection, like a new client.
func get(addr, path string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test client, like curl -k
		DisableKeepAlives: true,
	}}
	resp, err := c.Get("https://" + addr + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func waitAnswers(t *testing.T, addr, path string) {
	t.Helper()
	waitFor(t, "the api to answer", 10*time.Second, func() bool {
		code, err := get(addr, path)
		return err == nil && code == http.StatusOK
	})
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// idleConns opens count TCP connections to addr that never send a byte and
// reports how many of them the node has closed.
func idleConns(t *testing.T, addr string, count int) (closed func() int) {
	t.Helper()
	var n atomic.Int32
	for range count {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("open idle connection: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				n.Add(1) // EOF or reset: the node closed it
			}
		}()
	}
	return func() int { return int(n.Load()) }
}

var apiServers = []struct {
	name  string
	start func(*testing.T, Config)
	path  string
}{
	{"setup api", startSetup, "/v1/bootstrap"},
	{"node api", startBootstrapped, "/v1/ping"},
}

func TestAPI_ClosesConnectionsThatNeverHandshake(t *testing.T) {
	for _, tc := range apiServers {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.API = APILimits{HandshakeTimeout: 200 * time.Millisecond, MaxConns: 1000}
			tc.start(t, cfg)
			const count = 50
			closed := idleConns(t, cfg.APIAddr, count)
			waitFor(t, "the node to close every idle connection", 3*time.Second, func() bool { return closed() == count })
		})
	}
}

// Hundreds of idle connections hold at most MaxConns of the node's file
// descriptors, and new clients are still answered while they are held.
func TestAPI_CapsIdleConnectionsAndKeepsAnswering(t *testing.T) {
	const idle, max = 200, 20
	for _, tc := range apiServers {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.API = APILimits{HandshakeTimeout: time.Minute, MaxConns: max} // only the cap can close them
			tc.start(t, cfg)
			before := openFDs(t)
			closed := idleConns(t, cfg.APIAddr, idle)
			waitFor(t, "the node to close idle connections beyond its cap", 10*time.Second, func() bool {
				return closed() >= idle-max
			})
			// The test process holds both ends: the idle clients, and what
			// the node still has open of them.
			if got, limit := openFDs(t)-before, idle+max+10; got > limit {
				t.Fatalf("%d idle connections added %d file descriptors, want at most %d", idle, got, limit)
			}
			for i := range 5 {
				code, err := get(cfg.APIAddr, tc.path)
				if err != nil || code != http.StatusOK {
					t.Fatalf("request %d while idle connections are held: %d %v", i, code, err)
				}
			}
		})
	}
}
